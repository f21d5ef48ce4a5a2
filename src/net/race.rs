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

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::endpoint::{ConnectError, Endpoint};
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
    let mut pending: FuturesUnordered<_> = candidates
        .iter()
        .enumerate()
        .map(|(index, c)| attempt(endpoint, index, c, backoff))
        .collect();
    let mut failed: Vec<(usize, Fate)> = Vec::new();
    let mut winner = None;
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let timed_out = loop {
        tokio::select! {
            next = pending.next() => match next {
                Some((index, Ok((conn, handshake)), retries)) => {
                    winner = Some(Winner { index, conn, handshake, retries });
                    break false;
                }
                Some((index, Err(e), _)) => failed.push((index, Fate::Failed(e))),
                None => break false,
            },
            _ = &mut sleep => break true,
        }
    };
    drop(pending);
    let decided: Vec<usize> = failed
        .iter()
        .map(|(i, _)| *i)
        .chain(winner.as_ref().map(|w| w.index))
        .collect();
    for (index, candidate) in candidates.iter().enumerate() {
        if decided.contains(&index) {
            continue;
        }
        let fate = if timed_out {
            Fate::Failed(ConnectError::Timeout {
                addr: candidate.addr,
                timeout: deadline.unwrap_or_default(),
            })
        } else {
            Fate::Cancelled
        };
        failed.push((index, fate));
    }
    failed.sort_by_key(|(i, _)| *i);
    Outcome {
        winner,
        losers: failed,
    }
}

type Attempt = (
    usize,
    Result<(quinn::Connection, Duration), ConnectError>,
    u32,
);

async fn attempt(
    endpoint: &Endpoint,
    index: usize,
    candidate: &Candidate,
    backoff: &Backoff,
) -> Attempt {
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
}
