//! Helpers for the unit tests of `tls`: rule checks, a CA made in the test and the
//! certificates it issues, key files, and TLS handshakes in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::config::provider;
use super::identity::new_key;
use super::{CaTrust, Fingerprint, Refusal, Side, TrustRules, SERVER_NAME};

/// Applies `rules` to `cert` (and its chain) as a peer playing `side`, now.
pub(super) fn check_as(
    rules: &TrustRules,
    chain: &[CertificateDer<'static>],
    side: Side,
) -> Result<Fingerprint, Refusal> {
    let algorithms = provider().signature_verification_algorithms;
    rules.check(&chain[0], &chain[1..], UnixTime::now(), side, &algorithms)
}

pub(super) fn check(
    rules: &TrustRules,
    chain: &[CertificateDer<'static>],
) -> Result<Fingerprint, Refusal> {
    check_as(rules, chain, Side::Server)
}

/// A CA made here, and certificates it issues.
pub(super) struct TestCa {
    pub(super) issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub(super) cert: CertificateDer<'static>,
}

/// Days from now, as an rcgen time.
pub(super) fn days(n: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(n)
}

impl TestCa {
    pub(super) fn new(name: &str) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        Self::with_key(name, key)
    }

    pub(super) fn with_key(name: &str, key: rcgen::KeyPair) -> Self {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = days(-30);
        params.not_after = days(3650);
        let cert = params.self_signed(&key).unwrap().der().clone();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            cert,
        }
    }

    pub(super) fn trust(&self) -> CaTrust {
        CaTrust::from_certificates(std::slice::from_ref(&self.cert)).unwrap()
    }

    /// Issues a certificate for `key`, shaped by `edit`.
    pub(super) fn issue(
        &self,
        key: &rcgen::KeyPair,
        edit: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params.not_before = days(-1);
        params.not_after = days(30);
        edit(&mut params);
        params.signed_by(key, &self.issuer).unwrap().der().clone()
    }
}

/// A key for a test peer, of the type qp2p makes.
pub(super) fn key() -> rcgen::KeyPair {
    new_key().unwrap()
}

pub(super) fn ca_rules(ca: &TestCa) -> TrustRules {
    TrustRules::any().with_ca(Some(ca.trust()))
}

/// Writes `text` to `name` in `dir` with `mode`.
pub(super) fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    #[cfg(not(unix))]
    let _ = mode;
    path
}

/// Runs a TLS handshake in memory between a client and a server configuration
/// (QUIC carries the same messages); the error is the side that failed and why.
pub(super) fn handshake(
    client: rustls::ClientConfig,
    server: rustls::ServerConfig,
) -> Result<(), (Side, rustls::Error)> {
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
    // Moves what `from` has to send into `to`; false when there was nothing.
    fn pass(
        from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    ) -> Result<bool, rustls::Error> {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
        }
        to.process_new_packets()?;
        Ok(!bytes.is_empty())
    }
    loop {
        let to_server = pass(&mut c, &mut s).map_err(|e| (Side::Client, e))?;
        let to_client = pass(&mut s, &mut c).map_err(|e| (Side::Server, e))?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
        assert!(to_server || to_client, "handshake stalled");
    }
}
