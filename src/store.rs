//! Where received files land: safe names, invisible partial files, no silent overwrite.
//!
//! A name from the wire is a proposal. [`sanitize`] reduces it to a relative path whose
//! every component is a plain file name: no separators, no `.` or `..`, no control
//! characters or bidirectional controls, at most [`MAX_COMPONENT`] bytes. A name with
//! nothing left is refused.
//!
//! [`Store::begin`] creates the parent directories inside the root, refusing to follow a
//! symlink or to pass through anything that is not a directory, then opens the payload
//! file with `O_TMPFILE`: an inode with no name, invisible in the directory and gone by
//! itself if the process dies. [`Pending::commit`] syncs it and links it in under its
//! final name only when it is complete and verified. A file declared at least
//! [`DIRECT_FROM`] bytes long goes past the page cache (`O_DIRECT`, see `WriteBehind`),
//! written by a thread of its own while the next buffer fills: it costs the receiver a
//! fifth less CPU. Other files go through the page cache, and every [`WRITEBACK_EVERY`]
//! bytes are handed to the disk (`sync_file_range`), so the sync at the end waits for
//! the last few MiB, not for the whole file: without it, a 1 GiB file sat in the page
//! cache until the end and its sync took about 0.5 s, a fifth of the whole loopback
//! transfer. `linkat` never replaces an existing
//! name, so "never overwrite" holds even against a racing writer: on `EEXIST` the next
//! name (`name.1.ext`, `name.2.ext`, …) is tried. With `--overwrite` the file is linked
//! under a temporary name and renamed over the old one, which is atomic.
//!
//! Where `O_TMPFILE` is not supported (some filesystems), a hidden temporary
//! `.NAME.qp2p-RANDOM.part` is used instead and removed when the transfer fails (on drop).
//!
//! [`Store::free_space`] tells the listener how much room is left, so that a message
//! whose declared length does not fit is refused before a byte of it is written; one
//! that fills the disk anyway (unknown length, or others writing too) fails on
//! `ENOSPC`, and its invisible file goes with it.
//!
//! What could go wrong: a sender naming `../../etc/passwd` (components dropped), a
//! symlink planted inside the root pointing out of it (refused, never followed), a
//! partial file mistaken for a complete one (no name until verified), a crash leaving
//! debris (`O_TMPFILE` leaves none).

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Component, Path, PathBuf};

/// Longest file name component kept, in bytes (leaves room for a `.N` suffix under the
/// usual 255-byte limit).
pub const MAX_COMPONENT: usize = 200;
/// Deepest directory tree accepted.
pub const MAX_DEPTH: usize = 64;
/// A file being received starts writing back to disk after each this many bytes.
pub const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;
/// A file declared at least this large is written past the page cache (`O_DIRECT`).
pub const DIRECT_FROM: u64 = 16 * 1024 * 1024;
/// Alignment of direct writes: memory, file offset and length (the largest logical
/// block size in common use).
const DIRECT_BLOCK: usize = 4096;
/// One direct write.
const DIRECT_BUFFER: usize = 1024 * 1024;
/// Buffers of a direct write-behind: one being filled, one queued, one being written.
const DIRECT_BUFFERS: usize = 3;
/// Files written directly at once; more go through the page cache, so that many large
/// files arriving together cost no more than this many writer threads and buffers.
const DIRECT_AT_ONCE: usize = 4;

/// Reduces a name from the wire to a safe relative path, or `None` if nothing is left.
pub fn sanitize(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    let mut depth = 0;
    for part in name.split(['/', '\\']) {
        if part.is_empty() || part == "." || part == ".." {
            continue;
        }
        let cleaned: String = part
            .chars()
            .map(|c| {
                if c.is_control() || is_bidi_control(c) {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let cleaned = truncate_component(&cleaned);
        // A component made only of dots is `.` or `..` in disguise after truncation.
        if cleaned.chars().all(|c| c == '.') {
            continue;
        }
        depth += 1;
        if depth > MAX_DEPTH {
            return None;
        }
        out.push(cleaned);
    }
    // Paranoia: what we built must be nothing but normal components.
    let safe = out.components().all(|c| matches!(c, Component::Normal(_)));
    (safe && depth > 0).then_some(out)
}

/// The invisible characters that reorder the text around them (Unicode's bidirectional
/// marks, embeddings, overrides and isolates): a name with U+202E shows
/// `invoice\u{202E}fdp.exe` as `invoiceexe.pdf`, so a listing would lie about what
/// landed.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Cuts a component to [`MAX_COMPONENT`] bytes at a character boundary, keeping a
/// short extension.
fn truncate_component(s: &str) -> String {
    if s.len() <= MAX_COMPONENT {
        return s.to_string();
    }
    let ext = match s.rfind('.') {
        Some(i) if i > 0 && s.len() - i <= 16 => &s[i..],
        _ => "",
    };
    let mut cut = MAX_COMPONENT - ext.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &s[..cut], ext)
}

/// The `n`th alternative to a taken file name: `name.n.ext`, or `name.n`.
fn numbered(name: &OsStr, n: u32) -> OsString {
    let bytes = name.as_bytes();
    let dot = bytes.iter().rposition(|&b| b == b'.').filter(|&i| i > 0);
    let mut out = Vec::with_capacity(bytes.len() + 8);
    match dot {
        Some(i) => {
            out.extend_from_slice(&bytes[..i]);
            out.extend_from_slice(format!(".{n}").as_bytes());
            out.extend_from_slice(&bytes[i..]);
        }
        None => {
            out.extend_from_slice(bytes);
            out.extend_from_slice(format!(".{n}").as_bytes());
        }
    }
    OsString::from(std::ffi::OsStr::from_bytes(&out))
}

/// The directory received files land in.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    overwrite: bool,
}

impl Store {
    /// A store rooted at `dir` (created if missing).
    pub fn new(dir: &Path, overwrite: bool) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            root: dir.canonicalize()?,
            overwrite,
        })
    }

    /// Whether a file can be created in the root: an invisible temporary file is
    /// opened and dropped, as a message would be (a read-only filesystem, a directory
    /// without write permission, a full inode table fail here, at start, instead of at
    /// every message).
    pub fn check_writable(&self) -> io::Result<()> {
        match open_tmpfile(&self.root) {
            Ok(_) => Ok(()),
            Err(e) if tmpfile_unsupported(&e) => {
                let (_, path) = open_named_temp(&self.root, OsStr::new("probe"))?;
                std::fs::remove_file(path)
            }
            Err(e) => Err(e),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes an unprivileged writer may still use on the root's filesystem (statvfs
    /// `f_bavail`; the part reserved for root is not counted).
    pub fn free_space(&self) -> io::Result<u64> {
        let c = cstring(&self.root)?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable memory
        // of the right type, which statvfs fills completely when it returns 0.
        let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so `st` is initialised.
        let st = unsafe { st.assume_init() };
        #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    /// Prepares to receive `rel` (a [`sanitize`]d path): parent directories made, an
    /// invisible file opened. A file `expected` to be at least [`DIRECT_FROM`] bytes is
    /// written past the page cache where the filesystem allows it.
    pub fn begin(&self, rel: &Path, expected: Option<u64>) -> io::Result<Pending> {
        let file_name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty name"))?
            .to_os_string();
        let dir = self.make_parents(rel)?;
        let (file, temp) = match open_tmpfile(&dir) {
            Ok(file) => (file, None),
            Err(e) if tmpfile_unsupported(&e) => {
                let (file, path) = open_named_temp(&dir, &file_name)?;
                (file, Some(path))
            }
            Err(e) => return Err(e),
        };
        let behind = match expected {
            Some(len) if len >= DIRECT_FROM => WriteBehind::start(&file),
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
        })
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

fn tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL) | Some(libc::ENOENT)
    )
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn open_tmpfile(dir: &Path) -> io::Result<File> {
    let c = cstring(dir)?;
    // SAFETY: `c` is a valid NUL-terminated path; the returned descriptor is checked
    // and then owned by the File.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o666 as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly opened descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn open_named_temp(dir: &Path, name: &OsStr) -> io::Result<(File, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    for _ in 0..16 {
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(format!(".qp2p-{:08x}.part", rand::random::<u32>()));
        let path = dir.join(temp);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
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

/// A file being received: invisible until [`Pending::commit`].
#[derive(Debug)]
pub struct Pending {
    file: File,
    dir: PathBuf,
    file_name: OsString,
    /// The named temporary, when `O_TMPFILE` was not available.
    temp: Option<PathBuf>,
    overwrite: bool,
    /// Bytes written so far.
    written: u64,
    /// Bytes handed to the disk so far.
    written_back: u64,
    /// The direct writer, for a large file on a filesystem that allows it.
    behind: Option<WriteBehind>,
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
    /// here shows up in the sync of [`Pending::commit`].
    fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        let pending = self.written - self.written_back;
        if pending < WRITEBACK_EVERY {
            return;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: the descriptor is ours and open; the call only reads the arguments.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                self.written_back as libc::off64_t,
                pending as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.written_back = self.written;
    }

    /// Makes the file durable and gives it its final name; returns the path.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        if let Some(behind) = self.behind.take() {
            behind.finish(&self.file)?;
        }
        self.file.sync_all()?;
        let path = if self.overwrite {
            self.replace()?
        } else {
            self.link_new()?
        };
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(path)
    }

    /// Links the file under the first free name: `name`, `name.1.ext`, ...
    fn link_new(&mut self) -> io::Result<PathBuf> {
        for n in 0..10_000u32 {
            let name = if n == 0 {
                self.file_name.clone()
            } else {
                numbered(&self.file_name, n)
            };
            let target = self.dir.join(&name);
            match self.link_to(&target) {
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

    /// Links the file under a temporary name and renames it over the final one.
    fn replace(&mut self) -> io::Result<PathBuf> {
        let target = self.dir.join(&self.file_name);
        let staging = match self.temp.take() {
            Some(temp) => temp,
            None => loop {
                let candidate = self
                    .dir
                    .join(format!(".qp2p-{:016x}.part", rand::random::<u64>()));
                match self.link_to(&candidate) {
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

    /// Gives the inode (or the named temporary) the name `target`; fails with
    /// `AlreadyExists` rather than replace anything.
    fn link_to(&mut self, target: &Path) -> io::Result<()> {
        if let Some(temp) = &self.temp {
            std::fs::hard_link(temp, target)?;
            std::fs::remove_file(temp)?;
            self.temp = None;
            return Ok(());
        }
        let to = cstring(target)?;
        let proc_path = CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
            .map_err(|_| io::Error::other("fd path"))?;
        // SAFETY: both paths are valid NUL-terminated strings.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc_path.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::AlreadyExists {
            return Err(err);
        }
        // Without /proc: link the descriptor itself (needs CAP_DAC_READ_SEARCH).
        let empty = CString::default();
        // SAFETY: as above; AT_EMPTY_PATH links the open descriptor.
        let rc = unsafe {
            libc::linkat(
                self.file.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Writes a large file past the page cache (`O_DIRECT`), from a thread of its own.
///
/// Through the page cache, a received file costs the receiver a copy into freshly
/// allocated cache pages and their writeback; on this project's test VM that was about
/// 0.5 CPU-s of the 2.2 CPU-s a receiver spends on 1 GiB. Written directly, the data is
/// copied once into an aligned buffer and goes from there to the disk. The write waits
/// for the disk, so it runs on a thread of its own while the next buffer is filled (and
/// hashed, by the caller), and the receiver's pace is set by its CPU, not the disk's
/// latency.
///
/// Direct writes need memory, file offset and length aligned to [`DIRECT_BLOCK`]. Every
/// buffer but the last is a whole [`DIRECT_BUFFER`]; the last one's unaligned tail goes
/// through the page cache at [`WriteBehind::finish`]. At most [`DIRECT_AT_ONCE`] files
/// are written this way at once (each has a thread and three 1 MiB buffers); the others
/// go through the page cache. A filesystem that takes the flag
/// but refuses the write (`EINVAL`), or a short write that leaves the offset unaligned,
/// turns the flag off and the rest goes through the page cache as usual.
#[derive(Debug)]
struct WriteBehind {
    /// The buffer being filled.
    filling: Aligned,
    /// Full buffers to the writing thread; `None` once it has failed.
    to_disk: Option<std::sync::mpsc::SyncSender<Aligned>>,
    /// Written buffers back from it, to be filled again.
    back: std::sync::mpsc::Receiver<Aligned>,
    /// Buffers made so far (at most [`DIRECT_BUFFERS`]).
    made: usize,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    /// One of the [`DIRECT_AT_ONCE`] places, given back when this is dropped.
    _turn: Turn<'static>,
}

/// A count of places, at most `limit` taken at once.
#[derive(Debug)]
struct Turns {
    taken: std::sync::atomic::AtomicUsize,
    limit: usize,
}

impl Turns {
    const fn new(limit: usize) -> Self {
        Self {
            taken: std::sync::atomic::AtomicUsize::new(0),
            limit,
        }
    }

    /// A place, or `None` when all are taken.
    fn take(&self) -> Option<Turn<'_>> {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        self.taken
            .fetch_update(AcqRel, Acquire, |n| (n < self.limit).then_some(n + 1))
            .ok()
            .map(|_| Turn(self))
    }
}

/// A place taken from [`Turns`], given back when dropped.
#[derive(Debug)]
struct Turn<'a>(&'a Turns);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0
            .taken
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl WriteBehind {
    /// Turns on `O_DIRECT` for `file` and starts the writing thread; `None` where
    /// either is not possible (the file is then written through the page cache).
    fn start(file: &File) -> Option<Self> {
        static TURNS: Turns = Turns::new(DIRECT_AT_ONCE);
        let turn = TURNS.take()?;
        set_direct(file, true).ok()?;
        let undo = || {
            let _ = set_direct(file, false);
        };
        let Ok(clone) = file.try_clone() else {
            undo();
            return None;
        };
        let (to_disk, full) = std::sync::mpsc::sync_channel::<Aligned>(1);
        let (give_back, back) = std::sync::mpsc::channel::<Aligned>();
        let thread = std::thread::Builder::new()
            .name("qp2p-write".into())
            .spawn(move || {
                let mut direct = true;
                for mut buffer in full {
                    write_block(&clone, buffer.data(), &mut direct)?;
                    buffer.len = 0;
                    let _ = give_back.send(buffer);
                }
                Ok(())
            });
        let Ok(thread) = thread else {
            undo();
            return None;
        };
        Some(Self {
            filling: Aligned::new(),
            to_disk: Some(to_disk),
            back,
            made: 1,
            thread: Some(thread),
            _turn: turn,
        })
    }

    /// Takes as much of `buf` as fits the buffer being filled, handing it to the
    /// writing thread when it is full.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.filling.push(buf);
        if self.filling.len == DIRECT_BUFFER {
            let next = self.empty_buffer()?;
            let full = std::mem::replace(&mut self.filling, next);
            self.ship(full)?;
        }
        Ok(n)
    }

    /// A buffer to fill: one given back, a new one while fewer than
    /// [`DIRECT_BUFFERS`] exist, else the next one the thread is done with.
    fn empty_buffer(&mut self) -> io::Result<Aligned> {
        if let Ok(buffer) = self.back.try_recv() {
            return Ok(buffer);
        }
        if self.made < DIRECT_BUFFERS {
            self.made += 1;
            return Ok(Aligned::new());
        }
        match self.back.recv() {
            Ok(buffer) => Ok(buffer),
            Err(_) => Err(self.failure()),
        }
    }

    fn ship(&mut self, buffer: Aligned) -> io::Result<()> {
        let sent = match &self.to_disk {
            Some(to_disk) => to_disk.send(buffer).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.failure())
        }
    }

    /// The writing thread's error, once it has stopped.
    fn failure(&mut self) -> io::Error {
        match self.join() {
            Err(e) => e,
            Ok(()) => io::Error::other("the disk writer stopped"),
        }
    }

    /// Tells the writing thread there is no more, and waits until it has written what
    /// it has; its error, if any.
    fn join(&mut self) -> io::Result<()> {
        self.to_disk = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the disk writer panicked")),
            None => Ok(()),
        }
    }

    /// Writes what is left: the aligned part of the last buffer directly, its tail
    /// through the page cache; waits for the thread and returns its error, if any.
    fn finish(mut self, file: &File) -> io::Result<()> {
        let aligned = self.filling.len - self.filling.len % DIRECT_BLOCK;
        let tail = self.filling.data()[aligned..].to_vec();
        self.filling.len = aligned;
        if aligned > 0 {
            let last = std::mem::replace(&mut self.filling, Aligned::empty());
            self.ship(last)?;
        }
        self.join()?;
        set_direct(file, false)?;
        (&*file).write_all(&tail)
    }
}

/// A [`DIRECT_BUFFER`] whose start is aligned to [`DIRECT_BLOCK`].
#[derive(Debug)]
struct Aligned {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new() -> Self {
        let bytes = vec![0u8; DIRECT_BUFFER + DIRECT_BLOCK];
        let start = bytes.as_ptr().align_offset(DIRECT_BLOCK);
        Self {
            bytes,
            start,
            len: 0,
        }
    }

    fn empty() -> Self {
        Self {
            bytes: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    /// Appends as much of `data` as fits; returns how much.
    fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(DIRECT_BUFFER - self.len);
        let at = self.start + self.len;
        self.bytes[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

/// Writes all of `data`; falls back to the page cache for good (`direct` turned off)
/// when a direct write is refused or leaves the file offset unaligned.
fn write_block(file: &File, data: &[u8], direct: &mut bool) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        match (&*file).write(&data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if *direct && e.raw_os_error() == Some(libc::EINVAL) => {
                set_direct(file, false)?;
                *direct = false;
            }
            Err(e) => return Err(e),
        }
        if *direct && done % DIRECT_BLOCK != 0 {
            set_direct(file, false)?;
            *direct = false;
        }
    }
    Ok(())
}

/// Turns `O_DIRECT` on or off for the open file (shared by its clones).
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, reading and setting its status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
    use super::*;

    fn s(name: &str) -> Option<String> {
        sanitize(name).map(|p| p.to_string_lossy().into_owned())
    }

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
        if set_direct(&probe, true).is_ok() {
            assert!(
                pending.behind.is_some(),
                "O_DIRECT works here but was not used"
            );
        } else {
            eprintln!("no O_DIRECT on this filesystem: written through the page cache");
        }
        for piece in data.chunks(100_003) {
            pending.write_all(piece).unwrap();
        }
        assert_eq!(pending.written, size as u64);
        let path = pending.commit().unwrap();
        assert!(std::fs::read(path).unwrap() == data, "content differs");
    }

    /// Places are limited, and come back when given up.
    #[test]
    fn direct_writers_are_limited() {
        let turns = Turns::new(2);
        let a = turns.take().unwrap();
        let _b = turns.take().unwrap();
        assert!(turns.take().is_none(), "a third place");
        drop(a);
        assert!(turns.take().is_some(), "the place did not come back");
    }

    /// A file that fails half-way leaves nothing behind, also while its writing thread
    /// still has buffers to write.
    #[test]
    fn a_large_file_dropped_half_way_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        let mut pending = store
            .begin(Path::new("half"), Some(2 * DIRECT_FROM))
            .unwrap();
        pending
            .write_all(&vec![1u8; 5 * DIRECT_BUFFER + 17])
            .unwrap();
        drop(pending);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn hostile_names_are_reduced_or_refused() {
        assert_eq!(s("../../x").as_deref(), Some("x"));
        assert_eq!(s("/etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(s("a/../../b").as_deref(), Some("a/b"));
        assert_eq!(s("..\\..\\win.ini").as_deref(), Some("win.ini"));
        assert_eq!(s("a\u{1}b\nc").as_deref(), Some("a_b_c"));
        assert_eq!(
            s("invoice\u{202E}fdp.exe").as_deref(),
            Some("invoice_fdp.exe"),
            "a right-to-left override would show this as invoiceexe.pdf"
        );
        assert_eq!(s("a\u{2066}b\u{2069}\u{200F}c").as_deref(), Some("a_b__c"));
        assert_eq!(s("naïve résumé.txt").as_deref(), Some("naïve résumé.txt"));
        assert_eq!(s(".."), None);
        assert_eq!(s(""), None);
        assert_eq!(s("/./../"), None);
        assert_eq!(s(".hidden").as_deref(), Some(".hidden"));
        assert_eq!(s("...").as_deref(), None);
    }

    #[test]
    fn long_components_are_cut_keeping_the_extension() {
        let long = format!("{}.txt", "n".repeat(296));
        let cut = s(&long).unwrap();
        assert_eq!(cut.len(), MAX_COMPONENT);
        assert!(cut.ends_with(".txt"));
        let multibyte = "é".repeat(150);
        let cut = s(&multibyte).unwrap();
        assert!(cut.len() <= MAX_COMPONENT);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn too_deep_trees_are_refused() {
        assert!(sanitize(&"d/".repeat(MAX_DEPTH)).is_some());
        assert!(sanitize(&"d/".repeat(MAX_DEPTH + 1)).is_none());
    }

    #[test]
    fn numbered_names() {
        assert_eq!(numbered(OsStr::new("f.txt"), 1), "f.1.txt");
        assert_eq!(numbered(OsStr::new("f"), 2), "f.2");
        assert_eq!(numbered(OsStr::new(".bashrc"), 1), ".bashrc.1");
    }

    fn write(store: &Store, rel: &str, data: &[u8]) -> io::Result<PathBuf> {
        let mut p = store.begin(Path::new(rel), Some(data.len() as u64))?;
        p.write_all(data)?;
        p.commit()
    }

    #[test]
    fn pending_files_are_invisible_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        let mut p = store.begin(Path::new("a/b.txt"), None).unwrap();
        p.write_all(b"hello").unwrap();
        let listed: Vec<_> = std::fs::read_dir(dir.path().join("a")).unwrap().collect();
        assert!(listed.is_empty(), "nothing visible before commit");
        let path = p.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        // Dropped without commit: nothing left.
        let mut q = store.begin(Path::new("a/c.txt"), None).unwrap();
        q.write_all(b"partial").unwrap();
        drop(q);
        assert_eq!(std::fs::read_dir(dir.path().join("a")).unwrap().count(), 1);
    }

    #[test]
    fn existing_files_are_never_overwritten_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        let a = write(&store, "f.txt", b"one").unwrap();
        let b = write(&store, "f.txt", b"two").unwrap();
        assert_eq!(a.file_name().unwrap(), "f.txt");
        assert_eq!(b.file_name().unwrap(), "f.1.txt");
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        let over = Store::new(dir.path(), true).unwrap();
        let c = write(&over, "f.txt", b"three").unwrap();
        assert_eq!(c, a);
        assert_eq!(std::fs::read(&a).unwrap(), b"three");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn symlinks_inside_the_root_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        assert!(write(&store, "link/x", b"escape").is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn free_space_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), false).unwrap();
        assert!(store.free_space().unwrap() > 0);
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
        };
        assert!(path.exists());
        drop(p);
        assert!(!path.exists());
    }
}
