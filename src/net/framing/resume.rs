//! The resume exchange's frames: the sender's offer (a header extension), the
//! receiver's answer (before the payload), and the sender's start (before the payload).
//!
//! What could go wrong, and how it is prevented:
//! - *A receiver that does not know the offer* (before resume): the offer is an
//!   extension field, which it skips; it never answers, so the sender waits at most
//!   [`ANSWER_WAIT`] and then sends the plain payload (no start frame).
//! - *An answer that arrives after the sender stopped waiting*: the sender has sent
//!   the plain payload; the receiver sees no start magic in the first bytes and takes
//!   them as payload from byte 0 ([`Start::parse`]); the sender skips the late answer
//!   in front of the ack ([`skip_answer`]). A payload that opens with the magic (a
//!   file beginning `QP2S`) is told from a start by what follows
//!   (`net::transfer::resume::read_start`).
//! - *A start that claims a prefix the receiver does not hold*: it carries the digest
//!   of the sender's first `from` bytes, which the receiver compares with its own
//!   before it writes a byte more (`net::transfer::resume`).

use std::time::Duration;

use super::FrameError;

/// Extension type of the resume offer in the header.
pub(crate) const EXT_RESUME: u8 = 2;
/// Length of the offer's value: modification time (u64 ns) and the head digest.
pub(crate) const OFFER_LEN: usize = 8 + 32;
/// How many bytes of the file's start the offer's head digest covers.
pub const HEAD_LEN: u64 = 64 * 1024;
/// How long a sender waits for the answer before it sends the payload without resume.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);

const ANSWER_MAGIC: [u8; 4] = *b"QP2R";
const START_MAGIC: [u8; 4] = *b"QP2S";
const RESUME_VERSION: u8 = 1;
/// Size of an encoded [`Answer`].
pub const ANSWER_LEN: usize = 4 + 1 + 1 + 8;
/// Size of an encoded [`Start`].
pub const START_LEN: usize = 4 + 8 + 32;

/// What identifies the content offered for resume, beside the sender, the name and the
/// length in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Offer {
    /// The file's modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u64,
    /// The digest, in the header's algorithm, of the file's first [`HEAD_LEN`] bytes.
    pub head: [u8; 32],
}

impl Offer {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(EXT_RESUME);
        out.extend_from_slice(&(OFFER_LEN as u16).to_be_bytes());
        out.extend_from_slice(&self.mtime_ns.to_be_bytes());
        out.extend_from_slice(&self.head);
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, FrameError> {
        if value.len() != OFFER_LEN {
            return Err(FrameError::Truncated);
        }
        Ok(Self {
            mtime_ns: u64::from_be_bytes(value[..8].try_into().expect("8 bytes")),
            head: value[8..].try_into().expect("32 bytes"),
        })
    }
}

/// What the receiver holds of an offered file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing: send from the start.
    Nothing,
    /// The first `held` bytes (the answer's count).
    Prefix,
    /// It held a partial of this name from this sender, but of other content (the
    /// source changed): discarded; send from the start.
    Changed,
}

/// The receiver's answer to an offer, before any payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// What it holds.
    pub status: Held,
    /// How many bytes (0 unless `Prefix`).
    pub held: u64,
}

impl Answer {
    /// The encoding.
    pub fn encode(&self) -> [u8; ANSWER_LEN] {
        let mut out = [0u8; ANSWER_LEN];
        out[..4].copy_from_slice(&ANSWER_MAGIC);
        out[4] = RESUME_VERSION;
        out[5] = match self.status {
            Held::Nothing => 0,
            Held::Prefix => 1,
            Held::Changed => 2,
        };
        out[6..].copy_from_slice(&self.held.to_be_bytes());
        out
    }

    /// Decodes an answer.
    pub fn decode(buf: &[u8; ANSWER_LEN]) -> Result<Self, FrameError> {
        if buf[..4] != ANSWER_MAGIC || buf[4] != RESUME_VERSION {
            return Err(FrameError::BadAck);
        }
        let held = u64::from_be_bytes(buf[6..].try_into().expect("8 bytes"));
        let status = match buf[5] {
            0 => Held::Nothing,
            1 => Held::Prefix,
            2 => Held::Changed,
            _ => return Err(FrameError::BadAck),
        };
        if status != Held::Prefix && held != 0 {
            return Err(FrameError::BadAck);
        }
        Ok(Self { status, held })
    }
}

/// The sender's choice, before the payload: where it starts, and the digest of what
/// it claims the receiver holds (its own first `from` bytes; all zero when `from` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The payload that follows starts at this offset of the file.
    pub from: u64,
    /// The digest of the sender's first `from` bytes, in the header's algorithm.
    pub prefix: [u8; 32],
}

impl Start {
    /// The encoding.
    pub fn encode(&self) -> [u8; START_LEN] {
        let mut out = [0u8; START_LEN];
        out[..4].copy_from_slice(&START_MAGIC);
        out[4..12].copy_from_slice(&self.from.to_be_bytes());
        out[12..].copy_from_slice(&self.prefix);
        out
    }

    /// The start frame at the front of `buf` ([`START_LEN`] bytes), or `None` when
    /// `buf` does not open with one: a sender that stopped waiting for the answer sent
    /// its payload from byte 0 without it.
    pub fn parse(buf: &[u8; START_LEN]) -> Option<Self> {
        if buf[..4] != START_MAGIC {
            return None;
        }
        Some(Self {
            from: u64::from_be_bytes(buf[4..12].try_into().expect("8 bytes")),
            prefix: buf[12..].try_into().expect("32 bytes"),
        })
    }
}

/// Whether `buf` (the first bytes of what the receiver wrote back) opens with a resume
/// answer: a sender that stopped waiting for it finds it in front of the ack.
pub fn skip_answer(buf: &[u8]) -> bool {
    buf.len() >= 4 && buf[..4] == ANSWER_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_garbage() {
        for answer in [
            Answer {
                status: Held::Nothing,
                held: 0,
            },
            Answer {
                status: Held::Prefix,
                held: 1 << 40,
            },
            Answer {
                status: Held::Changed,
                held: 0,
            },
        ] {
            assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
        }
        let mut bad = Answer {
            status: Held::Nothing,
            held: 5,
        }
        .encode();
        assert_eq!(Answer::decode(&bad), Err(FrameError::BadAck));
        bad[5] = 9;
        assert_eq!(Answer::decode(&bad), Err(FrameError::BadAck));
        let start = Start {
            from: 12345,
            prefix: [4; 32],
        };
        assert_eq!(Start::parse(&start.encode()), Some(start));
        assert_eq!(Start::parse(&[0x51; START_LEN]), None);
        let offer = Offer {
            mtime_ns: 99,
            head: [1; 32],
        };
        let mut out = Vec::new();
        offer.encode(&mut out);
        assert_eq!(out[0], EXT_RESUME);
        assert_eq!(&out[1..3], &[0, 40]);
        assert_eq!(Offer::decode(&out[3..]), Ok(offer));
        assert_eq!(Offer::decode(&out[4..]), Err(FrameError::Truncated));
    }
}
