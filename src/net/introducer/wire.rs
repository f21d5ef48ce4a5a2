//! The bytes of an introduction stream (PROTOCOL.md, "Introductions"): a header of
//! kind [`Kind::Introduce`] with an empty name and a declared length of 1 ..=
//! [`MAX_BODY`], one [`Request`], FIN; the answer on the same stream is one [`Answer`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use quinn::RecvStream;

use crate::net::framing::{self, ErrorCode, FrameError, Header, Kind};
use crate::net::probe::{get_addr, put_addr};
use crate::net::tls::Fingerprint;

/// The largest request body.
pub const MAX_BODY: usize = 256;
/// The most addresses a request or an answer carries.
pub const MAX_ADDRS: usize = 8;
/// The largest answer: magic, version, status, flags, count, addresses of 19 bytes,
/// a nonce.
pub const MAX_ANSWER: usize = 4 + 1 + 1 + 1 + 1 + MAX_ADDRS * 19 + 16;
/// How long a request body may take after its header.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
const MAGIC: [u8; 4] = *b"QP2I";
const VERSION: u8 = 1;
const OP_REGISTER: u8 = 1;
const OP_INTRODUCE: u8 = 2;
const OP_PUNCH: u8 = 3;
const OP_RELAY: u8 = 4;
const OP_RELAY_ORDER: u8 = 5;
/// Answer flag: the introducer offers a relay (`--relay`).
const FLAG_RELAY: u8 = 1;
/// Answer flag: a 16-byte nonce follows the addresses.
const FLAG_NONCE: u8 = 2;

/// A 16-byte random value that binds a peer's address to a relay session.
pub type Nonce = [u8; 16];

/// What an introduction stream asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Listener → introducer, on a connection from the listener's listening socket:
    /// "remember me (the fingerprint TLS proved) at the address you see, and these
    /// addresses of mine" (its LAN and other direct addresses).
    Register {
        /// The listener's own addresses (LAN, IPv6, a UPnP mapping).
        addrs: Vec<SocketAddr>,
    },
    /// Sender → introducer: "introduce me to the listener with this fingerprint".
    Introduce {
        /// The listener wanted.
        target: Fingerprint,
    },
    /// Introducer → listener, on the listener's registration connection: "a peer
    /// wants you; punch toward it". The address is the one the introducer observed
    /// for the requester, never one the requester supplied.
    Punch {
        /// Where to send the punch datagrams.
        toward: SocketAddr,
        /// Who asked (the listener may log it; its TLS rules still decide).
        requester: Fingerprint,
    },
    /// Sender → introducer: "relay me to the listener with this fingerprint".
    Relay {
        /// The listener wanted.
        target: Fingerprint,
    },
    /// Introducer → listener, on the registration connection: "send the relay bind
    /// datagram with this nonce to the relay at this address" (same IP as the
    /// introducer).
    RelayOrder {
        /// The relay's address.
        relay: SocketAddr,
        /// What the bind datagram carries.
        nonce: Nonce,
    },
}

fn put_addrs(out: &mut Vec<u8>, addrs: &[SocketAddr]) {
    let addrs = &addrs[..addrs.len().min(MAX_ADDRS)];
    out.push(addrs.len() as u8);
    for a in addrs {
        put_addr(out, *a);
    }
}

fn get_addrs(buf: &[u8]) -> Result<(Vec<SocketAddr>, &[u8]), FrameError> {
    let (&n, mut rest) = buf.split_first().ok_or(FrameError::Truncated)?;
    if n as usize > MAX_ADDRS {
        return Err(FrameError::Truncated);
    }
    let mut addrs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (addr, after) = get_addr(rest)?;
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(FrameError::Truncated);
        }
        addrs.push(addr);
        rest = after;
    }
    Ok((addrs, rest))
}

fn get_fp(buf: &[u8]) -> Result<(Fingerprint, &[u8]), FrameError> {
    let fp: [u8; 32] = buf
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or(FrameError::Truncated)?;
    Ok((Fingerprint(fp), &buf[32..]))
}

impl Request {
    /// The body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Request::Register { addrs } => {
                out.push(OP_REGISTER);
                put_addrs(&mut out, addrs);
            }
            Request::Introduce { target } => {
                out.push(OP_INTRODUCE);
                out.extend_from_slice(&target.0);
            }
            Request::Punch { toward, requester } => {
                out.push(OP_PUNCH);
                put_addr(&mut out, *toward);
                out.extend_from_slice(&requester.0);
            }
            Request::Relay { target } => {
                out.push(OP_RELAY);
                out.extend_from_slice(&target.0);
            }
            Request::RelayOrder { relay, nonce } => {
                out.push(OP_RELAY_ORDER);
                put_addr(&mut out, *relay);
                out.extend_from_slice(nonce);
            }
        }
        out
    }

    /// Decodes a body; every byte must be accounted for.
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        if buf.len() > MAX_BODY {
            return Err(FrameError::TooLarge(buf.len()));
        }
        let (&op, rest) = buf.split_first().ok_or(FrameError::Truncated)?;
        let (request, rest) = match op {
            OP_REGISTER => {
                let (addrs, rest) = get_addrs(rest)?;
                (Request::Register { addrs }, rest)
            }
            OP_INTRODUCE => {
                let (target, rest) = get_fp(rest)?;
                (Request::Introduce { target }, rest)
            }
            OP_PUNCH => {
                let (toward, rest) = get_addr(rest)?;
                if toward.port() == 0 || toward.ip().is_unspecified() {
                    return Err(FrameError::Truncated);
                }
                let (requester, rest) = get_fp(rest)?;
                (Request::Punch { toward, requester }, rest)
            }
            OP_RELAY => {
                let (target, rest) = get_fp(rest)?;
                (Request::Relay { target }, rest)
            }
            OP_RELAY_ORDER => {
                let (relay, rest) = get_addr(rest)?;
                if relay.port() == 0 || relay.ip().is_unspecified() {
                    return Err(FrameError::Truncated);
                }
                let nonce: Nonce = rest.try_into().map_err(|_| FrameError::Truncated)?;
                (Request::RelayOrder { relay, nonce }, &[][..])
            }
            _ => return Err(FrameError::Truncated),
        };
        if !rest.is_empty() {
            return Err(FrameError::Truncated);
        }
        Ok(request)
    }

    /// The whole stream: header of kind introduce, then the body.
    pub fn stream_bytes(&self) -> Vec<u8> {
        Header::control_stream(Kind::Introduce, &self.encode())
    }
}

/// What the answering side says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done: registered, introduced, or punching.
    Ok = 0,
    /// No listener with that fingerprint is registered here.
    Unknown = 1,
    /// Too many requests from this address, or punches at this listener; later.
    Busy = 2,
    /// Not served: the peer is no introducer, or a punch order came from elsewhere
    /// than the listener's introducer.
    Refused = 3,
    /// The listener did not take the punch order in time.
    NoAnswer = 4,
}

impl Status {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::Unknown,
            2 => Status::Busy,
            3 => Status::Refused,
            4 => Status::NoAnswer,
            _ => return None,
        })
    }
}

/// The answer to a [`Request`]: a status, flags and addresses. For `Register`, the
/// listener's address as the introducer observes it. For `Introduce`, the
/// requester's observed address, the listener's observed address, then the
/// listener's own addresses. For `Relay`, the relay's address and the sender's
/// nonce. For `Punch` and `RelayOrder`, none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What happened.
    pub status: Status,
    /// The introducer offers a relay (in answers to `Introduce`).
    pub relay: bool,
    /// The addresses.
    pub addrs: Vec<SocketAddr>,
    /// The nonce of a relay session (in answers to `Relay`).
    pub nonce: Option<Nonce>,
}

impl Answer {
    /// An answer without addresses.
    pub fn bare(status: Status) -> Self {
        Self {
            status,
            relay: false,
            addrs: Vec::new(),
            nonce: None,
        }
    }

    /// The answer bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_ANSWER);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.status as u8);
        let mut flags = 0;
        if self.relay {
            flags |= FLAG_RELAY;
        }
        if self.nonce.is_some() {
            flags |= FLAG_NONCE;
        }
        out.push(flags);
        put_addrs(&mut out, &self.addrs);
        if let Some(nonce) = &self.nonce {
            out.extend_from_slice(nonce);
        }
        out
    }

    /// Decodes an answer.
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        if buf.len() > MAX_ANSWER || buf.get(..4) != Some(&MAGIC[..]) {
            return Err(FrameError::BadAck);
        }
        if buf.get(4) != Some(&VERSION) {
            return Err(FrameError::UnsupportedVersion(
                buf.get(4).copied().unwrap_or(0),
            ));
        }
        let status = buf
            .get(5)
            .and_then(|b| Status::from_byte(*b))
            .ok_or(FrameError::BadAck)?;
        let flags = *buf.get(6).ok_or(FrameError::BadAck)?;
        if flags & !(FLAG_RELAY | FLAG_NONCE) != 0 {
            return Err(FrameError::BadAck);
        }
        let (addrs, rest) = get_addrs(&buf[7..]).map_err(|_| FrameError::BadAck)?;
        let nonce = match flags & FLAG_NONCE {
            0 if rest.is_empty() => None,
            0 => return Err(FrameError::BadAck),
            _ => Some(Nonce::try_from(rest).map_err(|_| FrameError::BadAck)?),
        };
        Ok(Self {
            status,
            relay: flags & FLAG_RELAY != 0,
            addrs,
            nonce,
        })
    }
}

/// Reads the body after an introduction header. Errors are the reset code to answer
/// with.
pub async fn read_body(
    header: &Header,
    first: Bytes,
    recv: &mut RecvStream,
) -> Result<Request, ErrorCode> {
    let declared = match header.length {
        Some(0) | None => return Err(ErrorCode::BadHeader),
        Some(n) if n > MAX_BODY as u64 => return Err(ErrorCode::TooLarge),
        Some(n) => n as usize,
    };
    let body = tokio::time::timeout(BODY_DEADLINE, framing::read_rest(recv, first, declared))
        .await
        .map_err(|_| ErrorCode::HeaderTimeout)?
        .map_err(|e| match e {
            quinn::ReadToEndError::TooLong => ErrorCode::LengthMismatch,
            quinn::ReadToEndError::Read(_) => ErrorCode::BadHeader,
        })?
        .concat();
    if body.len() != declared {
        return Err(ErrorCode::LengthMismatch);
    }
    Request::decode(&body).map_err(|e| e.code())
}

/// Reads a whole introduction stream: header, bounded body, FIN.
pub async fn read_request(recv: &mut RecvStream) -> Result<Request, ErrorCode> {
    let (header, first) = tokio::time::timeout(BODY_DEADLINE, framing::read_header(recv))
        .await
        .map_err(|_| ErrorCode::HeaderTimeout)?
        .map_err(|e| match e {
            framing::ReadError::Frame(f) => f.code(),
            framing::ReadError::Stream(_) => ErrorCode::BadHeader,
        })?;
    if header.kind != Kind::Introduce {
        return Err(ErrorCode::Unsupported);
    }
    read_body(&header, first, recv).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(b: u8) -> Fingerprint {
        Fingerprint([b; 32])
    }

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Register { addrs: vec![] },
            Request::Register {
                addrs: vec![
                    "192.168.1.2:7447".parse().unwrap(),
                    "[2001:db8::2]:7447".parse().unwrap(),
                ],
            },
            Request::Introduce { target: fp(7) },
            Request::Punch {
                toward: "203.0.113.2:4000".parse().unwrap(),
                requester: fp(9),
            },
            Request::Relay { target: fp(3) },
            Request::RelayOrder {
                relay: "203.0.113.10:40000".parse().unwrap(),
                nonce: [5; 16],
            },
        ] {
            let bytes = r.encode();
            assert!(bytes.len() <= MAX_BODY);
            assert_eq!(Request::decode(&bytes).unwrap(), r);
            let stream = r.stream_bytes();
            assert_eq!(Header::decode(&stream).unwrap().kind, Kind::Introduce);
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let b = Request::Punch {
            toward: "203.0.113.2:258".parse().unwrap(),
            requester: fp(1),
        }
        .encode();
        assert_eq!(&b[..8], &[3, 4, 203, 0, 113, 2, 1, 2]);
        assert_eq!(&b[8..], &[1; 32]);
        let a = Answer {
            status: Status::Ok,
            relay: true,
            addrs: vec!["198.51.100.1:7".parse().unwrap()],
            nonce: None,
        }
        .encode();
        assert_eq!(a, b"QP2I\x01\x00\x01\x01\x04\xc6\x33\x64\x01\x00\x07");
        let with_nonce = Answer {
            nonce: Some([8; 16]),
            ..Answer::bare(Status::Ok)
        };
        let bytes = with_nonce.encode();
        assert_eq!(&bytes[..8], b"QP2I\x01\x00\x02\x00");
        assert_eq!(Answer::decode(&bytes).unwrap(), with_nonce);
        assert!(Answer::decode(&a).unwrap().relay);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[0],
            &[1],
            &[1, 9],
            &[1, 1, 4, 1, 2, 3],
            &[1, 1, 4, 1, 2, 3, 4, 0, 0],
            &[1, 0, 0],
            &[2, 1, 2],
            &[3, 4, 1, 2, 3, 4, 0, 1],
            &[99],
        ] {
            assert!(Request::decode(bad).is_err(), "{bad:?}");
        }
        assert!(Request::decode(&[1; MAX_BODY + 1]).is_err());
        for bad in [
            &b"QP2I\x01\x09\x00"[..],
            b"QP2I\x01\x00",
            b"QP2X\x01\x00\x00",
        ] {
            assert!(Answer::decode(bad).is_err(), "{bad:?}");
        }
    }
}
