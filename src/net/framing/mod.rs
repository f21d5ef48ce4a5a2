//! The bytes of the wire protocol: one message per QUIC stream (PROTOCOL.md).
//!
//! A stream opens with a header: an 8-byte prefix (magic `QP2P`, version, kind, and the
//! length of the header body) and a body (16-byte message id, flags, declared payload
//! length, in version 2 the digest algorithm, name). The payload follows until the
//! stream's FIN. On a bidirectional stream the receiver answers with a fixed-size
//! [`Ack`]: status, bytes stored and the digest of what it stored, in the algorithm the
//! header named (BLAKE3 by default, SHA-256 for a version 1 header). Everything that
//! goes wrong is a stream reset or stop with one of the [`ErrorCode`]s.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | the constants and limits, stream kinds, message ids, decoding errors |
//! | `header.rs` | the [`Header`]: encoding, decoding, and reading it from a stream |
//! | `ack.rs` | the [`Ack`] and its trailer, the name the message was stored under |
//! | `codes.rs` | the stream [`ErrorCode`]s and the connection [`close`] codes |
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
//! - *Two ends hashing differently*: a header that names an algorithm other than
//!   SHA-256 is written in version 2, which a version 1 receiver refuses (`UNSUPPORTED`)
//!   before any payload, rather than acking a SHA-256 the sender would call corrupt;
//!   SHA-256 headers stay version 1, so `--digest sha256` reaches every listener.

/// The first four bytes of every stream.
pub(crate) const MAGIC: [u8; 4] = *b"QP2P";
/// The newest header version this build speaks: 2, whose body names the digest
/// algorithm. Version 1 headers (SHA-256 implied) are still read, and still written
/// for SHA-256 so that older listeners take them.
pub const VERSION: u8 = 2;
/// The header version without the algorithm byte: the digest is SHA-256.
pub const VERSION_1: u8 = 1;
/// The ack's version: unchanged by header version 2 (its digest is in the header's
/// algorithm).
const ACK_VERSION: u8 = 1;
/// Size of the fixed prefix: magic, version, kind, body length (u16).
pub const PREFIX_LEN: usize = 8;
/// The largest header body accepted (and sent): 8 KiB.
pub const MAX_HEADER_LEN: usize = 8 * 1024;
/// Size of the fixed part of a version 1 header body: id, flags, length, name length.
const BODY_FIXED_LEN: usize = 16 + 1 + 8 + 2;
/// The longest name that fits in a header (version 1; version 2 holds one byte less,
/// its algorithm byte).
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
    /// Benchmark data: hashed, thrown away, acked with byte count and digest.
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
    /// A version 2 header names a digest algorithm this build does not know.
    #[error("unknown digest algorithm {0}")]
    UnknownDigest(u8),
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
            FrameError::UnsupportedVersion(_)
            | FrameError::UnknownKind(_)
            | FrameError::UnknownDigest(_) => ErrorCode::Unsupported,
            _ => ErrorCode::BadHeader,
        }
    }
}

mod ack;
mod codes;
mod header;
pub mod resume;

pub(crate) use ack::{encode_stored_as, read_ack_after};
pub use ack::{read_ack, Ack, AckStatus};
pub use codes::{close, ErrorCode};
pub(crate) use header::{read_exact, read_rest};
pub use header::{read_header, Header, ReadError};
