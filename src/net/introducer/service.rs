//! The introducer's side (`listen --introduce`): the registry of listeners, and
//! introductions with their punch orders.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use tracing::{debug, info, warn};

use super::relay::Relay;
use super::wire::{self, Answer, Request, Status};
use super::{ask, INTRODUCTIONS_PER_WINDOW, ORDER_TIMEOUT, RATE_WINDOW};
use crate::net::endpoint::canonical;
use crate::net::framing::{ErrorCode, Header};
use crate::net::tls::Fingerprint;
use crate::net::transfer;

/// The registrations an introducer keeps: at most this many listeners.
pub const MAX_REGISTRATIONS: usize = 4096;

struct Registration {
    /// The registration connection: punch and relay orders go over it, and its
    /// remote address is where the listener's NAT maps it now.
    conn: quinn::Connection,
    addrs: Vec<SocketAddr>,
}

#[derive(Default)]
struct State {
    registered: HashMap<Fingerprint, Registration>,
    /// Introductions asked per requester IP in the current window.
    asked: HashMap<IpAddr, (Instant, u32)>,
}

/// The introducer service of a listener (`--introduce`, with `--relay` a relay).
#[derive(Clone, Default)]
pub struct IntroducerService {
    state: Arc<Mutex<State>>,
    relay: Option<Relay>,
}

impl std::fmt::Debug for IntroducerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntroducerService").finish_non_exhaustive()
    }
}

impl IntroducerService {
    /// A service with no registrations yet; with `relay`, it also relays.
    pub fn new(relay: Option<Relay>) -> Self {
        Self {
            state: Arc::default(),
            relay,
        }
    }

    /// How many listeners are registered now.
    pub fn registered(&self) -> usize {
        self.lock().registered.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves one introduction stream whose header has been read, on `conn` from
    /// `peer` (whose fingerprint TLS proved).
    pub async fn serve(
        &self,
        header: &Header,
        first: Bytes,
        (send, mut recv): (Option<SendStream>, RecvStream),
        conn: &quinn::Connection,
        peer_fp: Option<Fingerprint>,
    ) {
        let Some(mut send) = send else {
            transfer::refuse(&mut recv, None, ErrorCode::Unsupported);
            return;
        };
        let request = match wire::read_body(header, first, &mut recv).await {
            Ok(r) => r,
            Err(code) => {
                warn!(code = ?code, "malformed introduction stream; resetting it");
                transfer::refuse(&mut recv, Some(&mut send), code);
                return;
            }
        };
        let peer = canonical(conn.remote_address());
        let answer = match (request, peer_fp) {
            (_, None) => Answer::bare(Status::Refused),
            (Request::Register { addrs }, Some(fp)) => self.register(conn, peer, fp, addrs),
            (Request::Introduce { target }, Some(fp)) => self.introduce(peer, fp, target).await,
            (Request::Relay { target }, Some(_)) => self.relay(conn, target).await,
            (Request::Punch { .. } | Request::RelayOrder { .. }, Some(_)) => {
                // Punch orders go from an introducer to its listeners, never here.
                transfer::refuse(&mut recv, Some(&mut send), ErrorCode::Unsupported);
                return;
            }
        };
        if send.write_all(&answer.encode()).await.is_ok() {
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        }
    }

    fn register(
        &self,
        conn: &quinn::Connection,
        observed: SocketAddr,
        fp: Fingerprint,
        addrs: Vec<SocketAddr>,
    ) -> Answer {
        let renewed = {
            let mut state = self.lock();
            if state.registered.len() >= MAX_REGISTRATIONS && !state.registered.contains_key(&fp) {
                warn!(%observed, "registration refused: {MAX_REGISTRATIONS} listeners registered");
                return Answer::bare(Status::Busy);
            }
            let previous = state.registered.insert(
                fp,
                Registration {
                    conn: conn.clone(),
                    addrs: addrs.clone(),
                },
            );
            previous.is_some_and(|p| p.conn.stable_id() == conn.stable_id())
        };
        info!(fingerprint = %fp, %observed, addrs = ?addrs, "listener registered");
        if renewed {
            // Registered again on the same connection: its watch is running already
            // (one per connection, however many times it registers).
            return Answer {
                addrs: vec![observed],
                ..Answer::bare(Status::Ok)
            };
        }
        // Forgotten when its connection ends (unless it registered again since).
        let this = self.clone();
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.closed().await;
            let mut state = this.lock();
            if state
                .registered
                .get(&fp)
                .is_some_and(|r| r.conn.stable_id() == conn.stable_id())
            {
                state.registered.remove(&fp);
                drop(state);
                info!(fingerprint = %fp, "listener gone; registration removed");
            }
        });
        Answer {
            addrs: vec![observed],
            ..Answer::bare(Status::Ok)
        }
    }

    async fn introduce(
        &self,
        requester: SocketAddr,
        fp: Fingerprint,
        target: Fingerprint,
    ) -> Answer {
        if !self.allowed(requester) {
            info!(%requester, "introduction refused: too many requests from this address");
            return Answer::bare(Status::Busy);
        }
        let found = {
            let state = self.lock();
            state
                .registered
                .get(&target)
                // Where the listener is now: QUIC follows a NAT rebinding (a new
                // port), and so does this, unlike the address seen at registration.
                .map(|r| {
                    (
                        r.conn.clone(),
                        canonical(r.conn.remote_address()),
                        r.addrs.clone(),
                    )
                })
        };
        let Some((conn, observed, addrs)) = found else {
            info!(%requester, target = %target, "introduction: no such listener registered");
            return Answer::bare(Status::Unknown);
        };
        // The punch goes toward the address *we* see the requester at: nothing the
        // requester says can aim the listener elsewhere.
        let order = Request::Punch {
            toward: requester,
            requester: fp,
        };
        let status = match ask(&conn, &order, ORDER_TIMEOUT).await {
            Ok(answer) => answer.status,
            Err(e) => {
                debug!(cause = %e, "punch order not answered");
                Status::NoAnswer
            }
        };
        info!(%requester, target = %target, listener = %observed, ?status, "introduction");
        if status != Status::Ok {
            return Answer::bare(status);
        }
        // The listener's own addresses as it registered them, its observed one too
        // if it is among them (then no NAT is in between: the sender calls it direct).
        let mut all = vec![requester, observed];
        all.extend(addrs);
        all.truncate(wire::MAX_ADDRS);
        Answer {
            relay: self.relay.is_some(),
            addrs: all,
            ..Answer::bare(Status::Ok)
        }
    }

    /// Counts a request (introduction or relay) from `requester`'s IP; false past
    /// [`INTRODUCTIONS_PER_WINDOW`] in the window.
    fn allowed(&self, requester: SocketAddr) -> bool {
        let mut state = self.lock();
        let now = Instant::now();
        if state.asked.len() > MAX_REGISTRATIONS {
            state
                .asked
                .retain(|_, (t, _)| now.duration_since(*t) <= RATE_WINDOW);
        }
        let entry = state.asked.entry(requester.ip()).or_insert((now, 0));
        if now.duration_since(entry.0) > RATE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= INTRODUCTIONS_PER_WINDOW
    }

    /// A relay session between the requester (its control connection `conn`) and
    /// the registered listener `target`.
    async fn relay(&self, conn: &quinn::Connection, target: Fingerprint) -> Answer {
        let Some(relay) = &self.relay else {
            return Answer::bare(Status::Refused);
        };
        if !self.allowed(canonical(conn.remote_address())) {
            info!(requester = %conn.remote_address(), "relay refused: too many requests from this address");
            return Answer::bare(Status::Busy);
        }
        let found = self.lock().registered.get(&target).map(|r| r.conn.clone());
        let Some(listener) = found else {
            return Answer::bare(Status::Unknown);
        };
        // The session socket goes on the address the requester reached us at.
        let Some(ip) = conn.local_ip() else {
            warn!("relay: the local address of the connection is unknown");
            return Answer::bare(Status::Refused);
        };
        let ip = ip.to_canonical();
        let Some(session) = relay.open(ip, target, conn.clone()).await else {
            return Answer::bare(Status::Busy);
        };
        let order = Request::RelayOrder {
            relay: session.addr,
            nonce: session.listener_nonce,
        };
        match ask(&listener, &order, ORDER_TIMEOUT).await {
            Ok(a) if a.status == Status::Ok => {}
            Ok(a) => return Answer::bare(a.status),
            Err(e) => {
                debug!(cause = %e, "relay order not answered");
                return Answer::bare(Status::NoAnswer);
            }
        }
        if tokio::time::timeout(ORDER_TIMEOUT, session.listener_bound)
            .await
            .is_err()
        {
            info!(relay = %session.addr, "relay: the listener's bind datagram did not arrive");
            return Answer::bare(Status::NoAnswer);
        }
        Answer {
            addrs: vec![session.addr],
            nonce: Some(session.sender_nonce),
            ..Answer::bare(Status::Ok)
        }
    }
}
