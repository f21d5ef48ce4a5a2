//! Benchmark streams: data that is thrown away, and round trips.
//!
//! `qp2p bench` measures the transport with three stream kinds that every listener
//! serves and that never touch the disk:
//! - [`Kind::Discard`]: the payload is read and dropped; the ack carries the byte count.
//! - [`Kind::DiscardHashed`]: the payload goes through the same receive path as a real
//!   file (hashed on a blocking thread, in the header's algorithm: BLAKE3 from `qp2p
//!   bench`) into a sink; the ack carries bytes and digest.
//! - [`Kind::Request`]: a request whose first 8 bytes give the size of the answer; the
//!   answer is that many bytes, then FIN.
//!
//! A raw baseline (no header, no ack, no hashing) is measured in-process only, on
//! unidirectional streams of an endpoint that serves nothing else.
//!
//! What could go wrong: a stranger using a listener to make it send large answers; the
//! answer is bounded by [`MAX_RESPONSE`] and the request by [`MAX_REQUEST`], and both
//! travel on an authenticated, flow-controlled connection the requester opened.

use bytes::Bytes;
use quinn::{RecvStream, SendStream};

use super::digest::Algorithm;
use super::endpoint::classify;
use super::framing::{self, Ack, AckStatus, ErrorCode, Header, Kind, MessageId};
use super::transfer::{self, Limits, RecvError, SendError};

/// The largest request of a [`Kind::Request`] stream.
pub const MAX_REQUEST: usize = 64 * 1024;
/// The largest answer a listener gives to a [`Kind::Request`].
pub const MAX_RESPONSE: u64 = 16 * 1024 * 1024;
/// The chunk benchmark data is written in (shared, never copied).
const PATTERN: usize = 256 * 1024;

/// The benchmark data: made once, shared by every stream (`Bytes` clones are cheap).
fn pattern() -> Bytes {
    static PATTERN_BYTES: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    PATTERN_BYTES
        .get_or_init(|| {
            // Not all zeroes, so nothing on the path can cheat by compressing.
            Bytes::from(
                (0..PATTERN)
                    .map(|i| (i * 31 % 251) as u8)
                    .collect::<Vec<u8>>(),
            )
        })
        .clone()
}

/// Serves one benchmark stream whose header has been read; a stream that goes wrong
/// is reset with the matching code.
pub async fn serve(
    header: &Header,
    first: Bytes,
    mut send: Option<SendStream>,
    mut recv: RecvStream,
) -> Result<(), RecvError> {
    let result = serve_on(header, first, &mut send, &mut recv).await;
    if let Err(e) = &result {
        if let Some(code) = e.code() {
            transfer::refuse(&mut recv, send.as_mut(), code);
        }
    }
    result
}

async fn serve_on(
    header: &Header,
    first: Bytes,
    send: &mut Option<SendStream>,
    recv: &mut RecvStream,
) -> Result<(), RecvError> {
    match header.kind {
        Kind::Discard => {
            let mut bytes = first.len() as u64;
            loop {
                match recv.read_chunk(usize::MAX, false).await {
                    Ok(Some(chunk)) => bytes += chunk.bytes.len() as u64,
                    Ok(None) => break,
                    Err(e) => return Err(lost(e)),
                }
            }
            ack(send, bytes, [0; 32]).await
        }
        Kind::DiscardHashed => {
            let got = transfer::receive_payload(
                recv,
                header,
                first,
                std::io::sink(),
                Limits::default(),
                &|_| {},
            )
            .await?;
            ack(send, got.bytes, got.digest.bytes).await
        }
        Kind::Request => {
            let request = framing::read_rest(recv, first, MAX_REQUEST)
                .await
                .map_err(|_| RecvError::Refuse(ErrorCode::TooLarge, "request".into()))?
                .concat();
            let mut len = [0u8; 8];
            let Some(first) = request.get(..8) else {
                return Err(RecvError::Refuse(
                    ErrorCode::BadHeader,
                    "short request".into(),
                ));
            };
            len.copy_from_slice(first);
            let mut left = u64::from_be_bytes(len).min(MAX_RESPONSE);
            let Some(send) = send.as_mut() else {
                return Ok(());
            };
            let data = pattern();
            while left > 0 {
                let n = left.min(data.len() as u64) as usize;
                send.write_chunk(data.slice(..n))
                    .await
                    .map_err(|_| RecvError::Lost(quinn::ConnectionError::LocallyClosed))?;
                left -= n as u64;
            }
            let _ = send.finish();
            Ok(())
        }
        _ => Err(RecvError::Refuse(
            ErrorCode::Unsupported,
            "not a bench stream".into(),
        )),
    }
}

fn lost(e: quinn::ReadError) -> RecvError {
    match e {
        quinn::ReadError::Reset(code) => RecvError::Cancelled(code),
        quinn::ReadError::ConnectionLost(e) => RecvError::Lost(e),
        _ => RecvError::Lost(quinn::ConnectionError::LocallyClosed),
    }
}

async fn ack(send: &mut Option<SendStream>, bytes: u64, digest: [u8; 32]) -> Result<(), RecvError> {
    if let Some(send) = send.as_mut() {
        let ack = Ack {
            status: AckStatus::Stored,
            bytes,
            digest,
        };
        transfer::send_ack(send, &ack, None)
            .await
            .map_err(|_| RecvError::Lost(quinn::ConnectionError::LocallyClosed))?;
    }
    Ok(())
}

/// Sends `total` bytes to be thrown away; with `hashed`, through the real sender path
/// (hashed with BLAKE3, the default digest, on a blocking thread) and checked against
/// the peer's digest.
pub async fn discard(conn: &quinn::Connection, total: u64, hashed: bool) -> Result<u64, SendError> {
    let header = Header {
        kind: if hashed {
            Kind::DiscardHashed
        } else {
            Kind::Discard
        },
        id: MessageId::random(),
        length: Some(total),
        name: String::new(),
        // Unhashed data needs no algorithm: a version 1 header, which every listener
        // reads.
        digest: hashed.then_some(Algorithm::Blake3),
        skip_same: None,
        resume: None,
    };
    if hashed {
        let source = transfer::Source::pipe(PatternReader::new(total));
        let sent =
            transfer::send_message(conn, &header, source, transfer::Mode::Bidi, &|_| {}).await?;
        return Ok(sent.bytes);
    }
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| SendError::Connection(classify(e)))?;
    send.write_chunk(Bytes::from(header.encode())).await?;
    write_pattern(&mut send, total).await?;
    let _ = send.finish();
    let (ack, _) = framing::read_ack(&mut recv).await?;
    if ack.bytes != total {
        return Err(SendError::Integrity {
            sent: total,
            sent_digest: None,
            stored: ack.bytes,
            stored_digest: None,
        });
    }
    Ok(total)
}

async fn write_pattern(send: &mut SendStream, total: u64) -> Result<(), SendError> {
    let data = pattern();
    let mut left = total;
    while left > 0 {
        let n = left.min(data.len() as u64) as usize;
        send.write_chunk(data.slice(..n)).await?;
        left -= n as u64;
    }
    Ok(())
}

/// One round trip: a `request`-byte request (at least 8) answered with `response` bytes.
pub async fn request(
    conn: &quinn::Connection,
    request: usize,
    response: u64,
) -> Result<(), SendError> {
    let header = Header {
        kind: Kind::Request,
        id: MessageId::random(),
        length: Some(request.max(8) as u64),
        name: String::new(),
        digest: None,
        skip_same: None,
        resume: None,
    };
    let mut out = header.encode();
    out.extend_from_slice(&response.to_be_bytes());
    out.resize(out.len() + request.saturating_sub(8), 0);
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| SendError::Connection(classify(e)))?;
    send.write_chunk(Bytes::from(out)).await?;
    let _ = send.finish();
    let mut got = 0u64;
    loop {
        match recv.read_chunk(usize::MAX, false).await {
            Ok(Some(chunk)) => got += chunk.bytes.len() as u64,
            Ok(None) => break,
            Err(quinn::ReadError::Reset(code)) => return Err(SendError::Refused(code)),
            Err(quinn::ReadError::ConnectionLost(e)) => {
                return Err(SendError::Connection(classify(e)))
            }
            Err(_) => {
                return Err(SendError::Connection(classify(
                    quinn::ConnectionError::LocallyClosed,
                )))
            }
        }
    }
    if got != response.min(MAX_RESPONSE) {
        return Err(SendError::Integrity {
            sent: response,
            sent_digest: None,
            stored: got,
            stored_digest: None,
        });
    }
    Ok(())
}

/// The raw baseline, sender half: `total` bytes on a unidirectional stream, no header,
/// no ack; done when the peer's transport acknowledged them.
pub async fn raw_send(conn: &quinn::Connection, total: u64) -> Result<(), SendError> {
    let mut send = conn
        .open_uni()
        .await
        .map_err(|e| SendError::Connection(classify(e)))?;
    write_pattern(&mut send, total).await?;
    let _ = send.finish();
    match send.stopped().await {
        Ok(_) => Ok(()),
        Err(quinn::StoppedError::ConnectionLost(e)) => Err(SendError::Connection(classify(e))),
        Err(_) => Err(SendError::Connection(classify(
            quinn::ConnectionError::LocallyClosed,
        ))),
    }
}

/// The raw baseline, receiver half: reads a unidirectional stream to its end.
pub(crate) async fn raw_receive(mut recv: RecvStream) -> u64 {
    let mut bytes = 0;
    while let Ok(Some(chunk)) = recv.read_chunk(usize::MAX, false).await {
        bytes += chunk.bytes.len() as u64;
    }
    bytes
}

/// A reader of `total` pattern bytes, for the hashed path's reader thread.
struct PatternReader {
    left: u64,
    data: Bytes,
    offset: usize,
}

impl PatternReader {
    fn new(total: u64) -> Self {
        Self {
            left: total,
            data: pattern(),
            offset: 0,
        }
    }
}

impl std::io::Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.left.min(buf.len() as u64) as usize).min(self.data.len() - self.offset);
        buf[..n].copy_from_slice(&self.data[self.offset..self.offset + n]);
        self.offset = (self.offset + n) % self.data.len();
        self.left -= n as u64;
        Ok(n)
    }
}
