//! Resume (issue 18): a file whose transfer broke off is continued where the
//! listener's partial copy ends, through the loopback fault relay, which counts the
//! bytes that cross it. Each test bounds what crossed towards the listener, over every
//! try, by 1.2 × the file, and checks that the file landed once, verified, with no
//! partial left in DIR.
//!
//! Figures (the relay's byte counts) are printed on stderr: `cargo test --test tests
//! resume_ -- --nocapture` shows them.
//!
//! The files are the 256 MiB where the bound is checked (a few seconds per
//! test in the debug build, whose dependencies are optimised), 32 MiB elsewhere.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use qp2p::net::framing::resume::{Answer, Held, Offer, Start, ANSWER_LEN, HEAD_LEN, START_LEN};
use qp2p::net::framing::{ErrorCode, Header, Kind, MessageId};
use qp2p::{Algorithm, Endpoint, Identity, TransportOptions};

use crate::util::relay::{Dir, Relay};
use crate::util::server::{connect_pinned, InProcess, Options};
use crate::util::{
    blake3_file, list_all, path_str, random_bytes, write_random, Listener, Outcome, Proc, TestDir,
    EVENT_TIMEOUT, MIB,
};

const SIZE: usize = 256 * MIB;
/// Where no bound is checked (the source changed, an expired partial): small.
const SMALL: usize = 32 * MIB;
const SIGKILL: i32 = 9;

/// `qp2p --json send` with the test home's own identity (not `--ephemeral`: a sender
/// run again must be the same sender), through `relay` to `l`.
fn spawn_send(t: &TestDir, l: &Listener, relay: &Relay, file: &Path) -> Proc {
    let mut cmd = t.cmd();
    let ticket = format!("{}@{}", l.fingerprint, relay.addr());
    cmd.args([
        "--json",
        "send",
        "--idle-timeout",
        "2s",
        "--retry-for",
        "60s",
    ]);
    cmd.args([ticket.as_str(), path_str(file)]);
    cmd.stdin(Stdio::null());
    Proc::spawn(cmd)
}

/// Bytes that crossed `relay` towards the listener.
fn up(relay: &Relay) -> u64 {
    relay.counters(Dir::ToServer).forwarded_bytes
}

/// Waits until half the file crossed `relay` while `sender` runs.
fn half_way(relay: &Relay, sender: &mut Proc, size: usize) {
    let half = relay.wait_until(Dir::ToServer, Duration::from_secs(60), |c| {
        c.forwarded_bytes >= (size / 2) as u64
    });
    assert!(
        half && sender.wait_timeout(Duration::ZERO).is_none(),
        "the transfer was not under way\n{}",
        sender.stderr_text()
    );
}

/// A first sender killed at half way; returns once the listener noticed (at its idle
/// timeout) and kept what arrived.
fn first_try_killed_half_way(
    t: &TestDir,
    l: &mut Listener,
    relay: &Relay,
    file: &Path,
    size: usize,
) {
    let mut first = spawn_send(t, l, relay, file);
    half_way(relay, &mut first, size);
    first.signal(SIGKILL);
    let _ = first.wait_timeout(Duration::from_secs(10));
    l.wait_for("transfer_failed", EVENT_TIMEOUT);
}

/// The sender succeeded with the file's digest.
fn sent_ok(r: &Outcome, digest: &str, size: usize) {
    r.assert_code(0);
    let sent = r.one("sent");
    assert_eq!(sent["bytes"], size as u64, "{r}");
    assert_eq!(sent["blake3"], digest, "{r}");
}

/// DIR holds `name` once, with `digest`, and nothing else: no partial folder.
fn landed_once(out: &Path, name: &str, digest: &str) {
    assert_eq!(
        list_all(out),
        vec![Path::new(name).to_path_buf()],
        "DIR must hold the file once and no partial"
    );
    assert_eq!(blake3_file(&out.join(name)), digest, "stored file differs");
}

/// The bound of the issue: what crossed in all tries is at most 1.2 × the file.
fn within_bound(what: &str, crossed: u64, size: usize) {
    let ratio = crossed as f64 / size as f64;
    eprintln!("{what}: {crossed} bytes crossed the relay for a {size}-byte file ({ratio:.3} ×)");
    assert!(
        ratio <= 1.2,
        "{what}: {ratio:.3} × the file crossed the relay"
    );
}

/// A black-out at half way, longer than the 2 s idle timeout of both ends: the
/// sender's retry in the same run resumes.
#[test]
fn resume_black_out_half_way_sends_only_the_rest() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, digest) = t.random_file("src/big.bin", SIZE);
    let l = t.listen(&out, &["--idle-timeout", "2s"]);
    let relay = Relay::delayed_to(&l.addr, Duration::from_millis(5));
    let mut sender = spawn_send(&t, &l, &relay, &file);
    half_way(&relay, &mut sender, SIZE);
    relay.black_hole(true);
    thread::sleep(Duration::from_secs(5));
    relay.black_hole(false);
    let r = sender.finish(Duration::from_secs(90));
    sent_ok(&r, &digest, SIZE);
    assert!(r.one("sent")["retries"].as_u64() >= Some(1), "{r}");
    landed_once(&out, "big.bin", &digest);
    assert!(r.one("sent")["resumed_from"].as_u64() > Some(0), "{r}");
    within_bound("black-out half way", up(&relay), SIZE);
}

/// The sender killed at half way and run again at once, both ends with a 30 s idle
/// timeout: the listener's stream of the first run still holds the partial when the
/// second run's offer arrives (nothing told the listener the first run died). It
/// receives nothing, so it is taken over, and the second run resumes.
#[test]
fn resume_rerun_takes_over_the_partial_of_a_try_the_listener_thinks_alive() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, digest) = t.random_file("src/big.bin", SIZE);
    let mut l = t.listen(&out, &["--idle-timeout", "30s"]);
    let relay = Relay::delayed_to(&l.addr, Duration::from_millis(5));
    let spawn = || {
        let mut cmd = t.cmd();
        let ticket = format!("{}@{}", l.fingerprint, relay.addr());
        cmd.args([
            "--json",
            "send",
            "--idle-timeout",
            "30s",
            "--retry-for",
            "60s",
        ]);
        cmd.args([ticket.as_str(), path_str(&file)]);
        cmd.stdin(Stdio::null());
        Proc::spawn(cmd)
    };
    let mut first = spawn();
    half_way(&relay, &mut first, SIZE);
    first.signal(SIGKILL);
    let _ = first.wait_timeout(Duration::from_secs(10));
    let started = std::time::Instant::now();
    let r = spawn().finish(Duration::from_secs(90));
    sent_ok(&r, &digest, SIZE);
    assert!(r.one("sent")["resumed_from"].as_u64() > Some(0), "{r}");
    let failed = l.wait_for("transfer_failed", EVENT_TIMEOUT);
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("took its partial over"),
        "{failed}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "not at the idle timeout"
    );
    landed_once(&out, "big.bin", &digest);
    within_bound(
        "run again while the first run holds the partial",
        up(&relay),
        SIZE,
    );
}

/// The sender killed at half way and run again: the second run resumes.
#[test]
fn resume_sender_killed_half_way_and_run_again() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, digest) = t.random_file("src/big.bin", SIZE);
    let mut l = t.listen(&out, &["--idle-timeout", "2s"]);
    let relay = Relay::delayed_to(&l.addr, Duration::from_millis(5));
    first_try_killed_half_way(&t, &mut l, &relay, &file, SIZE);
    let r = spawn_send(&t, &l, &relay, &file).finish(Duration::from_secs(90));
    sent_ok(&r, &digest, SIZE);
    landed_once(&out, "big.bin", &digest);
    assert!(r.one("sent")["resumed_from"].as_u64() > Some(0), "{r}");
    within_bound("sender killed half way", up(&relay), SIZE);
}

/// The listener killed at half way and started again on the same port, DIR and
/// identity: the sender's retry in the same run resumes from what the first listener
/// wrote. What it had received but not yet written (the stream's receive window, the
/// chunks on their way to the disk) dies with it: some MiB, whatever the file's size.
#[test]
fn resume_listener_killed_half_way_and_restarted() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, digest) = t.random_file("src/big.bin", SIZE);
    let identity = t.path().join("listener.key");
    let listen = |bind: &str| {
        let args = [
            "--json",
            "--identity",
            path_str(&identity),
            "listen",
            "--bind",
            bind,
            "--out",
            path_str(&out),
            "--idle-timeout",
            "2s",
        ];
        t.listen_args(&args)
    };
    let mut l = listen("127.0.0.1:0");
    let relay = Relay::delayed_to(&l.addr, Duration::from_millis(5));
    let mut sender = spawn_send(&t, &l, &relay, &file);
    half_way(&relay, &mut sender, SIZE);
    l.signal(SIGKILL);
    let _ = l.wait_exit(Duration::from_secs(10));
    let first = up(&relay);
    assert!(
        out.join(".qp2p-partial").is_dir(),
        "the partial must survive the listener"
    );
    let _l2 = listen(&l.addr);
    let r = sender.finish(Duration::from_secs(90));
    sent_ok(&r, &digest, SIZE);
    landed_once(&out, "big.bin", &digest);
    eprintln!(
        "listener killed half way: {first} bytes before the kill, {} after",
        up(&relay) - first
    );
    assert!(r.one("sent")["resumed_from"].as_u64() > Some(0), "{r}");
    within_bound("listener killed half way", up(&relay), SIZE);
}

/// The source modified between two tries: the second starts from zero, says so, and
/// the new content lands.
#[test]
fn resume_source_changed_between_tries_starts_from_zero() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, _) = t.random_file("src/big.bin", SMALL);
    let mut l = t.listen(&out, &["--idle-timeout", "2s"]);
    let relay = Relay::delayed_to(&l.addr, Duration::from_millis(5));
    first_try_killed_half_way(&t, &mut l, &relay, &file, SMALL);
    thread::sleep(Duration::from_millis(20));
    let digest = write_random(&file, SMALL);
    let before = up(&relay);
    let r = spawn_send(&t, &l, &relay, &file).finish(Duration::from_secs(90));
    sent_ok(&r, &digest, SMALL);
    assert!(
        r.stderr.contains("changed since the last try"),
        "the sender must say it starts over\n{r}"
    );
    // The first content's partial stays for a try of its own (two files sent
    // alternately under one name), until it expires or a third content replaces it.
    let names = list_all(&out);
    let (partial, landed): (Vec<_>, Vec<_>) =
        names.iter().partition(|n| n.starts_with(".qp2p-partial"));
    assert_eq!(landed, [Path::new("big.bin")], "{names:?}");
    assert_eq!(
        partial.len(),
        3,
        "the folder, one .part, one .meta: {names:?}"
    );
    assert_eq!(
        blake3_file(&out.join("big.bin")),
        digest,
        "stored file differs"
    );
    let second = up(&relay) - before;
    eprintln!("source changed: the second try sent {second} bytes");
    assert!(
        second >= SMALL as u64,
        "the second try must send the whole file"
    );
}

/// A power loss simulated: the partial's sidecar was written on another boot and
/// counts 1 MiB synced, while the file is longer and holds garbage past that (the
/// size grew, the data never reached the disk). The next try resumes from the synced
/// 1 MiB, not from the file's length, and the right file lands.
#[test]
fn resume_after_a_simulated_power_loss_trusts_only_the_synced_bytes() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, digest) = t.random_file("src/big.bin", SMALL);
    let mut l = t.listen(&out, &["--idle-timeout", "2s"]);
    let relay = Relay::delayed_to(&l.addr, Duration::from_millis(5));
    let mut first = spawn_send(&t, &l, &relay, &file);
    half_way(&relay, &mut first, SMALL);
    first.signal(SIGKILL);
    let _ = first.wait_timeout(Duration::from_secs(10));
    l.wait_for("transfer_failed", EVENT_TIMEOUT);
    l.signal(SIGKILL);
    let _ = l.wait_exit(Duration::from_secs(10));
    let folder = out.join(".qp2p-partial");
    let with = |ext: &str| {
        std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap()
    };
    let (part, meta) = (with("part"), with("meta"));
    let len = std::fs::metadata(&part).unwrap().len();
    assert!(len > 2 * MIB as u64, "{len} bytes held");
    // Garbage where the data never arrived, and a sidecar from another boot.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
        f.seek(SeekFrom::Start(MIB as u64 + 4096)).unwrap();
        f.write_all(&vec![0u8; 64 * 1024]).unwrap();
    }
    let text = std::fs::read_to_string(&meta).unwrap();
    let keep: String = text
        .lines()
        .filter(|l| !l.starts_with("held ") && !l.starts_with("boot "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(keep, text, "the sidecar counts what is synced: {text}");
    std::fs::write(&meta, format!("{keep}held {MIB}\nboot another-boot\n")).unwrap();
    let l2 = t.listen(&out, &["--idle-timeout", "2s"]);
    let relay = Relay::to(&l2.addr);
    let r = spawn_send(&t, &l2, &relay, &file).finish(Duration::from_secs(90));
    sent_ok(&r, &digest, SMALL);
    assert_eq!(r.one("sent")["resumed_from"], MIB as u64, "{r}");
    landed_once(&out, "big.bin", &digest);
}

/// A partial older than `--partial-ttl` is removed when the listener starts, and
/// counted as freed.
#[test]
fn resume_expired_partial_is_removed_and_counted() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, _) = t.random_file("src/big.bin", SMALL);
    let mut l = t.listen(&out, &["--idle-timeout", "2s"]);
    let relay = Relay::delayed_to(&l.addr, Duration::from_millis(5));
    first_try_killed_half_way(&t, &mut l, &relay, &file, SMALL);
    l.signal(SIGKILL);
    let _ = l.wait_exit(Duration::from_secs(10));
    let held: u64 = std::fs::read_dir(out.join(".qp2p-partial"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(held > 0, "a partial was kept");
    thread::sleep(Duration::from_millis(1500));
    let mut l2 = t.listen(&out, &["--partial-ttl", "1s"]);
    let ev = l2.wait_for("partials_expired", EVENT_TIMEOUT);
    assert_eq!(ev["count"], 1, "{ev}");
    assert_eq!(ev["bytes"], held, "{ev}");
    assert!(list_all(&out).is_empty(), "{:?}", list_all(&out));
}

/// A sender built on the library that lies: it claims to continue from what the
/// listener holds, but its start's digest is not that of the held bytes. Refused with
/// PREFIX_MISMATCH, nothing linked, the partial discarded.
#[test]
fn resume_lying_sender_is_refused_and_the_partial_discarded() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut server = InProcess::with(
        &out,
        Options {
            partials: Some(Duration::from_secs(3600)),
            ..Options::default()
        },
    );
    let len = 4 * MIB as u64;
    let data = random_bytes(len as usize);
    let header = Header {
        kind: Kind::Message,
        id: MessageId::random(),
        length: Some(len),
        name: "lie.bin".into(),
        digest: Some(Algorithm::Blake3),
        skip_same: None,
        resume: Some(Offer {
            mtime_ns: 1,
            head: [7; 32],
        }),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = connect_pinned(&server.ticket).await;
        // First try: half of the file, then this sender gives up.
        first_try_given_up(&conn, &header, &data[..len as usize / 2]).await;
        let mut buf = [0u8; ANSWER_LEN];
        let failed = server.wait_for("failed", EVENT_TIMEOUT);
        assert!(
            failed["error"].as_str().unwrap().contains("cancelled"),
            "{failed}"
        );
        assert!(out.join(".qp2p-partial").is_dir(), "the partial is kept");

        // Second try: the listener holds a prefix; this sender claims it continues
        // from there, with a digest that is not that of the held bytes.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&header.encode()).await.unwrap();
        recv.read_exact(&mut buf).await.unwrap();
        let answer = Answer::decode(&buf).unwrap();
        assert_eq!(answer.status, Held::Prefix, "{answer:?}");
        assert!(answer.held > 0 && answer.held <= len / 2, "{answer:?}");
        let lie = Start {
            from: answer.held,
            prefix: [9; 32],
        };
        send.write_all(&lie.encode()).await.unwrap();
        let written = send.write_all(&data[answer.held as usize..]).await;
        let _ = send.finish();
        let code = match written {
            Err(quinn::WriteError::Stopped(code)) => code.into_inner(),
            _ => {
                match tokio::time::timeout(Duration::from_secs(15), recv.read_to_end(1024)).await {
                    Ok(Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)))) => {
                        code.into_inner()
                    }
                    other => panic!("expected a refusal, got {other:?}"),
                }
            }
        };
        assert_eq!(code, ErrorCode::PrefixMismatch as u64);
        let failed = server.wait_for("failed", EVENT_TIMEOUT);
        assert!(
            failed["error"].as_str().unwrap().contains("differs"),
            "{failed}"
        );
        conn.close(0u32.into(), b"done");
    });
    assert!(
        list_all(&out).is_empty(),
        "nothing linked, the partial discarded: {:?}",
        list_all(&out)
    );
}

/// No file lands in the partials' folder: a sender cannot plant or replace another
/// sender's partial (`--overwrite` included).
#[test]
fn resume_the_partials_folder_takes_no_files() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let src = t.write("src/x", b"planted");
    let l = t.listen(&out, &["--overwrite"]);
    let r = t.send(&[
        "--name",
        ".qp2p-partial/x.part",
        l.ticket.as_str(),
        path_str(&src),
    ]);
    r.assert_json_error(5);
    assert!(
        r.stderr.contains("reserved") || r.stderr.contains("bad name"),
        "{r}"
    );
    assert!(list_all(&out).is_empty(), "{:?}", list_all(&out));
}

/// A listener from before resume skips the offer and never answers: the sender waits
/// a bounded time (3 s), then sends the whole file, which lands.
#[test]
fn resume_a_listener_without_it_gets_the_whole_file_after_a_bounded_wait() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, digest) = t.random_file("src/old.bin", 2 * MIB);
    let mut server = InProcess::with(
        &out,
        Options {
            before_resume: true,
            ..Options::default()
        },
    );
    let r = t.send(&[server.ticket.as_str(), path_str(&file)]);
    sent_ok(&r, &digest, 2 * MIB);
    assert!(
        r.elapsed >= Duration::from_secs(3) && r.elapsed < Duration::from_secs(20),
        "{:?}",
        r.elapsed
    );
    let received = server.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(received["bytes"], 2 * MIB as u64);
    landed_once(&out, "old.bin", &digest);
}

/// The receiver's half of a late answer: a sender that did not wait for the answer
/// sends its payload from byte 0 without a start, and this payload opens exactly like
/// a start from 0 (`QP2S`, then 40 zero bytes). The listener holds a partial of it
/// from an earlier try; it must take the bytes as payload, start its partial over, and
/// land the file byte for byte.
#[test]
fn resume_late_answer_a_payload_that_looks_like_a_start_lands_whole() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let mut server = InProcess::with(
        &out,
        Options {
            partials: Some(Duration::from_secs(3600)),
            ..Options::default()
        },
    );
    let len = 4 * MIB;
    let mut data = random_bytes(len);
    data[..START_LEN].copy_from_slice(
        &Start {
            from: 0,
            prefix: [0; 32],
        }
        .encode(),
    );
    let header = Header {
        kind: Kind::Message,
        id: MessageId::random(),
        length: Some(len as u64),
        name: "looks.bin".into(),
        digest: Some(Algorithm::Blake3),
        skip_same: None,
        resume: Some(Offer {
            mtime_ns: 1,
            head: *blake3::hash(&data[..HEAD_LEN as usize]).as_bytes(),
        }),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = connect_pinned(&server.ticket).await;
        // First try, on time: half of the file, then this sender gives up.
        first_try_given_up(&conn, &header, &data[..len / 2]).await;
        server.wait_for("failed", EVENT_TIMEOUT);
        // Second try, late: the payload from byte 0 without waiting for the answer.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&header.encode()).await.unwrap();
        send.write_all(&data).await.unwrap();
        send.finish().unwrap();
        let back = tokio::time::timeout(Duration::from_secs(30), recv.read_to_end(1024))
            .await
            .expect("an answer and an ack in time")
            .expect("answer and ack");
        let answer = Answer::decode(back[..ANSWER_LEN].try_into().unwrap()).unwrap();
        assert_eq!(answer.status, Held::Prefix, "it held the first try's bytes");
        let ack = qp2p::net::framing::Ack::decode(
            &back[ANSWER_LEN..ANSWER_LEN + qp2p::net::framing::ACK_LEN],
        )
        .unwrap();
        assert_eq!(ack.bytes, len as u64);
        assert_eq!(ack.digest, *blake3::hash(&data).as_bytes());
        conn.close(0u32.into(), b"done");
    });
    let received = server.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(received["bytes"], len as u64, "{received}");
    assert_eq!(list_all(&out), [Path::new("looks.bin")]);
    assert!(
        std::fs::read(out.join("looks.bin")).unwrap() == data,
        "content differs"
    );
}

/// The sender's half of a late answer: a listener that answers the offer only after
/// the sender stopped waiting (3 s), and claims to hold a prefix. The sender has sent
/// the whole payload from byte 0 without a start, skips the late answer in front of
/// the ack, and succeeds with nothing resumed.
#[test]
fn resume_late_answer_the_sender_sends_everything_and_skips_it() {
    let t = TestDir::new();
    let (file, digest) = t.random_file("src/late.bin", 2 * MIB);
    let data = std::fs::read(&file).unwrap();
    let (ready, started) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let identity = Arc::new(Identity::ephemeral().unwrap());
            let endpoint = Endpoint::bind(
                "127.0.0.1:0".parse().unwrap(),
                identity,
                TransportOptions::default(),
                Some(qp2p::TrustRules::any()),
            )
            .unwrap();
            let ticket =
                qp2p::net::addr::ticket(&endpoint.fingerprint(), endpoint.local_addr().unwrap());
            ready.send(ticket).unwrap();
            let server = qp2p::Server::new(endpoint, qp2p::ServerConfig::unlimited());
            let serve = async {
                let incoming = server.accept().await.expect("a connection");
                let conn = incoming.accept().await.expect("handshake").conn;
                let (mut send, mut recv) = conn.accept_bi().await.expect("a stream");
                let (header, first) = qp2p::net::framing::read_header(&mut recv)
                    .await
                    .expect("header");
                assert!(header.resume.is_some(), "{header:?}");
                tokio::time::sleep(Duration::from_millis(3500)).await;
                let late = Answer {
                    status: Held::Prefix,
                    held: MIB as u64,
                };
                send.write_all(&late.encode()).await.unwrap();
                let rest = recv.read_to_end(4 * MIB).await.expect("the payload");
                let got = [&first[..], &rest[..]].concat();
                let ack = qp2p::net::framing::Ack {
                    status: qp2p::net::framing::AckStatus::Stored,
                    bytes: got.len() as u64,
                    digest: *blake3::hash(&got).as_bytes(),
                };
                send.write_all(&ack.encode()).await.unwrap();
                send.finish().unwrap();
                let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
                got
            };
            tokio::select! {
                got = serve => Some(got),
                _ = stopped => None,
            }
        })
    });
    let ticket = started.recv_timeout(Duration::from_secs(10)).unwrap();
    let r = t.send(&[ticket.as_str(), path_str(&file)]);
    let _ = stop.send(());
    let got = listener.join().unwrap();
    sent_ok(&r, &digest, 2 * MIB);
    assert_eq!(r.one("sent")["resumed_from"], 0, "{r}");
    assert!(r.elapsed >= Duration::from_secs(3), "{:?}", r.elapsed);
    let got = got.expect("the listener saw the stream end");
    assert!(
        got == data,
        "the payload is the file from byte 0, with no start"
    );
}

/// `send --no-resume`: no offer, so the listener keeps nothing of a try that broke
/// off, and the next run sends the whole file again.
#[test]
fn resume_no_resume_sends_whole_and_leaves_no_partial() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (file, digest) = t.random_file("src/big.bin", SMALL);
    let mut l = t.listen(&out, &["--idle-timeout", "2s"]);
    let relay = Relay::delayed_to(&l.addr, Duration::from_millis(5));
    let ticket = format!("{}@{}", l.fingerprint, relay.addr());
    let spawn = || {
        let mut cmd = t.cmd();
        cmd.args(["--json", "send", "--no-resume", "--idle-timeout", "2s"]);
        cmd.args([ticket.as_str(), path_str(&file)]);
        cmd.stdin(Stdio::null());
        Proc::spawn(cmd)
    };
    let mut first = spawn();
    half_way(&relay, &mut first, SMALL);
    assert!(
        !out.join(".qp2p-partial").exists(),
        "no offer, no partial kept"
    );
    first.signal(SIGKILL);
    let _ = first.wait_timeout(Duration::from_secs(10));
    l.wait_for("transfer_failed", EVENT_TIMEOUT);
    assert!(list_all(&out).is_empty(), "{:?}", list_all(&out));
    let before = up(&relay);
    let r = spawn().finish(Duration::from_secs(90));
    sent_ok(&r, &digest, SMALL);
    assert_eq!(r.one("sent")["resumed_from"], 0, "{r}");
    assert!(
        up(&relay) - before >= SMALL as u64,
        "the second run sends the whole file"
    );
    landed_once(&out, "big.bin", &digest);
}

/// A first try that breaks off: `header` with its resume offer, the listener's answer
/// (it holds nothing yet), a start from byte 0, `part` of the payload, then a reset
/// (CANCELLED) half a second later, so the listener keeps what arrived as a partial.
async fn first_try_given_up(conn: &quinn::Connection, header: &Header, part: &[u8]) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&header.encode()).await.unwrap();
    let mut buf = [0u8; ANSWER_LEN];
    recv.read_exact(&mut buf).await.unwrap();
    assert_eq!(Answer::decode(&buf).unwrap().status, Held::Nothing);
    let start = Start {
        from: 0,
        prefix: [0; 32],
    };
    send.write_all(&start.encode()).await.unwrap();
    send.write_all(part).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    send.reset(quinn::VarInt::from_u32(ErrorCode::Cancelled as u32))
        .unwrap();
}
