//! The digest: BLAKE3 by default (the value `b3sum` prints), SHA-256 with `send --digest
//! sha256`; version 1 headers (SHA-256) still taken; a listener that only speaks
//! version 1 refusing a version 2 header is told apart from any other refusal.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use qp2p::net::framing::{self, Ack, AckStatus, ErrorCode, Header, Kind, MessageId};
use qp2p::net::transfer::{send_message, Mode, Source};
use qp2p::{
    Algorithm, Endpoint, Identity, Outgoing, Pool, SendError, Sender, Server, ServerConfig,
    TransportOptions, TrustRules,
};

use crate::util::server::{connect_pinned, InProcess};
use crate::util::{
    blake3, blake3_file, digest, path_str, random_bytes, sha256, TestDir, EVENT_TIMEOUT,
};

/// `b3sum` of a file holding `abc` (the BLAKE3 test vector).
const B3SUM_ABC: &str = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";

/// By default both reports carry `"digest": "blake3"` and the value `b3sum` prints for
/// the file, on the small path and the streamed one; the human lines say `blake3 HEX`.
#[test]
fn the_default_digest_is_blake3_as_b3sum_prints_it() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let abc = t.write("src/abc.txt", b"abc");
    let (big, big_b3) = t.random_file("src/big.bin", 300_000);
    let mut l = t.listen(&out, &[]);
    let r = t.run(&[
        "--json",
        "--ephemeral",
        "send",
        &l.ticket,
        path_str(&abc),
        path_str(&big),
    ]);
    r.assert_code(0);
    let want = |name: &str| match name {
        "abc.txt" => B3SUM_ABC.to_string(),
        "big.bin" => big_b3.clone(),
        other => panic!("unexpected {other}"),
    };
    let sent = r.named("sent");
    assert_eq!(sent.len(), 2, "{r}");
    for ev in sent {
        assert_eq!(ev["digest"], "blake3", "{r}");
        assert_eq!(digest(ev), want(ev["name"].as_str().unwrap()), "{r}");
        assert!(ev.get("sha256").is_none(), "no SHA-256 computed: {ev}");
    }
    for _ in 0..2 {
        let recv = l.wait_for("received", EVENT_TIMEOUT);
        let name = recv["name"].as_str().unwrap().to_string();
        assert_eq!(recv["digest"], "blake3", "{recv}");
        assert_eq!(digest(&recv), want(&name), "{recv}");
        assert_eq!(
            blake3_file(&out.join(&name)),
            want(&name),
            "the landed file"
        );
    }
    // What the person reads.
    let again = t.write("src/again/abc.txt", b"abc");
    let r = t.run(&["--ephemeral", "send", &l.ticket, path_str(&again)]);
    r.assert_code(0);
    assert!(
        r.stderr.contains(&format!("blake3 {B3SUM_ABC}")),
        "human line names the algorithm\n{r}"
    );
}

/// `race-connect --send FILE --digest sha256`: the winner gets the file under SHA-256,
/// as `send --digest sha256` would send it; `--digest` without `--send` is a usage error.
#[test]
fn race_connect_sends_with_the_digest_asked_for() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let data = random_bytes(200_000);
    let file = t.write("src/raced.bin", &data);
    let mut l = t.listen(&out, &[]);
    let r = t.run(&[
        "--json",
        "--ephemeral",
        "race-connect",
        &l.ticket,
        "--send",
        path_str(&file),
        "--digest",
        "sha256",
    ]);
    r.assert_code(0);
    let sent = r.one("sent");
    assert_eq!(sent["digest"], "sha256", "{r}");
    assert_eq!(sent["sha256"], sha256(&data), "{r}");
    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(recv["digest"], "sha256", "{recv}");
    assert_eq!(recv["sha256"], sha256(&data), "{recv}");
    assert_eq!(std::fs::read(out.join("raced.bin")).unwrap(), data);

    let r = t.run(&[
        "--ephemeral",
        "race-connect",
        &l.ticket,
        "--digest",
        "sha256",
    ]);
    r.assert_code(2);
}

/// `send --digest sha256`: both ends hash with SHA-256 (a version 1 header), the reports
/// say so, and `--skip-same` works in either algorithm.
#[test]
fn sha256_on_request_end_to_end() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let data = random_bytes(300_000);
    let file = t.write("src/data.bin", &data);
    let mut l = t.listen(&out, &[]);
    let ticket = l.ticket.clone();
    let send = |extra: &[&str]| {
        let mut args = vec!["--json", "--ephemeral", "send", &ticket, path_str(&file)];
        args.extend_from_slice(extra);
        let r = t.run(&args);
        r.assert_code(0);
        r
    };
    let r = send(&["--digest", "sha256"]);
    let sent = r.one("sent");
    assert_eq!(sent["digest"], "sha256", "{r}");
    assert_eq!(sent["sha256"], sha256(&data), "{r}");
    assert!(sent.get("blake3").is_none(), "{r}");
    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(recv["digest"], "sha256", "{recv}");
    assert_eq!(recv["sha256"], sha256(&data), "{recv}");
    assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);

    for algorithm in ["sha256", "blake3"] {
        let r = send(&["--skip-same", "--digest", algorithm]);
        let sent = r.one("sent");
        assert_eq!(sent["already_present"], true, "{algorithm}: {r}");
        assert_eq!(sent["digest"], algorithm, "{r}");
        let want = match algorithm {
            "sha256" => sha256(&data),
            _ => blake3(&data),
        };
        assert_eq!(digest(sent), want, "{r}");
        let recv = l.wait_for("received", EVENT_TIMEOUT);
        assert_eq!(recv["already_present"], true, "{recv}");
        assert_eq!(digest(&recv), want, "{recv}");
    }
    let bad = t.run(&[
        "--ephemeral",
        "send",
        "--digest",
        "md5",
        &l.ticket,
        path_str(&file),
    ]);
    bad.assert_code(2);
}

/// A version 1 header (what qp2p before BLAKE3 sends) is stored and acked with the
/// SHA-256 of what was stored.
#[test]
fn a_version_1_header_is_stored_and_acked_with_sha256() {
    let dir = TestDir::new();
    let out = dir.mkdir("out");
    let mut listener = InProcess::start(&out);
    let data = random_bytes(100_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = connect_pinned(&listener.ticket).await;
        let header = Header {
            kind: Kind::Message,
            id: MessageId::random(),
            length: Some(data.len() as u64),
            name: "old.bin".into(),
            digest: None,
            skip_same: None,
            resume: None,
        };
        let bytes = header.encode();
        assert_eq!(bytes[4], 1, "a version 1 header");
        // The raw ack: the receiver's own SHA-256 of what it stored.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.write_all(&data).await.unwrap();
        send.finish().unwrap();
        let (ack, stored_as) = framing::read_ack(&mut recv).await.unwrap();
        assert_eq!(ack.status, AckStatus::Stored);
        assert_eq!(ack.bytes, data.len() as u64);
        assert_eq!(data_encoding::HEXLOWER.encode(&ack.digest), sha256(&data));
        assert_eq!(stored_as.as_deref(), Some("old.bin"));
        // Through the library's sender half: it hashes with SHA-256 too.
        let mut again = header.clone();
        again.id = MessageId::random();
        again.name = "old2.bin".into();
        let source = Source::pipe(std::io::Cursor::new(data.clone()));
        let sent = send_message(&conn, &again, source, Mode::Bidi, &|_| {})
            .await
            .unwrap();
        assert_eq!(sent.digest.algorithm, Algorithm::Sha256);
        assert_eq!(sent.digest.hex(), sha256(&data));
    });
    for _ in 0..2 {
        let ev = listener.wait_for("received", EVENT_TIMEOUT);
        assert_eq!(ev["digest"], "sha256", "{ev}");
        assert_eq!(digest(&ev), sha256(&data), "{ev}");
    }
    assert_eq!(std::fs::read(out.join("old.bin")).unwrap(), data);
}

/// A listener that speaks only version 1, as qp2p did before BLAKE3: it resets a stream
/// whose header has another version with UNSUPPORTED before reading on, and stores
/// (here: drops) a version 1 message, acking its SHA-256. Runs on a thread of its own
/// until the returned sender is dropped; returns its ticket.
fn version_1_listener() -> (String, tokio::sync::oneshot::Sender<()>) {
    let (ready, started) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let id = Arc::new(Identity::ephemeral().unwrap());
            let at = "127.0.0.1:0".parse().unwrap();
            let opts = TransportOptions::default();
            let endpoint = Endpoint::bind(at, id, opts, Some(TrustRules::any())).unwrap();
            let addr = endpoint.local_addr().unwrap();
            let _ = ready.send(qp2p::net::addr::ticket(&endpoint.fingerprint(), addr));
            let server = Server::new(endpoint, ServerConfig::default());
            let serve = async {
                while let Some(incoming) = server.accept().await {
                    tokio::spawn(async move {
                        let Ok(peer) = incoming.accept().await else {
                            return;
                        };
                        while let Ok((send, recv)) = peer.conn.accept_bi().await {
                            tokio::spawn(serve_version_1(send, recv));
                        }
                    });
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = stopped => {}
            }
        });
    });
    let ticket = started.recv_timeout(Duration::from_secs(10)).unwrap();
    (ticket, stop)
}

async fn serve_version_1(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let unsupported = quinn::VarInt::from_u32(ErrorCode::Unsupported as u32);
    let mut prefix = [0u8; 8];
    if recv.read_exact(&mut prefix).await.is_err() {
        return;
    }
    if &prefix[..4] != b"QP2P" || prefix[4] != 1 {
        let _ = recv.stop(unsupported);
        let _ = send.reset(unsupported);
        return;
    }
    let mut body = vec![0u8; u16::from_be_bytes([prefix[6], prefix[7]]) as usize];
    if recv.read_exact(&mut body).await.is_err() {
        return;
    }
    let Ok(payload) = recv.read_to_end(1 << 24).await else {
        return;
    };
    let ack = Ack {
        status: AckStatus::Stored,
        bytes: payload.len() as u64,
        digest: Algorithm::Sha256.digest(&payload).bytes,
    };
    let _ = send.write_all(&ack.encode()).await;
    let _ = send.finish();
    let _ = send.stopped().await;
}

/// A sender of version 2 headers against a listener that speaks only version 1 gets a
/// clear error (the library's [`SendError::OlderPeer`], the command line's one line
/// with what to do, exit 5), not an integrity failure; `--digest sha256` gets through.
#[test]
fn an_older_listener_refuses_blake3_clearly_and_takes_sha256() {
    let (ticket, _stop) = version_1_listener();
    let t = TestDir::new();
    let data = random_bytes(5000);
    let file = t.write("src/f.bin", &data);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let target: qp2p::Target = ticket.parse().unwrap();
        let addr = target.resolve().await.unwrap()[0];
        let id = Arc::new(Identity::ephemeral().unwrap());
        let pool = Pool::new(Endpoint::client(id, TransportOptions::default()).unwrap());
        let rules = TrustRules::pinned_to(target.expect.unwrap());
        let message = || Outgoing::File {
            path: file.clone(),
            name: "f.bin".into(),
            len: data.len() as u64,
        };
        let sender = Sender::new(pool.clone(), addr, rules.clone());
        let err = sender.send(message(), &()).await.unwrap_err();
        assert!(
            matches!(err, SendError::OlderPeer(Algorithm::Blake3)),
            "{err:?}"
        );
        let sender = sender.with_digest(Algorithm::Sha256);
        let done = sender.send(message(), &()).await.unwrap();
        assert_eq!(done.sent.digest.hex(), sha256(&data));
        sender.close(false).await;
    });

    let r = t.run(&["--ephemeral", "send", &ticket, path_str(&file)]);
    r.assert_code(5);
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("older qp2p"))
        .collect();
    assert_eq!(lines.len(), 1, "one line says why\n{r}");
    assert!(lines[0].contains("blake3"), "{r}");
    assert!(lines[0].contains("--digest sha256"), "and what to do\n{r}");
    assert!(!r.stderr.contains("integrity"), "{r}");

    let r = t.run(&[
        "--json",
        "--ephemeral",
        "send",
        "--digest",
        "sha256",
        &ticket,
        path_str(&file),
    ]);
    r.assert_code(0);
    let sent = r.one("sent");
    assert_eq!(sent["digest"], "sha256", "{r}");
    assert_eq!(sent["sha256"], sha256(&data), "{r}");
}

/// `bench --peer` against a listener that speaks only version 1: the hashed mode (BLAKE3,
/// version 2) ends the run with a line that says why, without the advice meant for
/// `send`.
#[test]
fn bench_against_an_older_listener_says_the_hashed_mode_needs_a_newer_one() {
    let (ticket, _stop) = version_1_listener();
    let t = TestDir::new();
    let r = t.run(&[
        "--ephemeral",
        "bench",
        "--peer",
        &ticket,
        "--scenario",
        "throughput",
        "--size",
        "1MiB",
    ]);
    r.assert_code(5);
    assert!(
        r.stderr
            .contains("does not take blake3 digests: the hashed mode needs a listener"),
        "{r}"
    );
    assert!(!r.stderr.contains("--digest"), "{r}");
}
