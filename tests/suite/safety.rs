//! What a sender cannot make a listener do: write outside its directory, overwrite
//! an existing file, or store more than `--max-size`.

use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use crate::util::{
    blake3, digest, list_all, list_files, path_str, random_bytes, TestDir, EVENT_TIMEOUT,
    RUN_TIMEOUT,
};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// The listener must refuse the message: nothing usable is left of the name.
    Refused,
    /// Either stored safely inside DIR (exit 0) or refused (exit 5).
    StoredOrRefused,
}

/// Sends one file under the name `name` to a listener whose DIR is T/work/out and
/// checks that nothing is written outside DIR. Returns the stored file (relative to
/// DIR) when the listener accepted it.
fn hostile_name(name: &str, expect: Expect) -> Option<PathBuf> {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    // The payload lives outside T, so that T holds only what the listener makes.
    let src_dir = tempfile::tempdir().unwrap();
    let payload = random_bytes(777);
    let src = src_dir.path().join("payload.txt");
    fs::write(&src, &payload).unwrap();
    let passwd_before = fs::read("/etc/passwd").ok();
    let t_before = list_all(&t.path());
    let home_before = list_all(t.home());

    let mut l = t.listen(&out, &[]);
    let r = t.send(&["--name", name, l.ticket.as_str(), path_str(&src)]);
    r.assert_no_panic();

    let stored = match r.code {
        Some(0) => {
            assert_eq!(
                expect,
                Expect::StoredOrRefused,
                "the listener must refuse the name {name:?}\n{r}"
            );
            let files = list_files(&out);
            assert_eq!(
                files.len(),
                1,
                "exactly one new file for {name:?}: {files:?}"
            );
            let rel = files[0].clone();
            let stored = fs::canonicalize(out.join(&rel)).unwrap();
            assert!(
                stored.starts_with(&out),
                "{name:?} stored at {} outside {}",
                stored.display(),
                out.display()
            );
            assert_eq!(fs::read(&stored).unwrap(), payload, "stored content");
            for c in rel.components() {
                let Component::Normal(c) = c else {
                    panic!("stored path {rel:?} has a component {c:?}");
                };
                let c = c.to_str().expect("stored name is UTF-8");
                assert!(c != ".." && c != ".", "stored path {rel:?}");
                assert!(
                    !c.chars().any(char::is_control),
                    "stored path {rel:?} keeps a control character"
                );
                assert!(c.len() <= 200, "component of {rel:?} longer than 200 bytes");
            }
            let recv = l.wait_for("received", EVENT_TIMEOUT);
            assert_eq!(
                fs::canonicalize(recv["path"].as_str().expect("received.path")).unwrap(),
                stored,
                "received.path for {name:?}"
            );
            assert_eq!(digest(&recv), blake3(&payload));
            Some(rel)
        }
        Some(5) => {
            r.assert_json_error(5);
            if expect == Expect::Refused {
                let msg = r.events.last().unwrap()["message"].as_str().unwrap_or("");
                assert!(
                    msg.contains("bad name"),
                    "refusal of {name:?} should say 'bad name'\n{r}"
                );
            }
            l.wait_for("transfer_failed", EVENT_TIMEOUT);
            assert_eq!(
                list_files(&out),
                Vec::<PathBuf>::new(),
                "DIR after refusing {name:?}"
            );
            None
        }
        // A name that cleans to nothing is refused by the sender itself, before it
        // connects (issue 14); the listener's own refusal of such names is covered
        // by the sanitizer's tests.
        Some(2) if expect == Expect::Refused => {
            r.assert_json_error(2);
            let msg = r.events.last().unwrap()["message"].as_str().unwrap_or("");
            assert!(msg.contains("--name"), "{r}");
            assert_eq!(list_files(&out), Vec::<PathBuf>::new());
            None
        }
        _ => panic!("sending as {name:?} must exit 0 or 5\n{r}"),
    };

    l.assert_running();
    let t_after = list_all(&t.path());
    let outside: Vec<&PathBuf> = t_after
        .iter()
        .filter(|p| !t_before.contains(p) && !p.starts_with("work/out"))
        .collect();
    assert!(
        outside.is_empty(),
        "{name:?} created {outside:?} outside DIR"
    );
    assert_eq!(list_all(t.home()), home_before, "listener's cwd changed");
    assert_eq!(
        fs::read("/etc/passwd").ok(),
        passwd_before,
        "/etc/passwd changed"
    );
    stored
}

#[test]
fn name_with_parent_dirs_stays_inside() {
    hostile_name("../../x", Expect::StoredOrRefused);
}

#[test]
fn absolute_name_stays_inside() {
    if let Some(rel) = hostile_name("/etc/passwd", Expect::StoredOrRefused) {
        assert_eq!(rel, Path::new("etc/passwd"));
    }
}

#[test]
fn name_with_inner_parent_dirs_stays_inside() {
    hostile_name("a/../../b", Expect::StoredOrRefused);
}

#[test]
fn name_with_backslash_parent_dirs_stays_inside() {
    hostile_name("..\\..\\x", Expect::StoredOrRefused);
}

#[test]
fn name_dotdot_is_refused() {
    hostile_name("..", Expect::Refused);
}

#[test]
fn name_dot_is_refused() {
    hostile_name(".", Expect::Refused);
}

#[test]
fn name_slash_is_refused() {
    hostile_name("/", Expect::Refused);
}

#[test]
fn empty_name_is_refused() {
    hostile_name("", Expect::Refused);
}

#[test]
fn name_with_control_char_is_cleaned() {
    if let Some(rel) = hostile_name("a\u{1}b", Expect::StoredOrRefused) {
        assert_eq!(rel, Path::new("a_b"));
    }
}

/// A right-to-left override would make a listing show `invoiceexe.pdf`.
#[test]
fn name_with_bidi_override_is_cleaned() {
    if let Some(rel) = hostile_name("invoice\u{202E}fdp.exe", Expect::StoredOrRefused) {
        assert_eq!(rel, Path::new("invoice_fdp.exe"));
    }
}

#[test]
fn name_of_300_bytes_is_shortened_keeping_extension() {
    let name = format!("{}.txt", "n".repeat(296));
    assert_eq!(name.len(), 300);
    if let Some(rel) = hostile_name(&name, Expect::StoredOrRefused) {
        let stored = rel.to_str().unwrap();
        assert!(stored.ends_with(".txt"), "extension lost: {stored}");
        assert!(stored.starts_with("nnnn"), "{stored}");
    }
}

/// Sends `path` to the listener at `ticket` and expects success.
fn send_ok(t: &TestDir, ticket: &str, path: &Path) {
    t.send(&[ticket, path_str(path)]).assert_code(0);
}

/// The second file of the same name gets a suffix; the first stays untouched.
#[test]
fn existing_file_is_never_overwritten() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let first = t.write("src1/f.txt", b"first content\n");
    let second = t.write("src2/f.txt", b"second content\n");
    let mut l = t.listen(&out, &[]);
    send_ok(&t, &l.ticket, &first);
    l.wait_for("received", EVENT_TIMEOUT);
    send_ok(&t, &l.ticket, &second);
    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(
        fs::canonicalize(recv["path"].as_str().unwrap()).unwrap(),
        out.join("f.1.txt")
    );
    assert_eq!(
        list_files(&out),
        vec![PathBuf::from("f.1.txt"), PathBuf::from("f.txt")]
    );
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"first content\n");
    assert_eq!(fs::read(out.join("f.1.txt")).unwrap(), b"second content\n");
}

/// A file that was in DIR before the listener started is not overwritten either.
#[test]
fn preexisting_file_is_never_overwritten() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    fs::write(out.join("f.txt"), b"already here").unwrap();
    let src = t.write("src/f.txt", b"new");
    let mut l = t.listen(&out, &[]);
    send_ok(&t, &l.ticket, &src);
    l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"already here");
    assert_eq!(fs::read(out.join("f.1.txt")).unwrap(), b"new");
}

/// With `--overwrite` the second file replaces the first.
#[test]
fn overwrite_replaces_existing_file() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let first = t.write("src1/f.txt", b"first content\n");
    let second = t.write("src2/f.txt", b"second content\n");
    let mut l = t.listen(&out, &["--overwrite"]);
    send_ok(&t, &l.ticket, &first);
    l.wait_for("received", EVENT_TIMEOUT);
    send_ok(&t, &l.ticket, &second);
    l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(list_files(&out), vec![PathBuf::from("f.txt")]);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"second content\n");
}

/// `--max-size 1KiB`: 64 KiB is refused (exit 5, nothing stored), the listener goes
/// on, 1025 bytes are refused and exactly 1024 bytes are accepted.
#[test]
fn max_size_refuses_larger_files() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (big, _) = t.random_file("src/big.bin", 64 * 1024);
    let (over, _) = t.random_file("src/over.bin", 1025);
    let (fits, fits_sha) = t.random_file("src/fits.bin", 1024);
    let mut l = t.listen(&out, &["--max-size", "1KiB"]);

    let r = t.send(&[l.ticket.as_str(), path_str(&big)]);
    r.assert_json_error(5);
    assert!(r.named("sent").is_empty(), "{r}");
    l.wait_for("transfer_failed", EVENT_TIMEOUT);
    assert_eq!(list_files(&out), Vec::<PathBuf>::new());
    l.assert_running();

    t.send(&[l.ticket.as_str(), path_str(&over)])
        .assert_json_error(5);
    l.wait_for("transfer_failed", EVENT_TIMEOUT);
    assert_eq!(list_files(&out), Vec::<PathBuf>::new());

    let r = t.send(&[l.ticket.as_str(), path_str(&fits)]);
    r.assert_code(0);
    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&recv), fits_sha.as_str());
    assert_eq!(list_files(&out), vec![PathBuf::from("fits.bin")]);
}

/// From stdin the size is not declared: the limit must hold on the actual bytes.
#[test]
fn max_size_holds_for_stdin_of_unknown_size() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let mut l = t.listen(&out, &["--max-size", "1KiB"]);
    let mut sender = t.spawn_send(&[l.ticket.as_str(), "-"], Stdio::piped());
    let mut stdin = sender.take_stdin();
    let data = random_bytes(64 * 1024);
    // The sender may stop reading once refused; a broken pipe here is fine.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let r = sender.finish(RUN_TIMEOUT);
    writer.join().unwrap();
    r.assert_json_error(5);
    l.wait_for("transfer_failed", EVENT_TIMEOUT);
    l.assert_no_event("received", Duration::from_millis(500));
    assert_eq!(list_files(&out), Vec::<PathBuf>::new());
    l.assert_running();
}
