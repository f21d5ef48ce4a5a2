//! `qp2p race-connect`: dial several peers at once, keep the first that answers.
//!
//! Every address (each address of a DNS name included) is dialed concurrently; the
//! first completed handshake wins and every other attempt is cancelled and closed. One
//! report for the winner, one per loser. With `--send`, the files then go over the
//! winning connection exactly as `qp2p send` sends them.
//!
//! A ticket with several ways is raced as `send` races it (`introducer::reach`): its
//! introducers are asked, their candidates join the race, and when none completes a
//! handshake within `Ways::before_relay`, the relays they offer are tried in turn
//! (`introducer::through_relay`) within what is left of `--timeout`. A relayed
//! winner's control connection to the introducer is held until the end: the relay
//! session lasts as long as it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use super::send::{collect, deliver};
use super::{all_failed, Context, DigestArg, TransportArgs, TrustArgs};
use crate::error::{coded, Exit};
use qp2p::net::addr::Ticket;
use qp2p::net::endpoint::canonical;
use qp2p::net::framing;
use qp2p::net::introducer::{through_relay, ways, Loser, PeerPath};
use qp2p::net::race::{race, Candidate, Fate};
use qp2p::net::sender::close;
use qp2p::{Endpoint, Fingerprint, Pool, Sender};

/// Dial several peers at once; the first completed handshake wins.
///
/// Every address (each address of a DNS name too) is dialed at once; the first
/// completed handshake wins and every other attempt is cancelled and closed. Reports
/// the winner and each loser's fate; with --send, then sends like `qp2p send` over the
/// winning connection. Exits 3 when every peer fails.
#[derive(Debug, clap::Args)]
#[command(after_help = super::examples(&[
    "qp2p race-connect FP@192.0.2.7:7447 FP@[2001:db8::7]:7447",
    "qp2p race-connect --send report.pdf FP@lan-host FP@relay.example.org:7447",
    "qp2p --json race-connect FP@lan FP@vpn | jq -r 'select(.event==\"winner\").addr'",
]))]
pub struct Args {
    /// Peers: HOST:PORT, `[v6]:PORT`, HOST (port 7447), or tickets FINGERPRINT@HOST:PORT.
    #[arg(value_name = "ADDR|TICKET", required = true)]
    pub targets: Vec<String>,
    /// After winning, send these files or directories (`-` for stdin) to the winner
    /// [default: send nothing].
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub send: Vec<std::path::PathBuf>,
    /// The digest both ends compute, compare and report for what --send sends.
    #[arg(long, value_enum, value_name = "ALGORITHM", default_value_t = DigestArg::Blake3, requires = "send")]
    pub digest: DigestArg,
    /// Refuse peers given without a ticket unless their fingerprint is FP [default:
    /// peers without a ticket are not authenticated].
    #[arg(long, value_name = "FP")]
    pub expect: Option<Fingerprint>,
    /// Give up the whole race after this long [default: the retry budget].
    #[arg(long, value_name = "DUR", value_parser = super::parse_nonzero_duration)]
    pub timeout: Option<Duration>,
    /// Trust options.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Transport options.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// The relays a ticket's introducers offer (fingerprint, address), for the listener
/// with this fingerprint, under these trust rules.
type Offers = (
    Vec<(Fingerprint, SocketAddr)>,
    Fingerprint,
    qp2p::TrustRules,
);

/// Races the peers, reports every fate, then sends if asked.
pub async fn run(args: Args, ctx: Context) -> anyhow::Result<()> {
    let items = if args.send.is_empty() {
        Vec::new()
    } else {
        collect(&args.send, None, &ctx)?
    };
    let base = args.trust.rules()?;
    let identity = ctx.identity()?;
    let endpoint = Endpoint::client(identity, args.transport.options())?;
    // Every candidate, and how it would reach its peer.
    let mut candidates: Vec<(Candidate, PeerPath)> = Vec::new();
    // The relays offered for each ticket (its fingerprint and trust rules), and how
    // long the race goes on before they are asked (the shortest of the tickets').
    let mut relays: Vec<Offers> = Vec::new();
    let mut before_relay: Option<Duration> = None;
    for text in &args.targets {
        let ticket: Ticket = text
            .parse()
            .map_err(|e| coded(Exit::Usage, format!("{e}")))?;
        let rules = base.clone().with_pin(ticket.expect.or(args.expect));
        if let Some(target) = ticket.single() {
            match target.resolve().await {
                Ok(addrs) => candidates.extend(addrs.into_iter().map(|addr| {
                    let rules = rules.clone();
                    (Candidate { addr, rules }, PeerPath::Direct)
                })),
                Err(e) => ctx.out.event(
                    json!({"event": "loser", "addr": text, "outcome": "failed",
                           "error": format!("cannot resolve: {e}")}),
                    || format!("loser {text}: cannot resolve: {e}"),
                ),
            }
            continue;
        }
        // Several ways: the direct ones, and what the introducers answer; their
        // relays are the fallback when no handshake of the race completes.
        let found = ways(&endpoint, &ticket).await;
        if let (Some(target), Some(wait)) = (ticket.expect, found.before_relay()) {
            before_relay = Some(before_relay.map_or(wait, |w: Duration| w.min(wait)));
            relays.push((found.relays.clone(), target, rules.clone()));
        }
        for (way, why) in found.introducers {
            ctx.out.event(
                json!({"event": "loser", "addr": way, "outcome": "failed", "error": why}),
                || format!("loser {way}: failed: {why}"),
            );
        }
        candidates.extend(found.candidates.into_iter().map(|(addr, path)| {
            let rules = rules.clone();
            (Candidate { addr, rules }, path)
        }));
    }
    let mut unique = Vec::new();
    candidates.retain(|c| {
        let new = !unique.contains(&c.0);
        unique.push(c.0.clone());
        new
    });
    let (candidates, paths): (Vec<Candidate>, Vec<PeerPath>) = candidates.into_iter().unzip();
    if candidates.is_empty() {
        return Err(coded(
            Exit::Connect,
            "no address to dial: every name failed to resolve",
        ));
    }

    let backoff = args.transport.backoff();
    let started = tokio::time::Instant::now();
    let first_round = match (before_relay, args.timeout) {
        (Some(wait), Some(all)) => Some(wait.min(all)),
        (wait, all) => wait.or(all),
    };
    let raced = async {
        let outcome = race(&endpoint, &candidates, &backoff, first_round).await;
        let mut losers: Vec<Loser> = outcome
            .losers
            .into_iter()
            .map(|(i, fate)| (candidates[i].addr, paths[i], fate))
            .collect();
        if let Some(w) = outcome.winner {
            let (chosen, path) = (candidates[w.index].clone(), paths[w.index]);
            return (Some((w, chosen, path, None)), losers);
        }
        // No handshake completed: each ticket's relays, in turn, within what is left
        // of --timeout.
        let mut refused = Vec::new();
        for (offers, target, rules) in &relays {
            let relayed = through_relay(
                &endpoint,
                offers,
                *target,
                rules,
                &backoff,
                &mut losers,
                &mut refused,
            );
            let relayed = match args.timeout {
                Some(all) => {
                    let left = all.saturating_sub(started.elapsed());
                    tokio::time::timeout(left, relayed).await.ok().flatten()
                }
                None => relayed.await,
            };
            if let Some((w, addr, path, control)) = relayed {
                let chosen = Candidate {
                    addr,
                    rules: rules.clone(),
                };
                return (Some((w, chosen, path, Some(control))), losers);
            }
        }
        for (way, why) in refused {
            ctx.out.event(
                json!({"event": "loser", "addr": way, "outcome": "failed", "error": why}),
                || format!("loser {way}: failed: {why}"),
            );
        }
        (None, losers)
    };
    let (won, losers) = tokio::select! {
        o = raced => o,
        _ = ctx.shutdown.cancelled() => {
            close(&endpoint, None, ctx.shutdown.is_cancelled()).await;
            return Ok(());
        }
    };
    for (addr, _, fate) in &losers {
        let addr = canonical(*addr);
        let (what, error) = match fate {
            Fate::Cancelled => ("cancelled", None),
            Fate::Failed(e) => ("failed", Some(e.to_string())),
        };
        ctx.out.event(
            json!({"event": "loser", "addr": addr.to_string(), "outcome": what, "error": error}),
            || match &error {
                Some(e) => format!("loser {addr}: failed: {e}"),
                None => format!("loser {addr}: cancelled"),
            },
        );
    }
    let Some((winner, chosen, path, control)) = won else {
        close(&endpoint, None, ctx.shutdown.is_cancelled()).await;
        return Err(all_failed(
            losers
                .into_iter()
                .map(|(addr, _, fate)| (addr, fate))
                .collect(),
        ));
    };
    let chosen = &chosen;
    let addr = canonical(chosen.addr);
    let fingerprint = Fingerprint::of_peer(&winner.conn);
    let handshake_ms = winner.handshake.as_secs_f64() * 1000.0;
    ctx.out.event(
        json!({
            "event": "winner",
            "addr": addr.to_string(),
            "fingerprint": fingerprint.map(|f| f.to_string()),
            "handshake_ms": handshake_ms,
            "retries": winner.retries,
            "path": path.name(),
            "introducer": path.introducer().map(|f| f.to_string()),
        }),
        || {
            format!(
                "winner {addr} in {}, fingerprint {}{}",
                crate::output::human_duration(winner.handshake),
                fingerprint.map(|f| f.to_string()).unwrap_or_default(),
                match path {
                    PeerPath::Direct => String::new(),
                    other => format!(", {other}"),
                }
            )
        },
    );

    if items.is_empty() {
        winner.conn.close(framing::close::DONE, b"done");
        if let Some(control) = control {
            control.close(framing::close::DONE, b"done");
        }
        close(&endpoint, None, ctx.shutdown.is_cancelled()).await;
        Ok(())
    } else {
        let pool = Pool::new(endpoint.clone());
        pool.insert(chosen.addr, chosen.rules.clone(), winner.conn);
        let sender = Sender::new(pool.clone(), chosen.addr, chosen.rules.clone())
            .with_backoff(backoff)
            .with_digest(args.digest.into());
        let result = deliver(&sender, items, &ctx, path).await;
        close(&endpoint, Some(&pool), ctx.shutdown.is_cancelled()).await;
        // A relay session lasts while its control connection is open: until here.
        drop(control);
        result
    }
}
