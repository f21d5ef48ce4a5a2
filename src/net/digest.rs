//! The digest of a payload: which algorithm, and its 32 bytes.
//!
//! Every message is hashed at both ends on the I/O threads that read and write it, and
//! the receiver's ack carries the digest of what it stored (PROTOCOL.md). The default
//! is [`Algorithm::Blake3`] (what `b3sum` prints, about twice as fast as SHA-256 on one
//! core); [`Algorithm::Sha256`] is there for people who compare with `sha256sum`, and is
//! what version 1 headers mean.
//!
//! What could go wrong, and how it is prevented:
//! - *Two ends hashing with different algorithms* (a new sender, an old listener): the
//!   header names the algorithm, and a header naming anything but SHA-256 is written in
//!   version 2, which an older listener refuses with `UNSUPPORTED` before it reads a
//!   payload byte; the sender turns that refusal into a clear error (`OlderPeer`,
//!   in `transfer`) instead of an integrity failure.
//! - *A value shown without its algorithm* (a BLAKE3 hex checked with `sha256sum`):
//!   [`Digest`] carries both and its `Display` is `ALGORITHM HEX`.
//! - *An unknown algorithm byte from the wire*: [`Algorithm::from_byte`] answers `None`
//!   and the header decoder refuses the header (`UNSUPPORTED`).
//! - *BLAKE3 spawning threads behind our back*: only `Hasher::update` is used, never
//!   the `rayon` variants, so each digest costs one core, the I/O thread's.
//! - *BLAKE3 at a fraction of its speed on odd-sized pieces*: its SIMD code hashes 16
//!   chunks of 1 KiB side by side only where the input sits at a multiple of 16 chunks
//!   from the start; fed the pieces QUIC delivers (about 65,000 bytes each, never a
//!   multiple of 1 KiB), much of every piece went through the narrow path and hashing
//!   cost the receiver a fifth more than at the sender, which feeds it 256 KiB reads.
//!   [`Hasher`] hands BLAKE3 whole [`BLAKE3_BLOCK`]s at aligned offsets and keeps the
//!   odd tail of each piece (less than 16 KiB, copied while hot) for the next one.

use std::io::Read;

/// A digest algorithm the protocol can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// BLAKE3 with its default 32-byte output (`b3sum`): the default.
    #[default]
    Blake3,
    /// SHA-256 (`sha256sum`): on request, and what version 1 headers mean.
    Sha256,
}

impl Algorithm {
    /// Every algorithm, in the order the wire numbers them.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Blake3];

    /// The name in reports, JSON and on the command line: `blake3`, `sha256`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
        }
    }

    /// The byte that names it in a version 2 header.
    pub fn to_byte(self) -> u8 {
        match self {
            Algorithm::Sha256 => 1,
            Algorithm::Blake3 => 2,
        }
    }

    /// The algorithm a header byte names, if this build knows it.
    pub fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.to_byte() == b)
    }

    /// A fresh hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Blake3 => Hasher::Blake3(Box::default()),
            Algorithm::Sha256 => Hasher::Sha256(Default::default()),
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.finalize()
    }

    /// The digest of a whole file, read through once (blocking: call it off the
    /// runtime's threads). `send --skip-same` hashes what it will send with it, and
    /// the receiver what it already holds.
    pub fn file_digest(self, path: &std::path::Path) -> std::io::Result<Digest> {
        self.reader_digest(std::fs::File::open(path)?)
    }

    /// The digest of everything `reader` yields.
    pub fn reader_digest(self, mut reader: impl Read) -> std::io::Result<Digest> {
        let mut hasher = self.hasher();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(hasher.finalize()),
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a known digest algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown digest algorithm {0:?} (known: blake3, sha256)")]
pub struct UnknownAlgorithm(pub String);

impl std::str::FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

/// A digest: its algorithm and its 32 bytes (both algorithms give 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    /// How it was computed.
    pub algorithm: Algorithm,
    /// The value.
    pub bytes: [u8; 32],
}

impl Digest {
    /// The value in lowercase hex, as `b3sum` and `sha256sum` print it.
    pub fn hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.bytes)
    }
}

/// `blake3 HEX`, `sha256 HEX`.
impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.algorithm, self.hex())
    }
}

/// What BLAKE3 is handed at a time (but at the end): 16 of its 1 KiB chunks, what its
/// widest SIMD code (AVX-512) hashes side by side.
pub const BLAKE3_BLOCK: usize = 16 * 1024;

/// BLAKE3 fed in whole [`BLAKE3_BLOCK`]s: the part of a piece that does not fill one
/// waits in `tail` for the next piece.
#[derive(Clone)]
pub struct Blake3 {
    hasher: blake3::Hasher,
    /// Bytes given but not yet hashed, fewer than [`BLAKE3_BLOCK`].
    tail: Vec<u8>,
}

impl Default for Blake3 {
    fn default() -> Self {
        Self {
            hasher: blake3::Hasher::new(),
            tail: Vec::new(),
        }
    }
}

impl Blake3 {
    fn update(&mut self, mut data: &[u8]) {
        if !self.tail.is_empty() {
            let fill = (BLAKE3_BLOCK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..fill]);
            data = &data[fill..];
            if self.tail.len() < BLAKE3_BLOCK {
                return;
            }
            self.hasher.update(&self.tail);
            self.tail.clear();
        }
        let whole = data.len() - data.len() % BLAKE3_BLOCK;
        self.hasher.update(&data[..whole]);
        if whole < data.len() {
            if self.tail.capacity() == 0 {
                self.tail.reserve_exact(BLAKE3_BLOCK);
            }
            self.tail.extend_from_slice(&data[whole..]);
        }
    }

    fn finalize(mut self) -> [u8; 32] {
        self.hasher.update(&self.tail);
        *self.hasher.finalize().as_bytes()
    }
}

/// A digest being computed.
#[derive(Clone)]
pub enum Hasher {
    /// BLAKE3 (boxed: its state is nearly 2 KiB).
    Blake3(Box<Blake3>),
    /// SHA-256.
    Sha256(sha2::Sha256),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hasher({})", self.algorithm())
    }
}

impl Hasher {
    /// The algorithm it computes.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Blake3(_) => Algorithm::Blake3,
            Hasher::Sha256(_) => Algorithm::Sha256,
        }
    }

    /// Hashes `data` on this thread.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Blake3(h) => h.update(data),
            Hasher::Sha256(h) => sha2::Digest::update(h, data),
        }
    }

    /// The digest of everything given.
    pub fn finalize(self) -> Digest {
        let algorithm = self.algorithm();
        let bytes = match self {
            Hasher::Blake3(h) => h.finalize(),
            Hasher::Sha256(h) => sha2::Digest::finalize(h).into(),
        };
        Digest { algorithm, bytes }
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test values: `b3sum` and `sha256sum` of "abc" and of nothing.
    #[test]
    fn known_answers() {
        let abc = Algorithm::Blake3.digest(b"abc");
        assert_eq!(
            abc.hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(abc.algorithm, Algorithm::Blake3);
        assert_eq!(
            Algorithm::Blake3.digest(b"").hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let abc = Algorithm::Sha256.digest(b"abc");
        assert_eq!(
            abc.to_string(),
            "sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn streamed_and_one_shot_agree() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        for a in Algorithm::ALL {
            let streamed = a.reader_digest(&data[..]).unwrap();
            assert_eq!(streamed, a.digest(&data));
            let mut h = a.hasher();
            for part in data.chunks(4097) {
                h.update(part);
            }
            assert_eq!(h.finalize(), streamed);
        }
    }

    /// Pieces of every size around BLAKE3's block, the way QUIC hands them over, give
    /// the one-shot digest: the held-back tail is neither lost nor hashed twice.
    #[test]
    fn blake3_pieces_of_any_size_give_the_one_shot_digest() {
        let data: Vec<u8> = (0..300_007u32).map(|i| (i * 7 % 253) as u8).collect();
        let whole = blake3::hash(&data);
        for step in [
            1,
            1023,
            1024,
            BLAKE3_BLOCK - 1,
            BLAKE3_BLOCK,
            BLAKE3_BLOCK + 1,
            65_000,
        ] {
            let mut h = Algorithm::Blake3.hasher();
            for part in data.chunks(step) {
                h.update(part);
                h.update(&[]);
            }
            assert_eq!(h.finalize().bytes, *whole.as_bytes(), "pieces of {step}");
        }
        // Uneven pieces, a clone taken mid-way finishing on its own.
        let mut h = Algorithm::Blake3.hasher();
        let (mut at, mut step) = (0, 5);
        let mut half = None;
        while at < data.len() {
            let end = (at + step).min(data.len());
            h.update(&data[at..end]);
            at = end;
            step = step * 3 % 40_000 + 1;
            if half.is_none() && at > data.len() / 2 {
                half = Some((h.clone(), at));
            }
        }
        assert_eq!(h.finalize().bytes, *whole.as_bytes());
        let (mut h, at) = half.unwrap();
        h.update(&data[at..]);
        assert_eq!(h.finalize().bytes, *whole.as_bytes());
    }

    #[test]
    fn names_and_bytes_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>(), Ok(a));
            assert_eq!(Algorithm::from_byte(a.to_byte()), Some(a));
        }
        assert_eq!("BLAKE3".parse::<Algorithm>(), Ok(Algorithm::Blake3));
        assert!("md5".parse::<Algorithm>().is_err());
        assert_eq!(Algorithm::from_byte(0), None);
        assert_eq!(Algorithm::from_byte(3), None);
        assert_eq!(Algorithm::default(), Algorithm::Blake3);
    }
}
