//! Resume: a file whose transfer broke off is continued where the receiver's partial
//! copy ends, not sent again whole (PROTOCOL.md, "Resume"). Both halves of the
//! exchange are here; the partial files themselves are `store::partial`.
//!
//! The exchange, on a bidirectional stream whose header carries an offer
//! ([`Offer`]: the file's modification time and the digest of its first 64 KiB):
//!
//! 1. The receiver claims its partial for this sender and name and answers at once
//!    how many bytes it holds ([`Answer`]; none, or none because the content changed).
//! 2. The sender hashes its own first `held` bytes and sends a [`Start`]: the offset it
//!    continues from (`held`, or 0) and the digest of its bytes before it; then the
//!    payload from there.
//! 3. The receiver re-reads its partial's prefix, compares digests before a byte more
//!    is written, appends the rest, and hashes the whole file (prefix and rest) for its
//!    ack as for any message; the sender compares the ack with its whole file's digest.
//!
//! What could go wrong, and how it is prevented:
//! - *A receiver without resume*: it skips the offer and never answers; the sender
//!   stops waiting after [`ANSWER_WAIT`] and sends the plain payload, and later skips an
//!   answer that came late in front of the ack ([`read_ack_after_answer`]).
//! - *A prefix that is not the file's* (the source edited in place, a partial damaged
//!   in a crash, a lying sender): the digests differ; the receiver discards the partial
//!   and refuses the message with [`ErrorCode::PrefixMismatch`], which the sender
//!   retries, from byte 0.
//! - *A start outside what is held*: anything but 0 or `held` is refused as a bad
//!   header.
//! - *Stdin*: never offered; it is read once and cannot be continued.

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream, WriteError};
use tracing::{info, warn};

use super::super::digest::{Algorithm, Digest, Hasher};
use super::super::framing::resume::{
    skip_answer, Answer, Held, Offer, Start, ANSWER_LEN, ANSWER_WAIT, HEAD_LEN, START_LEN,
};
use super::super::framing::{self, Ack, ErrorCode, Header, ReadError};
use super::send::{stream_from, Source};
use super::{receive_payload_hashed, Limits, Received, RecvError, SendError, CHUNK};
use crate::store::{Claim, Identity, Store, STALL};
use std::time::Duration;

/// Files of at least this many bytes are offered for resume; below it a resend costs
/// less than the round trip the answer takes.
pub const RESUME_FROM: u64 = 1024 * 1024;

/// The offer for the regular file at `path` of `len` bytes in `algorithm`: its
/// modification time and the digest of its first [`HEAD_LEN`] bytes. Reads 64 KiB.
pub fn offer_for(
    path: &std::path::Path,
    len: u64,
    algorithm: Algorithm,
) -> std::io::Result<Option<Offer>> {
    if len < RESUME_FROM {
        return Ok(None);
    }
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() != len {
        // Not a regular file, or one that changed since it was measured (that try
        // fails anyway): nothing worth keeping at the receiver.
        return Ok(None);
    }
    let mtime_ns = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let head = algorithm.reader_digest(std::io::Read::take(&file, HEAD_LEN))?;
    Ok(Some(Offer {
        mtime_ns,
        head: head.bytes,
    }))
}

/// Sends a payload whose header carries an offer: waits (at most [`ANSWER_WAIT`]) for
/// the receiver's answer, then the start and the payload from there. Returns the bytes
/// of the whole file, its digest, whether the receiver had it already (duplicate),
/// whether no answer came (one may still come, in front of the ack), and where the
/// payload started (the bytes the receiver held).
pub(super) async fn send_resumable(
    send: &mut SendStream,
    recv: &mut RecvStream,
    header: &Header,
    source: Source,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(u64, Digest, bool, bool, u64), SendError> {
    send.write_chunk(Bytes::from(header.encode())).await?;
    let mut buf = [0u8; ANSWER_LEN];
    let answer = match tokio::time::timeout(ANSWER_WAIT, framing::read_exact(recv, &mut buf)).await
    {
        Err(_) => None,
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(())) => Some(Answer::decode(&buf).map_err(SendError::Protocol)?),
    };
    let hasher = header.algorithm().hasher();
    let Some(answer) = answer else {
        info!(name = %header.name.escape_debug(), "no answer to the resume offer: the listener predates resume; sending the whole file");
        let (sent, digest, duplicate) =
            stream_from(send, header, source, hasher, 0, progress).await?;
        return Ok((sent, digest, duplicate, true, 0));
    };
    let len = header.length.unwrap_or(0);
    if answer.held > len {
        return Err(SendError::Protocol(framing::FrameError::BadAck));
    }
    if answer.status == Held::Changed {
        warn!(name = %header.name.escape_debug(), "the file changed since the last try: the receiver holds other content under this name; sending from the start");
    }
    let (source, hasher, from) = match answer.held {
        0 => (source, hasher, 0),
        held => {
            let (source, hasher) =
                tokio::task::spawn_blocking(move || hash_prefix(source, hasher, held))
                    .await
                    .map_err(|e| SendError::Source(std::io::Error::other(e)))?
                    .map_err(SendError::Source)?;
            (source, hasher, held)
        }
    };
    let prefix = match from {
        0 => [0; 32],
        _ => hasher.clone().finalize().bytes,
    };
    match send
        .write_chunk(Bytes::copy_from_slice(&Start { from, prefix }.encode()))
        .await
    {
        // A duplicate or content already there: the receiver acked and stopped the
        // stream after its answer; the payload is only hashed, to compare.
        Err(WriteError::Stopped(code)) if code == ErrorCode::Duplicate.varint() => {}
        r => r?,
    }
    if from > 0 {
        info!(name = %header.name.escape_debug(), from, "resuming: the receiver holds the first {from} bytes");
        progress(from);
    }
    let (sent, digest, duplicate) =
        stream_from(send, header, source, hasher, from, progress).await?;
    Ok((sent, digest, duplicate, false, from))
}

/// Reads and hashes the first `n` bytes of `source`, which must have them.
fn hash_prefix(
    mut source: Source,
    mut hasher: Hasher,
    n: u64,
) -> std::io::Result<(Source, Hasher)> {
    let mut left = n;
    let mut buf = Vec::with_capacity(CHUNK);
    while left > 0 {
        buf.clear();
        let got = source.read_into(&mut buf, left.min(CHUNK as u64) as usize)?;
        if got == 0 {
            return Err(std::io::Error::other(format!(
                "the file is shorter than the {n} bytes the receiver holds of it"
            )));
        }
        hasher.update(&buf);
        left -= got as u64;
    }
    Ok((source, hasher))
}

/// Reads the ack of a message whose resume offer was not answered in time: a late
/// answer in front of it is skipped.
pub(super) async fn read_ack_after_answer(
    recv: &mut RecvStream,
) -> Result<(Ack, Option<String>), ReadError> {
    let mut head = [0u8; ANSWER_LEN];
    framing::read_exact(recv, &mut head[..4]).await?;
    if skip_answer(&head[..4]) {
        framing::read_exact(recv, &mut head[4..]).await?;
        return framing::read_ack(recv).await;
    }
    framing::read_ack_after(recv, &head[..4]).await
}

/// How long a message waits for a partial another message holds and receives into,
/// before it does without.
const CLAIM_WAIT: Duration = Duration::from_secs(2);
/// How long a message waits for a partial whose holder it told to stop (it keeps what
/// it wrote first: a sync).
const TAKE_OVER_WAIT: Duration = Duration::from_secs(10);

/// The partial an offered message goes into, when the receiver keeps partials: its
/// identity, claimed. A holder that received nothing for [`STALL`] (a try that broke
/// off, whose stream the listener has not yet seen die) is told to stop, and its
/// partial taken over; one that still receives is waited for a little, then this
/// message does without.
pub(crate) async fn claim(
    partials: &crate::store::Partials,
    header: &Header,
    fingerprint: [u8; 32],
) -> Option<Claim> {
    let offer = header.resume?;
    let id = Identity {
        fingerprint,
        name: header.name.clone(),
        size: header.length?,
        offer,
        algorithm: header.algorithm(),
    };
    let started = tokio::time::Instant::now();
    let mut taken_over = false;
    loop {
        let (p, i) = (partials.clone(), id.clone());
        match tokio::task::spawn_blocking(move || p.claim(&i)).await {
            Ok(Ok(Some(claim))) => return Some(claim),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                warn!(cause = %e, "cannot keep a partial file; receiving without resume");
                return None;
            }
            Err(_) => return None,
        }
        if let Some(hold) = partials
            .holder(&id)
            .filter(|h| !taken_over && h.idle() >= STALL)
        {
            info!(name = %header.name.escape_debug(), idle = ?hold.idle(), "an earlier try of this file holds its partial but receives nothing: taken over");
            hold.stop().cancel();
            taken_over = true;
        }
        let wait = match taken_over {
            true => TAKE_OVER_WAIT,
            false => CLAIM_WAIT,
        };
        if started.elapsed() >= wait {
            warn!(name = %header.name.escape_debug(), "another try of this file holds its partial; receiving without resume");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The error of a message whose partial a newer try took over.
fn taken_over() -> RecvError {
    RecvError::Refuse(
        ErrorCode::Cancelled,
        "a newer try of this file from the same sender took its partial over".into(),
    )
}

/// Answers an offer with what `claim` holds (nothing without a claim).
pub(crate) async fn answer(send: &mut SendStream, claim: Option<&Claim>) -> Result<(), RecvError> {
    let answer = match claim {
        Some(c) if c.status == Held::Prefix => Answer {
            status: Held::Prefix,
            held: c.held,
        },
        Some(c) => Answer {
            status: c.status,
            held: 0,
        },
        None => Answer {
            status: Held::Nothing,
            held: 0,
        },
    };
    send.write_all(&answer.encode()).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(e) => RecvError::Lost(e),
        _ => RecvError::Lost(quinn::ConnectionError::LocallyClosed),
    })
}

/// Reads the sender's [`Start`] after an answer: `None` (and the bytes read, which
/// are payload) when the sender stopped waiting and sent the payload without it.
///
/// A payload may itself open with the start's magic (a file that begins `QP2S`), so
/// the magic alone does not decide. A start from `held` (the bytes this receiver
/// holds, more than 0) is one; its prefix digest is checked before anything is
/// written. A start from 0 is one only if the [`HEAD_LEN`] bytes after it have the
/// offer's head digest (else they are the payload's first bytes: a payload that
/// looked like a start from 0 would have to open with a start's magic, 40 zero
/// bytes, and a collision). Anything else is payload from byte 0: a sender that lies
/// about where it starts meets the length and digest checks.
pub(crate) async fn read_start(
    recv: &mut RecvStream,
    first: Bytes,
    header: &Header,
    held: u64,
) -> Result<(Option<Start>, Bytes), RecvError> {
    let mut buf = BytesMut::from(&first[..]);
    fill(recv, &mut buf, START_LEN).await?;
    let Some(start) = Start::parse(buf[..START_LEN].try_into().expect("START_LEN bytes")) else {
        return Ok((None, buf.freeze()));
    };
    let len = header.length.unwrap_or(0);
    let head = HEAD_LEN.min(len) as usize;
    let genuine = match (start.from, header.resume) {
        (0, Some(offer)) if len >= (START_LEN + head) as u64 => {
            // Whether a start from 0 or a payload, the stream holds this much.
            fill(recv, &mut buf, START_LEN + head).await?;
            let after = &buf[START_LEN..START_LEN + head];
            header.algorithm().digest(after).bytes == offer.head
        }
        (0, _) => true,
        (from, _) => from == held,
    };
    let buf = buf.freeze();
    Ok(match genuine {
        true => (Some(start), buf.slice(START_LEN..)),
        false => {
            info!(name = %header.name.escape_debug(), "the payload opens like a start frame but is none: the sender stopped waiting for the answer");
            (None, buf)
        }
    })
}

/// Reads from `recv` into `buf` until it holds `n` bytes.
async fn fill(recv: &mut RecvStream, buf: &mut BytesMut, n: usize) -> Result<(), RecvError> {
    while buf.len() < n {
        match recv.read_chunk(n - buf.len(), true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(RecvError::Refuse(
                    ErrorCode::LengthMismatch,
                    "the stream ended before the payload".into(),
                ))
            }
            Err(quinn::ReadError::Reset(code)) => return Err(RecvError::Cancelled(code)),
            Err(quinn::ReadError::ConnectionLost(e)) => return Err(RecvError::Lost(e)),
            Err(_) => return Err(RecvError::Lost(quinn::ConnectionError::LocallyClosed)),
        }
    }
    Ok(())
}

/// Receives an offered message into its claimed partial after the answer: the start,
/// the prefix checked, the rest appended. The partial stays when this fails for any
/// reason but a prefix that does not match (then it is discarded).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn receive_into_partial(
    store: &Store,
    rel: &std::path::Path,
    mut claim: Claim,
    header: &Header,
    first: Bytes,
    recv: &mut RecvStream,
    limits: Limits,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Received<crate::store::PartialSink>, Claim), RecvError> {
    let stop = claim.stop();
    let (start, first) = tokio::select! {
        r = read_start(recv, first, header, claim.held) => r?,
        _ = stop.cancelled() => return Err(taken_over()),
    };
    let len = header.length.unwrap_or(0);
    let from = start.map_or(0, |s| s.from);
    let hasher = header.algorithm().hasher();
    let hasher = if from == 0 {
        if claim.held > 0 {
            info!(name = %header.name.escape_debug(), "the sender starts from the beginning: the partial is emptied");
        }
        claim.restart().map_err(RecvError::Storage)?;
        hasher
    } else if from == claim.held && from <= len {
        let path = claim.path().to_path_buf();
        let rehashed = tokio::task::spawn_blocking(move || -> std::io::Result<Hasher> {
            let mut hasher = hasher;
            let file = std::fs::File::open(path)?;
            std::io::copy(&mut std::io::Read::take(file, from), &mut hasher)?;
            Ok(hasher)
        })
        .await
        .map_err(|e| RecvError::Storage(std::io::Error::other(e)))?
        .map_err(RecvError::Storage)?;
        let claimed = start.map(|s| s.prefix).unwrap_or_default();
        if rehashed.clone().finalize().bytes != claimed {
            warn!(name = %header.name.escape_debug(), "the sender's start differs from the partial held: discarded");
            claim.discard();
            return Err(RecvError::Refuse(
                ErrorCode::PrefixMismatch,
                format!("the digest of the first {from} bytes differs"),
            ));
        }
        rehashed
    } else {
        return Err(RecvError::Refuse(
            ErrorCode::BadHeader,
            format!("resume from byte {from}, but {} are held", claim.held),
        ));
    };
    let sink = store
        .begin_partial(rel, &claim)
        .map_err(RecvError::Storage)?;
    let mut rest = header.clone();
    rest.length = Some(len - from);
    progress(from);
    let got = match receive_payload_hashed(
        recv,
        &rest,
        first,
        sink,
        limits,
        progress,
        hasher,
        Some(&stop),
    )
    .await
    {
        Ok(got) => got,
        Err(RecvError::Stopped) => {
            // A newer try took the partial over: what was written is kept for it.
            let claim = tokio::task::spawn_blocking(move || {
                let _ = claim.keep();
                claim
            })
            .await;
            drop(claim);
            return Err(taken_over());
        }
        Err(e @ RecvError::Storage(_)) => {
            // A full disk or an I/O error: what is there cannot be trusted, and its
            // space is given back.
            claim.discard();
            return Err(e);
        }
        Err(e) => {
            // Broken off: what arrived is synced and counted, for the next try.
            let claim = tokio::task::spawn_blocking(move || {
                if let Err(e) = claim.keep() {
                    warn!(cause = %e, "could not sync the partial file; the next try may resend more");
                }
                claim
            })
            .await;
            drop(claim);
            return Err(e);
        }
    };
    Ok((
        Received {
            sink: got.sink,
            bytes: from + got.bytes,
            digest: got.digest,
        },
        claim,
    ))
}
