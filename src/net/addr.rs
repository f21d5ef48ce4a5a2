//! Peer addresses and tickets as users type them.
//!
//! Accepted forms: `HOST:PORT`, `[v6]:PORT`, a bare IP or host name (port 7447), and a
//! ticket `FINGERPRINT@ADDRESS`, which pins the peer's identity. A host name resolves to
//! every address it has; callers race or try them all.
//!
//! A [`Ticket`] names every way to a listener: `FINGERPRINT@WAY[,WAY…]`, where a way is
//! an address (direct) or `IFP@ADDRESS`, an introducer with fingerprint IFP that the
//! listener is registered with (`listen --via`). A one-way ticket is a [`Target`].
//!
//! What could go wrong: text from a user or a pasted ticket is untrusted input; parsing
//! never panics (it is fuzzed) and every refusal names the part that is wrong.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::tls::Fingerprint;

/// The port qp2p listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7447;

/// Where a peer is, and who it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host: an IP address or a DNS name.
    pub host: Host,
    /// UDP port.
    pub port: u16,
    /// The fingerprint the peer must have (from a ticket).
    pub expect: Option<Fingerprint>,
}

/// The host part of a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A literal address.
    Ip(IpAddr),
    /// A DNS name.
    Name(String),
}

/// Why an address or ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The fingerprint part of a ticket is not a fingerprint.
    #[error("invalid ticket {0:?}: the part before '@' is not a fingerprint")]
    BadTicket(String),
    /// The port is not a number from 1 to 65535.
    #[error("invalid port in {0:?}")]
    BadPort(String),
    /// The host is empty or has characters no host name has.
    #[error("invalid host in {0:?}")]
    BadHost(String),
    /// A way through an introducer in a ticket without the listener's fingerprint.
    #[error("invalid ticket {0:?}: a way through an introducer (IFP@ADDR) needs the listener's fingerprint first (FP@IFP@ADDR)")]
    NoFingerprint(String),
    /// More ways than a ticket may name.
    #[error("invalid ticket: more than {0} ways")]
    TooManyWays(usize),
}

impl FromStr for Target {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (expect, rest) = match s.split_once('@') {
            Some((fp, rest)) => (
                Some(
                    fp.parse::<Fingerprint>()
                        .map_err(|_| AddrError::BadTicket(s.to_string()))?,
                ),
                rest,
            ),
            None => (None, s),
        };
        let (host, port) = split_host_port(rest)?;
        Ok(Self { host, port, expect })
    }
}

fn split_host_port(s: &str) -> Result<(Host, u16), AddrError> {
    let port_of = |p: &str| -> Result<u16, AddrError> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(AddrError::BadPort(s.to_string())),
            Ok(port) => Ok(port),
        }
    };
    if let Some(inner) = s.strip_prefix('[') {
        let (ip, after) = inner
            .split_once(']')
            .ok_or_else(|| AddrError::BadHost(s.to_string()))?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| AddrError::BadHost(s.to_string()))?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => port_of(
                p.strip_prefix(':')
                    .ok_or_else(|| AddrError::BadPort(s.to_string()))?,
            )?,
        };
        return Ok((Host::Ip(ip.into()), port));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((Host::Ip(ip), DEFAULT_PORT));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, port_of(port)?),
        None => (s, DEFAULT_PORT),
    };
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok((Host::Ip(ip.into()), port));
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid {
        return Err(AddrError::BadHost(s.to_string()));
    }
    Ok((Host::Name(host.to_string()), port))
}

impl Target {
    /// Every socket address the target stands for (a DNS name may have several).
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match &self.host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => {
                let mut addrs: Vec<SocketAddr> =
                    tokio::net::lookup_host((name.as_str(), self.port))
                        .await?
                        .collect();
                addrs.dedup();
                if addrs.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{name} has no address"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fp) = &self.expect {
            write!(f, "{fp}@")?;
        }
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// The most ways a ticket may name.
pub const MAX_WAYS: usize = 16;

/// One way to reach a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Way {
    /// Dial this address.
    Direct(Target),
    /// Ask this introducer for an introduction (its `expect` is its fingerprint).
    Introducer(Target),
}

/// Every way to reach one listener, and who it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The listener's fingerprint (required when a way goes through an introducer).
    pub expect: Option<Fingerprint>,
    /// The ways, in the order given.
    pub ways: Vec<Way>,
}

impl FromStr for Ticket {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (expect, rest) = match s.split_once('@') {
            // `ADDR,IFP@ADDR`: the first '@' belongs to a way, not to the ticket.
            Some((fp, _)) if fp.contains(',') => (None, s),
            Some((fp, rest)) => match fp.parse::<Fingerprint>() {
                Ok(fp) => (Some(fp), rest),
                Err(_) => return Err(AddrError::BadTicket(s.to_string())),
            },
            None => (None, s),
        };
        let mut ways = Vec::new();
        for way in rest.split(',') {
            if ways.len() == MAX_WAYS {
                return Err(AddrError::TooManyWays(MAX_WAYS));
            }
            if way.contains('@') {
                let target: Target = way.parse()?;
                if expect.is_none() {
                    return Err(AddrError::NoFingerprint(s.to_string()));
                }
                ways.push(Way::Introducer(target));
            } else {
                let (host, port) = split_host_port(way)?;
                ways.push(Way::Direct(Target {
                    host,
                    port,
                    expect: None,
                }));
            }
        }
        Ok(Self { expect, ways })
    }
}

impl Ticket {
    /// The ticket as one [`Target`], when it is a single direct way.
    pub fn single(&self) -> Option<Target> {
        match self.ways.as_slice() {
            [Way::Direct(t)] => Some(Target {
                expect: self.expect,
                ..t.clone()
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fp) = &self.expect {
            write!(f, "{fp}@")?;
        }
        for (i, way) in self.ways.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match way {
                Way::Direct(t) | Way::Introducer(t) => write!(f, "{t}")?,
            }
        }
        Ok(())
    }
}

/// Parses a listening address as `listen --bind` takes it, like `send`'s addresses:
/// `IP:PORT`, `[v6]:PORT`, an IP or host name without a port (port [`DEFAULT_PORT`]),
/// `NAME:PORT` (the name resolved, its first address taken), and `:PORT` for every
/// address (`[::]`, dual-stack). Port 0 picks a free port.
pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |e: AddrError| format!("{e} (examples: [::]:7447, 0.0.0.0:7447, :0, localhost)");
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| bad(AddrError::BadPort(s.to_string())))?;
        return Ok(SocketAddr::new(
            std::net::Ipv6Addr::UNSPECIFIED.into(),
            port,
        ));
    }
    // Port 0 is a fine port to bind (any free one), not to dial.
    let (rest, any_port) = match s.strip_suffix(":0") {
        Some(rest) if !rest.is_empty() && !rest.ends_with(':') => (rest, true),
        _ => (s, false),
    };
    let (host, port) = split_host_port(rest).map_err(bad)?;
    let port = if any_port { 0 } else { port };
    match host {
        Host::Ip(ip) => Ok(SocketAddr::new(ip, port)),
        Host::Name(name) => {
            use std::net::ToSocketAddrs;
            let mut addrs = (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {name}: {e}"))?;
            addrs
                .next()
                .ok_or_else(|| format!("cannot resolve {name}: it has no address"))
        }
    }
}

/// The ticket for a peer at `addr` with fingerprint `fp`.
pub fn ticket(fp: &Fingerprint, addr: SocketAddr) -> String {
    format!("{fp}@{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms_users_type() {
        assert_eq!(t("127.0.0.1:9000").port, 9000);
        assert_eq!(t("127.0.0.1").port, DEFAULT_PORT);
        assert_eq!(t("[::1]:9000").host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(t("[::1]").port, DEFAULT_PORT);
        assert_eq!(t("::1").host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(t("localhost:80").host, Host::Name("localhost".into()));
        assert_eq!(t("example.org").port, DEFAULT_PORT);
    }

    /// `listen --bind` takes addresses as `send` does: a host without a port is port
    /// 7447, names are resolved, `:PORT` is every address.
    #[test]
    fn bind_addresses_take_the_forms_send_takes() {
        let b = |s: &str| parse_bind(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(b("127.0.0.1:0"), "127.0.0.1:0".parse().unwrap());
        assert_eq!(b("[::]:7447"), "[::]:7447".parse().unwrap());
        assert_eq!(b("127.0.0.1"), "127.0.0.1:7447".parse().unwrap());
        assert_eq!(b("[::1]"), "[::1]:7447".parse().unwrap());
        assert_eq!(b(":0"), "[::]:0".parse().unwrap());
        assert_eq!(b(":9000"), "[::]:9000".parse().unwrap());
        assert!(b("localhost").ip().is_loopback());
        assert_eq!(b("localhost").port(), DEFAULT_PORT);
        assert_eq!(b("localhost:0").port(), 0);
        assert_eq!(b("localhost:9000").port(), 9000);
        assert!(parse_bind("a b").is_err());
        assert!(parse_bind(":x").is_err());
        assert!(parse_bind("127.0.0.1:99999").is_err());
    }

    #[test]
    fn tickets_pin_the_peer_and_round_trip() {
        let fp = Fingerprint([3; 32]);
        let text = ticket(&fp, "127.0.0.1:5000".parse().unwrap());
        let target = t(&text);
        assert_eq!(target.expect, Some(fp));
        assert_eq!(target.to_string(), text);
        let v6 = ticket(&fp, "[::1]:5000".parse().unwrap());
        assert_eq!(t(&v6).to_string(), v6);
    }

    #[test]
    fn tickets_with_several_ways_round_trip() {
        let fp = Fingerprint([3; 32]);
        let ifp = Fingerprint([4; 32]);
        let text = format!("{fp}@192.168.1.2:7447,{ifp}@203.0.113.10:7447,[2001:db8::1]:9");
        let ticket: Ticket = text.parse().unwrap();
        assert_eq!(ticket.expect, Some(fp));
        assert_eq!(ticket.ways.len(), 3);
        assert!(matches!(&ticket.ways[1], Way::Introducer(t) if t.expect == Some(ifp)));
        assert_eq!(ticket.to_string(), text);
        assert_eq!(ticket.single(), None);
        // A one-way ticket is a target.
        let one: Ticket = format!("{fp}@127.0.0.1:5").parse().unwrap();
        assert_eq!(one.single(), Some(t(&format!("{fp}@127.0.0.1:5"))));
        // No fingerprint: an introducer way cannot say whom to introduce.
        assert!(matches!(
            format!("1.2.3.4:5,{ifp}@1.2.3.4:6").parse::<Ticket>(),
            Err(AddrError::NoFingerprint(_))
        ));
        for bad in [
            format!("{fp}@"),
            format!("{fp}@1.2.3.4:5,"),
            format!("{fp}@x@1.2.3.4:5"),
            format!("{fp}@{ifp}@1.2.3.4:0"),
            format!("{fp}@{}", vec!["1.2.3.4:5"; MAX_WAYS + 1].join(",")),
        ] {
            assert!(bad.parse::<Ticket>().is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(matches!(
            "x@1.2.3.4:5".parse::<Target>(),
            Err(AddrError::BadTicket(_))
        ));
        assert!(matches!(
            "1.2.3.4:0".parse::<Target>(),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            "1.2.3.4:99999".parse::<Target>(),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            "host:".parse::<Target>(),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!("".parse::<Target>(), Err(AddrError::BadHost(_))));
        assert!(matches!(
            "[::1".parse::<Target>(),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            "[::1]x".parse::<Target>(),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            "a b:1".parse::<Target>(),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            "1:2:3".parse::<Target>(),
            Err(AddrError::BadHost(_))
        ));
    }
}
