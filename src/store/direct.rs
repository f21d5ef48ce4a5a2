//! The direct write-behind engine: a large file written past the page cache from a
//! thread of its own.
//!
//! What could go wrong, and how it is prevented: a direct write needs its memory, file
//! offset and length aligned, and a misaligned one fails (`EINVAL`) or, worse, would
//! be silently slower; every buffer is allocated aligned to [`DIRECT_BLOCK`] and all but
//! the last are whole [`DIRECT_BUFFER`]s, the last one's unaligned tail goes through the
//! page cache, and a filesystem that refuses direct writes anyway turns them off for
//! the rest of the file. Many large files at once could cost a thread and three
//! buffers each: at most [`DIRECT_AT_ONCE`] are written directly, the others through
//! the page cache. A writing thread that fails or panics stops taking buffers; its
//! error is what the next write or the commit returns, so nothing is lost silently.
//! A transfer dropped half-way drops the sender of the queue: the thread writes what
//! it has and stops, and the file it wrote into has no name.
//!
//! Where the platform has no direct writes (`sys::set_direct`: `F_NOCACHE` stands in
//! on macOS, Windows has none), [`WriteBehind::start`] returns `None` and the file is
//! written through the page cache like a small one.

use std::fs::File;
use std::io::{self, Write};

use super::sys;

/// A file declared at least this large is written past the page cache (`O_DIRECT`).
pub(crate) const DIRECT_FROM: u64 = 16 * 1024 * 1024;
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
pub(super) struct WriteBehind {
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
    pub(super) fn start(file: &File) -> Option<Self> {
        static TURNS: Turns = Turns::new(DIRECT_AT_ONCE);
        let turn = TURNS.take()?;
        sys::set_direct(file, true).ok()?;
        let undo = || {
            let _ = sys::set_direct(file, false);
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
    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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
    pub(super) fn finish(mut self, file: &File) -> io::Result<()> {
        let aligned = self.filling.len - self.filling.len % DIRECT_BLOCK;
        let tail = self.filling.data()[aligned..].to_vec();
        self.filling.len = aligned;
        if aligned > 0 {
            let last = std::mem::replace(&mut self.filling, Aligned::empty());
            self.ship(last)?;
        }
        self.join()?;
        sys::set_direct(file, false)?;
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
            Err(e) if *direct && sys::direct_write_refused(&e) => {
                sys::set_direct(file, false)?;
                *direct = false;
            }
            Err(e) => return Err(e),
        }
        if *direct && done % DIRECT_BLOCK != 0 {
            sys::set_direct(file, false)?;
            *direct = false;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

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

    /// Pieces of odd sizes and an unaligned tail land byte for byte, in order, through
    /// the writing thread.
    #[test]
    fn pieces_of_any_size_land_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = tempfile::tempfile_in(dir.path()).unwrap();
        let data: Vec<u8> = (0..3 * DIRECT_BUFFER + 12_345)
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let Some(mut behind) = WriteBehind::start(&file) else {
            eprintln!("no direct writes here: nothing to test");
            return;
        };
        for mut piece in data.chunks(100_003) {
            while !piece.is_empty() {
                let n = behind.write(piece).unwrap();
                piece = &piece[n..];
            }
        }
        behind.finish(&file).unwrap();
        let mut back = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut back).unwrap();
        assert!(back == data, "content differs");
    }
}
