//! UPnP against a real router: `upnp-check` and `listen --upnp` in `lan`, probers and
//! senders in `wan`, miniupnpd and NAT in `router` (see `util::netns`).
//!
//! Every test here needs root and the Debian packages `nftables miniupnpd-nftables
//! miniupnpc`, so they are `#[ignore]`d; run them with
//! `sudo cargo test --test tests -- --ignored upnp` (CI does: .ci/run).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::namespace::InNamespace;
use crate::util::netns::{Bed, BedConfig, EXT_IP, LAN_IP, WAN_IP};
use crate::util::{Listener, Outcome, Proc, TestDir, EVENT_TIMEOUT, START_TIMEOUT};

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// A `qp2p listen` in wan that answers probes (and stores what it is sent).
fn prober(bed: &Bed, dir: &TestDir) -> Listener {
    bed.listen_in_wan(dir)
}

/// `qp2p --json --ephemeral upnp-check ARGS` in lan, to completion.
fn check(bed: &Bed, dir: &TestDir, args: &[&str]) -> Outcome {
    let mut all = vec!["--json", "--ephemeral", "upnp-check"];
    all.extend_from_slice(args);
    bed.run(&bed.lan, dir, &all, CHECK_TIMEOUT)
}

/// Starts `qp2p --json --ephemeral upnp-check ARGS` in lan.
fn spawn_check(bed: &Bed, dir: &TestDir, args: &[&str]) -> Proc {
    let mut all = vec!["--json", "--ephemeral", "upnp-check"];
    all.extend_from_slice(args);
    bed.spawn(&bed.lan, dir, &all)
}

/// Reads `proc`'s stdout until a `check` event of step `name` for which `done` holds
/// (within 30 s), and returns it; `None` if none came.
fn wait_for_step(proc: &Proc, name: &str, done: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(line) = proc.next_stdout_line(Duration::from_secs(1)) else {
            continue;
        };
        let ev: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if ev["step"] == name && done(&ev) {
            return Some(ev);
        }
    }
    None
}

/// `qp2p listen` in lan on LAN_IP:PORT, storing in DIR/lan-out, with EXTRA (`--upnp …`).
fn listen_in_lan(bed: &Bed, dir: &TestDir, port: &str, extra: &[&str]) -> Listener {
    bed.listen_at(&bed.lan, dir, &format!("{LAN_IP}:{port}"), "lan-out", extra)
}

/// Sends a small file named `name` from `ns` to `ticket`; asserts exit 0.
fn send_small(bed: &Bed, ns: &str, dir: &TestDir, ticket: &str, name: &str) -> Outcome {
    let file = dir.write(name, name.as_bytes());
    let sent = bed.send(ns, dir, &[], ticket, &file, CHECK_TIMEOUT);
    sent.assert_code(0);
    sent
}

/// The `check` events of a step.
fn steps<'a>(out: &'a Outcome, step: &str) -> Vec<&'a Value> {
    out.named("check")
        .into_iter()
        .filter(|e| e["step"] == step)
        .collect()
}

fn step<'a>(out: &'a Outcome, name: &str) -> &'a Value {
    let found = steps(out, name);
    assert_eq!(found.len(), 1, "one {name:?} step expected\n{out}");
    found[0]
}

/// lan runs `upnp-check --probe` against a listener in wan: every step ok, exit 0; the
/// gateway lists the mapping while the check runs and not after.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn upnp_check_with_probe_passes_every_step_and_removes_its_mapping() {
    let bed = Bed::up(BedConfig::default());
    let dir = TestDir::new();
    let prober = prober(&bed, &dir);
    let port = "40200";
    let proc = spawn_check(
        &bed,
        &dir,
        &[
            "--port",
            port,
            "--probe",
            &prober.ticket,
            "--timeout",
            "10s",
            "--connect-timeout",
            "10s",
        ],
    );
    // Freeze the check right after its mapping step and look at the gateway's table.
    let seen_during = wait_for_step(&proc, "mapping", |_| true).map(|_| {
        proc.signal(libc::SIGSTOP);
        let listed = bed.mapping(40200);
        proc.signal(libc::SIGCONT);
        listed
    });
    let out = proc.finish(CHECK_TIMEOUT);
    out.assert_code(0);
    out.assert_no_panic();
    let during = seen_during
        .unwrap_or_else(|| panic!("no mapping step seen\n{out}"))
        .unwrap_or_else(|| {
            panic!(
                "mapping not listed during the check\n{out}\n{}",
                bed.describe()
            )
        });
    assert_eq!(during.internal, format!("{LAN_IP}:{port}"));

    for name in [
        "gateway",
        "external_ip",
        "mapping",
        "reachability",
        "cleanup",
    ] {
        assert_eq!(step(&out, name)["ok"], true, "step {name}\n{out}");
    }
    let gateway = step(&out, "gateway");
    assert_eq!(gateway["igd_version"], 2, "{out}");
    assert_eq!(gateway["local_ip"], LAN_IP, "{out}");
    let ext = step(&out, "external_ip");
    assert_eq!(ext["external_ip"], EXT_IP);
    assert_eq!(
        ext["address_kind"], "documentation",
        "called out, not refused"
    );
    let mapping = step(&out, "mapping");
    assert_eq!(mapping["external"], format!("{EXT_IP}:{port}"));
    assert_eq!(mapping["internal"], format!("{LAN_IP}:{port}"));
    let reach = step(&out, "reachability");
    assert_eq!(reach["observed"], format!("{EXT_IP}:{port}"), "{out}");
    // The connect-back came from the prober's host, but not from its listening port.
    let from = reach["connected_from"].as_str().unwrap_or_default();
    assert!(from.starts_with(&format!("{WAN_IP}:")), "{out}");
    assert_ne!(
        from, prober.addr,
        "connect-back must use a fresh socket\n{out}"
    );
    assert_eq!(step(&out, "cleanup")["removed"], true);
    assert_eq!(bed.mapping(40200), None, "mapping left behind\n{out}");
}

/// `--keep` leaves the mapping; a later check removes only what it made itself.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn upnp_check_keep_leaves_the_mapping_and_later_checks_remove_only_their_own() {
    let bed = Bed::up(BedConfig::default());
    let dir = TestDir::new();
    let kept = check(&bed, &dir, &["--port", "40300", "--keep", "--lease", "10m"]);
    kept.assert_code(0);
    assert_eq!(step(&kept, "cleanup")["kept"], true, "{kept}");
    let reach = step(&kept, "reachability");
    assert_eq!(reach["ok"], Value::Null, "no --probe: not verified\n{kept}");
    assert!(bed.mapping(40300).is_some(), "--keep removed the mapping");

    // Another port: made and removed by that run; the kept one stays.
    let other = check(&bed, &dir, &["--port", "40301"]);
    other.assert_code(0);
    assert_eq!(step(&other, "cleanup")["removed"], true, "{other}");
    assert_eq!(bed.mapping(40301), None, "{other}");
    assert!(
        bed.mapping(40300).is_some(),
        "a later check removed a kept mapping"
    );

    // The kept port itself: it existed before this run, so this run leaves it.
    let same = check(&bed, &dir, &["--port", "40300"]);
    same.assert_code(0);
    assert_eq!(step(&same, "mapping")["pre_existing"], true, "{same}");
    assert_eq!(step(&same, "cleanup")["removed"], false, "{same}");
    assert!(
        bed.mapping(40300).is_some(),
        "removed a mapping it did not make"
    );
}

/// No miniupnpd: exit 6 within `--timeout`, with one clear error.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn upnp_check_without_gateway_exits_6_within_the_timeout() {
    let bed = Bed::up(BedConfig {
        miniupnpd: false,
        ..BedConfig::default()
    });
    let dir = TestDir::new();
    let out = check(&bed, &dir, &["--timeout", "3s"]);
    out.assert_json_error(6);
    assert!(
        out.elapsed < Duration::from_secs(5),
        "took {:?} with --timeout 3s\n{out}",
        out.elapsed
    );
    assert_eq!(step(&out, "gateway")["ok"], false, "{out}");
    assert!(steps(&out, "mapping").is_empty(), "{out}");
}

/// The router's allow rule covers ports 1024-65535 only: port 1000 is refused, exit 7.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn upnp_check_refused_mapping_exits_7() {
    let bed = Bed::up(BedConfig::default());
    let dir = TestDir::new();
    let out = check(&bed, &dir, &["--port", "1000"]);
    out.assert_json_error(7);
    assert_eq!(step(&out, "gateway")["ok"], true, "{out}");
    assert_eq!(step(&out, "mapping")["ok"], false, "{out}");
    assert!(bed.mappings().is_empty(), "{:?}", bed.mappings());
}

/// The mapping is made but the router drops every new inbound flow: exit 8, and the
/// mapping is still removed.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn upnp_check_with_inbound_dropped_at_the_router_exits_8() {
    let bed = Bed::up(BedConfig::default());
    bed.router_nft(r#"insert rule inet filter forward iifname "rwan0" ct state new drop"#);
    let dir = TestDir::new();
    let prober = prober(&bed, &dir);
    let out = check(
        &bed,
        &dir,
        &[
            "--port",
            "40400",
            "--probe",
            &prober.ticket,
            "--timeout",
            "5s",
        ],
    );
    out.assert_json_error(8);
    assert_eq!(step(&out, "mapping")["ok"], true, "{out}");
    let reach = step(&out, "reachability");
    assert_eq!(reach["ok"], false, "{out}");
    assert_eq!(reach["observed"], format!("{EXT_IP}:40400"), "{out}");
    assert_eq!(reach["connected_from"], Value::Null, "{out}");
    assert_eq!(step(&out, "cleanup")["removed"], true, "{out}");
    assert_eq!(bed.mapping(40400), None);
}

/// The false-positive guard. The check talks to the prober from the very port it asks
/// to be reached at, so lan holds an open connection to the wan prober (its
/// conntrack entry would let the prober's *own* socket, or that connection, back in).
/// miniupnpd accepts the mapping, but its DNAT chain is not hooked: no mapping exists
/// in the NAT. Only a connect-back from a fresh socket tells the truth: unreachable.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn upnp_check_open_connection_without_mapping_is_not_reachable() {
    let bed = Bed::up(BedConfig {
        dnat: false,
        ..BedConfig::default()
    });
    let dir = TestDir::new();
    let mut prober = prober(&bed, &dir);
    let out = check(
        &bed,
        &dir,
        &[
            "--port",
            "40500",
            "--probe",
            &prober.ticket,
            "--timeout",
            "5s",
        ],
    );
    out.assert_json_error(8);
    let reach = step(&out, "reachability");
    // The connection was open: the prober saw us at the very address it was asked
    // to connect back to.
    assert_eq!(reach["observed"], format!("{EXT_IP}:40500"), "{out}");
    assert_eq!(reach["mapping"], format!("{EXT_IP}:40500"), "{out}");
    assert_eq!(reach["ok"], false, "false positive!\n{out}");
    assert_eq!(reach["connected_from"], Value::Null, "{out}");
    prober.assert_running();
}

/// Sends a small file from wan to `ticket` and waits until `listener` stored it.
fn send_from_wan(bed: &Bed, dir: &TestDir, listener: &mut Listener, ticket: &str, name: &str) {
    send_small(bed, &bed.wan, dir, ticket, name);
    let got = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(got["name"], name, "{got}");
}

/// `listen --upnp --lease 30s` in lan: a wan sender reaches it through the mapping,
/// the mapping outlives two lease periods (renewed), and Ctrl-C removes it.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn listen_upnp_keeps_its_mapping_alive_and_removes_it_on_ctrl_c() {
    // A lease shorter than miniupnpd's default minimum (120 s) must really be 30 s.
    let bed = Bed::up(BedConfig {
        min_lifetime: 5,
        ..BedConfig::default()
    });
    let dir = TestDir::new();
    let mut listener = listen_in_lan(&bed, &dir, "7447", &["--upnp", "--lease", "30s"]);
    let mapped = listener.wait_for("mapped", START_TIMEOUT);
    assert_eq!(mapped["external"], format!("{EXT_IP}:7447"), "{mapped}");
    assert_eq!(mapped["lease_s"], 30, "{mapped}");
    let ticket = mapped["ticket"].as_str().expect("ticket").to_string();
    assert_eq!(ticket, format!("{}@{EXT_IP}:7447", listener.fingerprint));

    send_from_wan(&bed, &dir, &mut listener, &ticket, "first.txt");
    let listed = bed.mapping(7447).expect("mapping listed");
    assert!(listed.lease <= 30, "lease not what was asked: {listed:?}");

    // More than two lease periods: only renewal keeps the mapping.
    std::thread::sleep(Duration::from_secs(65));
    listener.assert_running();
    let listed = bed.mapping(7447).unwrap_or_else(|| {
        panic!(
            "mapping expired\n{}\n{}",
            listener.describe(),
            bed.describe()
        )
    });
    assert!(listed.lease <= 30, "{listed:?}");
    // A new flow (a new sender, a new source port) still gets in.
    send_from_wan(&bed, &dir, &mut listener, &ticket, "second.txt");

    listener.signal(libc::SIGINT);
    let status = listener.wait_exit(Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(130),
        "{}",
        listener.describe()
    );
    let unmapped = listener.wait_for("unmapped", EVENT_TIMEOUT);
    assert_eq!(unmapped["external_port"], 7447);
    assert_eq!(bed.mapping(7447), None, "mapping left after Ctrl-C");
}

/// Without a gateway, `listen --upnp` warns and goes on listening.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn listen_upnp_without_gateway_warns_and_keeps_listening() {
    let bed = Bed::up(BedConfig {
        miniupnpd: false,
        ..BedConfig::default()
    });
    let dir = TestDir::new();
    let mut listener = listen_in_lan(&bed, &dir, "0", &["--upnp"]);
    let warning = listener.wait_for("warning", Duration::from_secs(15));
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(message.contains("no UPnP gateway"), "{warning}");
    listener.assert_running();
    // Still a listener: a sender on the same network gets through.
    send_small(&bed, &bed.lan, &dir, &listener.ticket, "local.txt");
    let got = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(got["name"], "local.txt");
}

/// Bad options are usage errors (exit 2), refused by the parser before anything
/// touches the network (so this runs anywhere, without root).
#[test]
fn upnp_options_are_checked_before_anything_runs() {
    let dir = TestDir::new();
    for args in [
        &["--json", "upnp-check", "--lease", "soon"][..],
        &["--json", "upnp-check", "--port", "70000"],
        &["--json", "upnp-check", "--timeout", "x"],
        &["--json", "--ephemeral", "listen", "--lease", "30s"],
    ] {
        let out = dir.run(args);
        out.assert_json_error(2);
    }
}

/// Ctrl-C while the check waits for a prober: exit 130, and the mapping it made is
/// removed all the same.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn upnp_check_interrupted_removes_its_mapping() {
    let bed = Bed::up(BedConfig::default());
    let dir = TestDir::new();
    // Nothing listens there: the probe waits for its handshake.
    let silent = format!("{WAN_IP}:9");
    let proc = spawn_check(
        &bed,
        &dir,
        &[
            "--port",
            "40600",
            "--probe",
            &silent,
            "--timeout",
            "30s",
            "--connect-timeout",
            "30s",
        ],
    );
    let mapped = wait_for_step(&proc, "mapping", |ev| ev["ok"] == true);
    assert!(mapped.is_some(), "no mapping step\n{}", proc.stderr_text());
    assert!(
        bed.mapping(40600).is_some(),
        "not mapped\n{}",
        bed.describe()
    );
    proc.signal(libc::SIGINT);
    let out = proc.finish(Duration::from_secs(15));
    out.assert_code(130);
    out.assert_no_panic();
    assert_eq!(step(&out, "cleanup")["removed"], true, "{out}");
    assert_eq!(bed.mapping(40600), None, "mapping left after Ctrl-C\n{out}");
}

/// The gateway goes away under a running `listen --upnp` (miniupnpd stopped: renewal
/// fails) and comes back (restarted, its table empty): the listener warns, searches
/// for the gateway again, and maps anew.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn listen_upnp_maps_again_after_the_gateway_restarts() {
    let mut bed = Bed::up(BedConfig {
        min_lifetime: 5,
        ..BedConfig::default()
    });
    let dir = TestDir::new();
    let mut listener = listen_in_lan(&bed, &dir, "7448", &["--upnp", "--lease", "10s"]);
    let first = listener.wait_for("mapped", START_TIMEOUT);
    assert_eq!(first["renew_s"], 5, "{first}");
    bed.stop_miniupnpd();
    // The next renewal (within 5 s) fails.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ev = listener.wait_for(
            "warning",
            deadline.saturating_duration_since(Instant::now()),
        );
        if ev["message"].as_str().unwrap_or("").contains("renewing") {
            break;
        }
    }
    bed.start_miniupnpd();
    let again = listener.wait_for("mapped", Duration::from_secs(30));
    assert_eq!(again["external"], format!("{EXT_IP}:7448"), "{again}");
    assert!(bed.mapping(7448).is_some(), "{}", bed.describe());
    listener.assert_running();
}

/// `listen --upnp --via` in lan, the introducer in wan: once mapped, the listener
/// registers again announcing the mapping, and the `mapped` event's ticket names
/// every way, the mapping first. A wan sender given only the introducer's way is
/// told the mapped address and reaches the listener there, directly (no punch
/// needed), and the file arrives.
#[test]
#[ignore = "needs root and miniupnpd: see README"]
fn listen_upnp_with_via_announces_the_mapping_and_the_direct_way_wins() {
    let bed = Bed::up(BedConfig::default());
    let dir = TestDir::new();
    let bind = format!("{WAN_IP}:7000");
    let introducer = bed.listen_at(&bed.wan, &dir, &bind, "intro-out", &["--introduce"]);
    let mut listener = listen_in_lan(&bed, &dir, "7447", &["--upnp", "--via", &introducer.ticket]);
    let mapped = listener.wait_for("mapped", START_TIMEOUT);
    assert_eq!(mapped["external"], format!("{EXT_IP}:7447"), "{mapped}");
    assert_eq!(
        mapped["ticket"],
        format!(
            "{}@{EXT_IP}:7447,{LAN_IP}:7447,{}",
            listener.fingerprint, introducer.ticket
        ),
        "{mapped}"
    );
    // The registration that announces the mapping: an earlier one, before the
    // mapping, was skipped while waiting for `mapped`.
    listener.wait_for("registered", EVENT_TIMEOUT);
    let through = format!("{}@{}", listener.fingerprint, introducer.ticket);
    let sent = send_small(&bed, &bed.wan, &dir, &through, "m.txt");
    let ev = sent.one("sent");
    assert_eq!(ev["path"], "direct", "{sent}");
    assert_eq!(ev["peer"], format!("{EXT_IP}:7447"), "{sent}");
    let got = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(got["name"], "m.txt", "{got}");
}
