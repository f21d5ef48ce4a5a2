//! UPnP IGD port mappings: find the gateway, map a UDP port, keep the mapping alive,
//! remove it.
//!
//! Built on `igd-next` (its tokio client). [`discover`] finds the Internet Gateway
//! Device, [`Gateway::map`] adds a UDP mapping `EXT:PORT -> LOCAL:PORT` with a lease,
//! [`Gateway::unmap`] removes it, and [`Keeper`] holds one mapping for as long as a
//! `listen --upnp` runs: it renews the lease, finds the gateway again when renewal
//! fails, and removes the mapping when it is stopped. [`classify`] says whether an
//! external address can be reached from the internet at all.
//!
//! What could go wrong, and how it is prevented:
//! - *The search leaves through the wrong interface* (or through none: a socket bound
//!   to `0.0.0.0` gets ENETUNREACH for the SSDP multicast group on a host without a
//!   default route). The M-SEARCH is sent from the local address that routes to the
//!   default gateway (read from `/proc/net/route`), so the multicast leaves on that
//!   interface and only the gateway we actually route through is found. Without a
//!   default route every directly connected IPv4 network is searched at once.
//! - *A single lost SSDP datagram means "no gateway"*: the search is repeated in short
//!   rounds until the caller's timeout, each round with a new M-SEARCH.
//! - *The mapping points at an address the gateway does not route to us* (a multi-homed
//!   host; gateways in secure mode refuse any internal client but the caller): the
//!   internal address is the local address of a UDP socket connected to the gateway,
//!   i.e. exactly the address our packets to it come from.
//! - *The lease runs out under a running listener*: the [`Keeper`] renews at half of
//!   the lease actually granted (the gateway may clamp the one asked for; it is read
//!   back from the gateway's table), and when renewal fails it searches for the gateway
//!   again and maps anew, reporting a changed external address.
//! - *Mappings left behind*: every mapping carries a lease, so a crash leaves nothing
//!   for longer than that; on a normal exit and on Ctrl-C/SIGTERM the callers remove
//!   it (the [`Keeper`] does so when stopped, bounded by a timeout). A mapping that
//!   existed before a run is reported by [`Gateway::lookup`] so a run never removes
//!   what it did not make.
//! - *A gateway that hangs*: every request to it is bounded by [`REQUEST_TIMEOUT`].
//! - *An external address that cannot work* (private: double NAT; 100.64/10: carrier
//!   NAT): [`classify`] names it so the user is told, but nothing is refused on that
//!   ground (a test bed legitimately uses documentation addresses).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use futures_util::future::select_ok;
use igd_next::aio::tokio::{search_gateway, Tokio};
use igd_next::{
    AddAnyPortError, AddPortError, GetGenericPortMappingEntryError, PortMappingProtocol,
    RemovePortError, SearchOptions,
};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Description put on every mapping qp2p makes (shown by `upnpc -l`).
pub const DESCRIPTION: &str = "qp2p";
/// Longest wait for one request to the gateway.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a [`Keeper`] to finish when stopped.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// One search round: an M-SEARCH and the answers to it.
const SEARCH_ROUND: Duration = Duration::from_secs(2);
/// The longest lease IGDv2 allows (and the longest we ask for).
pub const MAX_LEASE: Duration = Duration::from_secs(604_800);
/// How many entries of the gateway's table are read when looking for a mapping.
const MAX_ENTRIES: u32 = 256;

/// What went wrong with the gateway. Callers map [`UpnpError::NoGateway`] to exit code
/// 6 and the refusals to 7.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpnpError {
    /// No Internet Gateway Device answered the search.
    #[error("no UPnP gateway found within {}: {detail}", super::retry::rounded(*timeout))]
    NoGateway {
        /// How long we searched.
        timeout: Duration,
        /// What the search saw.
        detail: String,
    },
    /// The gateway refused the mapping, or cannot make one.
    #[error("the gateway refused to map UDP port {external_port} to {local}: {reason}")]
    MappingRefused {
        /// The external port asked for.
        external_port: u16,
        /// The internal address.
        local: SocketAddr,
        /// The gateway's answer.
        reason: String,
    },
    /// The gateway has no usable external address.
    #[error("the gateway reports no external address: {0}")]
    NoExternalIp(String),
    /// A request to the gateway failed (no answer, garbled answer).
    #[error("the gateway at {gateway} failed to answer {action}: {reason}")]
    Request {
        /// The gateway's control address.
        gateway: SocketAddr,
        /// The SOAP action.
        action: &'static str,
        /// What happened.
        reason: String,
    },
}

/// What kind of address a gateway reports as external.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// Routable on the internet.
    Public,
    /// RFC 1918 private: the gateway sits behind another NAT.
    Private,
    /// RFC 6598 shared space (100.64.0.0/10): carrier-grade NAT.
    CarrierNat,
    /// RFC 5737 documentation ranges: only ever seen in test beds.
    Documentation,
    /// Unspecified, loopback, link-local or otherwise reserved.
    Reserved,
}

/// Classifies an external address.
pub fn classify(ip: IpAddr) -> AddressKind {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_private() {
                AddressKind::Private
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                AddressKind::CarrierNat
            } else if matches!(o, [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _]) {
                AddressKind::Documentation
            } else if v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
            {
                AddressKind::Reserved
            } else {
                AddressKind::Public
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_unspecified() || v6.is_loopback() || (s[0] & 0xffc0) == 0xfe80 {
                AddressKind::Reserved
            } else if (s[0] & 0xfe00) == 0xfc00 {
                AddressKind::Private
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                AddressKind::Documentation
            } else {
                AddressKind::Public
            }
        }
    }
}

impl AddressKind {
    /// What a user needs to know about such an external address, if anything.
    pub fn advice(self) -> Option<&'static str> {
        match self {
            AddressKind::Public => None,
            AddressKind::Private => Some(
                "a private address: this gateway is itself behind another NAT (double NAT), \
                 so a mapping here cannot make you reachable from the internet",
            ),
            AddressKind::CarrierNat => Some(
                "carrier-grade NAT (100.64.0.0/10): your provider's NAT sits in front of this \
                 gateway, so a mapping here cannot make you reachable from the internet",
            ),
            AddressKind::Documentation => Some(
                "a documentation range (RFC 5737): fine in a test bed, never seen on the \
                 internet",
            ),
            AddressKind::Reserved => Some("a reserved address: the gateway is not connected"),
        }
    }
}

/// A gateway found by [`discover`].
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: igd_next::aio::Gateway<Tokio>,
    local_ip: IpAddr,
}

/// A UDP port mapping on a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The gateway's external address, when it told us.
    pub external_ip: Option<IpAddr>,
    /// The external port.
    pub external_port: u16,
    /// Where the gateway forwards to: our address towards it and our port.
    pub local: SocketAddr,
    /// The lease asked for.
    pub requested: Duration,
    /// The lease the gateway reports for the mapping (it may clamp what was asked);
    /// `None` if it did not say.
    pub granted: Option<Duration>,
}

impl Mapping {
    /// The external address, `EXT:PORT`, when the external IP is known.
    pub fn external(&self) -> Option<SocketAddr> {
        self.external_ip
            .map(|ip| SocketAddr::new(ip, self.external_port))
    }

    /// The lease in force: what the gateway granted, else what was asked.
    pub fn lease(&self) -> Duration {
        match self.granted {
            Some(g) if !g.is_zero() => g,
            _ => self.requested,
        }
    }

    /// When to renew: at half of the shorter of the asked and granted leases.
    pub fn renew_after(&self) -> Duration {
        (self.lease().min(self.requested) / 2).max(Duration::from_secs(1))
    }
}

/// One entry of the gateway's mapping table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The internal client (an IP address as text).
    pub internal_client: String,
    /// The internal port.
    pub internal_port: u16,
    /// The description given when it was added.
    pub description: String,
    /// Seconds left on the lease (0: no expiry).
    pub lease: Duration,
}

impl Entry {
    /// Whether the entry forwards to `local`.
    pub fn points_to(&self, local: SocketAddr) -> bool {
        self.internal_port == local.port()
            && self.internal_client.parse::<IpAddr>().ok() == Some(local.ip())
    }
}

/// Searches for an Internet Gateway Device for at most `limit`.
///
/// The search is sent from the address that routes to the default gateway (see the
/// module doc) in rounds of two seconds. Cancel-safe.
pub async fn discover(limit: Duration) -> Result<Gateway, UpnpError> {
    let sources = search_sources();
    debug!(?sources, "searching for a UPnP gateway");
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer to the SSDP search");
    while Instant::now() < deadline {
        let round_end = (Instant::now() + SEARCH_ROUND).min(deadline);
        let round = round_end.saturating_duration_since(Instant::now());
        let searches = sources.iter().map(|ip| Box::pin(search_from(*ip, round)));
        match select_ok(searches).await {
            Ok((gateway, _)) => return Ok(gateway),
            Err(e) => last = e,
        }
        // A search that failed at once (no route) must not spin.
        sleep_until(round_end).await;
    }
    Err(UpnpError::NoGateway {
        timeout: limit,
        detail: format!(
            "{last} (searched from {}); is UPnP enabled on the router?",
            sources
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

async fn search_from(source: Ipv4Addr, round: Duration) -> Result<Gateway, String> {
    let mut options = SearchOptions::default();
    options.bind_addr = SocketAddr::new(source.into(), 0);
    options.timeout = Some(round);
    options.single_search_timeout = Some(round);
    options.gateway_ip_version = igd_next::GatewayIpVersion::V4;
    let inner = match search_gateway(options).await {
        Ok(g) => g,
        Err(igd_next::SearchError::NoResponseWithinTimeout) => {
            return Err("no answer to the SSDP search".into())
        }
        Err(e) => return Err(format!("search from {source} failed: {e}")),
    };
    let local_ip = local_ip_towards(inner.addr)
        .map_err(|e| format!("gateway {} is not reachable: {e}", inner.addr))?;
    info!(gateway = %inner.addr, service = %inner.service_type, %local_ip, "found a UPnP gateway");
    Ok(Gateway { inner, local_ip })
}

/// The local address our packets to `peer` leave from (connecting a UDP socket sends
/// nothing; it only asks the kernel for the route).
pub fn local_ip_towards(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(peer)?;
    Ok(socket.local_addr()?.ip())
}

/// Where to send the M-SEARCH from: the local address towards the default gateway;
/// without a default route, our address on every directly connected network; as a
/// last resort the wildcard.
fn search_sources() -> Vec<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default();
    let towards = |ip: Ipv4Addr| match local_ip_towards(SocketAddr::new(ip.into(), 1900)) {
        Ok(IpAddr::V4(v4)) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
        _ => None,
    };
    let mut out: Vec<Ipv4Addr> = match routes.default_gateway {
        Some(gw) => towards(gw).into_iter().collect(),
        None => Vec::new(),
    };
    if out.is_empty() {
        for net in routes.networks {
            if let Some(ip) = towards(net) {
                if !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    if out.is_empty() {
        out.push(Ipv4Addr::UNSPECIFIED);
    }
    out
}

/// What `/proc/net/route` says: the default gateway (lowest metric) and, for each
/// directly connected network, its first host address.
#[derive(Debug, Default, PartialEq, Eq)]
struct Routes {
    default_gateway: Option<Ipv4Addr>,
    networks: Vec<Ipv4Addr>,
}

fn parse_routes(text: &str) -> Routes {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let hex_ip = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.swap_bytes()))
    };
    let mut best: Option<(u32, Ipv4Addr)> = None;
    let mut networks = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[0] == "lo" {
            continue;
        }
        let (Some(dest), Some(gw), Ok(flags), Ok(metric), Some(mask)) = (
            hex_ip(f[1]),
            hex_ip(f[2]),
            u32::from_str_radix(f[3], 16),
            f[6].parse::<u32>(),
            hex_ip(f[7]),
        ) else {
            continue;
        };
        if flags & RTF_UP == 0 {
            continue;
        }
        if dest.is_unspecified() && mask.is_unspecified() && flags & RTF_GATEWAY != 0 {
            if best.is_none_or(|(m, _)| metric < m) {
                best = Some((metric, gw));
            }
        } else if flags & RTF_GATEWAY == 0 && !mask.is_unspecified() {
            let host = Ipv4Addr::from(u32::from(dest) | (!u32::from(mask) & 1));
            if !networks.contains(&host) {
                networks.push(host);
            }
        }
    }
    Routes {
        default_gateway: best.map(|(_, gw)| gw),
        networks,
    }
}

fn request_error(gateway: SocketAddr, action: &'static str, reason: impl ToString) -> UpnpError {
    UpnpError::Request {
        gateway,
        action,
        reason: short(reason.to_string()),
    }
}

/// Gateway answers can be whole XML documents: keep error messages to one short line.
fn short(s: String) -> String {
    let line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line
    }
}

fn lease_secs(lease: Duration) -> u32 {
    lease.min(MAX_LEASE).as_secs().max(1) as u32
}

impl Gateway {
    /// The gateway's control address (`IP:PORT` of its HTTP server).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Our address towards the gateway: the internal client of every mapping.
    pub fn local_ip(&self) -> IpAddr {
        self.local_ip
    }

    /// The WAN service, e.g. `WANIPConnection:2`.
    pub fn service(&self) -> &str {
        self.inner
            .service_type
            .rsplit_once(":service:")
            .map_or(self.inner.service_type.as_str(), |(_, s)| s)
    }

    /// The IGD version the service belongs to (1 or 2), if it says.
    pub fn igd_version(&self) -> Option<u8> {
        self.inner.service_type.rsplit(':').next()?.parse().ok()
    }

    /// The device description URL.
    pub fn root_url(&self) -> String {
        let url = &self.inner.root_url;
        if url.starts_with("http") {
            url.clone()
        } else {
            format!("http://{}{}", self.inner.addr, url)
        }
    }

    /// One line about the gateway: where, what, which IGD version.
    pub fn describe(&self) -> String {
        let version = self
            .igd_version()
            .map_or(String::from("IGD version unknown"), |v| format!("IGDv{v}"));
        format!(
            "{} ({}, {version}), reached from {}",
            self.root_url(),
            self.service(),
            self.local_ip
        )
    }

    /// The gateway's external IP address. An empty or unspecified answer (a gateway
    /// that is not connected, or refuses to port-forward) is an error.
    pub async fn external_ip(&self) -> Result<IpAddr, UpnpError> {
        let action = "GetExternalIPAddress";
        match timeout(REQUEST_TIMEOUT, self.inner.get_external_ip()).await {
            Err(_) => Err(request_error(self.addr(), action, "no answer")),
            Ok(Ok(ip)) if ip.is_unspecified() => {
                Err(UpnpError::NoExternalIp("it answered 0.0.0.0".into()))
            }
            Ok(Ok(ip)) => Ok(ip),
            Ok(Err(igd_next::GetExternalIpError::RequestError(
                igd_next::RequestError::InvalidResponse(_),
            ))) => Err(UpnpError::NoExternalIp(
                "it answered without an address (not connected, or port forwarding disabled)"
                    .into(),
            )),
            Ok(Err(e)) => Err(request_error(self.addr(), action, e)),
        }
    }

    /// The mapping of UDP `external_port`, if the gateway has one (whoever made it).
    pub async fn lookup(&self, external_port: u16) -> Result<Option<Entry>, UpnpError> {
        let action = "GetGenericPortMappingEntry";
        for index in 0..MAX_ENTRIES {
            let entry = match timeout(
                REQUEST_TIMEOUT,
                self.inner.get_generic_port_mapping_entry(index),
            )
            .await
            {
                Err(_) => return Err(request_error(self.addr(), action, "no answer")),
                Ok(Ok(e)) => e,
                Ok(Err(GetGenericPortMappingEntryError::SpecifiedArrayIndexInvalid)) => {
                    return Ok(None)
                }
                Ok(Err(e)) => return Err(request_error(self.addr(), action, e)),
            };
            if entry.external_port == external_port && entry.protocol == PortMappingProtocol::UDP {
                return Ok(Some(Entry {
                    internal_client: entry.internal_client,
                    internal_port: entry.internal_port,
                    description: entry.port_mapping_description,
                    lease: Duration::from_secs(entry.lease_duration.into()),
                }));
            }
        }
        Ok(None)
    }

    /// Maps UDP `external_port` (or, if the gateway will not give that one, any port
    /// it picks) to `local_port` on our address towards the gateway, for `lease`.
    ///
    /// Asking again for a mapping we already hold renews it. Not cancel-safe in the
    /// sense that a cancelled call may have made the mapping: callers that cancel
    /// remove `external_port` afterwards.
    pub async fn map(
        &self,
        external_port: u16,
        local_port: u16,
        lease: Duration,
    ) -> Result<Mapping, UpnpError> {
        let local = SocketAddr::new(self.local_ip, local_port);
        let secs = lease_secs(lease);
        let refused = |port: u16, reason: String| UpnpError::MappingRefused {
            external_port: port,
            local,
            reason: short(reason),
        };
        let added = timeout(
            REQUEST_TIMEOUT,
            self.inner.add_port(
                PortMappingProtocol::UDP,
                external_port,
                local,
                secs,
                DESCRIPTION,
            ),
        )
        .await
        .map_err(|_| request_error(self.addr(), "AddPortMapping", "no answer"))?;
        let port = match added {
            Ok(()) => external_port,
            // Someone else holds that external port, or the gateway wants to choose:
            // let it pick one.
            Err(AddPortError::PortInUse | AddPortError::SamePortValuesRequired) => {
                debug!(external_port, "port taken; asking the gateway for any port");
                match timeout(
                    REQUEST_TIMEOUT,
                    self.inner
                        .add_any_port(PortMappingProtocol::UDP, local, secs, DESCRIPTION),
                )
                .await
                .map_err(|_| request_error(self.addr(), "AddAnyPortMapping", "no answer"))?
                {
                    Ok(port) => port,
                    Err(AddAnyPortError::RequestError(e)) => {
                        return Err(refused(external_port, describe_request_error(&e)))
                    }
                    Err(e) => return Err(refused(external_port, e.to_string())),
                }
            }
            Err(AddPortError::RequestError(e)) => {
                return Err(refused(external_port, describe_request_error(&e)))
            }
            Err(AddPortError::ActionNotAuthorized) => {
                return Err(refused(
                    external_port,
                    "not authorized by the router's rules (ports below 1024 and mappings for \
                     other hosts are usually refused; try another port)"
                        .into(),
                ))
            }
            Err(e) => return Err(refused(external_port, e.to_string())),
        };
        let external_ip = self.external_ip().await.ok();
        // What the gateway granted (it may clamp the lease); best effort.
        let granted = match self.lookup(port).await {
            Ok(Some(entry)) => Some(entry.lease),
            Ok(None) => None,
            Err(e) => {
                debug!(cause = %e, "could not read the mapping back");
                None
            }
        };
        Ok(Mapping {
            external_ip,
            external_port: port,
            local,
            requested: Duration::from_secs(secs.into()),
            granted,
        })
    }

    /// Removes the UDP mapping of `external_port`. A mapping that is already gone is
    /// not an error.
    pub async fn unmap(&self, external_port: u16) -> Result<(), UpnpError> {
        let action = "DeletePortMapping";
        match timeout(
            REQUEST_TIMEOUT,
            self.inner
                .remove_port(PortMappingProtocol::UDP, external_port),
        )
        .await
        {
            Err(_) => Err(request_error(self.addr(), action, "no answer")),
            Ok(Ok(())) | Ok(Err(RemovePortError::NoSuchPortMapping)) => Ok(()),
            Ok(Err(e)) => Err(request_error(self.addr(), action, e)),
        }
    }
}

/// Gateway errors come as UPnP error codes; say what the common ones mean.
fn describe_request_error(e: &igd_next::RequestError) -> String {
    match e {
        igd_next::RequestError::ErrorCode(code, text) => {
            let meaning = match code {
                501 => "action failed (port forwarding may be disabled on the router)",
                606 => "not authorized (the router's rules do not allow this port or client)",
                718 => "the external port is mapped to another client",
                724 => "external and internal port must be the same",
                725 => "only permanent leases are supported",
                726 => "remote host must be a wildcard",
                727 => "external port must be a wildcard",
                728 => "no port maps are available",
                _ => "",
            };
            if meaning.is_empty() {
                format!("UPnP error {code} {text}")
            } else {
                format!("UPnP error {code} {text}: {meaning}")
            }
        }
        other => other.to_string(),
    }
}

/// What a [`Keeper`] reports.
#[derive(Debug, Clone)]
pub enum KeeperEvent {
    /// A mapping is in place (the first one, or a new one after the old was lost).
    Mapped {
        /// The mapping.
        mapping: Mapping,
        /// The gateway, described.
        gateway: String,
    },
    /// No mapping could be made; the keeper tries again later.
    Unavailable {
        /// Why.
        error: UpnpError,
        /// When it tries again.
        retry_in: Duration,
    },
    /// Renewing failed; the keeper searches for the gateway again.
    Lost {
        /// Why.
        error: UpnpError,
    },
    /// The mapping was removed (on stop).
    Removed {
        /// The mapping that was removed.
        mapping: Mapping,
    },
    /// The mapping could not be removed (on stop); it expires with its lease.
    RemoveFailed {
        /// The mapping left behind.
        mapping: Mapping,
        /// Why.
        error: UpnpError,
    },
}

/// Settings of a [`Keeper`].
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    /// The local UDP port to map.
    pub local_port: u16,
    /// The lease to ask for.
    pub lease: Duration,
    /// How long one gateway search may take.
    pub search_timeout: Duration,
    /// The longest wait between two attempts while there is no mapping.
    pub max_retry: Duration,
}

/// Holds one mapping for as long as it runs: maps, renews at half the lease, searches
/// the gateway again when renewal fails, removes the mapping when stopped.
#[derive(Debug)]
pub struct Keeper {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    /// Starts keeping a mapping; `report` is called from the keeper's task.
    pub fn start(
        config: KeeperConfig,
        report: impl Fn(KeeperEvent) + Send + Sync + 'static,
    ) -> Keeper {
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(config, stop.clone(), report));
        Keeper { stop, task }
    }

    /// Stops the keeper and removes the mapping. Waits for a renewal under way to
    /// end, then for the removal, at most [`STOP_TIMEOUT`] in all.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = timeout(STOP_TIMEOUT, self.task).await;
    }
}

async fn keep(
    config: KeeperConfig,
    stop: CancellationToken,
    report: impl Fn(KeeperEvent) + Send + Sync + 'static,
) {
    let mut held: Option<(Gateway, Mapping)> = None;
    // The external port to ask for: ours, or the one we had before a loss.
    let mut port = config.local_port;
    let mut failures: u32 = 0;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => break,
        }
        // Searching makes nothing and races the stop signal. Mapping is not cut
        // short (each request is bounded), so a mapping made is always known here
        // and removed below.
        let gateway = match &held {
            Some((gateway, _)) => Ok(gateway.clone()),
            None => tokio::select! {
                g = discover(config.search_timeout) => g,
                _ = stop.cancelled() => break,
            },
        };
        let result = match gateway {
            Ok(gateway) => gateway
                .map(port, config.local_port, config.lease)
                .await
                .map(|mapping| (gateway, mapping)),
            Err(e) => Err(e),
        };
        match result {
            Ok((gateway, mapping)) => {
                let changed = held.as_ref().is_none_or(|(_, old)| {
                    old.external() != mapping.external() || old.local != mapping.local
                });
                if changed {
                    report(KeeperEvent::Mapped {
                        mapping: mapping.clone(),
                        gateway: gateway.describe(),
                    });
                } else {
                    debug!(external_port = mapping.external_port, lease = ?mapping.lease(), "UPnP mapping renewed");
                }
                wait = mapping.renew_after();
                port = mapping.external_port;
                failures = 0;
                held = Some((gateway, mapping));
            }
            Err(error) if held.is_some() => {
                warn!(cause = %error, "renewing the UPnP mapping failed; searching for the gateway again");
                report(KeeperEvent::Lost { error });
                // The old mapping may live on until its lease ends; the new one asks
                // for the same external port.
                held = None;
                wait = Duration::ZERO;
            }
            Err(error) => {
                failures += 1;
                let retry_in = retry_delay(failures, config.max_retry);
                if failures == 1 {
                    report(KeeperEvent::Unavailable { error, retry_in });
                } else {
                    debug!(cause = %error, ?retry_in, "still no UPnP mapping");
                }
                wait = retry_in;
            }
        }
    }
    if let Some((gateway, mapping)) = held {
        match gateway.unmap(mapping.external_port).await {
            Ok(()) => report(KeeperEvent::Removed { mapping }),
            Err(error) => report(KeeperEvent::RemoveFailed { mapping, error }),
        }
    }
}

/// Waits between attempts while there is no mapping: 5 s, doubling, capped.
fn retry_delay(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_secs(5);
    base.saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max)
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_addresses_are_classified() {
        let c = |s: &str| classify(s.parse().unwrap());
        assert_eq!(c("203.0.113.1"), AddressKind::Documentation);
        assert_eq!(c("198.51.100.7"), AddressKind::Documentation);
        assert_eq!(c("192.168.1.1"), AddressKind::Private);
        assert_eq!(c("10.0.0.1"), AddressKind::Private);
        assert_eq!(c("172.16.0.1"), AddressKind::Private);
        assert_eq!(c("100.64.0.1"), AddressKind::CarrierNat);
        assert_eq!(c("100.127.255.254"), AddressKind::CarrierNat);
        assert_eq!(c("100.128.0.1"), AddressKind::Public);
        assert_eq!(c("0.0.0.0"), AddressKind::Reserved);
        assert_eq!(c("169.254.1.1"), AddressKind::Reserved);
        assert_eq!(c("8.8.8.8"), AddressKind::Public);
        assert_eq!(c("fd00::1"), AddressKind::Private);
        assert_eq!(c("2001:db8::1"), AddressKind::Documentation);
        // Never refused, only explained.
        assert!(AddressKind::Documentation.advice().is_some());
        assert!(AddressKind::Public.advice().is_none());
    }

    #[test]
    fn routes_give_the_default_gateway_and_connected_networks() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            lan0\t00000000\t014DA8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth1\t00000000\t0100000A\t0003\t0\t0\t50\t00000000\t0\t0\t0\n\
            lan0\t004DA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n";
        let r = parse_routes(text);
        assert_eq!(
            r.default_gateway,
            Some(Ipv4Addr::new(10, 0, 0, 1)),
            "lowest metric"
        );
        assert_eq!(r.networks, vec![Ipv4Addr::new(192, 168, 77, 1)]);
        assert_eq!(parse_routes("garbage"), Routes::default());
    }

    #[test]
    fn renewal_comes_well_before_the_lease_ends() {
        let m = Mapping {
            external_ip: None,
            external_port: 1,
            local: "192.168.1.2:1".parse().unwrap(),
            requested: Duration::from_secs(30),
            granted: Some(Duration::from_secs(120)),
        };
        assert_eq!(m.renew_after(), Duration::from_secs(15), "asked 30 s");
        let clamped = Mapping {
            granted: Some(Duration::from_secs(20)),
            ..m.clone()
        };
        assert_eq!(
            clamped.renew_after(),
            Duration::from_secs(10),
            "granted less"
        );
        assert_eq!(
            retry_delay(1, Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            retry_delay(3, Duration::from_secs(60)),
            Duration::from_secs(20)
        );
        assert_eq!(
            retry_delay(30, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }
}
