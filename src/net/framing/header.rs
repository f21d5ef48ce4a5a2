//! The header that opens a stream: its bytes, and reading it from a stream without
//! allocating more than [`MAX_HEADER_LEN`].
//!
//! Two versions are read. Version 2 has one more byte in its body, after the payload
//! length: the digest [`Algorithm`]. Version 1 has none and means SHA-256. A header
//! without an algorithm ([`Header::digest`] `None`) is written in version 1, so every
//! listener takes it; one with an algorithm in version 2.

use bytes::{Bytes, BytesMut};

use super::resume::{Offer, EXT_RESUME};
use super::*;
use crate::net::digest::Algorithm;

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
    /// The digest algorithm the receiver's ack (and `skip_same`) is in: `Some` makes a
    /// version 2 header, which names it; `None` a version 1 header, which every
    /// listener reads and which means SHA-256 ([`Header::algorithm`]).
    pub digest: Option<Algorithm>,
    /// `send --skip-same`: the digest of the whole payload in the header's algorithm,
    /// sent ahead so that a receiver already holding that content under the name
    /// answers [`AckStatus::Present`] instead of taking it again. An extension field
    /// after the name, which receivers without it ignore.
    pub skip_same: Option<[u8; 32]>,
    /// A resume offer for a regular file (`framing::resume`): the receiver answers
    /// how much of it it holds before the payload. An extension field after the name,
    /// which receivers without it ignore.
    pub resume: Option<Offer>,
}

/// Extension field types in the header body after the name (type u8, length u16,
/// value); a receiver skips types it does not know.
const EXT_SKIP_SAME: u8 = 1;

impl Header {
    /// The algorithm of the digests about this message: the one named, SHA-256 for a
    /// version 1 header.
    pub fn algorithm(&self) -> Algorithm {
        self.digest.unwrap_or(Algorithm::Sha256)
    }

    /// The version this header is written in: 2 when it names an algorithm.
    pub fn version(&self) -> u8 {
        match self.digest {
            Some(_) => VERSION,
            None => VERSION_1,
        }
    }

    /// Size of the fixed part of the body in this header's version.
    fn fixed_len(&self) -> usize {
        BODY_FIXED_LEN + usize::from(self.digest.is_some())
    }

    /// A whole control stream (probe, introduction): a version 1 header of `kind` with
    /// an empty name and the body's length, then the body. Version 1, with no digest:
    /// every listener version reads it, and its kind decides whether it is served.
    pub(crate) fn control_stream(kind: Kind, body: &[u8]) -> Vec<u8> {
        let mut out = Header {
            kind,
            id: MessageId::random(),
            length: Some(body.len() as u64),
            name: String::new(),
            skip_same: None,
            resume: None,
            digest: None,
        }
        .encode();
        out.extend_from_slice(body);
        out
    }

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
        if let Some(offer) = &self.resume {
            offer.encode(&mut ext);
        }
        let max_name = MAX_HEADER_LEN - self.fixed_len() - ext.len();
        let mut name = self.name.as_str();
        while name.len() > max_name {
            let mut cut = max_name;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name = &name[..cut];
        }
        let body_len = self.fixed_len() + name.len() + ext.len();
        let mut out = Vec::with_capacity(PREFIX_LEN + body_len);
        out.extend_from_slice(&MAGIC);
        out.push(self.version());
        out.push(self.kind.to_byte());
        out.extend_from_slice(&(body_len as u16).to_be_bytes());
        out.extend_from_slice(&self.id.0);
        out.push(if self.length.is_some() {
            FLAG_LENGTH_KNOWN
        } else {
            0
        });
        out.extend_from_slice(&self.length.unwrap_or(0).to_be_bytes());
        if let Some(algorithm) = self.digest {
            out.push(algorithm.to_byte());
        }
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&ext);
        out
    }

    /// Checks the prefix and returns the version, the kind and the body length to read
    /// next.
    pub fn decode_prefix(prefix: &[u8; PREFIX_LEN]) -> Result<(u8, Kind, usize), FrameError> {
        if prefix[..4] != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let version = prefix[4];
        if version != VERSION && version != VERSION_1 {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let kind = Kind::from_byte(prefix[5]).ok_or(FrameError::UnknownKind(prefix[5]))?;
        let len = u16::from_be_bytes([prefix[6], prefix[7]]) as usize;
        if len > MAX_HEADER_LEN {
            return Err(FrameError::TooLarge(len));
        }
        if len < BODY_FIXED_LEN + usize::from(version != VERSION_1) {
            return Err(FrameError::Truncated);
        }
        Ok((version, kind, len))
    }

    /// Decodes a header body of the given version (checked by
    /// [`Header::decode_prefix`]) and kind.
    pub fn decode_body(version: u8, kind: Kind, body: &[u8]) -> Result<Self, FrameError> {
        if version != VERSION && version != VERSION_1 {
            return Err(FrameError::UnsupportedVersion(version));
        }
        if body.len() > MAX_HEADER_LEN {
            return Err(FrameError::TooLarge(body.len()));
        }
        let fixed = BODY_FIXED_LEN + usize::from(version != VERSION_1);
        if body.len() < fixed {
            return Err(FrameError::Truncated);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&body[..16]);
        let flags = body[16];
        let mut len = [0u8; 8];
        len.copy_from_slice(&body[17..25]);
        let digest = match version {
            VERSION_1 => None,
            _ => Some(Algorithm::from_byte(body[25]).ok_or(FrameError::UnknownDigest(body[25]))?),
        };
        let name_len = u16::from_be_bytes([body[fixed - 2], body[fixed - 1]]) as usize;
        let name = body
            .get(fixed..fixed + name_len)
            .ok_or(FrameError::Truncated)?;
        let name = std::str::from_utf8(name).map_err(|_| FrameError::BadName)?;
        let mut skip_same = None;
        let mut resume = None;
        let mut ext = &body[fixed + name_len..];
        while !ext.is_empty() {
            let [kind, a, b, rest @ ..] = ext else {
                return Err(FrameError::Truncated);
            };
            let len = u16::from_be_bytes([*a, *b]) as usize;
            let value = rest.get(..len).ok_or(FrameError::Truncated)?;
            if *kind == EXT_SKIP_SAME {
                skip_same = Some(value.try_into().map_err(|_| FrameError::Truncated)?);
            } else if *kind == EXT_RESUME {
                resume = Some(Offer::decode(value)?);
            }
            ext = &rest[len..];
        }
        Ok(Self {
            kind,
            id: MessageId(id),
            length: (flags & FLAG_LENGTH_KNOWN != 0).then(|| u64::from_be_bytes(len)),
            name: name.to_string(),
            digest,
            skip_same,
            resume,
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
        let (version, kind, len) = Self::decode_prefix(prefix)?;
        let body = buf
            .get(PREFIX_LEN..PREFIX_LEN + len)
            .ok_or(FrameError::UnexpectedEnd)?;
        Self::decode_body(version, kind, body)
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
    let (version, kind, len) = Header::decode_prefix(prefix)?;
    let end = PREFIX_LEN + len;
    let data = gather(recv, data, end).await?;
    let header = Header::decode_body(version, kind, &data[PREFIX_LEN..end])?;
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
pub(crate) async fn read_rest(
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

pub(crate) async fn read_exact(
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
) -> Result<(), ReadError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, length: Option<u64>) -> Header {
        Header {
            kind: Kind::Message,
            id: MessageId([7; 16]),
            length,
            name: name.to_string(),
            digest: None,
            skip_same: None,
            resume: None,
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
    fn version_2_names_the_algorithm_after_the_length() {
        let mut h = header("ab", Some(258));
        h.digest = Some(Algorithm::Blake3);
        let bytes = h.encode();
        assert_eq!(bytes[4], 2, "version");
        assert_eq!(u16::from_be_bytes([bytes[6], bytes[7]]), 30, "body length");
        assert_eq!(&bytes[25..33], &258u64.to_be_bytes());
        assert_eq!(bytes[33], 2, "algorithm: blake3");
        assert_eq!(&bytes[34..36], &[0, 2], "name length");
        assert_eq!(&bytes[36..], b"ab");
        assert_eq!(Header::decode(&bytes).unwrap(), h);
        assert_eq!(h.algorithm(), Algorithm::Blake3);
        h.digest = Some(Algorithm::Sha256);
        assert_eq!(h.encode()[33], 1, "algorithm: sha256");
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        // Version 1 means SHA-256 and has no algorithm byte.
        let v1 = header("ab", Some(258));
        assert_eq!((v1.version(), v1.algorithm()), (1, Algorithm::Sha256));
        // An algorithm this build does not know is refused as unsupported.
        let mut unknown = bytes.clone();
        unknown[33] = 9;
        assert_eq!(Header::decode(&unknown), Err(FrameError::UnknownDigest(9)));
        assert_eq!(FrameError::UnknownDigest(9).code(), ErrorCode::Unsupported);
        // A version 2 body too short for its algorithm byte is truncated.
        let mut short = header("", None).encode();
        short[4] = 2;
        assert_eq!(Header::decode(&short), Err(FrameError::Truncated));
        // Long names leave room for the algorithm byte and the extension.
        let mut long = header(&"y".repeat(MAX_NAME_LEN), None);
        long.digest = Some(Algorithm::Blake3);
        long.skip_same = Some([3; 32]);
        let encoded = long.encode();
        assert!(encoded.len() <= PREFIX_LEN + MAX_HEADER_LEN);
        let decoded = Header::decode(&encoded).unwrap();
        assert_eq!(decoded.name.len(), MAX_NAME_LEN - 1 - 35);
        assert_eq!(
            (decoded.digest, decoded.skip_same),
            (long.digest, long.skip_same)
        );
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
        let mut v3 = header("a", None).encode();
        v3[4] = 3;
        assert_eq!(Header::decode(&v3), Err(FrameError::UnsupportedVersion(3)));
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
    fn the_resume_offer_is_an_extension_after_skip_same() {
        let mut h = header("f", Some(1 << 30));
        h.skip_same = Some([5; 32]);
        h.resume = Some(Offer {
            mtime_ns: 0x0102_0304_0506_0708,
            head: [6; 32],
        });
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes).unwrap(), h);
        // type 2, length 40, mtime (ns, big-endian), head digest: the last 43 bytes.
        let ext = &bytes[bytes.len() - 43..];
        assert_eq!(&ext[..3], &[2, 0, 40]);
        assert_eq!(&ext[3..11], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&ext[11..], &[6; 32]);
        // A resume offer of the wrong length is a bad header.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 42..n - 40].copy_from_slice(&[0, 39]);
        bad.truncate(n - 1);
        let body = (bad.len() - PREFIX_LEN) as u16;
        bad[6..8].copy_from_slice(&body.to_be_bytes());
        assert_eq!(Header::decode(&bad), Err(FrameError::Truncated));
    }
}
