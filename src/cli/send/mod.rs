//! `qp2p send`: stream files, directories or stdin to a listener.
//!
//! Each file is one message on its own stream of one pooled connection. A file is
//! retried whole (same message id, fresh connection) when the connection fails; the
//! receiver's duplicate check makes that exactly-once on disk. Stdin cannot be replayed,
//! so for it only connecting is retried.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::{all_failed, Context, DigestArg, TransportArgs, TrustArgs};
use crate::error::{coded, exit_code, unreached, Exit};
use crate::output::{human_bytes, human_duration, human_rate, shown};
use qp2p::net::addr::Ticket;
use qp2p::net::framing;
use qp2p::net::introducer::{reach, PeerPath};
use qp2p::net::pipeline::{send_all, Window};
use qp2p::net::race::{race, Candidate};
use qp2p::net::sender::close;
use qp2p::net::transfer::{Mode, SendError};
use qp2p::{Delivered, Endpoint, Fingerprint, Pool, Sender, Target};

mod collect;
mod view;
pub(crate) use collect::collect;
use collect::outgoing;
use view::{report_sent, View};

/// Send files, directories or stdin to a listener.
///
/// Each PATH is one message (a directory one message per file, named by its path), all
/// over one connection. Exits 0 once the receiver acknowledged the bytes and digest
/// (BLAKE3, or SHA-256 with --digest sha256) it stored. Given a ticket (the line `qp2p
/// listen` printed) or --expect, any other peer is refused; given a bare address, the
/// peer is not authenticated and send says so.
#[derive(Debug, clap::Args)]
#[command(after_help = super::examples(&[
    "qp2p send FP@192.0.2.7:7447 photo.jpg notes/     # files and a directory tree",
    "tar c project | qp2p send FP@192.0.2.7 --name project.tar",
    "pg_dump db | gzip | qp2p send --expect FP host.example:7447 - --name db.sql.gz",
]))]
pub struct Args {
    /// The listener: HOST:PORT, `[v6]:PORT`, HOST (port 7447), or a ticket
    /// FINGERPRINT@HOST:PORT.
    #[arg(value_name = "ADDR|TICKET")]
    pub target: String,
    /// Files or directories to send; `-` means stdin [default: stdin].
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Refuse the listener unless its fingerprint is FP [default: the ticket's
    /// fingerprint; none for a bare address].
    #[arg(long, value_name = "FP")]
    pub expect: Option<Fingerprint>,
    /// Name the receiver stores the data under (one PATH or stdin only) [default: the
    /// file's name, "stdin" for stdin].
    #[arg(long)]
    pub name: Option<String>,
    /// Use a unidirectional stream: done when the transport delivered the data, without
    /// the receiver's ack of bytes and hash.
    #[arg(long)]
    pub uni: bool,
    /// Skip a file the listener already holds with the same content under the same
    /// name (each file is hashed before it is sent) [default: the listener stores
    /// another copy as name.1.ext].
    #[arg(long, conflicts_with = "uni")]
    pub skip_same: bool,
    /// Send each file whole on every try: no resume offer, so the listener keeps
    /// nothing of a try that broke off [default: a file of 1 MiB or more continues
    /// where the listener's copy of a broken-off try ends].
    #[arg(long)]
    pub no_resume: bool,
    /// The digest both ends compute, compare and report.
    #[arg(long, value_enum, value_name = "ALGORITHM", default_value_t = DigestArg::Blake3)]
    pub digest: DigestArg,
    /// Send TEXT (at most 64 KiB) for the person at the listener to read: shown there,
    /// not stored [default: send files or stdin].
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["paths", "name"])]
    pub text: Option<String>,
    /// Trust options.
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Transport options.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// One thing to send.
#[derive(Debug)]
pub(crate) enum Item {
    File {
        path: PathBuf,
        name: String,
        len: u64,
    },
    /// Stdin, or a pipe given as a path (`<(cmd)`, a FIFO): unknown length, read once.
    Stdin {
        name: String,
        /// The pipe's path; `None` for stdin itself.
        path: Option<PathBuf>,
    },
    /// A PATH or directory entry that cannot be sent (unreadable, vanished, not a
    /// regular file): reported in its turn while the others still go.
    Unreadable { name: String, error: anyhow::Error },
    /// `--text`: shown at the listener, not stored.
    Text { text: String },
}

impl Item {
    fn name(&self) -> &str {
        match self {
            Item::File { name, .. } | Item::Stdin { name, .. } | Item::Unreadable { name, .. } => {
                name
            }
            Item::Text { .. } => "text",
        }
    }

    fn unreadable(path: &Path, why: impl std::fmt::Display) -> Self {
        Item::Unreadable {
            name: path.display().to_string(),
            error: coded(
                Exit::Other,
                format!("cannot send {}: {why}", path.display()),
            ),
        }
    }
}

/// Sends every PATH (or stdin); exits non-zero if any message failed.
pub async fn run(args: Args, ctx: Context) -> anyhow::Result<()> {
    let ticket: Ticket = args
        .target
        .parse()
        .map_err(|e| coded(Exit::Usage, format!("{e}")))?;
    let expect = match (ticket.expect, args.expect) {
        (Some(a), Some(b)) if a != b => {
            return Err(coded(
                Exit::Usage,
                "the ticket's fingerprint and --expect differ",
            ))
        }
        (a, b) => a.or(b),
    };
    // Every rule given must hold: the pin and, with --ca, the CA.
    let rules = args.trust.rules()?.with_pin(expect);
    let items = match &args.text {
        Some(text) if text.len() as u64 > framing::MAX_TEXT_LEN => {
            return Err(coded(
                Exit::Usage,
                format!(
                    "--text takes at most {} ({} given); send a longer text as a file",
                    human_bytes(framing::MAX_TEXT_LEN),
                    human_bytes(text.len() as u64)
                ),
            ))
        }
        Some(text) => vec![Item::Text { text: text.clone() }],
        None => collect(&args.paths, args.name.as_deref(), &ctx)?,
    };
    let from_stdin = items
        .iter()
        .any(|item| matches!(item, Item::Stdin { path: None, .. }));
    if from_stdin && std::io::stdin().is_terminal() && !ctx.json {
        ctx.out.note("reading stdin, Ctrl-D to end");
    }
    if items.is_empty() {
        return Err(coded(
            Exit::Usage,
            "nothing to send: the directories are empty",
        ));
    }

    let identity = ctx.identity()?;
    let endpoint = Endpoint::client(identity, args.transport.options())?;
    let pool = Pool::new(endpoint.clone());
    let backoff = args.transport.backoff();
    let mode = if args.uni { Mode::Uni } else { Mode::Bidi };

    let mut control = None;
    let result = async {
        let (addr, path) = match ticket.single() {
            Some(target) => (
                direct(&target, &endpoint, &pool, &rules, &backoff).await?,
                PeerPath::Direct,
            ),
            // Several ways (direct, through introducers): all at once.
            None => {
                let reached = reach(&endpoint, &ticket, &rules, &backoff)
                    .await
                    .map_err(unreached)?;
                pool.insert(reached.addr, rules.clone(), reached.conn);
                control = reached.control;
                (reached.addr, reached.path)
            }
        };
        let sender = Sender::new(pool.clone(), addr, rules.clone())
            .with_backoff(backoff)
            .with_mode(mode)
            .with_digest(args.digest.into())
            .with_skip_same(args.skip_same)
            .with_resume(!args.no_resume);
        let Some(control) = control else {
            return deliver(&sender, items, &ctx, path).await;
        };
        // Relayed: the relay closes our control connection, with the reason, when it
        // cuts the session (a quota).
        tokio::select! {
            result = deliver(&sender, items, &ctx, path) => result,
            reason = relay_cut(&control) => Err(coded(Exit::Transfer, reason)),
        }
    }
    .await;
    close(&endpoint, Some(&pool), ctx.shutdown.is_cancelled()).await;
    result
}

/// Resolves when the relay cut our session (closed the control connection with
/// `REFUSED`), with its reason; never otherwise.
async fn relay_cut(control: &quinn::Connection) -> String {
    match control.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code == framing::close::REFUSED => {
            format!(
                "the relay cut the session: {}",
                shown(&String::from_utf8_lossy(&c.reason))
            )
        }
        _ => std::future::pending().await,
    }
}

/// Connects to a one-way target: its one address, or a race of the addresses a name
/// resolves to (the winner kept in the pool). Returns the address to send to.
async fn direct(
    target: &Target,
    endpoint: &Endpoint,
    pool: &Pool,
    rules: &qp2p::TrustRules,
    backoff: &qp2p::Backoff,
) -> anyhow::Result<SocketAddr> {
    let addrs = target
        .resolve()
        .await
        .map_err(|e| coded(Exit::Connect, format!("cannot resolve {target}: {e}")))?;
    match addrs.as_slice() {
        [one] => Ok(*one),
        many => {
            let candidates: Vec<Candidate> = many
                .iter()
                .map(|&addr| Candidate {
                    addr,
                    rules: rules.clone(),
                })
                .collect();
            let outcome = race(endpoint, &candidates, backoff, None).await;
            let Some(winner) = outcome.winner else {
                return Err(all_failed(
                    outcome
                        .losers
                        .into_iter()
                        .map(|(i, fate)| (candidates[i].addr, fate))
                        .collect(),
                ));
            };
            let addr = candidates[winner.index].addr;
            pool.insert(addr, rules.clone(), winner.conn);
            Ok(addr)
        }
    }
}

/// Sends every item with `sender`, several at once ([`send_all`]), and reports each as
/// it completes; goes on after a failed message, stops after a failed connection or a
/// listener that takes no more. Several items make one task: one progress bar for them
/// all on a terminal (instead of a line per file) and a summary at the end. Failures
/// are reported in command-line order at the end, the first one's exit code wins.
/// Interrupted (Ctrl-C), it says what was sent and what not, and returns: the caller
/// closes the connections with a reason.
pub(crate) async fn deliver(
    sender: &Sender,
    items: Vec<Item>,
    ctx: &Context,
    path: PeerPath,
) -> anyhow::Result<()> {
    let sendable = |item: &Item| !matches!(item, Item::Unreadable { .. });
    let total = items.iter().filter(|i| sendable(i)).count();
    let total_bytes: u64 = items
        .iter()
        .map(|i| match i {
            Item::File { len, .. } => *len,
            _ => 0,
        })
        .sum();
    let set = items.len() > 1;
    let count_all = items.len();
    let view = View::new(ctx, set.then_some((total as u64, total_bytes)));
    let started = Instant::now();
    let warned = std::cell::Cell::new(false);
    let sent = std::cell::Cell::new(0usize);
    let sent_bytes = std::cell::Cell::new(0u64);
    let errors: std::cell::RefCell<Vec<(usize, anyhow::Error)>> = Default::default();
    // Started and not yet done, by position: what an interrupt leaves unsent.
    let in_flight: std::cell::RefCell<std::collections::BTreeMap<usize, String>> =
        Default::default();
    // Told to stop by a failure: the code it carries, for "n more not sent".
    let stopped: std::cell::Cell<Option<Exit>> = Default::default();

    let mut items = items.into_iter().enumerate();
    let messages = items.by_ref().filter_map(|(i, item)| {
        let described = described(&item);
        match outgoing(item) {
            Ok(message) => {
                in_flight.borrow_mut().insert(i, message.name().to_string());
                Some(((i, described, Instant::now()), message))
            }
            Err(unreadable) => {
                view.failed();
                errors.borrow_mut().push((i, unreadable));
                None
            }
        }
    });
    let done = |(i, described, began): (usize, String, Instant), name: String, result| {
        in_flight.borrow_mut().remove(&i);
        match result {
            Ok(done) => {
                sent.set(sent.get() + 1);
                sent_bytes.set(sent_bytes.get() + done_bytes(&done));
                view.done();
                report_sent(sender, &name, began, &done, &view, &warned, path);
                ControlFlow::Continue(())
            }
            Err(e) => {
                view.failed();
                let last = SendError::is_final(&e);
                let e = anyhow::Error::from(e).context(format!("sending {described}"));
                let code = exit_code(&e);
                errors.borrow_mut().push((i, e));
                // Without a connection, with the wrong peer, or told that no more is
                // taken, nothing else can go either.
                if matches!(code, Exit::Connect | Exit::Identity) || last {
                    stopped.set(Some(code));
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
        }
    };
    let sending = send_all(sender, messages, Window::default(), &view, done);
    let cancelled = tokio::select! {
        cancelled = sending => cancelled,
        _ = ctx.shutdown.cancelled() => {
            // The dropped sends reset their streams: the listener discards the parts it
            // got and says "sender interrupted" once our close arrives.
            view.clear();
            let (sent, failed) = (sent.get(), errors.borrow().len());
            let rest = items.filter(|(_, item)| sendable(item)).count();
            let going = in_flight.borrow();
            let name = going.values().next().cloned().unwrap_or_default();
            let not_sent = rest + going.len();
            ctx.out.event(
                json!({"event": "interrupted", "name": name, "sent": sent,
                       "not_sent": not_sent, "failed": failed}),
                || format!(
                    "interrupted: {name}{} not sent (the listener discards what it got); \
                     {sent} of {total} sent, {not_sent} not sent",
                    match going.len() {
                        0 | 1 => String::new(),
                        n => format!(" and {} more in flight", n - 1),
                    }
                ),
            );
            return Ok(());
        }
    };
    view.clear();
    let mut errors = errors.into_inner();
    if let Some(code) = stopped.get() {
        let rest = cancelled + items.filter(|(_, item)| sendable(item)).count();
        if rest > 0 {
            // Told on the failure that stopped the run (the last one pushed).
            if let Some((i, e)) = errors.pop() {
                let e = coded(
                    code,
                    format!("{}; {rest} more not sent", crate::output::error_text(&e)),
                );
                errors.push((i, e));
            }
        }
    }
    if set {
        summary(
            ctx,
            count_all,
            sent.get(),
            sent_bytes.get(),
            errors.len(),
            started,
        );
    }
    errors.sort_by_key(|(i, _)| *i);
    in_order(errors.into_iter().map(|(_, e)| e).collect(), ctx)
}

/// Bytes a delivered message moved (none when the listener had them already).
fn done_bytes(done: &Delivered) -> u64 {
    done.sent.bytes
}

/// The end of a set of messages: files, bytes, time, rate, failures.
fn summary(ctx: &Context, total: usize, sent: usize, bytes: u64, failed: usize, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    let not_sent = total.saturating_sub(sent + failed);
    ctx.out.event(
        json!({
            "event": "summary",
            "files": sent,
            "bytes": bytes,
            "seconds": seconds,
            "bytes_per_second": if seconds > 0.0 { bytes as f64 / seconds } else { 0.0 },
            "failed": failed,
            "not_sent": not_sent,
        }),
        || {
            format!(
                "sent {sent} of {total} file{} ({} in {}, {}){}",
                if total == 1 { "" } else { "s" },
                human_bytes(bytes),
                human_duration(started.elapsed()),
                human_rate(bytes, seconds),
                match (failed, not_sent) {
                    (0, 0) => String::new(),
                    (f, 0) => format!(", {f} failed"),
                    (f, n) => format!(", {f} failed, {n} not sent"),
                }
            )
        },
    );
}

/// An item as errors name it: a file with its size, so a size refusal shows it.
fn described(item: &Item) -> String {
    match item {
        Item::File { name, len, .. } => format!("{name} ({})", human_bytes(*len)),
        item => item.name().to_string(),
    }
}

/// Reports failures in command-line order: all but the last here, the last returned
/// for `main` to report; the exit code is the first failure's.
fn in_order(mut errors: Vec<anyhow::Error>, ctx: &Context) -> anyhow::Result<()> {
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    let first = errors.first().map_or_else(|| exit_code(&last), exit_code);
    for e in &errors {
        ctx.out
            .error(&crate::output::error_text(e), exit_code(e).code());
    }
    if errors.is_empty() {
        return Err(last);
    }
    Err(coded(first, crate::output::error_text(&last)))
}
