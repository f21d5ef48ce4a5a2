//! Bad input on the sender's and listener's side: unreadable and special paths,
//! files that change while queued, bad identities, a stdout closed early.

use super::*;

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
