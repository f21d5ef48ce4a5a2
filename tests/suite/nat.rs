//! Through NAT on both ends (SPEC §8): `listen --introduce`, `listen --via`, tickets
//! with several ways, the punch, and the exit 3 when no way works.
//!
//! The loopback tests run anywhere. The `netns_` ones build two home routers with a
//! public network between them (`util::nat`) and need root, so they are `#[ignore]`d;
//! run them with `sudo cargo test --test tests -- --ignored netns_` (CI does: .ci/run).

use std::time::Duration;

use serde_json::Value;

use crate::util::nat::{Mapping, Nat, EXT_A, LAN_A, WAN_IP};
use crate::util::{sha256_file, Listener, TestDir, EVENT_TIMEOUT, MIB};

const SEND_TIMEOUT: Duration = Duration::from_secs(120);

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
    let out = dir.run(&[
        "--json",
        "--ephemeral",
        "send",
        &through(&listener, &introducer),
        file.to_str().unwrap(),
    ]);
    out.assert_code(0);
    let sent = out.one("sent");
    assert_eq!(sent["sha256"], sha, "{out}");
    // Loopback: the address the introducer observes is the listener's own, no NAT.
    assert_eq!(sent["path"], "direct", "{out}");
    let punched = listener.wait_for("punched", EVENT_TIMEOUT);
    let received = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(received["sha256"], sha);
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
    let out = dir.run(&[
        "--json",
        "--ephemeral",
        "send",
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
    let out = dir.run(&[
        "--json",
        "--ephemeral",
        "send",
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

/// The introducer in wan, `--introduce`, on a fixed port.
fn introducer(nat: &Nat, dir: &TestDir) -> Listener {
    let out = dir.mkdir("intro-out");
    nat.listen(
        &nat.wan,
        dir,
        &[
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            &format!("{WAN_IP}:7000"),
            "--introduce",
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

/// The listener in lan A, registered with the introducer.
fn listener_in_a(nat: &Nat, dir: &TestDir, introducer: &Listener) -> Listener {
    let out = dir.mkdir("a-out");
    let mut l = nat.listen(
        &nat.lan_a,
        dir,
        &[
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            &format!("{LAN_A}:7447"),
            "--via",
            &introducer.ticket,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let reg = l.wait_for("registered", Duration::from_secs(15));
    assert_eq!(
        reg["observed"],
        format!("{EXT_A}:7447"),
        "port-preserving NAT\n{reg}"
    );
    l
}

fn send_from(nat: &Nat, ns: &str, dir: &TestDir, ticket: &str, file: &str) -> crate::util::Outcome {
    nat.run(
        ns,
        dir,
        &[
            "--json",
            "--ephemeral",
            "send",
            "--retry-for",
            "6s",
            ticket,
            file,
        ],
        SEND_TIMEOUT,
    )
}

/// Both NATs port-preserving: the sender in lan B reaches the listener in lan A
/// through the punched hole; the file arrives whole; the introducer's host carried
/// under 64 KiB for a 64 MiB file (it never sees payload).
#[test]
#[ignore = "needs root: see README"]
fn netns_punched_transfer_through_two_port_preserving_nats() {
    let nat = Nat::up(Mapping::Preserving, Mapping::Preserving);
    let dir = TestDir::new();
    let introducer = introducer(&nat, &dir);
    let mut listener = listener_in_a(&nat, &dir, &introducer);
    let (file, sha) = dir.random_file("big.bin", 64 * MIB);
    let before = nat.wan_host_bytes();
    let out = send_from(
        &nat,
        &nat.lan_b,
        &dir,
        &listener.ticket,
        file.to_str().unwrap(),
    );
    out.assert_code(0);
    let after = nat.wan_host_bytes();
    let sent = out.one("sent");
    assert_eq!(sent["path"], "punched", "{out}\n{}", nat.describe());
    assert_eq!(sent["introducer"], introducer.fingerprint, "{out}");
    assert_eq!(sent["peer"], format!("{EXT_A}:7447"), "{out}");
    assert_eq!(sent["sha256"], sha);
    let received = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(received["sha256"], sha);
    let stored = received["path"].as_str().expect("stored path");
    assert_eq!(sha256_file(std::path::Path::new(stored)), sha);
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
    let nat = Nat::up(Mapping::Preserving, Mapping::Symmetric);
    let dir = TestDir::new();
    let introducer = introducer(&nat, &dir);
    let listener = listener_in_a(&nat, &dir, &introducer);
    let file = dir.write("a.txt", b"hello");
    let out = send_from(
        &nat,
        &nat.lan_b,
        &dir,
        &listener.ticket,
        file.to_str().unwrap(),
    );
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
    let nat = Nat::up(Mapping::Preserving, Mapping::Preserving);
    let dir = TestDir::new();
    let introducer = introducer(&nat, &dir);
    let listener = listener_in_a(&nat, &dir, &introducer);
    let file = dir.write("a.txt", b"hello");
    // Only the introducer's way: the LAN address comes from the registration.
    let out = send_from(
        &nat,
        &nat.lan_a,
        &dir,
        &through(&listener, &introducer),
        file.to_str().unwrap(),
    );
    out.assert_code(0);
    let sent = out.one("sent");
    assert_eq!(sent["path"], "direct", "{out}");
    assert_eq!(sent["peer"], format!("{LAN_A}:7447"), "{out}");
}
