//! Integration tests: the real `qp2p` binary, run as separate processes over
//! loopback. One test binary (as ripgrep does); helpers in `util`.
//!
//! The test modules live in `suite/` rather than next to this file because cargo
//! would build every `tests/*.rs` as a test binary of its own.

mod util;

#[path = "suite/bench.rs"]
mod bench;
#[path = "suite/bench_faults.rs"]
mod bench_faults;
#[path = "suite/ca.rs"]
mod ca;
#[path = "suite/failure.rs"]
mod failure;
#[path = "suite/faults.rs"]
mod faults;
#[path = "suite/flood.rs"]
mod flood;
#[path = "suite/generated.rs"]
mod generated;
#[path = "suite/hardening.rs"]
mod hardening;
#[path = "suite/mtu.rs"]
mod mtu;
#[path = "suite/probe.rs"]
mod probe;
#[path = "suite/race.rs"]
mod race;
#[path = "suite/safety.rs"]
mod safety;
#[path = "suite/session.rs"]
mod session;
#[path = "suite/signals.rs"]
mod signals;
#[path = "suite/transfer.rs"]
mod transfer;
#[path = "suite/trust.rs"]
mod trust;
#[path = "suite/upnp.rs"]
mod upnp;
#[path = "suite/ux.rs"]
mod ux;
#[path = "suite/wire.rs"]
mod wire;
