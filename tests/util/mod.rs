//! Helpers for the integration tests: most run the real `qp2p` binary as separate
//! processes; [`server`] starts the library's server in-process.
//!
//! - [`TestDir`] is a scratch directory per test, with a `HOME` of its own, and
//!   builds every `qp2p` command with `RUST_LOG` and every `QP2P_*` variable removed
//!   from the child's environment (but `QP2P_PORTABLE_STORE`, which CI sets to run the
//!   suites through the store's portable way).
//! - [`process`]: [`Proc`], a running child whose stdout and stderr are drained on
//!   background threads. It is killed (SIGKILL) and reaped on drop, also when a test
//!   panics, and [`Proc::finish`] kills it when its time is up, so no test can hang;
//!   [`Outcome`], what a finished run did; [`Listener`], a `qp2p --json listen` that
//!   has reported its `listening` event, with its address, fingerprint and ticket, and
//!   a queue of its later events.
//! - [`files`]: random files, digests (BLAKE3 as `b3sum` prints it, the default on
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
//! - [`namespace`]: what both need: namespace names, their removal, `qp2p` run in
//!   them with [`TestDir`]'s clean environment.
//! - [`nat`]: two NAT routers and a public `wan` between them, for the introducer
//!   and hole-punching tests (root only).

mod files;
pub mod liar;
#[cfg(unix)]
pub mod namespace;
#[cfg(unix)]
pub mod nat;
#[cfg(unix)]
pub mod netns;
mod process;
pub mod relay;
pub mod server;

pub use files::*;
pub use process::*;

use std::ffi::OsStr;
use std::fs;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
        self.clean(Command::new(BIN))
    }

    /// `cmd` (which runs `qp2p`, maybe through a wrapper such as `ip netns exec`) with
    /// the environment every test's `qp2p` gets: `RUST_LOG` and `QP2P_*` removed, `HOME`
    /// here; stdin is /dev/null unless changed.
    pub fn clean(&self, mut cmd: Command) -> Command {
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
