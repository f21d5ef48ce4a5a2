//! Where received files land: safe names, invisible partial files, no silent overwrite.
//!
//! The parts, one concern each:
//!
//! - `names`: [`sanitize`] reduces a name from the wire to a relative path whose every
//!   component is a plain file name, and numbers the alternatives to a taken name.
//! - this file: the [`Store`], a root directory; it creates the parent directories of a
//!   file inside the root and says how much room is left.
//! - `pending`: a `Pending` file, invisible until complete, then named atomically
//!   without ever replacing an existing name (unless `--overwrite`).
//! - `partial`: [`Partials`], what a receiver keeps of a transfer that broke off, in a
//!   hidden folder ([`FOLDER`]), for the sender's next try to resume.
//! - `group`: the [`Committer`], which makes files that complete together durable
//!   together (one sync per batch, each directory synced once).
//! - `direct`: the write-behind engine that writes a large file past the page cache.
//! - `sys`: every call into the operating system that the standard library does not
//!   make, each behind `cfg` for Linux, macOS and Windows, and the only `unsafe` here.
//!
//! What could go wrong, and how it is prevented:
//!
//! - A sender naming `../../etc/passwd`: every `..`, `.` and empty component is
//!   dropped, `/` and `\` both separate, control and bidirectional characters are
//!   replaced ([`sanitize`]); a name with nothing left is refused.
//! - A symlink planted inside the root pointing out of it, or a file where a directory
//!   is expected: `Store::begin` walks the parents one component at a time, never
//!   following a symlink and refusing anything that is not a directory.
//! - A partial file mistaken for a complete one: it has no name (or a hidden temporary
//!   one) until it is complete, verified and synced (`Pending::commit`).
//! - An existing file overwritten, even by a racing writer: the final name is given by
//!   a call that never replaces a name (`linkat`, or an exclusive rename); on
//!   `AlreadyExists` the next name `name.1.ext` is tried. With `--overwrite` the
//!   complete file is renamed over the old one, which is atomic.
//! - Debris after a crash: a nameless `O_TMPFILE` file leaves none; the portable named
//!   temporary (`.NAME.qp2p-RANDOM.part`) is removed when a transfer fails, but a crash
//!   leaves it.
//! - The disk filling up: `Store::free_space` lets the listener refuse a message
//!   whose declared length does not fit before a byte is written; one that fills the
//!   disk anyway fails on `ENOSPC`, and its invisible file goes with it.
//!
//! The portable way (a hidden named temporary and an exclusive rename) is what macOS and
//! Windows use. Linux uses it where the filesystem has no `O_TMPFILE`, and everywhere
//! when `QP2P_PORTABLE_STORE=1` is set (read once), so that it is tested on Linux too.

mod direct;
mod group;
mod names;
mod partial;
mod pending;
mod sys;

use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

pub(crate) use direct::DIRECT_FROM;
pub use group::{Committer, Receiving, GATHER, SYNCFS_FROM};
pub use names::{sanitize, MAX_COMPONENT, MAX_DEPTH};
pub(crate) use partial::{Claim, Identity, PartialSink, STALL};
pub use partial::{Partials, Swept, DEFAULT_TTL, FOLDER};
pub(crate) use pending::Pending;

/// Whether `QP2P_PORTABLE_STORE=1` asks for the portable way on Linux too (read once).
fn portable_from_env() -> bool {
    static PORTABLE: OnceLock<bool> = OnceLock::new();
    *PORTABLE.get_or_init(|| std::env::var_os("QP2P_PORTABLE_STORE").is_some_and(|v| v == "1"))
}

/// The directory received files land in.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    overwrite: bool,
    /// Receive into a hidden named temporary even where nameless files exist.
    portable: bool,
    /// Commits files in batches; shared by the store's clones.
    committer: Committer,
}

impl Store {
    /// A store rooted at `dir` (created if missing).
    pub fn new(dir: &Path, overwrite: bool) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            root: dir.canonicalize()?,
            overwrite,
            portable: portable_from_env(),
            committer: Committer::default(),
        })
    }

    /// Whether a file can be created in the root: a receiving file is opened and
    /// dropped, as a message would be (a read-only filesystem, a directory without write
    /// permission, a full inode table fail here, at start, instead of at every message).
    pub fn check_writable(&self) -> io::Result<()> {
        let (_file, temp) =
            pending::open(&self.root, std::ffi::OsStr::new("probe"), self.portable)?;
        match temp {
            Some(path) => std::fs::remove_file(path),
            None => Ok(()),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes an unprivileged writer may still use on the root's filesystem (statvfs
    /// `f_bavail`; the part reserved for root is not counted).
    pub(crate) fn free_space(&self) -> io::Result<u64> {
        sys::free_space(&self.root)
    }

    /// Prepares to receive `rel` (a [`sanitize`]d path): parent directories made, an
    /// invisible file opened. A file `expected` to be at least [`DIRECT_FROM`] bytes is
    /// written past the page cache where the filesystem allows it.
    pub(crate) fn begin(&self, rel: &Path, expected: Option<u64>) -> io::Result<Pending> {
        let file_name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty name"))?
            .to_os_string();
        let dir = self.make_parents(rel)?;
        let (file, temp) = pending::open(&dir, &file_name, self.portable)?;
        let behind = match expected {
            Some(len) if len >= DIRECT_FROM => direct::WriteBehind::start(&file),
            _ => None,
        };
        Ok(Pending {
            file,
            dir,
            file_name,
            temp,
            overwrite: self.overwrite,
            written: 0,
            written_back: 0,
            behind,
            receiving: Some(self.committer.receiving()),
        })
    }

    /// Makes `pending` durable under its final name, together with the other files of
    /// this store that complete meanwhile ([`Committer`]); returns its path.
    pub(crate) async fn commit(&self, pending: Pending) -> io::Result<PathBuf> {
        self.committer.commit(pending).await
    }

    /// Counts a file as being received (a batch of commits waits a little for it) until
    /// the guard is handed to [`Store::commit_bytes`] or dropped.
    pub fn receiving(&self) -> Receiving {
        self.committer.receiving()
    }

    /// Writes `data` as the file `rel` (a [`sanitize`]d path) and makes it durable under
    /// its final name, all on the commit thread with the other files of its batch
    /// ([`Committer`]); returns its path. For small files held in memory whole: no
    /// thread hand-off of their own, no file opened by the caller.
    pub async fn commit_bytes(
        &self,
        rel: PathBuf,
        data: Vec<u8>,
        receiving: Receiving,
    ) -> io::Result<PathBuf> {
        let store = self.clone();
        let write = move || {
            let mut pending = store.begin(&rel, Some(data.len() as u64))?;
            pending.receiving = None;
            io::Write::write_all(&mut pending, &data)?;
            Ok(pending)
        };
        self.committer
            .commit_with(group::Content::Write(Box::new(write)), Some(receiving))
            .await
    }

    /// Creates the directories of `rel` under the root, one component at a time,
    /// refusing symlinks and non-directories.
    fn make_parents(&self, rel: &Path) -> io::Result<PathBuf> {
        let mut dir = self.root.clone();
        let Some(parent) = rel.parent() else {
            return Ok(dir);
        };
        for comp in parent.components() {
            let Component::Normal(part) = comp else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "unsafe path component",
                ));
            };
            dir.push(part);
            match std::fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a directory", dir.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match std::fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            // Someone made it meanwhile: check again what it is.
                            if !std::fs::symlink_metadata(&dir)?.is_dir() {
                                return Err(io::Error::new(
                                    io::ErrorKind::AlreadyExists,
                                    format!("{} is not a directory", dir.display()),
                                ));
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A store at `dir` each way: the platform's own and the portable one.
    fn stores(dir: &Path, overwrite: bool) -> [Store; 2] {
        let native = Store {
            portable: false,
            ..Store::new(dir, overwrite).unwrap()
        };
        let portable = Store {
            portable: true,
            ..native.clone()
        };
        [native, portable]
    }

    fn write(store: &Store, rel: &str, data: &[u8]) -> io::Result<PathBuf> {
        let mut p = store.begin(Path::new(rel), Some(data.len() as u64))?;
        p.write_all(data)?;
        p.commit()
    }

    #[test]
    fn pending_files_are_invisible_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        for store in stores(dir.path(), false) {
            let dir = store.root();
            let mut p = store.begin(Path::new("a/b.txt"), None).unwrap();
            p.write_all(b"hello").unwrap();
            let visible = std::fs::read_dir(dir.join("a"))
                .unwrap()
                .filter(|e| {
                    !e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')
                })
                .count();
            assert_eq!(visible, 0, "nothing visible before commit ({store:?})");
            let path = p.commit().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"hello");
            // Dropped without commit: nothing left.
            let mut q = store.begin(Path::new("a/c.txt"), None).unwrap();
            q.write_all(b"partial").unwrap();
            drop(q);
            assert_eq!(std::fs::read_dir(dir.join("a")).unwrap().count(), 1);
            std::fs::remove_dir_all(dir.join("a")).unwrap();
        }
    }

    #[test]
    fn existing_files_are_never_overwritten_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let [native, portable] = stores(dir.path(), false);
        let [over_native, over_portable] = stores(dir.path(), true);
        for (store, over) in [(native, over_native), (portable, over_portable)] {
            let a = write(&store, "f.txt", b"one").unwrap();
            let b = write(&store, "f.txt", b"two").unwrap();
            let c = write(&store, "f.txt", b"three").unwrap();
            assert_eq!(a.file_name().unwrap(), "f.txt");
            assert_eq!(b.file_name().unwrap(), "f.1.txt");
            assert_eq!(c.file_name().unwrap(), "f.2.txt");
            assert_eq!(std::fs::read(&a).unwrap(), b"one");
            let d = write(&over, "f.txt", b"four").unwrap();
            assert_eq!(d, a);
            assert_eq!(std::fs::read(&a).unwrap(), b"four");
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
        }
    }

    /// A file that fails half-way leaves nothing behind, also while its writing thread
    /// still has buffers to write.
    #[test]
    fn a_large_file_dropped_half_way_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        for store in stores(dir.path(), false) {
            let mut pending = store
                .begin(Path::new("half"), Some(2 * DIRECT_FROM))
                .unwrap();
            pending.write_all(&vec![1u8; 5 * 1024 * 1024 + 17]).unwrap();
            drop(pending);
            assert_eq!(std::fs::read_dir(store.root()).unwrap().count(), 0);
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_the_root_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        for store in stores(dir.path(), false) {
            assert!(write(&store, "link/x", b"escape").is_err());
            assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn free_space_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        assert!(store.free_space().unwrap() > 0);
    }
}
