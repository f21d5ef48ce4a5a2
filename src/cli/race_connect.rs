//! `qp2p race-connect`: dial several peers at once, keep the first that answers.
//!
//! Every address (each address of a DNS name included) is dialed concurrently; the
//! first completed handshake wins and every other attempt is cancelled and closed. One
//! report for the winner, one per loser. With `--send`, the files then go over the
//! winning connection exactly as `qp2p send` sends them.
//!
//! Every ticket is raced as `send` races one (`introducer::reach_any`, with all of
//! them at once): every direct way is dialed at once, while every introducer of every
//! ticket is asked; each introducer's candidates (the punched address, the
//! listener's own) join the running race as it answers, so a slow or dead
//! introducer holds up nothing. When none completes a handshake within
//! `Ways::absorb`'s bound after a relay was offered, the relays offered are tried in
//! turn (`introducer::through_relay`) within what is left of `--timeout`. A relayed
//! winner's control connection to the introducer is held until the end: the relay
//! session lasts as long as it.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use super::send::{collect, deliver};
use super::{Context, DigestArg, TransportArgs, TrustArgs};
use crate::error::{coded, unreached as unreached_error, Exit};
use qp2p::net::addr::{Ticket, Way};
use qp2p::net::endpoint::canonical;
use qp2p::net::framing;
use qp2p::net::introducer::{reach_any, PeerPath, Reached};
use qp2p::net::race::Fate;
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
    let mut tickets: Vec<(Ticket, qp2p::TrustRules)> = Vec::new();
    for text in &args.targets {
        let ticket: Ticket = text
            .parse()
            .map_err(|e| coded(Exit::Usage, format!("{e}")))?;
        let rules = base.clone().with_pin(ticket.expect.or(args.expect));
        tickets.push((ticket, rules));
    }
    let backoff = args.transport.backoff();
    let raced = reach_any(&endpoint, &tickets, &backoff, args.timeout);
    let reached = tokio::select! {
        r = raced => r,
        _ = ctx.shutdown.cancelled() => {
            close(&endpoint, None, ctx.shutdown.is_cancelled()).await;
            return Ok(());
        }
    };
    let reached = match reached {
        Ok(reached) => reached,
        Err(unreached) => {
            report_ways(&ctx, &unreached.introducers);
            for (addr, _, why) in &unreached.tried {
                report_loser(&ctx, *addr, "failed", Some(why));
            }
            close(&endpoint, None, ctx.shutdown.is_cancelled()).await;
            let introduced = tickets
                .iter()
                .any(|(t, _)| t.ways.iter().any(|w| matches!(w, Way::Introducer(_))));
            if unreached.tried.is_empty() && !introduced {
                return Err(coded(
                    Exit::Connect,
                    "no address to dial: every name failed to resolve",
                ));
            }
            return Err(unreached_error(unreached));
        }
    };
    report_ways(&ctx, &reached.introducers);
    for (addr, _, fate) in &reached.losers {
        let (what, error) = match fate {
            Fate::Cancelled => ("cancelled", None),
            Fate::Failed(e) => ("failed", Some(e.to_string())),
        };
        report_loser(&ctx, *addr, what, error.as_deref());
    }
    let Reached {
        conn,
        addr,
        path,
        rules,
        handshake,
        retries,
        control,
        ..
    } = reached;
    let addr = canonical(addr);
    let fingerprint = Fingerprint::of_peer(&conn);
    let handshake_ms = handshake.as_secs_f64() * 1000.0;
    ctx.out.event(
        json!({
            "event": "winner",
            "addr": addr.to_string(),
            "fingerprint": fingerprint.map(|f| f.to_string()),
            "handshake_ms": handshake_ms,
            "retries": retries,
            "path": path.name(),
            "introducer": path.introducer().map(|f| f.to_string()),
        }),
        || {
            format!(
                "winner {addr} in {}, fingerprint {}{}",
                crate::output::human_duration(handshake),
                fingerprint.map(|f| f.to_string()).unwrap_or_default(),
                match path {
                    PeerPath::Direct => String::new(),
                    other => format!(", {other}"),
                }
            )
        },
    );

    if items.is_empty() {
        conn.close(framing::close::DONE, b"done");
        if let Some(control) = control {
            control.close(framing::close::DONE, b"done");
        }
        close(&endpoint, None, ctx.shutdown.is_cancelled()).await;
        Ok(())
    } else {
        let pool = Pool::new(endpoint.clone());
        pool.insert(addr, rules.clone(), conn);
        let sender = Sender::new(pool.clone(), addr, rules)
            .with_backoff(backoff)
            .with_digest(args.digest.into());
        let result = deliver(&sender, items, &ctx, path).await;
        close(&endpoint, Some(&pool), ctx.shutdown.is_cancelled()).await;
        // A relay session lasts while its control connection is open: until here.
        drop(control);
        result
    }
}

/// A `loser` event for every way that gave no candidate (an introducer that failed,
/// a name that did not resolve).
fn report_ways(ctx: &Context, ways: &[(String, String)]) {
    for (way, why) in ways {
        ctx.out.event(
            json!({"event": "loser", "addr": way, "outcome": "failed", "error": why}),
            || format!("loser {way}: failed: {why}"),
        );
    }
}

/// A `loser` event for a candidate dialed: `cancelled`, or `failed` with why.
fn report_loser(ctx: &Context, addr: SocketAddr, what: &str, error: Option<&str>) {
    let addr = canonical(addr);
    ctx.out.event(
        json!({"event": "loser", "addr": addr.to_string(), "outcome": what, "error": error}),
        || match error {
            Some(e) => format!("loser {addr}: failed: {e}"),
            None => format!("loser {addr}: cancelled"),
        },
    );
}
