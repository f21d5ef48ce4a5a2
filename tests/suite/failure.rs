//! Things going wrong: a sender killed mid-transfer, a listener that is not up
//! yet or not there at all, bad command lines. Every failure must be reported as
//! documented (exit code, JSON `error` event) and leave nothing half-written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{
    blake3_file, digest, free_udp_port, list_files, path_str, random_bytes, Listener, Proc,
    TestDir, EVENT_TIMEOUT, MIB, RUN_TIMEOUT,
};

/// Starts `send TICKET -`, feeds it 8 MiB without closing its stdin, waits 300 ms
/// and kills it with SIGKILL. DIR must show no file at any time.
fn kill_sender_mid_transfer(t: &TestDir, l: &Listener, out: &Path) {
    let mut sender = t.spawn_send(&[l.ticket.as_str(), "-"], Stdio::piped());
    let stdin = sender.take_stdin();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut stdin = stdin;
        let res = stdin.write_all(&random_bytes(8 * MIB));
        // Hand the pipe back open: closing it would end the message cleanly.
        let _ = tx.send((stdin, res));
    });
    let (stdin, res) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the sender did not read 8 MiB of stdin within 30 s");
    res.expect("write 8 MiB to the sender's stdin");
    thread::sleep(Duration::from_millis(300));
    assert!(
        sender.wait_timeout(Duration::ZERO).is_none(),
        "the sender exited although its stdin is still open\n{}",
        sender.finish(Duration::ZERO)
    );
    assert_eq!(
        list_files(out),
        Vec::<PathBuf>::new(),
        "partial data visible in DIR mid-transfer"
    );
    sender.kill();
    drop(stdin);
}

/// A sender killed mid-transfer leaves no file in DIR (not even a hidden one), and
/// the listener then takes a normal file from a second sender.
#[test]
fn killed_sender_leaves_nothing_and_listener_goes_on() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let mut l = t.listen(&out, &[]);
    kill_sender_mid_transfer(&t, &l, &out);

    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert_eq!(
            list_files(&out),
            Vec::<PathBuf>::new(),
            "DIR after the sender was killed"
        );
        if let Some(ev) = l.next_event(Duration::from_millis(100)) {
            assert_ne!(ev["event"], "received", "{ev}\n{}", l.describe());
        }
    }
    l.assert_running();

    let (file, sha) = t.random_file("src/after.bin", 100_000);
    t.send(&[l.ticket.as_str(), path_str(&file)]).assert_code(0);
    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&recv), sha.as_str());
    assert_eq!(list_files(&out), vec![PathBuf::from("after.bin")]);
    assert_eq!(blake3_file(&out.join("after.bin")), sha);
}

/// Once the dead sender's connection times out, the listener reports the message
/// as failed, and still nothing is in DIR.
#[test]
fn killed_sender_is_reported_as_failed() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let mut l = t.listen(&out, &["--idle-timeout", "2s"]);
    kill_sender_mid_transfer(&t, &l, &out);
    let ev = l.wait_for("transfer_failed", Duration::from_secs(15));
    assert_eq!(ev["name"], "stdin", "{ev}");
    assert!(
        ev["error"].as_str().is_some_and(|e| !e.is_empty()),
        "transfer_failed without error text: {ev}"
    );
    assert_eq!(list_files(&out), Vec::<PathBuf>::new());
    l.assert_running();
}

/// `send` started 2 s before the listener exists reaches it by retrying.
#[test]
fn listener_starting_late_is_reached_by_retry() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (file, sha) = t.random_file("src/late.bin", 100_000);
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut sender = t.spawn_send(&[addr.as_str(), path_str(&file)], Stdio::null());
    thread::sleep(Duration::from_secs(2));
    if sender.wait_timeout(Duration::ZERO).is_some() {
        panic!(
            "send gave up before the listener started\n{}",
            sender.finish(Duration::ZERO)
        );
    }
    let mut l = t.listen_args(&[
        "--json",
        "--ephemeral",
        "listen",
        "--bind",
        addr.as_str(),
        "--out",
        path_str(&out),
    ]);
    let r = sender.finish(RUN_TIMEOUT);
    r.assert_code(0);
    let sent = r.one("sent");
    assert!(
        sent["retries"].as_u64().is_some_and(|n| n >= 1),
        "retries must be counted: {sent}"
    );
    assert_eq!(digest(sent), sha.as_str());
    assert_eq!(sent["peer_fingerprint"], l.fingerprint.as_str());
    l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(list_files(&out), vec![PathBuf::from("late.bin")]);
    assert_eq!(blake3_file(&out.join("late.bin")), sha);
}

/// `--retry-for 0` against a port where nobody listens: exit 3 after one attempt,
/// i.e. about the 2 s connect timeout, with a JSON error as the last line.
#[test]
fn no_retry_against_nothing_fails_fast() {
    let t = TestDir::new();
    let file = t.write("src/f.txt", b"nobody home");
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let r = t.send(&["--retry-for", "0", addr.as_str(), path_str(&file)]);
    r.assert_json_error(3);
    assert!(
        r.elapsed < Duration::from_secs(6),
        "took {:?} to give up\n{r}",
        r.elapsed
    );
    assert!(r.named("sent").is_empty(), "{r}");
}

/// `--connect-timeout` bounds one handshake attempt.
#[test]
fn connect_timeout_is_honoured() {
    let t = TestDir::new();
    let file = t.write("src/f.txt", b"nobody home");
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let r = t.send(&[
        "--retry-for",
        "0",
        "--connect-timeout",
        "500ms",
        addr.as_str(),
        path_str(&file),
    ]);
    r.assert_json_error(3);
    assert!(
        r.elapsed < Duration::from_millis(1900),
        "a 500ms connect timeout took {:?}\n{r}",
        r.elapsed
    );
}

/// `--retry-for 3s` against nothing: it gives up (exit 3) once the budget is spent,
/// not after the 30 s default.
#[test]
fn retry_budget_is_respected() {
    let t = TestDir::new();
    let file = t.write("src/f.txt", b"nobody home");
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let r = t.send(&["--retry-for", "3s", addr.as_str(), path_str(&file)]);
    r.assert_json_error(3);
    assert!(
        r.elapsed >= Duration::from_millis(1500) && r.elapsed < Duration::from_secs(8),
        "a 3s retry budget took {:?}\n{r}",
        r.elapsed
    );
}

/// A path that does not exist: a clean error with matching JSON, nothing sent.
#[test]
fn missing_file_fails_cleanly() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let mut l = t.listen(&out, &[]);
    let missing = t.path().join("src/no-such-file");
    let r = t.send(&[l.ticket.as_str(), path_str(&missing)]);
    let code = r.code.unwrap_or_else(|| panic!("no exit code\n{r}"));
    assert_ne!(code, 0, "{r}");
    r.assert_json_error(code);
    l.assert_no_event("received", Duration::from_millis(300));
    assert_eq!(list_files(&out), Vec::<PathBuf>::new());
}

/// Bad command lines exit 2, quickly, with a message on stderr, and with `--json`
/// never put a non-JSON line on stdout.
#[test]
fn usage_errors_exit_2() {
    let t = TestDir::new();
    let file = t.write("src/f.txt", b"x");
    let f = path_str(&file);
    let cases: &[&[&str]] = &[
        &["--json", "--no-such-flag", "id"],
        &["--json", "--ephemeral", "no-such-subcommand"],
        &[
            "--json",
            "--ephemeral",
            "send",
            "--no-such-flag",
            "127.0.0.1:1",
            f,
        ],
        &["--json", "--ephemeral", "send"],
        &[
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--stdout",
        ],
        &[
            "--ephemeral",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--stdout",
            "--json",
        ],
        &[
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--out",
            "x",
            "--stdout",
        ],
        &[
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--once",
            "--count",
            "2",
        ],
        &[
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--max-size",
            "lots",
        ],
        &[
            "--json",
            "--ephemeral",
            "send",
            "--retry-for",
            "soon",
            "127.0.0.1:1",
            f,
        ],
        &[
            "--json",
            "--ephemeral",
            "send",
            "--congestion",
            "fast",
            "127.0.0.1:1",
            f,
        ],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let r = t.run_timeout(args, Duration::from_secs(10));
        let ok = r.code == Some(2)
            && !r.stderr.trim().is_empty()
            && !r.stderr.contains("panicked")
            && r.non_json_lines().is_empty();
        if !ok {
            failures.push(format!("{r}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad command lines did not exit 2 cleanly:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// Without `--json`, a failed send prints one error line (naming the address) on
/// stderr, and nothing on stdout.
#[test]
fn human_mode_error_goes_to_stderr() {
    let t = TestDir::new();
    let file = t.write("src/f.txt", b"nobody home");
    let addr = format!("127.0.0.1:{}", free_udp_port());
    let mut cmd = t.cmd();
    cmd.args([
        "--ephemeral",
        "send",
        "--retry-for",
        "0",
        addr.as_str(),
        path_str(&file),
    ]);
    let r = Proc::spawn(cmd).finish(RUN_TIMEOUT);
    r.assert_code(3);
    assert!(r.stdout.is_empty(), "error output on stdout\n{r}");
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line on stderr\n{r}");
    assert!(
        lines[0].contains(addr.as_str()),
        "the error should name {addr}\n{r}"
    );
    r.assert_no_panic();
}
