//! The probe service (`listen`'s, served in-process by the library's server) on
//! loopback, from a small requester built on the net module (no root needed): observed
//! address, connect-back from a fresh socket with the nonce, refusals, `listen --no-probe`, and malformed probe streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use qp2p::net::framing::{ErrorCode, Header, Kind, MessageId};
use qp2p::net::probe::{self, Nonce, ProbeError, Request, Status};
use qp2p::{Endpoint, Identity, Server, ServerConfig, Target, TransportOptions, TrustRules};

use crate::util::server::InProcess;
use crate::util::{reset_code, TestDir};

const LIMIT: Duration = Duration::from_secs(10);

/// A requester: one endpoint on 127.0.0.1 that dials and accepts (like upnp-check),
/// connected to the listener (pinned).
async fn requester(ticket: &str) -> (Endpoint, quinn::Connection) {
    let target: Target = ticket.parse().unwrap();
    let addr = target.resolve().await.unwrap()[0];
    let id = Arc::new(Identity::ephemeral().unwrap());
    let endpoint = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        id,
        TransportOptions::default(),
        Some(TrustRules::any()),
    )
    .unwrap();
    let rules = TrustRules::pinned_to(target.expect.unwrap());
    let conn = endpoint.connect(addr, rules).await.unwrap();
    (endpoint, conn)
}

/// Waits for one incoming connection on `endpoint` and reads the nonce it delivers.
async fn next_nonce(endpoint: &Endpoint) -> (Nonce, SocketAddr) {
    let server = Server::new(endpoint.clone(), ServerConfig::unlimited());
    let incoming = server.accept().await.expect("incoming");
    let connected = incoming.accept().await.expect("handshake");
    probe::receive_nonce(&connected.conn, LIMIT)
        .await
        .expect("nonce")
}

fn probe_stream(length: Option<u64>, body: &[u8]) -> Vec<u8> {
    let mut bytes = Header {
        kind: Kind::Probe,
        id: MessageId::random(),
        length,
        name: String::new(),
        digest: None,
        skip_same: None,
        resume: None,
    }
    .encode();
    bytes.extend_from_slice(body);
    bytes
}

/// The listener reports the address it sees, and connects back from another socket
/// than its own, delivering the nonce to a connection the requester accepted.
#[test]
fn probe_observes_and_connects_back_from_a_fresh_socket() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let listener = InProcess::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (endpoint, conn) = requester(&listener.ticket).await;
        let local = endpoint.local_addr().unwrap();
        let observed = probe::observe(&conn, LIMIT).await.unwrap();
        assert_eq!(observed, local, "observed address");

        let nonce = Nonce::random();
        let (answer, (got, from)) = tokio::join!(
            probe::connect_back(&conn, local, nonce, LIMIT),
            next_nonce(&endpoint)
        );
        let answer = answer.unwrap();
        assert_eq!(answer.status, Status::Delivered);
        assert_eq!(got, nonce);
        assert_eq!(from.ip(), local.ip());
        assert_ne!(
            from.to_string(),
            listener.addr,
            "the connect-back must not come from the listener's own socket"
        );
    });
}

/// A connect-back to any other IP than the requester's is refused, never dialed.
#[test]
fn probe_refuses_to_connect_back_to_another_address() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let listener = InProcess::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (endpoint, conn) = requester(&listener.ticket).await;
        let port = endpoint.local_addr().unwrap().port();
        let elsewhere: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
        let answer = probe::connect_back(&conn, elsewhere, Nonce::random(), LIMIT)
            .await
            .unwrap();
        assert_eq!(answer.status, Status::NotYourAddress);
        assert_eq!(answer.observed.ip().to_string(), "127.0.0.1");
    });
}

/// Nothing listening at the target: the listener reports failure (bounded in time).
#[test]
fn probe_connect_back_to_a_silent_port_fails() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let listener = InProcess::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = requester(&listener.ticket).await;
        let silent: SocketAddr = format!("127.0.0.1:{}", crate::util::free_udp_port())
            .parse()
            .unwrap();
        let answer = probe::connect_back(&conn, silent, Nonce::random(), LIMIT * 2)
            .await
            .unwrap();
        assert_eq!(answer.status, Status::Failed);
    });
}

/// `listen --no-probe` (the binary): probe streams are reset with UNSUPPORTED; the
/// requester says so.
#[test]
fn listen_no_probe_refuses_probes() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let listener = dir.listen(&out, &["--no-probe"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = requester(&listener.ticket).await;
        match probe::observe(&conn, LIMIT).await {
            Err(ProbeError::Unsupported) => {}
            other => panic!("expected Unsupported, got {other:?}"),
        }
    });
}

/// Malformed probes reset their own stream with the documented codes; the connection
/// goes on answering probes.
#[test]
fn malformed_probes_reset_only_their_stream() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let listener = InProcess::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (endpoint, conn) = requester(&listener.ticket).await;
        let observe = Request::Observe.encode();
        let cases: [(&str, Vec<u8>, ErrorCode); 5] = [
            (
                "no length",
                probe_stream(None, &observe),
                ErrorCode::BadHeader,
            ),
            (
                "over the bound",
                probe_stream(Some(65), &[1; 65]),
                ErrorCode::TooLarge,
            ),
            (
                "shorter than declared",
                probe_stream(Some(10), &observe),
                ErrorCode::LengthMismatch,
            ),
            (
                "longer than declared",
                probe_stream(Some(1), &[1, 1, 1]),
                ErrorCode::LengthMismatch,
            ),
            (
                "unknown op",
                probe_stream(Some(1), &[99]),
                ErrorCode::BadHeader,
            ),
        ];
        for (what, bytes, code) in cases {
            assert_eq!(reset_code(&conn, &bytes).await, code as u64, "{what}");
        }
        let observed = probe::observe(&conn, LIMIT).await.unwrap();
        assert_eq!(observed, endpoint.local_addr().unwrap());
    });
}

/// The probe client's verdicts: reachable when the connect-back's nonce arrives on a
/// connection the requester's endpoint accepted, `NotYourAddress` when asked to connect
/// back to another IP than the listener sees.
#[test]
fn probe_client_gives_typed_verdicts() {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use probe::client::{self, Arrivals, Verdict};

    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let listener = InProcess::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (endpoint, conn) = requester(&listener.ticket).await;
        conn.close(0u32.into(), b"");
        let local = endpoint.local_addr().unwrap();
        let target: Target = listener.ticket.parse().unwrap();
        let addr = target.resolve().await.unwrap()[0];
        let rules = TrustRules::pinned_to(target.expect.unwrap());
        let seen: Arc<Mutex<HashMap<Nonce, SocketAddr>>> = Arc::default();
        let (notify, mut arrived) = tokio::sync::mpsc::unbounded_channel();
        let acceptor = tokio::spawn(client::accept_connect_backs(
            endpoint.clone(),
            seen.clone(),
            notify,
            LIMIT,
        ));
        let mut arrivals = Arrivals {
            seen: &seen,
            arrived: &mut arrived,
        };

        let external = (Some(local.ip()), local.port());
        let verdict = client::check(
            &endpoint,
            addr,
            rules.clone(),
            external,
            LIMIT,
            &mut arrivals,
        )
        .await;
        assert!(verdict.is_reachable(), "{verdict:?}");
        assert_eq!(verdict.observed(), Some(local));
        assert_eq!(verdict.asked(), Some(local));
        assert_eq!(verdict.from().map(|a| a.ip()), Some(local.ip()));

        let elsewhere = (Some("127.0.0.2".parse().unwrap()), local.port());
        let verdict = client::check(&endpoint, addr, rules, elsewhere, LIMIT, &mut arrivals).await;
        assert!(
            matches!(verdict, Verdict::NotYourAddress { observed, .. } if observed == local),
            "{verdict:?}"
        );
        acceptor.abort();
    });
}
