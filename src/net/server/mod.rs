//! The server side: who gets a handshake, the handshake under a deadline, and every
//! stream routed by its kind in one place.
//!
//! Modelled on quinn's `Incoming` (accept / refuse / retry) and mini-redis's
//! `server::run` (one accept loop in the library, driven by a shutdown future):
//!
//! - [`Server::accept`] yields the next connection attempt that the limits admit
//!   ([`Incoming`]); [`Incoming::accept`] completes its handshake within
//!   [`ServerConfig::handshake_timeout`] and gives the [`Connected`] peer with its
//!   fingerprint. A caller that wants the connection itself (the probe's connect-back,
//!   test fixtures) stops here.
//! - [`Server::run`] is the whole accept loop for a listener: every connection a
//!   task, every stream on it another, each stream's header read under
//!   [`ServerConfig::header_timeout`] and routed by kind (`route`): probes to the
//!   [`ProbeService`](super::probe::ProbeService), benchmark kinds to
//!   [`bench::serve`](super::bench::serve), messages and texts to the caller's
//!   [`Handler`].
//!
//! What a hostile peer could do, and what stops it here: open connections without end
//! (the limits in `admission`, in all and per source address, refused before the
//! handshake so a refusal costs no cryptography); start handshakes and never finish
//! them (the handshake deadline, and past half of either limit a new address must first
//! answer a stateless Retry, so handshakes from forged source addresses cannot take the
//! slots that are left); open a stream and say nothing (the header deadline, then the
//! stream is reset); send a bad or huge header (the header is bounded by
//! [`framing`](super::framing), a bad one resets that stream only). A flood of any of
//! these is logged once per period (`Throttle`), not once per attempt.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::debug;

use super::endpoint::canonical;
use super::endpoint::Endpoint;
use super::tls::Fingerprint;

pub(crate) mod admission;
mod route;

pub(crate) use admission::{allow as throttled, Throttle};
use admission::{Admission, Slot};
pub use route::{Handler, Router, Stream};

/// A server's limits and deadlines.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once; more are refused before the handshake.
    pub max_connections: u32,
    /// Connections served at once from one IP address.
    pub max_connections_per_ip: u32,
    /// A connection whose handshake has not completed by then is dropped.
    pub handshake_timeout: Duration,
    /// A stream whose header has not arrived by then is reset.
    pub header_timeout: Duration,
}

impl Default for ServerConfig {
    /// The defaults of `qp2p listen`: 256 connections, 16 per address, 10 s for a
    /// handshake and for a header.
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_ip: 16,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// No connection limits (and so never a Retry): for servers only this process
    /// dials (in-process benchmarks, test fixtures) or that a deadline bounds.
    pub fn unlimited() -> Self {
        Self {
            max_connections: u32::MAX,
            max_connections_per_ip: u32::MAX,
            ..Self::default()
        }
    }
}

/// The accepting side of an [`Endpoint`], with admission applied.
#[derive(Debug, Clone)]
pub struct Server {
    endpoint: Endpoint,
    config: ServerConfig,
    admission: Arc<Mutex<Admission>>,
}

/// A connection attempt the limits admitted; its slot is held until the connection
/// (or this attempt) is dropped.
pub struct Incoming {
    inner: quinn::Incoming,
    remote: SocketAddr,
    slot: Slot,
    handshake_timeout: Duration,
}

/// A peer whose handshake completed; its admission slot is given back when this is
/// dropped.
pub struct Connected {
    /// The connection.
    pub conn: quinn::Connection,
    /// Where it comes from (IPv4-mapped addresses as IPv4).
    pub remote: SocketAddr,
    /// The peer's certificate fingerprint (`None` only if it showed no certificate).
    pub fingerprint: Option<Fingerprint>,
    /// Its place under the limits: given back when dropped; cancelled when the
    /// connection is evicted to make room (idle while a limit was full).
    slot: Slot,
}

/// Why a handshake did not give a connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Not completed within [`ServerConfig::handshake_timeout`]; dropped.
    #[error("handshake not completed within {}", super::retry::rounded(*.0))]
    TimedOut(Duration),
    /// Our trust rules refused the peer (not pinned, or the CA refused its
    /// certificate); `reason` is the verifier's, `fingerprint` the peer's when the
    /// reason names it.
    #[error("peer refused: {reason}")]
    Refused {
        /// The verifier's reason.
        reason: String,
        /// The refused peer's fingerprint, when known.
        fingerprint: Option<Fingerprint>,
    },
    /// The handshake failed at the transport (a protocol error).
    #[error("handshake failed: {0}")]
    Failed(quinn::ConnectionError),
    /// The peer went away before the handshake was done (a lost race, Ctrl-C).
    #[error("handshake abandoned: {0}")]
    Abandoned(quinn::ConnectionError),
}

impl Server {
    /// A server on `endpoint` (which must have been bound with trust rules for
    /// peers) under `config`'s limits.
    pub fn new(endpoint: Endpoint, config: ServerConfig) -> Self {
        let admission = Admission::new(config.max_connections, config.max_connections_per_ip);
        Self {
            endpoint,
            config,
            admission,
        }
    }

    /// The endpoint accepted on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The limits and deadlines.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The next connection attempt the limits admit; `None` once the endpoint is
    /// closed. Attempts past a limit are refused here, before the handshake; past half
    /// of a limit an address not yet validated is sent a stateless Retry and comes
    /// back (if it can) as a new attempt.
    ///
    /// Cancel-safe: the only await is quinn's `Endpoint::accept`, and an attempt taken
    /// from it is dealt with before returning.
    pub async fn accept(&self) -> Option<Incoming> {
        loop {
            let incoming = self.endpoint.quinn().accept().await?;
            let remote = canonical(incoming.remote_address());
            if !incoming.remote_address_validated() && Admission::busy(&self.admission, remote.ip())
            {
                // A stateless Retry: the client comes back with a token only a real
                // receiver at that address could have (one round trip), a forger never.
                debug!(remote = %remote, "busy: asking for address validation (Retry)");
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                continue;
            }
            match Admission::admit(&self.admission, remote.ip()) {
                Ok(slot) => {
                    return Some(Incoming {
                        inner: incoming,
                        remote,
                        slot,
                        handshake_timeout: self.config.handshake_timeout,
                    })
                }
                Err(why) => {
                    // Before the handshake: no cryptography spent, no state kept.
                    debug!(remote = %remote, "connection refused: {why}");
                    incoming.refuse();
                }
            }
        }
    }
}

impl Incoming {
    /// Where the attempt comes from (IPv4-mapped addresses as IPv4).
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Refuses the attempt (CONNECTION_REFUSED) without a handshake.
    pub fn refuse(self) {
        self.inner.refuse();
    }

    /// Completes the handshake within the deadline. Dropping the future (or a
    /// deadline passing) drops the unfinished handshake, which closes the connection.
    pub async fn accept(self) -> Result<Connected, HandshakeError> {
        let Incoming {
            inner,
            remote: _,
            slot,
            handshake_timeout,
        } = self;
        let handshake = async {
            match inner.accept() {
                Ok(connecting) => connecting.await,
                Err(e) => Err(e),
            }
        };
        let handshake = tokio::select! {
            done = tokio::time::timeout(handshake_timeout, handshake) => done,
            // A handshake that stalls while a limit is full may be the idle one that
            // makes room: dropping it closes the attempt.
            _ = slot.evicted().cancelled() => {
                return Err(HandshakeError::TimedOut(handshake_timeout));
            }
        };
        let conn = match handshake {
            Err(_) => return Err(HandshakeError::TimedOut(handshake_timeout)),
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(match &e {
                    quinn::ConnectionError::TransportError(te) => {
                        match admission::refusal(&te.reason) {
                            Some((reason, fingerprint)) => HandshakeError::Refused {
                                reason,
                                fingerprint,
                            },
                            None => HandshakeError::Failed(e),
                        }
                    }
                    _ => HandshakeError::Abandoned(e),
                })
            }
        };
        let fingerprint = Fingerprint::of_peer(&conn);
        Ok(Connected {
            remote: canonical(conn.remote_address()),
            conn,
            fingerprint,
            slot,
        })
    }
}
