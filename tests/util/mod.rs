//! Helpers for the integration tests: most run the real `qp2p` binary as separate
//! processes; [`server`] starts the library's server in-process.
//!
//! - [`TestDir`] is a scratch directory per test, with a `HOME` of its own, and
//!   builds every `qp2p` command with `RUST_LOG` and every `QP2P_*` variable removed
//!   from the child's environment (but `QP2P_PORTABLE_STORE`, which CI sets to run the
//!   suites through the store's portable way).
//! - [`Proc`] is a running child whose stdout and stderr are drained on background
//!   threads. It is killed (SIGKILL) and reaped on drop, also when a test panics, and
//!   [`Proc::finish`] kills it when its time is up, so no test can hang.
//! - [`Listener`] is a `qp2p --json listen` that has reported its `listening` event,
//!   with its address, fingerprint and ticket, and a queue of its later events.
//! - File helpers: random files, digests (BLAKE3 as `b3sum` prints it, the default on
//!   the wire; SHA-256 for `--digest sha256`), recursive listings (hidden files
//!   included). [`digest`] reads the value an event names in its `digest` field.
//! - [`liar`]: a lying introducer and relay on loopback, built from the library,
//!   that pairs every sender with one wrong peer (the identity tests of `nat`).
//! - [`relay`]: a UDP relay on loopback that drops, delays, duplicates, reorders or
//!   black-holes datagrams on command, for the fault tests.
//! - [`server`]: a listener in-process through the library's API, for the suites that
//!   test the protocol and need no binary.
//! - [`netns`]: a router with NAT and miniupnpd between a `wan` and a `lan` network
//!   namespace, for the UPnP tests (root only).
//! - [`nat`]: two NAT routers and a public `wan` between them, for the introducer
//!   and hole-punching tests (root only).

pub mod liar;
#[cfg(unix)]
pub mod nat;
#[cfg(unix)]
pub mod netns;
pub mod relay;
pub mod server;

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The binary under test, built by cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_qp2p");

/// How long a listener may take to report that it is listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Hard limit for one ordinary `qp2p` run (a send, `id`, a usage error).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a listener may take to report a message after the sender is done.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One MiB.
pub const MIB: usize = 1024 * 1024;

/// A scratch directory for one test, removed when dropped.
///
/// Children get `HOME` and `XDG_CONFIG_HOME` in a second temporary directory (also
/// their working directory), so nothing a test runs can touch the user's own
/// identity, and the scratch directory holds only what the test puts there.
pub struct TestDir {
    root: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        let root = tempfile::Builder::new()
            .prefix("qp2p-test-")
            .tempdir()
            .expect("create test dir");
        let home = tempfile::Builder::new()
            .prefix("qp2p-home-")
            .tempdir()
            .expect("create home dir");
        TestDir { root, home }
    }

    /// The scratch directory (canonical, so paths reported by the binary compare).
    pub fn path(&self) -> PathBuf {
        fs::canonicalize(self.root.path()).expect("canonicalize test dir")
    }

    /// `HOME` and working directory of every child started from this directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Creates `rel` (and its parents) under the scratch directory.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let dir = self.path().join(rel);
        fs::create_dir_all(&dir).expect("create dir");
        dir
    }

    /// Writes `contents` to `rel` under the scratch directory, creating parents.
    pub fn write(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).expect("create parent dir");
        fs::write(&path, contents).expect("write file");
        path
    }

    /// Writes `size` random bytes to `rel` and returns the path and its BLAKE3 (hex).
    pub fn random_file(&self, rel: &str, size: usize) -> (PathBuf, String) {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).expect("create parent dir");
        let sha = write_random(&path, size);
        (path, sha)
    }

    /// A `qp2p` command with a clean environment; stdin is /dev/null unless changed.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("RUST_LOG");
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            // Kept: CI sets it to run whole suites through the portable store.
            if name.starts_with("QP2P_") && name != "QP2P_PORTABLE_STORE" {
                cmd.env_remove(key);
            }
        }
        // The default identity, if anything asks for one, goes to the test's own
        // home. QP2P_HOME stays unset here: tests that need it set it themselves.
        cmd.env("HOME", self.home());
        cmd.env("XDG_CONFIG_HOME", self.home().join("config"));
        cmd.current_dir(self.home());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `qp2p ARGS` to completion (killed after [`RUN_TIMEOUT`]).
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Outcome {
        self.run_timeout(args, RUN_TIMEOUT)
    }

    /// Runs `qp2p ARGS` to completion, killed after `timeout`.
    pub fn run_timeout<S: AsRef<OsStr>>(&self, args: &[S], timeout: Duration) -> Outcome {
        let mut cmd = self.cmd();
        cmd.args(args);
        Proc::spawn(cmd).finish(timeout)
    }

    /// Runs `qp2p --json --ephemeral send ARGS` to completion.
    pub fn send<S: AsRef<OsStr>>(&self, args: &[S]) -> Outcome {
        self.run(&send_args(args))
    }

    /// Starts `qp2p --json --ephemeral send ARGS` without waiting for it.
    pub fn spawn_send<S: AsRef<OsStr>>(&self, args: &[S], stdin: Stdio) -> Proc {
        let mut cmd = self.cmd();
        cmd.args(send_args(args)).stdin(stdin);
        Proc::spawn(cmd)
    }

    /// Starts `qp2p --json --ephemeral listen --bind 127.0.0.1:0 --out OUT EXTRA`.
    pub fn listen(&self, out: &Path, extra: &[&str]) -> Listener {
        let mut args: Vec<String> = ["--json", "--ephemeral", "listen", "--bind", "127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push("--out".into());
        args.push(path_str(out).into());
        args.extend(extra.iter().map(|s| s.to_string()));
        self.listen_args(&args)
    }

    /// Starts `qp2p --ephemeral listen --bind 127.0.0.1:0 --stdout EXTRA` (no `--json`:
    /// stdout carries payload) and reads its ticket off stderr.
    pub fn listen_stdout(&self, extra: &[&str]) -> (Proc, String) {
        let mut args = vec!["--stdout"];
        args.extend_from_slice(extra);
        self.listen_human(&args)
    }

    /// Starts `qp2p --ephemeral listen --bind 127.0.0.1:0 EXTRA` without `--json` and
    /// reads its address and ticket off its human lines on stderr.
    pub fn listen_human(&self, extra: &[&str]) -> (Proc, String) {
        let mut cmd = self.cmd();
        cmd.args(["--ephemeral", "listen", "--bind", "127.0.0.1:0"]);
        cmd.args(extra);
        let listener = Proc::spawn(cmd);
        // Without --json the listener says where it is on stderr, as text.
        let mut addr = None;
        let mut ticket = None;
        let deadline = Instant::now() + START_TIMEOUT;
        while addr.is_none() || ticket.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = listener.next_stderr_line(left) else {
                panic!(
                    "no 'listening on' and 'ticket' lines on stderr\n{}",
                    listener.stderr_text()
                );
            };
            if let Some(rest) = line.trim().strip_prefix("listening on ") {
                addr = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(rest) = line.trim().strip_prefix("ticket ") {
                ticket = rest.split_whitespace().next().map(str::to_string);
            }
        }
        let (addr, ticket) = (addr.unwrap(), ticket.unwrap());
        assert!(
            ticket.ends_with(&format!("@{addr}")),
            "ticket {ticket} for {addr}"
        );
        (listener, ticket)
    }

    /// Starts `qp2p ARGS`, which must be a `--json listen`, and waits for `listening`.
    pub fn listen_args<S: AsRef<OsStr>>(&self, args: &[S]) -> Listener {
        let mut cmd = self.cmd();
        cmd.args(args);
        Listener::start(Proc::spawn(cmd))
    }

    /// The fingerprint printed by `qp2p ARGS id` (ARGS picks the identity).
    pub fn id(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.push("id");
        let out = self.run(&all);
        out.assert_code(0);
        let text = String::from_utf8(out.stdout.clone()).expect("id output is UTF-8");
        let fp = text.trim_end_matches('\n').to_string();
        assert_fingerprint(&fp);
        fp
    }

    /// The fingerprint of a fresh identity that belongs to nobody in the test.
    pub fn stranger_fingerprint(&self) -> String {
        self.id(&["--ephemeral"])
    }
}

fn send_args<S: AsRef<OsStr>>(args: &[S]) -> Vec<std::ffi::OsString> {
    let mut all: Vec<std::ffi::OsString> =
        vec!["--json".into(), "--ephemeral".into(), "send".into()];
    all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
    all
}

/// A path as `&str` (every path the tests make is UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The signal that ended a process, if one did (unix only).
#[cfg(unix)]
fn signal_of(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// The signal that ended a process, if one did (unix only).
#[cfg(not(unix))]
fn signal_of(_status: ExitStatus) -> Option<i32> {
    None
}

/// Sets the permission bits of `path` (unix only; Windows has no such modes and qp2p
/// checks none there).
pub fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// Asserts that `fp` looks like a fingerprint: 52 chars of lowercase RFC 4648 base32.
pub fn assert_fingerprint(fp: &str) {
    assert_eq!(fp.len(), 52, "fingerprint {fp:?} is not 52 chars long");
    assert!(
        fp.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)),
        "fingerprint {fp:?} is not lowercase base32"
    );
}

/// `fp` with one character (in the middle, so every bit of it counts) changed to
/// another valid base32 character.
pub fn corrupt_fingerprint(fp: &str) -> String {
    let mut chars: Vec<char> = fp.chars().collect();
    let i = 20;
    chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
    let bad: String = chars.into_iter().collect();
    assert_ne!(bad, fp);
    bad
}

/// Collects everything a pipe delivers, and hands out its lines as they arrive.
struct Pipe {
    buf: Arc<Mutex<Vec<u8>>>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Pipe {
    fn new<R: Read + Send + 'static>(mut r: R) -> Pipe {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let shared = Arc::clone(&buf);
        let reader = thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            let mut line = Vec::new();
            loop {
                let n = match r.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                shared.lock().unwrap().extend_from_slice(&chunk[..n]);
                for &b in &chunk[..n] {
                    if b == b'\n' {
                        send_line(&tx, &mut line);
                    } else {
                        line.push(b);
                    }
                }
            }
            if !line.is_empty() {
                send_line(&tx, &mut line);
            }
        });
        Pipe {
            buf,
            lines,
            reader: Some(reader),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.buf.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Waits (bounded) for the reader to see EOF; the child must be gone by now.
    fn join(&mut self) {
        if let Some(reader) = self.reader.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !reader.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if reader.is_finished() {
                let _ = reader.join();
            }
        }
    }
}

fn send_line(tx: &Sender<String>, line: &mut Vec<u8>) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let _ = tx.send(String::from_utf8_lossy(line).into_owned());
    line.clear();
}

/// A running `qp2p`, killed and reaped when dropped.
pub struct Proc {
    child: Child,
    what: String,
    started: Instant,
    stdin: Option<ChildStdin>,
    stdout: Pipe,
    stderr: Pipe,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr piped.
    pub fn spawn(mut cmd: Command) -> Proc {
        let what = format!(
            "qp2p {}",
            cmd.get_args()
                .map(|a| format!("{:?}", a.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" ")
        );
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to spawn {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = Pipe::new(child.stdout.take().unwrap());
        let stderr = Pipe::new(child.stderr.take().unwrap());
        Proc {
            child,
            what,
            started: Instant::now(),
            stdin,
            stdout,
            stderr,
        }
    }

    /// The child's stdin (only when it was spawned with `Stdio::piped()`).
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin was not piped")
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the child.
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// The next stderr line, if one comes within `timeout`.
    pub fn next_stderr_line(&self, timeout: Duration) -> Option<String> {
        self.stderr.lines.recv_timeout(timeout).ok()
    }

    /// The next stdout line, if one comes within `timeout` (lines read here are still
    /// in [`Outcome::stdout`] later).
    pub fn next_stdout_line(&self, timeout: Duration) -> Option<String> {
        self.stdout.lines.recv_timeout(timeout).ok()
    }

    /// Waits for the child to exit, killing it after `timeout`, and collects what it
    /// printed. Closes its stdin first if the test still holds it.
    pub fn finish(mut self, timeout: Duration) -> Outcome {
        drop(self.stdin.take());
        let status = self.wait_timeout(timeout);
        let timed_out = status.is_none();
        if timed_out {
            self.kill();
        }
        let elapsed = self.started.elapsed();
        self.stdout.join();
        self.stderr.join();
        let status = status.or_else(|| self.child.try_wait().ok().flatten());
        let stdout = self.stdout.bytes();
        let events = parse_events(&stdout);
        Outcome {
            what: self.what.clone(),
            code: status.and_then(|s| s.code()),
            signal: status.and_then(signal_of),
            timed_out,
            elapsed,
            stdout,
            stderr: self.stderr.text(),
            events,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The JSON objects among `stdout`'s lines (lines that are not JSON are skipped here;
/// tests that care check [`Outcome::non_json_lines`]).
fn parse_events(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

/// What a finished `qp2p` run did.
pub struct Outcome {
    pub what: String,
    /// Exit code; `None` when killed by a signal (including by our timeout).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    pub stdout: Vec<u8>,
    pub stderr: String,
    /// Every stdout line that is a JSON object, in order.
    pub events: Vec<Value>,
}

impl Outcome {
    /// Panics, showing the whole run, unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) {
        assert!(
            !self.timed_out && self.code == Some(code),
            "expected exit code {code}\n{self}"
        );
    }

    /// Events named `name`, in order.
    pub fn named(&self, name: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == name).collect()
    }

    /// The only event named `name`.
    pub fn one(&self, name: &str) -> &Value {
        let found = self.named(name);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {name:?} event\n{self}"
        );
        found[0]
    }

    /// Stdout lines that are not a JSON object.
    pub fn non_json_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.stdout)
            .lines()
            .filter(|l| {
                !serde_json::from_str::<Value>(l)
                    .map(|v| v.is_object())
                    .unwrap_or(false)
            })
            .map(str::to_string)
            .collect()
    }

    /// For a failed `--json` run: every stdout line is JSON, the last one is an
    /// `error` event whose `exit_code` is the process's exit code and whose message
    /// is not empty, stderr has the error too, and nothing panicked.
    pub fn assert_json_error(&self, code: i32) {
        self.assert_code(code);
        assert!(
            self.non_json_lines().is_empty(),
            "stdout of a --json run has non-JSON lines {:?}\n{self}",
            self.non_json_lines()
        );
        let last = self
            .events
            .last()
            .unwrap_or_else(|| panic!("no JSON event at all\n{self}"));
        assert_eq!(last["event"], "error", "last event is not an error\n{self}");
        assert_eq!(last["exit_code"], code, "error event exit_code\n{self}");
        let message = last["message"].as_str().unwrap_or("");
        assert!(
            !message.trim().is_empty(),
            "error event without message\n{self}"
        );
        assert_eq!(
            self.named("error").len(),
            1,
            "more than one error event\n{self}"
        );
        assert!(!self.stderr.trim().is_empty(), "nothing on stderr\n{self}");
        self.assert_no_panic();
    }

    /// Nothing on stderr looks like a Rust panic or backtrace.
    pub fn assert_no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "the binary panicked\n{self}"
        );
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.what)?;
        writeln!(
            f,
            "exit code: {:?}, signal: {:?}, timed out: {}, elapsed: {:?}",
            self.code, self.signal, self.timed_out, self.elapsed
        )?;
        let stdout = String::from_utf8_lossy(&self.stdout);
        let stdout: String = stdout.chars().take(4000).collect();
        writeln!(f, "--- stdout ---\n{stdout}")?;
        let stderr: String = self.stderr.chars().take(4000).collect();
        write!(f, "--- stderr ---\n{stderr}")
    }
}

/// A `qp2p --json listen` that has reported `listening`.
pub struct Listener {
    proc: Proc,
    pub addr: String,
    pub fingerprint: String,
    pub ticket: String,
    /// Every event read so far, `listening` included.
    pub seen: Vec<Value>,
    pending: VecDeque<Value>,
}

impl Listener {
    pub fn start(proc: Proc) -> Listener {
        let mut l = Listener {
            proc,
            addr: String::new(),
            fingerprint: String::new(),
            ticket: String::new(),
            seen: Vec::new(),
            pending: VecDeque::new(),
        };
        let ev = l.wait_for("listening", START_TIMEOUT);
        l.addr = ev["addr"].as_str().expect("listening.addr").to_string();
        l.fingerprint = ev["fingerprint"]
            .as_str()
            .expect("listening.fingerprint")
            .to_string();
        l.ticket = ev["ticket"].as_str().expect("listening.ticket").to_string();
        assert_fingerprint(&l.fingerprint);
        // With `--via` the ticket names more ways after the direct one.
        let direct = format!("{}@{}", l.fingerprint, l.addr);
        assert!(
            l.ticket == direct || l.ticket.starts_with(&format!("{direct},")),
            "ticket {} does not start with {direct}",
            l.ticket
        );
        let port = l.port();
        assert_ne!(port, 0, "listening event must carry the real port");
        l
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad listening addr {:?}", self.addr))
    }

    /// The next event on stdout, if one arrives within `timeout`. A stdout line
    /// that is not a JSON object fails the test: with `--json` every line is one.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(ev) = self.pending.pop_front() {
            return Some(ev);
        }
        let line = match self.proc.stdout.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => {
                // The child closed stdout; don't spin for the rest of the timeout.
                return None;
            }
        };
        let ev: Value = match serde_json::from_str(&line) {
            Ok(v @ Value::Object(_)) => v,
            _ => panic!(
                "listener printed a non-JSON line with --json: {line:?}\n{}",
                self.describe()
            ),
        };
        self.seen.push(ev.clone());
        Some(ev)
    }

    /// Waits for the next event named `name`, skipping (but keeping in `seen`) others.
    pub fn wait_for(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(ev) if ev["event"] == name => return ev,
                Some(_) => {}
                None => panic!(
                    "listener reported no {name:?} event within {timeout:?}\n{}",
                    self.describe()
                ),
            }
        }
    }

    /// Reads events for `period` and fails if one of them is named `name`.
    pub fn assert_no_event(&mut self, name: &str, period: Duration) {
        let deadline = Instant::now() + period;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_event(left) {
                Some(ev) if ev["event"] == name => {
                    panic!("listener reported {ev} unexpectedly\n{}", self.describe())
                }
                Some(_) => {}
                None => return,
            }
        }
    }

    /// Panics unless the listener is still running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.proc.child.try_wait().expect("try_wait") {
            panic!("listener exited with {status}\n{}", self.describe());
        }
    }

    /// Waits up to `timeout` for the listener to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.wait_timeout(timeout)
    }

    /// Sends `signal` to the listener.
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        self.proc.signal(signal);
    }

    /// Everything the listener wrote to stderr so far (its logs).
    pub fn stderr_text(&self) -> String {
        self.proc.stderr_text()
    }

    /// The listener's process id (to read `/proc/PID/status`).
    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// The command, the events so far and stderr, for failure messages.
    pub fn describe(&self) -> String {
        let events: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        let stderr: String = self.proc.stderr_text().chars().take(4000).collect();
        format!(
            "listener: {}\n--- listener events ---\n{}\n--- listener stderr ---\n{}",
            self.proc.what,
            events.join("\n"),
            stderr
        )
    }
}

/// Writes `size` random bytes to `path` and returns their BLAKE3 (lowercase hex, as
/// `b3sum` prints it).
pub fn write_random(path: &Path, size: usize) -> String {
    let mut rng = StdRng::from_entropy();
    let mut hasher = blake3::Hasher::new();
    let mut out = BufWriter::new(fs::File::create(path).expect("create random file"));
    let mut chunk = vec![0u8; MIB];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        rng.fill_bytes(&mut chunk[..n]);
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n]).expect("write random file");
        left -= n;
    }
    out.flush().expect("flush random file");
    hasher.finalize().to_hex().to_string()
}

/// `size` random bytes.
pub fn random_bytes(size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    StdRng::from_entropy().fill_bytes(&mut v);
    v
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// BLAKE3 of `data`, lowercase hex: what `b3sum` prints, and the default digest.
pub fn blake3(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// BLAKE3 of the file at `path`, lowercase hex, read in chunks.
pub fn blake3_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = blake3::Hasher::new();
    let mut chunk = vec![0u8; MIB];
    loop {
        let n = f.read(&mut chunk).expect("read file");
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
    }
    hasher.finalize().to_hex().to_string()
}

/// The digest value of a `sent` / `received` event: the field its `digest` field names
/// (`"digest": "blake3", "blake3": HEX`). Panics when either is missing.
pub fn digest(ev: &Value) -> &str {
    let algorithm = ev["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest algorithm in {ev}"));
    ev[algorithm]
        .as_str()
        .unwrap_or_else(|| panic!("no {algorithm} value in {ev}"))
}

/// Every entry under `dir`, directories included, as [`list_all`], but for the hidden
/// folder of partial files kept for resume (`.qp2p-partial`): what landed, or is
/// visible as on its way.
pub fn list_landed(dir: &Path) -> Vec<PathBuf> {
    list_all(dir)
        .into_iter()
        .filter(|p| !p.starts_with(".qp2p-partial"))
        .collect()
}

/// Every entry under `dir` that is not a directory (regular files, symlinks, fifos
/// …; hidden ones included), as paths relative to `dir`, sorted. Symlinks are not
/// followed.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    list(dir, false)
}

/// Every entry under `dir`, directories included, relative to `dir`, sorted.
pub fn list_all(dir: &Path) -> Vec<PathBuf> {
    list(dir, true)
}

fn list(dir: &Path, with_dirs: bool) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, with_dirs: bool, out: &mut Vec<PathBuf>) {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => panic!("read_dir {}: {e}", dir.display()),
        };
        for entry in entries {
            let entry = entry.expect("dir entry");
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = fs::symlink_metadata(&path).expect("symlink_metadata");
            if meta.is_dir() {
                if with_dirs {
                    out.push(rel);
                }
                walk(root, &path, with_dirs, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, with_dirs, &mut out);
    out.sort();
    out
}

/// A UDP port on 127.0.0.1 that was free a moment ago (nothing listens on it).
pub fn free_udp_port() -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    sock.local_addr().unwrap().port()
}

/// Asserts the fields every `sent` / `received` report shares for one message.
pub fn assert_report(ev: &Value, name: &str, bytes: usize, sha: &str, stream: &str) {
    assert_eq!(ev["name"], name, "name in {ev}");
    assert_eq!(ev["bytes"], bytes as u64, "bytes in {ev}");
    assert_eq!(ev["digest"], "blake3", "default digest in {ev}");
    assert_eq!(digest(ev), sha, "blake3 in {ev}");
    assert_eq!(ev["stream"], stream, "stream in {ev}");
    assert_eq!(ev["duplicate"], false, "duplicate in {ev}");
    assert!(
        ev["seconds"].as_f64().is_some_and(|s| s >= 0.0),
        "seconds in {ev}"
    );
    let id = ev["message_id"]
        .as_str()
        .unwrap_or_else(|| panic!("message_id in {ev}"));
    assert!(
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "message_id is not 32 lowercase hex digits in {ev}"
    );
    assert!(
        ev["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "peer in {ev}"
    );
    assert_fingerprint(ev["peer_fingerprint"].as_str().unwrap_or(""));
}

/// Opens a bidirectional stream, writes `bytes` and FIN, and returns the code the
/// listener stopped or reset the stream with.
pub async fn reset_code(conn: &quinn::Connection, bytes: &[u8]) -> u64 {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    // The listener may stop the stream before we are done writing: that is the answer.
    let written = send.write_all(bytes).await;
    let _ = send.finish();
    if let Err(quinn::WriteError::Stopped(code)) = written {
        return code.into_inner();
    }
    match tokio::time::timeout(Duration::from_secs(15), recv.read_to_end(1024)).await {
        Ok(Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)))) => code.into_inner(),
        other => panic!("expected a stream reset, got {other:?}"),
    }
}
