//! Hardening: what hostile peers, bad input and full disks can do to `qp2p`, and what
//! they cannot. Hostile peers are small clients built on the net module; everything runs
//! on loopback (other peer addresses are other addresses of 127.0.0.0/8), each test is
//! bounded in count and time, and every process and mount is undone by a guard.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use qp2p::net::framing::{ErrorCode, Header, Kind, MessageId};
use qp2p::net::transfer::{send_message, Mode, Source};
use qp2p::{ConnectError, Endpoint, Identity, TransportOptions, TrustRules};

use crate::util::{
    blake3_file, digest, list_all, list_files, path_str, random_bytes, reset_code, sha256,
    Listener, TestDir, EVENT_TIMEOUT, MIB, RUN_TIMEOUT,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client endpoint with a fresh identity on `ip` (any port). Handshakes may queue
/// behind hundreds of others here, so one attempt may take long.
fn client_on(ip: &str) -> Endpoint {
    let id = Arc::new(Identity::ephemeral().unwrap());
    let options = TransportOptions {
        connect_timeout: Duration::from_secs(20),
        ..TransportOptions::default()
    };
    Endpoint::bind(SocketAddr::new(ip.parse().unwrap(), 0), id, options, None).unwrap()
}

fn addr_of(l: &Listener) -> SocketAddr {
    l.addr.parse().unwrap()
}

fn pinned(l: &Listener) -> TrustRules {
    TrustRules::pinned_to(l.fingerprint.parse().unwrap())
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The most memory a listener may use under attack (it uses ~10 MiB idle).
const RSS_LIMIT_KIB: u64 = 64 * 1024;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn mkfifo(path: &Path) -> PathBuf {
    let c = std::ffi::CString::new(path_str(path)).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
    path.to_path_buf()
}

/// Free bytes on the filesystem of `path`.
fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path_str(path)).unwrap();
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: valid path, and `st` is writable memory that statvfs fills on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    // SAFETY: statvfs returned 0.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    free
}

fn header(name: &str, length: Option<u64>) -> Header {
    Header {
        kind: Kind::Message,
        id: MessageId::random(),
        length,
        name: name.to_string(),
        digest: None,
        skip_same: None,
        resume: None,
    }
}

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

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(Tmpfs(path.to_path_buf()))
        } else {
            Err(format!("mount exited with {status}"))
        }
    }

    /// Mounts one, or says why the test is skipped: not root, or no tmpfs here.
    fn mount_or_skip(path: &Path, size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: not root (mounting a tmpfs needs root)");
            return None;
        }
        Tmpfs::mount(path, size)
            .map_err(|e| eprintln!("skipped: cannot mount a tmpfs: {e}"))
            .ok()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk: DIR is an 8 MiB tmpfs. A 16 MiB file is refused before its payload
/// ("not enough space", exit 5); 16 MiB from stdin (length unknown) fills the disk and
/// fails mid-way (exit 5). Nothing is left behind, the space is free again, and the
/// listener goes on to store a small file. Needs root (to mount); skipped otherwise.
#[test]
fn full_disk_fails_the_transfer_cleanly() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (big, _) = t.random_file("src/big.bin", 16 * MIB);
    let small = t.write("src/small.txt", b"still room for this");
    let Some(_tmpfs) = Tmpfs::mount_or_skip(&out, "8m") else {
        return;
    };
    let empty = free_bytes(&out);
    let mut l = t.listen(&out, &[]);

    let r = t.send(&[l.ticket.as_str(), path_str(&big)]);
    r.assert_json_error(5);
    let message = r.events.last().unwrap()["message"].as_str().unwrap_or("");
    assert!(message.contains("not enough space"), "{r}");
    let failed = l.wait_for("transfer_failed", EVENT_TIMEOUT);
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("not enough space"));
    assert_eq!(list_all(&out), Vec::<PathBuf>::new());

    let mut sender = t.spawn_send(&[l.ticket.as_str(), "-"], Stdio::piped());
    let mut stdin = sender.take_stdin();
    let data = random_bytes(16 * MIB);
    // The sender stops reading once refused: a broken pipe here is expected.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let r = sender.finish(RUN_TIMEOUT);
    writer.join().unwrap();
    r.assert_json_error(5);
    let message = r.events.last().unwrap()["message"].as_str().unwrap_or("");
    assert!(message.contains("not enough space"), "{r}");
    l.wait_for("transfer_failed", EVENT_TIMEOUT);
    assert_eq!(list_all(&out), Vec::<PathBuf>::new(), "nothing left in DIR");
    assert!(
        free_bytes(&out) >= empty - 64 * 1024,
        "the temporary's space was not given back: {} of {empty} free",
        free_bytes(&out)
    );

    t.send(&[l.ticket.as_str(), path_str(&small)])
        .assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(list_files(&out), vec![PathBuf::from("small.txt")]);
    l.assert_running();
}

/// Two large files at once on a disk with room for one: each is declared and passes
/// the free-space check, then the disk fills while they are written directly past the
/// page cache. What fails, fails with "not enough space" (exit 5) and leaves nothing;
/// what lands is whole; the space of the failed one is free again. Needs root.
#[test]
fn full_disk_mid_way_through_large_files_fails_cleanly() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (a, sha_a) = t.random_file("src/a.bin", 20 * MIB);
    let (b, sha_b) = t.random_file("src/b.bin", 20 * MIB);
    let Some(_tmpfs) = Tmpfs::mount_or_skip(&out, "30m") else {
        return;
    };
    let empty = free_bytes(&out);
    let mut l = t.listen(&out, &[]);

    let senders =
        [&a, &b].map(|file| t.spawn_send(&[l.ticket.as_str(), path_str(file)], Stdio::null()));
    let outcomes = senders.map(|s| s.finish(RUN_TIMEOUT));
    let mut landed = 0;
    for (r, (name, sha)) in outcomes.iter().zip([("a.bin", &sha_a), ("b.bin", &sha_b)]) {
        if r.code == Some(0) {
            landed += 1;
            assert_eq!(
                blake3_file(&out.join(name)),
                *sha,
                "{name} landed but differs"
            );
            continue;
        }
        r.assert_json_error(5);
        let message = r.events.last().unwrap()["message"].as_str().unwrap_or("");
        assert!(message.contains("not enough space"), "{r}");
        assert!(!out.join(name).exists(), "{name} failed but is visible");
        // Mid-way this is "No space left on device"; had the other file landed first,
        // the free-space check before the payload would have refused this one.
        let failed = l.wait_for("transfer_failed", EVENT_TIMEOUT);
        eprintln!("{}", failed["error"]);
    }
    assert!(landed < 2, "both fitted: the disk was not too small");
    assert_eq!(list_all(&out).len(), landed, "{:?}", list_all(&out));
    assert!(
        free_bytes(&out) >= empty - landed as u64 * 20 * MIB as u64 - 256 * 1024,
        "the failed file's space was not given back: {} of {empty} free",
        free_bytes(&out)
    );
    l.assert_running();
}

/// A path that looks like a regular file but cannot be opened, root or not: root
/// reads any mode-000 file, so as root a symlink to a write-only procfs entry;
/// otherwise a mode-000 file. `None` if neither works here.
fn unreadable_file(t: &TestDir, rel: &str) -> Option<PathBuf> {
    let path = t.path().join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    if is_root() {
        std::os::unix::fs::symlink("/proc/sys/vm/compact_memory", &path).unwrap();
    } else {
        fs::write(&path, b"secret").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    }
    let looks_regular = fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false);
    (looks_regular && fs::File::open(&path).is_err()).then_some(path)
}

/// Bad paths among good ones: an unreadable file, a dangling symlink and a FIFO inside
/// a directory, and a missing path on the command line. Each is reported in its turn
/// (a FIFO inside a directory is never opened, so nothing hangs: it is skipped with a
/// warning), every good file is still delivered, and send exits with the code of the
/// first failure: 5 for a file that failed while being sent, 1 for a path that could
/// not be sent at all. A FIFO given on the command line is sent like stdin.
#[test]
fn unreadable_and_special_paths_fail_alone() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    t.write("tree/a.txt", b"first");
    let unreadable = unreadable_file(&t, "tree/b-unreadable.txt");
    if unreadable.is_none() {
        eprintln!("note: no unreadable file can be made here; that case is left out");
    }
    std::os::unix::fs::symlink("/nonexistent/qp2p-test", t.path().join("tree/c-dangling")).unwrap();
    mkfifo(&t.path().join("tree/d-fifo"));
    t.write("tree/z.txt", b"last");
    let good = t.write("src/good.txt", b"good");
    let fifo = mkfifo(&t.path().join("src/fifo"));
    let missing = t.path().join("src/missing.txt");
    let mut l = t.listen(&out, &[]);
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::write(fifo, b"through the fifo").unwrap())
    };

    let tree = t.path().join("tree");
    let r = t.run_timeout(
        &[
            "--json",
            "--ephemeral",
            "send",
            l.ticket.as_str(),
            path_str(&tree),
            path_str(&good),
            path_str(&fifo),
            path_str(&missing),
        ],
        Duration::from_secs(30),
    );
    assert!(!r.timed_out, "send hung\n{r}");
    r.assert_no_panic();
    writer.join().unwrap();
    let expected = if unreadable.is_some() { 5 } else { 1 };
    r.assert_code(expected);
    assert_eq!(r.named("sent").len(), 4, "{r}");
    let errors = r.named("error");
    assert_eq!(
        errors.len(),
        if unreadable.is_some() { 3 } else { 2 },
        "one error per bad path\n{r}"
    );
    assert_eq!(errors.last().unwrap()["exit_code"], expected, "{r}");
    for bad in ["c-dangling", "missing.txt"] {
        assert!(
            errors
                .iter()
                .any(|e| e["message"].as_str().unwrap().contains(bad)),
            "no error names {bad}\n{r}"
        );
    }
    if unreadable.is_some() {
        assert!(r.stderr.contains("b-unreadable.txt"), "{r}");
    }
    assert!(r.stderr.contains("not a regular file"), "{r}");
    let warnings = r.named("warning");
    assert!(
        warnings
            .iter()
            .any(|w| w["message"].as_str().unwrap().contains("d-fifo")),
        "the FIFO in the tree is skipped with a warning\n{r}"
    );
    for _ in 0..4 {
        l.wait_for("received", EVENT_TIMEOUT);
    }
    assert_eq!(
        list_files(&out),
        vec![
            PathBuf::from("fifo"),
            PathBuf::from("good.txt"),
            PathBuf::from("tree/a.txt"),
            PathBuf::from("tree/z.txt")
        ]
    );
    assert_eq!(fs::read(out.join("fifo")).unwrap(), b"through the fifo");

    // When the first failure is a path that cannot be sent at all, the exit code is 1,
    // and the good file after it still goes.
    let r = t.run_timeout(
        &[
            "--json",
            "--ephemeral",
            "send",
            l.ticket.as_str(),
            path_str(&missing),
            path_str(&good),
        ],
        Duration::from_secs(30),
    );
    r.assert_json_error(1);
    assert_eq!(r.named("sent").len(), 1, "{r}");
    l.wait_for("received", EVENT_TIMEOUT);
}

/// A file that shrinks after `send` measured it (truncated while queued behind stdin)
/// fails alone with "file changed while it was being sent", exit 5; stdin before it and
/// the file after it are delivered, and nothing of it lands.
#[test]
fn file_truncated_before_its_turn_fails_alone() {
    let t = TestDir::new();
    let out = t.mkdir("out");
    let (big, _) = t.random_file("src/big.bin", 4 * MIB);
    let after = t.write("src/after.txt", b"after");
    let mut l = t.listen(&out, &[]);
    let mut sender = t.spawn_send(
        &[l.ticket.as_str(), "-", path_str(&big), path_str(&after)],
        Stdio::piped(),
    );
    let mut stdin = sender.take_stdin();
    // More than a pipe holds: this returns only once the sender reads stdin, so it has
    // measured its paths by now.
    stdin.write_all(&random_bytes(MIB)).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(MIB as u64)
        .unwrap();
    drop(stdin);
    let r = sender.finish(RUN_TIMEOUT);
    r.assert_json_error(5);
    assert!(r.stderr.contains("changed while it was being sent"), "{r}");
    assert_eq!(r.named("sent").len(), 2, "{r}");
    l.wait_for("received", EVENT_TIMEOUT);
    l.wait_for("received", EVENT_TIMEOUT);
    let files = list_files(&out);
    assert_eq!(
        files,
        vec![PathBuf::from("after.txt"), PathBuf::from("stdin")]
    );
}

/// The identity through the binary: a key readable by others is refused with the
/// advice to `chmod 600` (and left as it is); a corrupt key or certificate is reported
/// and never replaced. `id` and `listen` alike.
#[test]
fn bad_identity_is_refused_never_replaced() {
    let t = TestDir::new();
    let id_dir = t.path().join("id");
    let out = t.mkdir("out");
    t.id(&["--identity", path_str(&id_dir)]);
    let key = id_dir.join("key.pem");
    let cert = id_dir.join("cert.pem");
    let commands = |dir: &Path| -> Vec<Vec<String>> {
        let base = vec![
            "--json".to_string(),
            "--identity".into(),
            path_str(dir).into(),
        ];
        let mut id = base.clone();
        id.push("id".into());
        let mut listen = base;
        listen
            .extend(["listen", "--bind", "127.0.0.1:0", "--out", path_str(&out)].map(String::from));
        vec![id, listen]
    };

    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let before = fs::read(&key).unwrap();
    for args in commands(&id_dir) {
        let r = t.run(&args);
        let code = r.code.unwrap_or_else(|| panic!("no exit code\n{r}"));
        assert_ne!(code, 0, "{r}");
        r.assert_json_error(code);
        assert!(r.stderr.contains("chmod 600"), "no advice\n{r}");
    }
    assert_eq!(fs::read(&key).unwrap(), before, "key changed");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o644,
        "the mode was changed behind the user's back"
    );

    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let corrupt_key = b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n";
    fs::write(&key, corrupt_key).unwrap();
    let cert_before = fs::read(&cert).unwrap();
    for args in commands(&id_dir) {
        let r = t.run(&args);
        let code = r.code.unwrap_or_else(|| panic!("no exit code\n{r}"));
        assert_ne!(code, 0, "{r}");
        r.assert_json_error(code);
        assert!(r.stderr.contains("corrupt"), "{r}");
    }
    assert_eq!(fs::read(&key).unwrap(), corrupt_key, "corrupt key replaced");
    assert_eq!(
        fs::read(&cert).unwrap(),
        cert_before,
        "certificate replaced"
    );
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

/// A child process killed and reaped on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `qp2p listen --once --stdout | head -c 10`: the reader goes away after 10 bytes.
/// The listener gets EPIPE (Rust ignores SIGPIPE), stops and exits 0 without a panic;
/// the sender is told its message was not stored (exit 5).
#[test]
fn listener_stdout_closed_early_exits_cleanly() {
    let t = TestDir::new();
    let (file, _) = t.random_file("src/big.bin", 4 * MIB);
    let mut cmd = t.cmd();
    cmd.args([
        "--ephemeral",
        "listen",
        "--bind",
        "127.0.0.1:0",
        "--once",
        "--stdout",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut listener = Killed(cmd.spawn().unwrap());
    let stderr = listener.0.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel::<String>();
    let log = thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let ticket = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the listener prints its ticket");
        if let Some(ticket) = line.strip_prefix("ticket ") {
            break ticket.to_string();
        }
    };
    let mut stdout = listener.0.stdout.take().unwrap();
    let head = thread::spawn(move || {
        let mut first = [0u8; 10];
        stdout.read_exact(&mut first).map(|()| first)
        // `stdout` is dropped here: the pipe's reader is gone, as after `head -c 10`.
    });

    let r = t.send(&[ticket.as_str(), path_str(&file)]);
    let first = head.join().unwrap().expect("10 bytes of payload");
    assert_eq!(first[..], fs::read(&file).unwrap()[..10]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = listener.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the listener did not stop");
        thread::sleep(Duration::from_millis(20));
    };
    let logs = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "listener exit\n{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(logs.contains("stdout was closed"), "{logs}");
    r.assert_json_error(5);
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
