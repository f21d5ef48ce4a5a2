//! Through NAT on both ends (SPEC §8): `listen --introduce`, `listen --via`, tickets
//! with several ways, the punch, the relay and its limits, and the exit 3 when no way
//! works.
//!
//! The loopback tests run anywhere. The `netns_` ones build two home routers with a
//! public network between them (`util::nat`) and need root, so they are `#[ignore]`d;
//! run them with `sudo cargo test --test tests -- --ignored netns_` (CI does: .ci/run).

use std::time::Duration;

use serde_json::Value;

use crate::util::liar::Liar;
use crate::util::namespace::InNamespace;
use crate::util::nat::{Mapping, Nat, Registered, EXT_A, LAN_A, SEND_TIMEOUT, WAN_IP};
use crate::util::{blake3_file, digest, Listener, TestDir, EVENT_TIMEOUT, MIB};

fn ticket_of(l: &Listener) -> &str {
    &l.ticket
}

/// The listener's fingerprint with only the introducer's way: `FP@IFP@ADDR`.
fn through(listener: &Listener, introducer: &Listener) -> String {
    format!("{}@{}", listener.fingerprint, introducer.ticket)
}

/// Loopback: a listener registers with an introducer from its listening socket; a
/// sender given only the introducer's way is introduced, the listener punches toward
/// exactly the address the sender then connects from, and the file arrives whole.
#[test]
fn introduction_on_loopback_registers_punches_and_delivers() {
    let dir = TestDir::new();
    let introducer = dir.listen(&dir.mkdir("intro"), &["--introduce"]);
    let mut listener = dir.listen(&dir.mkdir("in"), &["--via", ticket_of(&introducer)]);
    assert!(
        listener
            .ticket
            .ends_with(&format!(",{}", introducer.ticket)),
        "the ticket names the introducer's way: {}",
        listener.ticket
    );
    let registered = listener.wait_for("registered", EVENT_TIMEOUT);
    assert_eq!(registered["observed"], listener.addr, "{registered}");

    let (file, sha) = dir.random_file("a.bin", MIB);
    let out = dir.send(&[&through(&listener, &introducer), file.to_str().unwrap()]);
    out.assert_code(0);
    let sent = out.one("sent");
    assert_eq!(digest(sent), sha, "{out}");
    // Loopback: the address the introducer observes is the listener's own, no NAT.
    assert_eq!(sent["path"], "direct", "{out}");
    let punched = listener.wait_for("punched", EVENT_TIMEOUT);
    let received = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&received), sha);
    assert_eq!(
        punched["toward"], received["peer"],
        "the punch goes only toward the address the introducer saw the sender at"
    );
}

/// A ticket through an introducer the listener is not registered with: exit 3 and a
/// reason that says so; nothing stored.
#[test]
fn an_unregistered_listener_is_exit_3_with_the_reason() {
    let dir = TestDir::new();
    let introducer = dir.listen(&dir.mkdir("intro"), &["--introduce"]);
    let stranger = dir.stranger_fingerprint();
    let file = dir.write("a.txt", b"hello");
    let out = dir.send(&[
        "--retry-for",
        "1s",
        &format!("{stranger}@{}", introducer.ticket),
        file.to_str().unwrap(),
    ]);
    out.assert_json_error(3);
    let text = out.to_string();
    assert!(text.contains("not registered"), "{out}");
}

/// A listener that is no introducer refuses introduction requests: exit 3, "no
/// introducer" in the reason.
#[test]
fn a_plain_listener_refuses_to_introduce() {
    let dir = TestDir::new();
    let plain = dir.listen(&dir.mkdir("plain"), &[]);
    let stranger = dir.stranger_fingerprint();
    let file = dir.write("a.txt", b"hello");
    let out = dir.send(&[
        "--retry-for",
        "1s",
        &format!("{stranger}@{}", plain.ticket),
        file.to_str().unwrap(),
    ]);
    out.assert_json_error(3);
    assert!(out.to_string().contains("refused"), "{out}");
}

/// Bad tickets are usage errors with one line: an introducer way without the
/// listener's fingerprint, an empty way.
#[test]
fn tickets_with_bad_ways_are_usage_errors() {
    let dir = TestDir::new();
    let fp = dir.stranger_fingerprint();
    for ticket in [
        format!("127.0.0.1:9,{fp}@127.0.0.1:7"),
        format!("{fp}@127.0.0.1:9,"),
        format!("{fp}@nope@127.0.0.1:9"),
    ] {
        let out = dir.run(&["--json", "--ephemeral", "send", &ticket, "-"]);
        out.assert_json_error(2);
    }
}

/// A ticket whose direct way leads to a listener with another fingerprint: the
/// identity is refused (exit 4) and nothing is stored, whatever the introducer says.
#[test]
fn a_wrong_fingerprint_is_exit_4_and_nothing_is_stored() {
    let dir = TestDir::new();
    let introducer = dir.listen(&dir.mkdir("intro"), &["--introduce"]);
    let inbox = dir.mkdir("in");
    let listener = dir.listen(&inbox, &["--via", &introducer.ticket]);
    let stranger = dir.stranger_fingerprint();
    let file = dir.write("a.txt", b"hello");
    let out = dir.send(&[
        "--retry-for",
        "1s",
        &format!("{stranger}@{},{}", listener.addr, introducer.ticket),
        file.to_str().unwrap(),
    ]);
    out.assert_json_error(4);
    assert!(crate::util::list_files(&inbox).is_empty(), "{out}");
}

/// A black hole on loopback: a bound socket that reads nothing (nothing answers,
/// nothing refuses) while it lives, and its address.
fn black_hole() -> (std::net::UdpSocket, std::net::SocketAddr) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A listener and a ticket to it whose introducer is a black hole (`FP@ADDR,IFP@HOLE`),
/// with the hole's socket (keep it) and address.
fn behind_a_dead_introducer(
    dir: &TestDir,
) -> (Listener, String, std::net::UdpSocket, std::net::SocketAddr) {
    let listener = dir.listen(&dir.mkdir("in"), &[]);
    let (hole, dead) = black_hole();
    let ifp = dir.stranger_fingerprint();
    let ticket = format!("{}@{},{ifp}@{dead}", listener.fingerprint, listener.addr);
    (listener, ticket, hole, dead)
}

/// `qp2p --json --ephemeral race-connect --connect-timeout 30s ARGS`: an introduction
/// to a black hole would take 30 s to give up.
fn race_connect_30s(dir: &TestDir, args: &[&str]) -> crate::util::Outcome {
    let mut all = vec![
        "--json",
        "--ephemeral",
        "race-connect",
        "--connect-timeout",
        "30s",
    ];
    all.extend_from_slice(args);
    dir.run(&all)
}

/// A ticket whose introducer never answers but whose direct way works: the direct way
/// is dialed at once, not after the introduction gives up (here a 30 s connect
/// timeout), and wins.
#[test]
fn a_dead_introducer_does_not_hold_up_the_direct_way() {
    let dir = TestDir::new();
    let (_listener, ticket, _hole, _) = behind_a_dead_introducer(&dir);
    let file = dir.write("a.txt", b"straight there");
    let out = dir.send(&["--connect-timeout", "30s", &ticket, file.to_str().unwrap()]);
    out.assert_code(0);
    assert_eq!(out.one("sent")["path"], "direct", "{out}");
    assert!(
        out.elapsed < Duration::from_secs(15),
        "waited for the dead introducer: {out}"
    );
}

/// `race-connect` with the same ticket and a second peer that is dead: the listener's
/// direct way is dialed at once, while the introducer is asked, and wins well before
/// the introduction could give up; the dead peer's attempt is cancelled.
#[test]
fn race_connect_does_not_wait_for_a_dead_introducer() {
    let dir = TestDir::new();
    let (listener, ticket, _hole, dead) = behind_a_dead_introducer(&dir);
    let out = race_connect_30s(
        &dir,
        &[&ticket, &format!("{}@{dead}", listener.fingerprint)],
    );
    out.assert_code(0);
    let winner = out.one("winner");
    assert_eq!(winner["addr"], listener.addr, "{out}");
    assert_eq!(winner["path"], "direct", "{out}");
    let cancelled = out
        .named("loser")
        .into_iter()
        .any(|l| l["addr"] == dead.to_string() && l["outcome"] == "cancelled");
    assert!(cancelled, "{out}");
    assert!(
        out.elapsed < Duration::from_secs(10),
        "waited for the dead introducer: {out}"
    );
}

/// `race-connect --timeout 2s` with a ticket whose direct way and introducer are both
/// black holes: exit 3 at the timeout (not after the introduction's 30 s connect
/// timeout), and the unanswered introducer is named among the reasons.
#[test]
fn race_connect_timeout_bounds_a_dead_introducer_and_names_it() {
    let dir = TestDir::new();
    let ((_direct_hole, direct), (_intro_hole, intro)) = (black_hole(), black_hole());
    let fp = dir.stranger_fingerprint();
    let ifp = dir.stranger_fingerprint();
    let ticket = format!("{fp}@{direct},{ifp}@{intro}");
    let out = race_connect_30s(&dir, &["--timeout", "2s", &ticket]);
    out.assert_json_error(3);
    assert!(
        out.elapsed < Duration::from_secs(10),
        "the timeout did not bound the introduction: {out}"
    );
    let introducer = format!("{ifp}@{intro}");
    let named = out
        .named("loser")
        .into_iter()
        .any(|l| l["addr"] == introducer);
    assert!(named, "no loser event for the introducer: {out}");
    let message = out.one("error")["message"].as_str().unwrap_or_default();
    assert!(message.contains(&introducer), "{message}");
    assert!(message.contains(&direct.to_string()), "{message}");
}

/// Sends to a stranger's fingerprint through a [`Liar`] (relaying if `relay`) that
/// pairs every sender with another listener; asserts exit 4 and nothing stored, and
/// returns the send, the wrong listener's address and the liar.
fn send_through_a_liar(relay: bool) -> (crate::util::Outcome, String, Liar) {
    let dir = TestDir::new();
    let inbox = dir.mkdir("in");
    let wrong = dir.listen(&inbox, &[]);
    let liar = Liar::start(wrong.addr.parse().unwrap(), relay);
    let wanted = dir.stranger_fingerprint();
    let file = dir.write("a.txt", b"for someone else");
    let out = dir.send(&[
        "--retry-for",
        "2s",
        &format!("{wanted}@{}", liar.ticket),
        file.to_str().unwrap(),
    ]);
    out.assert_json_error(4);
    assert!(crate::util::list_files(&inbox).is_empty(), "{out}");
    (out, wrong.addr.clone(), liar)
}

/// A lying introducer (`util::liar`) that answers an introduction for any fingerprint
/// with another listener's address, as the punched candidate: the sender's handshake
/// proves the wrong identity, so the send is refused (exit 4) and nothing is stored.
#[test]
fn a_lying_introducer_cannot_pair_the_sender_with_another_listener() {
    let (out, wrong, _liar) = send_through_a_liar(false);
    assert!(
        out.to_string().contains(&format!("{wrong} (punched)")),
        "the lie was dialed: {out}"
    );
}

/// The same lie, and a relay that forwards every session to the wrong listener (a
/// compromised relay): the punched candidate fails on identity, the sender falls back
/// to the relay, whose handshake reaches the wrong listener (bytes came back through
/// it) and proves the wrong identity too. Exit 4; nothing stored.
#[test]
fn a_lying_relay_cannot_pair_the_sender_with_another_listener() {
    let (out, _, liar) = send_through_a_liar(true);
    let text = out.to_string();
    assert!(text.contains("(punched)"), "{out}");
    assert!(text.contains("(relayed)"), "the relay was dialed: {out}");
    assert!(
        liar.relayed_back.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the wrong listener answered through the relay: {out}"
    );
}

/// Both NATs port-preserving: the sender in lan B reaches the listener in lan A
/// through the punched hole; the file arrives whole; the introducer's host carried
/// under 64 KiB for a 64 MiB file (it never sees payload).
#[test]
#[ignore = "needs root: see README"]
fn netns_punched_transfer_through_two_port_preserving_nats() {
    let mut bed = Registered::up(Mapping::Preserving, Mapping::Preserving, &[]);
    let (file, sha) = bed.dir.random_file("big.bin", 64 * MIB);
    let before = bed.nat.wan_host_bytes();
    let out = bed.send_from_b(&file);
    out.assert_code(0);
    let after = bed.nat.wan_host_bytes();
    let sent = out.one("sent");
    assert_eq!(sent["path"], "punched", "{out}\n{}", bed.nat.describe());
    assert_eq!(sent["introducer"], bed.introducer.fingerprint, "{out}");
    assert_eq!(sent["peer"], format!("{EXT_A}:7447"), "{out}");
    assert_eq!(digest(sent), sha);
    let received = bed.listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&received), sha);
    assert_eq!(received["peer_path"], "punched", "{received}");
    let stored = received["path"].as_str().expect("stored path");
    assert_eq!(blake3_file(std::path::Path::new(stored)), sha);
    let carried = (after.0 - before.0) + (after.1 - before.1);
    assert!(
        carried < 64 * 1024,
        "the introducer's host carried {carried} bytes"
    );
}

/// The sender's NAT maps each destination to a new port: the punch cannot open a
/// path and no relay is offered. Exit 3 within the budget, with a reason that says
/// what was tried and what the NAT looked like.
#[test]
#[ignore = "needs root: see README"]
fn netns_symmetric_nat_without_relay_is_exit_3_with_the_reason() {
    let bed = Registered::up(Mapping::Preserving, Mapping::Symmetric, &[]);
    let file = bed.dir.write("a.txt", b"hello");
    let out = bed.send_from_b(&file);
    out.assert_json_error(3);
    assert!(
        out.elapsed < Duration::from_secs(30),
        "took {:?}\n{out}",
        out.elapsed
    );
    let error: Vec<&Value> = out.named("error");
    let message = error[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("punched"), "{message}");
    assert!(message.contains("new port"), "{message}");
    assert!(message.contains("no relay"), "{message}");
}

/// Listener and sender behind the same NAT: the LAN address wins (direct), even
/// though the introducer is asked too.
#[test]
#[ignore = "needs root: see README"]
fn netns_same_lan_takes_the_lan_address() {
    let bed = Registered::up(Mapping::Preserving, Mapping::Preserving, &[]);
    let file = bed.dir.write("a.txt", b"hello");
    // Only the introducer's way: the LAN address comes from the registration.
    let out = bed.nat.send(
        &bed.nat.lan_a,
        &bed.dir,
        &["--retry-for", "6s"],
        &through(&bed.listener, &bed.introducer),
        &file,
        SEND_TIMEOUT,
    );
    out.assert_code(0);
    let sent = out.one("sent");
    assert_eq!(sent["path"], "direct", "{out}");
    assert_eq!(sent["peer"], format!("{LAN_A}:7447"), "{out}");
}

/// A listener with a public address (in wan) that is also registered: the direct way
/// wins; the address the introducer observes is its own.
#[test]
#[ignore = "needs root: see README"]
fn netns_a_public_listener_is_reached_directly() {
    let nat = Nat::up(Mapping::Preserving, Mapping::Preserving);
    let dir = TestDir::new();
    let introducer = nat.introducer(&dir, &[]);
    let bind = format!("{WAN_IP}:7447");
    let public = nat.registered(&nat.wan, &dir, &bind, "pub-out", &introducer, &[]);
    let file = dir.write("a.txt", b"hello");
    let sent = nat.send_from_b(&dir, &public.ticket, &file);
    sent.assert_code(0);
    let ev = sent.one("sent");
    assert_eq!(ev["path"], "direct", "{sent}");
    assert_eq!(ev["peer"], bind, "{sent}");
}

/// The introducer is killed (no close reaches anyone) and started again with the same
/// identity: the listener notices, is registered again within 10 s, and a new send
/// takes the punched path.
#[test]
#[ignore = "needs root: see README"]
fn netns_the_listener_registers_again_after_the_introducer_restarts() {
    let mut bed = Registered::up(Mapping::Preserving, Mapping::Preserving, &[]);
    bed.introducer.signal(libc::SIGKILL);
    bed.introducer.wait_exit(Duration::from_secs(5));
    let again = bed.nat.introducer(&bed.dir, &[]);
    assert_eq!(again.fingerprint, bed.introducer.fingerprint);
    let restarted = std::time::Instant::now();
    let reg = bed.listener.wait_for("registered", Duration::from_secs(10));
    assert!(restarted.elapsed() < Duration::from_secs(10), "{reg}");
    let file = bed.dir.write("a.txt", b"after the restart");
    let out = bed.send_from_b(&file);
    out.assert_code(0);
    assert_eq!(out.one("sent")["path"], "punched", "{out}");
}

/// Router A forgets idle UDP bindings after 30 s. A registered listener that sees no
/// traffic for 3 minutes is still reachable: its keep-alives hold the binding.
#[test]
#[ignore = "needs root: see README"]
fn netns_a_quiet_listener_stays_reachable_through_a_30s_udp_timeout() {
    let nat = Nat::up(Mapping::Preserving, Mapping::Preserving);
    nat.udp_timeout(&nat.rtr_a, 30);
    let dir = TestDir::new();
    let introducer = nat.introducer(&dir, &[]);
    let mut listener = nat.listener_in_a(&dir, &introducer);
    std::thread::sleep(Duration::from_secs(180));
    listener.assert_running();
    let file = dir.write("a.txt", b"three minutes later");
    let out = nat.send_from_b(&dir, &listener.ticket, &file);
    out.assert_code(0);
    assert_eq!(out.one("sent")["path"], "punched", "{out}");
    // Everything the listener said since: no registration was lost.
    while listener.next_event(Duration::from_millis(300)).is_some() {}
    let lost = listener
        .seen
        .iter()
        .filter(|e| e["event"] == "registration_lost")
        .count();
    assert_eq!(lost, 0, "{}", listener.describe());
}

/// One side symmetric, the introducer relays: the transfer goes through the relay,
/// whole, and `path` says so.
#[test]
#[ignore = "needs root: see README"]
fn netns_symmetric_nat_with_a_relay_is_relayed() {
    let mut bed = Registered::up(Mapping::Preserving, Mapping::Symmetric, &["--relay"]);
    let (file, sha) = bed.dir.random_file("r.bin", 8 * MIB);
    let out = bed.send_from_b(&file);
    out.assert_code(0);
    let sent = out.one("sent");
    assert_eq!(sent["path"], "relayed", "{out}");
    assert_eq!(sent["introducer"], bed.introducer.fingerprint, "{out}");
    assert_eq!(digest(sent), sha);
    let received = bed.listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&received), sha);
    assert_eq!(received["peer_path"], "relayed", "{received}");
    assert_eq!(
        received["introducer"], bed.introducer.fingerprint,
        "{received}"
    );
}

/// Relay quotas: a session over `--relay-bytes` is cut with a clear error at the
/// sender (exit 5) and a warning at the introducer; with `--relay-sessions 1`, a
/// second session while the first is open is refused (exit 3, "busy") and logged.
#[test]
#[ignore = "needs root: see README"]
fn netns_relay_quotas_cut_and_refuse_with_clear_errors() {
    let bed = Registered::up(
        Mapping::Preserving,
        Mapping::Symmetric,
        &["--relay", "--relay-bytes", "1MiB", "--relay-sessions", "1"],
    );
    let (big, _) = bed.dir.random_file("big.bin", 8 * MIB);
    let out = bed.send_from_b(&big);
    out.assert_json_error(5);
    assert!(out.to_string().contains("--relay-bytes"), "{out}");

    // Hold one session open: a send from a stdin that stays open.
    let mut cmd = bed.nat.qp2p(&bed.nat.lan_b, &bed.dir);
    cmd.args(["--json", "--ephemeral", "send", &bed.listener.ticket, "-"]);
    cmd.stdin(std::process::Stdio::piped());
    let mut holder = crate::util::Proc::spawn(cmd);
    let mut stdin = holder.take_stdin();
    std::io::Write::write_all(&mut stdin, b"held open").unwrap();
    // The holder has its session once it is past the relay's answer: give it time.
    std::thread::sleep(Duration::from_secs(6));
    let small = bed.dir.write("small.txt", b"second");
    let second = bed.send_from_b(&small);
    second.assert_json_error(3);
    assert!(second.to_string().contains("busy"), "{second}");
    drop(stdin);
    holder.kill();
    let log = bed.introducer.stderr_text();
    assert!(log.contains("--relay-bytes"), "{log}");
    assert!(log.contains("--relay-sessions"), "{log}");
}

/// Figures, not a check (run by hand: `cargo test --test tests -- --ignored
/// nat_figures --nocapture`): for direct (a listener in wan), punched (two
/// port-preserving NATs) and relayed (the sender's NAT symmetric, `--relay`) paths in
/// the same bed, the median wall time of a `send` of 1 byte (process start to exit:
/// connect, introduction, punch, the message and its ack) over 5 runs, and the rate
/// of a 64 MiB send.
#[test]
#[ignore = "a measurement: needs root, prints figures"]
fn nat_figures() {
    let mut report = Vec::new();
    for (name, sender_nat) in [
        ("direct", Mapping::Preserving),
        ("punched", Mapping::Preserving),
        ("relayed", Mapping::Symmetric),
    ] {
        let nat = Nat::up(Mapping::Preserving, sender_nat);
        let dir = TestDir::new();
        let introducer = nat.introducer(&dir, &["--relay", "--relay-bytes", "1GiB"]);
        let (ns, bind) = match name {
            "direct" => (nat.wan.clone(), format!("{WAN_IP}:7447")),
            _ => (nat.lan_a.clone(), format!("{LAN_A}:7447")),
        };
        let listener = nat.registered(&ns, &dir, &bind, "fig-out", &introducer, &["--overwrite"]);
        if name == "punched" {
            // Keep-alive cost of a registered listener: a quiet minute at the
            // introducer's host.
            let before = nat.wan_host_bytes();
            std::thread::sleep(Duration::from_secs(60));
            let after = nat.wan_host_bytes();
            let bytes = (after.0 - before.0) + (after.1 - before.1);
            report.push(format!(
                "keep-alive of a registered listener: {bytes} bytes/min at the introducer ({} KiB/h)",
                bytes * 60 / 1024
            ));
        }
        let tiny = dir.write("tiny", b"x");
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let o = nat.send_from_b(&dir, &listener.ticket, &tiny);
                o.assert_code(0);
                assert_eq!(o.one("sent")["path"], name, "{o}");
                o.elapsed.as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (big, _) = dir.random_file("big", 64 * MIB);
        let o = nat.send_from_b(&dir, &listener.ticket, &big);
        o.assert_code(0);
        let secs = o.one("sent")["seconds"].as_f64().unwrap();
        report.push(format!(
            "{name}: send of 1 byte median {:.0} ms (min {:.0}, max {:.0}); 64 MiB at {:.1} MB/s",
            times[2],
            times[0],
            times[4],
            64.0 * 1.048576 / secs
        ));
    }
    eprintln!("{}", report.join("\n"));
}

/// `qp2p --json --ephemeral ARGS` in lan B, to completion.
fn run_in_b(bed: &Registered, args: &[&str]) -> crate::util::Outcome {
    let mut all = vec!["--json", "--ephemeral"];
    all.extend_from_slice(args);
    bed.nat.run(&bed.nat.lan_b, &bed.dir, &all, SEND_TIMEOUT)
}

/// `bench --peer` with a ticket of several ways races them once (punched here) and
/// measures over the winner's way; its rows say which.
#[test]
#[ignore = "needs root: see README"]
fn netns_bench_peer_takes_the_punched_way() {
    let bed = Registered::up(Mapping::Preserving, Mapping::Preserving, &[]);
    let ticket = bed.listener.ticket.clone();
    let out = run_in_b(
        &bed,
        &[
            "bench",
            "--peer",
            &ticket,
            "--scenario",
            "latency",
            "--count",
            "50",
        ],
    );
    out.assert_code(0);
    let row = out.one("bench");
    assert_eq!(row["path"], "punched", "{out}");
}

/// `race-connect` with a ticket of several ways: the introducer is asked, the
/// punched candidate joins the race and wins; `winner` says how.
#[test]
#[ignore = "needs root: see README"]
fn netns_race_connect_takes_the_punched_way() {
    let bed = Registered::up(Mapping::Preserving, Mapping::Preserving, &[]);
    let ticket = bed.listener.ticket.clone();
    let out = run_in_b(&bed, &["race-connect", "--timeout", "10s", &ticket]);
    out.assert_code(0);
    let winner = out.one("winner");
    assert_eq!(winner["path"], "punched", "{out}");
    assert_eq!(winner["addr"], format!("{EXT_A}:7447"), "{out}");
    assert_eq!(winner["introducer"], bed.introducer.fingerprint, "{out}");
}

/// `race-connect` with a ticket whose punch cannot work (the sender's NAT is
/// symmetric) and an introducer that relays: the race falls back to the relay, the
/// winner says `relayed`, and `--send` delivers over it.
#[test]
#[ignore = "needs root: see README"]
fn netns_race_connect_falls_back_to_the_relay() {
    let mut bed = Registered::up(Mapping::Preserving, Mapping::Symmetric, &["--relay"]);
    let (file, sha) = bed.dir.random_file("r.bin", MIB);
    let ticket = bed.listener.ticket.clone();
    let out = run_in_b(
        &bed,
        &[
            "race-connect",
            "--timeout",
            "20s",
            "--send",
            file.to_str().unwrap(),
            "--",
            &ticket,
        ],
    );
    out.assert_code(0);
    let winner = out.one("winner");
    assert_eq!(winner["path"], "relayed", "{out}");
    assert_eq!(winner["introducer"], bed.introducer.fingerprint, "{out}");
    assert_eq!(winner["fingerprint"], bed.listener.fingerprint, "{out}");
    let received = bed.listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&received), sha);
    assert_eq!(received["peer_path"], "relayed", "{received}");
}
