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
//! [`Throttle`] keeps a flood (refused connections, silent streams, bad headers) from
//! filling the log: one warning of a kind per [`WARNING_EVERY`], the next one counting
//! those held back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::net::Fingerprint;

/// Connections being served, in all and per source address.
#[derive(Debug)]
pub(crate) struct Admission {
    max_total: u32,
    max_per_ip: u32,
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
    /// Refusals logged at warn level (each one is at debug).
    warnings: Throttle,
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
            warnings: Throttle::default(),
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

    /// Takes a slot for a connection from `ip`, or says which limit is reached.
    pub(crate) fn admit(this: &Arc<Mutex<Self>>, ip: IpAddr) -> Result<Slot, String> {
        let mut a = this.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = a.per_ip.get(&ip).copied().unwrap_or(0);
        let refusal = if a.total >= a.max_total {
            format!("{} connections already (--max-connections)", a.total)
        } else if from_ip >= a.max_per_ip {
            format!("{from_ip} connections from {ip} already (--max-connections-per-ip)")
        } else {
            a.total += 1;
            *a.per_ip.entry(ip).or_default() += 1;
            return Ok(Slot {
                admission: this.clone(),
                ip,
            });
        };
        if let Some(held_back) = a.warnings.allow() {
            warn!(
                remote = %ip,
                refused = held_back + 1,
                "refusing connections: {refusal}"
            );
        }
        Err(refusal)
    }
}

/// A connection's place under the limits; given back when dropped.
pub(crate) struct Slot {
    admission: Arc<Mutex<Admission>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut a = self.admission.lock().unwrap_or_else(|p| p.into_inner());
        a.total = a.total.saturating_sub(1);
        if let Some(n) = a.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                a.per_ip.remove(&self.ip);
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
}
