//! One message on one stream: the sender's half ([`send_message`], in `send.rs`) and
//! the receiver's half (`receive_payload`, in `receive.rs`).
//!
//! Both halves stream: the payload moves in chunks through a small bounded channel
//! between the QUIC stream and a blocking thread that reads the file (sender) or writes
//! it (receiver) and computes the digest on the way (BLAKE3 unless the header says
//! otherwise, see `digest`). Memory per message is the channel
//! (a few chunks), whatever the size of the file, and hashing and disk I/O run beside
//! the network task instead of inside it.
//!
//! What could go wrong, and how it is prevented (each half tells its own cases in
//! detail in its file):
//! - *Silent corruption between the two files*: the ack carries the receiver's own
//!   digest and byte count; the sender compares them with what it read.
//! - *A listener too old for the header*: a version 1 listener resets a version 2
//!   header with `UNSUPPORTED`; [`send_message`] reports that as
//!   [`SendError::OlderPeer`], naming the algorithm, not as a bare refusal.
//! - The receiver's cases: a peer that lies about the length, a message larger than
//!   allowed (the stream stopped with [`ErrorCode::LengthMismatch`] or
//!   [`ErrorCode::TooLarge`], nothing stored).
//! - The sender's cases: a source that changes while being sent, sending a duplicate
//!   in full.
//! - *A retry that resends what already arrived*: a regular file is offered for resume
//!   (`resume.rs`): the receiver says how much of it it holds, the sender proves its
//!   prefix by digest and sends the rest; both ends' digests still cover the whole
//!   file.

use quinn::{ReadError as QuinnReadError, VarInt, WriteError};

use super::digest::{Algorithm, Digest};
use super::endpoint::{classify, ConnectError};
use super::framing::{self, ErrorCode, FrameError, ReadError};
use super::retry::Retryable;

mod receive;
pub(crate) mod resume;
mod send;

pub(crate) use receive::{receive_payload, receive_payload_hashed, send_ack};
pub use receive::{refuse, Limits, Received};
pub use send::{send_message, Pipe, Sent, Source};

/// Size of the chunks read from a source.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the I/O thread and the stream.
const DEPTH: usize = 8;
/// What one message may hold in memory at most while it is sent: the chunks in flight
/// between its reading thread and the stream.
pub const READ_AHEAD: u64 = (CHUNK * DEPTH) as u64;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bidirectional stream; done when the receiver acked bytes and hash.
    Bidi,
    /// Unidirectional stream; done when the transport delivered it.
    Uni,
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
    #[error(
        "integrity check failed: sent {sent} bytes{}, peer stored {stored} bytes{}",
        in_parens(.sent_digest),
        in_parens(.stored_digest)
    )]
    Integrity {
        /// Bytes sent.
        sent: u64,
        /// Digest of what was sent (none for bench data, which only counts bytes).
        sent_digest: Option<Digest>,
        /// Bytes the peer stored.
        stored: u64,
        /// Digest of what the peer stored, in the header's algorithm.
        stored_digest: Option<Digest>,
    },
    /// The listener refused a version 2 header as unsupported: it runs a qp2p from
    /// before digests were named, which takes SHA-256 in version 1 headers only.
    #[error(
        "the listener runs an older qp2p: it does not take {0} digests (protocol header version 2) and refused the message"
    )]
    OlderPeer(Algorithm),
    /// The receiver's answer was malformed.
    #[error("malformed answer from peer: {0}")]
    Protocol(FrameError),
}

impl Retryable for SendError {
    fn is_retryable(&self) -> bool {
        match self {
            SendError::Connection(e) => e.is_retryable(),
            // The receiver discarded a partial that did not match: the next try finds
            // none and sends the whole file.
            SendError::Refused(code) => *code == ErrorCode::PrefixMismatch.varint(),
            // A receiver that said no (full, stopping, takes no more) means it: a retry
            // would meet the same answer, and the user should hear it at once.
            _ => false,
        }
    }
}

/// ` (blake3 HEX)`, or nothing.
fn in_parens(digest: &Option<Digest>) -> String {
    digest.map(|d| format!(" ({d})")).unwrap_or_default()
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

/// Below this size a payload is read, hashed and written in the network task itself:
/// handing a few KiB to a thread and back costs more than the work.
pub const INLINE: u64 = 64 * 1024;

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
    /// The receiver stopped waiting for the payload (a newer try took its place).
    #[error("stopped: a newer try took its place")]
    Stopped,
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
pub(crate) fn is_out_of_space(e: &std::io::Error) -> bool {
    // ENOSPC and EDQUOT on unix, ERROR_DISK_FULL and ERROR_DISK_QUOTA_EXCEEDED on Windows.
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}
