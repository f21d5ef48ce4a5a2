//! The QUIC endpoint: one UDP socket per process, client and server at once.
//!
//! [`Endpoint::bind`] opens a dual-stack socket (`[::]` with `IPV6_V6ONLY` off, so IPv4
//! peers arrive as mapped addresses; plain IPv4 where the host has no IPv6), sizes its
//! kernel buffers, and puts quinn on it with our TLS configuration (`tls`) and the
//! transport settings below. Outgoing connections ([`Endpoint::connect`]) leave from the
//! same socket, which is what lets a mapped port (UPnP) or a NAT binding serve both
//! directions.
//!
//! Transport defaults (each documented in README, most a flag):
//!
//! | setting | default | why |
//! | --- | --- | --- |
//! | idle timeout | 30 s | a dead peer is noticed; a quiet one survives with keep-alive |
//! | keep-alive | 10 s | well inside the idle timeout and common NAT UDP timeouts |
//! | connect timeout | 2 s | one handshake attempt; the retry loop makes more |
//! | congestion control | BBR | loss-based control collapses under random loss (README) |
//! | stream receive window | 8 MiB | a full window at 1 Gbit/s × 64 ms without stalls |
//! | connection receive window | 16 MiB | two full streams in flight |
//! | send window | 16 MiB | matches the peer's receive window |
//! | largest UDP payload | 65,000 B | path MTU discovery goes above 1500 where the path allows (loopback: 64 KiB, jumbo LANs: 9000); see `socket` |
//! | path MTU discovery | dialing side only | the side that sends data probes; a listener sends acks and small answers, so its probes (and the peer's parsing of them) would be spent on every connection for nothing |
//! | concurrent streams | 128 bi + 128 uni | one message per stream, many in flight (`listen --max-streams`) |
//!
//! What could go wrong, and how it is prevented:
//! - *A handshake that never completes* (nothing listening: UDP gives no refusal) would
//!   hang until the idle timeout; each attempt is bounded by the connect timeout and
//!   reported as [`ConnectError::Timeout`], which the retry loop retries.
//! - *Identity rejections mistaken for network trouble*: a TLS alert about certificates,
//!   sent or received, becomes [`ConnectError::IdentityRejected`], which is never retried.
//! - *A bare handshake error instead of a reason*: when we refused the peer, the
//!   verifier's [`tls::Refusal`] is the message ("peer certificate rejected: expired
//!   (not after …)"); when the peer refused us, its alert is named and explained.
//! - *A keep-alive longer than the idle timeout* would let quiet connections die: it is
//!   clamped to a third of the idle timeout.

use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, TransportConfig, VarInt};

use super::socket::{Socket, MAX_UDP_PAYLOAD};
use super::tls::{self, Fingerprint, Identity, TlsError, TrustRules};

/// Socket buffer size asked of the kernel (it may grant less: `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
const SEND_WINDOW: u64 = 16 * 1024 * 1024;
/// Default for [`TransportOptions::max_streams`].
pub const MAX_STREAMS: u32 = 128;

/// Which congestion controller quinn runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Congestion {
    /// Model-based (BBR v1); holds its rate under random loss.
    #[default]
    Bbr,
    /// Loss-based, quinn's own default.
    Cubic,
    /// Loss-based, the classic.
    Newreno,
}

/// Transport settings shared by every connection of the endpoint.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// A connection with no packet from the peer for this long is dead.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this much quiet; `None` for never.
    pub keep_alive: Option<Duration>,
    /// How long one handshake attempt may take.
    pub connect_timeout: Duration,
    /// The congestion controller.
    pub congestion: Congestion,
    /// How many streams of each direction a peer may have open at once on one
    /// connection (`listen --max-streams`); a peer that wants more waits for one to end.
    pub max_streams: u32,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            connect_timeout: Duration::from_secs(2),
            congestion: Congestion::Bbr,
            max_streams: MAX_STREAMS,
        }
    }
}

impl TransportOptions {
    fn transport_config(&self) -> Result<TransportConfig, EndpointError> {
        let mut t = TransportConfig::default();
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| EndpointError::Option("idle timeout out of range".into()))?;
        t.max_idle_timeout(Some(idle));
        let keep_alive = self
            .keep_alive
            .filter(|d| !d.is_zero())
            .map(|d| d.min(self.idle_timeout / 3));
        t.keep_alive_interval(keep_alive);
        t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
        t.receive_window(VarInt::from_u32(CONNECTION_WINDOW));
        t.send_window(SEND_WINDOW);
        t.max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams));
        t.max_concurrent_uni_streams(VarInt::from_u32(self.max_streams));
        // Let path MTU discovery go above Ethernet's 1500 where the path allows it
        // (loopback, jumbo-frame LANs): fewer, larger packets are less work at both
        // ends. `socket` keeps quinn's batches of large packets within what the kernel
        // takes. Where the path has 1500, the larger probes are lost and the search goes
        // on below them.
        let mut mtud = quinn::MtuDiscoveryConfig::default();
        mtud.upper_bound(MAX_UDP_PAYLOAD);
        t.mtu_discovery_config(Some(mtud));
        match self.congestion {
            Congestion::Bbr => {
                t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
            }
            Congestion::Cubic => {
                t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
            }
            Congestion::Newreno => t.congestion_controller_factory(Arc::new(
                quinn::congestion::NewRenoConfig::default(),
            )),
        };
        Ok(t)
    }
}

/// Failure to set up the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The UDP socket could not be opened or bound.
    #[error("could not bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// TLS could not be configured.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A transport option is out of range.
    #[error("{0}")]
    Option(String),
}

/// Why a connection attempt failed. [`Retryable`](super::retry::Retryable) tells the
/// retry loop which of these are worth another attempt.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// No handshake within the connect timeout (often: nothing listening).
    #[error("no answer from {addr} within {}", humantime::format_duration(*timeout))]
    Timeout {
        /// The peer.
        addr: SocketAddr,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// One side rejected the other's certificate.
    #[error("peer identity rejected: {0}")]
    IdentityRejected(String),
    /// The peer refused the connection (closed it with an application code, or spoke
    /// another protocol).
    #[error("refused by peer: {0}")]
    Refused(String),
    /// The connection failed for a transient reason.
    #[error("connection failed: {0}")]
    Lost(ConnectionError),
    /// quinn refused to start the connection (bad address, endpoint stopping).
    #[error("cannot connect: {0}")]
    Invalid(String),
}

impl super::retry::Retryable for ConnectError {
    fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Timeout { .. } | ConnectError::Lost(_))
    }
}

/// TLS alerts that mean "I do not accept your certificate".
fn is_certificate_alert(code: u64) -> bool {
    // bad_certificate(42) .. unknown_ca(48), access_denied(49), certificate_required(116)
    code & !0xff == 0x100 && matches!(code & 0xff, 42..=49 | 116)
}

/// What the peer's certificate alert says about our identity, and what to do. The alert
/// is all the peer tells (`tls::Refusal::to_rustls` picks it); `qp2p id` shows our side.
fn refused_us(alert: u64) -> String {
    let (name, why) = match alert {
        43 => (
            "unsupported_certificate",
            "our certificate's key usage or extended key usage does not allow this use",
        ),
        45 => (
            "certificate_expired",
            "it finds our certificate expired or not yet valid (qp2p id shows its validity; \
             check both clocks)",
        ),
        48 => (
            "unknown_ca",
            "our certificate is not issued by a CA it trusts (--ca): a self-signed identity, \
             or one from another CA",
        ),
        42 => (
            "bad_certificate",
            "ask its owner to allow our fingerprint (qp2p id prints it)",
        ),
        46 => (
            "certificate_unknown",
            "ask its owner to allow our fingerprint (qp2p id prints it)",
        ),
        _ => (
            "certificate",
            "ask its owner to allow our fingerprint (qp2p id prints it)",
        ),
    };
    format!("the peer refused our identity (TLS alert {alert} {name}): {why}")
}

/// Classifies a connection error: identity rejections, refusals, or transient trouble.
pub fn classify(e: ConnectionError) -> ConnectError {
    match &e {
        ConnectionError::TransportError(t) if is_certificate_alert(t.code.into()) => {
            ConnectError::IdentityRejected(t.reason.clone())
        }
        ConnectionError::ConnectionClosed(c) if is_certificate_alert(c.error_code.into()) => {
            ConnectError::IdentityRejected(refused_us(u64::from(c.error_code) & 0xff))
        }
        // A listener at its connection limit refuses before the handshake: busy now,
        // maybe not in a moment, so worth another attempt.
        ConnectionError::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            ConnectError::Lost(e)
        }
        ConnectionError::ConnectionClosed(c) => {
            ConnectError::Refused(format!("{c}").trim().to_string())
        }
        ConnectionError::TransportError(t) => ConnectError::Refused(t.to_string()),
        ConnectionError::ApplicationClosed(c) => {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            if c.error_code == super::framing::close::SHUTDOWN {
                // A peer going away is worth trying again (it may come back).
                ConnectError::Lost(e)
            } else {
                ConnectError::Refused(reason)
            }
        }
        ConnectionError::VersionMismatch => ConnectError::Refused(e.to_string()),
        _ => ConnectError::Lost(e),
    }
}

/// A QUIC endpoint with our identity.
#[derive(Debug, Clone)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    identity: Arc<Identity>,
    transport: Arc<TransportConfig>,
    options: TransportOptions,
}

impl Endpoint {
    /// Binds the endpoint. With `server` set it also accepts connections from peers
    /// that pass those rules.
    pub fn bind(
        addr: SocketAddr,
        identity: Arc<Identity>,
        options: TransportOptions,
        server: Option<TrustRules>,
    ) -> Result<Self, EndpointError> {
        let transport = Arc::new(options.transport_config()?);
        let server_config = match server {
            Some(rules) => {
                let tls = tls::server_config(&identity, rules)?;
                let quic = QuicServerConfig::try_from(tls)
                    .map_err(|e| EndpointError::Option(e.to_string()))?;
                let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
                let mut accepted = options.transport_config()?;
                // Path MTU discovery is for the side that sends data: the dialing one
                // (a sender). Each probe is a padded packet that the peer parses byte by
                // byte, and the first goes out as soon as a connection is up: a listener's
                // probes would cost every connection and serve only acks and small bench
                // answers. The listener still accepts the sender's large packets (the
                // endpoint's largest UDP payload).
                accepted.mtu_discovery_config(None);
                config.transport_config(Arc::new(accepted));
                Some(config)
            }
            None => None,
        };
        let runtime = Arc::new(quinn::TokioRuntime);
        let socket = quinn::Runtime::wrap_udp_socket(&*runtime, bind_socket(addr)?)
            .map_err(|source| EndpointError::Bind { addr, source })?;
        let inner = quinn::Endpoint::new_with_abstract_socket(
            {
                let mut config = quinn::EndpointConfig::default();
                // Accept the datagram size we probe for (the transport parameter).
                let _ = config.max_udp_payload_size(MAX_UDP_PAYLOAD);
                config
            },
            server_config,
            Arc::new(Socket::new(socket)),
            runtime,
        )
        .map_err(|source| EndpointError::Bind { addr, source })?;
        Ok(Self {
            inner,
            identity,
            transport,
            options,
        })
    }

    /// Binds an endpoint that only dials out, on an ephemeral port of every address
    /// family.
    pub fn client(
        identity: Arc<Identity>,
        options: TransportOptions,
    ) -> Result<Self, EndpointError> {
        Self::bind(
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            identity,
            options,
            None,
        )
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Our fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint
    }

    /// The transport settings.
    pub fn options(&self) -> &TransportOptions {
        &self.options
    }

    /// The quinn endpoint, for accepting connections.
    pub fn quinn(&self) -> &quinn::Endpoint {
        &self.inner
    }

    /// Connects to `addr`, accepting the peer only if it passes `rules`. One attempt,
    /// bounded by the connect timeout. Cancel-safe: dropping the future abandons the
    /// attempt.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        rules: TrustRules,
    ) -> Result<quinn::Connection, ConnectError> {
        let (tls, verifier) = tls::client_config(&self.identity, rules);
        let quic =
            QuicClientConfig::try_from(tls).map_err(|e| ConnectError::Invalid(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(self.transport.clone());
        let shown = canonical(addr);
        let connecting = self
            .inner
            .connect_with(config, self.reachable(addr), tls::SERVER_NAME)
            .map_err(|e| ConnectError::Invalid(e.to_string()))?;
        let timeout = self.options.connect_timeout;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(match classify(e) {
                ConnectError::IdentityRejected(reason) => {
                    ConnectError::IdentityRejected(rejection(shown, &verifier, reason))
                }
                other => other,
            }),
            Err(_) => Err(ConnectError::Timeout {
                addr: shown,
                timeout,
            }),
        }
    }

    /// An IPv4 peer reached from an IPv6 socket is addressed as a mapped address; an
    /// IPv6 peer from an IPv4-only socket cannot be reached and quinn says so.
    fn reachable(&self, addr: SocketAddr) -> SocketAddr {
        match (self.inner.local_addr(), addr) {
            (Ok(SocketAddr::V6(_)), SocketAddr::V4(v4)) => {
                SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port())
            }
            _ => addr,
        }
    }

    /// Closes every connection with `code` and `reason`, then waits (at most `wait`)
    /// for the peers to be told.
    pub async fn shutdown(&self, code: VarInt, reason: &[u8], wait: Duration) {
        self.inner.close(code, reason);
        let _ = tokio::time::timeout(wait, self.inner.wait_idle()).await;
    }
}

/// Says who refused whom: we refused a peer (the verifier kept the rule that failed: a
/// wrong fingerprint, or the certificate's CA trust problem), or the peer refused us.
fn rejection(addr: SocketAddr, verifier: &tls::PeerVerifier, reason: String) -> String {
    match verifier.refusal() {
        Some(tls::Refusal::NotPinned(seen)) => {
            let expected: Vec<String> = verifier
                .rules()
                .pinned
                .iter()
                .flatten()
                .map(|f| f.to_string())
                .collect();
            format!(
                "{addr} showed fingerprint {seen}, expected {}; nothing was sent",
                expected.join(" or ")
            )
        }
        Some(refusal) => format!("{addr}: {refusal}; nothing was sent"),
        None => format!("{addr}: {reason}"),
    }
}

/// Opens the UDP socket: dual-stack when the address is `[::]`, falling back to IPv4
/// when the host has no IPv6; kernel buffers enlarged for throughput.
fn bind_socket(addr: SocketAddr) -> Result<UdpSocket, EndpointError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let open = |addr: SocketAddr| -> std::io::Result<UdpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        // Best effort: the kernel caps these at net.core.[rw]mem_max.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        socket.bind(&addr.into())?;
        Ok(socket.into())
    };
    match open(addr) {
        Ok(s) => Ok(s),
        Err(e)
            if addr.ip() == Ipv6Addr::UNSPECIFIED
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
                ) =>
        {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            open(v4).map_err(|source| EndpointError::Bind { addr: v4, source })
        }
        Err(source) => Err(EndpointError::Bind { addr, source }),
    }
}

/// Shows an address the way a user typed it: IPv4-mapped IPv6 as plain IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_alerts_are_recognised() {
        assert!(is_certificate_alert(0x100 + 42));
        assert!(is_certificate_alert(0x100 + 49));
        assert!(is_certificate_alert(0x100 + 116));
        assert!(!is_certificate_alert(0x100 + 40), "handshake_failure");
        assert!(!is_certificate_alert(42), "not a crypto code");
    }

    #[test]
    fn a_refusal_by_the_peer_names_its_alert() {
        let expired = refused_us(45);
        assert!(
            expired.contains("TLS alert 45 certificate_expired"),
            "{expired}"
        );
        assert!(expired.contains("expired or not yet valid"), "{expired}");
        let unknown = refused_us(48);
        assert!(unknown.contains("unknown_ca"), "{unknown}");
        assert!(unknown.contains("self-signed"), "{unknown}");
        assert!(refused_us(46).contains("allow our fingerprint"));
        assert!(refused_us(43).contains("key usage"));
    }

    /// The dialing side discovers the path MTU (loopback allows the largest payload); the
    /// accepting side sends no probes.
    #[tokio::test]
    async fn only_the_dialing_side_probes_the_path_mtu() {
        let identity = || Arc::new(Identity::ephemeral().unwrap());
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let options = TransportOptions::default();
        let server = Endpoint::bind(
            loopback,
            identity(),
            options.clone(),
            Some(TrustRules::any()),
        )
        .unwrap();
        let client = Endpoint::bind(loopback, identity(), options, None).unwrap();
        let addr = server.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(client.connect(addr, TrustRules::any()), async {
            server.quinn().accept().await.unwrap().await.unwrap()
        });
        let dialed = dialed.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while dialed.stats().path.current_mtu < MAX_UDP_PAYLOAD {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dialing side did not find the path MTU: {:?}",
                dialed.stats().path
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(dialed.stats().path.sent_plpmtud_probes > 0);
        assert_eq!(accepted.stats().path.sent_plpmtud_probes, 0);
        assert_eq!(accepted.stats().path.current_mtu, 1200);
    }

    #[test]
    fn keep_alive_is_clamped_inside_the_idle_timeout() {
        let opts = TransportOptions {
            idle_timeout: Duration::from_secs(3),
            keep_alive: Some(Duration::from_secs(10)),
            ..TransportOptions::default()
        };
        // Building the config must not fail; the clamp is checked by behaviour in the
        // integration tests (a quiet connection survives its idle timeout).
        opts.transport_config().unwrap();
    }
}
