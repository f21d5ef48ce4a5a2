//! Connections to peers, reused for every message to the same peer.
//!
//! The pool maps a key (peer address, and the trust rules the peer was verified under:
//! pinned fingerprint, CA) to one connection. Every message to that peer opens its own stream on it, so a
//! directory of a thousand files costs one handshake, not a thousand.
//!
//! What could go wrong, and how it is prevented (the qp2p crate removed its pool for
//! "edge cases"; these are they):
//! - *Concurrent dials to one peer* (several files sent at once) would open several
//!   connections: the slot holds a shared dial future, so callers that arrive while a
//!   dial is in flight wait for that one dial and share its result, error included.
//! - *A dead connection handed out again*: a connection whose `close_reason` is set is
//!   never returned; a watcher task removes the slot the moment the connection closes,
//!   and [`Pool::evict`] removes it at once when a caller saw it fail.
//! - *A stale slot replacing a fresh one*: each slot has a generation number, and a late
//!   watcher or failed dial removes only its own generation, never the newer slot that
//!   replaced it.
//! - *An identity mix-up*: a connection verified under one set of rules is never handed
//!   to a caller that asks for others (the whole [`TrustRules`] is part of the key: a
//!   connection accepted without a pin or without `--ca` cannot serve a caller that
//!   needs one, nor one checked against another CA).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use super::endpoint::{ConnectError, Endpoint};
use super::tls::TrustRules;

type Dial = Shared<BoxFuture<'static, Result<quinn::Connection, ConnectError>>>;

/// One peer's slot: the dial (in flight or done) and a generation number that tells a
/// slot apart from the one that replaced it.
#[derive(Clone)]
struct Slot {
    generation: u64,
    dial: Dial,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({})", self.generation)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    addr: SocketAddr,
    rules: TrustRules,
}

/// A pooled connection and whether this call reused it (did not dial).
#[derive(Debug, Clone)]
pub struct Pooled {
    /// The connection.
    pub conn: quinn::Connection,
    /// True when the connection existed (or was being dialed) before this call.
    pub reused: bool,
}

/// Connections keyed by peer address and the trust rules they were verified under.
#[derive(Debug, Clone)]
pub struct Pool {
    endpoint: Endpoint,
    slots: Arc<Mutex<HashMap<Key, Slot>>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Pool {
    /// An empty pool dialing from `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            slots: Arc::default(),
            generation: Arc::default(),
        }
    }

    /// The endpoint connections leave from.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The live connection to `addr` whose peer passed `rules`, dialing one if there is
    /// none. One attempt: retrying is the caller's business.
    pub async fn get(&self, addr: SocketAddr, rules: &TrustRules) -> Result<Pooled, ConnectError> {
        let key = Key {
            addr,
            rules: rules.clone(),
        };
        let (dial, reused) = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.get(&key) {
                Some(slot) if usable(&slot.dial) => (slot.dial.clone(), true),
                _ => {
                    let generation = self
                        .generation
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let dial = self.dial(key.clone(), generation);
                    slots.insert(
                        key,
                        Slot {
                            generation,
                            dial: dial.clone(),
                        },
                    );
                    (dial, false)
                }
            }
        };
        let conn = dial.await?;
        if conn.close_reason().is_some() {
            // Closed between the check and now: the watcher removes the slot; report
            // it as the transient failure it is.
            self.evict(&conn);
            return Err(super::endpoint::classify(
                conn.close_reason()
                    .unwrap_or(quinn::ConnectionError::LocallyClosed),
            ));
        }
        Ok(Pooled { conn, reused })
    }

    fn dial(&self, key: Key, generation: u64) -> Dial {
        let endpoint = self.endpoint.clone();
        let slots = Arc::downgrade(&self.slots);
        async move {
            let result = endpoint.connect(key.addr, key.rules.clone()).await;
            match &result {
                Ok(conn) => watch(slots, key, generation, conn.clone()),
                Err(_) => {
                    if let Some(slots) = slots.upgrade() {
                        remove_generation(&slots, &key, generation);
                    }
                }
            }
            result
        }
        .boxed()
        .shared()
    }

    /// Adds a connection made elsewhere (the winner of a race, verified under `rules`)
    /// as the one for `addr` and `rules`, replacing any other.
    pub fn insert(&self, addr: SocketAddr, rules: TrustRules, conn: quinn::Connection) {
        let key = Key { addr, rules };
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        watch(
            Arc::downgrade(&self.slots),
            key.clone(),
            generation,
            conn.clone(),
        );
        let dial = futures_util::future::ready(Ok(conn)).boxed().shared();
        // Resolve it now so `peek` sees the connection.
        let _ = dial.clone().now_or_never();
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, Slot { generation, dial });
    }

    /// Removes `conn` from the pool (if it is still there) so the next caller dials a
    /// fresh connection. Call it when an operation on `conn` failed.
    pub fn evict(&self, conn: &quinn::Connection) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(
            |_, slot| !matches!(slot.dial.peek(), Some(Ok(c)) if c.stable_id() == conn.stable_id()),
        );
    }

    /// The connections that are open now (dials still in flight are not).
    pub fn live(&self) -> Vec<quinn::Connection> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .filter_map(|slot| match slot.dial.peek() {
                Some(Ok(conn)) if conn.close_reason().is_none() => Some(conn.clone()),
                _ => None,
            })
            .collect()
    }

    /// Number of slots (live or dialing connections).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the pool holds no connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A slot is usable while its dial is in flight or produced a connection still open.
fn usable(dial: &Dial) -> bool {
    match dial.peek() {
        None => true,
        Some(Ok(conn)) => conn
            .close_reason()
            .is_none_or(|why| closed_on_purpose(&why)),
        Some(Err(_)) => false,
    }
}

/// The peer closed the connection with one of our final close codes (it is done, or
/// stopping): the next caller must hear that, not dial a peer that said goodbye.
fn closed_on_purpose(why: &quinn::ConnectionError) -> bool {
    matches!(
        super::endpoint::classify(why.clone()),
        ConnectError::Closed { .. }
    )
}

/// Removes the slot when its connection closes, unless the peer closed it on purpose:
/// that slot stays until a caller has been told (`get` evicts it then).
fn watch(
    slots: Weak<Mutex<HashMap<Key, Slot>>>,
    key: Key,
    generation: u64,
    conn: quinn::Connection,
) {
    tokio::spawn(async move {
        if closed_on_purpose(&conn.closed().await) {
            return;
        }
        if let Some(slots) = slots.upgrade() {
            remove_generation(&slots, &key, generation);
        }
    });
}

/// Removes the slot of `key` if it is still the one of `generation` (a newer dial may
/// have replaced it).
fn remove_generation(slots: &Mutex<HashMap<Key, Slot>>, key: &Key, generation: u64) {
    let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
    if slots.get(key).is_some_and(|s| s.generation == generation) {
        slots.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::endpoint::{Rejection, TransportOptions};
    use crate::net::tls::{CaRefusal, CaTrust, Fingerprint, Identity, Refusal};
    use std::time::Duration;

    fn server() -> (Endpoint, SocketAddr) {
        crate::net::testing::accepting_listener()
    }

    fn client() -> Pool {
        Pool::new(crate::net::testing::client_endpoint(Duration::from_secs(2)))
    }

    #[tokio::test]
    async fn sequential_gets_reuse_one_connection() {
        let (_server, addr) = server();
        let pool = client();
        let a = pool.get(addr, &TrustRules::any()).await.unwrap();
        let b = pool.get(addr, &TrustRules::any()).await.unwrap();
        assert!(!a.reused);
        assert!(b.reused);
        assert_eq!(a.conn.stable_id(), b.conn.stable_id());
    }

    #[tokio::test]
    async fn concurrent_dials_are_coalesced() {
        let (server, addr) = server();
        let pool = client();
        let any = TrustRules::any();
        let gets = (0..8).map(|_| pool.get(addr, &any));
        let conns = futures_util::future::join_all(gets).await;
        let ids: std::collections::BTreeSet<_> = conns
            .iter()
            .map(|c| c.as_ref().unwrap().conn.stable_id())
            .collect();
        assert_eq!(ids.len(), 1, "one connection for eight concurrent callers");
        assert_eq!(
            conns.iter().filter(|c| !c.as_ref().unwrap().reused).count(),
            1
        );
        assert_eq!(server.quinn().open_connections(), 1);
    }

    /// A listener that closed the connection on purpose (its `--count` reached) is not
    /// dialed again: the next caller hears why, at once.
    #[tokio::test]
    async fn a_peer_that_said_goodbye_is_not_redialed() {
        let (server, addr) = server();
        let pool = client();
        let a = pool.get(addr, &TrustRules::any()).await.unwrap().conn;
        // Closed before the handshake is confirmed, an application close travels as a
        // bare transport APPLICATION_ERROR without code or reason (RFC 9000 10.2.3).
        tokio::time::sleep(Duration::from_millis(100)).await;
        server
            .quinn()
            .close(crate::net::framing::close::DONE, b"takes no more");
        a.closed().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let again = pool.get(addr, &TrustRules::any()).await;
        assert!(
            matches!(&again, Err(ConnectError::Closed { reason, .. }) if reason == "takes no more"),
            "{:?}",
            again.map(|p| p.reused)
        );
    }

    #[tokio::test]
    async fn closed_connections_are_evicted_and_never_reused() {
        let (_server, addr) = server();
        let pool = client();
        let a = pool.get(addr, &TrustRules::any()).await.unwrap().conn;
        a.close(0u32.into(), b"test");
        let b = pool.get(addr, &TrustRules::any()).await.unwrap();
        assert!(!b.reused);
        assert_ne!(a.stable_id(), b.conn.stable_id());
        // Explicit eviction also forces a fresh dial.
        pool.evict(&b.conn);
        let c = pool.get(addr, &TrustRules::any()).await.unwrap();
        assert!(!c.reused);
        assert_ne!(b.conn.stable_id(), c.conn.stable_id());
    }

    #[tokio::test]
    async fn a_different_expected_identity_gets_its_own_connection() {
        let (server, addr) = server();
        let pool = client();
        let any = pool.get(addr, &TrustRules::any()).await.unwrap();
        let pinned = pool
            .get(addr, &TrustRules::pinned_to(server.fingerprint()))
            .await
            .unwrap();
        assert!(!pinned.reused);
        assert_ne!(any.conn.stable_id(), pinned.conn.stable_id());
        let wrong = pool
            .get(addr, &TrustRules::pinned_to(Fingerprint([0; 32])))
            .await;
        assert!(
            matches!(wrong, Err(ConnectError::IdentityRejected(_))),
            "{wrong:?}"
        );
    }

    /// Regression: a connection accepted without CA trust must not serve a caller that
    /// asked for `--ca` (the whole rule set is the key, not just the pin).
    #[tokio::test]
    async fn a_connection_verified_under_other_rules_is_not_reused() {
        let (_server, addr) = server();
        let pool = client();
        let any = pool.get(addr, &TrustRules::any()).await.unwrap();
        assert!(!any.reused);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap().der().clone();
        let rules = TrustRules::any().with_ca(Some(CaTrust::from_certificates(&[ca]).unwrap()));
        match pool.get(addr, &rules).await {
            Err(ConnectError::IdentityRejected(why)) => assert!(
                matches!(
                    &why,
                    Rejection::ByUs {
                        refusal: Refusal::Ca(CaRefusal::SelfSigned),
                        ..
                    }
                ),
                "{why}"
            ),
            other => panic!("expected a CA refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn failed_dials_are_not_cached() {
        let pool = {
            let id = Arc::new(Identity::ephemeral().unwrap());
            let opts = TransportOptions {
                connect_timeout: Duration::from_millis(200),
                ..TransportOptions::default()
            };
            Pool::new(Endpoint::client(id, opts).unwrap())
        };
        // A port with nothing behind it.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let err = pool.get(addr, &TrustRules::any()).await.unwrap_err();
        assert!(matches!(err, ConnectError::Timeout { .. }), "{err}");
        assert!(pool.is_empty());
    }
}
