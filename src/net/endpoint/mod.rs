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
//! | largest UDP payload | what the route's interface allows, at most 65,000 B | larger packets are less work; loopback starts at 65,000 B, other paths search up to their interface's MTU (1472 on IPv4 Ethernet, 8972 with jumbo frames; `tests/suite/mtu.rs`); see `socket` and `TransportOptions::dial_config` |
//! | path MTU discovery | dialing side only | the side that sends data probes; a listener sends acks and small answers, so its probes (and the peer's parsing of them) would be spent on every connection for nothing |
//! | concurrent streams | 128 bi + 128 uni | one message per stream, many in flight (`listen --max-streams`) |
//!
//! What could go wrong, and how it is prevented:
//! - *A handshake that never completes* (nothing listening: UDP gives no refusal) would
//!   hang until the idle timeout; each attempt is bounded by the connect timeout and
//!   reported as [`ConnectError::Timeout`], which the retry loop retries.
//! - *Identity rejections mistaken for network trouble*, *a bare handshake error
//!   instead of a reason*: a certificate alert becomes
//!   [`ConnectError::IdentityRejected`], never retried, whose message names our
//!   verifier's refusal or the peer's alert ([`classify`]; told in full in `error.rs`).
//! - *A keep-alive longer than the idle timeout* would let quiet connections die: it is
//!   clamped to a third of the idle timeout.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{TransportConfig, VarInt};

use super::socket::{Socket, MAX_UDP_PAYLOAD};
use super::tls::{self, Fingerprint, Identity, TrustRules};

/// Socket buffer size asked of the kernel (it may grant less: `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 8 * 1024 * 1024;
const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
const SEND_WINDOW: u64 = 16 * 1024 * 1024;
/// The packet size (UDP payload) QUIC starts with, before path MTU discovery.
const INITIAL_MTU: u16 = 1200;
/// Default for [`TransportOptions::max_streams`]. A tree of small files goes as fast as
/// the listener can keep files in flight while a batch of them is being synced: at 128 a
/// sender stalled on its stream credit during each sync. Measured, 5,000 files of 4 KiB
/// into ext4 on a quiet machine (medians of 4): 0.33 s at 128, 0.30 s at 256, 0.29 s at
/// 512, for a listener's peak RSS of 15, 18 and 22 MiB (with `--uni`, where nothing
/// waits for the commit, 24, 27 and 30 MiB). 256 takes most of the gain and keeps the
/// listener well under 32 MiB; the connection's receive window bounds the buffered bytes
/// whatever the count.
pub const MAX_STREAMS: u32 = 256;

/// Which congestion controller quinn runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
        self.congestion_control(&mut t, INITIAL_MTU);
        Ok(t)
    }

    /// Puts the congestion controller on `t`, for a connection whose packets start at
    /// `mtu` bytes.
    ///
    /// quinn sends nothing while a whole packet does not fit in the congestion window,
    /// and the loss-based controllers start with a window made for 1200-byte packets
    /// (12,000 bytes): a loopback connection that starts at 65,000-byte packets could
    /// not even finish its handshake with them. Their initial window is RFC 9002's,
    /// computed for the packets the connection starts with:
    /// `min(10 × mtu, max(14720, 2 × mtu))`. BBR's (200 packets of 1200 bytes) is
    /// larger than that at every packet size allowed here.
    fn congestion_control(&self, t: &mut TransportConfig, mtu: u16) {
        let mtu = u64::from(mtu);
        let window = (10 * mtu).min(14_720.max(2 * mtu));
        match self.congestion {
            Congestion::Bbr => {
                t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
            }
            Congestion::Cubic => {
                let mut cubic = quinn::congestion::CubicConfig::default();
                cubic.initial_window(window);
                t.congestion_controller_factory(Arc::new(cubic))
            }
            Congestion::Newreno => {
                let mut reno = quinn::congestion::NewRenoConfig::default();
                reno.initial_window(window);
                t.congestion_controller_factory(Arc::new(reno))
            }
        };
    }

    /// The settings of a connection we dial to `addr`, whose route allows UDP payloads
    /// of `payload` bytes at our end (see [`route_payload`]; quinn's defaults where
    /// that is not known).
    ///
    /// Fewer, larger packets are less work at both ends (`socket` keeps quinn's batches
    /// of them within what the kernel takes), so path MTU discovery searches up to what
    /// the route's interface allows: 1472 on Ethernet, 8972 with jumbo frames (IPv4). No
    /// higher: each probe is a padded packet that both ends pay for, byte by byte at the
    /// receiver. Loopback has no path beyond the interface, so a loopback connection
    /// starts at its largest packets and probes nothing: a search from 1200 to 65,000
    /// takes a dozen probes of up to 64 KiB, which cost a short connection 3 ms of CPU
    /// (new-connection messages on loopback ran 3.7 times slower).
    fn dial_config(
        &self,
        addr: SocketAddr,
        payload: Option<u16>,
    ) -> Result<TransportConfig, EndpointError> {
        let mut t = self.transport_config()?;
        let mut mtud = quinn::MtuDiscoveryConfig::default();
        let Some(payload) = payload else {
            t.mtu_discovery_config(Some(mtud));
            return Ok(t);
        };
        mtud.upper_bound(payload);
        t.mtu_discovery_config(Some(mtud));
        if canonical(addr).ip().is_loopback() {
            t.initial_mtu(payload);
            self.congestion_control(&mut t, payload);
        }
        Ok(t)
    }
}

/// The largest UDP payload the route to `addr` allows at our end: the MTU of the
/// interface it leaves by (the kernel's route lookup, no packet sent), less the IP and
/// UDP headers, within 1200..=[`MAX_UDP_PAYLOAD`]. 1452 (Ethernet) when the kernel does
/// not say. `None` where the platform has no way to ask (macOS): quinn's defaults then
/// apply, a start at 1200 bytes and discovery up to 1452.
#[cfg(any(target_os = "linux", target_os = "android", windows))]
fn route_payload(addr: SocketAddr) -> Option<u16> {
    const ETHERNET: u16 = 1452;
    let addr = canonical(addr);
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let Ok(socket) = UdpSocket::bind(local) else {
        return Some(ETHERNET);
    };
    if socket.connect(addr).is_err() {
        return Some(ETHERNET);
    }
    let headers = if addr.is_ipv4() { 20 + 8 } else { 40 + 8 };
    match route_mtu(&socket, addr.is_ipv4()) {
        Some(mtu) if mtu > headers => {
            Some((mtu - headers).clamp(1200, i32::from(MAX_UDP_PAYLOAD)) as u16)
        }
        _ => Some(ETHERNET),
    }
}

/// No way to ask for the route's MTU here: quinn's defaults apply.
#[cfg(not(any(target_os = "linux", target_os = "android", windows)))]
fn route_payload(_addr: SocketAddr) -> Option<u16> {
    None
}

/// The MTU the kernel knows for the route of the connected `socket` (`IP_MTU`,
/// `IPV6_MTU`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn route_mtu(socket: &UdpSocket, v4: bool) -> Option<i32> {
    let (level, name) = if v4 {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `mtu`, which we own.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            level,
            name,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(mtu)
}

/// The MTU Windows knows for the path of the connected `socket` (`IP_MTU`,
/// `IPV6_MTU`, Windows 10 1703 and later).
#[cfg(windows)]
fn route_mtu(socket: &UdpSocket, v4: bool) -> Option<i32> {
    use windows_sys::Win32::Networking::WinSock::{
        getsockopt, IPPROTO_IP, IPPROTO_IPV6, IPV6_MTU, IP_MTU, SOCKET,
    };
    let (level, name) = if v4 {
        (IPPROTO_IP, IP_MTU)
    } else {
        (IPPROTO_IPV6, IPV6_MTU)
    };
    let mut mtu: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as i32;
    // SAFETY: getsockopt writes at most `len` bytes into `mtu`, which we own; the
    // socket is open for the whole call.
    let rc = unsafe {
        getsockopt(
            std::os::windows::io::AsRawSocket::as_raw_socket(socket) as SOCKET,
            level,
            name,
            (&mut mtu as *mut i32).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(mtu)
}

mod error;
mod reset;

use reset::{RandomCids, ResetKey};

pub use error::{classify, ConnectError, EndpointError, Rejection};

/// A QUIC endpoint with our identity.
#[derive(Debug, Clone)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    identity: Arc<Identity>,
    /// Dial settings by destination IP (they differ in the largest packet the route
    /// allows); made on the first dial to each.
    dials: Arc<Mutex<HashMap<IpAddr, Arc<TransportConfig>>>>,
    options: TransportOptions,
    /// The socket under quinn, for the few raw datagrams of a hole punch.
    socket: Arc<Socket>,
}

/// Destinations whose dial settings are kept; past this the cache starts again.
const DIAL_CACHE: usize = 256;

impl Endpoint {
    /// Binds the endpoint. With `server` set it also accepts connections from peers
    /// that pass those rules.
    pub fn bind(
        addr: SocketAddr,
        identity: Arc<Identity>,
        options: TransportOptions,
        server: Option<TrustRules>,
    ) -> Result<Self, EndpointError> {
        // Checked now rather than at the first dial.
        options.transport_config()?;
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
        let socket = Arc::new(Socket::new(socket));
        let inner = quinn::Endpoint::new_with_abstract_socket(
            {
                // Stateless reset tokens keyed by our identity: after a restart with
                // the same identity, peers of the previous run are reset at their next
                // packet (a listener registered with an introducer notices its
                // restart at its next keep-alive).
                let key = ResetKey::new(&identity.reset_secret());
                let mut config = quinn::EndpointConfig::new(Arc::new(key));
                // quinn's default connection IDs carry a check keyed per process, so a
                // restarted endpoint would drop the old connections' packets as
                // invalid instead of resetting them: random IDs, every unknown one
                // answered with a reset (rate-limited by quinn, always smaller than
                // the packet that caused it).
                config.cid_generator(|| Box::new(RandomCids));
                // Accept the datagram size we probe for (the transport parameter).
                let _ = config.max_udp_payload_size(MAX_UDP_PAYLOAD);
                config
            },
            server_config,
            socket.clone(),
            runtime,
        )
        .map_err(|source| EndpointError::Bind { addr, source })?;
        Ok(Self {
            inner,
            identity,
            dials: Arc::default(),
            options,
            socket,
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
        let transport = self.dial_transport(addr)?;
        self.connect_using(addr, rules, transport).await
    }

    /// [`Endpoint::connect`] with other transport settings than the endpoint's (a
    /// registration connection's short idle timeout).
    pub async fn connect_with(
        &self,
        addr: SocketAddr,
        rules: TrustRules,
        options: &TransportOptions,
    ) -> Result<quinn::Connection, ConnectError> {
        let transport = options
            .dial_config(addr, route_payload(addr))
            .map_err(|e| ConnectError::Invalid(e.to_string()))?;
        self.connect_using(addr, rules, Arc::new(transport)).await
    }

    async fn connect_using(
        &self,
        addr: SocketAddr,
        rules: TrustRules,
        transport: Arc<TransportConfig>,
    ) -> Result<quinn::Connection, ConnectError> {
        let (tls, verifier) = tls::client_config(&self.identity, rules);
        let quic =
            QuicClientConfig::try_from(tls).map_err(|e| ConnectError::Invalid(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(transport);
        let shown = canonical(addr);
        let connecting = self
            .inner
            .connect_with(config, self.reachable(addr), tls::SERVER_NAME)
            .map_err(|e| ConnectError::Invalid(e.to_string()))?;
        let timeout = self.options.connect_timeout;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(match classify(e) {
                ConnectError::IdentityRejected(Rejection::Tls(detail)) => {
                    ConnectError::IdentityRejected(rejection(shown, &verifier, detail))
                }
                other => other,
            }),
            Err(_) => Err(ConnectError::Timeout {
                addr: shown,
                timeout,
            }),
        }
    }

    /// The transport settings for a dial to `addr`, made once per destination IP.
    fn dial_transport(&self, addr: SocketAddr) -> Result<Arc<TransportConfig>, ConnectError> {
        let ip = canonical(addr).ip();
        let mut dials = self.dials.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = dials.get(&ip) {
            return Ok(config.clone());
        }
        let config = self
            .options
            .dial_config(addr, route_payload(addr))
            .map_err(|e| ConnectError::Invalid(e.to_string()))?;
        let config = Arc::new(config);
        if dials.len() >= DIAL_CACHE {
            dials.clear();
        }
        dials.insert(ip, config.clone());
        Ok(config)
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

    /// Sends one raw UDP datagram to `to` from the endpoint's own socket, outside any
    /// QUIC connection: a hole punch, which opens this side's NAT binding toward `to`
    /// (see `introducer`). The peer's QUIC stack drops it as a malformed packet.
    pub async fn send_datagram(&self, to: SocketAddr, datagram: &[u8]) -> std::io::Result<()> {
        self.socket.send_raw(self.reachable(to), datagram).await
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
fn rejection(addr: SocketAddr, verifier: &tls::PeerVerifier, detail: String) -> Rejection {
    match verifier.refusal() {
        Some(refusal) => Rejection::ByUs {
            addr,
            refusal,
            expected: verifier.rules().pinned.iter().flatten().copied().collect(),
        },
        None => Rejection::Tls(format!("{addr}: {detail}")),
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

    /// A loopback dial starts at the largest packets loopback carries and probes
    /// nothing; the accepting side keeps 1200-byte packets and probes nothing either.
    #[tokio::test]
    async fn loopback_dials_start_at_the_largest_packets_without_probes() {
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
        // Some data, so that probes would have had their chance.
        let mut send = dialed.open_uni().await.unwrap();
        send.write_all(&vec![0u8; 1 << 20]).await.unwrap();
        send.finish().unwrap();
        let mut recv = accepted.accept_uni().await.unwrap();
        recv.read_to_end(2 << 20).await.unwrap();
        assert_eq!(dialed.stats().path.current_mtu, MAX_UDP_PAYLOAD);
        assert_eq!(dialed.stats().path.sent_plpmtud_probes, 0);
        assert_eq!(accepted.stats().path.sent_plpmtud_probes, 0);
        assert_eq!(accepted.stats().path.current_mtu, 1200);
    }

    /// The route to loopback allows 64 KiB datagrams, of either family.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_loopback_route_allows_the_largest_payload() {
        let largest = Some(MAX_UDP_PAYLOAD);
        assert_eq!(route_payload("127.0.0.1:9".parse().unwrap()), largest);
        assert_eq!(
            route_payload("[::ffff:127.0.0.1]:9".parse().unwrap()),
            largest
        );
        if std::net::UdpSocket::bind("[::1]:0").is_ok() {
            assert_eq!(route_payload("[::1]:9".parse().unwrap()), largest);
        }
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
