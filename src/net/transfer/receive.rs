//! The receiver's half: a message's payload from a stream into a sink, checked against
//! the header and the limits, and the answer to the sender.
//!
//! What could go wrong, and how it is prevented:
//! - *A peer that lies about the length*: the receiver counts what arrives; more than
//!   declared fails the message at the first excess byte, less than declared fails it
//!   at FIN. Either way the stream is stopped with
//!   [`ErrorCode::LengthMismatch`] and nothing is stored.
//! - *A message larger than the receiver allows*: refused before a byte of payload when
//!   declared, at the first byte over the limit when not.

use std::io::Write;

use bytes::Bytes;
use futures_util::FutureExt;
use quinn::{ReadError as QuinnReadError, RecvStream, SendStream, WriteError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::digest::{Digest, Hasher};
use super::super::framing::{self, Ack, ErrorCode, Header};
use super::{size, RecvError, CHUNK, DEPTH, INLINE};

/// Limits a receiver applies to one message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// The largest payload accepted.
    pub max_size: Option<u64>,
}

impl Limits {
    /// Refuses a message whose declared length is over the limit, before any payload.
    pub(crate) fn check_declared(&self, header: &Header) -> Result<(), RecvError> {
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
    /// The digest of the bytes received, in the header's algorithm.
    pub digest: Digest,
}

/// Receives the payload of a message into `sink` (written on a blocking thread),
/// enforcing the declared length and `limits`. The caller commits or drops the sink.
pub(crate) async fn receive_payload<W: Write + Send + 'static>(
    recv: &mut RecvStream,
    header: &Header,
    first: Bytes,
    sink: W,
    limits: Limits,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Received<W>, RecvError> {
    let hasher = header.algorithm().hasher();
    receive_payload_hashed(recv, header, first, sink, limits, progress, hasher, None).await
}

/// [`receive_payload`] with a `hasher` that may have seen bytes before these (a resumed
/// file's prefix): the digest returned covers them too. When `stop` is cancelled while
/// it waits for bytes, it ends with [`RecvError::Stopped`], its writer done.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn receive_payload_hashed<W: Write + Send + 'static>(
    recv: &mut RecvStream,
    header: &Header,
    first: Bytes,
    sink: W,
    limits: Limits,
    progress: &(dyn Fn(u64) + Sync),
    hasher: Hasher,
    stop: Option<&CancellationToken>,
) -> Result<Received<W>, RecvError> {
    limits.check_declared(header)?;
    if let Some(declared) = header.length.filter(|&len| len <= INLINE) {
        return receive_small(recv, declared, first, sink, hasher, progress).await;
    }
    // The payload bytes that came with the header open the first batch.
    let mut first = (!first.is_empty()).then_some(first);
    let (tx, rx) = mpsc::channel::<Vec<Bytes>>(DEPTH);
    let writer = tokio::task::spawn_blocking(move || write_sink(sink, hasher, rx));
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
        let mut outcome = match (first.take(), stop) {
            (Some(bytes), _) => Ok(Some(bytes)),
            (None, None) => recv.read_chunk(CHUNK, true).await.map(chunk_bytes),
            (None, Some(stop)) => tokio::select! {
                r = recv.read_chunk(CHUNK, true) => r.map(chunk_bytes),
                _ = stop.cancelled() => break Err(RecvError::Stopped),
            },
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
    let (sink, bytes, digest) = written.map_err(RecvError::Storage)?;
    if bytes != total {
        return Err(RecvError::Storage(std::io::Error::other(
            "writer stopped early",
        )));
    }
    Ok(Received {
        sink,
        bytes,
        digest,
    })
}

/// Receives a small payload of `declared` bytes in the network task: read, hash and
/// write without an I/O thread. The limit was checked against `declared` already.
async fn receive_small<W: Write>(
    recv: &mut RecvStream,
    declared: u64,
    first: Bytes,
    mut sink: W,
    mut hasher: Hasher,
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
    for part in &parts {
        hasher.update(part);
        sink.write_all(part).map_err(RecvError::Storage)?;
    }
    sink.flush().map_err(RecvError::Storage)?;
    progress(bytes);
    Ok(Received {
        sink,
        bytes,
        digest: hasher.finalize(),
    })
}

fn chunk_bytes(chunk: Option<quinn::Chunk>) -> Option<Bytes> {
    chunk.map(|c| c.bytes)
}

fn write_sink<W: Write>(
    mut sink: W,
    mut hasher: Hasher,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
) -> std::io::Result<(W, u64, Digest)> {
    let mut total = 0u64;
    while let Some(batch) = rx.blocking_recv() {
        for chunk in &batch {
            hasher.update(chunk);
            total += chunk.len() as u64;
        }
        write_all_vectored(&mut sink, &batch)?;
    }
    sink.flush()?;
    Ok((sink, total, hasher.finalize()))
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
pub(crate) async fn send_ack(
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
