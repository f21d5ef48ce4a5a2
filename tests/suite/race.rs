//! `qp2p race-connect` against peers made slow, silent or dead by the loopback relay
//! (`util::relay`): the fastest peer wins in about its own handshake time, whatever the
//! others do; every loser is reported, and told so (its connection is closed, not left
//! to time out); when every peer is dead the command fails inside its budget with one
//! reason per peer; `--send` delivers to the winner only.
//!
//! Figures are printed on stderr (`cargo test --test tests race -- --nocapture`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::relay::{Dir, Impairment, Relay};
use crate::util::{
    blake3_file, digest, free_udp_port, list_files, path_str, Listener, Outcome, TestDir,
    EVENT_TIMEOUT,
};

/// C's delay each way, and so its round trip (40 ms).
const C_DELAY: Duration = Duration::from_millis(20);
/// B's delay each way (600 ms round trip).
const B_DELAY: Duration = Duration::from_millis(300);

/// Runs `qp2p --json --ephemeral race-connect ARGS PEERS`.
fn race_connect(t: &TestDir, args: &[&str], peers: &[&str]) -> Outcome {
    let mut all = vec!["--json", "--ephemeral", "race-connect"];
    all.extend_from_slice(args);
    all.extend_from_slice(peers);
    t.run_timeout(&all, Duration::from_secs(30))
}

/// A listener pinned through a relay: the ticket FP@RELAY.
fn ticket_via(l: &Listener, relay: &Relay) -> String {
    format!("{}@{}", l.fingerprint, relay.addr())
}

/// The `loser` events as address → (outcome, error).
fn losers(r: &Outcome) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for ev in r.named("loser") {
        let addr = ev["addr"].as_str().unwrap_or_default().to_string();
        let outcome = ev["outcome"].as_str().unwrap_or_default().to_string();
        let prev = out.insert(addr.clone(), (outcome, ev["error"].clone()));
        assert!(prev.is_none(), "two loser events for {addr}\n{r}");
    }
    out
}

/// The four peers of the race: A black-holed, B 300 ms away, C 20 ms away (each a
/// listener behind its own relay), D a port where nothing listens.
struct Field {
    a: Listener,
    b: Listener,
    c: Listener,
    ra: Relay,
    rb: Relay,
    rc: Relay,
    d: String,
}

impl Field {
    fn new(t: &TestDir) -> Field {
        // -vv: B's log must show how its connection ended. The idle timeout (which is
        // also the handshake timeout) is long, so "closed" cannot be a timeout.
        let extra = ["-vv", "--idle-timeout", "20s"];
        let a = t.listen(&t.mkdir("a"), &extra);
        let b = t.listen(&t.mkdir("b"), &extra);
        let c = t.listen(&t.mkdir("c"), &extra);
        let ra = Relay::to(&a.addr);
        ra.black_hole(true);
        let rb = Relay::to(&b.addr);
        rb.set_both(Impairment::delay(B_DELAY));
        let rc = Relay::to(&c.addr);
        rc.set_both(Impairment::delay(C_DELAY));
        let d = format!("127.0.0.1:{}", free_udp_port());
        Field {
            a,
            b,
            c,
            ra,
            rb,
            rc,
            d,
        }
    }

    /// The peers as race-connect arguments: tickets for A, B, C, D's bare address.
    fn peers(&self) -> Vec<String> {
        vec![
            ticket_via(&self.a, &self.ra),
            ticket_via(&self.b, &self.rb),
            ticket_via(&self.c, &self.rc),
            self.d.clone(),
        ]
    }
}

/// Waits up to `timeout` for a line of `l`'s stderr that `pred` accepts.
fn stderr_line(l: &Listener, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = l.stderr_text().lines().find(|line| pred(line)) {
            return Some(line.to_string());
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A black-holed, B 300 ms away, C 20 ms away, D dead: C wins, in under three of its
/// round trips; the command takes about C's time (not A's 2 s connect timeout nor B's
/// 600 ms round trip); A, B and D are reported as cancelled losers; and B's listener,
/// which got B's first Initial, then sees the connection closed by the racer instead
/// of waiting out its 20 s handshake timeout.
#[test]
fn race_fastest_peer_wins_and_losers_are_closed() {
    let t = TestDir::new();
    let f = Field::new(&t);

    // C's time alone, for comparison.
    let c_ticket = ticket_via(&f.c, &f.rc);
    let alone = race_connect(&t, &[], &[&c_ticket]);
    alone.assert_code(0);
    assert!(alone.named("loser").is_empty(), "{alone}");

    let peers = f.peers();
    let peer_refs: Vec<&str> = peers.iter().map(String::as_str).collect();
    let r = race_connect(&t, &[], &peer_refs);
    r.assert_code(0);
    r.assert_no_panic();
    let winner = r.one("winner");
    assert_eq!(winner["addr"], f.rc.addr().to_string(), "C must win\n{r}");
    assert_eq!(winner["fingerprint"], f.c.fingerprint.as_str(), "{r}");
    let handshake_ms = winner["handshake_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("handshake_ms in {winner}"));
    let rtt_ms = 2.0 * C_DELAY.as_secs_f64() * 1000.0;
    assert!(
        handshake_ms >= rtt_ms && handshake_ms < 3.0 * rtt_ms,
        "C's handshake took {handshake_ms:.1} ms for a {rtt_ms} ms round trip\n{r}"
    );

    let expected: BTreeMap<String, (String, Value)> = [
        f.ra.addr().to_string(),
        f.rb.addr().to_string(),
        f.d.clone(),
    ]
    .into_iter()
    .map(|addr| (addr, ("cancelled".to_string(), Value::Null)))
    .collect();
    assert_eq!(
        losers(&r),
        expected,
        "one cancelled loser per other peer\n{r}"
    );
    assert!(r.non_json_lines().is_empty(), "{r}");

    // About C's time: well under B's round trip, let alone A's connect timeout.
    assert!(
        r.elapsed < alone.elapsed + Duration::from_millis(300) && r.elapsed < 2 * B_DELAY,
        "the race took {:?}, C alone {:?}\n{r}",
        r.elapsed,
        alone.elapsed
    );

    // B heard the racer's Initial (300 ms on its way), then its CONNECTION_CLOSE.
    let closed = stderr_line(&f.b, Duration::from_secs(5), |l| {
        l.contains("by peer") || l.contains("timed out")
    });
    let closed = match closed {
        Some(line) if line.contains("by peer") => line,
        other => panic!(
            "B's listener did not see its connection closed by the racer within 5 s \
             (got {other:?})\n{}",
            f.b.describe()
        ),
    };
    assert!(
        f.rb.counters(Dir::ToServer).forwarded >= 2,
        "B got the Initial and the close: {:?}",
        f.rb.counters(Dir::ToServer)
    );
    // A's listener heard nothing at all.
    assert_eq!(f.ra.counters(Dir::ToServer).forwarded, 0);
    assert!(f.ra.counters(Dir::ToServer).dropped >= 1);
    eprintln!(
        "race: C ({} ms round trip) alone {:.0} ms, with A, B, D {:.0} ms; \
         handshake_ms {handshake_ms:.1}; B's listener: {closed}",
        rtt_ms,
        alone.elapsed.as_secs_f64() * 1000.0,
        r.elapsed.as_secs_f64() * 1000.0
    );
}

/// Every peer dead (one black-holed, two ports where nothing listens): exit 3 within
/// the `--retry-for 3s` budget, one `loser` event per peer with its reason, and a JSON
/// error naming every address.
#[test]
fn race_all_dead_exits_3_with_one_reason_per_peer() {
    let t = TestDir::new();
    let out = t.mkdir("a");
    let a = t.listen(&out, &[]);
    let ra = Relay::to(&a.addr);
    ra.black_hole(true);
    let d1 = format!("127.0.0.1:{}", free_udp_port());
    let d2 = format!("127.0.0.1:{}", free_udp_port());
    let pinned_d2 = format!("{}@{d2}", a.fingerprint);
    let ta = ticket_via(&a, &ra);

    let r = race_connect(&t, &["--retry-for", "3s"], &[&ta, &d1, &pinned_d2]);
    r.assert_json_error(3);
    assert!(r.named("winner").is_empty(), "{r}");
    let l = losers(&r);
    let addrs: Vec<&String> = l.keys().collect();
    let mut expected = vec![ra.addr().to_string(), d1.clone(), d2.clone()];
    expected.sort();
    assert_eq!(addrs, expected.iter().collect::<Vec<_>>(), "{r}");
    for (addr, (outcome, error)) in &l {
        assert_eq!(outcome, "failed", "{addr}\n{r}");
        assert!(
            error.as_str().is_some_and(|e| !e.trim().is_empty()),
            "{addr} failed without a reason\n{r}"
        );
    }
    let message = r.one("error")["message"].as_str().unwrap_or_default();
    for addr in &expected {
        assert!(message.contains(addr.as_str()), "{addr} not in {message:?}");
    }
    // Within the budget: `--timeout` defaults to it ("give up the whole race after
    // this long"), so an attempt started just before the budget ran out does not get
    // its whole 2 s connect timeout on top. Start-up and shutdown of the process may
    // add a little.
    assert!(
        r.elapsed >= Duration::from_millis(2500) && r.elapsed < Duration::from_millis(3750),
        "a 3 s budget took {:?}\n{r}",
        r.elapsed
    );
    eprintln!(
        "race, all 3 peers dead, --retry-for 3s: exit 3 after {:.2} s",
        r.elapsed.as_secs_f64()
    );
}

/// `race-connect --send FILE`: the file lands at the winner (C) and nowhere else.
#[test]
fn race_send_lands_at_the_winner_only() {
    let t = TestDir::new();
    let mut f = Field::new(&t);
    let (file, sha) = t.random_file("src/raced.bin", 300_000);

    let peers = f.peers();
    let mut args: Vec<&str> = peers.iter().map(String::as_str).collect();
    args.extend(["--send", path_str(&file)]);
    let r = race_connect(&t, &args, &[]);
    r.assert_code(0);
    let winner = r.one("winner");
    assert_eq!(winner["addr"], f.rc.addr().to_string(), "{r}");
    let sent = r.one("sent");
    assert_eq!(sent["name"], "raced.bin", "{r}");
    assert_eq!(digest(sent), sha.as_str(), "{r}");
    assert_eq!(sent["peer_fingerprint"], f.c.fingerprint.as_str(), "{r}");
    assert_eq!(losers(&r).len(), 3, "{r}");

    let recv = f.c.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&recv), sha.as_str());
    let out_c = t.path().join("c");
    assert_eq!(list_files(&out_c), vec![PathBuf::from("raced.bin")]);
    assert_eq!(blake3_file(&out_c.join("raced.bin")), sha);

    // B would have had time to complete a handshake by now, and A's relay is open
    // again: neither gets anything.
    f.ra.black_hole(false);
    f.b.assert_no_event("received", Duration::from_secs(1));
    f.a.assert_no_event("received", Duration::from_millis(100));
    for peer in ["a", "b"] {
        assert_eq!(
            list_files(&t.path().join(peer)),
            Vec::<PathBuf>::new(),
            "{peer} got something"
        );
    }
}
