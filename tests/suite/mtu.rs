//! Packet sizes on real paths: a sender's packets grow to what the route's interface
//! allows and the path carries, and no further. `lan` sends through the NAT router to a
//! listener in `wan` (see `util::netns`), over veths whose MTU each test sets; the
//! `mtu` of `qp2p bench --peer` is the UDP payload its connection settled on.
//!
//! They need root (network namespaces), so they are `#[ignore]`d; run them with
//! `sudo cargo test --test tests -- --ignored netns_` (CI does: .ci/run).

use std::time::Duration;

use serde_json::Value;

use crate::util::namespace::InNamespace;
use crate::util::netns::{Bed, BedConfig};
use crate::util::TestDir;

/// The packet size (UDP payload) a 16 MiB bench upload from lan to wan settled on.
fn settled_mtu(bed: &Bed) -> u64 {
    let dir = TestDir::new();
    let mut listener = bed.listen_in_wan(&dir);
    let bench = bed.run(
        &bed.lan,
        &dir,
        &[
            "--json",
            "--ephemeral",
            "bench",
            "--peer",
            &listener.ticket,
            "--scenario",
            "throughput",
            "--size",
            "16MiB",
        ],
        Duration::from_secs(60),
    );
    bench.assert_code(0);
    listener.assert_running();
    let rows: Vec<&Value> = bench.named("bench");
    let mtu = rows.last().and_then(|row| row["mtu"].as_u64());
    mtu.unwrap_or_else(|| panic!("no mtu in the bench rows\n{bench}"))
}

fn bed(lan: u32, wan: u32) -> Bed {
    let bed = Bed::up(BedConfig {
        miniupnpd: false,
        ..BedConfig::default()
    });
    bed.set_mtu(lan, wan);
    bed
}

/// Ethernet (1500) all the way: 1472-byte payloads (IPv4), not the 1200 QUIC starts
/// with, and no probe above what the interface allows.
#[test]
#[ignore = "needs root: see README"]
fn netns_mtu_ethernet_path_settles_at_1472() {
    let bed = bed(1500, 1500);
    assert_eq!(settled_mtu(&bed), 1472, "{}", bed.describe());
}

/// Jumbo frames all the way: the search goes up to the interface's 9000.
#[test]
#[ignore = "needs root: see README"]
fn netns_mtu_jumbo_path_settles_at_8972() {
    let bed = bed(9000, 9000);
    assert_eq!(settled_mtu(&bed), 8972, "{}", bed.describe());
}

/// Jumbo frames at lan's interface, Ethernet beyond the router: the route allows 8972,
/// the path 1472; the larger probes are lost and the search settles within 20 bytes
/// below 1472, never above.
#[test]
#[ignore = "needs root: see README"]
fn netns_mtu_narrower_link_beyond_the_router_is_found() {
    let bed = bed(9000, 1500);
    let mtu = settled_mtu(&bed);
    assert!(
        (1452..=1472).contains(&mtu),
        "settled at {mtu}\n{}",
        bed.describe()
    );
}
