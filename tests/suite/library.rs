//! The library in-process: a server started through `net::Server` on port 0 (as
//! mini-redis `tests/server.rs` starts its server), a message sent to it with
//! `net::transfer::send_message`, the stored file checked.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use qp2p::net::framing::{Ack, AckStatus, Header, Kind, MessageId};
use qp2p::net::server::{Handler, Router, Stream};
use qp2p::net::transfer::{self, Limits, Mode, Source};
use qp2p::net::{
    Endpoint, Fingerprint, Identity, Server, ServerConfig, TransportOptions, TrustRules,
};
use qp2p::store::{sanitize, Store};

/// Stores every message in a directory and acks it with the name it landed under.
struct IntoStore(Store);

impl Handler for IntoStore {
    async fn message(&self, mut s: Stream) {
        let rel = sanitize(&s.header.name).expect("a clean name");
        let pending = self.0.begin(&rel, s.header.length).expect("a pending file");
        let got = transfer::receive_payload(
            &mut s.recv,
            &s.header,
            s.first,
            pending,
            Limits::default(),
            &|_| {},
        )
        .await
        .expect("the payload");
        let path = got.sink.commit().expect("committed");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ack = Ack {
            status: AckStatus::Stored,
            bytes: got.bytes,
            sha256: got.sha256,
        };
        let send = s.send.as_mut().expect("a bidirectional stream");
        transfer::send_ack(send, &ack, Some(&name)).await.unwrap();
        let _ = send.stopped().await;
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
    tokio::spawn(async move {
        server
            .run(Router::new(IntoStore(store)), std::future::pending())
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
        skip_same: None,
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
