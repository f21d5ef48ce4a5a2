//! The relay of an introducer (`listen --introduce --relay`): a TURN-style session
//! (RFC 8656 as the model) forwarding UDP datagrams between two peers when no punched
//! path works. QUIC and TLS stay end to end: the relay sees only ciphertext.
//!
//! A session is one fresh UDP socket on the introducer's address. Each side first
//! sends a bind datagram ([`BIND_MAGIC`] and its own 16-byte nonce, which only the
//! introducer and that side know) from the socket it speaks QUIC on; the relay
//! latches the address it came from. From then on every datagram from one latched
//! address goes to the other, and anything from anywhere else is dropped. Latching by
//! nonce rather than by the address seen on the control connection lets a peer
//! behind a NAT that maps each destination to a new port use the relay.
//!
//! Limits (`--relay-sessions`, `--relay-bytes`, `--relay-time`): sessions at once,
//! bytes forwarded per session (both directions), lifetime per session; a session
//! idle for [`IDLE`] ends, and one whose sender closed its control connection ends
//! [`LINGER`] later (its last datagrams, the relayed connection's close, still
//! pass). A session cut by a limit is logged at the introducer, and
//! the sender's control connection is closed with code `REFUSED` and the reason, so
//! the sender can say why its transfer broke off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::wire::Nonce;
use crate::net::framing::close;
use crate::net::tls::Fingerprint;

/// What a bind datagram starts with (QUIC's fixed bit clear: never a QUIC packet).
pub const BIND_MAGIC: [u8; 8] = *b"\0qp2rly1";
/// A session with no datagram for this long ends.
pub const IDLE: Duration = Duration::from_secs(30);
/// How long a session still forwards after the sender closed its control
/// connection: the sender closes that and the relayed connection at once, and the
/// relayed connection's close must still reach the listener (else the listener
/// learns of the end only from its idle timeout).
pub const LINGER: Duration = Duration::from_secs(1);

/// The bind datagram for `nonce`.
pub fn bind_datagram(nonce: &Nonce) -> [u8; 24] {
    let mut d = [0u8; 24];
    d[..8].copy_from_slice(&BIND_MAGIC);
    d[8..].copy_from_slice(nonce);
    d
}

/// A relay's limits.
#[derive(Debug, Clone)]
pub struct RelayLimits {
    /// Sessions at once.
    pub sessions: usize,
    /// Bytes forwarded per session, both directions together.
    pub bytes: u64,
    /// Lifetime of a session.
    pub time: Duration,
}

impl Default for RelayLimits {
    /// 4 sessions, 256 MiB and 10 minutes each: a few transfers of a few files, not
    /// a free CDN.
    fn default() -> Self {
        Self {
            sessions: 4,
            bytes: 256 * 1024 * 1024,
            time: Duration::from_secs(600),
        }
    }
}

/// The relay of one introducer: its limits and the sessions under way.
#[derive(Debug, Clone)]
pub struct Relay {
    limits: RelayLimits,
    slots: Arc<Semaphore>,
}

/// One session being set up: its socket's address and the nonces.
pub struct Session {
    /// Where the peers send.
    pub addr: SocketAddr,
    /// The listener's nonce.
    pub listener_nonce: Nonce,
    /// The sender's nonce.
    pub sender_nonce: Nonce,
    /// Fires when the listener's bind datagram arrived.
    pub listener_bound: oneshot::Receiver<()>,
}

impl Relay {
    /// A relay with `limits`.
    pub fn new(limits: RelayLimits) -> Self {
        let slots = Arc::new(Semaphore::new(limits.sessions));
        Self { limits, slots }
    }

    /// Opens a session on `ip` between the listener `target` and the sender whose
    /// control connection is `control`; `None` (logged) when the session limit is
    /// reached or no socket can be bound.
    pub async fn open(
        &self,
        ip: std::net::IpAddr,
        target: Fingerprint,
        control: quinn::Connection,
    ) -> Option<Session> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            warn!(
                requester = %control.remote_address(),
                "relay refused: {} sessions under way (--relay-sessions)",
                self.limits.sessions
            );
            return None;
        };
        let socket = match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
            Ok(s) => s,
            Err(e) => {
                warn!(cause = %e, "relay: cannot bind a session socket");
                return None;
            }
        };
        let addr = socket.local_addr().ok()?;
        let (tx, rx) = oneshot::channel();
        let session = Session {
            addr,
            listener_nonce: rand::random(),
            sender_nonce: rand::random(),
            listener_bound: rx,
        };
        info!(%addr, listener = %target, requester = %control.remote_address(), "relay session opened");
        tokio::spawn(forward(
            socket,
            (session.listener_nonce, session.sender_nonce),
            self.limits.clone(),
            (tx, control, permit),
        ));
        Some(session)
    }
}

/// Forwards one session until a limit, idleness, or the sender's control connection
/// ends it.
async fn forward(
    socket: UdpSocket,
    (listener_nonce, sender_nonce): (Nonce, Nonce),
    limits: RelayLimits,
    (bound, control, _permit): (oneshot::Sender<()>, quinn::Connection, OwnedSemaphorePermit),
) {
    let mut bound = Some(bound);
    let (mut listener, mut sender): (Option<SocketAddr>, Option<SocketAddr>) = (None, None);
    let mut forwarded: u64 = 0;
    let mut buf = vec![0u8; 65_536];
    let end = tokio::time::sleep(limits.time);
    tokio::pin!(end);
    // The sender closed its control connection: the session ends after LINGER, so
    // that the close of the relayed connection, sent at the same moment, still
    // reaches the listener.
    let mut lingering = false;
    let why = loop {
        let got = tokio::select! {
            r = tokio::time::timeout(IDLE, socket.recv_from(&mut buf)) => match r {
                Ok(Ok(got)) => Some(got),
                Ok(Err(e)) => break format!("socket error: {e}"),
                Err(_) => break "idle".to_string(),
            },
            _ = &mut end => {
                if lingering {
                    break "the sender's control connection closed".to_string();
                }
                let why = format!(
                    "relay session cut: over its time limit ({}, --relay-time)",
                    crate::net::retry::rounded(limits.time)
                );
                warn!(forwarded, "{why}");
                control.close(close::REFUSED, why.as_bytes());
                break why;
            }
            _ = control.closed(), if !lingering => None,
        };
        let Some((n, from)) = got else {
            lingering = true;
            end.as_mut().reset(tokio::time::Instant::now() + LINGER);
            continue;
        };
        let from = crate::net::endpoint::canonical(from);
        let to = if Some(from) == listener {
            sender
        } else if Some(from) == sender {
            listener
        } else {
            if n == 24 && buf[..8] == BIND_MAGIC {
                if buf[8..24] == listener_nonce && listener.is_none() {
                    listener = Some(from);
                    if let Some(tx) = bound.take() {
                        let _ = tx.send(());
                    }
                } else if buf[8..24] == sender_nonce && sender.is_none() {
                    sender = Some(from);
                }
            }
            continue;
        };
        let Some(to) = to else { continue };
        forwarded += n as u64;
        if forwarded > limits.bytes {
            let why = format!(
                "relay session cut: over its limit of {} bytes (--relay-bytes)",
                limits.bytes
            );
            warn!(forwarded, "{why}");
            control.close(close::REFUSED, why.as_bytes());
            break why;
        }
        let _ = socket.send_to(&buf[..n], to).await;
    };
    info!(forwarded, why = %why, "relay session ended");
}
