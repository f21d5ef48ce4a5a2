//! The sender's side: introductions, and every way of a ticket raced at once.
//!
//! What could go wrong, and how it is prevented:
//! - *A slow or dead introducer holding up a listener that is reachable directly*:
//!   [`reach_any`] dials the direct ways at once, and each introducer's candidates
//!   join that race as they arrive ([`race_joined`]); no step waits for all of them.
//! - *An address dialed twice* (a direct way the introducer also reports): the race
//!   skips a candidate it already has, which keeps the tag of the first (direct).
//! - *The relay tried while a better path is about to connect, or never*: it is asked
//!   for only once no handshake completed within [`Ways::absorb`]'s bound after it
//!   was offered (or every attempt failed), and always before giving up.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::wire::{Request, Status};
use super::{ask, order, AskError, PeerPath};
use crate::net::addr::{Target, Ticket, Way};
use crate::net::endpoint::{canonical, ConnectError};
use crate::net::race::{all_identity, race_joined, Joining, Winner};
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
    /// The rules the winner proved (those of its ticket).
    pub rules: TrustRules,
    /// The winning handshake's duration.
    pub handshake: Duration,
    /// Retries the winner needed.
    pub retries: u32,
    /// Every other candidate and its fate.
    pub losers: Vec<Loser>,
    /// Every way that gave no candidate (an introducer that failed, a name that did
    /// not resolve) by the time the race was won, and why.
    pub introducers: Vec<(String, String)>,
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

/// What the ways of a ticket gave besides candidates: the ways that gave none (and
/// why), what the NATs on the way looked like, and the introducers that offer a
/// relay.
#[derive(Debug, Default)]
pub struct Ways {
    /// Every way that gave no candidate, and why.
    pub introducers: Vec<(String, String)>,
    /// What the NATs looked like (a port changed: symmetric).
    pub hints: Vec<String>,
    /// Introducers that offer a relay: fingerprint and address.
    pub relays: Vec<(Fingerprint, SocketAddr)>,
}

impl Ways {
    /// Takes an introducer's answer: records its relay offer and what it shows of
    /// the NATs, and returns its candidates (the listener's observed address,
    /// punched; its own addresses, direct; ordered, see [`order`]) and how long they
    /// are raced before the relay is asked for: [`RELAY_AFTER`](super::RELAY_AFTER)
    /// with a relay offered, or [`RELAY_AFTER_SYMMETRIC`](super::RELAY_AFTER_SYMMETRIC)
    /// when a NAT was seen changing ports (then no punch can work, the LAN candidates
    /// get a moment); `None` (the whole retry budget) when no relay is offered.
    pub fn absorb(
        &mut self,
        endpoint: &Endpoint,
        ifp: Fingerprint,
        at: SocketAddr,
        found: Introduced,
    ) -> (Vec<(SocketAddr, PeerPath)>, Option<Duration>) {
        let mut symmetric = false;
        let local = endpoint.local_addr().map(|a| a.port()).ok();
        if local.is_some_and(|p| p != found.own_observed.port()) {
            symmetric = true;
            self.hints.push(format!(
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
            symmetric = true;
            self.hints.push(format!(
                "the listener's NAT changed its port (seen as {}): it may map each destination to a new port",
                found.listener_observed
            ));
        }
        let before_relay = found.relay.then(|| {
            self.relays.push((ifp, at));
            if symmetric {
                super::RELAY_AFTER_SYMMETRIC
            } else {
                super::RELAY_AFTER
            }
        });
        let mut candidates = vec![(found.listener_observed, PeerPath::Punched(ifp))];
        candidates.extend(
            found
                .listener_addrs
                .into_iter()
                .map(|a| (a, PeerPath::Direct)),
        );
        order(&mut candidates);
        (candidates, before_relay)
    }
}

/// The direct ways of `ticket`, resolved; and those that do not resolve, and why.
async fn direct_ways(ticket: &Ticket) -> (Vec<SocketAddr>, Vec<(String, String)>) {
    let mut addrs = Vec::new();
    let mut failed = Vec::new();
    for way in &ticket.ways {
        if let Way::Direct(t) = way {
            match t.resolve().await {
                Ok(found) => addrs.extend(found),
                Err(e) => failed.push((t.to_string(), format!("cannot resolve: {e}"))),
            }
        }
    }
    (addrs, failed)
}

/// Asks the introducer `way` for an introduction to `target` from `endpoint`'s
/// socket, trying each of its addresses in turn; each try is bounded by the connect
/// timeout and `ORDER_TIMEOUT`. Fails with the way and why.
async fn ask_introducer(
    endpoint: &Endpoint,
    way: &Target,
    target: Option<Fingerprint>,
) -> Result<(Fingerprint, SocketAddr, Introduced), (String, String)> {
    let shown = way.to_string();
    let (Some(ifp), Some(target)) = (way.expect, target) else {
        return Err((shown, "no fingerprint".to_string()));
    };
    let addrs = way
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
/// handshake proves the pinned identity (`rules`): [`reach_any`] with one ticket and
/// no deadline but the retry budget.
pub async fn reach(
    endpoint: &Endpoint,
    ticket: &Ticket,
    rules: &TrustRules,
    backoff: &Backoff,
) -> Result<Reached, Unreached> {
    reach_any(endpoint, &[(ticket.clone(), rules.clone())], backoff, None).await
}

/// Tries every way of every ticket at once (each under its own rules) and returns the
/// first connection whose handshake proves what its rules ask.
///
/// The direct ways are dialed at once, while every introducer is asked for an
/// introduction (all at once, each bounded by the connect timeout and
/// `ORDER_TIMEOUT`): a listener reachable directly is not kept waiting on a slow or
/// dead introducer. What an introducer answers joins the running race the moment it
/// arrives (the listener's observed address, the punched path; its own addresses),
/// see [`race_joined`]. When no handshake completes within
/// [`Ways::absorb`]'s bound after a relay was offered, or once every attempt failed,
/// the relays offered are asked in turn ([`through_relay`]). `deadline` bounds it
/// all, the relays included.
pub async fn reach_any(
    endpoint: &Endpoint,
    tickets: &[(Ticket, TrustRules)],
    backoff: &Backoff,
    deadline: Option<Duration>,
) -> Result<Reached, Unreached> {
    let started = tokio::time::Instant::now();
    let mut ways: Vec<Ways> = tickets.iter().map(|_| Ways::default()).collect();
    let mut direct = Vec::new();
    for (i, (ticket, rules)) in tickets.iter().enumerate() {
        let (addrs, failed) = direct_ways(ticket).await;
        ways[i].introducers.extend(failed);
        direct.extend(addrs.into_iter().map(|addr| {
            let rules = rules.clone();
            (Candidate { addr, rules }, (PeerPath::Direct, i))
        }));
    }
    let asks: FuturesUnordered<_> = tickets
        .iter()
        .enumerate()
        .flat_map(|(i, (ticket, _))| {
            ticket.ways.iter().filter_map(move |way| match way {
                Way::Introducer(t) => {
                    Some(async move { (i, ask_introducer(endpoint, t, ticket.expect).await) })
                }
                Way::Direct(_) => None,
            })
        })
        .collect();
    let late = asks.map(|(i, answer)| match answer {
        Ok((ifp, at, found)) => {
            let (found, within) = ways[i].absorb(endpoint, ifp, at, found);
            let rules = &tickets[i].1;
            let candidates = found
                .into_iter()
                .map(|(addr, path)| {
                    let rules = rules.clone();
                    (Candidate { addr, rules }, (path, i))
                })
                .collect();
            Joining { candidates, within }
        }
        Err(failed) => {
            ways[i].introducers.push(failed);
            Joining {
                candidates: Vec::new(),
                within: None,
            }
        }
    });
    let (outcome, raced) = race_joined(endpoint, direct, late, backoff, deadline).await;
    let mut losers: Vec<Loser> = outcome
        .losers
        .into_iter()
        .map(|(i, fate)| (raced[i].0.addr, raced[i].1 .0, fate))
        .collect();
    let mut winner = outcome.winner.map(|w| {
        let (chosen, (path, _)) = &raced[w.index];
        (w, chosen.addr, *path, chosen.rules.clone(), None)
    });
    // No handshake completed: each ticket's relays, in turn, within what is left.
    for (i, (ticket, rules)) in tickets.iter().enumerate() {
        let (None, Some(target)) = (&winner, ticket.expect) else {
            continue;
        };
        let w = &mut ways[i];
        if w.relays.is_empty() {
            continue;
        }
        let relayed = through_relay(
            endpoint,
            &w.relays,
            target,
            rules,
            backoff,
            &mut losers,
            &mut w.introducers,
        );
        let relayed = match deadline {
            Some(all) => {
                let left = all.saturating_sub(started.elapsed());
                tokio::time::timeout(left, relayed).await.ok().flatten()
            }
            None => relayed.await,
        };
        if let Some((w, addr, path, control)) = relayed {
            winner = Some((w, addr, path, rules.clone(), Some(control)));
        }
    }
    let introducers: Vec<(String, String)> = ways
        .iter_mut()
        .flat_map(|w| std::mem::take(&mut w.introducers))
        .collect();
    match winner {
        Some((w, addr, path, rules, control)) => Ok(Reached {
            conn: w.conn,
            addr,
            path,
            rules,
            handshake: w.handshake,
            retries: w.retries,
            losers,
            introducers,
            control,
        }),
        None => {
            let identity = all_identity(losers.iter().map(|(_, _, fate)| fate));
            let tried = losers
                .into_iter()
                .map(|(a, p, fate)| (canonical(a), p, fate.reason()))
                .collect();
            let punched = raced
                .iter()
                .any(|(_, (p, _))| matches!(p, PeerPath::Punched(_)));
            let mut hints: Vec<String> = ways.iter().flat_map(|w| w.hints.clone()).collect();
            if punched && ways.iter().all(|w| w.relays.is_empty()) {
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
