//! The bytes of the wire protocol: one message per QUIC stream (PROTOCOL.md).
//!
//! A stream opens with a header: an 8-byte prefix (magic `QP2P`, version, kind, and the
//! length of the header body) and a body (16-byte message id, flags, declared payload
//! length, name). The payload follows until the stream's FIN. On a bidirectional stream
//! the receiver answers with a fixed-size [`Ack`]: status, bytes stored and the SHA-256
//! of what it stored. Everything that goes wrong is a stream reset or stop with one of
//! the [`ErrorCode`]s.
//!
//! What could go wrong, and how it is prevented:
//! - *A peer makes us allocate what it likes* (the qp2p crate trusted a 32-bit header
//!   length and could be made to allocate 4 GiB): the body length is 16 bits and is
//!   checked against [`MAX_HEADER_LEN`] before a buffer exists; names are bounded by it.
//! - *A peer declares one length and sends another*: the declared length is a claim,
//!   checked by the receiver against what actually arrives (see `transfer`).
//! - *A malformed header takes down the connection*: decoding errors are values, and the
//!   caller resets that one stream with the matching [`ErrorCode`].
//! - *Unknown future fields*: bytes after the name inside the declared body length are
//!   ignored, so a later version can add fields without breaking version 1 receivers.

use bytes::{Bytes, BytesMut};
use quinn::VarInt;

/// The first four bytes of every stream.
pub const MAGIC: [u8; 4] = *b"QP2P";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Size of the fixed prefix: magic, version, kind, body length (u16).
pub const PREFIX_LEN: usize = 8;
/// The largest header body accepted (and sent): 8 KiB.
pub const MAX_HEADER_LEN: usize = 8 * 1024;
/// Size of the fixed part of a header body: id, flags, length, name length.
const BODY_FIXED_LEN: usize = 16 + 1 + 8 + 2;
/// The longest name that fits in a header.
pub const MAX_NAME_LEN: usize = MAX_HEADER_LEN - BODY_FIXED_LEN;
/// Size of an encoded [`Ack`].
pub const ACK_LEN: usize = 4 + 1 + 1 + 8 + 32;
const ACK_MAGIC: [u8; 4] = *b"QP2A";
const FLAG_LENGTH_KNOWN: u8 = 0x01;

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A named payload to be stored by the receiver.
    Message,
    /// A reachability probe: a small bounded request answered on the same stream
    /// (`probe`, PROTOCOL.md "Probes").
    Probe,
    /// Benchmark data: read and thrown away, acked with the byte count (`bench`).
    Discard,
    /// Benchmark data: hashed, thrown away, acked with byte count and SHA-256.
    DiscardHashed,
    /// Benchmark round trip: answered with as many bytes as the request asks for.
    Request,
    /// A short text for the person at the listener (`send --text`): shown, not
    /// stored; at most [`MAX_TEXT_LEN`] bytes of UTF-8.
    Text,
    /// Introductions through NAT: registration with an introducer, a request for an
    /// introduction, and the introducer's punch order to a registered listener
    /// (`introducer`, PROTOCOL.md "Introductions").
    Introduce,
}

/// The longest text a [`Kind::Text`] message carries.
pub const MAX_TEXT_LEN: u64 = 64 * 1024;

impl Kind {
    fn to_byte(self) -> u8 {
        match self {
            Kind::Message => 1,
            Kind::Probe => 2,
            Kind::Discard => 3,
            Kind::DiscardHashed => 4,
            Kind::Request => 5,
            Kind::Text => 6,
            Kind::Introduce => 7,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Kind::Message),
            2 => Some(Kind::Probe),
            3 => Some(Kind::Discard),
            4 => Some(Kind::DiscardHashed),
            5 => Some(Kind::Request),
            6 => Some(Kind::Text),
            7 => Some(Kind::Introduce),
            _ => None,
        }
    }
}

/// A random 16-byte message id; the receiver drops a message whose id it has stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

/// The header that opens a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// What the stream carries.
    pub kind: Kind,
    /// Identifies the message across retries.
    pub id: MessageId,
    /// The payload length, when the sender knows it (not for stdin).
    pub length: Option<u64>,
    /// The name the sender proposes; the receiver never uses it unchecked.
    pub name: String,
    /// `send --skip-same`: the SHA-256 of the whole payload, sent ahead so that a
    /// receiver already holding that content under the name answers
    /// [`AckStatus::Present`] instead of taking it again. An extension field after the
    /// name, which version 1 receivers without it ignore.
    pub skip_same: Option<[u8; 32]>,
}

/// Extension field types in the header body after the name (type u8, length u16,
/// value); a receiver skips types it does not know.
const EXT_SKIP_SAME: u8 = 1;

/// Why a header or ack could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream does not start with the qp2p magic.
    #[error("not a qp2p stream (bad magic)")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A kind this build does not know.
    #[error("unknown stream kind {0}")]
    UnknownKind(u8),
    /// The header body is larger than [`MAX_HEADER_LEN`].
    #[error("header of {0} bytes exceeds the limit of {MAX_HEADER_LEN}")]
    TooLarge(usize),
    /// The header body is shorter than its fields.
    #[error("truncated header")]
    Truncated,
    /// The name is not UTF-8.
    #[error("name is not valid UTF-8")]
    BadName,
    /// The stream ended before the header or ack was complete.
    #[error("stream ended inside the header")]
    UnexpectedEnd,
    /// An ack with an unknown status or bad magic.
    #[error("malformed acknowledgement")]
    BadAck,
}

impl FrameError {
    /// The stream error code a receiver answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge(_) => ErrorCode::HeaderTooLarge,
            FrameError::UnsupportedVersion(_) | FrameError::UnknownKind(_) => {
                ErrorCode::Unsupported
            }
            _ => ErrorCode::BadHeader,
        }
    }
}

impl Header {
    /// The header bytes: prefix and body.
    ///
    /// Names longer than [`MAX_NAME_LEN`] are the caller's error: they are cut at a
    /// character boundary so the header stays within bounds.
    pub fn encode(&self) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(digest) = &self.skip_same {
            ext.push(EXT_SKIP_SAME);
            ext.extend_from_slice(&(digest.len() as u16).to_be_bytes());
            ext.extend_from_slice(digest);
        }
        let max_name = MAX_NAME_LEN - ext.len();
        let mut name = self.name.as_str();
        while name.len() > max_name {
            let mut cut = max_name;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name = &name[..cut];
        }
        let body_len = BODY_FIXED_LEN + name.len() + ext.len();
        let mut out = Vec::with_capacity(PREFIX_LEN + body_len);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind.to_byte());
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        out.extend_from_slice(&self.id.0);
        out.push(if self.length.is_some() {
            FLAG_LENGTH_KNOWN
        } else {
            0
        });
        out.extend_from_slice(&self.length.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&ext);
        out
    }

    /// Checks the prefix and returns the kind and the body length to read next.
    pub fn decode_prefix(prefix: &[u8; PREFIX_LEN]) -> Result<(Kind, usize), FrameError> {
        if prefix[..4] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        if prefix[4] != VERSION {
            return Err(FrameError::UnsupportedVersion(prefix[4]));
        }
        let kind = Kind::from_byte(prefix[5]).ok_or(FrameError::UnknownKind(prefix[5]))?;
        let len = u16::from_be_bytes([prefix[6], prefix[7]]) as usize;
        if len > MAX_HEADER_LEN {
            return Err(FrameError::TooLarge(len));
        }
        if len < BODY_FIXED_LEN {
            return Err(FrameError::Truncated);
        }
        Ok((kind, len))
    }

    /// Decodes a header body of the given kind.
    pub fn decode_body(kind: Kind, body: &[u8]) -> Result<Self, FrameError> {
        if body.len() > MAX_HEADER_LEN {
            return Err(FrameError::TooLarge(body.len()));
        }
        if body.len() < BODY_FIXED_LEN {
            return Err(FrameError::Truncated);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&body[..16]);
        let flags = body[16];
        let mut len = [0u8; 8];
        len.copy_from_slice(&body[17..25]);
        let name_len = u16::from_be_bytes([body[25], body[26]]) as usize;
        let name = body
            .get(BODY_FIXED_LEN..BODY_FIXED_LEN + name_len)
            .ok_or(FrameError::Truncated)?;
        let name = std::str::from_utf8(name).map_err(|_| FrameError::BadName)?;
        let mut skip_same = None;
        let mut ext = &body[BODY_FIXED_LEN + name_len..];
        while !ext.is_empty() {
            let [kind, a, b, rest @ ..] = ext else {
                return Err(FrameError::Truncated);
            };
            let len = u16::from_be_bytes([*a, *b]) as usize;
            let value = rest.get(..len).ok_or(FrameError::Truncated)?;
            if *kind == EXT_SKIP_SAME {
                skip_same = Some(value.try_into().map_err(|_| FrameError::Truncated)?);
            }
            ext = &rest[len..];
        }
        Ok(Self {
            kind,
            id: MessageId(id),
            length: (flags & FLAG_LENGTH_KNOWN != 0).then(|| u64::from_be_bytes(len)),
            name: name.to_string(),
            skip_same,
        })
    }

    /// Decodes a whole header (prefix and body) from a buffer; trailing bytes after the
    /// declared body are not looked at. Used by tests and the fuzzer; streams use
    /// [`read_header`].
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        let prefix: &[u8; PREFIX_LEN] = buf
            .get(..PREFIX_LEN)
            .and_then(|p| p.try_into().ok())
            .ok_or(FrameError::UnexpectedEnd)?;
        let (kind, len) = Self::decode_prefix(prefix)?;
        let body = buf
            .get(PREFIX_LEN..PREFIX_LEN + len)
            .ok_or(FrameError::UnexpectedEnd)?;
        Self::decode_body(kind, body)
    }
}

/// Reads and decodes the header at the start of a stream; returns it with the payload
/// bytes that arrived in the same chunk (for a small message usually the whole
/// payload), so that they need no further read and no copy.
///
/// Holds at most [`MAX_HEADER_LEN`] bytes of header in its own buffer, and only after
/// the prefix has been checked; the first chunk is quinn's buffer, bounded by what the
/// flow-control window let in. Not cancel-safe: bytes read before cancellation are
/// lost, so a caller that times it out must reset the stream.
pub async fn read_header(recv: &mut quinn::RecvStream) -> Result<(Header, Bytes), ReadError> {
    let data = gather(recv, Bytes::new(), PREFIX_LEN).await?;
    let prefix: &[u8; PREFIX_LEN] = data[..PREFIX_LEN].try_into().expect("PREFIX_LEN bytes");
    let (kind, len) = Header::decode_prefix(prefix)?;
    let end = PREFIX_LEN + len;
    let data = gather(recv, data, end).await?;
    let header = Header::decode_body(kind, &data[PREFIX_LEN..end])?;
    Ok((header, data.slice(end..)))
}

/// `data` extended to at least `n` bytes. The first read takes a whole chunk (the
/// common case: it holds the header and more); a header split across chunks is
/// gathered into a buffer of exactly `n` bytes.
async fn gather(recv: &mut quinn::RecvStream, data: Bytes, n: usize) -> Result<Bytes, ReadError> {
    if data.len() >= n {
        return Ok(data);
    }
    let data = if data.is_empty() {
        let chunk = next_chunk(recv, usize::MAX).await?;
        if chunk.len() >= n {
            return Ok(chunk);
        }
        chunk
    } else {
        data
    };
    let mut buf = BytesMut::with_capacity(n);
    buf.extend_from_slice(&data);
    while buf.len() < n {
        buf.extend_from_slice(&next_chunk(recv, n - buf.len()).await?);
    }
    Ok(buf.freeze())
}

async fn next_chunk(recv: &mut quinn::RecvStream, max: usize) -> Result<Bytes, ReadError> {
    match recv.read_chunk(max, true).await? {
        Some(chunk) => Ok(chunk.bytes),
        None => Err(ReadError::Frame(FrameError::UnexpectedEnd)),
    }
}

/// Reads a stream to its end after `first` (the bytes that came with its header), when
/// it should hold at most `limit` bytes in all: the parts, quinn's own buffers.
pub async fn read_rest(
    recv: &mut quinn::RecvStream,
    first: Bytes,
    limit: usize,
) -> Result<Vec<Bytes>, quinn::ReadToEndError> {
    let mut total = first.len();
    if total > limit {
        return Err(quinn::ReadToEndError::TooLong);
    }
    let mut parts = Vec::with_capacity(2);
    if !first.is_empty() {
        parts.push(first);
    }
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        total += chunk.bytes.len();
        if total > limit {
            return Err(quinn::ReadToEndError::TooLong);
        }
        parts.push(chunk.bytes);
    }
    Ok(parts)
}

async fn read_exact(recv: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), ReadError> {
    recv.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => ReadError::Frame(FrameError::UnexpectedEnd),
        quinn::ReadExactError::ReadError(e) => ReadError::Stream(e),
    })
}

/// Failure to read a header or ack from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes were wrong.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream or connection failed.
    #[error(transparent)]
    Stream(#[from] quinn::ReadError),
}

/// What the receiver did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Stored now.
    Stored,
    /// Stored before under the same message id; not stored again.
    Duplicate,
    /// `--skip-same`: the receiver already holds this content under the name; the
    /// payload was not taken.
    Present,
}

/// The receiver's answer on a bidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// What happened.
    pub status: AckStatus,
    /// Bytes stored.
    pub bytes: u64,
    /// SHA-256 of the bytes stored.
    pub sha256: [u8; 32],
}

impl Ack {
    /// The fixed-size encoding.
    pub fn encode(&self) -> [u8; ACK_LEN] {
        let mut out = [0u8; ACK_LEN];
        out[..4].copy_from_slice(&ACK_MAGIC);
        out[4] = VERSION;
        out[5] = match self.status {
            AckStatus::Stored => 0,
            AckStatus::Duplicate => 1,
            AckStatus::Present => 2,
        };
        out[6..14].copy_from_slice(&self.bytes.to_be_bytes());
        out[14..].copy_from_slice(&self.sha256);
        out
    }

    /// Decodes an ack.
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        let buf: &[u8; ACK_LEN] = buf.try_into().map_err(|_| FrameError::BadAck)?;
        if buf[..4] != ACK_MAGIC {
            return Err(FrameError::BadAck);
        }
        if buf[4] != VERSION {
            return Err(FrameError::UnsupportedVersion(buf[4]));
        }
        let status = match buf[5] {
            0 => AckStatus::Stored,
            1 => AckStatus::Duplicate,
            2 => AckStatus::Present,
            _ => return Err(FrameError::BadAck),
        };
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&buf[6..14]);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&buf[14..]);
        Ok(Self {
            status,
            bytes: u64::from_be_bytes(bytes),
            sha256,
        })
    }
}

/// Reads the ack that ends a bidirectional stream, and the name the receiver stored
/// the message under when it says (the ack's trailer: u16 length, UTF-8, relative to
/// its directory; absent from receivers before it, and for stdout).
pub async fn read_ack(recv: &mut quinn::RecvStream) -> Result<(Ack, Option<String>), ReadError> {
    let mut buf = [0u8; ACK_LEN];
    read_exact(recv, &mut buf).await?;
    let ack = Ack::decode(&buf)?;
    let rest = read_rest(recv, Bytes::new(), 2 + MAX_NAME_LEN)
        .await
        .map_err(|e| match e {
            quinn::ReadToEndError::TooLong => ReadError::Frame(FrameError::BadAck),
            quinn::ReadToEndError::Read(e) => ReadError::Stream(e),
        })?;
    let rest: Vec<u8> = rest.concat();
    Ok((ack, decode_stored_as(&rest)?))
}

/// The ack's trailer: the name the message was stored under.
pub fn encode_stored_as(name: &str) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(MAX_NAME_LEN)];
    let mut out = Vec::with_capacity(2 + name.len());
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name);
    out
}

/// Decodes the ack's trailer; nothing (an older receiver) and a zero length are `None`.
pub fn decode_stored_as(rest: &[u8]) -> Result<Option<String>, FrameError> {
    let [a, b, name @ ..] = rest else {
        return match rest.is_empty() {
            true => Ok(None),
            false => Err(FrameError::BadAck),
        };
    };
    let len = u16::from_be_bytes([*a, *b]) as usize;
    let name = name.get(..len).ok_or(FrameError::BadAck)?;
    let name = std::str::from_utf8(name).map_err(|_| FrameError::BadAck)?;
    Ok((!name.is_empty()).then(|| name.to_string()))
}

/// Application error codes carried by stream resets and stops (PROTOCOL.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// The header could not be parsed.
    BadHeader = 0x01,
    /// The header exceeds [`MAX_HEADER_LEN`].
    HeaderTooLarge = 0x02,
    /// Unsupported version or unknown kind.
    Unsupported = 0x03,
    /// Nothing of the name was safe to use.
    BadName = 0x04,
    /// The message exceeds the receiver's size limit.
    TooLarge = 0x05,
    /// The payload was longer or shorter than declared.
    LengthMismatch = 0x06,
    /// The receiver could not store the message (disk full, I/O error).
    StorageFailed = 0x07,
    /// The receiver is shutting down.
    ShuttingDown = 0x08,
    /// The sender gave up on the message (its source failed).
    Cancelled = 0x09,
    /// The header did not arrive in time.
    HeaderTimeout = 0x0a,
    /// The message was stored before; the ack says so and the payload is not needed.
    Duplicate = 0x0b,
    /// The receiver's disk has less free space than the message needs (refused before
    /// the payload when its length is declared, or the disk filled up during it).
    NoSpace = 0x0c,
    /// The receiver takes no more messages: `listen --once` is serving another sender,
    /// or `--count`/`--once` is reached, or it is stopping. Final: a sender does not
    /// retry.
    NotAccepting = 0x0d,
}

impl ErrorCode {
    /// The code as a QUIC varint.
    pub fn varint(self) -> VarInt {
        VarInt::from_u32(self as u32)
    }

    /// The code for a varint received from a peer, if known.
    pub fn from_varint(v: VarInt) -> Option<Self> {
        use ErrorCode::*;
        Some(match v.into_inner() {
            0x01 => BadHeader,
            0x02 => HeaderTooLarge,
            0x03 => Unsupported,
            0x04 => BadName,
            0x05 => TooLarge,
            0x06 => LengthMismatch,
            0x07 => StorageFailed,
            0x08 => ShuttingDown,
            0x09 => Cancelled,
            0x0a => HeaderTimeout,
            0x0b => Duplicate,
            0x0c => NoSpace,
            0x0d => NotAccepting,
            _ => return None,
        })
    }

    /// What the code means, for error messages.
    pub fn describe(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadHeader => "malformed header",
            HeaderTooLarge => "header too large",
            Unsupported => "unsupported protocol version or stream kind",
            BadName => "bad name: nothing of it is safe to store",
            TooLarge => "message exceeds the receiver's size limit",
            LengthMismatch => "payload length differs from the declared length",
            StorageFailed => "receiver could not store the message",
            ShuttingDown => "receiver is shutting down",
            Cancelled => "sender cancelled the message",
            HeaderTimeout => "header did not arrive in time",
            Duplicate => "message already stored",
            NoSpace => "not enough space on the receiver's disk",
            NotAccepting => "the listener takes no more messages",
        }
    }
}

/// Connection close codes.
pub mod close {
    use quinn::VarInt;
    /// Work done; nothing wrong. From a listener: it takes no more messages
    /// (`--once`/`--count` reached), so a sender does not retry.
    pub const DONE: VarInt = VarInt::from_u32(0);
    /// The process is stopping (Ctrl-C, SIGTERM); the reason says which side and why.
    /// Final: the peer does not retry against it.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(1);
    /// Lost a race-connect, or otherwise not needed.
    pub const CANCELLED: VarInt = VarInt::from_u32(2);
    /// Refused by a limit.
    pub const REFUSED: VarInt = VarInt::from_u32(3);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, length: Option<u64>) -> Header {
        Header {
            kind: Kind::Message,
            id: MessageId([7; 16]),
            length,
            name: name.to_string(),
            skip_same: None,
        }
    }

    #[test]
    fn header_round_trips() {
        for h in [
            header("a.txt", Some(0)),
            header("", None),
            header("dir/ü/ß.bin", Some(u64::MAX)),
        ] {
            assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        }
    }

    #[test]
    fn header_layout_is_as_documented() {
        let bytes = header("ab", Some(258)).encode();
        assert_eq!(&bytes[..4], b"QP2P");
        assert_eq!(bytes[4], 1, "version");
        assert_eq!(bytes[5], 1, "kind");
        assert_eq!(u16::from_be_bytes([bytes[6], bytes[7]]), 29, "body length");
        assert_eq!(&bytes[8..24], &[7; 16], "message id");
        assert_eq!(bytes[24], 1, "flags");
        assert_eq!(&bytes[25..33], &258u64.to_be_bytes());
        assert_eq!(&bytes[33..35], &[0, 2], "name length");
        assert_eq!(&bytes[35..], b"ab");
    }

    #[test]
    fn oversized_header_is_refused_before_allocation() {
        let mut bytes = header("x", None).encode();
        bytes[6..8].copy_from_slice(&((MAX_HEADER_LEN + 1) as u16).to_be_bytes());
        assert_eq!(
            Header::decode(&bytes),
            Err(FrameError::TooLarge(MAX_HEADER_LEN + 1))
        );
        assert_eq!(
            FrameError::TooLarge(0).code(),
            ErrorCode::HeaderTooLarge,
            "documented reset code"
        );
    }

    #[test]
    fn long_names_are_cut_to_fit() {
        let h = header(&"é".repeat(MAX_NAME_LEN), Some(1));
        let decoded = Header::decode(&h.encode()).unwrap();
        assert!(decoded.name.len() <= MAX_NAME_LEN);
        assert!(decoded.name.chars().all(|c| c == 'é'));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(Header::decode(b"GET / HTTP/1.1"), Err(FrameError::BadMagic));
        assert_eq!(Header::decode(b"QP2"), Err(FrameError::UnexpectedEnd));
        let mut bad_name_len = header("ab", None).encode();
        bad_name_len[33..35].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(Header::decode(&bad_name_len), Err(FrameError::Truncated));
        let mut v2 = header("a", None).encode();
        v2[4] = 2;
        assert_eq!(Header::decode(&v2), Err(FrameError::UnsupportedVersion(2)));
        let mut probe = header("", Some(1));
        probe.kind = Kind::Probe;
        assert_eq!(probe.encode()[5], 2, "probe kind byte");
        assert_eq!(Header::decode(&probe.encode()).unwrap(), probe);
        let mut kind = header("a", None).encode();
        kind[5] = 99;
        assert_eq!(Header::decode(&kind), Err(FrameError::UnknownKind(99)));
    }

    #[test]
    fn the_skip_same_extension_round_trips_and_old_receivers_skip_it() {
        let mut h = header("a/b.txt", Some(3));
        h.skip_same = Some([5; 32]);
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes).unwrap(), h);
        // What a version 1 receiver without the extension reads: the name, then
        // bytes it ignores.
        assert_eq!(&bytes[35..42], b"a/b.txt");
        assert_eq!(&bytes[42..45], &[1, 0, 32]);
        // An unknown extension is skipped; a truncated one is an error.
        let mut unknown = header("n", None).encode();
        unknown.extend_from_slice(&[9, 0, 2, 7, 7]);
        let body = (unknown.len() - PREFIX_LEN) as u16;
        unknown[6..8].copy_from_slice(&body.to_be_bytes());
        assert_eq!(Header::decode(&unknown).unwrap(), header("n", None));
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 1);
        let body = (cut.len() - PREFIX_LEN) as u16;
        cut[6..8].copy_from_slice(&body.to_be_bytes());
        assert_eq!(Header::decode(&cut), Err(FrameError::Truncated));
        // A long name leaves room for the extension.
        let mut long = header(&"x".repeat(MAX_NAME_LEN), None);
        long.skip_same = Some([1; 32]);
        let decoded = Header::decode(&long.encode()).unwrap();
        assert_eq!(decoded.skip_same, Some([1; 32]));
    }

    #[test]
    fn the_stored_name_trailer_round_trips() {
        assert_eq!(decode_stored_as(&[]), Ok(None));
        assert_eq!(
            decode_stored_as(&encode_stored_as("d/big.1.bin")),
            Ok(Some("d/big.1.bin".to_string()))
        );
        assert_eq!(decode_stored_as(&encode_stored_as("")), Ok(None));
        assert_eq!(decode_stored_as(&[0, 5, b'a']), Err(FrameError::BadAck));
        assert_eq!(decode_stored_as(&[1]), Err(FrameError::BadAck));
    }

    #[test]
    fn ack_round_trips_and_rejects_garbage() {
        let ack = Ack {
            status: AckStatus::Duplicate,
            bytes: 12345,
            sha256: [9; 32],
        };
        assert_eq!(Ack::decode(&ack.encode()).unwrap(), ack);
        assert_eq!(Ack::decode(&[0; 3]), Err(FrameError::BadAck));
        let mut bad = ack.encode();
        bad[5] = 7;
        assert_eq!(Ack::decode(&bad), Err(FrameError::BadAck));
    }

    #[test]
    fn error_codes_round_trip() {
        for code in 1..=0x0d {
            let c = ErrorCode::from_varint(VarInt::from_u32(code)).unwrap();
            assert_eq!(c.varint().into_inner(), code as u64);
        }
        assert_eq!(ErrorCode::from_varint(VarInt::from_u32(0x99)), None);
    }
}
