//! The prober's client half: ask a peer which address it sees us at, ask it to connect
//! back to an address with a nonce, and wait for that nonce to arrive on a connection
//! our own endpoint accepted.
//!
//! What could go wrong, and how it is prevented (the qp2p crate's probe gave false
//! positives):
//! - *Counting the probe connection itself as proof*: the verdict is
//!   [`Verdict::Reachable`] only when the nonce arrived on a connection the caller's
//!   endpoint *accepted* (recorded by its acceptor into the arrivals map), never on the
//!   connection we dialed; the prober's own "delivered" is not believed without it
//!   ([`Verdict::Lost`]).
//! - *A nonce from an earlier probe*: every check draws a fresh random nonce.
//! - *Waiting forever*: connecting, each request and the wait for the arrival are each
//!   bounded (`limit`, plus [`CONNECT_BACK_TIMEOUT`] for the connect-back, plus half a
//!   second for an arrival under way).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::debug;

use super::{connect_back, observe, Nonce, ProbeError, Status, CONNECT_BACK_TIMEOUT};
use crate::net::endpoint::{ConnectError, Endpoint};
use crate::net::framing;
use crate::net::server::{HandshakeError, Server, ServerConfig};
use crate::net::tls::TrustRules;

/// Where nonces delivered to the caller's endpoint are recorded, by the connections it
/// accepted: the nonce and the address the connect-back came from; `arrived` is told
/// after each.
#[derive(Debug)]
pub struct Arrivals<'a> {
    /// The nonces delivered so far.
    pub seen: &'a Mutex<HashMap<Nonce, SocketAddr>>,
    /// Told once per nonce recorded.
    pub arrived: &'a mut mpsc::UnboundedReceiver<()>,
}

/// The acceptor [`Arrivals`] needs: accepts connections on `endpoint` (through the
/// server side, each handshake bounded by `limit`), records the nonce each delivers
/// into `seen` and tells `notify`. Runs until the endpoint closes; abort it when done.
pub async fn accept_connect_backs(
    endpoint: Endpoint,
    seen: Arc<Mutex<HashMap<Nonce, SocketAddr>>>,
    notify: mpsc::UnboundedSender<()>,
    limit: Duration,
) {
    let server = Server::new(
        endpoint,
        ServerConfig {
            handshake_timeout: limit,
            ..ServerConfig::unlimited()
        },
    );
    while let Some(incoming) = server.accept().await {
        let seen = seen.clone();
        let notify = notify.clone();
        tokio::spawn(async move {
            let connected = match incoming.accept().await {
                Ok(connected) => connected,
                Err(HandshakeError::TimedOut(_)) => return,
                Err(e) => {
                    debug!(cause = %e, "connect-back handshake failed");
                    return;
                }
            };
            let conn = &connected.conn;
            match super::receive_nonce(conn, limit).await {
                Ok((nonce, from)) => {
                    debug!(%from, "nonce delivered on an incoming connection");
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(nonce, from);
                    let _ = notify.send(());
                }
                Err(e) => debug!(cause = %e, "incoming connection delivered no nonce"),
            }
            // Give the prober time to read our acknowledgement, then close.
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
        });
    }
}

/// What a probe through one prober found.
#[derive(Debug)]
pub enum Verdict {
    /// The prober connected back through `asked` and the nonce arrived on a connection
    /// we accepted, from `from`; it sees us at `observed`.
    Reachable {
        /// Where the prober sees us.
        observed: SocketAddr,
        /// Where it was asked to connect back.
        asked: SocketAddr,
        /// Where the connect-back came from.
        from: SocketAddr,
    },
    /// The prober sees us at `observed`, another IP than `asked`, and refused to
    /// connect anywhere else.
    NotYourAddress {
        /// Where the prober sees us.
        observed: SocketAddr,
        /// Where it was asked to connect back.
        asked: SocketAddr,
    },
    /// The prober could not connect back to `asked`: nothing gets in through it.
    NotReached {
        /// Where the prober sees us.
        observed: SocketAddr,
        /// Where it was asked to connect back.
        asked: SocketAddr,
    },
    /// The prober is busy with other probes.
    Busy {
        /// Where the prober sees us.
        observed: SocketAddr,
        /// Where it was asked to connect back.
        asked: SocketAddr,
    },
    /// The prober says it delivered the nonce, but none arrived here.
    Lost {
        /// Where the prober sees us.
        observed: SocketAddr,
        /// Where it was asked to connect back.
        asked: SocketAddr,
    },
    /// The prober answered the connect-back request with an answer that belongs to
    /// another request.
    Confused {
        /// Where the prober sees us.
        observed: SocketAddr,
        /// Where it was asked to connect back.
        asked: SocketAddr,
    },
    /// A request failed: the observed-address one (`observed` is `None`) or the
    /// connect-back one.
    Failed {
        /// Where the prober sees us, when it said.
        observed: Option<SocketAddr>,
        /// Where it was asked to connect back, when it was.
        asked: Option<SocketAddr>,
        /// Why.
        error: ProbeError,
    },
    /// No connection to the prober.
    NoConnection(ConnectError),
    /// No connection to the prober within the limit.
    NoAnswer(Duration),
}

impl Verdict {
    /// Whether the check passed.
    pub fn is_reachable(&self) -> bool {
        matches!(self, Verdict::Reachable { .. })
    }

    /// The address the prober saw us at, when it said.
    pub fn observed(&self) -> Option<SocketAddr> {
        self.addresses().0
    }

    /// The address the prober was asked to connect back to, when it was.
    pub fn asked(&self) -> Option<SocketAddr> {
        self.addresses().1
    }

    /// Where the prober saw us and where it was asked to connect back, when known.
    fn addresses(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        match self {
            Verdict::Reachable {
                observed, asked, ..
            }
            | Verdict::NotYourAddress { observed, asked }
            | Verdict::NotReached { observed, asked }
            | Verdict::Busy { observed, asked }
            | Verdict::Lost { observed, asked }
            | Verdict::Confused { observed, asked } => (Some(*observed), Some(*asked)),
            Verdict::Failed {
                observed, asked, ..
            } => (*observed, *asked),
            Verdict::NoConnection(_) | Verdict::NoAnswer(_) => (None, None),
        }
    }

    /// Where the connect-back came from, when it arrived.
    pub fn from(&self) -> Option<SocketAddr> {
        match self {
            Verdict::Reachable { from, .. } => Some(*from),
            _ => None,
        }
    }
}

/// Probes through `prober` (whose peer must pass `rules`): connects from `endpoint`,
/// asks where it sees us, asks it to connect back to `external` (the port, and the IP
/// when known; else the IP it sees), and waits for the nonce in `arrivals`. `limit`
/// bounds the connect and each request. Closes the probe connection before returning.
pub async fn check(
    endpoint: &Endpoint,
    prober: SocketAddr,
    rules: TrustRules,
    external: (Option<IpAddr>, u16),
    limit: Duration,
    arrivals: &mut Arrivals<'_>,
) -> Verdict {
    let conn = match tokio::time::timeout(limit, endpoint.connect(prober, rules)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Verdict::NoConnection(e),
        Err(_) => return Verdict::NoAnswer(limit),
    };
    let verdict = ask_prober(&conn, external, limit, arrivals).await;
    conn.close(framing::close::DONE, b"probe done");
    verdict
}

async fn ask_prober(
    conn: &quinn::Connection,
    (external_ip, external_port): (Option<IpAddr>, u16),
    limit: Duration,
    arrivals: &mut Arrivals<'_>,
) -> Verdict {
    let observed = match observe(conn, limit).await {
        Ok(a) => a,
        Err(error) => {
            return Verdict::Failed {
                observed: None,
                asked: None,
                error,
            }
        }
    };
    // Connect back to the gateway's external address; if it would not say, to the
    // address the prober sees (it refuses any other IP anyway).
    let asked = SocketAddr::new(external_ip.unwrap_or(observed.ip()), external_port);
    let nonce = Nonce::random();
    let answer = connect_back(conn, asked, nonce, limit + CONNECT_BACK_TIMEOUT).await;
    // The prober answers once our endpoint acknowledged the nonce; still, give an
    // arrival that is under way a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    let from = loop {
        if let Some(from) = arrivals
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&nonce)
            .copied()
        {
            break Some(from);
        }
        match tokio::time::timeout_at(deadline, arrivals.arrived.recv()).await {
            Ok(Some(())) => continue,
            _ => break None,
        }
    };
    match (from, answer) {
        (Some(from), _) => Verdict::Reachable {
            observed,
            asked,
            from,
        },
        (None, Ok(a)) => match a.status {
            Status::NotYourAddress => Verdict::NotYourAddress { observed, asked },
            Status::Failed => Verdict::NotReached { observed, asked },
            Status::Busy => Verdict::Busy { observed, asked },
            Status::Delivered => Verdict::Lost { observed, asked },
            Status::Observed => Verdict::Confused { observed, asked },
        },
        (None, Err(error)) => Verdict::Failed {
            observed: Some(observed),
            asked: Some(asked),
            error,
        },
    }
}
