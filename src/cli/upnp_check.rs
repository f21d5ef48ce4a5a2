//! `qp2p upnp-check`: can a UPnP mapping make this host reachable from outside?
//!
//! A checklist, one line (or one `check` event) per step: the gateway (where, what,
//! which IGD version), its external IP (called out when private or carrier-grade NAT),
//! a UDP mapping `EXT:PORT -> LOCAL:PORT` with its lease, reachability (each `--probe`
//! peer, a `qp2p listen` outside, connects back through the mapping from a fresh
//! socket and delivers a nonce), and the removal of the mapping. Exit codes: 6 no
//! gateway, 7 mapping refused, 8 not reachable.
//!
//! The check's endpoint is bound to the mapped local port, so the probe connection
//! leaves from the mapped port (the prober's observed address can be compared with
//! the mapping) and the connect-back arrives on it. Only a nonce that arrives on a
//! connection this endpoint *accepted* counts (see `net::probe`).
//!
//! This file also holds the glue for `listen --upnp` ([`keep_mapping`]): how the
//! listener reports what its mapping keeper does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::debug;

use super::{parse_duration, Context, TransportArgs};
use crate::error::{coded, Exit};
use crate::output::Output;
use qp2p::net::addr::ticket;
use qp2p::net::endpoint::canonical;
use qp2p::net::framing;
use qp2p::net::probe::{client, Nonce, ProbeError};
use qp2p::net::upnp::{
    self, classify, AddressKind, Gateway, Keeper, KeeperConfig, KeeperEvent, Mapping, MAX_LEASE,
};
use qp2p::{Endpoint, Fingerprint, Target, TrustRules};

/// Check that a UPnP port mapping makes this host reachable from outside.
///
/// Finds the gateway, reads its external IP, maps a UDP port, asks each --probe peer
/// (a `qp2p listen` outside this network) to connect back through the mapping, and
/// removes the mapping. Exit codes: 6 no gateway, 7 mapping refused, 8 not reachable.
#[derive(Debug, clap::Args)]
#[command(after_help = super::examples(&[
    "qp2p upnp-check                              # gateway, external IP, a mapping",
    "qp2p upnp-check --probe FP@198.51.100.7:7447 --port 7447",
    "qp2p --json upnp-check | jq -c 'select(.ok == false)'   # only what failed",
]))]
pub struct Args {
    /// Local UDP port to map; the same external port is asked for [default: a free
    /// port].
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 0,
        hide_default_value = true
    )]
    pub port: u16,
    /// Lease asked for the mapping (it ends by itself after that).
    #[arg(long, value_name = "DUR", default_value = "5m", value_parser = parse_duration)]
    pub lease: Duration,
    /// A `qp2p listen` outside this network that connects back to check reachability:
    /// HOST:PORT or a ticket (repeatable; every one must succeed) [default: none,
    /// reachability not verified].
    #[arg(long, value_name = "ADDR|TICKET")]
    pub probe: Vec<String>,
    /// Leave the mapping in place when done (it ends with its lease).
    #[arg(long)]
    pub keep: bool,
    /// How long to search for the gateway, and to wait for each probe.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = super::parse_nonzero_duration)]
    pub timeout: Duration,
    /// Transport options.
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// Reports the steps.
struct Checklist<'a> {
    out: &'a Output,
}

impl Checklist<'_> {
    /// One step: `ok` is `None` when the step was not verified.
    fn step(&self, step: &str, ok: Option<bool>, detail: &str, extra: Value) {
        let mut event = json!({"event": "check", "step": step, "ok": ok, "detail": detail});
        if let (Some(map), Value::Object(more)) = (event.as_object_mut(), extra) {
            map.extend(more);
        }
        let mark = match ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "--  ",
        };
        self.out
            .event(event, || format!("[{mark}] {step:<12} {detail}"));
    }
}

/// Runs the checklist; see the module doc.
pub async fn run(args: Args, ctx: Context) -> anyhow::Result<()> {
    if args.lease < Duration::from_secs(1) || args.lease > MAX_LEASE {
        return Err(coded(
            Exit::Usage,
            "--lease must be between 1s and 7days (the longest IGDv2 lease)",
        ));
    }
    if args.timeout.is_zero() {
        return Err(coded(Exit::Usage, "--timeout must be more than 0"));
    }
    let probes = args
        .probe
        .iter()
        .map(|p| {
            p.parse::<Target>()
                .map_err(|e| coded(Exit::Usage, format!("--probe {p}: {e}")))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let identity = ctx.identity()?;
    let check = Checklist { out: &ctx.out };

    // 1. The gateway.
    let gateway = tokio::select! {
        g = upnp::discover(args.timeout) => g,
        _ = ctx.shutdown.cancelled() => return Ok(()),
    };
    let gateway = match gateway {
        Ok(g) => g,
        Err(e) => {
            check.step("gateway", Some(false), &e.to_string(), json!({}));
            return Err(e.into());
        }
    };
    check.step(
        "gateway",
        Some(true),
        &gateway.describe(),
        json!({
            "gateway": gateway.addr().to_string(),
            "url": gateway.root_url(),
            "service": gateway.service(),
            "igd_version": gateway.igd_version(),
            "local_ip": gateway.local_ip().to_string(),
        }),
    );

    // 2. Its external address.
    let external_ip = match gateway.external_ip().await {
        Ok(ip) => {
            let kind = classify(ip);
            let detail = match kind.advice() {
                Some(advice) => format!("{ip}: {advice}"),
                None => ip.to_string(),
            };
            check.step(
                "external_ip",
                Some(true),
                &detail,
                json!({"external_ip": ip.to_string(), "address_kind": kind_name(kind)}),
            );
            Some(ip)
        }
        Err(e) => {
            check.step("external_ip", Some(false), &e.to_string(), json!({}));
            None
        }
    };

    // 3. The mapping, for the port our endpoint is bound to.
    let local = SocketAddr::new(gateway.local_ip(), args.port);
    let endpoint = Endpoint::bind(
        local,
        identity,
        args.transport.options(),
        Some(TrustRules::any()),
    )
    .with_context(|| format!("cannot open UDP port {local} for the check"))?;
    let local = SocketAddr::new(
        gateway.local_ip(),
        endpoint
            .local_addr()
            .context("reading the bound address")?
            .port(),
    );
    // A mapping of ours made before this run (`--keep`) is used as it is and left.
    let existing = match gateway.lookup(local.port()).await {
        Ok(Some(entry)) if entry.points_to(local) => Some(entry),
        Ok(_) => None,
        Err(e) => {
            debug!(cause = %e, "could not read the gateway's mappings");
            None
        }
    };
    let pre_existing = existing.is_some();
    let mapped = match existing {
        Some(entry) => Ok(Mapping {
            external_ip,
            external_port: local.port(),
            local,
            requested: args.lease,
            granted: Some(entry.lease),
        }),
        None => gateway.map(local.port(), local.port(), args.lease).await,
    };
    let mapping = match mapped {
        Ok(m) => m,
        Err(e) => {
            check.step("mapping", Some(false), &e.to_string(), json!({}));
            return Err(e.into());
        }
    };
    let external_ip = external_ip.or(mapping.external_ip);
    let shown_external = external_ip.map_or(format!("?:{}", mapping.external_port), |ip| {
        SocketAddr::new(ip, mapping.external_port).to_string()
    });
    check.step(
        "mapping",
        Some(true),
        &if pre_existing {
            format!(
                "UDP {shown_external} -> {} was already mapped before this run (left as it \
                 is), lease {} left",
                mapping.local,
                crate::output::human_duration(mapping.lease()),
            )
        } else {
            format!(
                "UDP {shown_external} -> {} added, lease {}",
                mapping.local,
                crate::output::human_duration(mapping.lease()),
            )
        },
        json!({
            "external": shown_external,
            "internal": mapping.local.to_string(),
            "lease_s": mapping.lease().as_secs(),
            "pre_existing": pre_existing,
        }),
    );

    // 4. Reachability, interruptible; the cleanup below runs whatever happens here.
    let reach = tokio::select! {
        r = reachability(&check, &endpoint, &probes, &mapping, external_ip, args.timeout) => Some(r),
        _ = ctx.shutdown.cancelled() => None,
    };

    // 5. Cleanup.
    let cleanup_error = cleanup(&check, &gateway, &mapping, args.keep, pre_existing).await;
    endpoint
        .shutdown(framing::close::DONE, b"done", Duration::from_millis(200))
        .await;

    match reach {
        None => Ok(()), // interrupted: main exits 130
        Some(Err(reason)) => Err(coded(
            Exit::Unreachable,
            format!("not reachable from outside: {reason}"),
        )),
        Some(Ok(())) => match cleanup_error {
            Some(e) => Err(anyhow::Error::new(e).context(format!(
                "could not remove the mapping of UDP port {} (it ends with its lease)",
                mapping.external_port
            ))),
            None => Ok(()),
        },
    }
}

fn kind_name(kind: AddressKind) -> &'static str {
    match kind {
        AddressKind::Public => "public",
        AddressKind::Private => "private",
        AddressKind::CarrierNat => "carrier_nat",
        AddressKind::Documentation => "documentation",
        AddressKind::Reserved => "reserved",
    }
}

async fn cleanup(
    check: &Checklist<'_>,
    gateway: &Gateway,
    mapping: &Mapping,
    keep: bool,
    pre_existing: bool,
) -> Option<upnp::UpnpError> {
    let port = mapping.external_port;
    if keep {
        check.step(
            "cleanup",
            Some(true),
            &format!(
                "kept UDP port {port} as asked (--keep); it ends with its lease in {}, or remove \
                 it now with `upnpc -d {port} UDP`",
                crate::output::human_duration(mapping.lease())
            ),
            json!({"removed": false, "kept": true}),
        );
        return None;
    }
    if pre_existing {
        check.step(
            "cleanup",
            Some(true),
            &format!("left UDP port {port} in place: it was mapped before this run"),
            json!({"removed": false, "kept": true}),
        );
        return None;
    }
    match gateway.unmap(port).await {
        Ok(()) => {
            check.step(
                "cleanup",
                Some(true),
                &format!("mapping of UDP port {port} removed"),
                json!({"removed": true, "kept": false}),
            );
            None
        }
        Err(e) => {
            check.step(
                "cleanup",
                Some(false),
                &e.to_string(),
                json!({"removed": false, "kept": false}),
            );
            Some(e)
        }
    }
}

/// Nonces delivered to our endpoint, by connections it accepted.
type Arrivals = Arc<Mutex<HashMap<Nonce, SocketAddr>>>;

/// Step 4: every probe peer must connect back. `Err` carries the first failure.
async fn reachability(
    check: &Checklist<'_>,
    endpoint: &Endpoint,
    probes: &[Target],
    mapping: &Mapping,
    external_ip: Option<IpAddr>,
    limit: Duration,
) -> Result<(), String> {
    if probes.is_empty() {
        check.step(
            "reachability",
            None,
            "not verified: give --probe ADDR|TICKET of a `qp2p listen` outside this network",
            json!({}),
        );
        return Ok(());
    }
    // Accept connect-backs for as long as the probes run.
    let arrivals: Arrivals = Arc::default();
    let (notify, mut arrived) = mpsc::unbounded_channel::<()>();
    let acceptor = tokio::spawn(client::accept_connect_backs(
        endpoint.clone(),
        arrivals.clone(),
        notify,
        limit,
    ));
    let mut first_failure = None;
    for target in probes {
        let peer = shown(target);
        let verdict = probe_one(
            endpoint,
            target,
            mapping,
            external_ip,
            limit,
            &arrivals,
            &mut arrived,
        )
        .await;
        let detail = if verdict.ok {
            format!("reachable: {}", verdict.detail)
        } else {
            format!("not reachable: {}", verdict.detail)
        };
        check.step(
            "reachability",
            Some(verdict.ok),
            &detail,
            json!({
                "peer": peer,
                "observed": verdict.observed.map(|a| a.to_string()),
                "mapping": verdict.asked.map(|a| a.to_string()),
                "connected_from": verdict.from.map(|a| a.to_string()),
            }),
        );
        if !verdict.ok && first_failure.is_none() {
            first_failure = Some(verdict.detail.clone());
        }
    }
    acceptor.abort();
    match first_failure {
        None => Ok(()),
        Some(reason) => Err(reason),
    }
}

struct Verdict {
    ok: bool,
    detail: String,
    observed: Option<SocketAddr>,
    asked: Option<SocketAddr>,
    from: Option<SocketAddr>,
}

impl Verdict {
    fn failed(detail: String) -> Self {
        Verdict {
            ok: false,
            detail,
            observed: None,
            asked: None,
            from: None,
        }
    }
}

async fn probe_one(
    endpoint: &Endpoint,
    target: &Target,
    mapping: &Mapping,
    external_ip: Option<IpAddr>,
    limit: Duration,
    arrivals: &Arrivals,
    arrived: &mut mpsc::UnboundedReceiver<()>,
) -> Verdict {
    let addrs = match target.resolve().await {
        Ok(a) => a,
        Err(e) => return Verdict::failed(format!("cannot resolve {}: {e}", shown(target))),
    };
    // The endpoint is IPv4 (the mapping is): prefer an IPv4 address of the prober.
    let Some(addr) = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
    else {
        return Verdict::failed(format!("{} has no address", shown(target)));
    };
    let rules = match target.expect {
        Some(fp) => TrustRules::pinned_to(fp),
        None => TrustRules::any(),
    };
    let mut backs = client::Arrivals {
        seen: arrivals,
        arrived,
    };
    let external = (external_ip, mapping.external_port);
    let found = client::check(endpoint, addr, rules, external, limit, &mut backs).await;
    Verdict {
        ok: found.is_reachable(),
        detail: described(target, &found),
        observed: found.observed(),
        asked: found.asked(),
        from: found.from(),
    }
}

/// A probe's verdict as its check line says it.
fn described(target: &Target, found: &client::Verdict) -> String {
    use client::Verdict as V;
    let peer = shown(target);
    let comparison = |observed: &SocketAddr, asked: &SocketAddr| compare(*observed, *asked);
    match found {
        V::Reachable {
            observed,
            asked,
            from,
        } => format!(
            "{peer} connected back from {from} through {asked} and delivered the nonce; it \
             sees you at {observed} ({})",
            comparison(observed, asked)
        ),
        V::NotYourAddress { observed, asked } => format!(
            "{peer} sees you at {observed}, not at the mapping's {asked} ({})",
            comparison(observed, asked)
        ),
        V::NotReached { observed, asked } => format!(
            "{peer} could not connect back to {asked}: the router does not let inbound \
             traffic through the mapping (it sees you at {observed}, {})",
            comparison(observed, asked)
        ),
        V::Busy { .. } => format!("{peer} is busy with other probes; try again"),
        V::Lost { asked, .. } => {
            format!("{peer} says it delivered the nonce to {asked}, but nothing arrived here")
        }
        V::Confused { .. } => format!("{peer} answered the connect-back request wrongly"),
        V::Failed { error, .. } => probe_failure(target, error),
        V::NoConnection(e) => format!("cannot reach the prober {peer}: {e}"),
        V::NoAnswer(limit) => format!(
            "cannot reach the prober {peer}: no answer within {}",
            crate::output::human_duration(*limit)
        ),
    }
}

fn probe_failure(target: &Target, e: &ProbeError) -> String {
    format!("the probe via {} failed: {e}", shown(target))
}

/// A prober as shown in reports: its address, without the fingerprint of a ticket.
fn shown(target: &Target) -> String {
    Target {
        expect: None,
        ..target.clone()
    }
    .to_string()
}

/// How the address a prober observed compares with the mapping.
fn compare(observed: SocketAddr, mapped: SocketAddr) -> String {
    let observed = canonical(observed);
    if observed == mapped {
        "same as the mapping".into()
    } else if observed.ip() == mapped.ip() {
        format!(
            "same IP, but the NAT rewrote the source port to {}: peers get in only through the \
             mapped port {}",
            observed.port(),
            mapped.port()
        )
    } else {
        format!(
            "another IP than the gateway's external {}: there is a second NAT beyond this \
             gateway, or traffic leaves by another uplink",
            mapped.ip()
        )
    }
}

/// Starts keeping a mapping for `listen --upnp` and reports what happens on `ctx.out`:
/// a `mapped` event (and the ticket for the external address), warnings when the
/// gateway is missing or lost, an `unmapped` event when removed on exit. A listener
/// bound to loopback gets a warning and no mapping (`None`).
///
/// `announce` is told the external address when a mapping is made (`Some`) and when
/// it is lost or removed (`None`); for a mapping it may return the ticket to show
/// instead of `FP@EXTERNAL` (with `--via`: every way, the mapping first).
pub fn keep_mapping(
    ctx: &Context,
    fingerprint: Fingerprint,
    bound: SocketAddr,
    lease: Duration,
    announce: impl Fn(Option<SocketAddr>) -> Option<String> + Send + Sync + 'static,
) -> Option<Keeper> {
    let out = ctx.out.clone();
    if bound.ip().is_loopback() {
        out.warn(&format!(
            "UPnP: listening on {bound}, a loopback address, which no mapping can reach: no \
             mapping made; bind [::] or this host's LAN address"
        ));
        return None;
    }
    let config = KeeperConfig {
        local_port: bound.port(),
        lease,
        search_timeout: Duration::from_secs(5),
        max_retry: Duration::from_secs(300),
    };
    Some(Keeper::start(config, move |event| {
        report(&out, fingerprint, bound, event, &announce)
    }))
}

fn report(
    out: &Output,
    fingerprint: Fingerprint,
    bound: SocketAddr,
    event: KeeperEvent,
    announce: &(impl Fn(Option<SocketAddr>) -> Option<String> + Send + Sync),
) {
    match event {
        KeeperEvent::Mapped { mapping, gateway } => {
            let external = mapping.external();
            let shown = external.map_or(format!("?:{}", mapping.external_port), |a| a.to_string());
            let ticket =
                external.map(|a| announce(Some(a)).unwrap_or_else(|| ticket(&fingerprint, a)));
            out.event(
                json!({
                    "event": "mapped",
                    "external": shown,
                    "internal": mapping.local.to_string(),
                    "lease_s": mapping.lease().as_secs(),
                    "renew_s": mapping.renew_after().as_secs(),
                    "gateway": gateway,
                    "ticket": ticket,
                }),
                || {
                    let mut text = format!(
                        "UPnP: mapped UDP {shown} -> {} (lease {}, renewed every {}) on {gateway}",
                        mapping.local,
                        crate::output::human_duration(mapping.lease()),
                        crate::output::human_duration(mapping.renew_after()),
                    );
                    if let Some(ticket) = &ticket {
                        text.push_str(&format!(
                            "\nexternal ticket {ticket}\nsend from outside with: qp2p send \
                             {ticket} FILE"
                        ));
                    }
                    text
                },
            );
            if let Some(advice) = mapping.external_ip.and_then(|ip| classify(ip).advice()) {
                out.warn(&format!("UPnP: external address {shown} is {advice}"));
            }
            if !bound.ip().is_unspecified() && bound.ip() != mapping.local.ip() {
                out.warn(&format!(
                    "UPnP: listening on {bound} but the gateway forwards to {}: inbound traffic \
                     will not arrive; bind [::] or {}",
                    mapping.local,
                    mapping.local.ip()
                ));
            }
        }
        KeeperEvent::Unavailable { error, retry_in } => out.warn(&format!(
            "UPnP: {error}; listening without a port mapping (trying again in {})",
            crate::output::human_duration(retry_in)
        )),
        KeeperEvent::Lost { error } => {
            announce(None);
            out.warn(&format!(
                "UPnP: renewing the mapping failed: {error}; searching for the gateway again"
            ))
        }
        KeeperEvent::Removed { mapping } => {
            announce(None);
            out.event(
                json!({
                    "event": "unmapped",
                    "external_port": mapping.external_port,
                    "internal": mapping.local.to_string(),
                }),
                || {
                    format!(
                        "UPnP: mapping of UDP port {} removed",
                        mapping.external_port
                    )
                },
            )
        }
        KeeperEvent::RemoveFailed { mapping, error } => out.warn(&format!(
            "UPnP: could not remove the mapping of UDP port {}: {error}; it ends with its \
             lease in at most {}",
            mapping.external_port,
            crate::output::human_duration(mapping.lease())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_addresses_are_compared_with_the_mapping() {
        let m: SocketAddr = "203.0.113.1:40000".parse().unwrap();
        assert_eq!(compare(m, m), "same as the mapping");
        assert!(compare("203.0.113.1:5".parse().unwrap(), m).contains("rewrote the source port"));
        assert!(compare("198.51.100.1:40000".parse().unwrap(), m).contains("second NAT"));
    }
}
