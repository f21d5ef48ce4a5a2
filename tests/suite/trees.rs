//! Directory trees of many files: sent many at once, each landing whole under its path,
//! nothing partial visible even when the listener is killed, files that vanish
//! mid-send failing alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{
    blake3_file, digest, free_udp_port, list_files, path_str, write_random, TestDir, EVENT_TIMEOUT,
};

/// Writes `small` files of 0 to 6,000 bytes in folders of 100, and `large` files of a
/// few MiB, under `src/tree`; returns their names as sent (`tree/...`) with SHA-256.
fn make_tree(t: &TestDir, small: usize, large: usize) -> BTreeMap<String, String> {
    let mut tree = BTreeMap::new();
    let src = t.path().join("src");
    for i in 0..small {
        let name = format!("tree/d{:02}/f{i:05}.dat", i / 100);
        let path = src.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        tree.insert(name, write_random(&path, (i * 37) % 6001));
    }
    for i in 0..large {
        let name = format!("tree/large/big{i}.bin");
        let path = src.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        tree.insert(name, write_random(&path, (1 + 2 * i) << 20));
    }
    tree
}

/// Asserts that `out` holds exactly the files of `tree`, each with its content.
fn assert_landed(out: &Path, tree: &BTreeMap<String, String>) {
    let listed = list_files(out);
    let expected: Vec<PathBuf> = tree.keys().map(PathBuf::from).collect();
    if listed != expected {
        let extra: Vec<_> = listed.iter().filter(|p| !expected.contains(p)).collect();
        let missing: Vec<_> = expected.iter().filter(|p| !listed.contains(p)).collect();
        panic!(
            "DIR differs from the tree: {} extra (first {:?}), {} missing (first {:?})",
            extra.len(),
            extra.first(),
            missing.len(),
            missing.first()
        );
    }
    for (name, sha) in tree {
        assert_eq!(&blake3_file(&out.join(name)), sha, "{name}");
    }
}

/// Every file visible under a final name in `out` is whole: the content of its source.
/// Hidden temporaries of the portable store (`.NAME.qp2p-*.part`) are not final names.
fn assert_visible_whole(out: &Path, tree: &BTreeMap<String, String>) -> usize {
    let mut seen = 0;
    for rel in list_files(out) {
        let file_name = rel.file_name().unwrap().to_string_lossy().into_owned();
        if file_name.starts_with('.') && file_name.ends_with(".part") {
            continue;
        }
        let name = rel.to_string_lossy().into_owned();
        let Some(sha) = tree.get(&name) else {
            panic!("{name} is in DIR but not in the tree");
        };
        let path = out.join(&rel);
        // A file named may be gone by now only if the listener removed it, which it
        // never does; read errors other than that fail the test.
        assert_eq!(&blake3_file(&path), sha, "{name} visible but not whole");
        seen += 1;
    }
    seen
}

/// 2,000 small files and three large ones, by default (bidirectional) and with `--uni`:
/// every file lands whole under its path, nothing else does, the sender reports each
/// and one summary.
#[test]
fn a_tree_of_many_files_lands_whole_both_ways() {
    let t = TestDir::new();
    let tree = make_tree(&t, 2000, 3);
    let dir = t.path().join("src/tree");
    for (mode, extra) in [("bi", None), ("uni", Some("--uni"))] {
        let out = t.mkdir(&format!("out-{mode}"));
        let mut l = t.listen(&out, &[]);
        let mut args = vec![];
        args.extend(extra);
        args.extend([l.ticket.as_str(), path_str(&dir)]);
        let r = t.send(&args);
        r.assert_code(0);
        let sent = r.named("sent");
        assert_eq!(sent.len(), tree.len(), "{mode}: one report per file");
        for ev in &sent {
            let name = ev["name"].as_str().unwrap();
            assert_eq!(digest(ev), tree[name].as_str(), "{mode}: {name}");
            assert_eq!(ev["stream"], mode);
        }
        let summary = r.one("summary");
        assert_eq!(summary["files"], tree.len() as u64, "{mode}: {summary}");
        assert_eq!(summary["failed"], 0, "{mode}: {summary}");
        assert_eq!(summary["not_sent"], 0, "{mode}: {summary}");
        // Unidirectional: done when delivered, maybe before the last is committed.
        for _ in 0..tree.len() {
            l.wait_for("received", EVENT_TIMEOUT);
        }
        assert_landed(&out, &tree);
        eprintln!(
            "{mode}: {} files in {:.2} s",
            tree.len(),
            r.elapsed.as_secs_f64()
        );
    }
}

/// The listener is killed (SIGKILL) in the middle of a tree. While it runs and after it
/// died, every file visible under a final name is whole. After a restart and a resend
/// (`--skip-same`), every file is there exactly once.
#[test]
fn a_listener_killed_mid_tree_leaves_nothing_partial_and_a_resend_completes_it() {
    let t = TestDir::new();
    let tree = make_tree(&t, 1500, 2);
    let dir = t.path().join("src/tree");
    let out = t.mkdir("out");
    let identity = t.path().join("listener-id");
    let id = path_str(&identity).to_string();
    let fp = t.id(&["--identity", &id]);
    let port = free_udp_port();
    let bind = format!("127.0.0.1:{port}");
    let ticket = format!("{fp}@{bind}");
    let listen = |t: &TestDir| {
        t.listen_args(&[
            "--json",
            "--identity",
            &id,
            "listen",
            "--bind",
            &bind,
            "--out",
            path_str(&out),
        ])
    };

    let mut l = listen(&t);
    // Watch DIR while the transfer runs: a file under a final name is always whole.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, out, tree) = (stop.clone(), out.clone(), tree.clone());
        std::thread::spawn(move || {
            let mut looks = 0;
            while !stop.load(Ordering::SeqCst) {
                assert_visible_whole(&out, &tree);
                looks += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            looks
        })
    };
    let sender = t.spawn_send(
        &[
            "--skip-same",
            "--retry-for",
            "1s",
            ticket.as_str(),
            path_str(&dir),
        ],
        Stdio::null(),
    );
    // Some files in, then the listener dies without a word.
    for _ in 0..200 {
        l.wait_for("received", EVENT_TIMEOUT);
    }
    l.signal(libc::SIGKILL);
    let first = sender.finish(Duration::from_secs(60));
    stop.store(true, Ordering::SeqCst);
    let looks = watcher.join().expect("a partial file was visible");
    assert!(looks > 0, "DIR was never looked at during the transfer");
    assert_ne!(
        first.code,
        Some(0),
        "the first send cannot have completed\n{first}"
    );
    first.assert_no_panic();
    let landed = assert_visible_whole(&out, &tree);
    assert!(
        landed >= 200 && landed < tree.len(),
        "{landed} files landed before the kill"
    );

    // Restarted, the tree sent again: what is there is skipped, the rest lands.
    let _l = listen(&t);
    let r = t.send(&["--skip-same", ticket.as_str(), path_str(&dir)]);
    r.assert_code(0);
    let skipped = r
        .named("sent")
        .iter()
        .filter(|e| e["already_present"] == true)
        .count();
    assert!(
        skipped >= landed,
        "{skipped} skipped, {landed} were there\n"
    );
    // Bidirectional: every file acked, so durable and named, before the sender exits.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while list_files(&out).len() < tree.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut listed = list_files(&out);
    listed.retain(|p| {
        let n = p.file_name().unwrap().to_string_lossy();
        !(n.starts_with('.') && n.ends_with(".part"))
    });
    let expected: Vec<PathBuf> = tree.keys().map(PathBuf::from).collect();
    assert_eq!(listed.len(), expected.len(), "every file exactly once");
    assert_eq!(listed, expected);
    assert_visible_whole(&out, &tree);
}

/// Files that vanish after the tree was listed but before they were sent fail, each
/// named, and every other file lands; `send` exits 5 (a file that cannot be read).
#[test]
fn files_that_vanish_mid_send_fail_alone() {
    let t = TestDir::new();
    let mut tree = make_tree(&t, 300, 0);
    let dir = t.path().join("src/tree");
    let out = t.mkdir("out");
    let identity = t.path().join("listener-id");
    let id = path_str(&identity).to_string();
    let fp = t.id(&["--identity", &id]);
    let bind = format!("127.0.0.1:{}", free_udp_port());
    let ticket = format!("{fp}@{bind}");

    // The sender lists the tree, then waits for a listener that is not there yet.
    let sender = {
        let mut cmd = t.cmd();
        cmd.args(["--json", "-v", "--ephemeral", "send", ticket.as_str()])
            .arg(&dir);
        crate::util::Proc::spawn(cmd)
    };
    let listed = sender
        .next_stderr_line(Duration::from_secs(20))
        .expect("the sender says it is connecting");
    assert!(!listed.is_empty());
    let gone: Vec<String> = tree
        .keys()
        .filter(|n| n.ends_with("7.dat"))
        .cloned()
        .collect();
    for name in &gone {
        std::fs::remove_file(t.path().join("src").join(name)).unwrap();
        tree.remove(name);
    }
    let mut l = t.listen_args(&[
        "--json",
        "--identity",
        &id,
        "listen",
        "--bind",
        &bind,
        "--out",
        path_str(&out),
    ]);
    let r = sender.finish(Duration::from_secs(60));
    r.assert_code(5);
    assert_eq!(r.named("sent").len(), tree.len(), "{r}");
    let summary = r.one("summary");
    assert_eq!(summary["failed"], gone.len() as u64, "{summary}");
    assert_eq!(summary["files"], tree.len() as u64, "{summary}");
    let errors: Vec<String> = r
        .named("error")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(errors.len(), gone.len(), "one error per vanished file\n{r}");
    for name in &gone {
        assert!(
            errors.iter().any(|e| e.contains(name.as_str())),
            "no error names {name}\n{r}"
        );
    }
    for _ in 0..tree.len() {
        l.wait_for("received", EVENT_TIMEOUT);
    }
    assert_landed(&out, &tree);
}

/// On a terminal a tree is one task: one bar counting files (not a line or a bar per
/// file), then one summary line. Run under `script`, which gives the sender a terminal.
#[test]
fn a_tree_on_a_terminal_shows_one_bar_and_a_summary() {
    let t = TestDir::new();
    let tree = make_tree(&t, 300, 1);
    let dir = t.path().join("src/tree");
    let out = t.mkdir("out");
    let mut l = t.listen(&out, &[]);
    let line = format!(
        "{} --ephemeral send {} {}",
        crate::util::BIN,
        l.ticket,
        path_str(&dir)
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", line.as_str(), "/dev/null"]);
    cmd.env("HOME", t.home())
        .env("XDG_CONFIG_HOME", t.home().join("config"));
    let r = crate::util::Proc::spawn(cmd).finish(Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{r}");
    let screen = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(
        screen.contains(&format!("sent {n} of {n} files", n = tree.len())),
        "no summary line\n{r}"
    );
    assert!(
        screen.contains(&format!("/{} files", tree.len())),
        "no bar counting the files\n{r}"
    );
    assert!(
        !screen.contains("sent tree/"),
        "per-file lines beside the bar\n{r}"
    );
    for _ in 0..tree.len() {
        l.wait_for("received", EVENT_TIMEOUT);
    }
    assert_landed(&out, &tree);
}
