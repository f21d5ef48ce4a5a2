//! Dialing several addresses at once: the first completed handshake wins.
//!
//! A peer may be reachable at several addresses (a DNS name with A and AAAA records, a
//! LAN and a public address, a relay); trying them one after another costs the sum of
//! the dead ones' timeouts. [`race`] dials all of them concurrently, each with its own
//! jittered retry loop, and takes the first connection whose handshake completes. Every
//! other attempt is then cancelled: its future is dropped, and quinn closes a dropped
//! connection attempt explicitly (a CONNECTION_CLOSE goes out), so the peers that lost
//! see their connection closed instead of waiting out an idle timeout.
//!
//! What could go wrong, and how it is prevented:
//! - *Time to a winner growing with the number of dead peers*: attempts run concurrently
//!   in one task (`FuturesUnordered`), so a black-holed address costs nothing but its
//!   own timer.
//! - *A race that never ends*: each attempt is bounded by the connect timeout and the
//!   retry budget, and the whole race by an optional deadline.
//! - *A failure reported without its cause*: every loser keeps its own error, so "all
//!   failed" lists one reason per address.
//! - *Candidates known only later held up by those known now, or the other way
//!   round*: [`race_joined`] dials what is known at once and takes candidates that
//!   arrive while it runs (an introducer's answer: the punched address), each dialed
//!   the moment it arrives; an address already in the race is not dialed twice.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{self, FuturesUnordered, Stream, StreamExt};
use tokio::time::Instant;

use super::endpoint::{canonical, ConnectError, Endpoint};
use super::retry::Backoff;
use super::tls::TrustRules;

/// One address to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where.
    pub addr: SocketAddr,
    /// What the peer must satisfy (its pinned fingerprint, `--ca`).
    pub rules: TrustRules,
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Fate {
    /// Lost: still dialing when another attempt won; cancelled and closed.
    Cancelled,
    /// Failed on its own (after its retries).
    Failed(ConnectError),
}

impl Fate {
    /// Why it lost, as reports say it.
    pub fn reason(&self) -> String {
        match self {
            Fate::Cancelled => "cancelled".to_string(),
            Fate::Failed(e) => e.to_string(),
        }
    }

    /// It failed because the peer there proved another identity than the one asked
    /// for.
    pub fn is_identity(&self) -> bool {
        matches!(self, Fate::Failed(ConnectError::IdentityRejected(_)))
    }
}

/// Whether every one of `fates` (at least one) is an identity rejection: then no
/// candidate led to the peer asked for, and the error is "wrong peer" (exit 4), not
/// "unreachable" (exit 3).
pub fn all_identity<'a>(fates: impl IntoIterator<Item = &'a Fate>) -> bool {
    let mut any = false;
    for fate in fates {
        if !fate.is_identity() {
            return false;
        }
        any = true;
    }
    any
}

/// The winning connection.
#[derive(Debug)]
pub struct Winner {
    /// Index into the candidates.
    pub index: usize,
    /// The connection.
    pub conn: quinn::Connection,
    /// Duration of the attempt that succeeded (the handshake).
    pub handshake: Duration,
    /// Retries this candidate needed.
    pub retries: u32,
}

/// What a race produced: a winner if any, and the fate of every other candidate.
#[derive(Debug)]
pub struct Outcome {
    /// The first candidate whose handshake completed.
    pub winner: Option<Winner>,
    /// Every candidate but the winner, by index, in candidate order.
    pub losers: Vec<(usize, Fate)>,
}

/// Dials every candidate at once and returns the first that completes its handshake.
///
/// Each candidate retries on its own with `backoff`; `deadline` bounds the whole race.
/// Cancel-safe: dropping the future cancels every attempt.
pub async fn race(
    endpoint: &Endpoint,
    candidates: &[Candidate],
    backoff: &Backoff,
    deadline: Option<Duration>,
) -> Outcome {
    let tagged = candidates.iter().map(|c| (c.clone(), ())).collect();
    race_joined(endpoint, tagged, stream::empty(), backoff, deadline)
        .await
        .0
}

/// Candidates that join a running [`race_joined`], each with the caller's tag (how it
/// would reach the peer), and how much longer the race may go on once they arrived.
#[derive(Debug)]
pub struct Joining<T> {
    /// The new candidates.
    pub candidates: Vec<(Candidate, T)>,
    /// The race ends at most this long after they arrive (whatever is still dialing
    /// then fails on a timeout): the caller has a fallback to try by then. `None`:
    /// no new bound.
    pub within: Option<Duration>,
}

/// [`race`] with candidates that may arrive while it runs: `candidates` are dialed at
/// once, and each [`Joining`] of `late` the moment it arrives (a candidate whose
/// address and rules are already in the race is skipped: the first one listed keeps
/// its tag). The race ends with the first completed handshake; or when every attempt
/// failed and `late` has ended; or at `deadline` (from the start) or the earliest
/// bound a [`Joining`] set, whichever comes first.
///
/// Returns the outcome and every candidate raced, with its tag, in the order they
/// joined: the outcome's indices are into it. Cancel-safe.
pub async fn race_joined<T, S>(
    endpoint: &Endpoint,
    candidates: Vec<(Candidate, T)>,
    late: S,
    backoff: &Backoff,
    deadline: Option<Duration>,
) -> (Outcome, Vec<(Candidate, T)>)
where
    S: Stream<Item = Joining<T>>,
{
    let started = Instant::now();
    let mut all: Vec<(Candidate, T)> = Vec::new();
    let mut pending = FuturesUnordered::new();
    let join = |all: &mut Vec<(Candidate, T)>,
                pending: &mut FuturesUnordered<_>,
                new: Vec<(Candidate, T)>| {
        for (candidate, tag) in new {
            let known = |(c, _): &(Candidate, T)| {
                canonical(c.addr) == canonical(candidate.addr) && c.rules == candidate.rules
            };
            if !all.iter().any(known) {
                pending.push(attempt(endpoint, all.len(), candidate.clone(), backoff));
                all.push((candidate, tag));
            }
        }
    };
    join(&mut all, &mut pending, candidates);
    let late = late.fuse();
    tokio::pin!(late);
    let mut late_done = false;
    let mut end = deadline.map(|d| started + d);
    let mut failed: Vec<(usize, Fate)> = Vec::new();
    let mut winner = None;
    let timed_out = loop {
        if pending.is_empty() && late_done {
            break false;
        }
        let sleep = async {
            match end {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = pending.next(), if !pending.is_empty() => match next {
                Some((index, Ok((conn, handshake)), retries)) => {
                    winner = Some(Winner { index, conn, handshake, retries });
                    break false;
                }
                Some((index, Err(e), _)) => failed.push((index, Fate::Failed(e))),
                None => {}
            },
            joined = late.next(), if !late_done => match joined {
                Some(Joining { candidates, within }) => {
                    join(&mut all, &mut pending, candidates);
                    if let Some(within) = within {
                        let at = Instant::now() + within;
                        end = Some(end.map_or(at, |e| e.min(at)));
                    }
                }
                None => late_done = true,
            },
            _ = sleep => break true,
        }
    };
    drop(pending);
    let decided: Vec<usize> = failed
        .iter()
        .map(|(i, _)| *i)
        .chain(winner.as_ref().map(|w| w.index))
        .collect();
    for (index, (candidate, _)) in all.iter().enumerate() {
        if decided.contains(&index) {
            continue;
        }
        let fate = if timed_out {
            Fate::Failed(ConnectError::Timeout {
                addr: candidate.addr,
                timeout: end.map_or(started.elapsed(), |e| e - started),
            })
        } else {
            Fate::Cancelled
        };
        failed.push((index, fate));
    }
    failed.sort_by_key(|(i, _)| *i);
    let outcome = Outcome {
        winner,
        losers: failed,
    };
    (outcome, all)
}

type Attempt = (
    usize,
    Result<(quinn::Connection, Duration), ConnectError>,
    u32,
);

async fn attempt(
    endpoint: &Endpoint,
    index: usize,
    candidate: Candidate,
    backoff: &Backoff,
) -> Attempt {
    let candidate = &candidate;
    let (result, retries) = backoff
        .run(|attempt| {
            let rules = candidate.rules.clone();
            async move {
                let start = Instant::now();
                let connect = endpoint.connect(candidate.addr, rules);
                let conn = attempt
                    .within(connect, |timeout| ConnectError::Timeout {
                        addr: candidate.addr,
                        timeout,
                    })
                    .await?;
                Ok::<_, ConnectError>((conn, start.elapsed()))
            }
        })
        .await;
    (index, result, retries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::Fingerprint;

    use crate::net::testing::{accepting_listener as listener, client_endpoint as client};

    fn dead_addr() -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    }

    #[tokio::test]
    async fn the_live_peer_wins_and_dead_ones_are_cancelled() {
        let (_l, live) = listener();
        // Keep the dead sockets bound (nothing answers, nothing refuses).
        let dead: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut candidates: Vec<Candidate> = dead
            .iter()
            .map(|s| Candidate {
                addr: s.local_addr().unwrap(),
                rules: TrustRules::any(),
            })
            .collect();
        candidates.insert(
            1,
            Candidate {
                addr: live,
                rules: TrustRules::any(),
            },
        );
        let ep = client(Duration::from_secs(2));
        let start = std::time::Instant::now();
        let out = race(&ep, &candidates, &Backoff::default(), None).await;
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "no waiting for the dead"
        );
        let w = out.winner.expect("a winner");
        assert_eq!(w.index, 1);
        assert_eq!(out.losers.len(), 3);
        assert!(out.losers.iter().all(|(_, f)| matches!(f, Fate::Cancelled)));
    }

    #[tokio::test]
    async fn all_dead_fails_with_one_reason_each_within_the_budget() {
        let candidates: Vec<Candidate> = (0..3)
            .map(|_| Candidate {
                addr: dead_addr(),
                rules: TrustRules::any(),
            })
            .collect();
        let ep = client(Duration::from_millis(300));
        let backoff = Backoff {
            budget: Duration::from_secs(1),
            initial: Duration::from_millis(100),
            ..Backoff::default()
        };
        let start = std::time::Instant::now();
        let out = race(&ep, &candidates, &backoff, None).await;
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(out.winner.is_none());
        assert_eq!(out.losers.len(), 3);
        assert!(out
            .losers
            .iter()
            .all(|(_, f)| matches!(f, Fate::Failed(ConnectError::Timeout { .. }))));
    }

    #[tokio::test]
    async fn an_identity_mismatch_is_a_failure_not_a_win() {
        let (_l, live) = listener();
        let candidates = [Candidate {
            addr: live,
            rules: TrustRules::pinned_to(Fingerprint([1; 32])),
        }];
        let out = race(
            &client(Duration::from_secs(2)),
            &candidates,
            &Backoff::default(),
            None,
        )
        .await;
        assert!(out.winner.is_none());
        assert!(matches!(
            out.losers[0].1,
            Fate::Failed(ConnectError::IdentityRejected(_))
        ));
    }

    #[tokio::test]
    async fn the_deadline_ends_the_race() {
        let candidates = [Candidate {
            addr: dead_addr(),
            rules: TrustRules::any(),
        }];
        let start = std::time::Instant::now();
        let out = race(
            &client(Duration::from_secs(2)),
            &candidates,
            &Backoff::default(),
            Some(Duration::from_millis(500)),
        )
        .await;
        assert!(start.elapsed() < Duration::from_millis(1500));
        assert!(out.winner.is_none());
        assert!(matches!(out.losers[0].1, Fate::Failed(_)));
    }
    #[tokio::test]
    async fn a_late_candidate_joins_and_wins_and_a_known_one_is_not_dialed_twice() {
        let (_l, live) = listener();
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = Candidate {
            addr: dead.local_addr().unwrap(),
            rules: TrustRules::any(),
        };
        let live = Candidate {
            addr: live,
            rules: TrustRules::any(),
        };
        let late = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Joining {
                candidates: vec![(dead.clone(), "late"), (live.clone(), "late")],
                within: None,
            }
        });
        let ep = client(Duration::from_secs(5));
        let start = std::time::Instant::now();
        let (out, all) = race_joined(
            &ep,
            vec![(dead.clone(), "early")],
            late,
            &Backoff::default(),
            None,
        )
        .await;
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the dead one held it up"
        );
        assert_eq!(all, vec![(dead, "early"), (live, "late")]);
        assert_eq!(out.winner.expect("a winner").index, 1);
        assert!(matches!(out.losers.as_slice(), [(0, Fate::Cancelled)]));
    }

    #[tokio::test]
    async fn a_joining_bound_ends_the_race_and_a_finished_stream_does_not() {
        let dead = Candidate {
            addr: dead_addr(),
            rules: TrustRules::any(),
        };
        let late = futures_util::stream::iter([Joining::<()> {
            candidates: Vec::new(),
            within: Some(Duration::from_millis(300)),
        }]);
        let start = std::time::Instant::now();
        let (out, _) = race_joined(
            &client(Duration::from_secs(5)),
            vec![(dead, ())],
            late,
            &Backoff::default(),
            None,
        )
        .await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
        assert!(out.winner.is_none());
        assert!(matches!(
            out.losers[0].1,
            Fate::Failed(ConnectError::Timeout { .. })
        ));
    }
}
