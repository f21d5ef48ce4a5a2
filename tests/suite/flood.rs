//! A connection flood from the sender's own address (think carrier-grade NAT), made in
//! a QUIC stack we did not write: aioquic, driven by `tests/flood.py`. The flood opens
//! many connections that never open a stream and holds them; a normal sender from the
//! same IP must still get through, and quickly, because a full limit closes idle
//! connections to make room. Everything runs on 127.0.0.1; the flood is bounded in
//! count and in time (the script exits by itself) and is killed when a test ends.
//!
//! Needs `python3` with aioquic (`pip install aioquic`, as `.ci/run` does): under CI
//! (`CI` set) a missing one fails the test, elsewhere it is skipped with a message.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::util::{assert_report, path_str, Proc, TestDir, EVENT_TIMEOUT, MIB};

/// The flood script, beside the test suite.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/flood.py");

/// How long the flood holds its connections at most, from its start.
const HOLD_SECS: u32 = 20;

/// What the sender must take at most, flood or not.
const SEND_WITHIN: Duration = Duration::from_secs(5);

/// One flood at a time: two would compete for this machine's cores, and the time
/// measured is the sender's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether `python3` can import aioquic; without it, fails under CI and is a skip
/// (false, with a message) elsewhere.
fn have_aioquic() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with aioquic is needed (pip install aioquic, as .ci/run does)"
        );
        eprintln!("skipped: python3 with aioquic is not installed (pip install aioquic)");
    }
    ok
}

/// Starts `flood.py` against `port` with `count` connections and waits until every
/// one has been answered (its `ready` line); returns it (killed when dropped) and the
/// line.
fn start_flood(port: u16, count: u32) -> (Proc, Value) {
    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT).args([
        "127.0.0.1".to_string(),
        port.to_string(),
        "--count".into(),
        count.to_string(),
        "--hold".into(),
        HOLD_SECS.to_string(),
    ]);
    let flood = Proc::spawn(cmd);
    let line = flood
        .next_stdout_line(Duration::from_secs(HOLD_SECS.into()))
        .unwrap_or_else(|| panic!("no ready line from flood.py\n{}", flood.stderr_text()));
    let ready: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(ready["event"], "ready", "{ready}");
    (flood, ready)
}

/// A 1 MiB `send` from the flood's address completes within [`SEND_WITHIN`], while
/// `count` idle connections are offered to a listener with `limits`, which the flood
/// fills.
fn send_through_flood(count: u32, limits: &[&str], per_ip: u64) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, sha) = t.random_file("src/payload.bin", MIB);
    let mut l = t.listen(&out, limits);
    let (flood, ready) = start_flood(l.port(), count);
    assert!(
        ready["opened"].as_u64().is_some_and(|n| n >= per_ip),
        "the flood did not fill the limit: {ready}\n{}",
        l.describe()
    );

    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    r.assert_code(0);
    assert!(
        r.elapsed < SEND_WITHIN,
        "the send took {:?} during a flood of {count} ({limits:?})\n{r}\n{}",
        r.elapsed,
        l.describe()
    );
    assert_report(r.one("sent"), "payload.bin", MIB, &sha, "bi");
    let received = l.wait_for("received", EVENT_TIMEOUT);
    assert_report(&received, "payload.bin", MIB, &sha, "bi");
    assert!(
        l.stderr_text()
            .contains("closing idle connections to make room"),
        "{}",
        l.describe()
    );
    l.assert_running();
    drop(flood);
}

/// 300 idle connections from 127.0.0.1 against limits of 64 (both): the listener is
/// full, and the sender from the same address takes the place of an idle one.
#[test]
fn idle_flood_does_not_starve_a_sender_from_its_address() {
    if !have_aioquic() {
        return;
    }
    let limits = ["--max-connections", "64", "--max-connections-per-ip", "64"];
    send_through_flood(300, &limits, 64);
}

/// The same with the default limits (256 in all, 16 per address) and 500 connections.
#[test]
fn idle_flood_does_not_starve_a_sender_under_default_limits() {
    if !have_aioquic() {
        return;
    }
    send_through_flood(500, &[], 16);
}
