//! What a sender learns back from the listener, and what a person there sees: the name
//! a file landed under, a file skipped because the same content is already there, and
//! a short text shown instead of stored.

use std::path::PathBuf;
use std::time::Duration;

use crate::util::{list_files, path_str, TestDir, EVENT_TIMEOUT};

/// `big.bin` sent twice lands as `big.bin` and `big.1.bin`; the second sender is told
/// so (the ack carries the name), in JSON and in its human line.
#[test]
fn the_sender_learns_the_name_its_file_landed_under() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let file = t.write("src/big.bin", b"the same bytes");
    let mut l = t.listen(&out, &[]);
    let first = t.send(&[l.ticket.as_str(), path_str(&file)]);
    first.assert_code(0);
    assert_eq!(first.one("sent")["stored_as"], "big.bin", "{first}");
    let second = t.send(&[l.ticket.as_str(), path_str(&file)]);
    second.assert_code(0);
    assert_eq!(second.one("sent")["stored_as"], "big.1.bin", "{second}");
    l.wait_for("received", EVENT_TIMEOUT);
    l.wait_for("received", EVENT_TIMEOUT);

    // Without --json the report says it in words.
    let mut human = t.cmd();
    human.args(["--ephemeral", "send", l.ticket.as_str(), path_str(&file)]);
    let r = crate::util::Proc::spawn(human).finish(Duration::from_secs(30));
    r.assert_code(0);
    assert!(r.stderr.contains("stored as big.2.bin"), "{r}");
}

/// `--skip-same`: a tree sent again does not scatter `name.1.ext` copies: files the
/// listener holds with the same content are skipped (and say so at both ends), a
/// changed one is stored beside the old as usual.
#[test]
fn skip_same_does_not_send_what_the_listener_already_holds() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    t.write("tree/a.txt", b"unchanged");
    t.write("tree/b.txt", b"version one");
    let tree = t.path().join("tree");
    let mut l = t.listen(&out, &[]);
    t.send(&[l.ticket.as_str(), path_str(&tree)]).assert_code(0);
    t.write("tree/b.txt", b"version two!");
    let r = t.send(&["--skip-same", l.ticket.as_str(), path_str(&tree)]);
    r.assert_code(0);
    let sent = r.named("sent");
    assert_eq!(sent.len(), 2, "{r}");
    assert_eq!(sent[0]["already_present"], true, "{r}");
    assert_eq!(sent[0]["stored_as"], "tree/a.txt", "{r}");
    assert_eq!(sent[1]["already_present"], false, "{r}");
    assert_eq!(sent[1]["stored_as"], "tree/b.1.txt", "{r}");
    let mut skipped = 0;
    for _ in 0..4 {
        let ev = l.wait_for("received", EVENT_TIMEOUT);
        if ev["already_present"] == true {
            skipped += 1;
        }
    }
    assert_eq!(skipped, 1, "{}", l.describe());
    assert_eq!(
        list_files(&out),
        ["tree/a.txt", "tree/b.1.txt", "tree/b.txt"]
            .map(PathBuf::from)
            .to_vec()
    );
}

/// `send --text`: the listener shows the text (escaped: a sender cannot drive the
/// terminal) and stores nothing.
#[test]
fn a_text_is_shown_at_the_listener_not_stored() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let text = "hello\nfrom \u{1b}[2Jthe other side";
    let mut l = t.listen(&out, &[]);
    let r = t.send(&["--text", text, l.ticket.as_str()]);
    r.assert_code(0);
    let ev = l.wait_for("text", EVENT_TIMEOUT);
    assert_eq!(ev["text"], text);
    assert_eq!(list_files(&out), Vec::<PathBuf>::new());

    // The human line, on a listener without --json: line by line, escaped.
    let (listener, ticket) = t.listen_human(&["--once", "--out", path_str(&out)]);
    t.send(&["--text", text, ticket.as_str()]).assert_code(0);
    let shown = listener.finish(Duration::from_secs(10));
    assert!(!shown.stderr.contains('\u{1b}'), "{shown}");
    assert!(
        shown
            .stderr
            .contains("  hello\n  from \\e[2Jthe other side"),
        "{shown}"
    );
}

/// `--text` with files, or longer than 64 KiB: a usage error before anything connects.
#[test]
fn text_is_checked_before_anything_connects() {
    let t = TestDir::new();
    let file = t.write("f.txt", b"x");
    let addr = format!("127.0.0.1:{}", crate::util::free_udp_port());
    t.send(&["--text", "hi", addr.as_str(), path_str(&file)])
        .assert_json_error(2);
    let long = "x".repeat(64 * 1024 + 1);
    let r = t.send(&["--text", long.as_str(), addr.as_str()]);
    r.assert_json_error(2);
    assert!(r.elapsed < Duration::from_secs(2), "{r}");
}
