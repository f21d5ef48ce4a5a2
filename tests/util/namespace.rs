//! Network namespaces for the root-only test beds ([`super::netns`]: a UPnP router;
//! [`super::nat`]: two NAT routers and a public network): their names, their removal,
//! and `qp2p` run inside them.
//!
//! What could go wrong, and how it is prevented:
//! - Two beds (parallel tests, parallel runs) taking the same names: every bed's names
//!   start with [`fresh_prefix`], `qp2pt<pid>n<k>`, unique per test process and bed.
//! - A test process killed (SIGKILL) before its bed was dropped: [`reap_stale`] removes
//!   the namespaces of test processes that no longer exist when the next bed is built.
//! - A process left running in a namespace: [`remove_namespace`] kills every process
//!   in it before deleting it.
//! - A child started inside a namespace seeing the caller's `QP2P_*` settings, or
//!   writing to the user's home: [`InNamespace::qp2p`] starts `ip netns exec NS qp2p`
//!   through [`TestDir::clean`], the very environment every loopback test's `qp2p` gets.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{path_str, Listener, Outcome, Proc, TestDir, BIN};

/// How every bed's namespace names start.
const NAME_PREFIX: &str = "qp2pt";
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A prefix no other bed has: `qp2pt<pid>n<k>`.
pub fn fresh_prefix() -> String {
    format!(
        "{NAME_PREFIX}{}n{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Panics with how to run `what` unless this process is root.
pub fn require_root(what: &str, filter: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} need root (network namespaces); run `cargo test --test tests -- --ignored {filter}` as root"
    );
}

/// Runs `program args`, panicking with its output unless it succeeds.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills every process in namespace `ns` and deletes it; never panics.
pub fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) with a pid read from the namespace just now.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Removes beds left by test processes that no longer exist.
pub fn reap_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('n').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}

/// `qp2p` in a bed's namespaces: implemented by every bed, whose namespace names the
/// `ns` arguments are.
pub trait InNamespace {
    /// `ip netns exec NS qp2p` with the clean environment of [`TestDir::cmd`].
    fn qp2p(&self, ns: &str, dir: &TestDir) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN]);
        dir.clean(cmd)
    }

    /// Starts `qp2p ARGS` in `ns`.
    fn spawn(&self, ns: &str, dir: &TestDir, args: &[&str]) -> Proc {
        let mut cmd = self.qp2p(ns, dir);
        cmd.args(args);
        Proc::spawn(cmd)
    }

    /// Runs `qp2p ARGS` in `ns` to completion, killed after `timeout`.
    fn run(&self, ns: &str, dir: &TestDir, args: &[&str], timeout: Duration) -> Outcome {
        self.spawn(ns, dir, args).finish(timeout)
    }

    /// Starts `qp2p ARGS` in `ns`, a `--json listen`, and waits for `listening`.
    fn listen(&self, ns: &str, dir: &TestDir, args: &[&str]) -> Listener {
        Listener::start(self.spawn(ns, dir, args))
    }

    /// Starts `qp2p --json --ephemeral listen --bind BIND --out DIR/OUT EXTRA` in `ns`
    /// and waits for `listening`.
    fn listen_at(
        &self,
        ns: &str,
        dir: &TestDir,
        bind: &str,
        out: &str,
        extra: &[&str],
    ) -> Listener {
        let out = dir.mkdir(out);
        let mut args = vec![
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            bind,
            "--out",
            path_str(&out),
        ];
        args.extend_from_slice(extra);
        self.listen(ns, dir, &args)
    }

    /// Runs `qp2p --json --ephemeral send EXTRA TICKET FILE` in `ns` to completion,
    /// killed after `timeout`.
    fn send(
        &self,
        ns: &str,
        dir: &TestDir,
        extra: &[&str],
        ticket: &str,
        file: &Path,
        timeout: Duration,
    ) -> Outcome {
        let mut args = vec!["--json", "--ephemeral", "send"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[ticket, path_str(file)]);
        self.run(ns, dir, &args, timeout)
    }
}
