//! Finding the gateway: the SSDP search, sent in rounds from the local address that
//! routes to the default gateway (so the multicast leaves on the right interface, and a
//! single lost datagram does not mean "no gateway"), and the local address our packets
//! to the gateway come from (the internal client of every mapping).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use futures_util::future::select_ok;
use igd_next::aio::tokio::search_gateway;
use igd_next::SearchOptions;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info};

use super::{Gateway, UpnpError, SEARCH_ROUND};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
