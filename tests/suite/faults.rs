//! Faults between sender and listener, made by the loopback relay (`util::relay`): loss
//! with delay, a black-out longer than the idle timeout, an ack lost on its way back,
//! duplicated and reordered datagrams, fifty senders at once, and one sender whose
//! handshake stalls. Whatever the network does, what lands in DIR is every file,
//! exactly once, with the right bytes.
//!
//! Figures (elapsed times, relay counters) are printed on stderr: `cargo test --test
//! tests faults -- --nocapture` shows them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::relay::{Dir, Impairment, Relay};
use crate::util::{
    blake3_file, digest, list_files, path_str, Listener, Outcome, Proc, TestDir, EVENT_TIMEOUT, MIB,
};

/// The ticket that pins `l` but reaches it through `relay`.
fn ticket_via(l: &Listener, relay: &Relay) -> String {
    format!("{}@{}", l.fingerprint, relay.addr())
}

/// Starts `qp2p --json --ephemeral send ARGS TARGET FILES`.
fn spawn_send(t: &TestDir, args: &[&str], target: &str, files: &[&Path]) -> Proc {
    let mut all: Vec<&str> = args.to_vec();
    all.push(target);
    all.extend(files.iter().map(|f| path_str(f)));
    t.spawn_send(&all, Stdio::null())
}

/// The single `sent` event of a successful run, checked against the file sent.
fn sent_ok<'a>(r: &'a Outcome, l: &Listener, name: &str, size: usize, sha: &str) -> &'a Value {
    r.assert_code(0);
    r.assert_no_panic();
    let sent = r.one("sent");
    assert_eq!(sent["name"], name, "{r}");
    assert_eq!(sent["bytes"], size as u64, "{r}");
    assert_eq!(digest(sent), sha, "{r}");
    assert_eq!(sent["peer_fingerprint"], l.fingerprint.as_str(), "{r}");
    sent
}

/// Asserts that DIR holds exactly `name` (no `name.1.ext` copy, no temporary file)
/// with the SHA-256 `sha`.
fn stored_once(out: &Path, name: &str, sha: &str) {
    assert_eq!(
        list_files(out),
        vec![PathBuf::from(name)],
        "DIR must hold the file exactly once"
    );
    assert_eq!(blake3_file(&out.join(name)), sha, "stored file differs");
}

/// The `received` events for message `id`: waits up to `timeout` for `n` of them, then
/// goes on reading until the listener is quiet for half a second, so that one too many
/// shows too.
fn received_for(l: &mut Listener, id: &Value, n: usize, timeout: Duration) -> Vec<Value> {
    let matching = |l: &Listener| -> Vec<Value> {
        l.seen
            .iter()
            .filter(|e| e["event"] == "received" && &e["message_id"] == id)
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + timeout;
    while matching(l).len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if l.next_event(left).is_none() {
            break;
        }
    }
    while l.next_event(Duration::from_millis(500)).is_some() {}
    matching(l)
}

/// Sends `size` random bytes through 5 % loss and 50 ms of delay each way, with
/// `--congestion CC` when given, and checks that they arrive whole; prints and
/// returns the time it took.
fn through_loss(size: usize, congestion: Option<&str>, timeout: Duration) -> Duration {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (file, sha) = t.random_file("src/lossy.bin", size);
    let mut l = t.listen(&out, &[]);
    let relay = Relay::to(&l.addr);
    relay.set_both(Impairment::lossy(0.05, Duration::from_millis(50)));

    let ticket = ticket_via(&l, &relay);
    let args: Vec<&str> = match congestion {
        Some(cc) => vec!["--congestion", cc],
        None => vec![],
    };
    let r = spawn_send(&t, &args, &ticket, &[&file]).finish(timeout);
    let sent = sent_ok(&r, &l, "lossy.bin", size, &sha);
    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&recv), sha.as_str());
    assert_eq!(recv["duplicate"], false);
    stored_once(&out, "lossy.bin", &sha);

    let (up, down) = (relay.counters(Dir::ToServer), relay.counters(Dir::ToClient));
    let share = up.dropped as f64 / up.seen as f64;
    assert!(
        (0.03..0.07).contains(&share),
        "the relay dropped {share:.3} of the datagrams, not 5 %: {up:?}"
    );
    eprintln!(
        "{} MiB, 5 % loss, 50 ms each way, congestion {}: {:.1} s ({:.2} MiB/s), \
         retries {}; to server {up:?}; to client {down:?}",
        size / MIB,
        congestion.unwrap_or("default"),
        r.elapsed.as_secs_f64(),
        size as f64 / MIB as f64 / r.elapsed.as_secs_f64(),
        sent["retries"]
    );
    r.elapsed
}

/// 64 MiB through 5 % loss and 50 ms of delay each way arrives whole, with the default
/// congestion controller. A loss-based one would crawl here (SPEC §3); the default
/// must not: 64 MiB takes about 4 s on a 2-core machine, so 60 s is a generous bound.
#[test]
fn faults_64_mib_through_5_percent_loss_and_50_ms_delay() {
    through_loss(64 * MIB, None, Duration::from_secs(60));
}

/// The same link with the loss-based controllers, for the figures in README (run with
/// `-- --ignored --nocapture`; minutes, not seconds).
#[test]
#[ignore = "a measurement: loss-based congestion control is slow through loss"]
fn faults_measure_loss_based_congestion_through_5_percent_loss() {
    for cc in ["cubic", "newreno"] {
        through_loss(8 * MIB, Some(cc), Duration::from_secs(600));
    }
}

/// A 5 s black-out mid-transfer, longer than the 2 s idle timeout of both ends: the
/// connection dies, `send` retries on a new one and completes within `--retry-for`,
/// says it retried, and the receiver, whose first attempt failed, stores the file
/// exactly once.
#[test]
fn faults_black_out_mid_transfer_is_retried_and_stored_once() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let size = 32 * MIB;
    let (file, sha) = t.random_file("src/blackout.bin", size);
    let mut l = t.listen(&out, &["--idle-timeout", "2s"]);
    let relay = Relay::to(&l.addr);
    relay.set_both(Impairment::delay(Duration::from_millis(20)));

    let ticket = ticket_via(&l, &relay);
    let args = ["--idle-timeout", "2s", "--retry-for", "60s"];
    let mut sender = spawn_send(&t, &args, &ticket, &[&file]);
    // Mid-transfer: a quarter of the file is through.
    let started = relay.wait_until(Dir::ToServer, Duration::from_secs(60), |c| {
        c.forwarded_bytes >= (size / 4) as u64
    });
    assert!(
        started && sender.wait_timeout(Duration::ZERO).is_none(),
        "the transfer was not under way\n{}",
        sender.finish(Duration::ZERO)
    );
    relay.black_hole(true);
    let black_out = Instant::now();
    thread::sleep(Duration::from_secs(5));
    relay.black_hole(false);
    let dropped = relay.counters(Dir::ToServer).dropped;
    assert!(dropped > 0, "nothing was sent during the black-out");

    let r = sender.finish(Duration::from_secs(70));
    let after_black_out = black_out.elapsed();
    let sent = sent_ok(&r, &l, "blackout.bin", size, &sha);
    assert!(
        sent["retries"].as_u64().is_some_and(|n| n >= 1),
        "the report must count the retry: {sent}\n{r}"
    );
    assert_eq!(
        sent["duplicate"], false,
        "the first attempt never completed"
    );
    assert_eq!(
        sent["reused_connection"], false,
        "the retry must dial a new connection\n{r}"
    );
    assert!(r.elapsed < Duration::from_secs(60), "{r}");

    let id = sent["message_id"].clone();
    let received = received_for(&mut l, &id, 1, EVENT_TIMEOUT);
    assert_eq!(received.len(), 1, "{}", l.describe());
    assert_eq!(received[0]["duplicate"], false);
    assert_eq!(digest(&received[0]), sha.as_str());
    let failed = l
        .seen
        .iter()
        .filter(|e| e["event"] == "transfer_failed" && e["message_id"] == id)
        .count();
    assert_eq!(
        failed,
        1,
        "the receiver must report the cut attempt once\n{}",
        l.describe()
    );
    stored_once(&out, "blackout.bin", &sha);
    eprintln!(
        "32 MiB with a 5 s black-out: {:.1} s in all, {:.1} s after the black-out began, \
         {} retries",
        r.elapsed.as_secs_f64(),
        after_black_out.as_secs_f64(),
        sent["retries"]
    );
}

/// The receiver stored the file, but its ack is lost on the way back (the link to the
/// sender goes down right then, for longer than the idle timeout). The sender retries
/// the same message on a new connection, the receiver recognises the message id and
/// acknowledges it without storing it again: one file on disk, and the sender says
/// the receiver already had it.
#[test]
fn faults_lost_ack_retry_is_a_duplicate_and_stored_once() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let size = 2 * MIB;
    let (file, sha) = t.random_file("src/acked.bin", size);
    let mut l = t.listen(&out, &["--idle-timeout", "2s", "-vv"]);
    let relay = Relay::to(&l.addr);
    // The way back is slow, so the ack is still in the relay when the file appears.
    relay.set(Dir::ToClient, Impairment::delay(Duration::from_millis(100)));

    let ticket = ticket_via(&l, &relay);
    let args = ["--idle-timeout", "2s", "--retry-for", "60s"];
    let mut sender = spawn_send(&t, &args, &ticket, &[&file]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !out.join("acked.bin").exists() {
        assert!(
            Instant::now() < deadline,
            "the file never appeared\n{}",
            l.describe()
        );
        thread::sleep(Duration::from_millis(1));
    }
    relay.cut(Dir::ToClient, true);
    let cut = Instant::now();
    let lost = relay.counters(Dir::ToClient).dropped;
    // The receiver reports the message once its ack is out, or given up on.
    let first = l.wait_for("received", Duration::from_secs(15));
    assert_eq!(first["duplicate"], false);
    // By now (the receiver gave up waiting for the sender, and the sender's 2 s idle
    // timeout has passed) the sender's connection is dead: it is retrying, and does
    // not get the ack that the receiver's transport may still retransmit.
    thread::sleep(Duration::from_millis(2500).saturating_sub(cut.elapsed()));
    assert!(
        sender.wait_timeout(Duration::ZERO).is_none(),
        "the sender finished without the ack\n{}",
        sender.finish(Duration::ZERO)
    );
    relay.cut(Dir::ToClient, false);

    let r = sender.finish(Duration::from_secs(60));
    let sent = sent_ok(&r, &l, "acked.bin", size, &sha);
    assert!(
        sent["retries"].as_u64().is_some_and(|n| n >= 1),
        "the report must count the retry: {sent}\n{r}"
    );
    assert_eq!(
        sent["duplicate"], true,
        "the receiver had the message already\n{r}"
    );
    let received = received_for(&mut l, &sent["message_id"], 2, EVENT_TIMEOUT);
    let dups: Vec<_> = received.iter().map(|e| e["duplicate"].clone()).collect();
    assert_eq!(
        dups,
        vec![Value::Bool(false), Value::Bool(true)],
        "stored once, then acknowledged as a duplicate\n{}",
        l.describe()
    );
    stored_once(&out, "acked.bin", &sha);
    assert!(
        relay.counters(Dir::ToClient).dropped > lost,
        "the cut dropped nothing"
    );
    // The sender closes its connection once it has the duplicate ack; the receiver,
    // which waits for that before it reports, must not be left to its idle timeout
    // (2 s here). Fails while quinn-proto withholds CONNECTION_CLOSE from a connection
    // whose congestion window is full (quinn-rs/quinn#2785): the sender's data, cut
    // short by the receiver's STOP_SENDING, is still in flight when it closes.
    let waited = received[1]["seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(
        waited < 1.0,
        "the receiver waited {waited:.1} s for the sender to go after the duplicate ack: \
         the sender's close never arrived\n{}",
        l.describe()
    );
}

/// A path narrower than loopback promises: the sender dials a relay on 127.0.0.1, so
/// it starts at 65,000-byte packets, but the relay drops every datagram over 1472
/// bytes, as a forwarder onto Ethernet would. The large packets are lost, the sender
/// falls back to small ones (quinn's black-hole detection), and the file arrives whole
/// within seconds.
#[test]
fn faults_narrow_path_behind_a_loopback_relay_still_delivers() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let size = 8 * MIB;
    let (file, sha) = t.random_file("src/narrow.bin", size);
    let mut l = t.listen(&out, &[]);
    let relay = Relay::to(&l.addr);
    relay.set_both(Impairment {
        max_datagram: Some(1472),
        ..Impairment::none()
    });

    let ticket = ticket_via(&l, &relay);
    let r = spawn_send(&t, &[], &ticket, &[&file]).finish(Duration::from_secs(30));
    sent_ok(&r, &l, "narrow.bin", size, &sha);
    l.wait_for("received", EVENT_TIMEOUT);
    stored_once(&out, "narrow.bin", &sha);
    let up = relay.counters(Dir::ToServer);
    assert!(up.dropped > 0, "no datagram was too large: {up:?}");
    assert!(
        r.elapsed < Duration::from_secs(10),
        "8 MiB took {:?} behind a narrow path",
        r.elapsed
    );
    eprintln!(
        "8 MiB behind a 1472-byte path: {:.2} s; to server {up:?}",
        r.elapsed.as_secs_f64()
    );
}

/// 20 % of the datagrams duplicated and 10 % held back 20 ms, both ways: still exactly
/// one correct file, not reported as a duplicate.
#[test]
fn faults_duplication_and_reordering_give_one_correct_file() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let size = 16 * MIB;
    let (file, sha) = t.random_file("src/shuffled.bin", size);
    let mut l = t.listen(&out, &[]);
    let relay = Relay::to(&l.addr);
    relay.set_both(Impairment {
        duplicate: 0.2,
        reorder: 0.1,
        reorder_delay: Duration::from_millis(20),
        ..Impairment::none()
    });

    let ticket = ticket_via(&l, &relay);
    let r = spawn_send(&t, &[], &ticket, &[&file]).finish(Duration::from_secs(60));
    let sent = sent_ok(&r, &l, "shuffled.bin", size, &sha);
    assert_eq!(sent["duplicate"], false, "{r}");
    let received = received_for(&mut l, &sent["message_id"], 1, EVENT_TIMEOUT);
    assert_eq!(received.len(), 1, "{}", l.describe());
    assert_eq!(received[0]["duplicate"], false);
    stored_once(&out, "shuffled.bin", &sha);

    let up = relay.counters(Dir::ToServer);
    // Loopback lets packets grow to 64 KiB, so 16 MiB is a few hundred datagrams; each
    // kind of fault must still have hit a good share of them (expected: 20 % and 10 %).
    assert!(
        up.seen >= 200 && up.duplicated * 10 >= up.seen && up.held_back * 20 >= up.seen,
        "too few datagrams duplicated or held back: {up:?}"
    );
    eprintln!(
        "16 MiB, 20 % duplicated, 10 % held back 20 ms: {:.1} s; to server {up:?}",
        r.elapsed.as_secs_f64()
    );
}

/// `n` senders with `per` files of `size` bytes each: their files (in `src/sNN/`, named
/// `sNN-fM.bin`) and SHA-256s by name.
fn sender_files(
    t: &TestDir,
    n: usize,
    per: usize,
    size: usize,
) -> (Vec<Vec<PathBuf>>, BTreeMap<String, String>) {
    let mut files = Vec::new();
    let mut shas = BTreeMap::new();
    for s in 0..n {
        let mut mine = Vec::new();
        for f in 0..per {
            let name = format!("s{s:02}-f{f}.bin");
            let (path, sha) = t.random_file(&format!("src/s{s:02}/{name}"), size);
            shas.insert(name, sha);
            mine.push(path);
        }
        files.push(mine);
    }
    (files, shas)
}

/// Checks the runs of the senders of the files in `shas`: exit 0, and one `sent` per
/// file with its SHA-256.
fn check_senders(runs: &[Outcome], shas: &BTreeMap<String, String>) {
    for r in runs {
        r.assert_code(0);
        for sent in r.named("sent") {
            let name = sent["name"].as_str().unwrap_or_default();
            assert_eq!(digest(sent), shas[name].as_str(), "{r}");
        }
    }
    let mut names: Vec<&str> = runs
        .iter()
        .flat_map(|r| r.named("sent"))
        .map(|s| s["name"].as_str().unwrap_or_default())
        .collect();
    names.sort();
    let expected: Vec<&str> = shas.keys().map(String::as_str).collect();
    assert_eq!(names, expected, "one sent event per file");
}

/// Reads the listener's `received` events until `want` distinct names arrived (or
/// `timeout`), and checks each against `shas`; returns the names.
fn collect_received(
    l: &mut Listener,
    shas: &BTreeMap<String, String>,
    want: usize,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut names = Vec::new();
    while names.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(ev) = l.next_event(left) else {
            panic!(
                "only {} of {want} files reported received\n{}",
                names.len(),
                l.describe()
            );
        };
        if ev["event"] != "received" {
            continue;
        }
        let name = ev["name"].as_str().unwrap_or_default().to_string();
        assert_eq!(ev["duplicate"], false, "{ev}");
        assert_eq!(digest(&ev), shas[&name].as_str(), "{ev}");
        assert!(!names.contains(&name), "{name} received twice");
        names.push(name);
    }
    names
}

/// Asserts that DIR holds exactly the files of `shas`, each with its SHA-256.
fn all_stored(out: &Path, shas: &BTreeMap<String, String>) {
    let on_disk = list_files(out);
    let expected: Vec<PathBuf> = shas.keys().map(PathBuf::from).collect();
    assert_eq!(on_disk, expected, "DIR must hold every file, once");
    for (name, sha) in shas {
        assert_eq!(&blake3_file(&out.join(name)), sha, "{name} differs");
    }
}

/// 50 `send` processes at once, 4 files of 64 KiB each, into one listener: all 200
/// files land, once each, with the right bytes.
#[test]
fn faults_fifty_concurrent_senders_all_land() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (files, shas) = sender_files(&t, 50, 4, 64 * 1024);
    let mut l = t.listen(&out, &[]);

    let started = Instant::now();
    let procs: Vec<Proc> = files
        .iter()
        .map(|mine| {
            let mine: Vec<&Path> = mine.iter().map(PathBuf::as_path).collect();
            spawn_send(&t, &[], &l.ticket, &mine)
        })
        .collect();
    let deadline = started + Duration::from_secs(90);
    let runs: Vec<Outcome> = procs
        .into_iter()
        .map(|p| p.finish(deadline.saturating_duration_since(Instant::now())))
        .collect();
    let took = started.elapsed();
    check_senders(&runs, &shas);
    let names = collect_received(&mut l, &shas, 200, EVENT_TIMEOUT);
    assert_eq!(names.len(), 200);
    all_stored(&out, &shas);
    let slowest = runs.iter().map(|r| r.elapsed).max().unwrap_or_default();
    eprintln!(
        "50 senders × 4 × 64 KiB: all done in {:.1} s, slowest sender {:.1} s",
        took.as_secs_f64(),
        slowest.as_secs_f64()
    );
}

/// The SHA-256s of sender `s`'s files.
fn shas_of(shas: &BTreeMap<String, String>, s: usize) -> BTreeMap<String, String> {
    let prefix = format!("s{s:02}-");
    shas.iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One sender whose handshake stalls — its datagrams reach the listener, the answers
/// are black-holed by the relay — does not hold up ten others through the same relay
/// to the same listener: they finish in normal time while it is still retrying, and
/// once the relay lets it through, it completes too.
#[test]
fn faults_stalled_handshake_does_not_delay_others() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (files, shas) = sender_files(&t, 12, 4, 64 * 1024);
    let mut l = t.listen(&out, &[]);
    let relay = Relay::to(&l.addr);
    let ticket = ticket_via(&l, &relay);
    let paths = |s: usize| -> Vec<&Path> { files[s].iter().map(PathBuf::as_path).collect() };

    // The normal time: sender 0 alone.
    let alone = spawn_send(&t, &[], &ticket, &paths(0)).finish(Duration::from_secs(30));
    check_senders(std::slice::from_ref(&alone), &shas_of(&shas, 0));

    // Sender 1 stalls in its handshake.
    relay.black_hole_next_client(&[Dir::ToClient]);
    let mut stalled = spawn_send(&t, &["--retry-for", "60s"], &ticket, &paths(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.blocked_clients().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the stalled sender never reached the relay"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let stalled_addr = relay.blocked_clients()[0];

    // Senders 2..12 at once, while it stalls.
    let started = Instant::now();
    let others: Vec<Proc> = (2..12)
        .map(|s| spawn_send(&t, &[], &ticket, &paths(s)))
        .collect();
    let runs: Vec<Outcome> = others
        .into_iter()
        .map(|p| p.finish(Duration::from_secs(30)))
        .collect();
    let took = started.elapsed();
    for (i, r) in runs.iter().enumerate() {
        check_senders(std::slice::from_ref(r), &shas_of(&shas, i + 2));
    }
    let slowest = runs.iter().map(|r| r.elapsed).max().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(2),
        "with one handshake stalled, a sender took {slowest:?} (alone: {:?})",
        alone.elapsed
    );
    // Meanwhile it keeps trying (Initial retransmits, then a new attempt after the 2 s
    // connect timeout), the listener answers, and the answers are lost.
    let deadline = Instant::now() + Duration::from_secs(10);
    while relay.client_counters(stalled_addr, Dir::ToServer).forwarded < 4 {
        assert!(
            Instant::now() < deadline,
            "the stalled sender stopped trying: {:?}",
            relay.client_counters(stalled_addr, Dir::ToServer)
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        stalled.wait_timeout(Duration::ZERO).is_none(),
        "the stalled sender gave up or finished\n{}",
        stalled.finish(Duration::ZERO)
    );
    let answered = relay.client_counters(stalled_addr, Dir::ToClient);
    assert!(
        answered.seen > 0,
        "the listener never answered the stalled sender"
    );
    assert_eq!(answered.forwarded, 0, "nothing reached the stalled sender");

    // Let it through: it completes by retrying.
    relay.black_hole_client(stalled_addr, &[]);
    let r = stalled.finish(Duration::from_secs(60));
    check_senders(std::slice::from_ref(&r), &shas_of(&shas, 1));
    let first = r.named("sent")[0];
    assert!(
        first["retries"].as_u64().is_some_and(|n| n >= 1),
        "the stalled sender's first file needed retries\n{r}"
    );
    collect_received(&mut l, &shas, shas.len(), EVENT_TIMEOUT);
    all_stored(&out, &shas);
    eprintln!(
        "stalled handshake: one sender alone {:.2} s; 10 others with one stalled: all in \
         {:.2} s, slowest {:.2} s; the stalled one done {:.1} s after it started",
        alone.elapsed.as_secs_f64(),
        took.as_secs_f64(),
        slowest.as_secs_f64(),
        r.elapsed.as_secs_f64()
    );
}
