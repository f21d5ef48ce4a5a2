//! What a run of `listen` takes and when it ends (`--once`, `--count`), what a sender
//! hears when the listener will not take a message, and interrupts on either side:
//! told at once, with the reason, never after an idle timeout or a 30 s retry.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use crate::util::{list_files, list_landed, path_str, random_bytes, TestDir, MIB, RUN_TIMEOUT};

/// A message that breaks off after some of it reached stdout ends the listener with
/// exit 5 and a line saying so: `| tar x` must not see a next message appended to a
/// partial one, nor an exit 0 (found in a tryout: 52 MB of an interrupted stdin, then
/// the next message, then exit 0).
#[test]
fn a_message_broken_off_on_stdout_ends_the_listener_with_exit_5() {
    let t = TestDir::new();
    let (listener, ticket) = t.listen_stdout(&["--count", "2"]);
    let mut sender = t.spawn_send(&[ticket.as_str(), "-"], Stdio::piped());
    let mut stdin = sender.take_stdin();
    stdin.write_all(&random_bytes(2 * MIB)).unwrap();
    // Some of it reaches the listener's stdout, then the sender is interrupted.
    std::thread::sleep(Duration::from_millis(500));
    sender.signal(libc::SIGINT);
    sender.finish(Duration::from_secs(10)).assert_code(130);
    drop(stdin);
    let out = listener.finish(Duration::from_secs(10));
    assert_eq!(out.code, Some(5), "listener must fail, not go on\n{out}");
    assert!(
        out.stderr.contains("went to stdout") && out.stderr.contains("incomplete"),
        "one clear line saying stdout is incomplete\n{out}"
    );
    assert!(
        !out.stdout.is_empty(),
        "the test meant bytes to reach stdout"
    );
}

/// `listen --once --out DIR` takes one `send` run: a whole directory lands, both exit
/// 0, and the sender is told of no failure.
#[test]
fn once_takes_one_whole_send_run() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    for name in ["a", "b", "c"] {
        t.write(&format!("tree/{name}.txt"), name.as_bytes());
    }
    let mut l = t.listen(&out, &["--once"]);
    let r = t.send(&[l.ticket.as_str(), path_str(&t.path().join("tree"))]);
    r.assert_code(0);
    assert_eq!(r.named("sent").len(), 3, "{r}");
    let status = l.wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", l.describe());
    assert_eq!(
        list_files(&out),
        ["tree/a.txt", "tree/b.txt", "tree/c.txt"]
            .map(PathBuf::from)
            .to_vec()
    );
}

/// `--once --stdout` takes exactly one message: stdout cannot tell one from the
/// next. The second file of the same send is refused at once (exit 5, no retries), and
/// stdout holds the first file only.
#[test]
fn once_on_stdout_takes_one_message_and_refuses_the_next_at_once() {
    let t = TestDir::new();
    let a = t.write("src/a.txt", b"first message");
    let b = t.write("src/b.txt", b"second message");
    let (listener, ticket) = t.listen_stdout(&["--once"]);
    let r = t.send(&[ticket.as_str(), path_str(&a), path_str(&b)]);
    r.assert_json_error(5);
    assert!(
        r.elapsed < Duration::from_secs(5),
        "refused at once, not after retries: {:?}\n{r}",
        r.elapsed
    );
    assert_eq!(r.named("sent").len(), 1, "{r}");
    let out = listener.finish(Duration::from_secs(10));
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout, b"first message", "{out}");
}

/// `--count 1`: the message after the first is refused with a code the sender does
/// not retry (exit 5 within seconds, the reason named), not `no answer` after 30 s.
#[test]
fn a_listener_that_takes_no_more_says_so_at_once() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let a = t.write("src/a.txt", b"one");
    let b = t.write("src/b.txt", b"two");
    let c = t.write("src/c.txt", b"three");
    let mut l = t.listen(&out, &["--count", "1"]);
    let r = t.send(&[l.ticket.as_str(), path_str(&a), path_str(&b), path_str(&c)]);
    r.assert_json_error(5);
    assert!(r.elapsed < Duration::from_secs(5), "{:?}\n{r}", r.elapsed);
    let error = r.one("error")["message"].as_str().unwrap().to_string();
    assert!(
        error.contains("takes no more messages")
            && error.contains("1 more not sent")
            && !error.contains(": )"),
        "{error}"
    );
    assert_eq!(
        l.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0),
        "{}",
        l.describe()
    );
    assert_eq!(list_files(&out), vec![PathBuf::from("a.txt")]);
}

/// Ctrl-C on a sender in the middle of a file: the listener hears "sender
/// interrupted" within a second or two (not after its 30 s idle timeout), and the
/// sender says what was not sent.
#[test]
fn an_interrupted_sender_is_reported_at_once() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (mut l, sender) = sending_a_big_file(&t, &out);
    sender.signal(libc::SIGINT);
    let r = sender.finish(Duration::from_secs(10));
    r.assert_code(130);
    let interrupted = r.one("interrupted");
    assert_eq!(interrupted["name"], "big.bin", "{r}");
    assert_eq!(interrupted["not_sent"], 1, "{r}");
    let failed = l.wait_for("transfer_failed", Duration::from_secs(3));
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("cancelled") || error.contains("interrupted"),
        "{failed}"
    );
    // Nothing under a name; what arrived is kept hidden for a resume.
    assert_eq!(list_landed(&out), Vec::<PathBuf>::new(), "nothing left");
    l.assert_running();
}

/// The listener is stopped (SIGTERM) while a file is on its way: the sender shows the
/// listener's reason and gives up at once (exit 5) instead of retrying for 30 s
/// behind a frozen bar.
#[test]
fn a_stopped_listener_is_reported_with_its_reason() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (mut l, sender) = sending_a_big_file(&t, &out);
    l.signal(libc::SIGTERM);
    assert_eq!(
        l.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(143)
    );
    let r = sender.finish(Duration::from_secs(10));
    r.assert_json_error(5);
    let error = r.one("error")["message"].as_str().unwrap().to_string();
    assert!(error.contains("shutting down"), "{error}");
    assert!(r.elapsed < Duration::from_secs(8), "{:?}\n{r}", r.elapsed);
    // Nothing under a name; what arrived is kept hidden for a resume.
    assert_eq!(list_landed(&out), Vec::<PathBuf>::new(), "nothing left");
}

/// Nobody listening: the error names the whole wait and the attempts ("no answer from
/// ADDR after 2000ms, 4 attempts"), not the last slice of the budget
/// ("within 21ms 887us 605ns").
#[test]
fn giving_up_names_the_budget_and_the_attempts() {
    let t = TestDir::new();
    let file = t.write("src/f.txt", b"nobody home");
    let addr = format!("127.0.0.1:{}", crate::util::free_udp_port());
    let r = t.send(&[
        "--retry-for",
        "2s",
        "--connect-timeout",
        "300ms",
        addr.as_str(),
        path_str(&file),
    ]);
    r.assert_json_error(3);
    let error = r.one("error")["message"].as_str().unwrap().to_string();
    let tail = error
        .split(&format!("no answer from {addr} after "))
        .nth(1)
        .unwrap_or_else(|| panic!("{error}"));
    let (wait, attempts) = tail.split_once(", ").unwrap_or_else(|| panic!("{error}"));
    let ms: u64 = wait
        .strip_suffix("ms")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("whole milliseconds below 10 s: {error}"));
    assert!((1000..4000).contains(&ms), "{error}");
    let n: u32 = attempts
        .strip_suffix(" attempts")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{error}"));
    assert!(n >= 2, "{error}");
}

/// Stdin broken off to a `--stdout` listener that runs on (no `--once`): the same.
/// Kept apart from the first test so a regression names which half broke.
#[test]
fn the_next_message_is_never_appended_to_a_broken_one() {
    let t = TestDir::new();
    let (listener, ticket) = t.listen_stdout(&[]);
    let mut sender = t.spawn_send(&[ticket.as_str(), "-"], Stdio::piped());
    let mut stdin = sender.take_stdin();
    stdin.write_all(&random_bytes(MIB)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    sender.signal(libc::SIGINT);
    let _ = sender.finish(Duration::from_secs(10));
    drop(stdin);
    let small = t.write("src/small.txt", b"small");
    let r = t.send(&[ticket.as_str(), path_str(&small)]);
    assert_ne!(r.code, Some(0), "{r}");
    let out = listener.finish(RUN_TIMEOUT);
    assert_eq!(out.code, Some(5), "{out}");
    assert!(
        !out.stdout.ends_with(b"small"),
        "the next message was appended to the broken one"
    );
}

/// A listener into `out`, and a sender 700 ms into a 2 GiB file to it: mid-transfer.
fn sending_a_big_file(
    t: &TestDir,
    out: &std::path::Path,
) -> (crate::util::Listener, crate::util::Proc) {
    let big = big_sparse_file(t);
    let l = t.listen(out, &[]);
    let sender = t.spawn_send(&[l.ticket.as_str(), path_str(&big)], Stdio::null());
    std::thread::sleep(Duration::from_millis(700));
    (l, sender)
}

/// A 2 GiB file that takes no disk: a sparse file reads as zeros at full speed, so a
/// send of it is still running when the test interrupts it, on any machine.
fn big_sparse_file(t: &TestDir) -> PathBuf {
    let path = t.path().join("src/big.bin");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(2 << 30))
        .unwrap();
    path
}

/// On a terminal, `send` says what it waits for while it connects and between
/// attempts, instead of a frozen `0 B … ETA 0s` bar. Run under `script`, which gives
/// the sender a terminal.
#[test]
fn a_terminal_is_told_about_connecting_and_retrying() {
    let t = TestDir::new();
    let file = t.write("src/f.txt", b"nobody home");
    let addr = format!("127.0.0.1:{}", crate::util::free_udp_port());
    let line = format!(
        "{} --ephemeral send --retry-for 2s --connect-timeout 300ms {addr} {}",
        crate::util::BIN,
        path_str(&file)
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", line.as_str(), "/dev/null"]);
    cmd.env("HOME", t.home())
        .env("XDG_CONFIG_HOME", t.home().join("config"));
    let r = crate::util::Proc::spawn(cmd).finish(Duration::from_secs(20));
    let screen = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(screen.contains(&format!("connecting to {addr}")), "{r}");
    assert!(
        screen.contains("attempt 1 failed") && screen.contains("next try in"),
        "{r}"
    );
    assert!(
        screen.contains(&format!("connecting to {addr}, attempt 2")),
        "{r}"
    );
    assert!(
        !screen.contains("ETA"),
        "no byte bar before a connection\n{r}"
    );
}

/// Stdin from a terminal: `send` says once that it reads stdin and how to end it, and
/// what was typed arrives.
#[test]
fn stdin_from_a_terminal_says_how_to_end_it() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut l = t.listen(&out, &["--count", "1"]);
    let line = format!("{} --ephemeral send {}", crate::util::BIN, l.ticket);
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", line.as_str(), "/dev/null"]);
    cmd.env("HOME", t.home())
        .env("XDG_CONFIG_HOME", t.home().join("config"));
    cmd.stdin(Stdio::piped());
    let mut typist = crate::util::Proc::spawn(cmd);
    let mut keys = typist.take_stdin();
    std::thread::sleep(Duration::from_millis(800));
    keys.write_all(b"typed by hand\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    keys.write_all(b"\x04").unwrap();
    let r = typist.finish(Duration::from_secs(20));
    drop(keys);
    let screen = String::from_utf8_lossy(&r.stdout).to_string();
    assert_eq!(
        screen.matches("reading stdin, Ctrl-D to end").count(),
        1,
        "{r}"
    );
    l.wait_for("received", Duration::from_secs(10));
    assert_eq!(
        std::fs::read(out.join("stdin")).unwrap(),
        b"typed by hand\n",
        "{r}"
    );
}
