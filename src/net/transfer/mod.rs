//! One message on one stream: the sender's half and the receiver's half.
//!
//! Both halves stream: the payload moves in chunks through a small bounded channel
//! between the QUIC stream and a blocking thread that reads the file (sender) or writes
//! it (receiver) and computes the SHA-256 on the way. Memory per message is the channel
//! (a few chunks), whatever the size of the file, and hashing and disk I/O run beside
//! the network task instead of inside it.
//!
//! What could go wrong, and how it is prevented:
//! - *A peer that lies about the length*: the receiver counts what arrives; more than
//!   declared fails the message at the first excess byte, less than declared fails it
//!   at FIN. Either way the stream is stopped with
//!   [`ErrorCode::LengthMismatch`] and nothing is stored.
//! - *A message larger than the receiver allows*: refused before a byte of payload when
//!   declared, at the first byte over the limit when not.
//! - *Silent corruption between the two files*: the ack carries the receiver's own
//!   SHA-256 and byte count; the sender compares them with what it read.
//! - *A source that changes while being sent* (a file being written): the sender stops
//!   at the declared length and fails the message if the file ended early or grew.
//! - *Sending a duplicate in full*: a receiver that already stored the message id acks
//!   at once and stops the stream; the sender stops sending and only finishes hashing
//!   its source to compare.

use std::io::{Read, Write};

use bytes::Bytes;
use futures_util::FutureExt;
use quinn::{ReadError as QuinnReadError, RecvStream, SendStream, VarInt, WriteError};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::endpoint::{classify, ConnectError};
use super::framing::{self, Ack, AckStatus, ErrorCode, FrameError, Header, ReadError};
use super::retry::Retryable;

/// Size of the chunks read from a source.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the I/O thread and the stream.
const DEPTH: usize = 8;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bidirectional stream; done when the receiver acked bytes and hash.
    Bidi,
    /// Unidirectional stream; done when the transport delivered it.
    Uni,
}

/// What the sender knows after a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Bytes of payload read from the source.
    pub bytes: u64,
    /// SHA-256 of the payload.
    pub sha256: [u8; 32],
    /// The receiver had stored this message id before.
    pub duplicate: bool,
    /// The receiver already held this content under the name (`--skip-same`): the
    /// payload was not sent.
    pub present: bool,
    /// The name the receiver stored it under (`big.1.bin` when `big.bin` was taken),
    /// relative to its directory, when it says (not for stdout, nor `--uni`).
    pub stored_as: Option<String>,
}

/// Why sending a message failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection failed (retryable when transient).
    #[error(transparent)]
    Connection(#[from] ConnectError),
    /// The receiver refused the message.
    #[error("peer refused the message: {}", describe_code(*.0))]
    Refused(VarInt),
    /// The source could not be read.
    #[error("{0}")]
    Source(std::io::Error),
    /// The receiver stored something else than was sent.
    #[error("integrity check failed: sent {sent} bytes (sha256 {sent_sha}), peer stored {stored} bytes (sha256 {stored_sha})")]
    Integrity {
        /// Bytes sent.
        sent: u64,
        /// Hash sent.
        sent_sha: String,
        /// Bytes the peer stored.
        stored: u64,
        /// Hash of what the peer stored.
        stored_sha: String,
    },
    /// The receiver's answer was malformed.
    #[error("malformed answer from peer: {0}")]
    Protocol(FrameError),
}

impl Retryable for SendError {
    fn is_retryable(&self) -> bool {
        match self {
            SendError::Connection(e) => e.is_retryable(),
            // A receiver that said no (full, stopping, takes no more) means it: a retry
            // would meet the same answer, and the user should hear it at once.
            _ => false,
        }
    }
}

fn describe_reset(code: VarInt) -> String {
    if code == ErrorCode::Cancelled.varint() {
        "the sender cancelled the message".into()
    } else {
        format!("the sender reset the stream ({})", describe_code(code))
    }
}

/// Why a connection ended, from the receiving side: the sender's own words when it
/// closed it (Ctrl-C: "sender interrupted"), ours when we did.
pub fn describe_lost(e: &quinn::ConnectionError) -> String {
    use quinn::ConnectionError as C;
    match e {
        C::ApplicationClosed(c) if c.error_code == framing::close::SHUTDOWN => {
            let reason = String::from_utf8_lossy(&c.reason);
            if reason == "interrupted" {
                "sender interrupted".into()
            } else {
                format!("the sender stopped ({})", reason.escape_debug())
            }
        }
        C::ApplicationClosed(c) => format!(
            "the sender closed the connection ({})",
            String::from_utf8_lossy(&c.reason).escape_debug()
        ),
        C::LocallyClosed => "we are shutting down".into(),
        C::TimedOut => "connection lost: no answer from the sender within the idle timeout".into(),
        e => format!("connection lost: {e}"),
    }
}

fn describe_code(code: VarInt) -> String {
    match ErrorCode::from_varint(code) {
        Some(c) => c.describe().to_string(),
        None => format!("error code {code}"),
    }
}

impl From<WriteError> for SendError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Stopped(code) => SendError::Refused(code),
            WriteError::ConnectionLost(e) => SendError::Connection(classify(e)),
            WriteError::ClosedStream | WriteError::ZeroRttRejected => {
                SendError::Connection(classify(quinn::ConnectionError::LocallyClosed))
            }
        }
    }
}

impl From<ReadError> for SendError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Frame(f) => SendError::Protocol(f),
            ReadError::Stream(QuinnReadError::Reset(code)) => SendError::Refused(code),
            ReadError::Stream(QuinnReadError::ConnectionLost(e)) => {
                SendError::Connection(classify(e))
            }
            ReadError::Stream(_) => {
                SendError::Connection(classify(quinn::ConnectionError::LocallyClosed))
            }
        }
    }
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
    let result = send_on(&mut send.0, recv, header, source, progress).await;
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
    let (sent, sha256, duplicate) = match header.length {
        Some(len) if len <= INLINE => send_small(send, header, source, progress).await?,
        _ => send_streamed(send, header, source, progress).await?,
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
            sha256,
            duplicate,
            present: false,
            stored_as: None,
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
    let (ack, stored_as) = framing::read_ack(&mut recv).await?;
    if ack.bytes != sent || ack.sha256 != sha256 {
        return Err(SendError::Integrity {
            sent,
            sent_sha: hex(&sha256),
            stored: ack.bytes,
            stored_sha: hex(&ack.sha256),
        });
    }
    Ok(Sent {
        bytes: sent,
        sha256,
        duplicate: ack.status == AckStatus::Duplicate,
        present: ack.status == AckStatus::Present,
        stored_as,
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

    /// The next chunk of at most `want` bytes, empty at the end.
    fn next_chunk(&mut self, want: usize) -> std::io::Result<Bytes> {
        let mut buf = Vec::new();
        self.read_into(&mut buf, want)?;
        Ok(Bytes::from(buf))
    }

    /// Appends at most `want` bytes to `buf`; returns how many (0 at the end). A file is
    /// read until `want` or its end, a pipe hands over what one read gives. Only the
    /// space a read is offered gets zeroed, never a whole chunk for a short payload.
    fn read_into(&mut self, buf: &mut Vec<u8>, want: usize) -> std::io::Result<usize> {
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

/// Below this size a payload is read, hashed and written in the network task itself:
/// handing a few KiB to a thread and back costs more than the work.
const INLINE: u64 = 64 * 1024;

/// Sends a small payload: header and payload in one write, no I/O thread.
async fn send_small(
    send: &mut SendStream,
    header: &Header,
    mut source: Source,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, [u8; 32], bool), SendError> {
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
    let sha256: [u8; 32] = Sha256::digest(payload).into();
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
    Ok((sent, sha256, duplicate))
}

/// Sends a payload of any size: read and hashed on a blocking thread, handed over in
/// chunks through a bounded channel.
async fn send_streamed(
    send: &mut SendStream,
    header: &Header,
    source: Source,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, [u8; 32], bool), SendError> {
    send.write_chunk(Bytes::from(header.encode())).await?;
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(DEPTH);
    let reader = tokio::task::spawn_blocking(move || read_source(source, tx));

    // Whether the receiver said it has the message already: keep reading (to hash),
    // stop sending.
    let mut duplicate = false;
    let mut sent: u64 = 0;
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
    let sha256: [u8; 32] = reader
        .await
        .map_err(|e| SendError::Source(std::io::Error::other(e)))?
        .into();
    Ok((sent, sha256, duplicate))
}

/// Reads `source` in chunks into `tx`, hashing on the way; returns the hash.
fn read_source(
    mut source: Source,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> sha2::digest::Output<Sha256> {
    let mut hasher = Sha256::new();
    loop {
        let chunk = match source.next_chunk(CHUNK) {
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

/// A size in the units people read (`4.88 KiB`), for error text; the same form as
/// the command line's reports.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Why receiving a message failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// We refuse the message; the stream is stopped with this code.
    #[error("{}{}", .0.describe(), if .1.is_empty() { String::new() } else { format!(": {}", .1) })]
    Refuse(ErrorCode, String),
    /// The sender reset the stream (gave up).
    #[error("{}", describe_reset(*.0))]
    Cancelled(VarInt),
    /// The connection failed.
    #[error("{}", describe_lost(.0))]
    Lost(quinn::ConnectionError),
    /// The payload could not be written.
    #[error("could not store: {0}")]
    Storage(std::io::Error),
}

impl RecvError {
    /// The code to stop the stream with, if we are the one ending it.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RecvError::Refuse(code, _) => Some(*code),
            RecvError::Storage(e) if is_out_of_space(e) => Some(ErrorCode::NoSpace),
            RecvError::Storage(_) => Some(ErrorCode::StorageFailed),
            _ => None,
        }
    }
}

/// Whether a write failed because the disk (or the user's quota) is full.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    // ENOSPC and EDQUOT on unix, ERROR_DISK_FULL and ERROR_DISK_QUOTA_EXCEEDED on Windows.
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Limits a receiver applies to one message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// The largest payload accepted.
    pub max_size: Option<u64>,
}

impl Limits {
    /// Refuses a message whose declared length is over the limit, before any payload.
    pub fn check_declared(&self, header: &Header) -> Result<(), RecvError> {
        match (header.length, self.max_size) {
            (Some(len), Some(max)) if len > max => Err(RecvError::Refuse(
                ErrorCode::TooLarge,
                format!("{} declared, limit {}", size(len), size(max)),
            )),
            _ => Ok(()),
        }
    }
}

/// What the receiver stored.
#[derive(Debug)]
pub struct Received<W> {
    /// The sink, flushed, ready to be committed.
    pub sink: W,
    /// Bytes received.
    pub bytes: u64,
    /// SHA-256 of the bytes received.
    pub sha256: [u8; 32],
}

/// Receives the payload of a message into `sink` (written on a blocking thread),
/// enforcing the declared length and `limits`. The caller commits or drops the sink.
pub async fn receive_payload<W: Write + Send + 'static>(
    recv: &mut RecvStream,
    header: &Header,
    first: Bytes,
    sink: W,
    limits: Limits,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Received<W>, RecvError> {
    limits.check_declared(header)?;
    if let Some(declared) = header.length.filter(|&len| len <= INLINE) {
        return receive_small(recv, declared, first, sink, progress).await;
    }
    // The payload bytes that came with the header open the first batch.
    let mut first = (!first.is_empty()).then_some(first);
    let (tx, rx) = mpsc::channel::<Vec<Bytes>>(DEPTH);
    let writer = tokio::task::spawn_blocking(move || write_sink(sink, rx));
    let mut total: u64 = 0;
    let read_result = loop {
        // Wait for data, then take whatever else is already there without waiting:
        // the writer gets large batches at full speed, and small ones at once when the
        // sender is slow (an interactive pipe). Chunks are quinn's own buffers, not
        // copies.
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len = 0usize;
        let mut eof = false;
        let mut failed = None;
        let mut outcome = match first.take() {
            Some(bytes) => Ok(Some(bytes)),
            None => recv.read_chunk(CHUNK, true).await.map(chunk_bytes),
        };
        loop {
            match outcome {
                Ok(Some(bytes)) => {
                    batch_len += bytes.len();
                    batch.push(bytes);
                }
                Ok(None) => eof = true,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if eof || batch_len >= CHUNK {
                break;
            }
            match recv.read_chunk(CHUNK, true).now_or_never() {
                Some(next) => outcome = next.map(chunk_bytes),
                None => break,
            }
        }
        total += batch_len as u64;
        if let Some(e) = failed {
            break Err(match e {
                QuinnReadError::Reset(code) => RecvError::Cancelled(code),
                QuinnReadError::ConnectionLost(e) => RecvError::Lost(e),
                _ => RecvError::Lost(quinn::ConnectionError::LocallyClosed),
            });
        }
        if let Some(declared) = header.length {
            if total > declared {
                break Err(RecvError::Refuse(
                    ErrorCode::LengthMismatch,
                    format!("more than the {declared} bytes declared"),
                ));
            }
        }
        if let Some(max) = limits.max_size {
            if total > max {
                break Err(RecvError::Refuse(
                    ErrorCode::TooLarge,
                    format!("over the limit of {}", size(max)),
                ));
            }
        }
        if batch_len > 0 {
            if tx.send(batch).await.is_err() {
                // The writer failed; its error is reported below.
                break Ok(());
            }
            progress(batch_len as u64);
        }
        if eof {
            if let Some(declared) = header.length {
                if total != declared {
                    break Err(RecvError::Refuse(
                        ErrorCode::LengthMismatch,
                        format!("{total} bytes received, {declared} declared"),
                    ));
                }
            }
            break Ok(());
        }
    };
    drop(tx);
    let written = writer
        .await
        .map_err(|e| RecvError::Storage(std::io::Error::other(e)))?;
    read_result?;
    let (sink, bytes, sha256) = written.map_err(RecvError::Storage)?;
    if bytes != total {
        return Err(RecvError::Storage(std::io::Error::other(
            "writer stopped early",
        )));
    }
    Ok(Received {
        sink,
        bytes,
        sha256,
    })
}

/// Receives a small payload of `declared` bytes in the network task: read, hash and
/// write without an I/O thread. The limit was checked against `declared` already.
async fn receive_small<W: Write>(
    recv: &mut RecvStream,
    declared: u64,
    first: Bytes,
    mut sink: W,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Received<W>, RecvError> {
    let parts = match framing::read_rest(recv, first, declared as usize).await {
        Ok(parts) => parts,
        Err(quinn::ReadToEndError::TooLong) => {
            return Err(RecvError::Refuse(
                ErrorCode::LengthMismatch,
                format!("more than the {declared} bytes declared"),
            ))
        }
        Err(quinn::ReadToEndError::Read(QuinnReadError::Reset(code))) => {
            return Err(RecvError::Cancelled(code))
        }
        Err(quinn::ReadToEndError::Read(QuinnReadError::ConnectionLost(e))) => {
            return Err(RecvError::Lost(e))
        }
        Err(quinn::ReadToEndError::Read(_)) => {
            return Err(RecvError::Lost(quinn::ConnectionError::LocallyClosed))
        }
    };
    let bytes: u64 = parts.iter().map(|p| p.len() as u64).sum();
    if bytes != declared {
        return Err(RecvError::Refuse(
            ErrorCode::LengthMismatch,
            format!("{bytes} bytes received, {declared} declared"),
        ));
    }
    let mut hasher = Sha256::new();
    for part in &parts {
        hasher.update(part);
        sink.write_all(part).map_err(RecvError::Storage)?;
    }
    sink.flush().map_err(RecvError::Storage)?;
    progress(bytes);
    Ok(Received {
        sink,
        bytes,
        sha256: hasher.finalize().into(),
    })
}

fn chunk_bytes(chunk: Option<quinn::Chunk>) -> Option<Bytes> {
    chunk.map(|c| c.bytes)
}

fn write_sink<W: Write>(
    mut sink: W,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
) -> std::io::Result<(W, u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    while let Some(batch) = rx.blocking_recv() {
        for chunk in &batch {
            hasher.update(chunk);
            total += chunk.len() as u64;
        }
        write_all_vectored(&mut sink, &batch)?;
    }
    sink.flush()?;
    Ok((sink, total, hasher.finalize().into()))
}

/// Writes every chunk with as few system calls as the sink allows.
fn write_all_vectored<W: Write>(sink: &mut W, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        chunks.iter().map(|c| std::io::IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match sink.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Answers a bidirectional stream with an ack (and the name the message is stored
/// under, when there is one) and finishes it.
pub async fn send_ack(
    send: &mut SendStream,
    ack: &Ack,
    stored_as: Option<&str>,
) -> Result<(), WriteError> {
    let mut answer = ack.encode().to_vec();
    if let Some(name) = stored_as {
        answer.extend_from_slice(&framing::encode_stored_as(name));
    }
    send.write_all(&answer).await?;
    let _ = send.finish();
    Ok(())
}

/// Refuses a message: stops the incoming side and resets the answer side with `code`.
pub fn refuse(recv: &mut RecvStream, send: Option<&mut SendStream>, code: ErrorCode) {
    let _ = recv.stop(code.varint());
    if let Some(send) = send {
        let _ = send.reset(code.varint());
    }
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
        loop {
            let chunk = source.next_chunk(want).unwrap();
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
