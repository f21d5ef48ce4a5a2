//! The codes a stream is reset or stopped with, and a connection closed with.

use quinn::VarInt;

/// Application error codes carried by stream resets and stops (PROTOCOL.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// The header could not be parsed.
    BadHeader = 0x01,
    /// The header exceeds [`MAX_HEADER_LEN`](super::MAX_HEADER_LEN).
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
    /// A resumed message's start claims a prefix whose digest is not that of the
    /// bytes the receiver holds: the partial is discarded, and the sender's next try
    /// starts from byte 0.
    PrefixMismatch = 0x0e,
}

impl ErrorCode {
    /// The code as a QUIC varint.
    pub(crate) fn varint(self) -> VarInt {
        VarInt::from_u32(self as u32)
    }

    /// The code for a varint received from a peer, if known.
    pub(crate) fn from_varint(v: VarInt) -> Option<Self> {
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
            0x0e => PrefixMismatch,
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
            PrefixMismatch => "the receiver's partial copy differs from the file's start; it was discarded, the next try sends the whole file",
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

    #[test]
    fn error_codes_round_trip() {
        for code in 1..=0x0e {
            let c = ErrorCode::from_varint(VarInt::from_u32(code)).unwrap();
            assert_eq!(c.varint().into_inner(), code as u64);
        }
        assert_eq!(ErrorCode::from_varint(VarInt::from_u32(0x99)), None);
    }
}
