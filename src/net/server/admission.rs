//! Who gets served: a server's connection limits, and how often its trouble is
//! logged.
//!
//! [`Admission`] counts the connections being served, in all and per source address,
//! and refuses past `max_connections` / `max_connections_per_ip` (`listen
//! --max-connections` / `--max-connections-per-ip`) before the
//! handshake (no cryptography spent, no state kept); a [`Slot`] is given back when its
//! connection ends. Past half of either limit a new address must first answer a
//! stateless Retry ([`Admission::busy`]), so handshakes from forged source addresses
//! never take the slots that are left.
//!
//! A full limit does not lock out a newcomer while connections sit idle: the oldest
//! connection under that limit (from the newcomer's address when that one is full)
//! that has had no stream open for [`IDLE_GRACE`] is closed with `close::REFUSED`
//! to make room ([`Slot::evicted`]), so a flood of connections that never open a
//! stream, from an address senders share (carrier-grade NAT), cannot starve them.
//! Only when none is idle is the newcomer refused.
//!
//! [`Throttle`] keeps a flood (refused connections, silent streams, bad headers) from
//! filling the log: one warning of a kind per [`WARNING_EVERY`], the next one counting
//! those held back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::net::tls::Fingerprint;

/// How long a connection must have had no stream open (since it was admitted, or
/// since its last stream ended) before a newcomer may take its place when a limit is
/// full. Long enough for a sender to finish its handshake and open its first stream.
pub(super) const IDLE_GRACE: Duration = Duration::from_secs(2);

/// The reason an idle connection is closed with, to make room for a newcomer.
pub(super) const EVICTED: &[u8] =
    b"closed to make room: no stream open while the connection limit was reached";

/// Connections being served, in all and per source address.
#[derive(Debug)]
pub(crate) struct Admission {
    max_total: u32,
    max_per_ip: u32,
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
    /// Every admitted connection, by the id of its [`Slot`].
    conns: HashMap<u64, Admitted>,
    next_id: u64,
    /// Refusals logged at warn level (each one is at debug).
    warnings: Throttle,
    /// Evictions logged at warn level (each one is at info).
    evictions: Throttle,
}

/// What admission knows of one connection it admitted.
#[derive(Debug)]
struct Admitted {
    ip: IpAddr,
    /// Streams open now.
    streams: u32,
    /// Since when no stream has been open: admission, or the end of the last stream.
    idle_since: Instant,
    /// Cancelled to close the connection ([`Slot::evicted`]).
    evict: CancellationToken,
}

impl Admitted {
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        (self.streams == 0).then(|| now.saturating_duration_since(self.idle_since))
    }
}

/// How often, at most, one kind of trouble is logged at warn level.
const WARNING_EVERY: Duration = Duration::from_secs(10);

/// At most one warning of a kind per [`WARNING_EVERY`]: the ones in between are
/// counted, and the next warning says how many there were. A flood of refused
/// connections or silent streams cannot fill the log.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// Whether to warn now, and if so how many warnings were held back before this one.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        if self.last.is_some_and(|t| t.elapsed() < WARNING_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.held_back))
    }
}

impl Admission {
    pub(crate) fn new(max_total: u32, max_per_ip: u32) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            max_total,
            max_per_ip,
            total: 0,
            per_ip: HashMap::new(),
            conns: HashMap::new(),
            next_id: 0,
            warnings: Throttle::default(),
            evictions: Throttle::default(),
        }))
    }

    /// Whether a new connection from `ip` must first prove it can receive at its
    /// address: past half of either limit, so that handshakes from forged source
    /// addresses (which cannot answer a Retry) never take the slots that are left.
    pub(crate) fn busy(this: &Arc<Mutex<Self>>, ip: IpAddr) -> bool {
        let a = this.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = a.per_ip.get(&ip).copied().unwrap_or(0);
        a.total.saturating_mul(2) >= a.max_total || from_ip.saturating_mul(2) >= a.max_per_ip
    }

    /// Takes a slot for a connection from `ip`, making room by closing an idle
    /// connection if a limit is full ([`Admission::evict_idle`]), or says which limit
    /// is reached.
    pub(crate) fn admit(this: &Arc<Mutex<Self>>, ip: IpAddr) -> Result<Slot, String> {
        let mut a = this.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = a.per_ip.get(&ip).copied().unwrap_or(0);
        let full = if a.total >= a.max_total {
            // Full per address too: only a connection from there makes room in both.
            let from = (from_ip >= a.max_per_ip).then_some(ip);
            Some((
                from,
                format!("{} connections already (--max-connections)", a.total),
            ))
        } else if from_ip >= a.max_per_ip {
            Some((
                Some(ip),
                format!("{from_ip} connections from {ip} already (--max-connections-per-ip)"),
            ))
        } else {
            None
        };
        if let Some((from, refusal)) = full {
            if !a.evict_idle(from, ip, &refusal) {
                if let Some(held_back) = a.warnings.allow() {
                    warn!(
                        remote = %ip,
                        refused = held_back + 1,
                        "refusing connections: {refusal}"
                    );
                }
                return Err(refusal);
            }
        }
        a.total += 1;
        *a.per_ip.entry(ip).or_default() += 1;
        let id = a.next_id;
        a.next_id += 1;
        let evict = CancellationToken::new();
        a.conns.insert(
            id,
            Admitted {
                ip,
                streams: 0,
                idle_since: Instant::now(),
                evict: evict.clone(),
            },
        );
        Ok(Slot {
            admission: this.clone(),
            id,
            evict,
        })
    }

    /// Makes room for a newcomer from `newcomer` under a full limit (`full`, in words):
    /// closes the connection (from `from`, if given) that has been idle longest, if it
    /// has been for [`IDLE_GRACE`], and gives back its place at once. False when
    /// none is idle that long.
    fn evict_idle(&mut self, from: Option<IpAddr>, newcomer: IpAddr, full: &str) -> bool {
        let now = Instant::now();
        let victim = self
            .conns
            .iter()
            .filter(|(_, c)| from.is_none_or(|ip| c.ip == ip))
            .filter_map(|(id, c)| Some((*id, c.idle_for(now)?)))
            .filter(|(_, idle)| *idle >= IDLE_GRACE)
            .max_by_key(|(_, idle)| *idle);
        let Some((id, idle)) = victim else {
            return false;
        };
        let Some(evicted) = self.release(id) else {
            return false;
        };
        evicted.evict.cancel();
        let idle = crate::net::retry::rounded(idle);
        info!(
            remote = %newcomer,
            evicted = %evicted.ip,
            "{full}: closing a connection with no stream for {idle} to make room"
        );
        if let Some(held_back) = self.evictions.allow() {
            warn!(
                remote = %newcomer,
                evicted = held_back + 1,
                "closing idle connections to make room: {full}"
            );
        }
        true
    }

    /// Forgets connection `id` and gives back its place under the limits.
    fn release(&mut self, id: u64) -> Option<Admitted> {
        let gone = self.conns.remove(&id)?;
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&gone.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&gone.ip);
            }
        }
        Some(gone)
    }
}

/// A connection's place under the limits; given back when dropped.
pub(crate) struct Slot {
    admission: Arc<Mutex<Admission>>,
    id: u64,
    evict: CancellationToken,
}

impl Slot {
    /// Cancelled when the connection is to be closed to make room for a newcomer (with
    /// `close::REFUSED` and [`EVICTED`]); its place is already given back then.
    pub(super) fn evicted(&self) -> &CancellationToken {
        &self.evict
    }

    /// A stream is open on this connection until the returned guard is dropped: it is
    /// not idle, so not closed to make room.
    pub(super) fn stream(&self) -> Stream {
        let mut a = self.admission.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = a.conns.get_mut(&self.id) {
            c.streams += 1;
        }
        Stream {
            admission: self.admission.clone(),
            id: self.id,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut a = self.admission.lock().unwrap_or_else(|p| p.into_inner());
        a.release(self.id);
    }
}

/// An open stream of an admitted connection ([`Slot::stream`]).
pub(super) struct Stream {
    admission: Arc<Mutex<Admission>>,
    id: u64,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut a = self.admission.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = a.conns.get_mut(&self.id) {
            c.streams = c.streams.saturating_sub(1);
            if c.streams == 0 {
                c.idle_since = Instant::now();
            }
        }
    }
}

/// Why our handshake refused a sender, in words, and its fingerprint when the reason
/// names it; `None` when the handshake failed for another reason. `reason` is the text
/// of the TLS error quinn reports (`invalid peer certificate: Other(OtherError(peer
/// fingerprint … is not trusted))`), whose rustls wrapping is dropped here.
///
/// Wording for the user (which flag admits the sender) is the caller's.
pub(crate) fn refusal(reason: &str) -> Option<(String, Option<Fingerprint>)> {
    let (_, why) = reason.split_once("invalid peer certificate: ")?;
    let mut why = why.trim();
    while let Some(inner) = why
        .strip_prefix("Other(")
        .or_else(|| why.strip_prefix("OtherError("))
        .and_then(|w| w.strip_suffix(')'))
    {
        why = inner;
    }
    let fp = why
        .strip_prefix("peer fingerprint ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|fp| fp.parse().ok());
    Some((why.to_string(), fp))
}

/// [`Throttle::allow`] under its lock; `more` in a warning is how many like it were
/// held back since the last one.
pub(crate) fn allow(throttle: &Mutex<Throttle>) -> Option<u64> {
    throttle.lock().unwrap_or_else(|p| p.into_inner()).allow()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One warning per period; the next says how many were held back.
    #[test]
    fn warnings_are_throttled_and_counted() {
        let mut t = Throttle::default();
        assert_eq!(t.allow(), Some(0));
        for _ in 0..3 {
            assert_eq!(t.allow(), None);
        }
        t.last = Some(Instant::now() - WARNING_EVERY);
        assert_eq!(t.allow(), Some(3));
        assert_eq!(t.allow(), None);
    }

    /// The `--allow` refusal in words, not `Other(OtherError(…))`.
    #[test]
    fn allow_refusals_are_told_in_words() {
        let fp = "h3kto7a7sb5pxerg3jfyw66q72rc2mphwhewvh2s5gcloib3k3hq";
        let reason = format!(
            "the cryptographic handshake failed: error 46: invalid peer certificate: \
             Other(OtherError(peer fingerprint {fp} is not trusted))"
        );
        let (why, seen) = refusal(&reason).expect("a refusal");
        assert_eq!(why, format!("peer fingerprint {fp} is not trusted"));
        assert_eq!(seen.map(|f| f.to_string()).as_deref(), Some(fp));
        let (why, seen) = refusal("error 48: invalid peer certificate: UnknownIssuer").unwrap();
        assert_eq!((why.as_str(), seen), ("UnknownIssuer", None));
        assert!(refusal("timed out").is_none());
    }

    #[test]
    fn connection_limits_hold_and_slots_come_back() {
        let admission = Admission::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = Admission::admit(&admission, a).unwrap();
        let _a2 = Admission::admit(&admission, a).unwrap();
        let refused = Admission::admit(&admission, a).err().unwrap();
        assert!(refused.contains("--max-connections-per-ip"), "{refused}");
        let _b1 = Admission::admit(&admission, b).unwrap();
        let refused = Admission::admit(&admission, b).err().unwrap();
        assert!(refused.contains("--max-connections"), "{refused}");
        drop(a1);
        let _a3 = Admission::admit(&admission, a).expect("a slot came back");
        assert_eq!(admission.lock().unwrap().total, 3);
    }

    /// Makes `slot`'s connection look idle since `idle` ago.
    fn age(admission: &Arc<Mutex<Admission>>, slot: &Slot, idle: Duration) {
        let mut a = admission.lock().unwrap();
        a.conns.get_mut(&slot.id).unwrap().idle_since = Instant::now() - idle;
    }

    /// A full limit closes the connection idle longest (past the grace) to admit a
    /// newcomer, from the newcomer's address when that limit is the full one; its place
    /// is given back once, not again when its task ends.
    #[test]
    fn a_full_limit_evicts_the_longest_idle_connection() {
        let admission = Admission::new(4, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = Admission::admit(&admission, a).unwrap();
        let a2 = Admission::admit(&admission, a).unwrap();
        let b1 = Admission::admit(&admission, b).unwrap();
        age(&admission, &a1, IDLE_GRACE * 2);
        age(&admission, &a2, IDLE_GRACE * 3);
        age(&admission, &b1, IDLE_GRACE * 9);
        // Per address: only a connection from `a` makes room for `a`, though `b1`
        // has been idle longer.
        let a3 = Admission::admit(&admission, a).expect("room made");
        assert!(a2.evicted().is_cancelled() && !a1.evicted().is_cancelled());
        assert!(!b1.evicted().is_cancelled());
        drop(a2);
        assert_eq!(admission.lock().unwrap().total, 3);
        assert_eq!(admission.lock().unwrap().per_ip[&a], 2);
        // In all: the longest idle from any address.
        let _b2 = Admission::admit(&admission, b).unwrap();
        let _c1 = Admission::admit(&admission, "192.0.2.3".parse().unwrap()).unwrap();
        assert!(b1.evicted().is_cancelled() && !a1.evicted().is_cancelled());
        assert!(!a3.evicted().is_cancelled());
        assert_eq!(admission.lock().unwrap().total, 4);
        drop(b1);
        assert_eq!(admission.lock().unwrap().total, 4);
    }

    /// A connection with a stream open, or idle for less than the grace, is never
    /// closed to make room: the newcomer is refused as before. Once its stream ends and
    /// the grace passes, it may be.
    #[test]
    fn busy_and_new_connections_are_not_evicted() {
        let admission = Admission::new(2, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let busy = Admission::admit(&admission, a).unwrap();
        let young = Admission::admit(&admission, a).unwrap();
        let stream = busy.stream();
        age(&admission, &busy, IDLE_GRACE * 10);
        age(&admission, &young, IDLE_GRACE / 2);
        let refused = Admission::admit(&admission, a).err().unwrap();
        assert!(refused.contains("--max-connections"), "{refused}");
        assert!(!busy.evicted().is_cancelled() && !young.evicted().is_cancelled());
        drop(stream);
        age(&admission, &busy, IDLE_GRACE);
        let _new = Admission::admit(&admission, a).expect("room made");
        assert!(busy.evicted().is_cancelled() && !young.evicted().is_cancelled());
    }
}
