//! Hostile peers: slow-loris streams, connection floods, stalled and forged
//! handshakes, senders off the allow list, lying lengths on the streamed path.

use super::*;

/// Slow-loris: 1,000 streams (8 connections of 125 streams, under the stream limit) open
/// with two bytes of header and then say nothing. A normal `qp2p send` meanwhile is
/// served at once, the listener's memory stays small, and after `--header-timeout`
/// every silent stream is reset with HEADER_TIMEOUT while its connection goes on.
#[test]
fn slow_loris_streams_are_reset_and_others_served() {
    const STREAMS: usize = 1000;
    const PER_CONNECTION: usize = 125;
    const DEADLINE: Duration = Duration::from_secs(5);
    let t = TestDir::new();
    let out = t.mkdir("out");
    let file = t.write("src/normal.txt", b"served while 1000 streams hang");
    let mut l = t.listen(&out, &["--header-timeout", "5s"]);
    let (addr, rules) = (addr_of(&l), pinned(&l));
    let rt = runtime();
    let endpoint = {
        let _in_runtime = rt.enter();
        client_on("127.0.0.1")
    };
    let (first_opened, conns, streams) = rt.block_on(async {
        let mut conns = Vec::new();
        for _ in 0..STREAMS / PER_CONNECTION {
            conns.push(endpoint.connect(addr, rules.clone()).await.unwrap());
        }
        let first_opened = Instant::now();
        let mut streams = Vec::new();
        for conn in &conns {
            for _ in 0..PER_CONNECTION {
                let (mut send, recv) = conn.open_bi().await.unwrap();
                // A stream exists for the peer once a byte of it is sent.
                send.write_all(b"QP").await.unwrap();
                streams.push((send, recv));
            }
        }
        (first_opened, conns, streams)
    });
    assert_eq!(streams.len(), STREAMS);

    let started = Instant::now();
    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    let took = started.elapsed();
    r.assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
    assert!(
        took < Duration::from_secs(2),
        "a normal send took {took:?} beside 1000 silent streams\n{r}"
    );
    assert!(
        first_opened.elapsed() < DEADLINE,
        "the machine is too slow to tell: the silent streams may have been reset already"
    );
    let rss = rss_kib(l.pid());
    assert!(
        rss < RSS_LIMIT_KIB,
        "listener uses {rss} KiB with 1000 silent streams"
    );

    let resets = rt.block_on(async {
        let waits = streams.into_iter().map(|(send, mut recv)| async move {
            let outcome = tokio::time::timeout(DEADLINE * 3, recv.read_to_end(64)).await;
            drop(send);
            match outcome {
                Ok(Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)))) => {
                    Ok((code.into_inner(), Instant::now()))
                }
                other => Err(format!("{other:?}")),
            }
        });
        join_all(waits).await
    });
    for reset in &resets {
        let (code, at) = reset.as_ref().expect("every silent stream is reset");
        assert_eq!(*code, ErrorCode::HeaderTimeout as u64);
        assert!(
            *at >= first_opened + DEADLINE,
            "a stream was reset {:?} after it opened, before the deadline",
            *at - first_opened
        );
    }
    // The connections themselves go on: a valid message on one of them is stored.
    rt.block_on(async {
        let h = header("after.txt", Some(5));
        let source = Source::pipe(std::io::Cursor::new(b"after".to_vec()));
        send_message(&conns[0], &h, source, Mode::Bidi, &|_| {})
            .await
            .expect("the connection survives its silent streams");
    });
    l.wait_for("received", EVENT_TIMEOUT);
    l.assert_running();
    // 1000 resets, one warning: the rest are counted for the next one, not printed.
    let warnings = l.stderr_text().matches("no header within").count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} header-timeout warnings for 1000 silent streams\n{}",
        l.describe()
    );
}

/// Makes `n` handshakes at once from `ip`; returns the connections that were accepted,
/// how many were refused with CONNECTION_REFUSED, and any other outcome.
async fn flood(
    ip: &str,
    n: usize,
    addr: SocketAddr,
    rules: &TrustRules,
) -> (Endpoint, Vec<quinn::Connection>, usize, Vec<String>) {
    let endpoint = client_on(ip);
    let results = join_all((0..n).map(|_| endpoint.connect(addr, rules.clone()))).await;
    let (mut held, mut refused, mut other) = (Vec::new(), 0, Vec::new());
    for result in results {
        match result {
            Ok(conn) => held.push(conn),
            Err(ConnectError::Lost(quinn::ConnectionError::ConnectionClosed(c)))
                if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                refused += 1
            }
            Err(e) => other.push(e.to_string()),
        }
    }
    (endpoint, held, refused, other)
}

/// A connection flood: 500 handshakes at once from one address get 16 connections
/// (`--max-connections-per-ip`) and 484 refusals with CONNECTION_REFUSED, while a
/// normal sender from another address is served; then four more addresses fill the
/// listener's `--max-connections` and are refused past it. Memory stays bounded, and
/// once the flood is gone a sender is served again.
#[test]
fn connection_flood_is_refused_past_the_limits() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let file = t.write("src/normal.txt", b"served during a flood");
    let mut l = t.listen(
        &out,
        &["--max-connections", "40", "--max-connections-per-ip", "16"],
    );
    let (addr, rules) = (addr_of(&l), pinned(&l));
    let rt = runtime();

    let (_e1, held, refused, other) = rt.block_on(flood("127.0.0.2", 500, addr, &rules));
    assert!(other.is_empty(), "unexpected outcomes: {other:?}");
    assert_eq!(held.len(), 16, "connections accepted from one address");
    assert_eq!(refused, 484);

    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    r.assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
    // The sender's connection is closed; give the listener a moment to let it go.
    thread::sleep(Duration::from_millis(300));

    let mut more = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for ip in ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        let (endpoint, conns, no, other) = rt.block_on(flood(ip, 16, addr, &rules));
        assert!(other.is_empty(), "unexpected outcomes: {other:?}");
        accepted += conns.len();
        refused += no;
        more.push((endpoint, conns));
    }
    assert_eq!(accepted + refused, 64);
    assert!(
        (20..=24).contains(&accepted),
        "{accepted} accepted with 16 held and a limit of 40"
    );
    let rss = rss_kib(l.pid());
    assert!(
        rss < RSS_LIMIT_KIB,
        "listener uses {rss} KiB after the flood"
    );
    let logs = l.stderr_text();
    assert!(logs.contains("refusing connections"), "{}", l.describe());

    drop(held);
    drop(more);
    thread::sleep(Duration::from_millis(300));
    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    r.assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
    l.assert_running();
}

/// A handshake that starts and never finishes (one replayed Initial packet, then
/// silence) holds its connection slot only until `--handshake-timeout`: with room for
/// one connection, a normal sender gets in once it has passed (its refusals are
/// retried within the retry budget).
#[test]
fn stalled_handshake_is_dropped_after_the_deadline() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let file = t.write("src/normal.txt", b"after a stalled handshake");
    let mut l = t.listen(
        &out,
        &["--max-connections", "1", "--handshake-timeout", "2s"],
    );
    // Replay a real client's Initial from a socket that never answers.
    let rt = runtime();
    let initial = capture_initial(&rt);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.send_to(&initial, addr_of(&l)).unwrap();
    let stalled_at = Instant::now();
    thread::sleep(Duration::from_millis(200));

    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    r.assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
    assert!(
        stalled_at.elapsed() >= Duration::from_secs(2),
        "served before the stalled handshake was dropped: the limit did not hold\n{}",
        l.describe()
    );
    let logs = l.stderr_text();
    assert!(
        logs.contains("handshake not completed within 2000ms"),
        "{}",
        l.describe()
    );
    assert!(logs.contains("refusing connections"), "{}", l.describe());
}

/// A real client's first packet (its Initial), captured on a socket that never
/// answers: replayed from another such socket, it starts a handshake that never ends,
/// as from a forged source address.
fn capture_initial(rt: &tokio::runtime::Runtime) -> Vec<u8> {
    let fake = UdpSocket::bind("127.0.0.1:0").unwrap();
    fake.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    rt.block_on(async {
        let endpoint = client_on("127.0.0.1");
        let target = fake.local_addr().unwrap();
        let dial = endpoint.connect(target, TrustRules::any());
        let capture = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 2048];
            let (n, _) = fake.recv_from(&mut buf).expect("the client's Initial");
            buf.truncate(n);
            buf
        });
        tokio::select! {
            packet = capture => packet.unwrap(),
            r = dial => panic!("the dial ended first: {:?}", r.map(|_| ())),
        }
    })
}

/// Handshakes from forged source addresses (replayed Initials from sockets that never
/// answer) do not take the slots a real sender needs: past half of a limit a new
/// connection must answer a Retry first, which only a real receiver can. Without it,
/// two forged handshakes would hold both slots for the 30 s handshake timeout.
#[test]
fn forged_handshakes_do_not_hold_the_slots_past_half_a_limit() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let file = t.write("src/real.txt", b"a real sender");
    let mut l = t.listen_args(&[
        "--json",
        "--ephemeral",
        "-vv",
        "listen",
        "--bind",
        "127.0.0.1:0",
        "--out",
        path_str(&out),
        "--max-connections-per-ip",
        "2",
        "--handshake-timeout",
        "30s",
    ]);
    let rt = runtime();
    let forged: Vec<Vec<u8>> = (0..3).map(|_| capture_initial(&rt)).collect();
    let silent: Vec<UdpSocket> = forged
        .iter()
        .map(|initial| {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.send_to(initial, addr_of(&l)).unwrap();
            socket
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = t.send(&["--retry-for", "5s", l.ticket.as_str(), path_str(&file)]);
    r.assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
    let logs = l.stderr_text();
    assert!(
        logs.contains("asking for address validation"),
        "{}",
        l.describe()
    );
    drop(silent);
}

/// `--allow`: a sender not on the list never gets a stream accepted. It is refused in
/// the handshake (logged with -vv), whatever it tries to send right after; nothing is
/// stored and no message event is reported.
#[test]
fn allow_list_refuses_strangers_before_any_stream() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let friend = t.stranger_fingerprint();
    let mut l = t.listen(&out, &["--allow", friend.as_str(), "-vv"]);
    let (addr, rules) = (addr_of(&l), pinned(&l));
    let rt = runtime();
    rt.block_on(async {
        let endpoint = client_on("127.0.0.1");
        match endpoint.connect(addr, rules).await {
            Err(e) => assert!(matches!(e, ConnectError::IdentityRejected(_)), "{e}"),
            Ok(conn) => {
                // TLS 1.3: the client is done first, the listener's verdict on its
                // certificate follows. Try to send before it arrives.
                let h = header("intruder.txt", Some(5));
                let source = Source::pipe(std::io::Cursor::new(b"hello".to_vec()));
                let sent = send_message(&conn, &h, source, Mode::Bidi, &|_| {}).await;
                assert!(sent.is_err(), "a stranger's message was acknowledged");
                let reason = conn.closed().await;
                assert!(
                    matches!(
                        qp2p::net::endpoint::classify(reason.clone()),
                        ConnectError::IdentityRejected(_)
                    ),
                    "{reason}"
                );
            }
        }
    });
    let period = Instant::now() + Duration::from_secs(1);
    while let Some(ev) = l.next_event(period.saturating_duration_since(Instant::now())) {
        assert!(
            ev["event"] != "received" && ev["event"] != "transfer_failed",
            "a stranger's stream was served: {ev}"
        );
    }
    assert_eq!(list_all(&out), Vec::<PathBuf>::new());
    assert!(
        l.stderr_text().contains("sender refused: peer fingerprint"),
        "{}",
        l.describe()
    );
    l.assert_running();
}

/// Lies the wire tests do not cover: more than declared on the streamed path (over
/// 64 KiB), an unknown length over `--max-size`, and a declared length larger than the
/// free space of DIR (refused with NO_SPACE before any payload). Each fails its stream
/// only; an honest message on the same connection is stored.
#[test]
fn lying_lengths_on_the_streamed_path_fail_only_their_stream() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let limited = t.listen(&out, &["--max-size", "1MiB"]);
    let mut unlimited = t.listen(&out, &[]);
    let rt = runtime();
    let honest = random_bytes(100_000);
    rt.block_on(async {
        let endpoint = client_on("127.0.0.1");
        let conn = endpoint
            .connect(addr_of(&limited), pinned(&limited))
            .await
            .unwrap();
        let mut longer = header("longer.bin", Some(100_000)).encode();
        longer.extend_from_slice(&random_bytes(150_000));
        assert_eq!(
            reset_code(&conn, &longer).await,
            ErrorCode::LengthMismatch as u64,
            "150000 bytes sent, 100000 declared"
        );
        let mut unknown = header("unknown.bin", None).encode();
        unknown.extend_from_slice(&random_bytes(2 * MIB));
        assert_eq!(
            reset_code(&conn, &unknown).await,
            ErrorCode::TooLarge as u64,
            "unknown length over --max-size"
        );

        let conn = endpoint
            .connect(addr_of(&unlimited), pinned(&unlimited))
            .await
            .unwrap();
        let mut huge = header("huge.bin", Some(1 << 62)).encode();
        huge.extend_from_slice(b"a little");
        assert_eq!(
            reset_code(&conn, &huge).await,
            ErrorCode::NoSpace as u64,
            "4 EiB declared"
        );
        let h = header("honest.bin", Some(honest.len() as u64));
        let source = Source::pipe(std::io::Cursor::new(honest.clone()));
        send_message(&conn, &h, source, Mode::Bidi, &|_| {})
            .await
            .expect("the connection goes on");
    });
    let ev = unlimited.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(digest(&ev), sha256(&honest), "a version 1 header: SHA-256");
    assert_eq!(list_files(&out), vec![PathBuf::from("honest.bin")]);
}
