//! What a person at the terminal sees (issue 14): strings from the wire shown escaped,
//! checks made before anything connects, error text without doubled OS errors, the
//! sender named by its fingerprint, refusals as events, pipes given as paths.

use std::fs;
use std::io::Write;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{
    free_udp_port, list_files, path_str, Proc, TestDir, BIN, EVENT_TIMEOUT, RUN_TIMEOUT,
    START_TIMEOUT,
};

/// Starts a human (not `--json`) listener with `--once` and returns it with its port,
/// read from its `listening on` line.
fn human_listener(t: &TestDir, out: &std::path::Path, extra: &[&str]) -> (Proc, u16) {
    let mut cmd = t.cmd();
    cmd.args([
        "--ephemeral",
        "listen",
        "--bind",
        "127.0.0.1:0",
        "--once",
        "--out",
    ])
    .arg(out)
    .args(extra);
    let proc = Proc::spawn(cmd);
    let line = proc
        .next_stderr_line(START_TIMEOUT)
        .expect("the listener's first line");
    let port = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (proc, port)
}

/// An identity directory for the sender, and its fingerprint.
fn sender_identity(t: &TestDir) -> (std::path::PathBuf, String) {
    let dir = t.mkdir("sender-id");
    let fp = t.id(&["--identity", path_str(&dir)]);
    (dir, fp)
}

/// A sender's name full of escape sequences (clear screen, colours, a carriage return
/// that hides the start) reached the listener's terminal as it was. It must be shown
/// escaped, with no ESC or CR byte on the listener's stderr.
#[test]
fn escape_sequences_in_names_do_not_reach_the_terminal() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (listener, port) = human_listener(&t, &out, &[]);
    let evil = "evil\u{1b}[2J\u{1b}[31mRED\u{1b}[0m\rfake\t.txt";
    let mut sender = t.spawn_send(
        &["--name", evil, &format!("127.0.0.1:{port}"), "-"],
        Stdio::piped(),
    );
    let mut stdin = sender.take_stdin();
    stdin.write_all(b"payload").unwrap();
    drop(stdin);
    let r = sender.finish(RUN_TIMEOUT);
    r.assert_code(0);
    let l = listener.finish(EVENT_TIMEOUT);
    l.assert_code(0);
    assert!(
        !l.stderr.contains('\u{1b}') && !l.stderr.contains('\r') && !l.stderr.contains('\t'),
        "raw control characters on the listener's stderr\n{l}"
    );
    assert!(
        l.stderr
            .contains(r"received evil\e[2J\e[31mRED\e[0m\rfake\t.txt"),
        "the escaped name is shown\n{l}"
    );
}

/// `--out FILE` said `File exists`; an `--out DIR` that cannot be written started
/// listening and failed every message later. Both are found at start.
#[test]
fn unusable_out_dir_is_refused_at_start() {
    let t = TestDir::new();
    let file = t.write("a-file", b"x");
    let r = t.run(&[
        "--ephemeral",
        "listen",
        "--bind",
        "127.0.0.1:0",
        "--out",
        path_str(&file),
    ]);
    r.assert_code(2);
    assert!(r.stderr.contains("is a file, not a directory"), "{r}");
    assert!(!r.stderr.contains("File exists"), "{r}");

    // sysfs refuses new files even to root: a directory that cannot be written.
    let read_only = std::path::Path::new("/sys/fs");
    if !read_only.is_dir() {
        eprintln!("note: no /sys/fs here; the unwritable case is left out");
        return;
    }
    let r = t.run_timeout(
        &[
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--out",
            "/sys/fs",
        ],
        Duration::from_secs(10),
    );
    r.assert_json_error(1);
    assert!(r.named("listening").is_empty(), "it must not start\n{r}");
    assert!(r.stderr.contains("cannot write into /sys/fs"), "{r}");
}

/// `Address already in use (os error 98): Address already in use (os error 98)`, and
/// the same doubling for an identity path that is not a directory; a port in use
/// comes with what to do.
#[test]
fn os_errors_are_shown_once_with_a_hint_for_a_port_in_use() {
    let t = TestDir::new();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let r = t.run(&[
        "--ephemeral",
        "listen",
        "--bind",
        &format!("127.0.0.1:{port}"),
    ]);
    r.assert_code(1);
    assert_eq!(r.stderr.matches("os error 98").count(), 1, "{r}");
    assert!(
        r.stderr.contains(&format!(
            "another process uses UDP port {port}; pick another with --bind ADDR:PORT, or :0"
        )),
        "{r}"
    );

    let file = t.write("not-a-dir", b"x");
    let r = t.run(&["--identity", path_str(&file), "id"]);
    r.assert_code(1);
    assert_eq!(r.stderr.matches("os error 20").count(), 1, "{r}");
}

/// A `--json` usage error carried only clap's first line ("the following required
/// arguments were not provided:"), not which argument.
#[test]
fn json_usage_error_carries_the_whole_message() {
    let t = TestDir::new();
    let r = t.run(&["--json", "send"]);
    r.assert_json_error(2);
    let message = r.one("error")["message"].as_str().unwrap().to_string();
    assert!(message.contains("<ADDR|TICKET>"), "{message:?}");
}

/// Zero counts and timeouts, and names that clean to nothing, are usage errors found
/// before anything connects (nothing listens at the address: a connect attempt would
/// be exit 3).
#[test]
fn flags_are_checked_before_anything_connects() {
    let t = TestDir::new();
    let file = t.write("f.txt", b"x");
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let cases: Vec<Vec<&str>> = vec![
        vec!["--connect-timeout", "0"],
        vec!["--idle-timeout", "0s"],
        vec!["--name", ""],
        vec!["--name", ".."],
        vec!["--name", "."],
        vec!["--name", "/./"],
    ];
    for flags in cases {
        let mut args = flags.clone();
        args.extend([addr.as_str(), path_str(&file)]);
        let r = t.send(&args);
        r.assert_json_error(2);
        assert!(r.elapsed < Duration::from_secs(5), "{flags:?}\n{r}");
    }
    let r = t.run(&["--json", "--ephemeral", "listen", "--count", "0"]);
    r.assert_json_error(2);
}

/// `listen --bind` takes what `send` takes: a name with a port (resolved), and `:0`.
#[test]
fn listen_binds_a_host_name_like_send_dials_one() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let l = t.listen_args(&[
        "--json",
        "--ephemeral",
        "listen",
        "--bind",
        "localhost:0",
        "--out",
        path_str(&out),
    ]);
    assert!(
        l.addr.starts_with("127.0.0.1:") || l.addr.starts_with("[::1]:"),
        "{}",
        l.addr
    );
}

/// The `--allow` refusal was logged as `Other(OtherError(…))`, and only as a WARN line;
/// it is said in words, and is a `refused` event with `--json`.
#[test]
fn refused_sender_is_an_event_and_said_in_words() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (sender_id, fp) = sender_identity(&t);
    let stranger = t.stranger_fingerprint();
    let mut l = t.listen(&out, &["--allow", &stranger]);
    let file = t.write("f.txt", b"x");
    let r = t.run(&[
        "--json",
        "--identity",
        path_str(&sender_id),
        "send",
        l.ticket.as_str(),
        path_str(&file),
    ]);
    r.assert_json_error(4);
    let refused = l.wait_for("refused", EVENT_TIMEOUT);
    assert_eq!(refused["peer_fingerprint"], fp.as_str(), "{refused}");
    assert!(refused["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("is not trusted"), "{reason}");
    assert!(!reason.contains("OtherError"), "{reason}");
    assert!(!l.stderr_text().contains("OtherError"), "{}", l.describe());
}

/// `--max-size` refusals said `5000 bytes declared, limit 1024`: sizes for people at
/// both ends.
#[test]
fn size_refusals_show_human_sizes_at_both_ends() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut l = t.listen(&out, &["--max-size", "1KiB"]);
    let file = t.write("big.bin", &[7u8; 5000]);
    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    r.assert_json_error(5);
    let message = r.one("error")["message"].as_str().unwrap();
    assert!(message.contains("big.bin (4.88 KiB)"), "{message}");
    let failed = l.wait_for("transfer_failed", EVENT_TIMEOUT);
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("4.88 KiB declared, limit 1.00 KiB"),
        "{error}"
    );
}

/// The listener's human line named the sender by address only; a sender is known by
/// its key.
#[test]
fn received_line_names_the_sender_by_fingerprint() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (sender_id, fp) = sender_identity(&t);
    let (listener, port) = human_listener(&t, &out, &[]);
    let file = t.write("f.txt", b"hello");
    let r = t.run(&[
        "--identity",
        path_str(&sender_id),
        "send",
        &format!("127.0.0.1:{port}"),
        path_str(&file),
    ]);
    r.assert_code(0);
    let l = listener.finish(EVENT_TIMEOUT);
    let line = l
        .stderr
        .lines()
        .find(|line| line.starts_with("received f.txt"))
        .unwrap_or_else(|| panic!("no received line\n{l}"));
    assert!(line.contains(&format!("({}\u{2026})", &fp[..8])), "{line}");
}

/// `send T linkdir` sent the tree under the symlink's target's name (`loop/…`).
#[test]
fn symlinked_directory_keeps_the_name_given() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    t.write("real/f.txt", b"inside");
    let link = t.path().join("linkdir");
    std::os::unix::fs::symlink(t.path().join("real"), &link).unwrap();
    let mut l = t.listen(&out, &[]);
    let r = t.send(&[l.ticket.as_str(), path_str(&link)]);
    r.assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(
        list_files(&out),
        vec![std::path::PathBuf::from("linkdir/f.txt")]
    );
}

/// `send T <(cmd)` was refused as "not a regular file"; it is sent like stdin.
#[test]
fn process_substitution_is_sent_like_stdin() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut l = t.listen(&out, &[]);
    let mut cmd = Command::new("bash");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("QP2P_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env("HOME", t.home())
        .stdin(Stdio::null())
        .args([
            "-c",
            "exec \"$0\" --json --ephemeral send \"$1\" <(printf 'from a pipe')",
            BIN,
            l.ticket.as_str(),
        ]);
    let r = Proc::spawn(cmd).finish(RUN_TIMEOUT);
    r.assert_code(0);
    let received = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(received["name"], "stdin", "{received}");
    assert_eq!(fs::read(out.join("stdin")).unwrap(), b"from a pipe");
}

/// Failures came out of order: the first one last, after the later ones.
#[test]
fn errors_come_in_command_line_order() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let l = t.listen(&out, &[]);
    let first = t.path().join("first-missing");
    let second = t.path().join("second-missing");
    let r = t.send(&[l.ticket.as_str(), path_str(&first), path_str(&second)]);
    r.assert_code(1);
    let messages: Vec<&str> = r
        .named("error")
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages.len(), 2, "{r}");
    assert!(messages[0].contains("first-missing"), "{r}");
    assert!(messages[1].contains("second-missing"), "{r}");
    let at = |name: &str| r.stderr.find(name).unwrap_or_else(|| panic!("{name}\n{r}"));
    assert!(at("first-missing") < at("second-missing"), "{r}");
}

/// `-q listen --bind 127.0.0.1:0` told nobody which port it got.
#[test]
fn quiet_listener_on_port_zero_still_tells_the_port() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut cmd = t.cmd();
    cmd.args([
        "-q",
        "--ephemeral",
        "listen",
        "--bind",
        "127.0.0.1:0",
        "--out",
    ])
    .arg(&out);
    let proc = Proc::spawn(cmd);
    let line = proc.next_stderr_line(START_TIMEOUT).expect("a line");
    let port: u16 = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"));
    assert_ne!(port, 0);
}

/// A new identity was made silently; it is said once, with where.
#[test]
fn a_new_identity_says_where_it_was_created() {
    let t = TestDir::new();
    let dir = t.path().join("id");
    let first = t.run(&["--identity", path_str(&dir), "id"]);
    first.assert_code(0);
    assert!(
        first
            .stderr
            .contains(&format!("created a new identity in {}", dir.display())),
        "{first}"
    );
    let again = t.run(&["--identity", path_str(&dir), "id"]);
    again.assert_code(0);
    assert!(!again.stderr.contains("created a new identity"), "{again}");
}

/// SIGTERM stopped the listener without a word.
#[test]
fn sigterm_says_it_stopped() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (listener, _) = human_listener(&t, &out, &[]);
    listener.signal(libc::SIGTERM);
    let l = listener.finish(EVENT_TIMEOUT);
    l.assert_code(143);
    assert!(l.stderr.contains("stopped (SIGTERM)"), "{l}");
}
