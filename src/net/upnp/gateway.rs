//! The gateway and what is asked of it: its external address, its mapping table, adding
//! and removing a UDP mapping. Every request is bounded by [`REQUEST_TIMEOUT`], and the
//! gateway's error codes and answers are turned into short messages a user can act on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use igd_next::aio::tokio::Tokio;
use igd_next::{
    AddAnyPortError, AddPortError, GetGenericPortMappingEntryError, PortMappingProtocol,
    RemovePortError,
};
use tokio::time::timeout;
use tracing::debug;

use super::{UpnpError, DESCRIPTION, MAX_ENTRIES, MAX_LEASE, REQUEST_TIMEOUT};

/// A gateway found by [`discover()`](super::discover()).
#[derive(Debug, Clone)]
pub struct Gateway {
    pub(super) inner: igd_next::aio::Gateway<Tokio>,
    pub(super) local_ip: IpAddr,
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
