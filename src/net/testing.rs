//! Test fixtures shared by the unit tests of `net/`: a listener that accepts every
//! connection and holds it open, a minimal receiver that acks every message, and a
//! client endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::endpoint::{Endpoint, TransportOptions};
use super::framing::{Ack, AckStatus, Header};
use super::server::{Handler, Router, Server, ServerConfig, Stream};
use super::tls::{Identity, TrustRules};
use super::transfer::{receive_payload, send_ack, Limits};

/// An endpoint on 127.0.0.1 with a fresh identity that lets any peer in, and its
/// address.
fn bound_listener() -> (Endpoint, SocketAddr) {
    let id = Arc::new(Identity::ephemeral().unwrap());
    let ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        id,
        TransportOptions::default(),
        Some(TrustRules::any()),
    )
    .unwrap();
    let addr = ep.local_addr().unwrap();
    (ep, addr)
}

/// A listener on 127.0.0.1 that accepts any peer and keeps each connection until the
/// peer closes it. Must be called inside a tokio runtime.
pub(crate) fn accepting_listener() -> (Endpoint, SocketAddr) {
    let (ep, addr) = bound_listener();
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

/// A listener on 127.0.0.1 that accepts any peer and receives every message on a
/// bidirectional stream into memory, acks it as stored under its own name, and hands
/// the header and payload to the returned channel. No duplicate table, no limits: the
/// least a sender needs to see its ack. Must be called inside a tokio runtime.
pub(crate) fn receiving_listener() -> (
    Endpoint,
    SocketAddr,
    mpsc::UnboundedReceiver<(Header, Vec<u8>)>,
) {
    let (ep, addr) = bound_listener();
    let (tx, rx) = mpsc::unbounded_channel();
    let server = Server::new(ep.clone(), ServerConfig::unlimited());
    let router = Router::new(IntoMemory(tx));
    tokio::spawn(async move { server.run(router, std::future::pending()).await });
    (ep, addr, rx)
}

/// Receives each message into memory and acks it (see [`receiving_listener`]).
struct IntoMemory(mpsc::UnboundedSender<(Header, Vec<u8>)>);

impl Handler for IntoMemory {
    async fn message(&self, s: Stream) {
        let Stream {
            header,
            first,
            send,
            mut recv,
            ..
        } = s;
        let Some(mut send) = send else { return };
        let Ok(got) = receive_payload(
            &mut recv,
            &header,
            first,
            Vec::new(),
            Limits::default(),
            &|_| {},
        )
        .await
        else {
            return;
        };
        let ack = Ack {
            status: AckStatus::Stored,
            bytes: got.bytes,
            digest: got.digest.bytes,
        };
        let name = header.name.clone();
        let _ = send_ack(&mut send, &ack, Some(&name)).await;
        let _ = self.0.send((header, got.sink));
    }
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
