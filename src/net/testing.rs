//! Test fixtures shared by the unit tests of `net/`: a listener that accepts every
//! connection and holds it open, and a client endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::endpoint::{Endpoint, TransportOptions};
use super::server::{Server, ServerConfig};
use super::tls::{Identity, TrustRules};

/// A listener on 127.0.0.1 that accepts any peer and keeps each connection until the
/// peer closes it. Must be called inside a tokio runtime.
pub(crate) fn accepting_listener() -> (Endpoint, SocketAddr) {
    let id = Arc::new(Identity::ephemeral().unwrap());
    let ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        id,
        TransportOptions::default(),
        Some(TrustRules::any()),
    )
    .unwrap();
    let addr = ep.local_addr().unwrap();
    let server = Server::new(ep.clone(), ServerConfig::unlimited());
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                if let Ok(connected) = incoming.accept().await {
                    connected.conn.closed().await;
                }
            });
        }
    });
    (ep, addr)
}

/// A client endpoint with a fresh identity and the given connect timeout.
pub(crate) fn client_endpoint(connect_timeout: Duration) -> Endpoint {
    let id = Arc::new(Identity::ephemeral().unwrap());
    let opts = TransportOptions {
        connect_timeout,
        ..TransportOptions::default()
    };
    Endpoint::client(id, opts).unwrap()
}
