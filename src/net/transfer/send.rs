//! The sender's half: a message's header and payload onto a stream, and the
//! receiver's answer checked against what was read.
//!
//! What could go wrong, and how it is prevented:
//! - *A source that changes while being sent* (a file being written): the sender stops
//!   at the declared length and fails the message if the file ended early or grew.
//! - *Sending a duplicate in full*: a receiver that already stored the message id acks
//!   at once and stops the stream; the sender stops sending and only finishes hashing
//!   its source to compare.
//! - *Memory churn*: each chunk read is memory the stream holds until the peer
//!   acknowledges it. Fresh for every chunk, it cost the reading thread a page fault
//!   and a zeroed page per 4 KiB (and the network task the unmapping); a message's
//!   chunk buffers come back to it ([`Buffers`]) once the stream lets go of them, at
//!   most [`KEPT`] of them waiting, so memory stays what is in flight.

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use quinn::{RecvStream, SendStream, WriteError};
use tokio::sync::mpsc;

use super::super::digest::{Digest, Hasher};
use super::super::endpoint::classify;
use super::super::framing::{self, AckStatus, ErrorCode, Header};
use super::{resume, Mode, SendError, CHUNK, DEPTH, INLINE};

/// What the sender knows after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Bytes of payload read from the source.
    pub bytes: u64,
    /// The digest of the payload, in the header's algorithm.
    pub digest: Digest,
    /// The receiver had stored this message id before.
    pub duplicate: bool,
    /// The receiver already held this content under the name (`--skip-same`): the
    /// payload was not sent.
    pub present: bool,
    /// The name the receiver stored it under (`big.1.bin` when `big.bin` was taken),
    /// relative to its directory, when it says (not for stdout, nor `--uni`).
    pub stored_as: Option<String>,
    /// The bytes at the file's start that were not sent because the receiver held
    /// them from a try that broke off (resume); 0 when it was sent whole.
    pub resumed_from: u64,
}

/// Sends one message on a new stream of `conn`: header, then `source` to its end.
///
/// `source` is read on a blocking thread; `progress` is called with the byte count of
/// each chunk handed to the stream. Not cancel-safe in the sense that a dropped future
/// leaves a half-sent stream; the stream is reset when dropped, so the receiver stores
/// nothing.
pub async fn send_message(
    conn: &quinn::Connection,
    header: &Header,
    source: Source,
    mode: Mode,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Sent, SendError> {
    let (send, recv) = match mode {
        Mode::Bidi => {
            let (s, r) = conn
                .open_bi()
                .await
                .map_err(|e| SendError::Connection(classify(e)))?;
            (s, Some(r))
        }
        Mode::Uni => (
            conn.open_uni()
                .await
                .map_err(|e| SendError::Connection(classify(e)))?,
            None,
        ),
    };
    // quinn finishes a send stream that is dropped: a cancelled send (Ctrl-C, the
    // future dropped) would look like a complete message of unknown length. The guard
    // resets it instead unless `send_on` finished it.
    let mut send = CancelOnDrop(send);
    let result = send_on(&mut send.0, recv, header, source, progress)
        .await
        .map_err(|e| match (e, header.digest) {
            // A listener that predates version 2 headers refuses the version before it
            // looks at anything else (the kind of every message is one it knows).
            (SendError::Refused(code), Some(algorithm))
                if code == ErrorCode::Unsupported.varint() =>
            {
                SendError::OlderPeer(algorithm)
            }
            (e, _) => e,
        });
    match &result {
        Err(_) => {
            let _ = send.0.reset(ErrorCode::Cancelled.varint());
        }
        Ok(sent) if sent.duplicate => {
            // The receiver stopped the stream, but what was sent of it may still be in
            // flight, filling the congestion window; quinn-proto 0.11.19 sends no
            // CONNECTION_CLOSE past a full window (quinn-rs/quinn#2785), so closing now
            // would leave the receiver waiting for its idle timeout. The peer's acks
            // drain the window within a round trip plus its ack delay.
            let drain = conn.rtt() * 2 + std::time::Duration::from_millis(25);
            tokio::time::sleep(drain.min(std::time::Duration::from_secs(1))).await;
        }
        Ok(_) => {}
    }
    result
}

/// Resets the stream with [`ErrorCode::Cancelled`] when dropped; a no-op once the
/// stream was finished or reset.
struct CancelOnDrop(SendStream);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let _ = self.0.reset(ErrorCode::Cancelled.varint());
    }
}

async fn send_on(
    send: &mut SendStream,
    recv: Option<RecvStream>,
    header: &Header,
    source: Source,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Sent, SendError> {
    let mut recv = recv;
    let (sent, digest, duplicate, late_answer, resumed_from) = match (header.length, recv.as_mut())
    {
        (Some(len), _) if len <= INLINE => {
            let (sent, digest, duplicate) = send_small(send, header, source, progress).await?;
            (sent, digest, duplicate, false, 0)
        }
        (_, Some(recv)) if header.resume.is_some() => {
            resume::send_resumable(send, recv, header, source, progress).await?
        }
        _ => {
            let (sent, digest, duplicate) = send_streamed(send, header, source, progress).await?;
            (sent, digest, duplicate, false, 0)
        }
    };
    if let Some(declared) = header.length {
        if sent != declared {
            return Err(SendError::Source(std::io::Error::other(format!(
                "the file changed while it was being sent ({sent} bytes read, {declared} announced)"
            ))));
        }
    }
    if !duplicate {
        // The stream may have been stopped by now (duplicate found late); that is fine.
        let _ = send.finish();
    }
    let Some(mut recv) = recv else {
        // Unidirectional: done when the peer's transport acknowledged every byte.
        let unacked = |duplicate| Sent {
            bytes: sent,
            digest,
            duplicate,
            present: false,
            stored_as: None,
            resumed_from: 0,
        };
        return match send.stopped().await {
            Ok(None) => Ok(unacked(false)),
            Ok(Some(code)) if code == ErrorCode::Duplicate.varint() => Ok(unacked(true)),
            Ok(Some(code)) => Err(SendError::Refused(code)),
            Err(quinn::StoppedError::ConnectionLost(e)) => Err(SendError::Connection(classify(e))),
            Err(quinn::StoppedError::ZeroRttRejected) => Err(SendError::Connection(classify(
                quinn::ConnectionError::LocallyClosed,
            ))),
        };
    };
    let (ack, stored_as) = match late_answer {
        true => resume::read_ack_after_answer(&mut recv).await?,
        false => framing::read_ack(&mut recv).await?,
    };
    if ack.bytes != sent || ack.digest != digest.bytes {
        return Err(SendError::Integrity {
            sent,
            sent_digest: Some(digest),
            stored: ack.bytes,
            stored_digest: Some(Digest {
                algorithm: digest.algorithm,
                bytes: ack.digest,
            }),
        });
    }
    Ok(Sent {
        bytes: sent,
        digest,
        duplicate: ack.status == AckStatus::Duplicate,
        present: ack.status == AckStatus::Present,
        stored_as,
        resumed_from,
    })
}

/// Where a message's payload comes from.
pub enum Source {
    /// A regular file: read in full chunks, without zeroing buffers first.
    File(std::fs::File),
    /// A pipe or other stream: each read hands over what is there, so interactive input
    /// is sent as it comes.
    /// Made by [`Source::pipe`].
    Pipe(Pipe),
}

/// A stream source and how much its next read is offered.
pub struct Pipe {
    reader: Box<dyn Read + Send>,
    offer: usize,
}

/// What a pipe read is offered at first: a pipe holds 64 KiB, so offering a whole
/// chunk would zero four times what arrives. A reader that fills what it is offered
/// is offered twice as much next time, up to what the caller wants.
const PIPE_READ: usize = 64 * 1024;

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(file) => write!(f, "Source::File({file:?})"),
            Source::Pipe(_) => f.write_str("Source::Pipe"),
        }
    }
}

impl Source {
    /// A pipe, socket or any other reader of unknown length.
    pub fn pipe(reader: impl Read + Send + 'static) -> Source {
        Source::Pipe(Pipe {
            reader: Box::new(reader),
            offer: PIPE_READ,
        })
    }

    /// The next chunk of at most `want` bytes, in a buffer from `buffers`; empty at
    /// the end.
    fn next_chunk(&mut self, buffers: &Buffers, want: usize) -> std::io::Result<Bytes> {
        let mut buf = buffers.take();
        self.read_into(&mut buf, want)?;
        Ok(buffers.wrap(buf))
    }

    /// Appends at most `want` bytes to `buf`; returns how many (0 at the end). A file is
    /// read until `want` or its end, a pipe hands over what one read gives. Only the
    /// space a read is offered gets zeroed, never a whole chunk for a short payload.
    pub(super) fn read_into(&mut self, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
        let before = buf.len();
        match self {
            Source::File(file) => {
                buf.reserve_exact(want);
                // `read_to_end` fills spare capacity without zeroing all of it first.
                (&*file).take(want as u64).read_to_end(buf)?;
            }
            Source::Pipe(pipe) => {
                let offer = want.min(pipe.offer);
                buf.resize(before + offer, 0);
                let n = loop {
                    match pipe.reader.read(&mut buf[before..]) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            buf.truncate(before);
                            return Err(e);
                        }
                        Ok(n) => break n,
                    }
                };
                buf.truncate(before + n);
                if n == offer {
                    pipe.offer = pipe.offer.saturating_mul(2);
                }
            }
        }
        Ok(buf.len() - before)
    }
}

/// Chunk buffers that a message's stream has let go of, waiting to be read into
/// again: at most this many.
const KEPT: usize = DEPTH * 2;

/// The chunk buffers of one message: a chunk handed to the stream is a [`Bytes`] that
/// gives its buffer back here when the stream drops it (acknowledged by the peer), so
/// the reading thread fills memory that is already mapped instead of fresh pages.
#[derive(Clone, Default)]
struct Buffers(Arc<Mutex<Vec<Vec<u8>>>>);

impl Buffers {
    /// An empty buffer, one given back if there is one.
    fn take(&self) -> Vec<u8> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.pop().unwrap_or_default()
    }

    /// `buf` as a chunk whose buffer comes back here when the last of it is dropped.
    fn wrap(&self, buf: Vec<u8>) -> Bytes {
        if buf.is_empty() {
            return Bytes::new();
        }
        Bytes::from_owner(Recycled {
            buf,
            home: self.clone(),
        })
    }
}

/// A chunk's buffer on its way back to its [`Buffers`].
struct Recycled {
    buf: Vec<u8>,
    home: Buffers,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut kept = self.home.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < KEPT {
            kept.push(buf);
        }
    }
}

/// Sends a small payload: header and payload in one write, no I/O thread.
async fn send_small(
    send: &mut SendStream,
    header: &Header,
    mut source: Source,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, Digest, bool), SendError> {
    let mut out = header.encode();
    let start = out.len();
    // One byte more than declared, so a file that grew is noticed.
    let limit = header.length.unwrap_or(INLINE).min(INLINE) as usize + 1;
    out.reserve_exact(limit);
    while out.len() - start < limit {
        let want = limit - (out.len() - start);
        if source
            .read_into(&mut out, want)
            .map_err(SendError::Source)?
            == 0
        {
            break;
        }
    }
    let payload = &out[start..];
    let digest = header.algorithm().digest(payload);
    let sent = payload.len() as u64;
    if header.length.is_some_and(|declared| sent > declared) {
        return Err(SendError::Source(std::io::Error::other(
            "the file grew while it was being sent",
        )));
    }
    let duplicate = match send.write_chunk(Bytes::from(out)).await {
        Ok(()) => {
            progress(sent);
            false
        }
        Err(WriteError::Stopped(code)) if code == ErrorCode::Duplicate.varint() => true,
        Err(e) => return Err(e.into()),
    };
    Ok((sent, digest, duplicate))
}

/// Sends a payload of any size: read and hashed on a blocking thread, handed over in
/// chunks through a bounded channel.
async fn send_streamed(
    send: &mut SendStream,
    header: &Header,
    source: Source,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, Digest, bool), SendError> {
    send.write_chunk(Bytes::from(header.encode())).await?;
    let hasher = header.algorithm().hasher();
    stream_from(send, header, source, hasher, 0, progress).await
}

/// Sends the rest of `source` (after the header, and after the `already` bytes that
/// `hasher` has seen and the receiver holds): read and hashed on a blocking thread,
/// handed over in chunks through a bounded channel. Returns the bytes of the whole
/// payload (`already` included) and its digest.
pub(super) async fn stream_from(
    send: &mut SendStream,
    header: &Header,
    source: Source,
    hasher: Hasher,
    already: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, Digest, bool), SendError> {
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(DEPTH);
    let reader = tokio::task::spawn_blocking(move || read_source(source, hasher, tx));

    // Whether the receiver said it has the message already: keep reading (to hash),
    // stop sending.
    let mut duplicate = false;
    let mut sent: u64 = already;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(SendError::Source)?;
        sent += chunk.len() as u64;
        if let Some(declared) = header.length {
            if sent > declared {
                return Err(SendError::Source(std::io::Error::other(
                    "the file grew while it was being sent",
                )));
            }
        }
        if duplicate {
            continue;
        }
        let len = chunk.len() as u64;
        match send.write_chunk(chunk).await {
            Ok(()) => progress(len),
            Err(WriteError::Stopped(code)) if code == ErrorCode::Duplicate.varint() => {
                duplicate = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let digest = reader
        .await
        .map_err(|e| SendError::Source(std::io::Error::other(e)))?;
    Ok((sent, digest, duplicate))
}

/// Reads `source` in chunks into `tx`, hashing on the way with `hasher`; returns the
/// digest.
fn read_source(
    mut source: Source,
    mut hasher: Hasher,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> Digest {
    let buffers = Buffers::default();
    loop {
        let chunk = match source.next_chunk(&buffers, CHUNK) {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                break;
            }
        };
        hasher.update(&chunk);
        if tx.blocking_send(Ok(chunk)).is_err() {
            break;
        }
    }
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands over at most `step` bytes per read, like a pipe.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn drain(mut source: Source, want: usize) -> (Vec<u8>, Vec<usize>) {
        let (mut all, mut sizes) = (Vec::new(), Vec::new());
        let buffers = Buffers::default();
        loop {
            let chunk = source.next_chunk(&buffers, want).unwrap();
            if chunk.is_empty() {
                return (all, sizes);
            }
            sizes.push(chunk.len());
            all.extend_from_slice(&chunk);
        }
    }

    #[test]
    fn a_pipe_hands_over_each_read_and_is_offered_more_when_it_fills_the_offer() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        // A slow pipe: every read is short, so the offer never grows past 64 KiB.
        let slow = Source::pipe(Trickle {
            data: data.clone(),
            pos: 0,
            step: 1000,
        });
        let (got, sizes) = drain(slow, CHUNK);
        assert_eq!(got, data);
        assert!(sizes.iter().all(|&n| n <= 1000));
        // A fast reader fills 64 KiB, then 128 KiB, then whole chunks.
        let fast = Source::pipe(Trickle {
            data: data.clone(),
            pos: 0,
            step: usize::MAX,
        });
        let (got, sizes) = drain(fast, CHUNK);
        assert_eq!(got, data);
        assert_eq!(&sizes[..3], &[PIPE_READ, 2 * PIPE_READ, CHUNK]);
    }

    /// A chunk's buffer comes back once every part of it is dropped, and is read into
    /// again; no more than `KEPT` wait.
    #[test]
    fn chunk_buffers_come_back_when_the_stream_drops_them() {
        let data: Vec<u8> = (0..3 * CHUNK as u32).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &data).unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let mut source = Source::File(file);
        let buffers = Buffers::default();
        let first = source.next_chunk(&buffers, CHUNK).unwrap();
        let address = first.as_ptr();
        let part = first.slice(10..20);
        drop(first);
        assert!(buffers.0.lock().unwrap().is_empty(), "a part is still held");
        drop(part);
        assert_eq!(buffers.0.lock().unwrap().len(), 1);
        let second = source.next_chunk(&buffers, CHUNK).unwrap();
        assert_eq!(
            second.as_ptr(),
            address,
            "the buffer was not read into again"
        );
        assert_eq!(&second[..], &data[CHUNK..2 * CHUNK]);
        let many: Vec<Bytes> = (0..KEPT + 5).map(|_| buffers.wrap(vec![1; 8])).collect();
        drop(many);
        assert_eq!(buffers.0.lock().unwrap().len(), KEPT);
        assert!(buffers.take().is_empty());
    }

    #[test]
    fn a_file_is_read_in_whole_chunks_of_what_is_wanted() {
        let mut file = tempfile::tempfile().unwrap();
        let data = vec![7u8; 3000];
        std::io::Write::write_all(&mut file, &data).unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        let (got, sizes) = drain(Source::File(file), 1024);
        assert_eq!(got, data);
        assert_eq!(sizes, [1024, 1024, 952]);
    }
}
