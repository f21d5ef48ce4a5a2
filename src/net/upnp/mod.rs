//! UPnP IGD port mappings: find the gateway, map a UDP port, keep the mapping alive,
//! remove it.
//!
//! Built on `igd-next` (its tokio client). [`discover()`] finds the Internet Gateway
//! Device, [`Gateway::map`] adds a UDP mapping `EXT:PORT -> LOCAL:PORT` with a lease,
//! [`Gateway::unmap`] removes it, and [`Keeper`] holds one mapping for as long as a
//! `listen --upnp` runs: it renews the lease, finds the gateway again when renewal
//! fails, and removes the mapping when it is stopped. [`classify`] says whether an
//! external address can be reached from the internet at all.
//!
//! One concern per file; this file holds the constants, the error type and the address
//! classification they share, and the re-exports, so every item is named `upnp::X`
//! whichever file holds it:
//!
//! | file | what it holds |
//! | --- | --- |
//! | `discover.rs` | [`discover()`]: the SSDP search in rounds, from the address that routes to the default gateway (read from `/proc/net/route`); [`local_ip_towards`] |
//! | `gateway.rs` | [`Gateway`] and its requests (external address, table lookup, [`Gateway::map`], [`Gateway::unmap`]), each bounded by [`REQUEST_TIMEOUT`]; [`Mapping`], [`Entry`]; the gateway's error codes explained |
//! | `keeper.rs` | [`Keeper`]: one mapping held for a run, renewed, found again, removed when stopped; [`KeeperConfig`], [`KeeperEvent`] |
//!
//! What could go wrong, and how it is prevented:
//! - *The search leaves through the wrong interface* (or through none: a socket bound
//!   to `0.0.0.0` gets ENETUNREACH for the SSDP multicast group on a host without a
//!   default route). The M-SEARCH is sent from the local address that routes to the
//!   default gateway (read from `/proc/net/route`), so the multicast leaves on that
//!   interface and only the gateway we actually route through is found. Without a
//!   default route every directly connected IPv4 network is searched at once
//!   (`discover.rs`).
//! - *A single lost SSDP datagram means "no gateway"*: the search is repeated in short
//!   rounds until the caller's timeout, each round with a new M-SEARCH (`discover.rs`).
//! - *The mapping points at an address the gateway does not route to us* (a multi-homed
//!   host; gateways in secure mode refuse any internal client but the caller): the
//!   internal address is the local address of a UDP socket connected to the gateway,
//!   i.e. exactly the address our packets to it come from (`discover.rs`, used by
//!   `gateway.rs`).
//! - *The lease runs out under a running listener*: the [`Keeper`] renews at half of
//!   the lease actually granted (the gateway may clamp the one asked for; it is read
//!   back from the gateway's table), and when renewal fails it searches for the gateway
//!   again and maps anew, reporting a changed external address (`keeper.rs`).
//! - *Mappings left behind*: every mapping carries a lease, so a crash leaves nothing
//!   for longer than that; on a normal exit and on Ctrl-C/SIGTERM the callers remove
//!   it (the [`Keeper`] does so when stopped, bounded by a timeout). A mapping that
//!   existed before a run is reported by [`Gateway::lookup`] so a run never removes
//!   what it did not make (`keeper.rs`, `gateway.rs`).
//! - *A gateway that hangs*: every request to it is bounded by [`REQUEST_TIMEOUT`]
//!   (`gateway.rs`).
//! - *An external address that cannot work* (private: double NAT; 100.64/10: carrier
//!   NAT): [`classify`] names it so the user is told, but nothing is refused on that
//!   ground (a test bed legitimately uses documentation addresses) (this file).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

mod discover;
mod gateway;
mod keeper;

pub use discover::{discover, local_ip_towards};
pub use gateway::{Entry, Gateway, Mapping};
pub use keeper::{Keeper, KeeperConfig, KeeperEvent};

/// Description put on every mapping qp2p makes (shown by `upnpc -l`).
pub const DESCRIPTION: &str = "qp2p";
/// Longest wait for one request to the gateway.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a [`Keeper`] to finish when stopped.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// One search round: an M-SEARCH and the answers to it.
const SEARCH_ROUND: Duration = Duration::from_secs(2);
/// The longest lease IGDv2 allows (and the longest we ask for).
pub const MAX_LEASE: Duration = Duration::from_secs(604_800);
/// How many entries of the gateway's table are read when looking for a mapping.
const MAX_ENTRIES: u32 = 256;

/// What went wrong with the gateway. Callers map [`UpnpError::NoGateway`] to exit code
/// 6 and the refusals to 7.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpnpError {
    /// No Internet Gateway Device answered the search.
    #[error("no UPnP gateway found within {}: {detail}", crate::net::retry::rounded(*timeout))]
    NoGateway {
        /// How long we searched.
        timeout: Duration,
        /// What the search saw.
        detail: String,
    },
    /// The gateway refused the mapping, or cannot make one.
    #[error("the gateway refused to map UDP port {external_port} to {local}: {reason}")]
    MappingRefused {
        /// The external port asked for.
        external_port: u16,
        /// The internal address.
        local: SocketAddr,
        /// The gateway's answer.
        reason: String,
    },
    /// The gateway has no usable external address.
    #[error("the gateway reports no external address: {0}")]
    NoExternalIp(String),
    /// A request to the gateway failed (no answer, garbled answer).
    #[error("the gateway at {gateway} failed to answer {action}: {reason}")]
    Request {
        /// The gateway's control address.
        gateway: SocketAddr,
        /// The SOAP action.
        action: &'static str,
        /// What happened.
        reason: String,
    },
}

/// What kind of address a gateway reports as external.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// Routable on the internet.
    Public,
    /// RFC 1918 private: the gateway sits behind another NAT.
    Private,
    /// RFC 6598 shared space (100.64.0.0/10): carrier-grade NAT.
    CarrierNat,
    /// RFC 5737 documentation ranges: only ever seen in test beds.
    Documentation,
    /// Unspecified, loopback, link-local or otherwise reserved.
    Reserved,
}

/// Classifies an external address.
pub fn classify(ip: IpAddr) -> AddressKind {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_private() {
                AddressKind::Private
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                AddressKind::CarrierNat
            } else if matches!(o, [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]) {
                AddressKind::Documentation
            } else if v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
            {
                AddressKind::Reserved
            } else {
                AddressKind::Public
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_unspecified() || v6.is_loopback() || (s[0] & 0xffc0) == 0xfe80 {
                AddressKind::Reserved
            } else if (s[0] & 0xfe00) == 0xfc00 {
                AddressKind::Private
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                AddressKind::Documentation
            } else {
                AddressKind::Public
            }
        }
    }
}

impl AddressKind {
    /// What a user needs to know about such an external address, if anything.
    pub fn advice(self) -> Option<&'static str> {
        match self {
            AddressKind::Public => None,
            AddressKind::Private => Some(
                "a private address: this gateway is itself behind another NAT (double NAT), \
                 so a mapping here cannot make you reachable from the internet",
            ),
            AddressKind::CarrierNat => Some(
                "carrier-grade NAT (100.64.0.0/10): your provider's NAT sits in front of this \
                 gateway, so a mapping here cannot make you reachable from the internet",
            ),
            AddressKind::Documentation => Some(
                "a documentation range (RFC 5737): fine in a test bed, never seen on the \
                 internet",
            ),
            AddressKind::Reserved => Some("a reserved address: the gateway is not connected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_addresses_are_classified() {
        let c = |s: &str| classify(s.parse().unwrap());
        assert_eq!(c("203.0.113.1"), AddressKind::Documentation);
        assert_eq!(c("198.51.100.7"), AddressKind::Documentation);
        assert_eq!(c("192.168.1.1"), AddressKind::Private);
        assert_eq!(c("10.0.0.1"), AddressKind::Private);
        assert_eq!(c("172.16.0.1"), AddressKind::Private);
        assert_eq!(c("100.64.0.1"), AddressKind::CarrierNat);
        assert_eq!(c("100.127.255.254"), AddressKind::CarrierNat);
        assert_eq!(c("100.128.0.1"), AddressKind::Public);
        assert_eq!(c("0.0.0.0"), AddressKind::Reserved);
        assert_eq!(c("169.254.1.1"), AddressKind::Reserved);
        assert_eq!(c("8.8.8.8"), AddressKind::Public);
        assert_eq!(c("fd00::1"), AddressKind::Private);
        assert_eq!(c("2001:db8::1"), AddressKind::Documentation);
        // Never refused, only explained.
        assert!(AddressKind::Documentation.advice().is_some());
        assert!(AddressKind::Public.advice().is_none());
    }
}
