//! Partial files: what a receiver keeps of a transfer that broke off, so that the
//! sender's next try (in the same run or a later one, after a restart of either side)
//! sends only the rest (PROTOCOL.md, "Resume").
//!
//! Layout: one hidden folder in DIR, [`FOLDER`], holding for each partial
//! `KEY.part` (the bytes received, from offset 0) and `KEY.meta` (what identifies the
//! content, a few lines of text). `KEY` is `NAME-CONTENT`: `NAME` the hex BLAKE3 of the
//! sender's fingerprint and the name it proposed (so a sender cannot reach another's
//! partial), `CONTENT` 16 hex digits of the BLAKE3 of what identifies the content
//! (length, modification time, the digest of the first 64 KiB, the algorithm; all of
//! it also in the sidecar, compared in full). Two files sent alternately under one
//! name keep a partial each; at most [`PER_NAME`] are kept per sender and name, the
//! oldest going first when another content arrives (a source edited again and again
//! does not pile up copies).
//!
//! How much is held is the length of `KEY.part`: nothing else needs updating while
//! bytes arrive. The digest of the held prefix is not stored (BLAKE3's hasher state
//! cannot be saved with the `blake3` crate's API): the receiver re-reads the prefix
//! once when it resumes, which it must do anyway to continue the whole file's digest;
//! the read is local and runs while the sender reads its own prefix.
//!
//! What could go wrong, and how it is prevented:
//! - *A partial mistaken for a received file*: it lives only under [`FOLDER`] (hidden,
//!   never a final name) until it is complete and verified, then is renamed to its name
//!   by the same exclusive rename as any received file (`Pending`).
//! - *Two transfers appending to one partial*: a partial is claimed ([`Claim`]) by one
//!   message at a time; another finds it busy and receives without resume. The claim is
//!   released only when the claim and the sink writing into it are both gone (a
//!   [`Lease`] shared by the two), so no writer outlives it.
//! - *A retry kept out by the try it replaces*: a black-out leaves the old stream
//!   waiting for bytes until the listener's idle timeout, holding the partial, while
//!   the sender already retries. A claim whose holder received nothing for [`STALL`] is
//!   taken over: the holder is told to stop ([`Hold::stop`]), ends its stream, keeps
//!   what it wrote, and releases the partial to the newcomer (same sender, same content
//!   by the key).
//! - *Names from the wire as file names*: keys are hex digests; nothing of the name is
//!   used in a path here.
//! - *A sidecar that claims more than the disk holds* (a power loss after the size
//!   grew but before the data was written): it never counts bytes before they are
//!   synced, and what is held is cut to the smaller of the two. A torn or unreadable
//!   sidecar is other content: the partial is dropped.
//! - *A bad prefix* (a disk that lost writes in a crash, a lying sender): the sender
//!   proves its prefix by digest, compared with the re-read one before a byte is
//!   appended; a mismatch discards the partial.
//! - *Partials piling up*: [`Partials::sweep`] removes those untouched for longer than
//!   the time to live (`listen --partial-ttl`, default [`DEFAULT_TTL`]); the folder is
//!   removed when empty.
//! - *Partials taking the room a new transfer needs*: before a message would be
//!   refused for space, [`Partials::make_room`] removes partials of other transfers,
//!   oldest first (the expired ones are among them), if that frees enough; else it
//!   removes none.
//! - *A symlink planted as the folder or a partial*: the folder must be a directory
//!   (not a link) and a partial a regular file, else it is not used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

use super::direct::{WriteBehind, DIRECT_FROM};
use super::pending::Pending;
use super::Store;
use crate::net::digest::Algorithm;
use crate::net::framing::resume::{Held, Offer};

/// The hidden folder in DIR that holds partial files.
pub const FOLDER: &str = ".qp2p-partial";
/// What a partial holds is cut to a multiple of this (the largest logical block in
/// common use), so that the rest is written directly (`O_DIRECT`) at an aligned offset.
const BLOCK: u64 = 4096;
/// How long a partial is kept after its last byte arrived, by default: one day.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// While bytes arrive, the partial's data is synced and its sidecar rewritten at most
/// this often: what a power loss can cost, beside the stream's window.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// How many partials of different content are kept per sender and name.
pub const PER_NAME: usize = 2;
/// A claim whose holder received nothing for this long may be taken over by a newer
/// try of the same content from the same sender.
pub const STALL: Duration = Duration::from_secs(1);
/// Where Linux says which boot of the machine this is.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot of the machine, where the system says (Linux); `None` elsewhere.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string(BOOT_ID).ok()?;
    let id = id.trim();
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_owned())
}

/// What a partial holds: from whom, under which name, and which content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The sender's fingerprint.
    pub fingerprint: [u8; 32],
    /// The name it proposed, as sent.
    pub name: String,
    /// The file's length.
    pub size: u64,
    /// The file's modification time and head digest.
    pub offer: Offer,
    /// The digest algorithm of the head digest (and of the transfer).
    pub algorithm: Algorithm,
}

impl Identity {
    /// The first part of the key, the same for every content of this sender and name:
    /// hex BLAKE3 of fingerprint and name.
    fn name_key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"qp2p partial 1\0");
        h.update(&self.fingerprint);
        h.update(self.name.as_bytes());
        h.finalize().to_hex().to_string()
    }

    /// The partial's key: `NAME-CONTENT` (see the module's documentation).
    fn key(&self) -> String {
        let content = blake3::hash(self.meta().as_bytes()).to_hex();
        format!("{}-{}", self.name_key(), &content[..16])
    }

    /// The sidecar's first lines: what identifies the content.
    fn meta(&self) -> String {
        format!(
            "qp2p-partial 2\nsize {}\nmtime_ns {}\nhead {}\nalgorithm {}\n",
            self.size,
            self.offer.mtime_ns,
            crate::net::transfer::hex(&self.offer.head),
            self.algorithm.name()
        )
    }
}

/// A sidecar read back: how many bytes were synced, and on which boot it was written.
#[derive(Debug, PartialEq, Eq)]
struct Synced {
    held: u64,
    boot: Option<String>,
}

impl Synced {
    /// The sidecar's lines after the identity's; `None` when they are not two such
    /// lines (a torn or foreign sidecar).
    fn parse(rest: &str) -> Option<Self> {
        let mut lines = rest.lines();
        let held = lines.next()?.strip_prefix("held ")?.parse().ok()?;
        let boot = match lines.next()?.strip_prefix("boot ")? {
            "-" => None,
            id => Some(id.to_owned()),
        };
        match lines.next() {
            None => Some(Self { held, boot }),
            Some(_) => None,
        }
    }

    fn encode(&self) -> String {
        format!(
            "held {}\nboot {}\n",
            self.held,
            self.boot.as_deref().unwrap_or("-")
        )
    }
}

/// Where a partial's sidecar is, and what it says of the content: enough to rewrite it
/// with a new count.
#[derive(Debug, Clone)]
struct Sidecar {
    path: PathBuf,
    temp: PathBuf,
    identity: String,
}

impl Sidecar {
    /// Writes the sidecar saying that `held` bytes are synced: a new file renamed over
    /// the old one, so that a reader sees the old or the new one whole; with `durable`,
    /// the new file and the folder are synced too. The caller synced the data first.
    fn write(&self, held: u64, durable: bool) -> io::Result<()> {
        let text = format!(
            "{}{}",
            self.identity,
            Synced {
                held,
                boot: boot_id()
            }
            .encode()
        );
        let mut file = File::create(&self.temp)?;
        file.write_all(text.as_bytes())?;
        if durable {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&self.temp, &self.path)?;
        if durable {
            if let Some(dir) = self.path.parent() {
                super::pending::sync_dir(dir);
            }
        }
        Ok(())
    }

    /// Syncs what `file` holds, then says so in the sidecar.
    fn checkpoint(&self, file: &File, durable: bool) -> io::Result<()> {
        // Everything below the length seen here was written before the sync starts.
        let len = file.metadata()?.len();
        file.sync_data()?;
        self.write(len, durable)
    }
}

/// The partial files of one DIR.
#[derive(Debug, Clone)]
pub struct Partials {
    dir: PathBuf,
    ttl: Duration,
    busy: Arc<Mutex<HashMap<String, Arc<Hold>>>>,
    report: Option<Report>,
}

/// Told what [`Partials::make_room`] removed, and how many bytes were short.
#[derive(Clone)]
struct Report(Arc<dyn Fn(Swept, u64) + Send + Sync>);

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Report")
    }
}

/// The hold of a claimed partial: when its holder last wrote, and how to tell it to
/// stop.
#[derive(Debug)]
pub(crate) struct Hold {
    since: Instant,
    /// Milliseconds after `since` of the last write.
    last: AtomicU64,
    stop: CancellationToken,
}

impl Hold {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            last: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }

    /// A write happened now.
    fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }

    /// How long since the holder claimed the partial or last wrote to it.
    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }

    /// Cancelled when a newer try takes the partial over: the holder stops.
    pub(crate) fn stop(&self) -> &CancellationToken {
        &self.stop
    }
}

/// A claimed partial's place in [`Partials`]: released when the last of the claim and
/// its sink is gone.
#[derive(Debug)]
struct Lease {
    key: String,
    busy: Arc<Mutex<HashMap<String, Arc<Hold>>>>,
    hold: Arc<Hold>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if busy
            .get(&self.key)
            .is_some_and(|h| Arc::ptr_eq(h, &self.hold))
        {
            busy.remove(&self.key);
        }
    }
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Partials removed.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Partials {
    /// The partials of the store rooted at `root`, kept for `ttl` after their last byte.
    pub fn new(root: &Path, ttl: Duration) -> Self {
        Self {
            dir: root.join(FOLDER),
            ttl,
            busy: Arc::default(),
            report: None,
        }
    }

    /// Calls `report` with the partials removed to make room for a message the disk
    /// could not hold otherwise (oldest first, see the module documentation), and the
    /// bytes that were short, each time it removes any.
    pub fn on_room_made(mut self, report: impl Fn(Swept, u64) + Send + Sync + 'static) -> Self {
        self.report = Some(Report(Arc::new(report)));
        self
    }

    /// Removes partials not claimed now, oldest first, until their bytes reach
    /// `short`: a message would be refused for space otherwise. Removes none when all
    /// of them together would not make up `short` (they may still be resumed).
    /// Blocking.
    pub(crate) fn make_room(&self, short: u64) -> Swept {
        let busy = self.lock().clone();
        let mut parts: Vec<(String, SystemTime, u64)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".part")?;
                let meta = entry.metadata().ok()?;
                let modified = meta.modified().ok()?;
                let free = !busy.contains_key(key) && meta.is_file();
                free.then(|| (key.to_owned(), modified, meta.len()))
            })
            .collect();
        let mut swept = Swept::default();
        if parts.iter().map(|(_, _, len)| len).sum::<u64>() < short {
            return swept;
        }
        parts.sort_by_key(|(_, modified, _)| *modified);
        for (key, _, len) in parts {
            if swept.bytes >= short {
                break;
            }
            if self.remove(&key) {
                swept.count += 1;
                swept.bytes += len;
            }
        }
        self.tidy(None);
        if let Some(report) = &self.report {
            (report.0)(swept, short);
        }
        swept
    }

    /// The time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Claims the partial for `id` (made empty when there is none, or when the one
    /// there holds other content): `None` when another message holds it.
    pub(crate) fn claim(&self, id: &Identity) -> io::Result<Option<Claim>> {
        let key = id.key();
        let hold = Arc::new(Hold::new());
        {
            let mut busy = self.lock();
            if busy.contains_key(&key) {
                return Ok(None);
            }
            busy.insert(key.clone(), hold.clone());
        }
        let lease = Arc::new(Lease {
            key: key.clone(),
            busy: self.busy.clone(),
            hold,
        });
        let claim = Claim {
            lease,
            part: self.dir.join(format!("{key}.part")),
            sidecar: Sidecar {
                path: self.dir.join(format!("{key}.meta")),
                temp: self.dir.join(format!("{key}.meta.new")),
                identity: id.meta(),
            },
            key,
            partials: self.clone(),
            file: None,
            held: 0,
            size: id.size,
            status: Held::Nothing,
        };
        claim.open(id).map(Some)
    }

    /// The hold of whoever claims `id`'s partial now, if anyone does.
    pub(crate) fn holder(&self, id: &Identity) -> Option<Arc<Hold>> {
        self.lock().get(&id.key()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Hold>>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the folder (a directory, not a link).
    fn make_dir(&self) -> io::Result<()> {
        match std::fs::create_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => r?,
        }
        if !std::fs::symlink_metadata(&self.dir)?.is_dir() {
            return Err(io::Error::other(format!(
                "{} is not a directory",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// The other partials of sender and name `name_key` than `key`: key, whether
    /// claimed now, and last write; oldest first.
    fn siblings(&self, name_key: &str, key: &str) -> Vec<(String, bool, SystemTime)> {
        let busy = self.lock().clone();
        let prefix = format!("{name_key}-");
        let mut found: Vec<_> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let other = name.strip_suffix(".part")?;
                if !other.starts_with(&prefix) || other == key {
                    return None;
                }
                let modified = entry.metadata().ok()?.modified().ok()?;
                Some((other.to_owned(), busy.contains_key(other), modified))
            })
            .collect();
        found.sort_by_key(|(_, _, modified)| *modified);
        found
    }

    /// Removes the partial `key` (its data and sidecar) unless it is claimed; under
    /// the lock, so that no claim takes it meanwhile. Whether it was removed.
    fn remove(&self, key: &str) -> bool {
        let busy = self.lock();
        if busy.contains_key(key) {
            return false;
        }
        let _ = std::fs::remove_file(self.dir.join(format!("{key}.part")));
        let _ = std::fs::remove_file(self.dir.join(format!("{key}.meta")));
        true
    }

    /// Removes the folder if it is empty and no claim but `own` (one being released)
    /// is about to make a partial in it.
    fn tidy(&self, own: Option<&str>) {
        let busy = self.lock();
        if busy.keys().all(|k| Some(k.as_str()) == own) {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    /// Removes the partials (not claimed now) whose last write is older than the time
    /// to live, and anything else in the folder as old; says what it freed.
    pub fn sweep(&self) -> Swept {
        let mut swept = Swept::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return swept;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.split('.').next().unwrap_or("");
            let busy = self.lock();
            if busy.contains_key(key) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age <= self.ttl || !meta.is_file() {
                continue;
            }
            // Under the lock: no claim takes it meanwhile.
            if std::fs::remove_file(&path).is_ok() && name.ends_with(".part") {
                swept.count += 1;
                swept.bytes += meta.len();
            }
            drop(busy);
        }
        self.tidy(None);
        swept
    }

    /// The partials held now: how many, and their bytes.
    pub fn held(&self) -> Swept {
        let mut held = Swept::default();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().ends_with(".part") {
                held.count += 1;
                held.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        held
    }
}

/// One partial, claimed by one message: released when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    lease: Arc<Lease>,
    key: String,
    part: PathBuf,
    sidecar: Sidecar,
    partials: Partials,
    file: Option<File>,
    /// Bytes held at the claim.
    pub(crate) held: u64,
    /// The whole file's length.
    size: u64,
    /// What the claim found.
    pub(crate) status: Held,
}

impl Claim {
    fn open(mut self, id: &Identity) -> io::Result<Self> {
        self.partials.make_dir()?;
        let text = std::fs::read_to_string(&self.sidecar.path).ok();
        let part = std::fs::symlink_metadata(&self.part).ok();
        let identity = id.meta();
        let synced = text
            .as_deref()
            .and_then(|t| t.strip_prefix(identity.as_str()))
            .and_then(Synced::parse);
        match (&synced, &part) {
            (Some(synced), Some(part)) if part.is_file() => {
                let file = OpenOptions::new().read(true).write(true).open(&self.part)?;
                // On the boot that wrote it, the file holds what the kernel was given;
                // after a reboot, only what was synced is sure to be there.
                let len = file.metadata()?.len();
                let trusted = match synced.boot.is_some() && synced.boot == boot_id() {
                    true => len,
                    false => len.min(synced.held),
                }
                .min(id.size);
                // Cut to a whole block (unless complete), so that the rest can be
                // written past the page cache like any large file.
                self.held = match trusted == id.size {
                    true => trusted,
                    false => trusted - trusted % BLOCK,
                };
                file.set_len(self.held)?;
                self.status = match self.held {
                    0 => Held::Nothing,
                    _ => Held::Prefix,
                };
                self.file = Some(file);
                return Ok(self);
            }
            _ if text.is_some() || part.is_some() => {
                // A torn sidecar, or data without one: not to be trusted.
                self.status = Held::Changed;
                let _ = std::fs::remove_file(&self.part);
            }
            _ => {}
        }
        // Other content of this name from this sender: kept for its own next try (two
        // files sent alternately under one name), but no more than `PER_NAME` in all.
        let others = self.partials.siblings(&id.name_key(), &self.key);
        if !others.is_empty() {
            self.status = Held::Changed;
        }
        let mut left = others.len();
        for (key, busy, _) in &others {
            if left < PER_NAME {
                break;
            }
            if !busy && self.partials.remove(key) {
                left -= 1;
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&self.part)?;
        self.sidecar.write(0, false)?;
        self.file = Some(file);
        Ok(self)
    }

    /// The transfer broke off: what the partial holds is synced, and the sidecar (and
    /// the folder) say so durably. Blocking.
    pub(crate) fn keep(&self) -> io::Result<()> {
        match &self.file {
            Some(file) => self.sidecar.checkpoint(file, true),
            None => Ok(()),
        }
    }

    /// Cancelled when a newer try takes the partial over.
    pub(crate) fn stop(&self) -> CancellationToken {
        self.lease.hold.stop.clone()
    }

    /// Where the held bytes are, to read them back.
    pub(crate) fn path(&self) -> &Path {
        &self.part
    }

    /// Forgets what is held: the next bytes are written from offset 0.
    pub(crate) fn restart(&mut self) -> io::Result<()> {
        if let Some(file) = &self.file {
            file.set_len(0)?;
        }
        self.held = 0;
        Ok(())
    }

    /// Removes the partial: its bytes cannot be trusted.
    pub(crate) fn discard(self) {
        let _ = std::fs::remove_file(&self.part);
        let _ = std::fs::remove_file(&self.sidecar.path);
        self.partials.tidy(Some(&self.key));
    }

    /// The file landed under its name: its sidecar goes, and the folder if empty.
    pub(crate) fn landed(self) {
        let _ = std::fs::remove_file(&self.sidecar.path);
        self.partials.tidy(Some(&self.key));
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // A partial that holds nothing (the message was refused before its payload, or
        // its file was renamed away or lost) is not worth keeping.
        let empty = std::fs::symlink_metadata(&self.part).map_or(true, |m| m.len() == 0);
        if empty {
            let _ = std::fs::remove_file(&self.part);
            let _ = std::fs::remove_file(&self.sidecar.path);
            self.partials.tidy(Some(&self.key));
        }
        // The lease goes with the claim, and the partial is free once the sink (if
        // any) is gone too.
    }
}

/// A message received into its partial: writes append to it; dropped without
/// [`PartialSink::into_pending`] (the transfer failed), the partial stays for the
/// next try.
#[derive(Debug)]
pub(crate) struct PartialSink {
    pending: Option<Pending>,
    lease: Arc<Lease>,
    sidecar: Sidecar,
    /// When the data was last synced and counted in the sidecar.
    checkpoint: Instant,
}

impl PartialSink {
    /// The pending file to commit: renamed from the partial to its final name.
    pub(crate) fn into_pending(mut self) -> Pending {
        self.pending.take().expect("taken once")
    }
}

impl PartialSink {
    /// At most every [`CHECKPOINT_EVERY`]: syncs what was written and counts it in the
    /// sidecar, so that a power loss costs at most the bytes since.
    fn checkpoint(&mut self) -> io::Result<()> {
        if self.checkpoint.elapsed() < CHECKPOINT_EVERY {
            return Ok(());
        }
        let pending = self.pending.as_ref().expect("not taken");
        self.sidecar.checkpoint(&pending.file, false)?;
        self.checkpoint = Instant::now();
        Ok(())
    }
}

impl Write for PartialSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.pending.as_mut().expect("not taken").write(buf)?;
        self.lease.hold.touch();
        self.checkpoint()?;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self
            .pending
            .as_mut()
            .expect("not taken")
            .write_vectored(bufs)?;
        self.lease.hold.touch();
        self.checkpoint()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pending.as_mut().expect("not taken").flush()
    }
}

impl Drop for PartialSink {
    fn drop(&mut self) {
        // A pending file removes its named temporary when dropped; the partial is
        // kept for the next try instead. Its direct writer finishes first: nothing
        // writes to the partial once the claim can be released.
        if let Some(pending) = &mut self.pending {
            let _ = pending.finish_writes();
            pending.temp = None;
        }
    }
}

impl Store {
    /// Prepares to receive `rel` (a sanitized path) into `claim`'s partial, appending
    /// after the bytes it holds; committing it renames the partial to its final name.
    pub(crate) fn begin_partial(&self, rel: &Path, claim: &Claim) -> io::Result<PartialSink> {
        let file_name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty name"))?
            .to_os_string();
        let dir = self.make_parents(rel)?;
        let file = claim
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("partial not open"))?
            .try_clone()?;
        io::Seek::seek(&mut &file, io::SeekFrom::Start(claim.held))?;
        let behind = match claim.size - claim.held >= DIRECT_FROM {
            true => WriteBehind::start(&file),
            false => None,
        };
        Ok(PartialSink {
            lease: claim.lease.clone(),
            sidecar: claim.sidecar.clone(),
            checkpoint: Instant::now(),
            pending: Some(Pending {
                file,
                dir,
                file_name,
                temp: Some(claim.part.clone()),
                overwrite: self.overwrite,
                written: claim.held,
                written_back: claim.held,
                behind,
                receiving: Some(self.committer.receiving()),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(size: u64, mtime_ns: u64) -> Identity {
        Identity {
            fingerprint: [1; 32],
            name: "../a/b.bin".into(),
            size,
            offer: Offer {
                mtime_ns,
                head: [2; 32],
            },
            algorithm: Algorithm::Blake3,
        }
    }

    #[test]
    fn a_partial_is_kept_found_again_replaced_when_changed_and_swept() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path(), false).unwrap();
        let partials = Partials::new(store.root(), Duration::from_secs(3600));
        let id = identity(100_000, 7);
        let claim = partials.claim(&id).unwrap().unwrap();
        assert_eq!((claim.status, claim.held), (Held::Nothing, 0));
        assert!(partials.claim(&id).unwrap().is_none(), "busy while claimed");
        let mut sink = store.begin_partial(Path::new("x.bin"), &claim).unwrap();
        sink.write_all(&[9; 8192 + 40]).unwrap();
        drop(sink);
        drop(claim);
        // Nothing visible in DIR but the hidden folder.
        let names: Vec<_> = std::fs::read_dir(store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FOLDER]);
        let claim = partials.claim(&id).unwrap().unwrap();
        // Cut to whole blocks: the rest is written at an aligned offset.
        assert_eq!((claim.status, claim.held), (Held::Prefix, 8192));
        assert_eq!(
            partials.held(),
            Swept {
                count: 1,
                bytes: 8192
            }
        );
        drop(claim);
        // The source changed: said so; the other content's partial stays for its
        // own next try.
        let claim = partials.claim(&identity(100, 8)).unwrap().unwrap();
        assert_eq!((claim.status, claim.held), (Held::Changed, 0));
        let mut sink = store.begin_partial(Path::new("d/x.bin"), &claim).unwrap();
        sink.write_all(&[3; 100]).unwrap();
        let path = sink.into_pending().commit().unwrap();
        claim.landed();
        assert_eq!(std::fs::read(&path).unwrap(), [3; 100]);
        assert_eq!(partials.held().count, 1, "the landed one's partial is gone");
        // Expiry: a partial older than the time to live is swept and counted.
        let short = Partials::new(store.root(), Duration::ZERO);
        let claim = short.claim(&id).unwrap().unwrap();
        let mut sink = store.begin_partial(Path::new("y"), &claim).unwrap();
        sink.write_all(&[1; 10]).unwrap();
        drop(sink);
        assert_eq!(short.sweep(), Swept::default(), "claimed: kept");
        drop(claim);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            short.sweep(),
            Swept {
                count: 1,
                bytes: 8192 + 10
            }
        );
        assert!(!store.root().join(FOLDER).exists(), "the empty folder goes");
    }

    /// Two contents under one name from one sender keep a partial each; a third
    /// replaces the oldest. Another sender's partial of the same name is not touched.
    #[test]
    fn contents_sent_alternately_under_one_name_keep_their_partials() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path(), false).unwrap();
        let partials = Partials::new(store.root(), Duration::from_secs(3600));
        let hold = |id: &Identity, byte: u8| {
            let claim = partials.claim(id).unwrap().unwrap();
            let mut sink = store.begin_partial(Path::new("x.bin"), &claim).unwrap();
            sink.write_all(&[byte; 3 * 4096]).unwrap();
            drop(sink);
            claim.keep().unwrap();
            let status = claim.status;
            drop(claim);
            // Modification times far enough apart to order the partials.
            std::thread::sleep(Duration::from_millis(20));
            status
        };
        let (a, b, c) = (
            identity(1 << 20, 1),
            identity(1 << 20, 2),
            identity(1 << 20, 3),
        );
        let mut other = identity(1 << 20, 1);
        other.fingerprint = [5; 32];
        assert_eq!(hold(&a, 1), Held::Nothing);
        assert_eq!(hold(&other, 4), Held::Nothing);
        assert_eq!(
            hold(&b, 2),
            Held::Changed,
            "another content of this name is held"
        );
        for id in [&a, &b] {
            let claim = partials.claim(id).unwrap().unwrap();
            assert_eq!(
                (claim.status, claim.held),
                (Held::Prefix, 3 * 4096),
                "{id:?}"
            );
            let first = std::fs::read(claim.path()).unwrap()[0];
            assert_eq!(first, if id == &a { 1 } else { 2 });
        }
        // A third content: the oldest of this sender and name (a) goes.
        std::thread::sleep(Duration::from_millis(20));
        let claim = partials.claim(&b).unwrap().unwrap();
        drop(claim);
        assert_eq!(hold(&c, 3), Held::Changed);
        assert_eq!(partials.held().count, 3, "b, c and the other sender's");
        let part = |id: &Identity| root.path().join(FOLDER).join(format!("{}.part", id.key()));
        assert!(!part(&a).exists(), "a was the oldest");
        assert!(part(&b).exists() && part(&c).exists() && part(&other).exists());
    }

    /// While bytes arrive, the sidecar is rewritten at most every `CHECKPOINT_EVERY`,
    /// counting what was written (and synced) by then and nothing written after.
    #[test]
    fn a_checkpoint_counts_what_was_written_before_it() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path(), false).unwrap();
        let partials = Partials::new(store.root(), Duration::from_secs(3600));
        let id = identity(1 << 20, 7);
        let claim = partials.claim(&id).unwrap().unwrap();
        let meta = root.path().join(FOLDER).join(format!("{}.meta", id.key()));
        let held = || {
            let text = std::fs::read_to_string(&meta).unwrap();
            Synced::parse(text.strip_prefix(id.meta().as_str()).unwrap())
                .unwrap()
                .held
        };
        let mut sink = store.begin_partial(Path::new("x.bin"), &claim).unwrap();
        sink.write_all(&[1; 8192]).unwrap();
        assert_eq!(held(), 0, "no checkpoint yet");
        std::thread::sleep(CHECKPOINT_EVERY);
        sink.write_all(&[2; 8192]).unwrap();
        assert_eq!(held(), 16384, "the checkpoint counts both writes");
        sink.write_all(&[3; 4096]).unwrap();
        drop(sink);
        assert_eq!(held(), 16384, "the last write came after it");
        assert_eq!(std::fs::metadata(claim.path()).unwrap().len(), 20480);
    }

    /// What a partial holds is never more than its sidecar says was synced, unless it
    /// was written on this very boot (a killed process loses nothing the kernel has).
    #[test]
    fn a_partial_claims_only_what_was_synced_after_a_reboot() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path(), false).unwrap();
        let partials = Partials::new(store.root(), Duration::from_secs(3600));
        let id = identity(1 << 20, 7);
        let claim = partials.claim(&id).unwrap().unwrap();
        let mut sink = store.begin_partial(Path::new("x.bin"), &claim).unwrap();
        sink.write_all(&[9; 5 * 4096 + 17]).unwrap();
        drop(sink);
        claim.keep().unwrap();
        let meta = root.path().join(FOLDER).join(format!("{}.meta", id.key()));
        let text = std::fs::read_to_string(&meta).unwrap();
        let synced = Synced::parse(text.strip_prefix(id.meta().as_str()).unwrap()).unwrap();
        assert_eq!(
            synced.held,
            5 * 4096 + 17,
            "kept: everything written is counted"
        );
        assert_eq!(synced.boot, boot_id());
        drop(claim);
        let rewrite = |held: u64, boot: &str| {
            std::fs::write(&meta, format!("{}held {held}\nboot {boot}\n", id.meta())).unwrap()
        };
        // Another boot, and a sidecar counting less than the file's length: only the
        // synced bytes are trusted (cut to whole blocks).
        rewrite(2 * 4096 + 5, "another-boot");
        let claim = partials.claim(&id).unwrap().unwrap();
        assert_eq!((claim.status, claim.held), (Held::Prefix, 2 * 4096));
        drop(claim);
        // A sidecar that claims more than the file holds: the file's length wins.
        rewrite(1 << 19, "another-boot");
        let claim = partials.claim(&id).unwrap().unwrap();
        assert_eq!((claim.status, claim.held), (Held::Prefix, 2 * 4096));
        drop(claim);
        // Without a boot id, as where the system gives none: the synced count.
        rewrite(4096, "-");
        let claim = partials.claim(&id).unwrap().unwrap();
        assert_eq!((claim.status, claim.held), (Held::Prefix, 4096));
        drop(claim);
        // A torn sidecar is not trusted at all: the partial goes.
        let text = std::fs::read_to_string(&meta).unwrap();
        std::fs::write(&meta, &text[..text.len() - 4]).unwrap();
        let claim = partials.claim(&id).unwrap().unwrap();
        assert_eq!((claim.status, claim.held), (Held::Changed, 0));
        drop(claim);
        assert!(
            !root.path().join(FOLDER).exists(),
            "nothing held, nothing kept"
        );
    }
}
