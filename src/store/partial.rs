//! Partial files: what a receiver keeps of a transfer that broke off, so that the
//! sender's next try (in the same run or a later one, after a restart of either side)
//! sends only the rest (PROTOCOL.md, "Resume").
//!
//! Layout: one hidden folder in DIR, [`FOLDER`], holding for each partial
//! `KEY.part` (the bytes received, from offset 0) and `KEY.meta` (what identifies the
//! content, a few lines of text). `KEY` is the hex BLAKE3 of the sender's fingerprint
//! and the name it proposed: one partial per sender and name, so a sender cannot reach
//! another's partial, and a changed source replaces its own old one. What identifies
//! the content (length, modification time, the digest of the first 64 KiB, the
//! algorithm) is in the sidecar; an offer that differs discards the partial.
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
//!   message at a time; another finds it busy and receives without resume.
//! - *Names from the wire as file names*: keys are hex digests; nothing of the name is
//!   used in a path here.
//! - *A bad prefix* (a disk that lost writes in a crash, a lying sender): the sender
//!   proves its prefix by digest, compared with the re-read one before a byte is
//!   appended; a mismatch discards the partial.
//! - *Partials piling up*: [`Partials::sweep`] removes those untouched for longer than
//!   the time to live (`listen --partial-ttl`, default [`DEFAULT_TTL`]); the folder is
//!   removed when empty.
//! - *A symlink planted as the folder or a partial*: the folder must be a directory
//!   (not a link) and a partial a regular file, else it is not used.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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
    /// The partial's key: hex BLAKE3 of fingerprint and name.
    fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"qp2p partial 1\0");
        h.update(&self.fingerprint);
        h.update(self.name.as_bytes());
        h.finalize().to_hex().to_string()
    }

    /// The sidecar's text.
    fn meta(&self) -> String {
        format!(
            "qp2p-partial 1\nsize {}\nmtime_ns {}\nhead {}\nalgorithm {}\n",
            self.size,
            self.offer.mtime_ns,
            crate::net::transfer::hex(&self.offer.head),
            self.algorithm.name()
        )
    }
}

/// The partial files of one DIR.
#[derive(Debug, Clone)]
pub struct Partials {
    dir: PathBuf,
    ttl: Duration,
    busy: Arc<Mutex<HashSet<String>>>,
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
        }
    }

    /// The time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Claims the partial for `id` (made empty when there is none, or when the one
    /// there holds other content): `None` when another message holds it.
    pub(crate) fn claim(&self, id: &Identity) -> io::Result<Option<Claim>> {
        let key = id.key();
        if !self.lock().insert(key.clone()) {
            return Ok(None);
        }
        let claim = Claim {
            part: self.dir.join(format!("{key}.part")),
            meta: self.dir.join(format!("{key}.meta")),
            key,
            partials: self.clone(),
            file: None,
            held: 0,
            size: id.size,
            status: Held::Nothing,
        };
        claim.open(id).map(Some)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
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

    /// Removes the folder if it is empty.
    fn tidy(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Removes the partials (not claimed now) whose last write is older than the time
    /// to live, and anything else in the folder as old; says what it freed.
    pub fn sweep(&self) -> Swept {
        let mut swept = Swept::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return swept;
        };
        let now = SystemTime::now();
        let busy = self.lock().clone();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.split('.').next().unwrap_or("");
            if busy.contains(key) {
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
            if std::fs::remove_file(&path).is_ok() && name.ends_with(".part") {
                swept.count += 1;
                swept.bytes += meta.len();
            }
        }
        self.tidy();
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
    key: String,
    part: PathBuf,
    meta: PathBuf,
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
        let same = std::fs::read_to_string(&self.meta).ok();
        let part = std::fs::symlink_metadata(&self.part).ok();
        match (&same, &part) {
            (Some(meta), Some(part)) if *meta == id.meta() && part.is_file() => {
                let file = OpenOptions::new().read(true).write(true).open(&self.part)?;
                // Cut to a whole block (unless complete), so that the rest can be
                // written past the page cache like any large file.
                let len = file.metadata()?.len().min(id.size);
                self.held = match len == id.size {
                    true => len,
                    false => len - len % BLOCK,
                };
                file.set_len(self.held)?;
                self.status = match self.held {
                    0 => Held::Nothing,
                    _ => Held::Prefix,
                };
                self.file = Some(file);
                return Ok(self);
            }
            (Some(_), _) | (_, Some(_)) => {
                self.status = Held::Changed;
                let _ = std::fs::remove_file(&self.part);
            }
            (None, None) => {}
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&self.part)?;
        let temp = self.partials.dir.join(format!("{}.meta.new", self.key));
        std::fs::write(&temp, id.meta())?;
        std::fs::rename(&temp, &self.meta)?;
        self.file = Some(file);
        Ok(self)
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
        let _ = std::fs::remove_file(&self.meta);
        self.partials.tidy();
    }

    /// The file landed under its name: its sidecar goes, and the folder if empty.
    pub(crate) fn landed(self) {
        let _ = std::fs::remove_file(&self.meta);
        self.partials.tidy();
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // A partial that holds nothing (the message was refused before its payload, or
        // its file was renamed away or lost) is not worth keeping.
        let empty = std::fs::symlink_metadata(&self.part).map_or(true, |m| m.len() == 0);
        if empty {
            let _ = std::fs::remove_file(&self.part);
            let _ = std::fs::remove_file(&self.meta);
            self.partials.tidy();
        }
        self.partials.lock().remove(&self.key);
    }
}

/// A message received into its partial: writes append to it; dropped without
/// [`PartialSink::into_pending`] (the transfer failed), the partial stays for the
/// next try.
#[derive(Debug)]
pub(crate) struct PartialSink {
    pending: Option<Pending>,
}

impl PartialSink {
    /// The pending file to commit: renamed from the partial to its final name.
    pub(crate) fn into_pending(mut self) -> Pending {
        self.pending.take().expect("taken once")
    }
}

impl Write for PartialSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.as_mut().expect("not taken").write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.pending
            .as_mut()
            .expect("not taken")
            .write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pending.as_mut().expect("not taken").flush()
    }
}

impl Drop for PartialSink {
    fn drop(&mut self) {
        // A pending file removes its named temporary when dropped; the partial is
        // kept for the next try instead.
        if let Some(pending) = &mut self.pending {
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
        // The source changed: the old partial goes.
        let claim = partials.claim(&identity(100, 8)).unwrap().unwrap();
        assert_eq!((claim.status, claim.held), (Held::Changed, 0));
        let mut sink = store.begin_partial(Path::new("d/x.bin"), &claim).unwrap();
        sink.write_all(&[3; 100]).unwrap();
        let path = sink.into_pending().commit().unwrap();
        claim.landed();
        assert_eq!(std::fs::read(&path).unwrap(), [3; 100]);
        assert!(!store.root().join(FOLDER).exists(), "the empty folder goes");
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
                bytes: 10
            }
        );
        assert!(!store.root().join(FOLDER).exists());
    }
}
