//! Running `qp2p` children: [`Proc`] drains a child's stdout and stderr on background
//! threads (so a chatty child never blocks on a full pipe), kills (SIGKILL) and reaps it
//! on drop, also when a test panics, and [`Proc::finish`] kills it when its time is up,
//! so no test can hang. [`Outcome`] is what a finished run did; [`Listener`] is a
//! `qp2p --json listen` that has reported `listening`, with a queue of its later events.

use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{assert_fingerprint, START_TIMEOUT};

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
