//! Identity and trust: pinned fingerprints (tickets, `--expect`), allow-lists on
//! the listener, persistent identities and `qp2p id`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{
    assert_fingerprint, corrupt_fingerprint, list_files, path_str, set_mode, Listener, Outcome,
    Proc, TestDir, EVENT_TIMEOUT, RUN_TIMEOUT,
};

/// The sender was refused for identity reasons: exit 4 with a JSON error, nothing
/// sent, nothing received, nothing stored, and the listener still runs.
fn assert_rejected(r: &Outcome, l: &mut Listener, out: &Path) {
    r.assert_json_error(4);
    assert!(r.named("sent").is_empty(), "{r}");
    l.assert_no_event("received", Duration::from_millis(500));
    assert_eq!(
        list_files(out),
        Vec::<PathBuf>::new(),
        "DIR after a rejected peer"
    );
    l.assert_running();
}

/// A ticket whose fingerprint differs in one character from the listener's.
#[test]
fn ticket_with_corrupted_fingerprint_is_rejected() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let mut l = t.listen(&out, &[]);
    let ticket = format!("{}@{}", corrupt_fingerprint(&l.fingerprint), l.addr);
    let r = t.send(&[ticket.as_str(), path_str(&file)]);
    assert_rejected(&r, &mut l, &out);
}

/// A ticket carrying another host's (valid) fingerprint.
#[test]
fn ticket_with_other_hosts_fingerprint_is_rejected() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let other = t.stranger_fingerprint();
    let mut l = t.listen(&out, &[]);
    assert_ne!(other, l.fingerprint);
    let ticket = format!("{other}@{}", l.addr);
    let r = t.send(&[ticket.as_str(), path_str(&file)]);
    assert_rejected(&r, &mut l, &out);
}

/// `--expect FP` with a bare address refuses a listener with another fingerprint.
#[test]
fn expect_wrong_fingerprint_is_rejected() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let other = t.stranger_fingerprint();
    let mut l = t.listen(&out, &[]);
    let r = t.send(&["--expect", other.as_str(), l.addr.as_str(), path_str(&file)]);
    assert_rejected(&r, &mut l, &out);
}

/// `--expect` with the right fingerprint goes through (the control for the above).
#[test]
fn expect_right_fingerprint_is_accepted() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"hello");
    let mut l = t.listen(&out, &[]);
    let fp = l.fingerprint.clone();
    let r = t.send(&["--expect", fp.as_str(), l.addr.as_str(), path_str(&file)]);
    r.assert_code(0);
    assert_eq!(r.one("sent")["peer_fingerprint"], fp.as_str());
    l.wait_for("received", EVENT_TIMEOUT);
    assert!(
        !r.stderr.contains("not authenticated"),
        "a pinned peer is authenticated\n{r}"
    );
}

/// A bare address works but warns once (not once per file) on stderr with the
/// peer's fingerprint.
#[test]
fn bare_address_warns_once_with_fingerprint() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let a = t.write("src/a.txt", b"a");
    let b = t.write("src/b.txt", b"b");
    let mut l = t.listen(&out, &[]);
    let r = t.send(&[l.addr.as_str(), path_str(&a), path_str(&b)]);
    r.assert_code(0);
    assert_eq!(
        r.stderr.matches("not authenticated").count(),
        1,
        "expected one 'not authenticated' warning\n{r}"
    );
    let warning = r
        .stderr
        .lines()
        .find(|line| line.contains("not authenticated"))
        .unwrap();
    assert!(
        warning.contains(&l.fingerprint),
        "the warning must name the peer's fingerprint {}\n{r}",
        l.fingerprint
    );
    for ev in r.named("sent") {
        assert_eq!(ev["peer_fingerprint"], l.fingerprint.as_str());
    }
    l.wait_for("received", EVENT_TIMEOUT);
    l.wait_for("received", EVENT_TIMEOUT);
}

/// `listen --allow FP` turns away a sender with any other identity.
#[test]
fn allow_rejects_unlisted_sender() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let other = t.stranger_fingerprint();
    let mut l = t.listen(&out, &["--allow", other.as_str()]);
    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    assert_rejected(&r, &mut l, &out);
}

/// `listen --allow FP` admits the sender whose persistent identity has that FP.
/// `qp2p --json --identity ID_DIR send TICKET FILE` succeeds, and the listener
/// stores the file from that identity (`fp`).
fn send_as(t: &TestDir, l: &mut Listener, id_dir: &Path, fp: &str, file: &Path) {
    let r = t.run(&[
        "--json",
        "--identity",
        path_str(id_dir),
        "send",
        l.ticket.as_str(),
        path_str(file),
    ]);
    r.assert_code(0);
    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(recv["peer_fingerprint"], fp, "{recv}");
}

#[test]
fn allow_admits_listed_identity() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"for you");
    let id_dir = t.path().join("id");
    let fp = t.id(&["--identity", path_str(&id_dir)]);
    let other = t.stranger_fingerprint();
    let mut l = t.listen(&out, &["--allow", other.as_str(), "--allow", fp.as_str()]);
    send_as(&t, &mut l, &id_dir, &fp, &file);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"for you");
}

/// `--allow-file`: one FP per line, `#` comments and blank lines ignored; the listed
/// identity gets in, an ephemeral one does not.
#[test]
fn allow_file_admits_listed_and_rejects_others() {
    let t = TestDir::new();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"for you");
    let id_dir = t.path().join("id");
    let fp = t.id(&["--identity", path_str(&id_dir)]);
    let other = t.stranger_fingerprint();
    let allow = t.write(
        "allowed.txt",
        format!("# friends\n{other}\n\n# me\n{fp}\n").as_bytes(),
    );
    let mut l = t.listen(&out, &["--allow-file", path_str(&allow)]);

    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    assert_rejected(&r, &mut l, &out);

    send_as(&t, &mut l, &id_dir, &fp, &file);
    assert_eq!(list_files(&out), vec![PathBuf::from("f.txt")]);
}

/// The same identity directory always gives the same fingerprint, and its key is
/// readable by the owner only.
#[cfg(unix)]
#[test]
fn identity_is_stable_and_key_is_private() {
    let t = TestDir::new();
    let id_dir = t.path().join("id");
    let first = t.id(&["--identity", path_str(&id_dir)]);
    let second = t.id(&["--identity", path_str(&id_dir)]);
    assert_fingerprint(&first);
    assert_eq!(first, second, "fingerprint changed between runs");
    let key = id_dir.join("key.pem");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&key)
        .unwrap_or_else(|e| panic!("{}: {e}", key.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key.pem mode is {:o}", mode & 0o777);
    assert!(id_dir.join("cert.pem").is_file(), "cert.pem missing");

    let r = t.run(&["--json", "--identity", path_str(&id_dir), "id"]);
    r.assert_code(0);
    let ev = r.one("id");
    assert_eq!(ev["fingerprint"], first.as_str());
    let shown = ev["identity"].as_str().expect("identity is a path");
    assert!(
        fs::canonicalize(shown).unwrap().starts_with(&id_dir),
        "identity {shown} is not under {}",
        id_dir.display()
    );
}

/// Global options may follow the subcommand.
#[test]
fn global_options_after_subcommand() {
    let t = TestDir::new();
    let id_dir = t.path().join("id");
    let fp = t.id(&["--identity", path_str(&id_dir)]);
    let r = t.run(&["id", "--identity", path_str(&id_dir), "--json"]);
    r.assert_code(0);
    assert_eq!(r.one("id")["fingerprint"], fp.as_str());
}

/// `--ephemeral` makes a fresh identity each run and stores nothing.
#[test]
fn ephemeral_identity_is_fresh_and_not_stored() {
    let t = TestDir::new();
    let a = t.id(&["--ephemeral"]);
    let b = t.id(&["--ephemeral"]);
    assert_ne!(a, b, "two ephemeral identities with one fingerprint");
    let r = t.run(&["--json", "--ephemeral", "id"]);
    r.assert_code(0);
    assert!(r.one("id")["identity"].is_null(), "{r}");
    assert!(
        list_files(t.home()).is_empty(),
        "--ephemeral wrote into HOME: {:?}",
        list_files(t.home())
    );
}

/// Without `--identity`, the identity lives in `$QP2P_HOME`.
#[test]
fn qp2p_home_holds_default_identity() {
    let t = TestDir::new();
    let qp2p_home = t.path().join("qp2p-home");
    let mut cmd = t.cmd();
    cmd.env("QP2P_HOME", &qp2p_home).arg("id");
    let r = Proc::spawn(cmd).finish(RUN_TIMEOUT);
    r.assert_code(0);
    let fp = String::from_utf8_lossy(&r.stdout).trim_end().to_string();
    assert_fingerprint(&fp);
    assert!(
        qp2p_home.join("key.pem").is_file(),
        "no key.pem in QP2P_HOME"
    );
    assert_eq!(fp, t.id(&["--identity", path_str(&qp2p_home)]));
}

/// Without `--identity` and `QP2P_HOME`, the identity lives in
/// `$XDG_CONFIG_HOME/qp2p`.
#[test]
fn xdg_config_home_holds_default_identity() {
    let t = TestDir::new();
    let fp = t.id(&[]);
    let dir = t.home().join("config/qp2p");
    assert!(
        dir.join("key.pem").is_file(),
        "no key.pem in {}",
        dir.display()
    );
    assert_eq!(fp, t.id(&["--identity", path_str(&dir)]));
}

/// Regression: `--ephemeral` must win over a `QP2P_HOME` in the environment (a
/// user who exports QP2P_HOME must still be able to run `qp2p --ephemeral ...`),
/// and must not create an identity there.
#[test]
fn ephemeral_wins_over_qp2p_home() {
    let t = TestDir::new();
    let qp2p_home = t.path().join("qp2p-home");
    let mut cmd = t.cmd();
    cmd.env("QP2P_HOME", &qp2p_home)
        .args(["--json", "--ephemeral", "id"]);
    let r = Proc::spawn(cmd).finish(RUN_TIMEOUT);
    r.assert_code(0);
    assert!(r.one("id")["identity"].is_null(), "{r}");
    assert!(
        !qp2p_home.exists(),
        "--ephemeral created {}",
        qp2p_home.display()
    );
}

/// An explicit `--identity` wins over `QP2P_HOME`.
#[test]
fn identity_flag_wins_over_qp2p_home() {
    let t = TestDir::new();
    let id_dir = t.path().join("id");
    let fp = t.id(&["--identity", path_str(&id_dir)]);
    let mut cmd = t.cmd();
    cmd.env("QP2P_HOME", t.path().join("qp2p-home"))
        .args(["--identity", path_str(&id_dir), "id"]);
    let r = Proc::spawn(cmd).finish(RUN_TIMEOUT);
    r.assert_code(0);
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim_end(), fp);
}

/// An identity directory made by a qp2p from before Ed25519 keys (an ECDSA P-256 key in
/// PKCS #8 and its self-signed certificate) keeps its fingerprint, and talks to a new
/// (Ed25519) identity both ways: as a listener pinned by its ticket, and as a sender on
/// a listener's allow-list.
#[test]
fn old_p256_identity_directory_talks_to_new_identities() {
    let t = TestDir::new();
    let dir = t.path().join("old-id");
    fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o700);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["qp2p".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "qp2p peer");
    let cert = params.self_signed(&key).unwrap();
    let key_path = dir.join("key.pem");
    fs::write(&key_path, key.serialize_pem()).unwrap();
    set_mode(&key_path, 0o600);
    fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    let old = ["--identity", path_str(&dir)];

    let r = t.run(&["--json", "--identity", path_str(&dir), "id"]);
    r.assert_code(0);
    let ev = r.one("id");
    assert_eq!(ev["key"], "ecdsa-p256", "{ev}");
    let fp = ev["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(t.id(&old), fp, "the fingerprint is stable");
    assert_eq!(
        fs::read_to_string(&key_path).unwrap(),
        key.serialize_pem(),
        "the old key is kept"
    );
    let new_fp = t.id(&["--ephemeral"]);
    let new = t.run(&["--json", "--ephemeral", "id"]);
    assert_eq!(new.one("id")["key"], "ed25519", "{new}");
    assert_fingerprint(&new_fp);

    // The old identity listens; a new one sends with its ticket.
    let out = t.mkdir("work/old-listens");
    let file = t.write("src/f.txt", b"to the old one");
    let mut l = t.listen_args(&[
        "--json",
        "--identity",
        path_str(&dir),
        "listen",
        "--bind",
        "127.0.0.1:0",
        "--out",
        path_str(&out),
    ]);
    assert_eq!(l.fingerprint, fp);
    let r = t.send(&[l.ticket.as_str(), path_str(&file)]);
    r.assert_code(0);
    assert_eq!(r.one("sent")["peer_fingerprint"], fp.as_str());
    l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"to the old one");

    // A new identity listens and admits only the old one, which sends.
    let out = t.mkdir("work/new-listens");
    let file = t.write("src/g.txt", b"from the old one");
    let mut l = t.listen(&out, &["--allow", fp.as_str()]);
    send_as(&t, &mut l, &dir, &fp, &file);
    assert_eq!(fs::read(out.join("g.txt")).unwrap(), b"from the old one");
}
