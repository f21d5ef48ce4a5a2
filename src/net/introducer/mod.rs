//! Through NAT on both ends: introducers and hole punching (PROTOCOL.md,
//! "Introductions"; SPEC §8).
//!
//! Three roles, all of them ordinary qp2p peers:
//! - an **introducer** (`listen --introduce`, [`IntroducerService`]) that both ends can
//!   reach keeps a registry of listeners: fingerprint → the address it observes the
//!   registration coming from, plus the listener's own (LAN) addresses;
//! - a **listener** behind NAT (`listen --via TICKET`, [`keep_registered`]) dials the
//!   introducer *from its listening socket*, so the NAT binding the introducer sees is
//!   the one a peer can punch through, registers, keeps that binding open with QUIC
//!   keep-alives, and takes punch orders on the same connection;
//! - a **sender** ([`reach`]) asks the introducer for an introduction from the socket
//!   it will dial from. The introducer sends the listener a punch order toward the
//!   address *it observed* for the sender; the listener sends [`PUNCH_DATAGRAMS`]
//!   small datagrams from its listening socket toward it (opening its own NAT's
//!   filter for that address and port) and acknowledges; only then does the
//!   introducer answer the sender with the listener's candidates, which the sender
//!   races together with the ticket's direct ways.
//!
//! When no direct or punched candidate connects within [`RELAY_AFTER`] and an
//! introducer offers a relay (`--relay`, [`relay`]), the sender asks it for a relay
//! session and dials that: a NAT that maps every destination to a new port
//! (symmetric) cannot be punched, but it can reach the relay.
//!
//! The order is sequenced rather than simultaneous (DCUtR has both sides dial at
//! RTT/2 of a measured round trip): the listener's punch leaves before the
//! introducer's answer does, so when the sender's first Initial arrives at the
//! listener's NAT the binding is there, whatever the two round-trip times are, at the
//! price of one listener–introducer round trip. The sender's own NAT lets the
//! listener's answers in because the sender's Initial went out first.
//!
//! What could go wrong, and how it is prevented:
//! - *A listener aimed at a third party*: an introduction request carries no address;
//!   the punch order's address is the one the introducer observed for the requester.
//!   A listener takes punch orders only on the connection it opened to the introducer
//!   it was told to use (pinned), at most [`PUNCHES_PER_WINDOW`] per
//!   [`RATE_WINDOW`], [`PUNCH_DATAGRAMS`] datagrams of [`PUNCH`]'s 8 bytes each; an
//!   introduction stream of kind "punch" arriving anywhere else is refused.
//! - *Someone registering as another listener*: the fingerprint registered is the one
//!   TLS proved on the registration connection; `--allow`/`--ca` on the introducer
//!   limit who may register or ask.
//! - *The introducer as a data path or an amplifier*: without `--relay` it carries a
//!   few hundred bytes per introduction and never payload; a relay forwards only
//!   between the two addresses that proved a session nonce, within its limits
//!   ([`RelayLimits`]). A relay order must name the introducer's own IP, or the
//!   listener refuses it. Introductions are limited per requester IP
//!   ([`INTRODUCTIONS_PER_WINDOW`]), registrations in number
//!   ([`MAX_REGISTRATIONS`]).
//! - *A lost introducer* (restart, network change): an introducer restarted with its
//!   identity answers the registration connection's next keep-alive (every 5 s) with
//!   a stateless reset (its reset key derives from its identity), one that is gone is
//!   noticed after [`REGISTRATION_IDLE`]; the listener then registers again, retrying
//!   every [`REREGISTER_EVERY`].
//! - *A hostile stream*: bodies are bounded ([`wire::MAX_BODY`]) and read under a
//!   deadline; a malformed one resets that stream only.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::net::framing::{ErrorCode, FrameError};
use crate::net::tls::Fingerprint;

mod client;
#[cfg(test)]
mod refusals;
mod register;
pub mod relay;
mod service;
pub mod wire;

pub use client::{
    introduce, reach, reach_any, relay as ask_relay, through_relay, IntroduceError, Introduced,
    Loser, Reached, RelaySession, RelayWin, Unreached, Ways,
};
pub use register::{keep_registered, RegistrationEvent};
pub use relay::{Relay, RelayLimits};
pub use service::{IntroducerService, MAX_REGISTRATIONS};

/// What a punch datagram carries: 8 bytes whose first has QUIC's fixed bit clear, so
/// a QUIC stack drops it as not QUIC.
pub const PUNCH: [u8; 8] = *b"\0qp2punc";
/// Punch datagrams per introduction: two before the listener acknowledges the order,
/// the rest spread over the next second (a lost first one, a slow sender).
pub const PUNCH_DATAGRAMS: usize = 5;
/// The window of the rate limits.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Punch orders a listener carries out per window; more are answered "busy".
pub const PUNCHES_PER_WINDOW: u32 = 16;
/// Introductions an introducer makes per requester IP per window.
pub const INTRODUCTIONS_PER_WINDOW: u32 = 16;
/// How long the introducer waits for a listener to take a punch order.
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(3);
/// The idle timeout of a registration connection (its keep-alive is a third of it:
/// 5 s, well inside the 30 s after which home routers forget a UDP binding). An
/// introducer restarted with its identity resets the old connection at the next
/// keep-alive (stateless reset, `endpoint`); one that is gone is noticed after this.
pub const REGISTRATION_IDLE: Duration = Duration::from_secs(15);
/// How long a sender tries the direct and punched candidates before it falls back to
/// an offered relay.
pub const RELAY_AFTER: Duration = Duration::from_secs(3);
/// [`RELAY_AFTER`] when a NAT on the way was seen changing ports (symmetric): the
/// punch cannot work, the LAN candidates have this long.
pub const RELAY_AFTER_SYMMETRIC: Duration = Duration::from_millis(500);
/// How often a listener tries to register again after losing its introducer.
pub const REREGISTER_EVERY: Duration = Duration::from_secs(1);

/// How a peer was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPath {
    /// Dialed at an address of the ticket or one the listener registered (its LAN).
    Direct,
    /// Through the hole punched at the listener's NAT, introduced by this introducer.
    Punched(Fingerprint),
    /// Through this introducer's relay.
    Relayed(Fingerprint),
}

impl PeerPath {
    /// `direct` or `punched`, as reports name it.
    pub fn name(&self) -> &'static str {
        match self {
            PeerPath::Direct => "direct",
            PeerPath::Punched(_) => "punched",
            PeerPath::Relayed(_) => "relayed",
        }
    }

    /// The introducer's fingerprint, for a path through one.
    pub fn introducer(&self) -> Option<Fingerprint> {
        match self {
            PeerPath::Direct => None,
            PeerPath::Punched(fp) | PeerPath::Relayed(fp) => Some(*fp),
        }
    }
}

impl fmt::Display for PeerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerPath::Direct => f.write_str("direct"),
            PeerPath::Punched(fp) => write!(f, "punched via {fp}"),
            PeerPath::Relayed(fp) => write!(f, "relayed by {fp}"),
        }
    }
}

/// Why an exchange on an introduction stream failed.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The stream or connection failed.
    #[error("introduction stream failed: {0}")]
    Stream(String),
    /// The peer reset the stream.
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// No answer in time.
    #[error("no answer within {}", crate::net::retry::rounded(*.0))]
    Timeout(Duration),
    /// The answer was garbled.
    #[error("malformed answer: {0}")]
    Malformed(FrameError),
}

/// Sends `request` on a new bidirectional stream of `conn` and reads the answer.
pub async fn ask(
    conn: &quinn::Connection,
    request: &wire::Request,
    limit: Duration,
) -> Result<wire::Answer, AskError> {
    let exchange = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| AskError::Stream(e.to_string()))?;
        send.write_all(&request.stream_bytes())
            .await
            .map_err(|e| AskError::Stream(e.to_string()))?;
        let _ = send.finish();
        let bytes = recv
            .read_to_end(wire::MAX_ANSWER)
            .await
            .map_err(|e| match e {
                quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) => {
                    AskError::Refused(match ErrorCode::from_varint(code) {
                        Some(c) => c.describe().to_string(),
                        None => format!("error code {code}"),
                    })
                }
                other => AskError::Stream(other.to_string()),
            })?;
        wire::Answer::decode(&bytes).map_err(AskError::Malformed)
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| AskError::Timeout(limit))?
}

/// The candidates of a peer in the order they are listed (all are dialed at once):
/// direct before punched, and within each IPv6 first, then private (LAN) IPv4, then
/// the rest; an address listed twice is kept once, as direct.
pub fn order(candidates: &mut Vec<(SocketAddr, PeerPath)>) {
    let rank = |a: &SocketAddr| match a.ip().to_canonical() {
        std::net::IpAddr::V6(_) => 0,
        std::net::IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() => 1,
        _ => 2,
    };
    // Direct before punched, so that an address both the ticket (or the listener)
    // names and the introducer observes counts as direct: no NAT in between.
    candidates.sort_by_key(|(a, path)| (matches!(path, PeerPath::Punched(_)), rank(a)));
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|(a, _)| seen.insert(crate::net::endpoint::canonical(*a)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_ordered_v6_lan_public_and_deduplicated() {
        let fp = Fingerprint([1; 32]);
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut c = vec![
            (a("203.0.113.1:7447"), PeerPath::Direct),
            (a("203.0.113.1:7447"), PeerPath::Punched(fp)),
            (a("198.51.100.1:7447"), PeerPath::Punched(fp)),
            (a("192.168.1.2:7447"), PeerPath::Direct),
            (a("[2001:db8::1]:7447"), PeerPath::Direct),
        ];
        order(&mut c);
        assert_eq!(
            c,
            vec![
                (a("[2001:db8::1]:7447"), PeerPath::Direct),
                (a("192.168.1.2:7447"), PeerPath::Direct),
                (a("203.0.113.1:7447"), PeerPath::Direct),
                (a("198.51.100.1:7447"), PeerPath::Punched(fp)),
            ]
        );
    }
}
