//! The ack that ends a bidirectional stream, and its trailer (the stored name).

use bytes::Bytes;

use super::header::{read_exact, read_rest};
use super::*;

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
    /// The digest of the bytes stored, in the algorithm the message's header named
    /// (the ack does not repeat it).
    pub digest: [u8; 32],
}

impl Ack {
    /// The fixed-size encoding.
    pub fn encode(&self) -> [u8; ACK_LEN] {
        let mut out = [0u8; ACK_LEN];
        out[..4].copy_from_slice(&ACK_MAGIC);
        out[4] = ACK_VERSION;
        out[5] = match self.status {
            AckStatus::Stored => 0,
            AckStatus::Duplicate => 1,
            AckStatus::Present => 2,
        };
        out[6..14].copy_from_slice(&self.bytes.to_be_bytes());
        out[14..].copy_from_slice(&self.digest);
        out
    }

    /// Decodes an ack.
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        let buf: &[u8; ACK_LEN] = buf.try_into().map_err(|_| FrameError::BadAck)?;
        if buf[..4] != ACK_MAGIC {
            return Err(FrameError::BadAck);
        }
        if buf[4] != ACK_VERSION {
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
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&buf[14..]);
        Ok(Self {
            status,
            bytes: u64::from_be_bytes(bytes),
            digest,
        })
    }
}

/// Reads the ack that ends a bidirectional stream, and the name the receiver stored
/// the message under when it says (the ack's trailer: u16 length, UTF-8, relative to
/// its directory; absent from receivers before it, and for stdout).
pub async fn read_ack(recv: &mut quinn::RecvStream) -> Result<(Ack, Option<String>), ReadError> {
    read_ack_after(recv, &[]).await
}

/// [`read_ack`] when its first bytes, `head`, were read already.
pub(crate) async fn read_ack_after(
    recv: &mut quinn::RecvStream,
    head: &[u8],
) -> Result<(Ack, Option<String>), ReadError> {
    let mut buf = [0u8; ACK_LEN];
    let head = &head[..head.len().min(ACK_LEN)];
    buf[..head.len()].copy_from_slice(head);
    read_exact(recv, &mut buf[head.len()..]).await?;
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
pub(crate) fn encode_stored_as(name: &str) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(MAX_NAME_LEN)];
    let mut out = Vec::with_capacity(2 + name.len());
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name);
    out
}

/// Decodes the ack's trailer; nothing (an older receiver) and a zero length are `None`.
pub(crate) fn decode_stored_as(rest: &[u8]) -> Result<Option<String>, FrameError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            digest: [9; 32],
        };
        assert_eq!(Ack::decode(&ack.encode()).unwrap(), ack);
        assert_eq!(Ack::decode(&[0; 3]), Err(FrameError::BadAck));
        let mut bad = ack.encode();
        bad[5] = 7;
        assert_eq!(Ack::decode(&bad), Err(FrameError::BadAck));
    }
}
