//! Integration tests: the real `qp2p` binary, run as separate processes over
//! loopback. One test binary (as ripgrep does); helpers in `util`.
//!
//! The test modules live in `suite/` rather than next to this file because cargo
//! would build every `tests/*.rs` as a test binary of its own.

// On Windows some helpers serve only the unix suites below.
#[cfg_attr(not(unix), allow(dead_code))]
mod util;

#[path = "suite/answers.rs"]
mod answers;
#[path = "suite/bench.rs"]
mod bench;
#[path = "suite/bench_faults.rs"]
mod bench_faults;
#[path = "suite/ca.rs"]
mod ca;
#[path = "suite/digest.rs"]
mod digest;
#[path = "suite/failure.rs"]
mod failure;
#[path = "suite/faults.rs"]
mod faults;
#[path = "suite/flood.rs"]
mod flood;
#[path = "suite/generated.rs"]
mod generated;
// Linux resource limits, fifos, unreadable files, root: unix only.
#[cfg(unix)]
#[path = "suite/hardening/mod.rs"]
mod hardening;
#[path = "suite/library.rs"]
mod library;
// Network namespaces (Linux, root).
#[cfg(unix)]
#[path = "suite/mtu.rs"]
mod mtu;
// Introducers and hole punching; the netns_ ones need Linux and root.
#[cfg(unix)]
#[path = "suite/nat.rs"]
mod nat;
#[path = "suite/probe.rs"]
mod probe;
#[path = "suite/race.rs"]
mod race;
// SIGKILL of a sender and of a listener mid-transfer.
#[cfg(unix)]
#[path = "suite/resume.rs"]
mod resume;
#[path = "suite/safety.rs"]
mod safety;
// SIGINT and SIGTERM, FIFOs, symlinks.
#[cfg(unix)]
#[path = "suite/session.rs"]
mod session;
// SIGINT, SIGTERM and process groups.
#[cfg(unix)]
#[path = "suite/signals.rs"]
mod signals;
#[path = "suite/transfer.rs"]
mod transfer;
// SIGKILL of a listener mid-tree.
#[cfg(unix)]
#[path = "suite/trees.rs"]
mod trees;
#[path = "suite/trust.rs"]
mod trust;
// Network namespaces (Linux, root).
#[cfg(unix)]
#[path = "suite/upnp.rs"]
mod upnp;
#[cfg(unix)]
#[path = "suite/ux.rs"]
mod ux;
#[path = "suite/wire.rs"]
mod wire;
