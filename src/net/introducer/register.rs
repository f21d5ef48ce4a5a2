//! The listener's side (`listen --via TICKET`): registration from the listening
//! socket, kept alive and renewed, and the punch orders that arrive on it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::wire::{self, Answer, Request, Status};
use super::{
    ask, PUNCH, PUNCHES_PER_WINDOW, PUNCH_DATAGRAMS, RATE_WINDOW, REGISTRATION_IDLE,
    REREGISTER_EVERY,
};
use crate::net::endpoint::canonical;
use crate::net::framing::ErrorCode;
use crate::net::tls::{Fingerprint, TrustRules};
use crate::net::transfer;
use crate::Endpoint;

/// What happens to a registration, for the listener's reports.
#[derive(Debug, Clone)]
pub enum RegistrationEvent {
    /// Registered (again after a loss, or with new addresses); the introducer sees
    /// us at `observed`.
    Registered {
        /// The introducer's address.
        introducer: SocketAddr,
        /// Our address as the introducer observes it (our NAT's mapping).
        observed: SocketAddr,
    },
    /// Not registered (yet, or any more); retrying.
    Lost {
        /// The introducer's address.
        introducer: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A relay order carried out: peers may now arrive from `relay`.
    RelayBound {
        /// The relay session's address.
        relay: SocketAddr,
    },
    /// A punch order carried out.
    Punched {
        /// Where the datagrams went (the requester as the introducer saw it).
        toward: SocketAddr,
        /// Who asked for the introduction.
        requester: Fingerprint,
    },
}

/// Punch orders carried out in the current window.
type Window = Arc<Mutex<(Instant, u32)>>;

/// Registers `endpoint` (a listener's) with the introducer `ifp` at `introducer`,
/// announcing `addrs` (its own direct addresses: LAN, a UPnP mapping once made), and
/// keeps it registered until the future is dropped: registers again on the same
/// connection whenever `addrs` changes, and on a new one whenever the connection is
/// lost, every [`REREGISTER_EVERY`] until it succeeds. Each change is told to
/// `on_event`.
pub async fn keep_registered(
    endpoint: Endpoint,
    introducer: SocketAddr,
    ifp: Fingerprint,
    mut addrs: watch::Receiver<Vec<SocketAddr>>,
    on_event: impl Fn(RegistrationEvent) + Send + Sync + 'static,
) {
    let on_event = Arc::new(on_event);
    let window: Window = Arc::new(Mutex::new((Instant::now(), 0)));
    let mut options = endpoint.options().clone();
    options.idle_timeout = REGISTRATION_IDLE;
    options.keep_alive = Some(REGISTRATION_IDLE / 3);
    let mut lost_told = false;
    loop {
        let lost = |reason: String, told: &mut bool| {
            if !*told {
                on_event(RegistrationEvent::Lost { introducer, reason });
                *told = true;
            }
        };
        let conn = match endpoint
            .connect_with(introducer, TrustRules::pinned_to(ifp), &options)
            .await
        {
            Ok(conn) => conn,
            Err(e) => {
                lost(e.to_string(), &mut lost_told);
                tokio::time::sleep(REREGISTER_EVERY).await;
                continue;
            }
        };
        let request = Request::Register {
            addrs: addrs.borrow_and_update().clone(),
        };
        match ask(&conn, &request, super::ORDER_TIMEOUT).await {
            Ok(Answer {
                status: Status::Ok,
                addrs: seen,
                ..
            }) if !seen.is_empty() => {
                lost_told = false;
                on_event(RegistrationEvent::Registered {
                    introducer,
                    observed: canonical(seen[0]),
                });
            }
            Ok(answer) => {
                let reason = format!("registration refused ({:?})", answer.status);
                lost(reason, &mut lost_told);
                conn.close(crate::net::framing::close::DONE, b"registration refused");
                tokio::time::sleep(REREGISTER_EVERY * 5).await;
                continue;
            }
            Err(e) => {
                lost(e.to_string(), &mut lost_told);
                conn.close(crate::net::framing::close::DONE, b"registration failed");
                tokio::time::sleep(REREGISTER_EVERY).await;
                continue;
            }
        }
        let reason = tokio::select! {
            reason = take_orders(&conn, &endpoint, &window, &on_event) => reason,
            reason = announce_changes(&conn, &mut addrs, introducer, &on_event) => reason,
        };
        conn.close(crate::net::framing::close::DONE, b"registering again");
        lost(
            format!("connection to the introducer lost: {reason}"),
            &mut lost_told,
        );
        tokio::time::sleep(REREGISTER_EVERY).await;
    }
}

/// Registers again on `conn` each time `addrs` changes (a UPnP mapping made or
/// lost), so introductions name the new addresses, each told to `on_event` as a
/// registration; returns why that failed, never if it does not.
async fn announce_changes(
    conn: &quinn::Connection,
    addrs: &mut watch::Receiver<Vec<SocketAddr>>,
    introducer: SocketAddr,
    on_event: &Arc<impl Fn(RegistrationEvent) + Send + Sync + 'static>,
) -> String {
    loop {
        if addrs.changed().await.is_err() {
            // No more changes will come: nothing to announce, ever.
            return std::future::pending().await;
        }
        let request = Request::Register {
            addrs: addrs.borrow_and_update().clone(),
        };
        match ask(conn, &request, super::ORDER_TIMEOUT).await {
            Ok(Answer {
                status: Status::Ok,
                addrs: seen,
                ..
            }) if !seen.is_empty() => {
                info!(addrs = ?request, "registered again with new addresses");
                on_event(RegistrationEvent::Registered {
                    introducer,
                    observed: canonical(seen[0]),
                });
            }
            Ok(answer) => return format!("registration refused ({:?})", answer.status),
            Err(e) => return e.to_string(),
        }
    }
}

/// Serves the punch orders of the registration connection until it ends; returns why
/// it ended.
async fn take_orders(
    conn: &quinn::Connection,
    endpoint: &Endpoint,
    window: &Window,
    on_event: &Arc<impl Fn(RegistrationEvent) + Send + Sync + 'static>,
) -> String {
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => return e.to_string(),
        };
        let endpoint = endpoint.clone();
        let window = window.clone();
        let on_event = on_event.clone();
        let conn_remote = conn.remote_address();
        tokio::spawn(async move {
            let request = match wire::read_request(&mut recv).await {
                Ok(r) => r,
                Err(code) => {
                    transfer::refuse(&mut recv, Some(&mut send), code);
                    return;
                }
            };
            let status = match request {
                Request::Punch { toward, requester } => {
                    let status = punch(&endpoint, canonical(toward), &window).await;
                    if status == Status::Ok {
                        on_event(RegistrationEvent::Punched { toward, requester });
                    }
                    status
                }
                Request::RelayOrder { relay, nonce } => {
                    let introducer = canonical(conn_remote);
                    let relay = canonical(relay);
                    let status = bind_relay(&endpoint, introducer, relay, &nonce, &window).await;
                    if status == Status::Ok {
                        on_event(RegistrationEvent::RelayBound { relay });
                    }
                    status
                }
                _ => {
                    transfer::refuse(&mut recv, Some(&mut send), ErrorCode::Unsupported);
                    return;
                }
            };
            if send.write_all(&Answer::bare(status).encode()).await.is_ok() {
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            }
        });
    }
}

/// Takes one slot of the rate limit; false when the window's are used up.
fn take_slot(window: &Window) -> bool {
    let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if now.duration_since(w.0) > RATE_WINDOW {
        *w = (now, 0);
    }
    if w.1 >= PUNCHES_PER_WINDOW {
        return false;
    }
    w.1 += 1;
    true
}

/// Carries out a relay order: three bind datagrams from the listening socket to the
/// relay, which must be on the introducer's own IP (an introducer cannot aim us at
/// anyone else either).
async fn bind_relay(
    endpoint: &Endpoint,
    introducer: SocketAddr,
    relay: SocketAddr,
    nonce: &super::wire::Nonce,
    window: &Window,
) -> Status {
    if relay.ip() != introducer.ip() {
        warn!(%relay, %introducer, "relay order refused: the relay is not on the introducer's address");
        return Status::Refused;
    }
    if !take_slot(window) {
        info!(%relay, "relay order refused: rate limit");
        return Status::Busy;
    }
    info!(%relay, "binding to the introducer's relay");
    let datagram = super::relay::bind_datagram(nonce);
    for _ in 0..3 {
        if let Err(e) = endpoint.send_datagram(relay, &datagram).await {
            warn!(%relay, cause = %e, "relay bind datagram not sent");
            return Status::Refused;
        }
    }
    Status::Ok
}

/// Carries out one punch order within the rate limit: two datagrams now, the rest
/// spread over the next second in the background.
async fn punch(endpoint: &Endpoint, toward: SocketAddr, window: &Window) -> Status {
    if !take_slot(window) {
        info!(%toward, "punch order refused: {PUNCHES_PER_WINDOW} in the last {RATE_WINDOW:?}");
        return Status::Busy;
    }
    info!(%toward, "punching toward the introduced peer");
    for _ in 0..2 {
        if let Err(e) = endpoint.send_datagram(toward, &PUNCH).await {
            warn!(%toward, cause = %e, "punch datagram not sent");
            return Status::Refused;
        }
    }
    let endpoint = endpoint.clone();
    tokio::spawn(async move {
        for _ in 2..PUNCH_DATAGRAMS {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let Err(e) = endpoint.send_datagram(toward, &PUNCH).await {
                debug!(%toward, cause = %e, "punch datagram not sent");
            }
        }
    });
    Status::Ok
}
