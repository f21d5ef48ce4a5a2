//! The sender's side: introductions, and every way of a ticket raced at once.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;

use super::wire::{Request, Status};
use super::{ask, order, AskError, PeerPath};
use crate::net::addr::{Ticket, Way};
use crate::net::endpoint::{canonical, ConnectError};
use crate::net::race::{all_identity, Winner};
use crate::net::race::{race, Candidate, Fate};
use crate::net::tls::{Fingerprint, TrustRules};
use crate::{Backoff, Endpoint};

/// What an introducer told a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introduced {
    /// The sender's own address as the introducer sees it.
    pub own_observed: SocketAddr,
    /// The listener's address as the introducer sees it (its NAT's mapping), where
    /// the listener has punched toward `own_observed`.
    pub listener_observed: SocketAddr,
    /// The listener's own addresses (LAN, IPv6, mappings) as it registered them.
    pub listener_addrs: Vec<SocketAddr>,
    /// The introducer offers a relay.
    pub relay: bool,
}

/// Why an introduction failed.
#[derive(Debug, thiserror::Error)]
pub enum IntroduceError {
    /// No connection to the introducer.
    #[error("cannot reach the introducer: {0}")]
    Connect(#[from] ConnectError),
    /// The exchange failed.
    #[error("{0}")]
    Ask(#[from] AskError),
    /// The listener is not registered there.
    #[error("the listener is not registered with it (is its `listen --via` running?)")]
    Unknown,
    /// Rate-limited.
    #[error("busy (too many introductions); try again later")]
    Busy,
    /// Refused: not an introducer.
    #[error("refused: it is no introducer (no `listen --introduce`)")]
    Refused,
    /// The listener did not take the punch order.
    #[error("the listener did not answer the punch order")]
    NoAnswer,
}

/// Asks the introducer `ifp` at `at` to introduce us to `target`, from `endpoint`'s
/// socket (the one that then dials: the introducer observes its NAT mapping).
pub async fn introduce(
    endpoint: &Endpoint,
    at: SocketAddr,
    ifp: Fingerprint,
    target: Fingerprint,
    limit: Duration,
) -> Result<Introduced, IntroduceError> {
    let conn = endpoint.connect(at, TrustRules::pinned_to(ifp)).await?;
    let answer = ask(&conn, &Request::Introduce { target }, limit).await;
    conn.close(crate::net::framing::close::DONE, b"introduced");
    let answer = answer?;
    match answer.status {
        Status::Ok if answer.addrs.len() >= 2 => Ok(Introduced {
            own_observed: canonical(answer.addrs[0]),
            listener_observed: canonical(answer.addrs[1]),
            listener_addrs: answer.addrs[2..].iter().map(|a| canonical(*a)).collect(),
            relay: answer.relay,
        }),
        Status::Ok => Err(AskError::Malformed(crate::net::framing::FrameError::BadAck).into()),
        Status::Unknown => Err(IntroduceError::Unknown),
        Status::Busy => Err(IntroduceError::Busy),
        Status::Refused => Err(IntroduceError::Refused),
        Status::NoAnswer => Err(IntroduceError::NoAnswer),
    }
}

/// A relay session given to a sender.
#[derive(Debug)]
pub struct RelaySession {
    /// The relay's address: dial it.
    pub addr: SocketAddr,
    /// The control connection to the introducer: the session lasts while it is open,
    /// and the relay closes it with the reason when it cuts the session.
    pub control: quinn::Connection,
}

/// Asks the introducer `ifp` at `at` for a relay session to `target`, and binds our
/// side of it (bind datagrams from `endpoint`'s socket).
pub async fn relay(
    endpoint: &Endpoint,
    at: SocketAddr,
    ifp: Fingerprint,
    target: Fingerprint,
) -> Result<RelaySession, IntroduceError> {
    let control = endpoint.connect(at, TrustRules::pinned_to(ifp)).await?;
    let limit = super::ORDER_TIMEOUT * 2 + Duration::from_secs(1);
    let answer = ask(&control, &Request::Relay { target }, limit).await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            control.close(crate::net::framing::close::DONE, b"no relay");
            return Err(e.into());
        }
    };
    let (Status::Ok, [addr], Some(nonce)) = (answer.status, answer.addrs.as_slice(), answer.nonce)
    else {
        control.close(crate::net::framing::close::DONE, b"no relay");
        return Err(match answer.status {
            Status::Unknown => IntroduceError::Unknown,
            Status::Busy => IntroduceError::Busy,
            Status::Refused => IntroduceError::Refused,
            Status::NoAnswer => IntroduceError::NoAnswer,
            Status::Ok => AskError::Malformed(crate::net::framing::FrameError::BadAck).into(),
        });
    };
    let addr = canonical(*addr);
    let datagram = super::relay::bind_datagram(&nonce);
    for _ in 0..3 {
        endpoint
            .send_datagram(addr, &datagram)
            .await
            .map_err(|e| AskError::Stream(format!("relay bind datagram: {e}")))?;
    }
    Ok(RelaySession { addr, control })
}

/// The connection a [`reach`] won.
#[derive(Debug)]
pub struct Reached {
    /// The connection.
    pub conn: quinn::Connection,
    /// Where it goes.
    pub addr: SocketAddr,
    /// How.
    pub path: PeerPath,
    /// The winning handshake's duration.
    pub handshake: Duration,
    /// Retries the winner needed.
    pub retries: u32,
    /// Every other candidate and its fate.
    pub losers: Vec<Loser>,
    /// For a relayed path, the control connection to the introducer: keep it while
    /// the connection is used; its close reason says why a relay cut the session.
    pub control: Option<quinn::Connection>,
}

/// Why no way of a ticket worked.
#[derive(Debug)]
pub struct Unreached {
    /// Every candidate dialed and why it failed.
    pub tried: Vec<(SocketAddr, PeerPath, String)>,
    /// Every introducer asked and why it gave no candidates.
    pub introducers: Vec<(String, String)>,
    /// What the NATs on the way looked like, when that explains the failure.
    pub hint: Option<String>,
    /// Every candidate failed on identity (the peer there is not the one pinned).
    pub identity: bool,
}

impl fmt::Display for Unreached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("could not connect by any way")?;
        let mut parts: Vec<String> = self
            .tried
            .iter()
            .map(|(a, p, why)| format!("{a} ({}): {why}", p.name()))
            .collect();
        parts.extend(
            self.introducers
                .iter()
                .map(|(who, why)| format!("introducer {who}: {why}")),
        );
        if !parts.is_empty() {
            write!(f, " ({})", parts.join("; "))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unreached {}

/// The candidates of a ticket: its direct ways resolved, and what each introducer
/// answered (the listener's observed address, punched; its own addresses), ordered
/// (see [`order`]); the introducers' failures, what the NATs looked like, and the
/// introducers that offer a relay.
#[derive(Debug, Default)]
pub struct Ways {
    /// Every address to dial and how it would reach the listener.
    pub candidates: Vec<(SocketAddr, PeerPath)>,
    /// Every way that gave no candidate, and why.
    pub introducers: Vec<(String, String)>,
    /// What the NATs looked like (a port changed: symmetric).
    pub hints: Vec<String>,
    /// Introducers that offer a relay: fingerprint and address.
    pub relays: Vec<(Fingerprint, SocketAddr)>,
}

impl Ways {
    /// How long the direct and punched candidates are raced before the relay is
    /// asked for: [`RELAY_AFTER`](super::RELAY_AFTER) with a relay offered, or
    /// [`RELAY_AFTER_SYMMETRIC`](super::RELAY_AFTER_SYMMETRIC) when a NAT was seen
    /// changing ports (then no punch can work, the LAN candidates get a moment);
    /// `None` (the whole retry budget) when no relay is offered.
    pub fn before_relay(&self) -> Option<Duration> {
        if self.relays.is_empty() {
            None
        } else if self.hints.is_empty() {
            Some(super::RELAY_AFTER)
        } else {
            Some(super::RELAY_AFTER_SYMMETRIC)
        }
    }
}

/// Resolves the direct ways of `ticket` and asks each of its introducers, all at
/// once, for an introduction from `endpoint`'s socket.
pub async fn ways(endpoint: &Endpoint, ticket: &Ticket) -> Ways {
    let mut candidates: Vec<(SocketAddr, PeerPath)> = Vec::new();
    let mut introducers = Vec::new();
    let mut hints = Vec::new();
    let mut asks = Vec::new();
    let mut relays: Vec<(Fingerprint, SocketAddr)> = Vec::new();
    for way in &ticket.ways {
        match way {
            Way::Direct(t) => match t.resolve().await {
                Ok(addrs) => candidates.extend(addrs.into_iter().map(|a| (a, PeerPath::Direct))),
                Err(e) => introducers.push((t.to_string(), format!("cannot resolve: {e}"))),
            },
            Way::Introducer(t) => asks.push(async move {
                let shown = t.to_string();
                let (Some(ifp), Some(target)) = (t.expect, ticket.expect) else {
                    return Err((shown, "no fingerprint".to_string()));
                };
                let addrs = t
                    .resolve()
                    .await
                    .map_err(|e| (shown.clone(), format!("cannot resolve: {e}")))?;
                let limit = super::ORDER_TIMEOUT + Duration::from_secs(2);
                let mut last = String::new();
                for at in addrs {
                    match introduce(endpoint, at, ifp, target, limit).await {
                        Ok(found) => return Ok((ifp, at, found)),
                        Err(e) => last = e.to_string(),
                    }
                }
                Err((shown, last))
            }),
        }
    }
    for result in join_all(asks).await {
        match result {
            Ok((ifp, at, found)) => {
                if found.relay {
                    relays.push((ifp, at));
                }
                let local = endpoint.local_addr().map(|a| a.port()).ok();
                if local.is_some_and(|p| p != found.own_observed.port()) {
                    hints.push(format!(
                        "our NAT changed our port ({} seen as {}): it may map each destination to a new port",
                        local.unwrap_or_default(),
                        found.own_observed
                    ));
                }
                if !found.listener_addrs.is_empty()
                    && found
                        .listener_addrs
                        .iter()
                        .all(|a| a.port() != found.listener_observed.port())
                {
                    hints.push(format!(
                        "the listener's NAT changed its port (seen as {}): it may map each destination to a new port",
                        found.listener_observed
                    ));
                }
                candidates.push((found.listener_observed, PeerPath::Punched(ifp)));
                candidates.extend(
                    found
                        .listener_addrs
                        .into_iter()
                        .map(|a| (a, PeerPath::Direct)),
                );
            }
            Err(failed) => introducers.push(failed),
        }
    }
    order(&mut candidates);
    Ways {
        candidates,
        introducers,
        hints,
        relays,
    }
}

/// A candidate that lost: where, how it would have reached the peer, and its fate.
pub type Loser = (SocketAddr, PeerPath, Fate);

/// What a relay got us: the winning handshake, the relay's address, the path, and
/// the control connection to keep while the connection is used.
pub type RelayWin = (Winner, SocketAddr, PeerPath, quinn::Connection);

/// The relay fallback: asks each introducer of `relays` (fingerprint, address) in
/// turn for a relay session to `target` and dials it under `rules`; the first
/// handshake wins. A session that fails is closed and its dial joins `losers`; a
/// refusal joins `introducers` (who, and why).
pub async fn through_relay(
    endpoint: &Endpoint,
    relays: &[(Fingerprint, SocketAddr)],
    target: Fingerprint,
    rules: &TrustRules,
    backoff: &Backoff,
    losers: &mut Vec<Loser>,
    introducers: &mut Vec<(String, String)>,
) -> Option<RelayWin> {
    for (ifp, at) in relays.iter().copied() {
        let session = match relay(endpoint, at, ifp, target).await {
            Ok(session) => session,
            Err(e) => {
                introducers.push((format!("{ifp}@{at}"), format!("relay: {e}")));
                continue;
            }
        };
        let dial = [Candidate {
            addr: session.addr,
            rules: rules.clone(),
        }];
        let out = race(endpoint, &dial, backoff, None).await;
        match out.winner {
            Some(w) => return Some((w, session.addr, PeerPath::Relayed(ifp), session.control)),
            None => {
                session
                    .control
                    .close(crate::net::framing::close::DONE, b"relay not used");
                losers.extend(
                    out.losers
                        .into_iter()
                        .map(|(_, fate)| (session.addr, PeerPath::Relayed(ifp), fate)),
                );
            }
        }
    }
    None
}

/// Tries every way of `ticket` at once and returns the first connection whose
/// handshake proves the pinned identity (`rules`). Direct ways are dialed; each
/// introducer is asked for an introduction first (all at once, each bounded by the
/// connect timeout and `ORDER_TIMEOUT`), and what it answers joins the race: the
/// listener's observed address (the punched path) and its own addresses.
pub async fn reach(
    endpoint: &Endpoint,
    ticket: &Ticket,
    rules: &TrustRules,
    backoff: &Backoff,
) -> Result<Reached, Unreached> {
    let found = ways(endpoint, ticket).await;
    let outcome_wait = found.before_relay();
    let Ways {
        candidates,
        mut introducers,
        mut hints,
        relays,
    } = found;
    let dial: Vec<Candidate> = candidates
        .iter()
        .map(|(addr, _)| Candidate {
            addr: *addr,
            rules: rules.clone(),
        })
        .collect();
    let outcome = race(endpoint, &dial, backoff, outcome_wait).await;
    let mut losers: Vec<Loser> = outcome
        .losers
        .into_iter()
        .map(|(i, fate)| (candidates[i].0, candidates[i].1, fate))
        .collect();
    let winner = match (outcome.winner, ticket.expect) {
        (Some(w), _) => {
            let (addr, path) = candidates[w.index];
            Some((w, addr, path, None))
        }
        (None, Some(target)) => through_relay(
            endpoint,
            &relays,
            target,
            rules,
            backoff,
            &mut losers,
            &mut introducers,
        )
        .await
        .map(|(w, addr, path, control)| (w, addr, path, Some(control))),
        (None, None) => None,
    };
    match winner {
        Some((w, addr, path, control)) => Ok(Reached {
            conn: w.conn,
            addr,
            path,
            handshake: w.handshake,
            retries: w.retries,
            losers,
            control,
        }),
        None => {
            let identity = all_identity(losers.iter().map(|(_, _, fate)| fate));
            let tried = losers
                .into_iter()
                .map(|(a, p, fate)| (canonical(a), p, fate.reason()))
                .collect();
            let punched = candidates
                .iter()
                .any(|(_, p)| matches!(p, PeerPath::Punched(_)));
            if punched && relays.is_empty() {
                hints.push("no relay offered by the introducer".into());
            }
            Err(Unreached {
                tried,
                introducers,
                hint: (!hints.is_empty()).then(|| hints.join("; ")),
                identity,
            })
        }
    }
}
