//! Ctrl-C and SIGTERM: a clean stop with the documented exit code, connections closed,
//! and nothing partial left in DIR.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::util::{list_all, random_bytes, TestDir, EVENT_TIMEOUT, MIB};

fn code(status: Option<std::process::ExitStatus>) -> Option<i32> {
    status.and_then(|s| s.code())
}

#[test]
fn idle_listener_exits_130_on_sigint_and_143_on_sigterm() {
    for (signal, expected) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let t = TestDir::new();
        let out = t.mkdir("out");
        let mut l = t.listen(&out, &[]);
        l.signal(signal);
        let status = l.wait_exit(Duration::from_secs(5));
        assert_eq!(
            code(status),
            Some(expected),
            "signal {signal}\n{}",
            l.describe()
        );
    }
}

/// The listener is stopped while a message is half received: it exits 143, nothing
/// is left in DIR, and the sender fails with exit 5 (stdin cannot be replayed).
#[test]
fn listener_stopped_mid_transfer_leaves_nothing() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut l = t.listen(&out, &[]);
    let mut sender = t.spawn_send(&[l.ticket.as_str(), "-"], Stdio::piped());
    let mut stdin = sender.take_stdin();
    stdin.write_all(&random_bytes(4 * MIB)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    l.signal(libc::SIGTERM);
    assert_eq!(
        code(l.wait_exit(Duration::from_secs(5))),
        Some(143),
        "{}",
        l.describe()
    );
    assert_eq!(
        list_all(&out),
        Vec::<std::path::PathBuf>::new(),
        "nothing left"
    );
    drop(stdin);
    let outcome = sender.finish(Duration::from_secs(60));
    outcome.assert_json_error(5);
}

/// The sender is interrupted half-way: it exits 130, the listener stores nothing and
/// goes on serving.
#[test]
fn sender_interrupted_mid_transfer_exits_130() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut l = t.listen(&out, &[]);
    let mut sender = t.spawn_send(&[l.ticket.as_str(), "-"], Stdio::piped());
    let mut stdin = sender.take_stdin();
    stdin.write_all(&random_bytes(4 * MIB)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    sender.signal(libc::SIGINT);
    let outcome = sender.finish(Duration::from_secs(10));
    drop(stdin);
    outcome.assert_code(130);
    l.wait_for("transfer_failed", EVENT_TIMEOUT);
    assert_eq!(
        list_all(&out),
        Vec::<std::path::PathBuf>::new(),
        "nothing left"
    );
    l.assert_running();
    let file = t.write("after.txt", b"still serving");
    t.send(&[l.ticket.as_str(), crate::util::path_str(&file)])
        .assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
}

/// A listener whose stderr reader has gone (`qp2p listen 2>&1 | true`) goes on
/// serving: a report that cannot be shown is no reason to stop, let alone to panic.
#[test]
fn a_closed_stderr_pipe_does_not_stop_the_listener() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let fp = dir.id(&[]);
    let port = crate::util::free_udp_port();
    let script = format!(
        "set -o pipefail; \"$0\" listen --bind 127.0.0.1:{port} --out '{}' --count 2 2>&1 | true",
        crate::util::path_str(&out)
    );
    // bash runs the listener with its stderr on a pipe that `true` closes at once.
    let (listener, _group) = pipeline(&dir, &script);
    let ticket = format!("{fp}@127.0.0.1:{port}");
    for name in ["a.txt", "b.txt"] {
        let file = dir.write(name, name.as_bytes());
        let sent = dir.send(&["--retry-for", "10s", &ticket, crate::util::path_str(&file)]);
        sent.assert_code(0);
    }
    let done = listener.finish(EVENT_TIMEOUT);
    done.assert_code(0);
    assert_eq!(list_all(&out).len(), 2, "both files landed");
}

/// `qp2p --json listen | head -1`: once the reader of the events has gone, the next
/// event cannot be written and the listener stops, as `yes | head` does, with exit 0
/// (the file whose report failed was stored first).
#[test]
fn json_events_without_a_reader_stop_the_listener() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let fp = dir.id(&[]);
    let port = crate::util::free_udp_port();
    let first = dir.path().join("first.json");
    let script = format!(
        "set -o pipefail; \"$0\" --json listen --bind 127.0.0.1:{port} --out '{}' | head -1 > '{}'",
        crate::util::path_str(&out),
        crate::util::path_str(&first),
    );
    let (listener, _group) = pipeline(&dir, &script);
    let file = dir.write("a.txt", b"stored, then the report has nowhere to go");
    let ticket = format!("{fp}@127.0.0.1:{port}");
    dir.send(&["--retry-for", "10s", &ticket, crate::util::path_str(&file)])
        .assert_code(0);
    let done = listener.finish(EVENT_TIMEOUT);
    done.assert_code(0);
    assert!(
        done.stderr.contains("stdout was closed by its reader"),
        "{}",
        done.stderr
    );
    let first = std::fs::read_to_string(&first).unwrap();
    assert!(first.contains("\"listening\""), "{first}");
    assert_eq!(list_all(&out).len(), 1, "the file landed");
}

/// Runs a bash pipeline (`$0` is the qp2p binary) in the clean environment of the
/// test's own commands, in a process group of its own; the guard kills the whole group,
/// so a listener inside is never left behind when the test fails.
fn pipeline(dir: &TestDir, script: &str) -> (crate::util::Proc, KillGroup) {
    use std::os::unix::process::CommandExt;
    let mut bash = std::process::Command::new("bash");
    bash.args(["-c", script, crate::util::BIN]);
    for (key, value) in dir.cmd().get_envs() {
        match value {
            Some(v) => bash.env(key, v),
            None => bash.env_remove(key),
        };
    }
    bash.current_dir(dir.home())
        .stdin(Stdio::null())
        .process_group(0);
    let proc = crate::util::Proc::spawn(bash);
    let group = KillGroup(proc.pid() as i32);
    (proc, group)
}

/// Kills a process group when dropped.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals that process group; a group that
        // has already exited yields ESRCH, which is fine.
        unsafe {
            libc::kill(-self.0, libc::SIGKILL);
        }
    }
}
