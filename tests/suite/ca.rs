//! Trust through a certificate authority: `--ca` on both sides, CA-issued identities
//! (`--cert/--key` and a CA-issued `cert.pem` in the identity directory), `id --csr`,
//! and pins combined with CA trust. The CA is made here with rcgen; every certificate
//! and key is a PEM file in the test's scratch directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::util::{
    assert_fingerprint, list_files, path_str, set_mode, Listener, Outcome, TestDir, EVENT_TIMEOUT,
};

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, as a PEM file in the test directory.
    pem: PathBuf,
}

/// A CA-issued identity: certificate and key files, and the fingerprint of the key.
struct Issued {
    cert: PathBuf,
    key: PathBuf,
    fingerprint: String,
}

impl Issued {
    /// Global options that select this identity.
    fn args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            path_str(&self.cert).into(),
            "--key".into(),
            path_str(&self.key).into(),
        ]
    }
}

/// A validity period, years inclusive, from 1 January to 1 January.
type Years = (i32, i32);
const VALID: Years = (2020, 2090);
const EXPIRED: Years = (2020, 2021);
const NOT_YET_VALID: Years = (2090, 2091);

impl Ca {
    fn new(t: &TestDir, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        // Two CAs of one test may share a name (an impostor): never one file.
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let file = format!("ca-{n}-{}.pem", name.replace(' ', "-"));
        let pem = t.write(&file, cert.pem().as_bytes());
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// Issues a certificate for a fresh key, valid for `years`, named `CN=name`; writes
    /// `name.crt` and `name.key` (mode 0600).
    fn issue(&self, t: &TestDir, name: &str, years: Years) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = t.write(&format!("{name}.crt"), cert.pem().as_bytes());
        let key_path = write_key(t, &format!("{name}.key"), &key.serialize_pem());
        // The fingerprint is qp2p's to compute: ask it (the key decides, not the CA).
        let fingerprint = t.id(&["--cert", path_str(&cert_path), "--key", path_str(&key_path)]);
        Issued {
            cert: cert_path,
            key: key_path,
            fingerprint,
        }
    }

    fn arg(&self) -> &str {
        path_str(&self.pem)
    }
}

fn write_key(t: &TestDir, rel: &str, pem: &str) -> PathBuf {
    let path = t.write(rel, pem.as_bytes());
    set_mode(&path, 0o600);
    path
}

/// `qp2p --json GLOBAL listen --bind 127.0.0.1:0 --out OUT EXTRA`.
fn listen(t: &TestDir, global: &[String], out: &Path, extra: &[&str]) -> Listener {
    let mut args: Vec<String> = vec!["--json".into()];
    args.extend(global.iter().cloned());
    args.extend(["listen", "--bind", "127.0.0.1:0", "--out", path_str(out)].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    t.listen_args(&args)
}

/// `qp2p --json GLOBAL send ARGS`.
fn send(t: &TestDir, global: &[String], args: &[&str]) -> Outcome {
    let mut all: Vec<String> = vec!["--json".into()];
    all.extend(global.iter().cloned());
    all.push("send".into());
    all.extend(args.iter().map(|s| s.to_string()));
    t.run(&all)
}

fn ephemeral() -> Vec<String> {
    vec!["--ephemeral".into()]
}

/// The message of a failed `--json` run's error event.
fn error_message(r: &Outcome) -> String {
    r.events
        .last()
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Refused for identity reasons: exit 4 with `reason` in the error, nothing sent,
/// nothing received or stored, and the listener still runs.
fn assert_refused(r: &Outcome, l: &mut Listener, out: &Path, reason: &str) {
    r.assert_json_error(4);
    let message = error_message(r);
    assert!(
        message.contains(reason),
        "the error should say {reason:?}: {message:?}\n{r}"
    );
    assert!(r.named("sent").is_empty(), "{r}");
    l.assert_no_event("received", Duration::from_millis(500));
    assert_eq!(
        list_files(out),
        Vec::<PathBuf>::new(),
        "DIR after a refusal"
    );
    l.assert_running();
}

/// A sender with `--ca` is given a listener whose certificate (from `listener`: the
/// global options that pick its identity) is refused for `reason`.
fn send_ca_refuses(listener: impl FnOnce(&TestDir) -> Vec<String>, reason: &str) {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let global = listener(&t);
    let mut l = listen(&t, &global, &out, &[]);
    let r = send(
        &t,
        &ephemeral(),
        &["--ca", ca.arg(), &l.addr, path_str(&file)],
    );
    assert_refused(&r, &mut l, &out, reason);
}

/// A listener with `--ca` is sent to by a sender whose certificate (from `sender`) it
/// refuses; the sender learns `reason` from the TLS alert (and `local`, if given, from
/// its own start-up warning about its certificate).
fn listen_ca_refuses(sender: impl FnOnce(&TestDir) -> Vec<String>, reason: &str, local: &str) {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let global = sender(&t);
    let mut l = listen(&t, &ephemeral(), &out, &["--ca", ca.arg()]);
    let r = send(&t, &global, &[&l.ticket, path_str(&file)]);
    assert_refused(&r, &mut l, &out, reason);
    assert!(r.stderr.contains(local), "stderr should say {local:?}\n{r}");
}

/// The control: `send --ca` reaches a listener whose certificate the CA issued; the
/// peer counts as authenticated (no warning), and the file arrives.
#[test]
fn send_ca_accepts_a_listener_the_ca_issued() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let listener = ca.issue(&t, "listener", VALID);
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"for the group");
    let mut l = listen(&t, &listener.args(), &out, &[]);
    assert_eq!(l.fingerprint, listener.fingerprint);
    let r = send(
        &t,
        &ephemeral(),
        &["--ca", ca.arg(), &l.addr, path_str(&file)],
    );
    r.assert_code(0);
    assert_eq!(
        r.one("sent")["peer_fingerprint"],
        listener.fingerprint.as_str()
    );
    assert!(
        !r.stderr.contains("not authenticated"),
        "a peer the CA vouches for is authenticated\n{r}"
    );
    l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"for the group");
}

/// The control the other way: `listen --ca` admits a sender the CA issued.
#[test]
fn listen_ca_admits_a_sender_the_ca_issued() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let sender = ca.issue(&t, "sender", VALID);
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"from a member");
    let mut l = listen(&t, &ephemeral(), &out, &["--ca", ca.arg()]);
    let r = send(&t, &sender.args(), &[&l.ticket, path_str(&file)]);
    r.assert_code(0);
    let recv = l.wait_for("received", EVENT_TIMEOUT);
    assert_eq!(recv["peer_fingerprint"], sender.fingerprint.as_str());
    assert_eq!(fs::read(out.join("f.txt")).unwrap(), b"from a member");
}

/// Both at once, several files over one pooled connection: each side has a CA-issued
/// identity and checks the other's with `--ca`.
#[test]
fn ca_trust_both_ways_on_one_connection() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let listener = ca.issue(&t, "listener", VALID);
    let sender = ca.issue(&t, "sender", VALID);
    let out = t.mkdir("work/out");
    let a = t.write("src/a.txt", b"a");
    let b = t.write("src/b.txt", b"b");
    let mut l = listen(&t, &listener.args(), &out, &["--ca", ca.arg()]);
    let r = send(
        &t,
        &sender.args(),
        &["--ca", ca.arg(), &l.addr, path_str(&a), path_str(&b)],
    );
    r.assert_code(0);
    let sent = r.named("sent");
    assert_eq!(sent.len(), 2, "{r}");
    assert_eq!(sent[1]["reused_connection"], true, "{r}");
    for _ in 0..2 {
        let recv = l.wait_for("received", EVENT_TIMEOUT);
        assert_eq!(recv["peer_fingerprint"], sender.fingerprint.as_str());
    }
}

#[test]
fn send_ca_refuses_an_expired_listener() {
    send_ca_refuses(
        |t| Ca::new(t, "Group CA").issue(t, "listener", EXPIRED).args(),
        "peer certificate rejected: expired (not after 2021-01-01T00:00:00Z)",
    );
}

#[test]
fn send_ca_refuses_a_listener_not_yet_valid() {
    send_ca_refuses(
        |t| {
            Ca::new(t, "Group CA")
                .issue(t, "listener", NOT_YET_VALID)
                .args()
        },
        "peer certificate rejected: not yet valid (not before 2090-01-01T00:00:00Z)",
    );
}

/// A certificate from a CA that is not the one trusted — even one that took the
/// trusted CA's name is caught (by its signature).
#[test]
fn send_ca_refuses_a_listener_of_another_ca() {
    send_ca_refuses(
        |t| Ca::new(t, "Other CA").issue(t, "listener", VALID).args(),
        "peer certificate rejected: unknown issuer \"CN=Other CA\"",
    );
    send_ca_refuses(
        |t| Ca::new(t, "Group CA").issue(t, "listener", VALID).args(),
        "peer certificate rejected: bad signature",
    );
}

/// An ordinary qp2p listener (self-signed identity) is not vouched for by any CA.
#[test]
fn send_ca_refuses_a_self_signed_listener() {
    send_ca_refuses(
        |_| ephemeral(),
        "peer certificate rejected: self-signed, not issued by a trusted CA",
    );
}

#[test]
fn listen_ca_refuses_an_expired_sender() {
    listen_ca_refuses(
        |t| Ca::new(t, "Group CA").issue(t, "sender", EXPIRED).args(),
        "certificate_expired",
        "our certificate is expired (not after 2021-01-01T00:00:00Z)",
    );
}

#[test]
fn listen_ca_refuses_a_sender_not_yet_valid() {
    listen_ca_refuses(
        |t| {
            Ca::new(t, "Group CA")
                .issue(t, "sender", NOT_YET_VALID)
                .args()
        },
        "certificate_expired",
        "our certificate is not yet valid (not before 2090-01-01T00:00:00Z)",
    );
}

#[test]
fn listen_ca_refuses_a_sender_of_another_ca() {
    listen_ca_refuses(
        |t| Ca::new(t, "Other CA").issue(t, "sender", VALID).args(),
        "unknown_ca",
        "not issued by a CA it trusts",
    );
}

#[test]
fn listen_ca_refuses_a_self_signed_sender() {
    listen_ca_refuses(|_| ephemeral(), "unknown_ca", "a self-signed identity");
}

/// The listener says in its log (at info) why it refused a sender.
#[test]
fn listen_ca_logs_why_it_refused() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let expired = ca.issue(&t, "sender", EXPIRED);
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let mut l = listen(&t, &["-v".to_string()], &out, &["--ca", ca.arg()]);
    let r = send(&t, &expired.args(), &[&l.ticket, path_str(&file)]);
    assert_refused(&r, &mut l, &out, "certificate_expired");
    let deadline = std::time::Instant::now() + EVENT_TIMEOUT;
    while !l
        .stderr_text()
        .contains("expired (not after 2021-01-01T00:00:00Z)")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no reason in the listener's log\n{}",
            l.describe()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        l.stderr_text().contains(&expired.fingerprint),
        "{}",
        l.describe()
    );
}

/// Pins and CA trust combine: a member of the group with a fingerprint the allow-list
/// does not name is refused, and the one it names is admitted.
#[test]
fn ca_issued_sender_not_on_the_allow_list_is_refused() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let sender = ca.issue(&t, "sender", VALID);
    let other = t.stranger_fingerprint();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let mut l = listen(
        &t,
        &ephemeral(),
        &out,
        &["--ca", ca.arg(), "--allow", &other],
    );
    let r = send(&t, &sender.args(), &[&l.ticket, path_str(&file)]);
    assert_refused(&r, &mut l, &out, "the peer refused our identity");

    let mut l = listen(
        &t,
        &ephemeral(),
        &out,
        &["--ca", ca.arg(), "--allow", &sender.fingerprint],
    );
    let r = send(&t, &sender.args(), &[&l.ticket, path_str(&file)]);
    r.assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
}

/// The sender's side of the same: `--ca` and a ticket for another fingerprint refuse
/// a listener the CA issued.
#[test]
fn ca_issued_listener_with_another_pinned_fingerprint_is_refused() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let listener = ca.issue(&t, "listener", VALID);
    let other = t.stranger_fingerprint();
    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"secret");
    let mut l = listen(&t, &listener.args(), &out, &[]);
    let ticket = format!("{other}@{}", l.addr);
    let r = send(
        &t,
        &ephemeral(),
        &["--ca", ca.arg(), &ticket, path_str(&file)],
    );
    assert_refused(
        &r,
        &mut l,
        &out,
        &format!("showed fingerprint {}", listener.fingerprint),
    );
}

/// `id --csr` prints a request for the identity's key that a CA can sign; the signed
/// certificate saved as `cert.pem` in the identity directory makes a CA-issued
/// identity with the same fingerprint, which `id` reports and `send --ca` accepts.
#[test]
fn csr_signed_by_the_ca_becomes_the_identity() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let dir = t.path().join("id");
    let id_args = ["--identity", path_str(&dir)];
    let fp = t.id(&id_args);

    let r = t.run(&["--identity", path_str(&dir), "id", "--csr", "--cn", "alice"]);
    r.assert_code(0);
    let pem = String::from_utf8(r.stdout.clone()).unwrap();
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"),
        "{r}"
    );
    // A CA can read and sign it (the subject it asked for is checked below, in the
    // certificate the CA made from it).
    let mut request = CertificateSigningRequestParams::from_pem(&pem).expect("a valid CSR");
    request.params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    request.params.not_after = rcgen::date_time_ymd(2090, 1, 1);
    let cert = request.signed_by(&ca.issuer).unwrap();
    fs::write(dir.join("cert.pem"), cert.pem()).unwrap();

    let r = t.run(&["--json", "--identity", path_str(&dir), "id"]);
    r.assert_code(0);
    let ev = r.one("id");
    assert_eq!(
        ev["fingerprint"],
        fp.as_str(),
        "the key decides the fingerprint"
    );
    assert_eq!(ev["kind"], "ca-issued", "{ev}");
    // The request was for the identity's own (Ed25519) key; the CA's is P-256.
    assert_eq!(ev["key"], "ed25519", "{ev}");
    assert_eq!(ev["subject"], "CN=alice", "{ev}");
    assert_eq!(ev["issuer"], "CN=Group CA", "{ev}");
    assert_eq!(ev["not_after"], "2090-01-01T00:00:00Z", "{ev}");

    let out = t.mkdir("work/out");
    let file = t.write("src/f.txt", b"signed");
    let mut l = listen(&t, &id_args.map(String::from), &out, &[]);
    let r = send(
        &t,
        &ephemeral(),
        &["--ca", ca.arg(), &l.addr, path_str(&file)],
    );
    r.assert_code(0);
    l.wait_for("received", EVENT_TIMEOUT);
}

/// `id` says which kind of identity is in use, its subject and expiry: on stderr for
/// people, as fields of the `id` event for scripts.
#[test]
fn id_reports_kind_subject_and_expiry() {
    let t = TestDir::new();
    let r = t.run(&["--json", "--ephemeral", "id"]);
    r.assert_code(0);
    let ev = r.one("id");
    assert_eq!(ev["kind"], "self-signed", "{ev}");
    assert_eq!(ev["key"], "ed25519", "{ev}");
    assert_eq!(ev["subject"], "CN=qp2p peer", "{ev}");
    assert_eq!(ev["not_after"], "4096-01-01T00:00:00Z", "{ev}");

    let ca = Ca::new(&t, "Group CA");
    let me = ca.issue(&t, "alice", VALID);
    let mut args = me.args();
    args.extend(["--json".into(), "id".into()]);
    let r = t.run(&args);
    r.assert_code(0);
    let ev = r.one("id");
    assert_eq!(ev["fingerprint"], me.fingerprint.as_str());
    assert_eq!(ev["kind"], "ca-issued", "{ev}");
    // The CA chose the key type (P-256 here), not qp2p.
    assert_eq!(ev["key"], "ecdsa-p256", "{ev}");
    assert_eq!(ev["subject"], "CN=alice", "{ev}");
    assert_eq!(ev["not_after"], "2090-01-01T00:00:00Z", "{ev}");
    assert_eq!(ev["cert"], path_str(&me.cert), "{ev}");

    let mut args = me.args();
    args.push("id".into());
    let r = t.run(&args);
    r.assert_code(0);
    assert_fingerprint(String::from_utf8_lossy(&r.stdout).trim_end());
    assert!(
        r.stderr
            .contains("CA-issued by CN=Group CA, subject CN=alice")
            && r.stderr
                .contains("until 2090-01-01T00:00:00Z, ecdsa-p256 key"),
        "{r}"
    );
}

/// A `--key` file that others can read is refused, as the identity directory's is.
#[cfg(unix)]
#[test]
fn key_file_readable_by_others_is_refused() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let me = ca.issue(&t, "alice", VALID);
    set_mode(&me.key, 0o644);
    let mut args = me.args();
    args.extend(["--json".into(), "id".into()]);
    let r = t.run(&args);
    r.assert_json_error(1);
    assert!(error_message(&r).contains("chmod 600"), "{r}");
}

/// A certificate with a key it was not issued for is refused at start, not in every
/// handshake later.
#[test]
fn certificate_for_another_key_is_refused() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let alice = ca.issue(&t, "alice", VALID);
    let bob = ca.issue(&t, "bob", VALID);
    let r = t.run(&[
        "--json",
        "--cert",
        path_str(&alice.cert),
        "--key",
        path_str(&bob.key),
        "id",
    ]);
    r.assert_json_error(1);
    assert!(error_message(&r).contains("is not for the key"), "{r}");
}

/// A `--ca` file without a certificate is a usage error, and `--csr` refuses an
/// ephemeral identity (its key would be gone).
#[test]
fn bad_ca_file_and_ephemeral_csr_are_usage_errors() {
    let t = TestDir::new();
    let empty = t.write("empty.pem", b"");
    let r = t.run(&[
        "--json",
        "--ephemeral",
        "send",
        "--ca",
        path_str(&empty),
        "127.0.0.1:9",
        "-",
    ]);
    r.assert_json_error(2);
    assert!(error_message(&r).contains("no certificate"), "{r}");
    let r = t.run(&["--json", "--ephemeral", "id", "--csr"]);
    r.assert_json_error(2);
}

/// `race-connect --ca`: a listener the CA did not issue cannot win; the member does.
#[test]
fn race_connect_ca_wins_only_with_a_member() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let member = ca.issue(&t, "member", VALID);
    let out = t.mkdir("work/out");
    let stranger = listen(&t, &ephemeral(), &out, &[]);
    let l = listen(&t, &member.args(), &out, &[]);
    let r = t.run(&[
        "--json",
        "--ephemeral",
        "race-connect",
        "--ca",
        ca.arg(),
        &stranger.addr,
        &l.addr,
    ]);
    r.assert_code(0);
    let winner = r.one("winner");
    assert_eq!(winner["addr"], l.addr.as_str(), "{r}");
    assert_eq!(winner["fingerprint"], member.fingerprint.as_str(), "{r}");
    let loser = r.one("loser");
    if loser["outcome"] == "failed" {
        let error = loser["error"].as_str().unwrap_or_default();
        assert!(error.contains("self-signed"), "{r}");
    }
}

/// `bench --peer --ca` refuses a listener the CA did not issue (exit 4), and `--ca`
/// without `--peer` is a usage error (the in-process ends have fresh identities).
#[test]
fn bench_peer_ca_refuses_a_stranger() {
    let t = TestDir::new();
    let ca = Ca::new(&t, "Group CA");
    let out = t.mkdir("work/out");
    let stranger = listen(&t, &ephemeral(), &out, &[]);
    let r = t.run(&[
        "--json",
        "--ephemeral",
        "bench",
        "--peer",
        &stranger.addr,
        "--ca",
        ca.arg(),
        "--scenario",
        "latency",
        "--count",
        "10",
    ]);
    r.assert_json_error(4);
    assert!(error_message(&r).contains("self-signed"), "{r}");
    let r = t.run(&["--json", "--ephemeral", "bench", "--ca", ca.arg()]);
    r.assert_json_error(2);
}

/// A certificate signed without extensions (`openssl x509 -req` makes X.509 v1) is
/// refused with a message that says so and what to do, not just "bad encoding".
#[test]
fn an_x509_v1_certificate_is_refused_with_the_reason() {
    let t = TestDir::new();
    // Copied, because git does not keep the key file's 0600 (and qp2p insists on it).
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let cert = t.write(
        "v1/cert.pem",
        &fs::read(data.join("x509-v1-cert.pem")).unwrap(),
    );
    let key = t.write(
        "v1/key.pem",
        &fs::read(data.join("x509-v1-key.pem")).unwrap(),
    );
    set_mode(&key, 0o600);
    let r = t.run(&["--cert", path_str(&cert), "--key", path_str(&key), "id"]);
    assert_ne!(r.code, Some(0));
    r.assert_no_panic();
    let err = &r.stderr;
    assert!(
        err.contains("X.509 v1, only v3 is accepted") && err.contains("-copy_extensions"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
