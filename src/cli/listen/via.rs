//! `listen --via TICKET` (registration with introducers, kept up for the whole run)
//! and the ticket that names every way to this listener.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::watch;

use super::{display_addr, local_addresses};
use crate::error::{coded, Exit};
use crate::output::Output;
use qp2p::net::addr::Target;
use qp2p::net::introducer::{keep_registered, PeerPath, RegistrationEvent};
use qp2p::{Endpoint, Fingerprint};

/// An introducer given with `--via`: its fingerprint and address.
#[derive(Debug, Clone)]
pub struct Via {
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// As given (for the ticket).
    pub target: Target,
    /// Where it is.
    pub addr: SocketAddr,
}

/// Resolves every `--via` ticket; each must pin the introducer's fingerprint.
pub async fn resolve(vias: &[Target]) -> anyhow::Result<Vec<Via>> {
    let mut out = Vec::new();
    for target in vias {
        let Some(fingerprint) = target.expect else {
            return Err(coded(
                Exit::Usage,
                format!("--via {target}: give the introducer's ticket (FINGERPRINT@HOST:PORT)"),
            ));
        };
        let addrs = target.resolve().await.map_err(|e| {
            coded(
                Exit::Connect,
                format!("--via {target}: cannot resolve: {e}"),
            )
        })?;
        out.push(Via {
            fingerprint,
            target: target.clone(),
            addr: addrs[0],
        });
    }
    Ok(out)
}

/// The addresses this listener announces to its introducers (and that its ticket
/// names directly): the bound address, or for a wildcard bind every address of this
/// host that is up, loopback excepted.
pub fn own_addrs(bound: SocketAddr) -> Vec<SocketAddr> {
    if !bound.ip().is_unspecified() {
        return vec![bound];
    }
    let mut addrs: Vec<SocketAddr> = local_addresses()
        .into_iter()
        .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
        .filter(|ip| bound.is_ipv6() || ip.is_ipv4())
        .map(|ip| SocketAddr::new(ip, bound.port()))
        .collect();
    addrs.truncate(qp2p::net::introducer::wire::MAX_ADDRS);
    if addrs.is_empty() {
        addrs.push(display_addr(bound));
    }
    addrs
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The addresses this listener announces to its introducers: its own, and the UPnP
/// mapping's external address while there is one (first: a public address that
/// needs no punch). Every registration re-registers when they change.
#[derive(Debug, Clone)]
pub struct Announced {
    own: Vec<SocketAddr>,
    tx: Arc<watch::Sender<Vec<SocketAddr>>>,
}

impl Announced {
    /// Announcing `own` until a mapping is made.
    pub fn new(own: Vec<SocketAddr>) -> Self {
        let (tx, _) = watch::channel(own.clone());
        Self {
            own,
            tx: Arc::new(tx),
        }
    }

    /// What the registrations follow.
    pub fn watch(&self) -> watch::Receiver<Vec<SocketAddr>> {
        self.tx.subscribe()
    }

    /// The UPnP mapping's external address now (`None`: no mapping).
    pub fn mapped(&self, external: Option<SocketAddr>) {
        let mut all: Vec<SocketAddr> = external.into_iter().collect();
        all.extend(self.own.iter().filter(|a| Some(**a) != external));
        all.truncate(qp2p::net::introducer::wire::MAX_ADDRS);
        self.tx.send_if_modified(|now| {
            let changed = *now != all;
            *now = all;
            changed
        });
    }
}

/// The ticket naming every way: `FP@DIRECT,IFP@INTRODUCER…`.
pub fn ticket(fp: &Fingerprint, direct: SocketAddr, vias: &[Via]) -> String {
    let mut text = qp2p::net::addr::ticket(fp, direct);
    for via in vias {
        text.push(',');
        text.push_str(&via.target.to_string());
    }
    text
}

/// The addresses recent introductions told us to expect peers from: toward a punch
/// (punched), a relay session (relayed). The most recent [`SEEN`] are kept.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<VecDeque<(SocketAddr, PeerPath)>>>);

const SEEN: usize = 64;

impl Seen {
    fn note(&self, addr: SocketAddr, path: PeerPath) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|(a, _)| *a != addr);
        if seen.len() == SEEN {
            seen.pop_front();
        }
        seen.push_back((addr, path));
    }

    /// How a peer at `addr` reached us: through a punch or a relay we were told of,
    /// else directly.
    pub fn path_of(&self, addr: SocketAddr) -> PeerPath {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .rev()
            .find(|(a, _)| *a == addr)
            .map_or(PeerPath::Direct, |(_, p)| *p)
    }
}

/// Keeps this listener registered with every introducer for the whole run, each
/// change reported (`registered`, `registration_lost`, `punched` events).
pub fn spawn(
    endpoint: &Endpoint,
    vias: &[Via],
    addrs: &Announced,
    out: &Output,
    seen: &Seen,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for via in vias {
        let out = out.clone();
        let seen = seen.clone();
        let ifp = via.fingerprint;
        tasks.push(tokio::spawn(keep_registered(
            endpoint.clone(),
            via.addr,
            ifp,
            addrs.watch(),
            move |event| report(&out, &seen, ifp, event),
        )));
    }
    tasks
}

fn report(out: &Output, seen: &Seen, ifp: Fingerprint, event: RegistrationEvent) {
    match event {
        RegistrationEvent::Registered {
            introducer,
            observed,
        } => out.event(
            json!({"event": "registered", "introducer": introducer.to_string(),
                   "introducer_fingerprint": ifp.to_string(), "observed": observed.to_string()}),
            || format!("registered with introducer {introducer}, which sees us at {observed}"),
        ),
        RegistrationEvent::Lost { introducer, reason } => {
            let reason = crate::output::shown(&reason).to_string();
            out.event(
                json!({"event": "registration_lost", "introducer": introducer.to_string(),
                       "introducer_fingerprint": ifp.to_string(), "reason": reason}),
                || format!("not registered with introducer {introducer} ({reason}); retrying"),
            )
        }
        RegistrationEvent::RelayBound { relay } => {
            seen.note(relay, PeerPath::Relayed(ifp));
            out.event(
                json!({"event": "relay_bound", "relay": relay.to_string(),
                       "introducer_fingerprint": ifp.to_string()}),
                || format!("a sender comes through the relay of {ifp} at {relay}"),
            )
        }
        RegistrationEvent::Punched { toward, requester } => {
            seen.note(toward, PeerPath::Punched(ifp));
            out.event(
                json!({"event": "punched", "toward": toward.to_string(),
                   "requester": requester.to_string(), "introducer_fingerprint": ifp.to_string()}),
                || format!("introduced to {requester}: punching toward {toward}"),
            )
        }
    }
}
