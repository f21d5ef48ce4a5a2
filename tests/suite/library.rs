//! The library in-process: a server started through `net::Server` on port 0 (as
//! mini-redis `tests/server.rs` starts its server), a message sent to it with
//! `net::transfer::send_message`, received by `net::receiver::Receiver`, the stored
//! file checked.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use qp2p::net::framing::{Header, Kind, MessageId};
use qp2p::net::receiver::{NoProgress, Quota, Receiver, Sink};
use qp2p::net::server::{Handler, Router, Stream};
use qp2p::net::transfer::{self, Limits, Mode, Source};
use qp2p::store::Store;
use qp2p::{Endpoint, Fingerprint, Identity, Server, ServerConfig, TransportOptions, TrustRules};

/// Stores every message in a directory through the library's receiver.
struct IntoStore(Receiver);

impl Handler for IntoStore {
    async fn message(&self, mut s: Stream) {
        self.0
            .receive(&s.header, s.first, &mut s.send, &mut s.recv, &NoProgress)
            .await
            .expect("stored");
    }
}

/// A server on 127.0.0.1, port 0, storing into `dir`; its address and fingerprint.
fn start_server(dir: &Path) -> (SocketAddr, Fingerprint) {
    let identity = Arc::new(Identity::ephemeral().unwrap());
    let endpoint = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        identity,
        TransportOptions::default(),
        Some(TrustRules::any()),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let fingerprint = endpoint.fingerprint();
    let server = Server::new(endpoint, ServerConfig::default());
    let store = Store::new(dir, false).unwrap();
    let receiver = Receiver::new(Sink::Dir(store), Limits::default(), Quota::default());
    tokio::spawn(async move {
        server
            .run(Router::new(IntoStore(receiver)), std::future::pending())
            .await
    });
    (addr, fingerprint)
}

/// A message sent through the library lands in the server's directory, whole, and
/// the ack names where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_to_an_in_process_server_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, fingerprint) = start_server(dir.path());

    let src = tempfile::tempdir().unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = src.path().join("hello.bin");
    std::fs::write(&file, &payload).unwrap();

    let client = Endpoint::client(
        Arc::new(Identity::ephemeral().unwrap()),
        TransportOptions::default(),
    )
    .unwrap();
    let conn = client
        .connect(addr, TrustRules::pinned_to(fingerprint))
        .await
        .unwrap();
    let header = Header {
        kind: Kind::Message,
        id: MessageId::random(),
        length: Some(payload.len() as u64),
        name: "hello.bin".into(),
        digest: Some(qp2p::Algorithm::Blake3),
        skip_same: None,
        resume: None,
    };
    let source = Source::File(std::fs::File::open(&file).unwrap());
    let sent = transfer::send_message(&conn, &header, source, Mode::Bidi, &|_| {})
        .await
        .unwrap();
    assert_eq!(sent.bytes, payload.len() as u64);
    assert_eq!(sent.stored_as.as_deref(), Some("hello.bin"));
    assert_eq!(
        std::fs::read(dir.path().join("hello.bin")).unwrap(),
        payload
    );
    conn.close(0u32.into(), b"done");
}
