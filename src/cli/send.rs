//! `qp2p send`: stream files, directories or stdin to a listener.
//!
//! Each file is one message on its own stream of one pooled connection. A file is
//! retried whole (same message id, fresh connection) when the connection fails; the
//! receiver's duplicate check makes that exactly-once on disk. Stdin cannot be replayed,
//! so for it only connecting is retried.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::{Context, TransportArgs, TrustArgs};
use crate::error::{coded, exit_code, Exit};
use crate::net::endpoint::canonical;
use crate::net::framing::{self, Header, Kind, MessageId};
use crate::net::race::{race, Candidate, Fate};
use crate::net::retry::{rounded, Attempt, Retry, Retryable};
use crate::net::transfer::{hex, send_message, Mode, SendError, Source};
use crate::net::{Backoff, ConnectError, Endpoint, Fingerprint, Pool, Target, TrustRules};
use crate::output::{human_bytes, human_duration, human_rate, shown};

/// Send files, directories or stdin to a listener.
///
/// Each PATH is one message (a directory one message per file, named by its path), all
/// over one connection. Exits 0 once the receiver acknowledged the bytes and SHA-256 it
/// stored. Given a ticket (the line `qp2p listen` printed) or --expect, any other peer
/// is refused; given a bare address, the peer is not authenticated and send says so.
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
    let target: Target = args
        .target
        .parse()
        .map_err(|e| coded(Exit::Usage, format!("{e}")))?;
    let expect = match (target.expect, args.expect) {
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

    let addrs = target
        .resolve()
        .await
        .map_err(|e| coded(Exit::Connect, format!("cannot resolve {target}: {e}")))?;
    let identity = ctx.identity()?;
    let endpoint = Endpoint::client(identity, args.transport.options())?;
    let pool = Pool::new(endpoint.clone());
    let backoff = args.transport.backoff();
    let mode = if args.uni { Mode::Uni } else { Mode::Bidi };

    let result = async {
        let addr = match addrs.as_slice() {
            [one] => *one,
            // A name with several addresses: race them, keep the winner in the pool.
            many => {
                let candidates: Vec<Candidate> = many
                    .iter()
                    .map(|&addr| Candidate {
                        addr,
                        rules: rules.clone(),
                    })
                    .collect();
                let outcome = race(&endpoint, &candidates, &backoff, None).await;
                let Some(winner) = outcome.winner else {
                    return Err(all_failed(&candidates, outcome.losers));
                };
                let addr = candidates[winner.index].addr;
                pool.insert(addr, rules.clone(), winner.conn);
                addr
            }
        };
        let link = Link {
            pool: &pool,
            backoff: &backoff,
            addr,
            rules: &rules,
            mode,
            skip_same: args.skip_same,
        };
        deliver(&link, items, &ctx).await
    }
    .await;
    close(&endpoint, Some(&pool), &ctx).await;
    result
}

/// The error when every raced address failed: exit 3 (or 4 if every one was an
/// identity rejection), one reason per address.
pub(crate) fn all_failed(candidates: &[Candidate], losers: Vec<(usize, Fate)>) -> anyhow::Error {
    let mut identity = !losers.is_empty();
    let reasons: Vec<String> = losers
        .into_iter()
        .map(|(i, fate)| {
            let why = match fate {
                Fate::Failed(e) => {
                    identity &= matches!(e, ConnectError::IdentityRejected(_));
                    e.to_string()
                }
                Fate::Cancelled => {
                    identity = false;
                    "cancelled".to_string()
                }
            };
            format!("{}: {why}", canonical(candidates[i].addr))
        })
        .collect();
    let exit = if identity {
        Exit::Identity
    } else {
        Exit::Connect
    };
    coded(
        exit,
        format!("could not connect to any address ({})", reasons.join("; ")),
    )
}

/// Where messages go and how: the listener's address, the rules it must pass, the
/// pool and back-off that reach it, the stream mode.
pub(crate) struct Link<'a> {
    pub pool: &'a Pool,
    pub backoff: &'a Backoff,
    pub addr: SocketAddr,
    pub rules: &'a TrustRules,
    pub mode: Mode,
    /// `--skip-same`: files go with their digest, and are not sent again where the
    /// listener holds that content under the name.
    pub skip_same: bool,
}

/// Sends every item over the pooled connection to `link.addr`, one message each; goes
/// on after a failed message, stops after a failed connection or a listener that takes
/// no more. Returns the first error. Interrupted (Ctrl-C), it says what was sent and
/// what not, and returns: the caller closes the connections with a reason.
pub(crate) async fn deliver(
    link: &Link<'_>,
    items: Vec<Item>,
    ctx: &Context,
) -> anyhow::Result<()> {
    let sendable = |item: &Item| !matches!(item, Item::Unreadable { .. });
    let total = items.iter().filter(|i| sendable(i)).count();
    let mut sent = 0usize;
    let mut warned = false;
    let mut errors: Vec<anyhow::Error> = Vec::new();
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        if let Item::Unreadable { error, .. } = item {
            errors.push(error);
            continue;
        }
        let sending = send_item(link, &item, ctx, &mut warned);
        let result = tokio::select! {
            r = sending => r,
            _ = ctx.shutdown.cancelled() => {
                // The dropped send reset its stream: the listener discards the part it
                // got and says "sender interrupted" once our close arrives.
                let rest = items.filter(sendable).count();
                ctx.out.event(
                    json!({"event": "interrupted", "name": item.name(), "sent": sent,
                           "not_sent": rest + 1}),
                    || format!(
                        "interrupted: {} not sent (the listener discards what it got); \
                         {sent} of {total} sent, {} not sent",
                        item.name(),
                        rest + 1
                    ),
                );
                return Ok(());
            }
        };
        let Err(e) = result else {
            sent += 1;
            continue;
        };
        let e = e.context(format!("sending {}", described(&item)));
        let code = exit_code(&e);
        // Without a connection, with the wrong peer, or told that no more is taken,
        // nothing else can go either.
        if matches!(code, Exit::Connect | Exit::Identity) || is_final(&e) {
            let rest = items.by_ref().filter(sendable).count();
            errors.push(match rest {
                0 => e,
                n => coded(
                    code,
                    format!("{}; {n} more not sent", crate::output::error_text(&e)),
                ),
            });
            break;
        }
        errors.push(e);
    }
    in_order(errors, ctx)
}

/// An item as errors name it: a file with its size, so a size refusal shows it.
fn described(item: &Item) -> String {
    match item {
        Item::File { name, len, .. } => format!("{name} ({})", human_bytes(*len)),
        item => item.name().to_string(),
    }
}

/// Whether the listener said it takes nothing more: it refused with
/// [`ErrorCode::NotAccepting`](framing::ErrorCode::NotAccepting) or closed the
/// connection on purpose (done, or stopped).
fn is_final(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<SendError>(),
            Some(SendError::Refused(code)) if *code == framing::ErrorCode::NotAccepting.varint()
        ) || matches!(
            cause.downcast_ref::<SendError>(),
            Some(SendError::Connection(ConnectError::Closed { .. }))
        ) || matches!(
            cause.downcast_ref::<ConnectError>(),
            Some(ConnectError::Closed { .. })
        )
    })
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

/// Closes every connection: the acks proved delivery, so tell the peer and go without
/// waiting out a drain period it does not need (3 PTOs, 80 ms on loopback). A few
/// milliseconds let the close frame leave; if it is lost the peer's idle timeout
/// cleans up, and nothing is lost either way.
///
/// Interrupted, the streams were reset just now and what they had sent may still fill
/// the congestion window; quinn-proto 0.11.19 sends no CONNECTION_CLOSE past a full
/// window (quinn-rs/quinn#2785), and the listener would wait out its idle timeout
/// before it knew. The peer's acks drain the window within a round trip plus its ack
/// delay, so the close waits that long first (at most a second).
pub(crate) async fn close(endpoint: &Endpoint, pool: Option<&Pool>, ctx: &Context) {
    let (code, reason): (_, &[u8]) = if ctx.shutdown.is_cancelled() {
        (framing::close::SHUTDOWN, b"interrupted")
    } else {
        (framing::close::DONE, b"done")
    };
    if ctx.shutdown.is_cancelled() {
        let drain = pool
            .map(|pool| pool.live())
            .unwrap_or_default()
            .iter()
            .map(|conn| conn.rtt() * 2 + std::time::Duration::from_millis(25))
            .max();
        if let Some(drain) = drain {
            tokio::time::sleep(drain.min(std::time::Duration::from_secs(1))).await;
        }
    }
    endpoint
        .shutdown(code, reason, std::time::Duration::from_millis(5))
        .await;
}

/// Turns PATHs into items: files as themselves, directories as their files (named by
/// their path from the directory's parent), `-` as stdin.
pub(crate) fn collect(
    paths: &[PathBuf],
    name: Option<&str>,
    ctx: &Context,
) -> anyhow::Result<Vec<Item>> {
    if let Some(name) = name {
        if crate::store::sanitize(name).is_none() {
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

/// What one successful send of one item produced.
struct Done {
    sent: crate::net::transfer::Sent,
    reused: bool,
    peer: Option<Fingerprint>,
}

/// The pooled connection to the link's listener; while it is being dialed, a spinner
/// says so (and which attempt this is).
async fn connect(
    link: &Link<'_>,
    attempt: Attempt,
    ctx: &Context,
) -> Result<crate::net::pool::Pooled, ConnectError> {
    let addr = link.addr;
    let get = attempt.within(link.pool.get(addr, link.rules), |timeout| {
        ConnectError::Timeout { addr, timeout }
    });
    tokio::pin!(get);
    if let Some(ready) = futures_util::FutureExt::now_or_never(&mut get) {
        return ready;
    }
    let what = match attempt.number {
        0 => format!("connecting to {}", canonical(addr)),
        n => format!("connecting to {}, attempt {}", canonical(addr), n + 1),
    };
    let _spinner = ctx.out.spinner(what);
    get.await
}

async fn send_item(
    link: &Link<'_>,
    item: &Item,
    ctx: &Context,
    warned: &mut bool,
) -> anyhow::Result<()> {
    let id = MessageId::random();
    let started = Instant::now();
    let skip_same = match item {
        Item::File { path, .. } if link.skip_same => Some(content_digest(path).await?),
        _ => None,
    };
    let header = Header {
        kind: match item {
            Item::Text { .. } => Kind::Text,
            _ => Kind::Message,
        },
        id,
        length: match item {
            Item::File { len, .. } => Some(*len),
            Item::Text { text } => Some(text.len() as u64),
            Item::Stdin { .. } | Item::Unreadable { .. } => None,
        },
        name: match item {
            Item::Text { .. } => String::new(),
            item => item.name().to_string(),
        },
        skip_same,
    };
    // Between attempts: what failed and when the next try is.
    let waiting = std::sync::Mutex::new(None::<indicatif::ProgressBar>);
    let on_retry = |retry: Retry<'_, SendError>| {
        let what = format!(
            "{}: attempt {} failed ({}); next try in {}",
            item.name(),
            retry.failed,
            retry.cause,
            rounded(retry.delay)
        );
        *waiting.lock().unwrap_or_else(|p| p.into_inner()) = Some(ctx.out.spinner(what));
    };
    let stop_waiting = || waiting.lock().unwrap_or_else(|p| p.into_inner()).take();

    let (result, retries) = match item {
        // `deliver` reports these without sending; here only for completeness.
        Item::Unreadable { error, .. } => {
            return Err(coded(exit_code(error), format!("{error:#}")))
        }
        Item::Text { text } => {
            link.backoff
                .run_observed(
                    |attempt| {
                        let header = &header;
                        async move {
                            stop_waiting();
                            let pooled = connect(link, attempt, ctx).await?;
                            let text =
                                Source::pipe(std::io::Cursor::new(text.clone().into_bytes()));
                            finish(link, &pooled, header, text, &|_| {}).await
                        }
                    },
                    on_retry,
                )
                .await
        }
        Item::File { path, .. } => {
            link.backoff
                .run_observed(
                    |attempt| {
                        let header = &header;
                        async move {
                            stop_waiting();
                            let pooled = connect(link, attempt, ctx).await?;
                            let file = std::fs::File::open(path).map_err(|e| {
                                SendError::Source(std::io::Error::new(
                                    e.kind(),
                                    format!("cannot open {}: {e}", path.display()),
                                ))
                            })?;
                            tracing::debug!(
                                attempt = attempt.number,
                                reused = pooled.reused,
                                "sending"
                            );
                            let bar = ctx.out.progress(header.length, &header.name);
                            let progress = |n: u64| bar.inc(n);
                            finish(link, &pooled, header, Source::File(file), &progress).await
                        }
                    },
                    on_retry,
                )
                .await
        }
        Item::Stdin { path, .. } => {
            let (pooled, retries) = link
                .backoff
                .run_observed(
                    |attempt| {
                        stop_waiting();
                        connect(link, attempt, ctx)
                    },
                    |retry| {
                        on_retry(Retry {
                            failed: retry.failed,
                            delay: retry.delay,
                            cause: &SendError::Connection(retry.cause.clone()),
                        })
                    },
                )
                .await;
            stop_waiting();
            let pooled = pooled
                .map_err(|e| gave_up(link.addr, started, retries, SendError::Connection(e)))?;
            let stdin = match path {
                None => Source::pipe(std::io::stdin()),
                Some(path) => {
                    // A FIFO's open waits for its writer: not on the runtime's thread.
                    let open = path.clone();
                    let file = tokio::task::spawn_blocking(move || std::fs::File::open(open))
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|r| r)
                        .map_err(|e| {
                            SendError::Source(std::io::Error::new(
                                e.kind(),
                                format!("cannot open {}: {e}", path.display()),
                            ))
                        })?;
                    Source::pipe(file)
                }
            };
            let bar = ctx.out.progress(header.length, &header.name);
            let progress = |n: u64| bar.inc(n);
            let result = finish(link, &pooled, &header, stdin, &progress)
                .await
                .map_err(|e| match e {
                    // Some of stdin may be gone: it cannot be sent again.
                    SendError::Connection(c) if c.is_retryable() => {
                        SendError::Source(std::io::Error::other(format!(
                            "{c}; stdin cannot be replayed, the transfer is lost"
                        )))
                    }
                    e => e,
                });
            (result, retries)
        }
    };
    stop_waiting();
    let done = result.map_err(|e| gave_up(link.addr, started, retries, e))?;
    let seconds = started.elapsed().as_secs_f64();
    let addr = link.addr;
    if !*warned && !link.rules.authenticates() {
        *warned = true;
        if let Some(fp) = done.peer {
            ctx.out.warn(&format!(
                "{} is not authenticated: it showed fingerprint {fp}; to be sure it is the \
                 peer you mean, compare it with the listener's, then use the ticket {fp}@{}",
                canonical(addr),
                canonical(addr)
            ));
        }
    }
    let sha = hex(&done.sent.sha256);
    ctx.out.event(
        json!({
            "event": "sent",
            "name": item.name(),
            "bytes": done.sent.bytes,
            "sha256": sha,
            "peer": canonical(addr).to_string(),
            "peer_fingerprint": done.peer.map(|f| f.to_string()),
            "seconds": seconds,
            "retries": retries,
            "reused_connection": done.reused,
            "duplicate": done.sent.duplicate || done.sent.present,
            "already_present": done.sent.present,
            "stored_as": done.sent.stored_as,
            "message_id": id.to_string(),
            "stream": if link.mode == Mode::Uni { "uni" } else { "bi" },
        }),
        || {
            let stored_as = match &done.sent.stored_as {
                Some(name) if name != item.name() => format!(", stored as {}", shown(name)),
                _ => String::new(),
            };
            format!(
                "sent {} ({} in {}, {}){}{}{stored_as} sha256 {}",
                item.name(),
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
                sha
            )
        },
    );
    Ok(())
}

/// `--skip-same`: the SHA-256 of a file, read on a blocking thread before it is sent.
async fn content_digest(path: &Path) -> anyhow::Result<[u8; 32]> {
    use sha2::Digest as _;
    let path = path.to_path_buf();
    let shown_path = path.display().to_string();
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(&path)?, &mut hasher)?;
        Ok(hasher.finalize().into())
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r)
    .map_err(|e| coded(Exit::Transfer, format!("cannot read {shown_path}: {e}")))
}

/// A connection failure that was still worth retrying when the budget ran out becomes
/// "no answer from ADDR after 30s, 12 attempts": the whole wait, not the last slice.
fn gave_up(addr: SocketAddr, started: Instant, retries: u32, e: SendError) -> SendError {
    match e {
        SendError::Connection(last) if last.is_retryable() => {
            SendError::Connection(ConnectError::GaveUp {
                addr: canonical(addr),
                after: started.elapsed(),
                attempts: retries + 1,
                last: Box::new(last),
            })
        }
        e => e,
    }
}

/// Sends on a pooled connection; on a failure worth retrying, evicts that connection so
/// the next attempt dials a fresh one.
async fn finish(
    link: &Link<'_>,
    pooled: &crate::net::pool::Pooled,
    header: &Header,
    source: Source,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Done, SendError> {
    let peer = Fingerprint::of_peer(&pooled.conn);
    match send_message(&pooled.conn, header, source, link.mode, progress).await {
        Ok(sent) => Ok(Done {
            sent,
            reused: pooled.reused,
            peer,
        }),
        Err(e) => {
            if matches!(e, SendError::Connection(_)) {
                link.pool.evict(&pooled.conn);
                pooled.conn.close(framing::close::CANCELLED, b"retrying");
            }
            Err(e)
        }
    }
}
