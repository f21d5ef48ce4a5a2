//! A full disk, before and in the middle of a transfer (a tmpfs; root only).

use super::*;

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
