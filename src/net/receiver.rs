//! The receive rules of the protocol, apart from where the bytes go: the duplicate-id
//! table, ack then stop, the free-space refusal, the `send --skip-same` check and the
//! `--once`/`--count` quota.
//!
//! What could go wrong, and how it is prevented:
//! - A retried message stored twice: ids of recent messages (`RECENT_IDS`) are kept
//!   in `Seen` with what was stored under them; a message seen before is acked again
//!   ([`AckStatus::Duplicate`]) and not stored. A retry that arrives while the first
//!   attempt is still being received waits on that id's lock for its outcome.
//! - The table growing without end under a flood of ids: it is bounded, the oldest id
//!   forgotten first.
//! - A disk that fills half-way: a declared length larger than the free space is
//!   refused before a byte is written (`check_free_space`, `NO_SPACE`), unless removing
//!   partial files of other transfers, oldest first, makes the room
//!   (`Partials::make_room`).
//! - A sender planting or replacing a partial file (`--overwrite`): names under the
//!   partials' folder are refused (`BAD_NAME`); resume offers are answered first,
//!   before anything can hold the sender up (`transfer::resume`).
//! - `--skip-same` made to vouch for a file outside DIR: `holds_same` takes only a
//!   regular file, not a symlink, inside DIR once every link on the way is resolved.
//! - `--count N` storing N+1 under concurrency, or fewer after a failure: the
//!   [`Quota`] slot is taken when the header arrives and given back when the message
//!   is not stored.
//! - The listener exiting under an ack it has not delivered: `ack` waits (bounded)
//!   until the sender has read it.
//! - Small files piling up in memory faster than they are committed (a
//!   unidirectional sender does not wait for the commit): at most [`IN_MEMORY`] bytes
//!   of them are held; the next waits, unread, and flow control stops its sender.
//! - A message appended to one that broke off on stdout: a [`Sink::Stream`] takes one
//!   message at a time under its lock, and a message that breaks off after a byte was
//!   written fails the run ([`Receiver::fail`]) before the lock is let go, so the next
//!   one is refused, never appended.
//!
//! Nothing here prints: [`Receiver::receive`] returns what happened (stored, a
//! duplicate, already present, a text, or why it failed) and the caller reports it;
//! names and texts from the wire are the caller's to escape when shown.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::digest::Digest;
use super::framing::{Ack, AckStatus, ErrorCode, Header, Kind, MessageId, MAX_TEXT_LEN};
use super::server::Stream;
use super::tls::Fingerprint;
use super::transfer::{self, receive_payload, resume, Limits, RecvError, INLINE};
use crate::store::{sanitize, Partials, Store, FOLDER as PARTIALS};

/// How many message ids are remembered for duplicate detection.
pub(crate) const RECENT_IDS: usize = 4096;

/// What was stored under a message id.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Bytes stored.
    pub bytes: u64,
    /// Their digest, in the algorithm the message's header named.
    pub digest: Digest,
    /// Where they landed (`None` for stdout and texts).
    pub path: Option<PathBuf>,
    /// Where it landed, relative to DIR, `/`-separated: told to the sender in the ack.
    pub name: Option<String>,
}

/// Recent message ids, bounded; each slot is locked while its message is received, so
/// a retry that arrives during the first attempt waits for its outcome.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    slots: HashMap<MessageId, Arc<tokio::sync::Mutex<Option<Stored>>>>,
    order: VecDeque<MessageId>,
}

impl Seen {
    /// The slot of message `id`: what was stored under it, locked while a message
    /// with this id is received. The oldest id is forgotten past [`RECENT_IDS`].
    pub(crate) fn slot(&mut self, id: MessageId) -> Arc<tokio::sync::Mutex<Option<Stored>>> {
        if let Some(slot) = self.slots.get(&id) {
            return slot.clone();
        }
        if self.order.len() >= RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.slots.remove(&old);
            }
        }
        self.order.push_back(id);
        self.slots.entry(id).or_default().clone()
    }
}

/// Which messages the listener still takes: `--once` and `--count`.
///
/// A slot is taken when a message's header arrives and given back if the message is
/// not stored (failed, or a duplicate), so `--count N` stores exactly N messages and
/// refuses the one after with [`ErrorCode::NotAccepting`], which a sender does not
/// retry.
#[derive(Debug, Default)]
pub struct Quota {
    /// `--once` into DIR: the connection (quinn's stable id) whose messages make the
    /// one `send` run; claimed by the first message.
    pub once: bool,
    /// The connection that claimed the `--once` run.
    pub session: Option<usize>,
    /// `--count N` (and `--once --stdout`: one): messages stored or being received.
    pub limit: Option<u64>,
    /// Messages taken (stored or being received).
    pub taken: u64,
    /// Messages stored.
    pub stored: u64,
}

impl Quota {
    /// Takes a slot for a message on connection `conn`, or says why not (the code to
    /// refuse it with).
    pub fn take(&mut self, conn: usize) -> Result<(), ErrorCode> {
        if self.once {
            match self.session {
                None => self.session = Some(conn),
                Some(id) if id == conn => {}
                Some(_) => return Err(ErrorCode::NotAccepting),
            }
        }
        if let Some(limit) = self.limit {
            if self.taken >= limit {
                return Err(ErrorCode::NotAccepting);
            }
            self.taken += 1;
        }
        Ok(())
    }

    /// The message was not stored: its slot is free again.
    pub fn give_back(&mut self) {
        self.taken = self.taken.saturating_sub(1);
    }

    /// The message was stored; true when that was the last one wanted.
    pub fn stored(&mut self) -> bool {
        self.stored += 1;
        self.limit.is_some_and(|limit| self.stored >= limit)
    }
}

/// Refuses (`NO_SPACE`) a message of `len` declared bytes that `store`'s free space
/// cannot hold, before a byte is written, unless removing `partials` of other
/// transfers (oldest first) makes the room; a disk that fills up anyway (unknown
/// length, several at once) fails on ENOSPC with the same code.
pub(crate) fn check_free_space(
    store: &Store,
    len: u64,
    partials: Option<&Partials>,
) -> Result<(), RecvError> {
    room(|| store.free_space(), len, partials).map_err(|free| {
        RecvError::Refuse(
            ErrorCode::NoSpace,
            format!(
                "{len} bytes declared, {free} free in {}",
                store.root().display()
            ),
        )
    })
}

/// Whether `len` bytes fit the free space `free` reports, after removing partials if
/// that makes them fit; else the free space.
fn room(
    free_space: impl Fn() -> std::io::Result<u64>,
    len: u64,
    partials: Option<&Partials>,
) -> Result<(), u64> {
    match free_space() {
        Ok(free) if free < len => {
            if partials.map_or(0, |p| p.make_room(len - free).count) == 0 {
                return Err(free);
            }
            match free_space() {
                Ok(free) if free < len => Err(free),
                _ => Ok(()),
            }
        }
        Ok(_) => Ok(()),
        Err(e) => {
            debug!(cause = %e, "cannot read the free space; receiving anyway");
            Ok(())
        }
    }
}

/// Acks what was stored, then waits (bounded) until the ack is delivered, so `--once`
/// never exits under it.
pub(crate) async fn ack(send: &mut Option<quinn::SendStream>, stored: &Stored) {
    let Some(send) = send.as_mut() else { return };
    let ack = Ack {
        status: AckStatus::Stored,
        bytes: stored.bytes,
        digest: stored.digest.bytes,
    };
    if let Err(e) = transfer::send_ack(send, &ack, stored.name.as_deref()).await {
        debug!(cause = %e, "could not deliver the ack; the sender will retry");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
}

/// Acks a message whose payload is not needed (a duplicate, or content already
/// there), then stops its stream: ack first, so the sender reads it after its write
/// is stopped.
pub(crate) async fn answer_without_payload(
    send: &mut Option<quinn::SendStream>,
    recv: &mut quinn::RecvStream,
    stored: &Stored,
    status: AckStatus,
) {
    if let Some(send) = send.as_mut() {
        let ack = Ack {
            status,
            bytes: stored.bytes,
            digest: stored.digest.bytes,
        };
        let _ = transfer::send_ack(send, &ack, stored.name.as_deref()).await;
    }
    let _ = recv.stop(ErrorCode::Duplicate.varint());
    if let Some(send) = send.as_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    }
}

/// `path` relative to DIR, `/`-separated, as the ack tells it.
pub(crate) fn relative_name(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// `send --skip-same`: whether DIR holds `len` bytes of content `digest` under `rel`
/// already: a regular file (not a symlink, and inside DIR once every link on the way is
/// resolved) of that length and digest. Reads it whole; only asked when the sender
/// asked and the length matches. Any error means no.
pub(crate) fn holds_same(
    root: &Path,
    rel: &Path,
    len: u64,
    digest: &Digest,
) -> Option<(PathBuf, String)> {
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() || meta.len() != len {
        return None;
    }
    if !path
        .canonicalize()
        .ok()?
        .starts_with(root.canonicalize().ok()?)
    {
        return None;
    }
    let same = digest.algorithm.file_digest(&path).ok()?;
    let name = relative_name(root, &path)?;
    (same == *digest).then_some((path, name))
}

/// Where payloads go.
pub enum Sink {
    /// Files in a directory, each named only when complete (see [`Store`]).
    Dir(Store),
    /// One byte stream (stdout): one whole message after another, never interleaved.
    Stream {
        /// Held while a message is written.
        turn: tokio::sync::Mutex<()>,
        /// Opens the stream for one message.
        open: fn() -> Box<dyn Write + Send>,
    },
}

/// A progress display for payloads (the CLI's bars).
pub trait Progress: Sync {
    /// A payload of `len` bytes (when declared) named `name` starts.
    fn start(&self, len: Option<u64>, name: &str) -> Box<dyn Bar>;
}

/// The display of one payload.
pub trait Bar: Send + Sync {
    /// `n` more bytes arrived.
    fn inc(&self, n: u64);
    /// The payload was stored.
    fn finish(&self);
}

/// No progress display (library users, tests).
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _len: Option<u64>, _name: &str) -> Box<dyn Bar> {
        Box::new(NoProgress)
    }
}

impl Bar for NoProgress {
    fn inc(&self, _n: u64) {}
    fn finish(&self) {}
}

/// The receiving side of a run: the rules above applied to each message, into one
/// [`Sink`].
pub struct Receiver {
    /// Where payloads go.
    pub target: Sink,
    limits: Limits,
    seen: Mutex<Seen>,
    /// The run is over: no more messages are taken (a failure, the quota reached, the
    /// reader of stdout gone).
    pub done: CancellationToken,
    /// Why the run failed although nothing crashed (the first failure wins).
    failure: Mutex<Option<String>>,
    quota: Mutex<Quota>,
    /// Bytes of small files held in memory until their batch commits them
    /// ([`IN_MEMORY`]).
    in_memory: tokio::sync::Semaphore,
    /// Where partial files are kept for resume (`None`: files are not resumed).
    partials: Option<Partials>,
}

/// How many bytes of small files the receiver holds in memory at once, received and
/// waiting for their batch to be committed. A unidirectional sender does not wait for
/// commits, so without this bound files arriving faster than they are committed would
/// pile up in memory; past it, the next small file waits before reading its stream, the
/// stream's flow control stops the sender, and memory stays flat.
pub const IN_MEMORY: usize = 8 * 1024 * 1024;

/// What a small file held in memory costs besides its bytes, counted against
/// [`IN_MEMORY`]: its task, stream, names and buffers (measured: about 12 KiB).
const PER_FILE: u64 = 16 * 1024;

/// What became of one message stream ([`Receiver::serve`]).
#[derive(Debug)]
pub enum Outcome {
    /// Refused before its payload (the quota reached, or the run over) with `code`,
    /// which a sender does not retry.
    Refused(ErrorCode),
    /// A message stored now, or acknowledged as stored before (`Duplicate`) or as
    /// already there (`Present`).
    Received {
        /// What is stored under its id.
        stored: Stored,
        /// Stored now, or not again.
        status: AckStatus,
        /// How long it took.
        seconds: f64,
        /// It was the last the quota takes: end the run once it is reported.
        last: bool,
    },
    /// A text to show (`send --text`).
    Text {
        /// The text, as sent: escape it before showing it.
        text: String,
        /// Stored now, or a duplicate.
        status: AckStatus,
        /// It was the last the quota takes: end the run once it is reported.
        last: bool,
    },
    /// Not stored; the stream was reset with the error's code (if it has one).
    Failed(RecvError),
}

impl Receiver {
    /// A receiver into `target` under `limits`, taking what `quota` allows.
    pub fn new(target: Sink, limits: Limits, quota: Quota) -> Self {
        Self {
            target,
            limits,
            seen: Mutex::default(),
            done: CancellationToken::new(),
            failure: Mutex::default(),
            quota: Mutex::new(quota),
            in_memory: tokio::sync::Semaphore::new(IN_MEMORY),
            partials: None,
        }
    }

    /// Keeps what arrived of a message that broke off in `partials`, so that the
    /// sender's next try resumes it (`transfer::resume`). Only for a directory sink.
    pub fn with_partials(mut self, partials: Partials) -> Self {
        self.partials = Some(partials);
        self
    }

    /// The partial files kept for resume, if any.
    pub fn partials(&self) -> Option<&Partials> {
        self.partials.as_ref()
    }

    /// The quota, locked.
    pub fn quota(&self) -> std::sync::MutexGuard<'_, Quota> {
        self.quota.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves one message stream whose header has arrived: refused at once when the
    /// quota is reached or the run is over, else received ([`Receiver::receive`]),
    /// its quota slot given back unless it was stored, and reset with the error's code
    /// when it failed. Reporting the outcome is the caller's.
    pub async fn serve(&self, s: &mut Stream, progress: &dyn Progress) -> Outcome {
        let taken = match self.done.is_cancelled() {
            true => Err(ErrorCode::NotAccepting),
            false => self.quota().take(s.conn_id),
        };
        if let Err(code) = taken {
            // Told at once, with a code the sender does not retry.
            info!(peer = %s.peer, name = %s.header.name.escape_debug(), "message refused: {}", code.describe());
            transfer::refuse(&mut s.recv, s.send.as_mut(), code);
            return Outcome::Refused(code);
        }
        let started = std::time::Instant::now();
        let first = std::mem::take(&mut s.first);
        let result = self
            .receive_from(
                &s.header,
                first,
                &mut s.send,
                &mut s.recv,
                progress,
                s.fingerprint,
            )
            .await;
        let seconds = started.elapsed().as_secs_f64();
        if !matches!(result, Ok((_, AckStatus::Stored, _))) {
            self.quota().give_back();
        }
        let last = |status: AckStatus| status == AckStatus::Stored && self.quota().stored();
        match result {
            Ok((_, status, Some(text))) => Outcome::Text {
                text,
                status,
                last: last(status),
            },
            Ok((stored, status, None)) => Outcome::Received {
                stored,
                status,
                seconds,
                last: last(status),
            },
            Err(e) => {
                if let Some(code) = e.code() {
                    transfer::refuse(&mut s.recv, s.send.as_mut(), code);
                }
                Outcome::Failed(e)
            }
        }
    }

    /// Ends the run with `why` (the first failure wins).
    pub fn fail(&self, why: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert(why);
        self.done.cancel();
    }

    /// The failure that ended the run, if one did.
    pub fn take_failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Receives one message; returns what is stored under its id, whether it was stored
    /// now ([`AckStatus::Stored`]), before under this id (`Duplicate`), or was already there
    /// with the same content (`Present`, `send --skip-same`), and for a `--text` message
    /// the text to show.
    pub async fn receive(
        &self,
        header: &Header,
        first: Bytes,
        send: &mut Option<quinn::SendStream>,
        recv: &mut quinn::RecvStream,
        progress: &dyn Progress,
    ) -> Result<(Stored, AckStatus, Option<String>), RecvError> {
        self.receive_from(header, first, send, recv, progress, None)
            .await
    }

    /// [`Receiver::receive`] from the sender with `fingerprint`, whose partial files
    /// (with [`Receiver::with_partials`]) are resumed.
    pub async fn receive_from(
        &self,
        header: &Header,
        first: Bytes,
        send: &mut Option<quinn::SendStream>,
        recv: &mut quinn::RecvStream,
        progress: &dyn Progress,
        fingerprint: Option<Fingerprint>,
    ) -> Result<(Stored, AckStatus, Option<String>), RecvError> {
        let mut first = first;
        let rel = match (&self.target, header.kind) {
            (Sink::Dir(_), Kind::Message) => Some(sanitize(&header.name).ok_or_else(|| {
                RecvError::Refuse(ErrorCode::BadName, format!("{:?}", header.name))
            })?),
            _ => None,
        };
        if rel.as_ref().is_some_and(|rel| rel.starts_with(PARTIALS)) {
            // The folder of partial files is the listener's own: nothing lands there,
            // so no sender can plant or replace another's partial.
            return Err(RecvError::Refuse(
                ErrorCode::BadName,
                format!("{PARTIALS} is reserved for partial files"),
            ));
        }
        self.limits.check_declared(header)?;
        // A resume offer is answered before anything else can hold the sender up (it
        // waits for the answer before its payload); a receiver that keeps no partials
        // answers that it holds nothing.
        let offered = header.kind == Kind::Message
            && header.resume.is_some()
            && header.length.is_some_and(|n| n > INLINE)
            && send.is_some();
        let mut claim = None;
        if offered {
            if let (Sink::Dir(_), Some(partials), Some(fp)) =
                (&self.target, &self.partials, fingerprint)
            {
                claim = resume::claim(partials, header, fp.0).await;
            }
            if let Some(send) = send.as_mut() {
                resume::answer(send, claim.as_ref()).await?;
            }
        }
        let slot = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .slot(header.id);
        let mut slot = slot.lock().await;
        if let Some(stored) = slot.clone() {
            info!(id = %header.id, "duplicate message: acknowledged, not stored again");
            answer_without_payload(send, recv, &stored, AckStatus::Duplicate).await;
            return Ok((stored, AckStatus::Duplicate, None));
        }
        if let (Sink::Dir(store), Some(rel), Some(len), Some(digest)) =
            (&self.target, &rel, header.length, header.skip_same)
        {
            let digest = Digest {
                algorithm: header.algorithm(),
                bytes: digest,
            };
            let (root, rel) = (store.root().to_path_buf(), rel.clone());
            let held = tokio::task::spawn_blocking(move || holds_same(&root, &rel, len, &digest))
                .await
                .unwrap_or(None);
            if let Some((path, name)) = held {
                info!(name = %name.escape_debug(), "same content already there: not taken again");
                let stored = Stored {
                    bytes: len,
                    digest,
                    path: Some(path),
                    name: Some(name),
                };
                answer_without_payload(send, recv, &stored, AckStatus::Present).await;
                return Ok((stored, AckStatus::Present, None));
            }
        }

        if let (Sink::Dir(store), Some(len)) = (&self.target, header.length) {
            // What a partial holds is on the disk already.
            let held = claim.as_ref().map_or(0, |c| c.held);
            check_free_space(store, len - held.min(len), self.partials.as_ref())?;
        }
        if offered && claim.is_none() {
            // Nothing held: the sender starts from byte 0, with or without a start.
            let (start, rest) = resume::read_start(recv, first, header, 0).await?;
            if start.is_some_and(|s| s.from != 0) {
                return Err(RecvError::Refuse(
                    ErrorCode::BadHeader,
                    "resume from a byte that is not held".into(),
                ));
            }
            first = rest;
        }
        if header.kind == Kind::Text {
            let text = receive_text(header, first, recv).await?;
            let stored = Stored {
                bytes: text.len() as u64,
                digest: header.algorithm().digest(text.as_bytes()),
                path: None,
                name: None,
            };
            *slot = Some(stored.clone());
            drop(slot);
            ack(send, &stored).await;
            return Ok((stored, AckStatus::Stored, Some(text)));
        }
        let bar = progress.start(header.length, &header.name);
        let progress = |n: u64| bar.inc(n);
        let stored = match (&self.target, rel) {
            (Sink::Dir(store), Some(rel)) if claim.is_some() => {
                let claim = claim.take().expect("checked");
                let (got, claim) = resume::receive_into_partial(
                    store,
                    &rel,
                    claim,
                    header,
                    first,
                    recv,
                    self.limits,
                    &progress,
                )
                .await?;
                let path = store
                    .commit(got.sink.into_pending())
                    .await
                    .map_err(RecvError::Storage)?;
                claim.landed();
                Stored {
                    bytes: got.bytes,
                    digest: got.digest,
                    name: relative_name(store.root(), &path),
                    path: Some(path),
                }
            }
            (Sink::Dir(store), Some(rel)) if header.length.is_some_and(|n| n <= INLINE) => {
                // A small file: received into memory, then written, synced and named
                // with the others of its batch on the commit thread; no file is opened
                // here, where a create could wait for the journal behind a sync.
                // Room in memory first (a file of up to 64 KiB fits the budget).
                let len = (header.length.unwrap_or(0) + PER_FILE) as u32;
                let _room = self
                    .in_memory
                    .acquire_many(len)
                    .await
                    .map_err(|_| RecvError::Refuse(ErrorCode::NotAccepting, String::new()))?;
                let receiving = store.receiving();
                let got = receive_payload(recv, header, first, Vec::new(), self.limits, &progress)
                    .await?;
                let path = store
                    .commit_bytes(rel, got.sink, receiving)
                    .await
                    .map_err(RecvError::Storage)?;
                Stored {
                    bytes: got.bytes,
                    digest: got.digest,
                    name: relative_name(store.root(), &path),
                    path: Some(path),
                }
            }
            (Sink::Dir(store), Some(rel)) => {
                let pending = store
                    .begin(&rel, header.length)
                    .map_err(RecvError::Storage)?;
                let got =
                    receive_payload(recv, header, first, pending, self.limits, &progress).await?;
                // Durable under its final name, with the files that complete with it.
                let path = store.commit(got.sink).await.map_err(RecvError::Storage)?;
                Stored {
                    bytes: got.bytes,
                    digest: got.digest,
                    name: relative_name(store.root(), &path),
                    path: Some(path),
                }
            }
            (Sink::Stream { turn: lock, open }, _) => {
                // One message at a time on stdout, never interleaved.
                let _turn = lock.lock().await;
                if self.done.is_cancelled() {
                    // A message before this one broke off on stdout, or the run is over.
                    return Err(RecvError::Refuse(ErrorCode::NotAccepting, String::new()));
                }
                let written = Arc::new(AtomicU64::new(0));
                let stdout = Counted {
                    inner: open(),
                    written: written.clone(),
                };
                let got =
                    receive_payload(recv, header, first, stdout, self.limits, &progress).await;
                let got = match got {
                    Ok(got) => got,
                    Err(e) => {
                        let n = written.load(Ordering::SeqCst);
                        let reader_gone = matches!(&e, RecvError::Storage(io) if io.kind() == std::io::ErrorKind::BrokenPipe);
                        if n > 0 && !reader_gone {
                            // Stdout cannot take bytes back: whoever reads it (`| tar x`)
                            // must not see a next message appended, nor an exit 0.
                            self.fail(format!(
                                "{:?} broke off after {n} bytes of it went to stdout ({e}); \
                                 what stdout received is incomplete",
                                header.name
                            ));
                        }
                        return Err(e);
                    }
                };
                Stored {
                    bytes: got.bytes,
                    digest: got.digest,
                    path: None,
                    name: None,
                }
            }
            (Sink::Dir(_), None) => unreachable!("a directory sink always has a name"),
        };
        bar.finish();
        *slot = Some(stored.clone());
        drop(slot);
        ack(send, &stored).await;
        Ok((stored, AckStatus::Stored, None))
    }
}

/// Stdout, counting what was written: a message that fails after a byte reached it
/// ends the listener.
struct Counted<W> {
    inner: W,
    written: Arc<AtomicU64>,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.written.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A `--text` message: at most [`MAX_TEXT_LEN`] bytes of UTF-8, held in memory.
async fn receive_text(
    header: &Header,
    first: Bytes,
    recv: &mut quinn::RecvStream,
) -> Result<String, RecvError> {
    let limits = transfer::Limits {
        max_size: Some(MAX_TEXT_LEN),
    };
    let got = receive_payload(recv, header, first, Vec::new(), limits, &|_| {}).await?;
    String::from_utf8(got.sink)
        .map_err(|_| RecvError::Refuse(ErrorCode::BadHeader, "the text is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message that would be refused for space removes partials of other transfers,
    /// oldest first and only as many as it needs, never a claimed one, and says so;
    /// when they could not make the room together, none goes. The free-space figure
    /// is faked: it grows by what the partials' removal frees.
    #[test]
    fn partials_make_room_for_a_message_the_disk_cannot_hold() {
        use crate::net::framing::resume::Offer;
        use crate::store::Identity;
        use std::io::Write;
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path(), false).unwrap();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let seen = reports.clone();
        let partials = Partials::new(store.root(), Duration::from_secs(3600))
            .on_room_made(move |swept, short| seen.lock().unwrap().push((swept, short)));
        let id = |n: u64| Identity {
            fingerprint: [n as u8; 32],
            name: format!("f{n}"),
            size: 1 << 20,
            offer: Offer {
                mtime_ns: n,
                head: [0; 32],
            },
            algorithm: crate::Algorithm::Blake3,
        };
        let block = 64 * 1024;
        for n in 1..=3 {
            let claim = partials.claim(&id(n)).unwrap().unwrap();
            let mut sink = store.begin_partial(Path::new("x"), &claim).unwrap();
            sink.write_all(&vec![n as u8; block]).unwrap();
            drop(sink);
            drop(claim);
            std::thread::sleep(Duration::from_millis(20));
        }
        // The newest is being received into: not removable.
        let busy = partials.claim(&id(3)).unwrap().unwrap();
        let held = 3 * block as u64;
        let free = || Ok(1000 + held - partials.held().bytes);
        assert_eq!(room(free, 1000, Some(&partials)), Ok(()));
        assert_eq!(partials.held().count, 3, "room enough: nothing removed");
        // Short by more than the two free partials hold: none goes.
        assert_eq!(
            room(free, 1000 + 2 * block as u64 + 1, Some(&partials)),
            Err(1000)
        );
        assert_eq!(partials.held().count, 3);
        assert!(reports.lock().unwrap().is_empty());
        // Short by one block: the oldest goes, and only it.
        assert_eq!(room(free, 1000 + block as u64, Some(&partials)), Ok(()));
        assert_eq!(partials.held().count, 2);
        assert!(
            partials.claim(&id(1)).unwrap().unwrap().held == 0,
            "the oldest went"
        );
        let report = reports.lock().unwrap().clone();
        assert_eq!(
            report,
            [(
                crate::store::Swept {
                    count: 1,
                    bytes: block as u64
                },
                block as u64
            )]
        );
        // Without partials, nothing to remove: refused.
        assert_eq!(room(free, u64::MAX, None), Err(1000 + block as u64));
        drop(busy);
    }

    /// `--count 2`: a failed message gives its slot back, the second stored one is the
    /// last, a third is refused.
    #[test]
    fn quota_counts_stored_messages_only() {
        let mut q = Quota {
            limit: Some(2),
            ..Quota::default()
        };
        q.take(1).unwrap();
        q.give_back();
        q.take(1).unwrap();
        assert!(!q.stored());
        q.take(2).unwrap();
        assert!(q.stored());
        assert_eq!(q.take(3), Err(ErrorCode::NotAccepting));
    }

    /// `--once`: the first connection's messages only.
    #[test]
    fn once_takes_one_connection() {
        let mut q = Quota {
            once: true,
            ..Quota::default()
        };
        q.take(7).unwrap();
        q.take(7).unwrap();
        assert_eq!(q.take(8), Err(ErrorCode::NotAccepting));
    }
}
