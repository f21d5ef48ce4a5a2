//! The reachability probe: "what address do you see for me" and "connect back to me".
//!
//! A probe is a stream of kind [`Kind::Probe`] (PROTOCOL.md, "Probes"): the usual
//! header with an empty name and a declared length of at most [`MAX_PROBE_LEN`], then
//! a [`Request`], then FIN; the answer on the same bidirectional stream is one
//! [`Answer`]. A `qp2p listen` serves probes ([`ProbeService`]); `upnp-check` asks
//! through [`client::check`] (built on [`observe`] and [`connect_back`]), which turns
//! the answers into a typed [`client::Verdict`], and receives the connect-back on its
//! own endpoint ([`receive_nonce`]).
//!
//! What could go wrong, and how it is prevented:
//! - *False positives* (the qp2p crate's probe answered over the requester's own
//!   connection, which any NAT lets through, so everyone looked reachable): the
//!   connect-back is a new QUIC connection from a fresh endpoint on a fresh UDP socket
//!   (another source port), never the listener's socket nor a pooled connection, so a
//!   NAT only delivers it through a real inbound mapping. The requester accepts the
//!   nonce only on a connection *it accepted*, and the nonce is 16 random bytes known
//!   only to the requester and the prober, so nothing else can stand in for it.
//! - *The listener used as a weapon* (connect-back to a victim): it connects back only
//!   to the IP address it observes the request coming from, pins the requester's own
//!   fingerprint, and runs at most [`MAX_CONNECT_BACKS`] connect-backs at a time, each
//!   bounded by [`CONNECT_BACK_TIMEOUT`]. A QUIC handshake to a silent address is a
//!   few datagrams.
//! - *A hostile probe stream*: the body is bounded ([`MAX_PROBE_LEN`]) before anything
//!   is allocated, must arrive within a deadline, and a malformed one resets that
//!   stream with the documented error codes; the connection and other streams go on.
//! - *A listener that does not offer probes* (`--no-probe`, an older version) resets
//!   probe streams with `UNSUPPORTED`; the requester reports that, not "unreachable".

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::endpoint::{canonical, ConnectError, Endpoint, TransportOptions};
use super::framing::{ErrorCode, FrameError, Header, Kind};
use super::tls::{Fingerprint, Identity, TrustRules};

pub mod client;

/// The largest probe request body accepted.
pub const MAX_PROBE_LEN: usize = 64;
/// The largest answer (magic, version, status, an IPv6 address and port).
pub const MAX_ANSWER_LEN: usize = 4 + 1 + 1 + 1 + 16 + 2;
/// How long the listener tries to deliver one connect-back.
pub const CONNECT_BACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect-backs running at once, per listener.
pub const MAX_CONNECT_BACKS: usize = 4;
/// How long a probe request body may take to arrive after its header.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
const ANSWER_MAGIC: [u8; 4] = *b"QP2O";
const ANSWER_VERSION: u8 = 1;

/// A 16-byte random value the connect-back must deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    /// A fresh random nonce.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

/// What a probe stream asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// "What address do you see for me?"
    Observe,
    /// "Connect back to me at `target` and deliver `nonce`."
    ConnectBack {
        /// Where to connect (the requester's mapped external address).
        target: SocketAddr,
        /// What to deliver.
        nonce: Nonce,
    },
    /// The connect-back itself, delivering the nonce.
    Nonce(Nonce),
}

const OP_OBSERVE: u8 = 1;
const OP_CONNECT_BACK: u8 = 2;
const OP_NONCE: u8 = 3;

pub(crate) fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Reads an address; returns it and the bytes after it.
pub(crate) fn get_addr(buf: &[u8]) -> Result<(SocketAddr, &[u8]), FrameError> {
    let (&family, rest) = buf.split_first().ok_or(FrameError::Truncated)?;
    let (ip, rest): (IpAddr, &[u8]) = match family {
        4 => {
            let b: [u8; 4] = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(FrameError::Truncated)?;
            (b.into(), &rest[4..])
        }
        6 => {
            let b: [u8; 16] = rest
                .get(..16)
                .and_then(|b| b.try_into().ok())
                .ok_or(FrameError::Truncated)?;
            (b.into(), &rest[16..])
        }
        _ => return Err(FrameError::Truncated),
    };
    let port = rest.get(..2).ok_or(FrameError::Truncated)?;
    let port = u16::from_be_bytes([port[0], port[1]]);
    Ok((SocketAddr::new(ip, port), &rest[2..]))
}

fn get_nonce(buf: &[u8]) -> Result<Nonce, FrameError> {
    let b: [u8; 16] = buf.try_into().map_err(|_| FrameError::Truncated)?;
    Ok(Nonce(b))
}

impl Request {
    /// The body bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_PROBE_LEN);
        match self {
            Request::Observe => out.push(OP_OBSERVE),
            Request::ConnectBack { target, nonce } => {
                out.push(OP_CONNECT_BACK);
                put_addr(&mut out, *target);
                out.extend_from_slice(&nonce.0);
            }
            Request::Nonce(nonce) => {
                out.push(OP_NONCE);
                out.extend_from_slice(&nonce.0);
            }
        }
        out
    }

    /// Decodes a body; every byte must be accounted for.
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        if buf.len() > MAX_PROBE_LEN {
            return Err(FrameError::TooLarge(buf.len()));
        }
        let (&op, rest) = buf.split_first().ok_or(FrameError::Truncated)?;
        match op {
            OP_OBSERVE if rest.is_empty() => Ok(Request::Observe),
            OP_CONNECT_BACK => {
                let (target, rest) = get_addr(rest)?;
                if target.port() == 0 || target.ip().is_unspecified() {
                    return Err(FrameError::Truncated);
                }
                Ok(Request::ConnectBack {
                    target,
                    nonce: get_nonce(rest)?,
                })
            }
            OP_NONCE => Ok(Request::Nonce(get_nonce(rest)?)),
            _ => Err(FrameError::Truncated),
        }
    }

    /// The whole stream: header of kind probe, then the body.
    pub(crate) fn stream_bytes(&self) -> Vec<u8> {
        Header::control_stream(Kind::Probe, &self.encode())
    }
}

/// What the answering side says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The answer to [`Request::Observe`] (and to a delivered [`Request::Nonce`]).
    Observed = 0,
    /// The connect-back delivered the nonce and the requester acknowledged it.
    Delivered = 1,
    /// The target's IP is not the address the request came from.
    NotYourAddress = 2,
    /// The connect-back failed (no handshake, or the nonce was not acknowledged).
    Failed = 3,
    /// Too many connect-backs under way; try again later.
    Busy = 4,
}

impl Status {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Status::Observed,
            1 => Status::Delivered,
            2 => Status::NotYourAddress,
            3 => Status::Failed,
            4 => Status::Busy,
            _ => return None,
        })
    }
}

/// The answer on a probe stream: a status and the address the answering side sees
/// the asker at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// What happened.
    pub status: Status,
    /// The asker's address as the answering side observes it.
    pub observed: SocketAddr,
}

impl Answer {
    /// The answer bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_ANSWER_LEN);
        out.extend_from_slice(&ANSWER_MAGIC);
        out.push(ANSWER_VERSION);
        out.push(self.status as u8);
        put_addr(&mut out, self.observed);
        out
    }

    /// Decodes an answer.
    pub fn decode(buf: &[u8]) -> Result<Self, FrameError> {
        if buf.len() > MAX_ANSWER_LEN || buf.get(..4) != Some(&ANSWER_MAGIC[..]) {
            return Err(FrameError::BadAck);
        }
        if buf.get(4) != Some(&ANSWER_VERSION) {
            return Err(FrameError::UnsupportedVersion(
                buf.get(4).copied().unwrap_or(0),
            ));
        }
        let status = buf
            .get(5)
            .and_then(|b| Status::from_byte(*b))
            .ok_or(FrameError::BadAck)?;
        let (observed, rest) = get_addr(&buf[6..]).map_err(|_| FrameError::BadAck)?;
        if !rest.is_empty() {
            return Err(FrameError::BadAck);
        }
        Ok(Self { status, observed })
    }
}

/// Why a probe could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No connection to the prober.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The peer does not answer probes (`--no-probe`, or an older qp2p).
    #[error("the peer does not answer probes (it runs with --no-probe, or is an older qp2p)")]
    Unsupported,
    /// The peer reset the probe stream.
    #[error("the peer refused the probe: {0}")]
    Refused(String),
    /// No answer in time.
    #[error("no answer within {}", super::retry::rounded(*.0))]
    Timeout(Duration),
    /// The stream or connection failed.
    #[error("probe stream failed: {0}")]
    Stream(String),
    /// The answer was garbled.
    #[error("malformed probe answer: {0}")]
    Malformed(FrameError),
}

/// Sends one request on a new bidirectional stream of `conn` and reads the answer.
/// Cancel-safe (a dropped call resets its stream).
pub async fn ask(
    conn: &quinn::Connection,
    request: &Request,
    limit: Duration,
) -> Result<Answer, ProbeError> {
    let exchange = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| ProbeError::Stream(e.to_string()))?;
        send.write_all(&request.stream_bytes())
            .await
            .map_err(|e| stream_error(&e.to_string(), write_reset(&e)))?;
        let _ = send.finish();
        let bytes = recv
            .read_to_end(MAX_ANSWER_LEN)
            .await
            .map_err(|e| match e {
                quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) => {
                    stream_error("reset", Some(code))
                }
                other => ProbeError::Stream(other.to_string()),
            })?;
        Answer::decode(&bytes).map_err(ProbeError::Malformed)
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

fn write_reset(e: &quinn::WriteError) -> Option<quinn::VarInt> {
    match e {
        quinn::WriteError::Stopped(code) => Some(*code),
        _ => None,
    }
}

fn stream_error(what: &str, code: Option<quinn::VarInt>) -> ProbeError {
    let Some(code) = code else {
        return ProbeError::Stream(what.to_string());
    };
    match ErrorCode::from_varint(code) {
        Some(ErrorCode::Unsupported) => ProbeError::Unsupported,
        Some(c) => ProbeError::Refused(c.describe().to_string()),
        None => ProbeError::Refused(format!("error code {code}")),
    }
}

/// Asks the peer which address it sees us at.
pub async fn observe(conn: &quinn::Connection, limit: Duration) -> Result<SocketAddr, ProbeError> {
    Ok(canonical(
        ask(conn, &Request::Observe, limit).await?.observed,
    ))
}

/// Asks the peer to connect back to `target` with `nonce`; returns its answer.
pub async fn connect_back(
    conn: &quinn::Connection,
    target: SocketAddr,
    nonce: Nonce,
    limit: Duration,
) -> Result<Answer, ProbeError> {
    ask(conn, &Request::ConnectBack { target, nonce }, limit).await
}

/// Reads the nonce a prober delivers on an incoming connection: accepts its first
/// bidirectional stream, expects a [`Request::Nonce`], and acknowledges it with the
/// address the prober's connect-back came from. Returns the nonce and that address.
pub async fn receive_nonce(
    conn: &quinn::Connection,
    limit: Duration,
) -> Result<(Nonce, SocketAddr), ProbeError> {
    let from = canonical(conn.remote_address());
    let exchange = async {
        let (mut send, mut recv) = conn
            .accept_bi()
            .await
            .map_err(|e| ProbeError::Stream(e.to_string()))?;
        let request = match read_request(&mut recv).await {
            Ok(r) => r,
            Err(code) => {
                super::transfer::refuse(&mut recv, Some(&mut send), code);
                return Err(ProbeError::Refused(code.describe().into()));
            }
        };
        let Request::Nonce(nonce) = request else {
            super::transfer::refuse(&mut recv, Some(&mut send), ErrorCode::Unsupported);
            return Err(ProbeError::Refused("expected a nonce".into()));
        };
        let answer = Answer {
            status: Status::Observed,
            observed: from,
        };
        send.write_all(&answer.encode())
            .await
            .map_err(|e| ProbeError::Stream(e.to_string()))?;
        let _ = send.finish();
        // Let the acknowledgement reach the prober before the connection goes.
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        Ok((nonce, from))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

/// Reads a whole probe stream: header of kind probe, then the bounded body, then FIN.
/// Errors are the reset code to answer with.
async fn read_request(recv: &mut RecvStream) -> Result<Request, ErrorCode> {
    let (header, first) = tokio::time::timeout(BODY_DEADLINE, super::framing::read_header(recv))
        .await
        .map_err(|_| ErrorCode::HeaderTimeout)?
        .map_err(|e| match e {
            super::framing::ReadError::Frame(f) => f.code(),
            super::framing::ReadError::Stream(_) => ErrorCode::BadHeader,
        })?;
    if header.kind != Kind::Probe {
        return Err(ErrorCode::Unsupported);
    }
    read_body(&header, first, recv).await
}

/// Reads the body that follows a probe header.
async fn read_body(
    header: &Header,
    first: Bytes,
    recv: &mut RecvStream,
) -> Result<Request, ErrorCode> {
    let declared = match header.length {
        Some(0) => return Err(ErrorCode::BadHeader),
        Some(n) if n > MAX_PROBE_LEN as u64 => return Err(ErrorCode::TooLarge),
        Some(n) => n as usize,
        None => return Err(ErrorCode::BadHeader),
    };
    let body = tokio::time::timeout(
        BODY_DEADLINE,
        super::framing::read_rest(recv, first, declared),
    )
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

/// The probe service of a listener.
#[derive(Debug, Clone)]
pub struct ProbeService {
    enabled: bool,
    identity: Arc<Identity>,
    options: TransportOptions,
    slots: Arc<Semaphore>,
}

impl ProbeService {
    /// A service that connects back with `identity`; `enabled = false` refuses every
    /// probe with `UNSUPPORTED` (`listen --no-probe`).
    pub fn new(enabled: bool, identity: Arc<Identity>, options: TransportOptions) -> Self {
        Self {
            enabled,
            identity,
            options,
            slots: Arc::new(Semaphore::new(MAX_CONNECT_BACKS)),
        }
    }

    /// Serves one probe stream whose header has been read. `peer` is the address the
    /// connection comes from, `peer_fp` the requester's fingerprint.
    pub async fn serve(
        &self,
        header: &Header,
        first: Bytes,
        send: Option<SendStream>,
        mut recv: RecvStream,
        peer: SocketAddr,
        peer_fp: Option<Fingerprint>,
    ) {
        let Some(mut send) = send else {
            // A probe needs an answer: unidirectional probes are not a thing.
            super::transfer::refuse(&mut recv, None, ErrorCode::Unsupported);
            return;
        };
        if !self.enabled {
            debug!("probe refused: --no-probe");
            super::transfer::refuse(&mut recv, Some(&mut send), ErrorCode::Unsupported);
            return;
        }
        let request = match read_body(header, first, &mut recv).await {
            Ok(r) => r,
            Err(code) => {
                warn!(code = ?code, "malformed probe; resetting the stream");
                super::transfer::refuse(&mut recv, Some(&mut send), code);
                return;
            }
        };
        let peer = canonical(peer);
        let status = match request {
            Request::Observe => {
                debug!(%peer, "probe: observed address");
                Status::Observed
            }
            Request::ConnectBack { target, nonce } => {
                self.connect_back(peer, canonical(target), nonce, peer_fp)
                    .await
            }
            Request::Nonce(_) => {
                // Only a requester waits for nonces.
                super::transfer::refuse(&mut recv, Some(&mut send), ErrorCode::Unsupported);
                return;
            }
        };
        let answer = Answer {
            status,
            observed: peer,
        };
        if send.write_all(&answer.encode()).await.is_ok() {
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        }
    }

    async fn connect_back(
        &self,
        peer: SocketAddr,
        target: SocketAddr,
        nonce: Nonce,
        peer_fp: Option<Fingerprint>,
    ) -> Status {
        if target.ip() != peer.ip() {
            info!(%peer, %target, "probe: refusing to connect back to another address than the requester's");
            return Status::NotYourAddress;
        }
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            info!(%peer, "probe: too many connect-backs under way");
            return Status::Busy;
        };
        let attempt = self.deliver(target, nonce, peer_fp);
        match tokio::time::timeout(CONNECT_BACK_TIMEOUT, attempt).await {
            Ok(Ok(())) => {
                info!(%target, "probe: connect-back delivered");
                Status::Delivered
            }
            Ok(Err(e)) => {
                info!(%target, cause = %e, "probe: connect-back failed");
                Status::Failed
            }
            Err(_) => {
                info!(%target, "probe: connect-back timed out");
                Status::Failed
            }
        }
    }

    /// Connects to `target` from a fresh endpoint (a new UDP socket, so a new source
    /// port) and delivers the nonce; succeeds once the requester acknowledged it.
    async fn deliver(
        &self,
        target: SocketAddr,
        nonce: Nonce,
        peer_fp: Option<Fingerprint>,
    ) -> Result<(), ProbeError> {
        let mut options = self.options.clone();
        options.connect_timeout = CONNECT_BACK_TIMEOUT;
        let endpoint = Endpoint::client(self.identity.clone(), options)
            .map_err(|e| ProbeError::Stream(e.to_string()))?;
        let rules = match peer_fp {
            Some(fp) => TrustRules::pinned_to(fp),
            None => TrustRules::any(),
        };
        let result = async {
            let conn = endpoint.connect(target, rules).await?;
            let answer = ask(&conn, &Request::Nonce(nonce), CONNECT_BACK_TIMEOUT).await;
            conn.close(super::framing::close::DONE, b"probe done");
            match answer?.status {
                Status::Observed => Ok(()),
                other => Err(ProbeError::Refused(format!("{other:?}"))),
            }
        }
        .await;
        endpoint
            .shutdown(
                super::framing::close::DONE,
                b"probe done",
                Duration::from_millis(200),
            )
            .await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let nonce = Nonce([5; 16]);
        for r in [
            Request::Observe,
            Request::ConnectBack {
                target: "203.0.113.1:40000".parse().unwrap(),
                nonce,
            },
            Request::ConnectBack {
                target: "[2001:db8::1]:7447".parse().unwrap(),
                nonce,
            },
            Request::Nonce(nonce),
        ] {
            let bytes = r.encode();
            assert!(bytes.len() <= MAX_PROBE_LEN);
            assert_eq!(Request::decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn request_layout_is_as_documented() {
        let r = Request::ConnectBack {
            target: "203.0.113.1:258".parse().unwrap(),
            nonce: Nonce([9; 16]),
        };
        let b = r.encode();
        assert_eq!(b[0], 2, "op");
        assert_eq!(b[1], 4, "family");
        assert_eq!(&b[2..6], &[203, 0, 113, 1]);
        assert_eq!(&b[6..8], &[1, 2], "port");
        assert_eq!(&b[8..], &[9; 16]);
        let stream = r.stream_bytes();
        let header = Header::decode(&stream).unwrap();
        assert_eq!(header.kind, Kind::Probe);
        assert_eq!(header.length, Some(b.len() as u64));
        assert_eq!(&stream[stream.len() - b.len()..], &b[..]);
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        for bad in [
            &[][..],
            &[0],
            &[1, 0],
            &[2, 4, 1, 2, 3],
            &[2, 5, 1, 2, 3, 4, 0, 1],
            &[3, 1, 2],
            &[99],
        ] {
            assert!(Request::decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Request::decode(&[0; MAX_PROBE_LEN + 1]),
            Err(FrameError::TooLarge(MAX_PROBE_LEN + 1))
        );
        // Connect back to port 0 or to nowhere: refused.
        let mut zero = Request::ConnectBack {
            target: "203.0.113.1:1".parse().unwrap(),
            nonce: Nonce([0; 16]),
        }
        .encode();
        zero[6..8].copy_from_slice(&[0, 0]);
        assert!(Request::decode(&zero).is_err());
    }

    #[test]
    fn answers_round_trip_and_reject_garbage() {
        let a = Answer {
            status: Status::Delivered,
            observed: "198.51.100.9:1234".parse().unwrap(),
        };
        let bytes = a.encode();
        assert_eq!(&bytes[..4], b"QP2O");
        assert_eq!(bytes.len(), 4 + 1 + 1 + 1 + 4 + 2);
        assert_eq!(Answer::decode(&bytes).unwrap(), a);
        assert!(Answer::decode(b"QP2Ox").is_err());
        let mut bad = bytes.clone();
        bad[5] = 77;
        assert!(Answer::decode(&bad).is_err());
        let mut long = bytes;
        long.push(0);
        assert!(Answer::decode(&long).is_err());
    }
}
