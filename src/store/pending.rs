//! A file being received: written where no one sees it, and given its final name only
//! by [`Pending::commit`], once it is complete, verified and synced.
//!
//! Two ways to get there, with the same result:
//!
//! - **Nameless** (Linux, where the filesystem has `O_TMPFILE`): an inode with no name,
//!   invisible in the directory and gone by itself if the process dies. `linkat` gives
//!   it its name, and never replaces an existing one.
//! - **Portable** (macOS, Windows, a Linux filesystem without `O_TMPFILE`, and any
//!   Linux with `QP2P_PORTABLE_STORE=1`, see [`super::Store::new`]): a hidden named
//!   temporary `.NAME.qp2p-RANDOM.part` in the same directory, created exclusively (it
//!   never opens what someone put there), then renamed in one step that never replaces:
//!   `renameat2(RENAME_NOREPLACE)` on Linux, `renamex_np(RENAME_EXCL)` on macOS,
//!   `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING` on Windows; where the filesystem
//!   has none of these, a hard link (which never replaces either) and an unlink. A
//!   failed transfer removes it (on drop); a crash leaves it behind, named as ours.
//!
//! What could go wrong, and how it is prevented: a partial file mistaken for a complete
//! one (it has no final name until it is complete and synced); a file of the same name
//! appearing meanwhile, from another transfer or another program (no call used here
//! replaces a name: on `AlreadyExists` the next name, `name.1.ext`, `name.2.ext`, …, is
//! tried, so "never overwrite" holds even against a racing writer); with `--overwrite`,
//! a reader seeing half of the old file and half of the new one (the complete file is
//! renamed over the old one, which is atomic). Every [`WRITEBACK_EVERY`] bytes are
//! handed to the disk as they arrive, so the sync at the end waits for the last few MiB,
//! not for the whole file: without it, a 1 GiB file sat in the page cache until the end
//! and its sync took about 0.5 s, a fifth of the whole loopback transfer.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::direct::WriteBehind;
use super::names::numbered;
use super::sys;

/// A file being received starts writing back to disk after each this many bytes.
pub(crate) const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Opens the file to receive `name` into in `dir`: nameless where possible (and
/// `portable` is off), else a hidden named temporary, whose path is returned with it.
pub(super) fn open(
    dir: &Path,
    name: &OsStr,
    portable: bool,
) -> io::Result<(File, Option<PathBuf>)> {
    if !portable {
        match sys::open_tmpfile(dir) {
            Ok(file) => return Ok((file, None)),
            Err(e) if !sys::tmpfile_unsupported(&e) => return Err(e),
            Err(_) => {}
        }
    }
    let (file, path) = open_named_temp(dir, name)?;
    Ok((file, Some(path)))
}

/// Creates `.NAME.qp2p-RANDOM.part` in `dir`, never opening an existing file. Its mode
/// is the one a nameless file gets (0666 less the umask), so both ways leave the same
/// file.
fn open_named_temp(dir: &Path, name: &OsStr) -> io::Result<(File, PathBuf)> {
    for _ in 0..16 {
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(format!(".qp2p-{:08x}.part", rand::random::<u32>()));
        let path = dir.join(temp);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "could not find a free temporary name",
    ))
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replace anything:
/// the platform's exclusive rename, else a hard link and an unlink.
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    match sys::rename_no_replace(from, to) {
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        result => result,
    }
}

/// A file being received: invisible until [`Pending::commit`].
#[derive(Debug)]
pub(crate) struct Pending {
    pub(super) file: File,
    pub(super) dir: PathBuf,
    pub(super) file_name: OsString,
    /// The named temporary, when the file is not nameless.
    pub(super) temp: Option<PathBuf>,
    pub(super) overwrite: bool,
    /// Bytes written so far.
    pub(super) written: u64,
    /// Bytes handed to the disk so far.
    pub(super) written_back: u64,
    /// The direct writer, for a large file on a filesystem that allows it.
    pub(super) behind: Option<WriteBehind>,
    /// Counts the file as being received until it is queued for commit (or dropped).
    pub(super) receiving: Option<super::group::Receiving>,
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(behind) = &mut self.behind {
            let n = behind.write(buf)?;
            self.written += n as u64;
            return Ok(n);
        }
        let n = self.file.write(buf)?;
        self.wrote(n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if self.behind.is_some() {
            // Copied into the aligned buffer one slice at a time: no system call saved
            // by taking them together.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.write(first);
        }
        let n = self.file.write_vectored(bufs)?;
        self.wrote(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Pending {
    /// Counts `n` more bytes written and starts writing back each full
    /// [`WRITEBACK_EVERY`] without waiting for it. Only a hint to the kernel: a failure
    /// here shows up in the sync before the file is named.
    fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        let pending = self.written - self.written_back;
        if pending < WRITEBACK_EVERY {
            return;
        }
        sys::start_writeback(&self.file, self.written_back, pending);
        self.written_back = self.written;
    }

    /// Makes the file durable and gives it its final name; returns the path. One file
    /// alone (the tests); received files go through the group commit.
    #[cfg(test)]
    pub(crate) fn commit(mut self) -> io::Result<PathBuf> {
        self.finish_writes()?;
        self.file.sync_all()?;
        let path = self.give_name()?;
        sync_dir(&self.dir);
        Ok(path)
    }

    /// Waits for the direct writer, if there is one, to have written everything.
    pub(super) fn finish_writes(&mut self) -> io::Result<()> {
        if let Some(behind) = self.behind.take() {
            behind.finish(&self.file)?;
        }
        Ok(())
    }

    /// Gives the durable file its final name (the first free one, or the name itself
    /// with `--overwrite`); the directory is not synced yet.
    pub(super) fn give_name(&mut self) -> io::Result<PathBuf> {
        if self.overwrite {
            self.replace()
        } else {
            self.name_new()
        }
    }

    /// Names the file with the first free name: `name`, `name.1.ext`, ...
    fn name_new(&mut self) -> io::Result<PathBuf> {
        for n in 0..10_000u32 {
            let name = if n == 0 {
                self.file_name.clone()
            } else {
                numbered(&self.file_name, n)
            };
            let target = self.dir.join(&name);
            match self.name(&target) {
                Ok(()) => return Ok(target),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "10000 files of that name exist already",
        ))
    }

    /// Gives the file a temporary name (unless it has one) and renames it over the
    /// final one.
    fn replace(&mut self) -> io::Result<PathBuf> {
        let target = self.dir.join(&self.file_name);
        let staging = match self.temp.take() {
            Some(temp) => temp,
            None => loop {
                let candidate = self
                    .dir
                    .join(format!(".qp2p-{:016x}.part", rand::random::<u64>()));
                match sys::link_open_file(&self.file, &candidate) {
                    Ok(()) => break candidate,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            },
        };
        if let Err(e) = std::fs::rename(&staging, &target) {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
        Ok(target)
    }

    /// Gives the file (nameless or the named temporary) the name `target`; fails with
    /// `AlreadyExists` rather than replace anything.
    fn name(&mut self, target: &Path) -> io::Result<()> {
        match &self.temp {
            Some(temp) => {
                rename_new(temp, target)?;
                self.temp = None;
                Ok(())
            }
            None => sys::link_open_file(&self.file, target),
        }
    }
}

/// Makes the names in `dir` durable; directories cannot be opened (nor synced) this
/// way on Windows, where the rename writes through instead.
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            let _ = std::fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, DIRECT_FROM};
    use super::*;

    #[test]
    fn a_file_being_received_is_written_back_as_it_grows_and_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        let mut pending = store.begin(Path::new("big"), None).unwrap();
        let block = vec![5u8; 1024 * 1024];
        for _ in 0..20 {
            pending.write_all(&block).unwrap();
        }
        assert_eq!(pending.written, 20 * 1024 * 1024);
        // Handed to the disk at 8 and 16 MiB; the last 4 MiB wait for the commit's sync.
        assert_eq!(pending.written_back, 2 * WRITEBACK_EVERY);
        let path = pending.commit().unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), 20 * 1024 * 1024);
    }

    /// A large file goes past the page cache in aligned blocks from a thread of its
    /// own; pieces of odd sizes and an unaligned tail land byte for byte.
    #[test]
    fn a_large_file_is_written_directly_and_lands_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        let size = DIRECT_FROM as usize + 12_345;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
        let mut pending = store.begin(Path::new("large"), Some(size as u64)).unwrap();
        let probe = tempfile::tempfile_in(dir.path()).unwrap();
        if sys::set_direct(&probe, true).is_ok() {
            assert!(
                pending.behind.is_some(),
                "direct writes work here but were not used"
            );
        } else {
            eprintln!("no direct writes on this filesystem: written through the page cache");
        }
        for piece in data.chunks(100_003) {
            pending.write_all(piece).unwrap();
        }
        assert_eq!(pending.written, size as u64);
        let path = pending.commit().unwrap();
        assert!(std::fs::read(path).unwrap() == data, "content differs");
    }

    #[test]
    fn named_temporaries_are_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let (file, path) = open_named_temp(dir.path(), OsStr::new("x")).unwrap();
        let p = Pending {
            file,
            dir: dir.path().to_path_buf(),
            file_name: "x".into(),
            temp: Some(path.clone()),
            overwrite: false,
            written: 0,
            written_back: 0,
            behind: None,
            receiving: None,
        };
        assert!(path.exists());
        drop(p);
        assert!(!path.exists());
    }

    /// The portable way's rename never replaces a name, and leaves the temporary where
    /// it was when it refuses.
    #[test]
    fn the_exclusive_rename_refuses_an_existing_name() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::write(&from, b"new").unwrap();
        std::fs::write(&to, b"old").unwrap();
        let e = rename_new(&from, &to).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&to).unwrap(), b"old");
        assert_eq!(std::fs::read(&from).unwrap(), b"new");
        std::fs::remove_file(&to).unwrap();
        rename_new(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new");
        assert!(!from.exists());
    }

    /// Where the platform has an exclusive rename, it is what the portable way uses
    /// (not the link-and-unlink fallback).
    #[cfg(any(target_os = "linux", target_os = "macos", windows))]
    #[test]
    fn the_platform_has_an_exclusive_rename() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::write(&from, b"x").unwrap();
        match sys::rename_no_replace(&from, &to) {
            Ok(()) => assert!(to.exists() && !from.exists()),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                eprintln!("this filesystem has no exclusive rename: {e}")
            }
            Err(e) => panic!("{e}"),
        }
    }
}
