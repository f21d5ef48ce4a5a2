//! Payloads that must arrive whole: sizes from empty to 200 MiB, stdin to stdout,
//! several files over one connection, unidirectional streams, directory trees.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::Duration;

use crate::util::{
    assert_report, blake3, blake3_file, digest, list_files, path_str, random_bytes, TestDir,
    EVENT_TIMEOUT, MIB, RUN_TIMEOUT,
};

/// Sends one random file of `size` bytes over a ticket and checks both reports and
/// both ends' SHA-256, and that nothing else landed in the output directory.
fn roundtrip(size: usize, timeout: Duration) {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (file, sha) = t.random_file("src/payload.bin", size);
    let mut l = t.listen(&out, &[]);

    let r = t.run_timeout(
        &["--json", "--ephemeral", "send", &l.ticket, path_str(&file)],
        timeout,
    );
    r.assert_code(0);
    let sent = r.one("sent");
    assert_report(sent, "payload.bin", size, &sha, "bi");
    assert_eq!(sent["peer_fingerprint"], l.fingerprint.as_str(), "{r}");
    assert_eq!(sent["peer"], l.addr.as_str(), "{r}");
    assert_eq!(sent["retries"], 0, "{r}");
    assert_eq!(sent["reused_connection"], false, "{r}");
    assert!(r.named("error").is_empty(), "{r}");

    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_report(&recv, "payload.bin", size, &sha, "bi");
    assert_eq!(
        recv["message_id"], sent["message_id"],
        "same message at both ends"
    );
    let stored = out.join("payload.bin");
    assert_eq!(
        fs::canonicalize(recv["path"].as_str().expect("received.path")).unwrap(),
        stored,
        "received.path"
    );
    assert_eq!(list_files(&out), vec![PathBuf::from("payload.bin")]);
    assert_eq!(fs::metadata(&stored).unwrap().len(), size as u64);
    assert_eq!(
        blake3_file(&stored),
        sha,
        "stored file differs from the sent one"
    );
}

#[test]
fn payload_empty() {
    roundtrip(0, RUN_TIMEOUT);
}

#[test]
fn payload_one_byte() {
    roundtrip(1, RUN_TIMEOUT);
}

#[test]
fn payload_one_mib_plus_one() {
    roundtrip(MIB + 1, RUN_TIMEOUT);
}

#[test]
fn payload_200_mib() {
    roundtrip(200 * MIB, Duration::from_secs(180));
}

/// `send ADDR -` with 3 MiB piped in, `listen --once --stdout` prints exactly those
/// bytes and exits 0 by itself.
/// Every congestion controller moves a file on loopback, where a connection starts at
/// 65,000-byte packets: the loss-based ones' initial window is sized for those packets
/// (with quinn's default, made for 1200-byte ones, not even the handshake went out).
#[test]
fn every_congestion_controller_delivers_on_loopback() {
    for cc in ["bbr", "cubic", "newreno"] {
        let t = TestDir::new();
        let out = t.mkdir("work/out");
        let (file, sha) = t.random_file("src/cc.bin", 4 * MIB + 1);
        let mut l = t.listen(&out, &["--congestion", cc]);
        let r = t.run_timeout(
            &[
                "--json",
                "--ephemeral",
                "send",
                "--congestion",
                cc,
                "--retry-for",
                "0",
                &l.ticket,
                path_str(&file),
            ],
            RUN_TIMEOUT,
        );
        r.assert_code(0);
        assert_eq!(digest(r.one("sent")), sha.as_str(), "{cc}: {r}");
        let recv = l.wait_for("received", EVENT_TIMEOUT);
        assert_eq!(digest(&recv), sha.as_str(), "{cc}");
    }
}

#[test]
fn stdin_to_stdout() {
    let t = TestDir::new();
    let (listener, ticket) = t.listen_stdout(&["--once"]);

    let data = random_bytes(3 * MIB);
    let mut sender = t.spawn_send(&[ticket.as_str(), "-"], Stdio::piped());
    let mut stdin = sender.take_stdin();
    let input = data.clone();
    let writer = thread::spawn(move || stdin.write_all(&input));
    let r = sender.finish(RUN_TIMEOUT);
    writer
        .join()
        .unwrap()
        .expect("write the payload to the sender's stdin");
    r.assert_code(0);
    assert_report(r.one("sent"), "stdin", data.len(), &blake3(&data), "bi");

    let out = listener.finish(Duration::from_secs(20));
    assert!(
        out.code == Some(0),
        "listen --once must exit 0 by itself after one message\n{out}"
    );
    assert!(
        out.stdout == data,
        "listener stdout ({} bytes, blake3 {}) is not the input ({} bytes, blake3 {})",
        out.stdout.len(),
        blake3(&out.stdout),
        data.len(),
        blake3(&data)
    );
}

/// `--json` with `--stdout` would mix events into the payload: a usage error.
#[test]
fn stdout_with_json_is_usage_error() {
    let t = TestDir::new();
    let r = t.run_timeout(
        &[
            "--json",
            "--ephemeral",
            "listen",
            "--bind",
            "127.0.0.1:0",
            "--stdout",
        ],
        Duration::from_secs(10),
    );
    r.assert_code(2);
    r.assert_no_panic();
}

/// Three files in one `send` share one pooled connection.
#[test]
fn three_files_reuse_one_connection() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let files: Vec<(PathBuf, String)> = ["a.txt", "b.bin", "c.dat"]
        .iter()
        .enumerate()
        .map(|(i, name)| t.random_file(&format!("src/{name}"), 1000 + i * 70_000))
        .collect();
    let mut l = t.listen(&out, &[]);

    let mut args = vec![l.ticket.clone()];
    args.extend(files.iter().map(|(p, _)| path_str(p).to_string()));
    let r = t.send(&args);
    r.assert_code(0);
    let sent = r.named("sent");
    assert_eq!(sent.len(), 3, "{r}");
    let names = ["a.txt", "b.bin", "c.dat"];
    // Reports come as messages complete; the first goes alone and opens the connection.
    assert_eq!(sent[0]["name"], "a.txt", "{r}");
    for (i, name) in names.iter().enumerate() {
        let ev = sent.iter().find(|e| e["name"] == *name).expect(name);
        let size = fs::metadata(&files[i].0).unwrap().len() as usize;
        assert_report(ev, name, size, &files[i].1, "bi");
        assert_eq!(ev["reused_connection"], i > 0, "message {i}: {ev}");
    }
    for _ in 0..3 {
        l.wait_for("received", EVENT_TIMEOUT);
    }
    let mut expected: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
    expected.sort();
    assert_eq!(list_files(&out), expected);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(blake3_file(&out.join(name)), files[i].1, "{name}");
    }
}

/// `send --uni` delivers over a unidirectional stream.
#[test]
fn uni_stream_delivers() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (file, sha) = t.random_file("src/uni.bin", 300_000);
    let mut l = t.listen(&out, &[]);

    let r = t.send(&["--uni", l.ticket.as_str(), path_str(&file)]);
    r.assert_code(0);
    assert_report(r.one("sent"), "uni.bin", 300_000, &sha, "uni");

    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_report(&recv, "uni.bin", 300_000, &sha, "uni");
    assert_eq!(list_files(&out), vec![PathBuf::from("uni.bin")]);
    assert_eq!(blake3_file(&out.join("uni.bin")), sha);
}

/// Builds d/a.txt, d/sub/b.bin, d/sub/deeper/c under `src` and returns the relative
/// names (from `src`) with their hashes.
fn make_tree(t: &TestDir) -> Vec<(String, String)> {
    let mut tree = Vec::new();
    for (name, size) in [
        ("d/a.txt", 10),
        ("d/sub/b.bin", 200_000),
        ("d/sub/deeper/c", 1),
    ] {
        let (_, sha) = t.random_file(&format!("src/{name}"), size);
        tree.push((name.to_string(), sha));
    }
    tree.sort();
    tree
}

fn send_tree(dir_arg: &str, t: &TestDir, out: &Path, tree: &[(String, String)]) {
    let mut l = t.listen(out, &[]);
    let r = t.send(&[l.ticket.as_str(), dir_arg]);
    r.assert_code(0);
    let mut sent: Vec<String> = r
        .named("sent")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or("").to_string())
        .collect();
    sent.sort();
    let names: Vec<String> = tree.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(sent, names, "names of the sent messages\n{r}");
    for _ in 0..tree.len() {
        l.wait_for("received", EVENT_TIMEOUT);
    }
    let listed: Vec<PathBuf> = tree.iter().map(|(n, _)| PathBuf::from(n)).collect();
    assert_eq!(list_files(out), listed, "the tree under DIR");
    for (name, sha) in tree {
        assert_eq!(&blake3_file(&out.join(name)), sha, "{name}");
    }
}

/// A directory arrives as the same tree under DIR, named after the directory.
#[test]
fn directory_tree_arrives_whole() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let tree = make_tree(&t);
    let dir = t.path().join("src/d");
    send_tree(path_str(&dir), &t, &out, &tree);
}

/// `send dir/` (trailing slash) still names the messages "dir/...".
#[test]
fn directory_with_trailing_slash_keeps_its_name() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let tree = make_tree(&t);
    let dir = format!("{}/", path_str(&t.path().join("src/d")));
    send_tree(&dir, &t, &out, &tree);
}

/// Without `--json`, reports go to stderr and stdout stays empty (payload only).
#[test]
fn human_mode_keeps_stdout_clean() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (file, sha) = t.random_file("src/h.txt", 5000);
    let mut l = t.listen(&out, &[]);
    let r = t.run(&["--ephemeral", "send", l.ticket.as_str(), path_str(&file)]);
    r.assert_code(0);
    assert!(
        r.stdout.is_empty(),
        "send without --json wrote to stdout\n{r}"
    );
    l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(blake3_file(&out.join("h.txt")), sha);
}

/// `listen --count 2` keeps running after the first sender and exits 0 by itself
/// after the second message.
#[test]
fn count_stops_after_n_messages() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let (f1, _) = t.random_file("src/one", 100);
    let (f2, _) = t.random_file("src/two", 100);
    let mut l = t.listen(&out, &["--count", "2"]);
    t.send(&[l.ticket.as_str(), path_str(&f1)]).assert_code(0);
    l.assert_running();
    t.send(&[l.ticket.as_str(), path_str(&f2)]).assert_code(0);
    let status = l.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.code() == Some(0)),
        "listen --count 2 did not exit 0 after two messages: {status:?}\n{}",
        l.describe()
    );
    assert_eq!(
        list_files(&out),
        vec![PathBuf::from("one"), PathBuf::from("two")]
    );
}

/// Twenty small files in one `send`: one `sent` and one `received` per file, no
/// more, and twenty files on disk.
#[test]
fn many_small_messages_each_reported_once() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let mut names = Vec::new();
    for i in 0..20 {
        let name = format!("m{i:02}.txt");
        t.write(&format!("src/{name}"), format!("message {i}").as_bytes());
        names.push(name);
    }
    let mut l = t.listen(&out, &[]);
    let mut args = vec![l.ticket.clone()];
    args.extend(
        names
            .iter()
            .map(|n| path_str(&t.path().join("src").join(n)).to_string()),
    );
    let r = t.send(&args);
    r.assert_code(0);
    assert_eq!(r.named("sent").len(), 20, "{r}");
    let mut got: Vec<String> = (0..20)
        .map(|_| {
            let ev = l.wait_for("received", EVENT_TIMEOUT);
            ev["name"].as_str().unwrap_or("").to_string()
        })
        .collect();
    got.sort();
    assert_eq!(got, names);
    l.assert_no_event("received", Duration::from_millis(300));
    assert_eq!(list_files(&out).len(), 20);
}
