//! `qp2p send`: stream files, directories or stdin to a listener.
//!
//! Each file is one message on its own stream of one pooled connection. A file is
//! retried whole (same message id, fresh connection) when the connection fails; the
//! receiver's duplicate check makes that exactly-once on disk. Stdin cannot be replayed,
//! so for it only connecting is retried.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::{all_failed, Context, DigestArg, TransportArgs, TrustArgs};
use crate::error::{coded, exit_code, Exit};
use crate::output::{human_bytes, human_duration, human_rate, shown};
use qp2p::net::addr::Ticket;
use qp2p::net::endpoint::canonical;
use qp2p::net::framing;
use qp2p::net::introducer::{reach, PeerPath};
use qp2p::net::pipeline::{send_all, Window};
use qp2p::net::race::{race, Candidate};
use qp2p::net::retry::{rounded, Retry};
use qp2p::net::sender::{close, Shown};
use qp2p::net::transfer::{Mode, SendError};
use qp2p::{Delivered, Endpoint, Fingerprint, Observer, Outgoing, Pool, Sender, Target};

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
                    .map_err(|e| {
                        let code = if e.identity {
                            Exit::Identity
                        } else {
                            Exit::Connect
                        };
                        coded(code, e.to_string())
                    })?;
                pool.insert(reached.addr, rules.clone(), reached.conn);
                control = reached.control;
                (reached.addr, reached.path)
            }
        };
        let sender = Sender::new(pool.clone(), addr, rules.clone())
            .with_backoff(backoff)
            .with_mode(mode)
            .with_digest(args.digest.into())
            .with_skip_same(args.skip_same);
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
                return Err(all_failed(&candidates, outcome.losers));
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

/// Turns PATHs into items: files as themselves, directories as their files (named by
/// their path from the directory's parent), `-` as stdin.
pub(crate) fn collect(
    paths: &[PathBuf],
    name: Option<&str>,
    ctx: &Context,
) -> anyhow::Result<Vec<Item>> {
    if let Some(name) = name {
        if qp2p::store::sanitize(name).is_none() {
            return Err(coded(
                Exit::Usage,
                format!(
                    "--name \"{}\" leaves no file name to store under (empty, `.` or `..`)",
                    crate::output::shown(name)
                ),
            ));
        }
    }
    let stdin_name = || name.unwrap_or("stdin").to_string();
    if paths.is_empty() {
        return Ok(vec![Item::Stdin {
            name: stdin_name(),
            path: None,
        }]);
    }
    if name.is_some() && paths.len() > 1 {
        return Err(coded(Exit::Usage, "--name needs a single PATH"));
    }
    if paths.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(coded(Exit::Usage, "stdin (-) can be sent only once"));
    }
    let mut items = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            items.push(Item::Stdin {
                name: stdin_name(),
                path: None,
            });
            continue;
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                items.push(Item::unreadable(path, e));
                continue;
            }
        };
        if meta.is_dir() {
            if name.is_some() {
                return Err(coded(Exit::Usage, "--name cannot rename a directory"));
            }
            // The name given (a symlink keeps its own name); `.` and `..` say nothing,
            // so for them the directory's real name.
            let base = match path.components().next_back() {
                Some(std::path::Component::Normal(given)) => given.to_string_lossy().into_owned(),
                _ => path
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default(),
            };
            walk(path, &base, &mut items, ctx);
        } else if is_pipe(&meta) {
            // `<(cmd)` or a FIFO: sent like stdin, of unknown length and read once. It is
            // opened only when its turn comes (a FIFO blocks until a writer comes).
            let name = match name {
                Some(name) => name.to_string(),
                None => pipe_name(path),
            };
            items.push(Item::Stdin {
                name,
                path: Some(path.clone()),
            });
        } else if !meta.is_file() {
            items.push(Item::unreadable(
                path,
                "not a regular file (sockets and devices are not sent; a pipe or FIFO is, \
                 like stdin)",
            ));
        } else {
            let file_name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            items.push(Item::File {
                path: path.clone(),
                name: name.map(str::to_string).unwrap_or(file_name),
                len: meta.len(),
            });
        }
    }
    Ok(items)
}

/// The name a pipe given as a path is sent under: a FIFO's own name, `stdin` for the
/// numbered descriptors of `<(cmd)` (`/dev/fd/63`), which mean nothing to the receiver.
fn pipe_name(path: &Path) -> String {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let descriptor = path
        .parent()
        .is_some_and(|dir| dir.ends_with("fd") || dir.ends_with("fdinfo"));
    match file_name {
        Some(n) if !(descriptor && n.bytes().all(|b| b.is_ascii_digit())) => n,
        _ => "stdin".into(),
    }
}

/// A FIFO (or a pipe given as a path: `<(cmd)` is `/dev/fd/N`); Windows has none that
/// a path names.
fn is_pipe(meta: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// Adds the files under `dir`, sorted, named `prefix/relative/path`. Symlinks to
/// directories are skipped (no loops); symlinks to files are sent as files. FIFOs,
/// sockets and devices are skipped with a warning (never opened, so never waited on);
/// what cannot be read (an unreadable directory, a dangling symlink) is an
/// [`Item::Unreadable`] and fails in its turn.
fn walk(dir: &Path, prefix: &str, items: &mut Vec<Item>, ctx: &Context) {
    let listed = std::fs::read_dir(dir).and_then(|entries| entries.collect::<Result<Vec<_>, _>>());
    let mut entries = match listed {
        Ok(entries) => entries,
        Err(e) => {
            items.push(Item::unreadable(
                dir,
                format!("cannot read the directory: {e}"),
            ));
            return;
        }
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() && link => {
                ctx.out.warn(&format!(
                    "skipping {}: a symlink to a directory",
                    path.display()
                ));
            }
            Ok(meta) if meta.is_dir() => walk(&path, &rel, items, ctx),
            Ok(meta) if meta.is_file() => items.push(Item::File {
                path,
                name: rel,
                len: meta.len(),
            }),
            Ok(_) => ctx.out.warn(&format!(
                "skipping {}: not a regular file (FIFO, socket or device)",
                path.display()
            )),
            Err(e) => items.push(Item::unreadable(&path, e)),
        }
    }
}

/// An item as the sender takes it; an `Unreadable` one is its error, reported in its
/// turn and never sent.
fn outgoing(item: Item) -> anyhow::Result<Outgoing> {
    Ok(match item {
        Item::File { path, name, len } => Outgoing::File { path, name, len },
        Item::Stdin { name, path: None } => Outgoing::Stream {
            name,
            open: Box::new(|| Ok(Box::new(std::io::stdin()) as Box<dyn Read + Send>)),
        },
        Item::Stdin {
            name,
            path: Some(path),
        } => Outgoing::Stream {
            name,
            open: Box::new(move || {
                std::fs::File::open(&path)
                    .map(|file| Box::new(file) as Box<dyn Read + Send>)
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("cannot open {}: {e}", path.display()),
                        )
                    })
            }),
        },
        Item::Text { text } => Outgoing::Text(text),
        Item::Unreadable { error, .. } => return Err(error),
    })
}

/// What the sender's work looks like on the terminal: a spinner while dialing or
/// waiting to retry; a bar per file for one file, one bar for the whole set (files
/// done of all, bytes, rate, ETA) for several.
struct View<'a> {
    ctx: &'a Context,
    /// The set's bar, with the number of files and bytes it counts up to.
    set: Option<(indicatif::ProgressBar, u64)>,
    files_done: std::sync::atomic::AtomicU64,
}

impl<'a> View<'a> {
    fn new(ctx: &'a Context, set: Option<(u64, u64)>) -> Self {
        let set = set.map(|(files, bytes)| (ctx.out.progress(Some(bytes), ""), files));
        let view = Self {
            ctx,
            set,
            files_done: Default::default(),
        };
        view.label();
        view
    }

    /// Whether the set's bar is on screen: per-file lines are left out then.
    fn bar_shown(&self) -> bool {
        self.set.as_ref().is_some_and(|(bar, _)| !bar.is_hidden())
    }

    fn label(&self) {
        if let Some((bar, files)) = &self.set {
            let done = self.files_done.load(std::sync::atomic::Ordering::Relaxed);
            bar.set_message(format!("{done}/{files} files"));
        }
    }

    /// For a set, says on its bar what it waits for (until the next file is done) and
    /// returns true: no spinner beside the bar. Every retry is logged at info anyway.
    fn waiting(&self, what: &str) -> bool {
        let Some((bar, files)) = &self.set else {
            return false;
        };
        let done = self.files_done.load(std::sync::atomic::Ordering::Relaxed);
        bar.set_message(format!("{done}/{files} files; {what}"));
        true
    }

    /// A message of the set was delivered.
    fn done(&self) {
        self.files_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.label();
    }

    /// A message of the set failed: its bytes will not come.
    fn failed(&self) {
        self.files_done
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.label();
    }

    /// A line above the bar.
    fn line(&self, show: impl FnOnce()) {
        match &self.set {
            Some((bar, _)) => bar.suspend(show),
            None => show(),
        }
    }

    fn clear(&self) {
        if let Some((bar, _)) = &self.set {
            bar.finish_and_clear();
        }
    }
}

impl Observer for View<'_> {
    fn connecting(&self, addr: SocketAddr, attempt: u32) -> Shown {
        let what = match attempt {
            0 => format!("connecting to {}", canonical(addr)),
            n => format!("connecting to {}, attempt {}", canonical(addr), n + 1),
        };
        if self.waiting(&what) {
            return None;
        }
        Some(Box::new(self.ctx.out.spinner(what)))
    }

    fn retrying(&self, name: &str, retry: Retry<'_, SendError>) -> Shown {
        let what = format!(
            "{name}: attempt {} failed ({}); next try in {}",
            retry.failed,
            retry.cause,
            rounded(retry.delay)
        );
        if self.waiting(&what) {
            return None;
        }
        Some(Box::new(self.ctx.out.spinner(what)))
    }

    fn sending(&self, name: &str, length: Option<u64>) -> Box<dyn Fn(u64) + Send + Sync> {
        let bar = match &self.set {
            Some((bar, _)) => bar.clone(),
            None => self.ctx.out.progress(length, name),
        };
        Box::new(move |n| bar.inc(n))
    }
}

/// Reports a delivered message: a `sent` event (a line on stderr unless the set's bar
/// stands for it), and once, for a peer that was not authenticated, the fingerprint it
/// showed.
fn report_sent(
    sender: &Sender,
    name: &str,
    started: Instant,
    done: &Delivered,
    view: &View<'_>,
    warned: &std::cell::Cell<bool>,
    path: PeerPath,
) {
    let ctx = view.ctx;
    let seconds = started.elapsed().as_secs_f64();
    let addr = sender.addr();
    let retries = done.retries;
    if !warned.get() && !sender.rules().authenticates() {
        warned.set(true);
        if let Some(fp) = done.peer {
            view.line(|| {
                ctx.out.warn(&format!(
                    "{} is not authenticated: it showed fingerprint {fp}; to be sure it is \
                     the peer you mean, compare it with the listener's, then use the ticket \
                     {fp}@{}",
                    canonical(addr),
                    canonical(addr)
                ))
            });
        }
    }
    let digest = done.sent.digest;
    let event = json!({
        "event": "sent",
        "name": name,
        "bytes": done.sent.bytes,
        "digest": digest.algorithm.name(),
        (digest.algorithm.name()): digest.hex(),
        "peer": canonical(addr).to_string(),
        "peer_fingerprint": done.peer.map(|f| f.to_string()),
        "seconds": seconds,
        "retries": retries,
        "reused_connection": done.reused,
        "duplicate": done.sent.duplicate || done.sent.present,
        "already_present": done.sent.present,
        "stored_as": done.sent.stored_as,
        "message_id": done.id.to_string(),
        "stream": if sender.mode() == Mode::Uni { "uni" } else { "bi" },
        "path": path.name(),
        "introducer": path.introducer().map(|f| f.to_string()),
    });
    if view.bar_shown() && !ctx.out.json() {
        // The set's bar and its summary stand for the lines of its files.
        return;
    }
    ctx.out.event(event, || {
        let stored_as = match &done.sent.stored_as {
            Some(stored) if stored != name => format!(", stored as {}", shown(stored)),
            _ => String::new(),
        };
        let via = match path {
            PeerPath::Direct => String::new(),
            PeerPath::Punched(_) | PeerPath::Relayed(_) => format!(", {path}"),
        };
        format!(
            "sent {} ({} in {}, {}{via}){}{}{stored_as} {}",
            name,
            human_bytes(done.sent.bytes),
            human_duration(started.elapsed()),
            human_rate(done.sent.bytes, seconds),
            if retries > 0 {
                format!(", {retries} retries")
            } else {
                String::new()
            },
            if done.sent.present {
                ", same content already there: not sent again"
            } else if done.sent.duplicate {
                ", already there"
            } else {
                ""
            },
            digest
        )
    });
}
