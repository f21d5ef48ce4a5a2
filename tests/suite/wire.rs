//! The wire protocol against the library's server (in-process, the receive rules `qp2p
//! listen` applies) and, for what it prints, the real listener, from a small client
//! built on the net module: what a hostile or unusual peer can do that `qp2p send`
//! never would.

use std::time::Duration;

use qp2p::net::framing::{self, ErrorCode, Header, Kind, MessageId, MAX_HEADER_LEN};
use qp2p::net::transfer::{hex, send_message, Mode, SendError, Source};
use qp2p::{Algorithm, Fingerprint};

use crate::util::server::{connect_pinned, InProcess};
use crate::util::{blake3, digest, list_all, random_bytes, reset_code, TestDir, EVENT_TIMEOUT};

fn message(name: &str, data: &[u8], id: MessageId) -> (Header, Source) {
    let header = Header {
        kind: Kind::Message,
        id,
        length: Some(data.len() as u64),
        name: name.to_string(),
        digest: Some(Algorithm::Blake3),
        skip_same: None,
        resume: None,
    };
    (header, Source::pipe(std::io::Cursor::new(data.to_vec())))
}

/// Garbage and an oversized header each reset their own stream with the documented
/// code; the same connection then still delivers a valid message.
#[test]
fn bad_headers_reset_only_their_stream() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let mut listener = InProcess::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = connect_pinned(&listener.ticket).await;

        let code = reset_code(&conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(code, ErrorCode::BadHeader as u64, "garbage header");

        let mut oversized = Vec::from(*b"QP2P");
        oversized.push(framing::VERSION);
        oversized.push(1);
        oversized.extend_from_slice(&u16::MAX.to_be_bytes());
        oversized.extend_from_slice(&[0u8; 64]);
        assert!(u16::MAX as usize > MAX_HEADER_LEN);
        let code = reset_code(&conn, &oversized).await;
        assert_eq!(code, ErrorCode::HeaderTooLarge as u64, "oversized header");

        let mut future_kind = Header::decode(&message("x", b"", MessageId::random()).0.encode())
            .unwrap()
            .encode();
        future_kind[5] = 0x7f;
        let code = reset_code(&conn, &future_kind).await;
        assert_eq!(code, ErrorCode::Unsupported as u64, "unknown kind");

        let data = random_bytes(300_000);
        let (header, source) = message("after.bin", &data, MessageId::random());
        let sent = send_message(&conn, &header, source, Mode::Bidi, &|_| {})
            .await
            .expect("the connection survives bad streams");
        assert_eq!(sent.digest.hex(), blake3(&data));
        assert!(conn.close_reason().is_none(), "connection still open");
    });
    let ev = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(ev["name"], "after.bin");
    let landed = std::fs::read(out.join("after.bin")).expect("file landed");
    assert_eq!(digest(&ev), blake3(&landed));
    assert_eq!(list_all(&out).len(), 1, "only the valid message landed");
}

/// A header and payload that arrive in pieces (the header split inside its prefix and
/// its body, the payload partly in the header's packet) land whole, on the small
/// in-memory path and on the streamed one.
#[test]
fn a_message_in_pieces_lands_whole() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let mut listener = InProcess::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sizes = [1000usize, 300_000];
    rt.block_on(async {
        let (_endpoint, conn) = connect_pinned(&listener.ticket).await;
        for size in sizes {
            let data = random_bytes(size);
            let (header, _) = message(&format!("pieces-{size}"), &data, MessageId::random());
            let mut wire = header.encode();
            let header_len = wire.len();
            wire.extend_from_slice(&data);
            let cuts = [0, 3, framing::PREFIX_LEN + 5, header_len + 100, wire.len()];
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            for piece in cuts.windows(2) {
                send.write_all(&wire[piece[0]..piece[1]]).await.unwrap();
                // Apart in time, so apart in packets.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            send.finish().unwrap();
            let (ack, _) = framing::read_ack(&mut recv).await.expect("an ack");
            assert_eq!(ack.bytes, size as u64);
            assert_eq!(hex(&ack.digest), blake3(&data));
        }
    });
    for size in sizes {
        let ev = listener.wait_for("received", EVENT_TIMEOUT);
        let landed = std::fs::read(out.join(format!("pieces-{size}"))).expect("file landed");
        assert_eq!(landed.len(), size);
        assert_eq!(digest(&ev), blake3(&landed));
    }
}

/// A retry after a lost ack delivers the same message id again, on a new connection:
/// the listener acks it as a duplicate and stores it once.
#[test]
fn the_same_message_id_is_stored_once() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let mut listener = InProcess::start(&out);
    let data = random_bytes(200_000);
    let id = MessageId::random();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_e1, first) = connect_pinned(&listener.ticket).await;
        let (header, source) = message("once.bin", &data, id);
        let sent = send_message(&first, &header, source, Mode::Bidi, &|_| {})
            .await
            .unwrap();
        assert!(!sent.duplicate);
        // The ack was "lost": the sender retries on a fresh connection.
        first.close(0u32.into(), b"lost ack");
        let (_e2, second) = connect_pinned(&listener.ticket).await;
        let (header, source) = message("once.bin", &data, id);
        let again = send_message(&second, &header, source, Mode::Bidi, &|_| {})
            .await
            .unwrap();
        assert!(again.duplicate, "second delivery acked as duplicate");
        assert_eq!(again.digest, sent.digest);

        // A different payload under a known id is not silently accepted either: the
        // sender's hash differs from what was stored.
        let (header, source) = message("once.bin", b"other bytes", id);
        let err = send_message(&second, &header, source, Mode::Bidi, &|_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, SendError::Integrity { .. }), "{err}");
    });
    let first = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(first["duplicate"], false);
    let second = listener.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["message_id"], first["message_id"]);
    let files = list_all(&out);
    assert_eq!(files.len(), 1, "stored once: {files:?}");
    assert_eq!(
        blake3(&std::fs::read(out.join(&files[0])).unwrap()),
        blake3(&data)
    );
}

/// A peer that lies about the length: declares 10 bytes and sends 20, or declares more
/// than it sends. That stream fails, nothing lands, the connection goes on.
#[test]
fn a_lying_length_fails_the_message_only() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let mut listener = InProcess::start(&out);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = connect_pinned(&listener.ticket).await;
        for (declared, actual) in [(10u64, 20usize), (1 << 30, 1000)] {
            let header = Header {
                kind: Kind::Message,
                id: MessageId::random(),
                length: Some(declared),
                name: "liar.bin".into(),
                digest: Some(Algorithm::Blake3),
                skip_same: None,
                resume: None,
            };
            let mut bytes = header.encode();
            bytes.extend_from_slice(&random_bytes(actual));
            let code = reset_code(&conn, &bytes).await;
            assert_eq!(
                code,
                ErrorCode::LengthMismatch as u64,
                "{declared} vs {actual}"
            );
        }
        let (header, source) = message("honest.txt", b"honest", MessageId::random());
        send_message(&conn, &header, source, Mode::Bidi, &|_| {})
            .await
            .unwrap();
    });
    listener.wait_for("received", EVENT_TIMEOUT);
    let files = list_all(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with("honest.txt"));
}

/// The fingerprint a client computes for the listener equals the one it prints.
#[test]
fn printed_fingerprint_is_the_one_on_the_wire() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let listener = dir.listen(&out, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = connect_pinned(&listener.ticket).await;
        let fp = Fingerprint::of_peer(&conn).unwrap();
        assert_eq!(fp.to_string(), listener.fingerprint);
    });
}
