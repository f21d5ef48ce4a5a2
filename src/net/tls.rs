//! TLS identity and peer verification.
//!
//! Every qp2p process holds an [`Identity`]: a key pair and a self-signed certificate,
//! either persistent (`key.pem` + `cert.pem` in an identity directory, the key file mode
//! 0600) or ephemeral (in memory, fresh each run). A peer is named by its
//! [`Fingerprint`]: the SHA-256 of its certificate's SubjectPublicKeyInfo, written as
//! 52 lowercase base32 characters. Hashing the public key rather than the whole
//! certificate means a re-issued certificate for the same key keeps its name.
//!
//! Both sides always present a certificate (mutual TLS 1.3). Which peers are accepted is
//! decided by one [`PeerVerifier`] holding a set of [`TrustRules`]; the same type serves
//! as rustls' client *and* server certificate verifier, so there is one code path for
//! every rule:
//! - *pinned*: the peer's fingerprint must be one of a set (a ticket or `--expect` on
//!   the sender; `--allow`/`--allow-file` on the listener);
//! - no rule at all: any peer is accepted; the caller sees its fingerprint and warns.
//!   Each rule that is given must hold.
//!
//! What could go wrong, and how it is prevented:
//! - *A peer shows someone else's certificate.* The verifier never skips the handshake
//!   signature: `verify_tls13_signature` checks that the peer signed the transcript with
//!   the key in the certificate it showed, so holding a copy of a certificate is not
//!   enough.
//! - *Resumption skipping verification.* Session tickets and resumption are disabled on
//!   both sides, so every connection is verified from its certificate.
//! - *A key file readable by others.* Loading refuses it with advice, as ssh does; a
//!   corrupt identity is reported, never silently replaced.
//! - *Downgrade.* Only TLS 1.3 is offered and accepted, with ALPN `qp2p/1`.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// The ALPN protocol id of this wire protocol version.
pub const ALPN: &[u8] = b"qp2p/1";

/// The name a client puts in its SNI; peers are addressed by IP, so it is never checked.
pub const SERVER_NAME: &str = "qp2p";

const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";

/// Errors loading or creating an identity, or building a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The identity directory or one of its files could not be read or written.
    #[error("identity {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file may be read by other users.
    #[error("identity key {path} is accessible by others (mode {mode:o}); run `chmod 600 {path}`")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file of the identity exists but cannot be parsed.
    #[error("identity {path} is corrupt: {reason}; move it away to create a new identity")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("could not generate an identity: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A fingerprint could not be parsed.
    #[error("invalid fingerprint {0:?}: expected 52 characters of base32 (a-z, 2-7)")]
    BadFingerprint(String),
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo: the name of a peer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of the public key in a DER certificate.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, rustls::Error> {
        let parsed = webpki::EndEntityCert::try_from(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = parsed.subject_public_key_info();
        Ok(Self(Sha256::digest(spki.as_ref()).into()))
    }

    /// The fingerprint of the peer of an established connection, if it showed a
    /// certificate (it always has: client authentication is mandatory).
    pub fn of_peer(conn: &quinn::Connection) -> Option<Self> {
        let identity = conn.peer_identity()?;
        let certs = identity.downcast_ref::<Vec<CertificateDer<'static>>>()?;
        Self::of_certificate(certs.first()?).ok()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32().encode(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let bytes = base32()
            .decode(lower.as_bytes())
            .map_err(|_| TlsError::BadFingerprint(s.to_string()))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| TlsError::BadFingerprint(s.to_string()))?;
        Ok(Self(array))
    }
}

fn base32() -> data_encoding::Encoding {
    let mut spec = data_encoding::Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    // The specification is a constant that is known to be valid.
    spec.encoding().expect("valid base32 specification")
}

/// A key pair and the certificate that carries its public key.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain presented to peers (the leaf first).
    pub certs: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    /// The fingerprint peers see.
    pub fingerprint: Fingerprint,
    /// Where the identity is stored; `None` for an ephemeral one.
    pub dir: Option<PathBuf>,
}

impl Identity {
    /// A fresh identity that lives in memory only.
    pub fn ephemeral() -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        Self::from_key(key, None)
    }

    /// Loads the identity stored in `dir`, creating it (and `dir`) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        let key_path = dir.join(KEY_FILE);
        match std::fs::symlink_metadata(&key_path) {
            Ok(_) => Self::load(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(dir),
            Err(source) => Err(TlsError::Io {
                path: key_path,
                source,
            }),
        }
    }

    fn load(dir: &Path) -> Result<Self, TlsError> {
        let key_path = dir.join(KEY_FILE);
        check_key_permissions(&key_path)?;
        let pem = std::fs::read_to_string(&key_path).map_err(|source| TlsError::Io {
            path: key_path.clone(),
            source,
        })?;
        let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| TlsError::Corrupt {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        // The certificate is derived from the key; a missing one is simply made again.
        Self::from_key(key, Some(dir.to_path_buf()))
    }

    fn create(dir: &Path) -> Result<Self, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        create_private_dir(dir).map_err(io(dir))?;
        let key = rcgen::KeyPair::generate()?;
        let key_path = dir.join(KEY_FILE);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_0600()
            .open(&key_path)
            .map_err(io(&key_path))?;
        file.write_all(key.serialize_pem().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io(&key_path))?;
        let identity = Self::from_key(key, Some(dir.to_path_buf()))?;
        let cert_path = dir.join(CERT_FILE);
        let cert_pem = pem_certificate(&identity.certs[0]);
        std::fs::write(&cert_path, cert_pem).map_err(io(&cert_path))?;
        Ok(identity)
    }

    fn from_key(key: rcgen::KeyPair, dir: Option<PathBuf>) -> Result<Self, TlsError> {
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "qp2p peer");
        // A self-signed identity names a key, not a period of trust: make it valid for
        // as long as X.509 can say, so a clock that is off never breaks a pinned peer.
        params.not_before = rcgen::date_time_ymd(1975, 1, 1);
        params.not_after = rcgen::date_time_ymd(4096, 1, 1);
        let cert = params.self_signed(&key)?;
        let cert_der = cert.der().clone();
        let fingerprint = Fingerprint::of_certificate(&cert_der)?;
        Ok(Self {
            certs: vec![cert_der],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            fingerprint,
            dir,
        })
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

fn pem_certificate(cert: &CertificateDer<'_>) -> String {
    let b64 = data_encoding::BASE64.encode(cert.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

trait OpenOptionsExt {
    fn mode_0600(&mut self) -> &mut Self;
}

impl OpenOptionsExt for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600);
        self
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| TlsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TlsError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

/// What a peer's certificate must satisfy. Every rule that is set must hold; with none
/// set, any peer that proves possession of its key is accepted.
#[derive(Debug, Clone, Default)]
pub struct TrustRules {
    /// The peer's fingerprint must be one of these (ticket, `--expect`, `--allow`).
    pub pinned: Option<BTreeSet<Fingerprint>>,
}

impl TrustRules {
    /// Rules that accept any peer.
    pub fn any() -> Self {
        Self::default()
    }

    /// Rules that accept exactly one fingerprint.
    pub fn pinned_to(fp: Fingerprint) -> Self {
        Self {
            pinned: Some([fp].into_iter().collect()),
        }
    }

    /// Whether any rule restricts the peer (if not, the peer is not authenticated).
    pub fn authenticates(&self) -> bool {
        self.pinned.is_some()
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let fp = Fingerprint::of_certificate(end_entity)?;
        if let Some(pinned) = &self.pinned {
            if !pinned.contains(&fp) {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(NotTrusted(fp))),
                )));
            }
        }
        Ok(())
    }
}

/// The peer's fingerprint is not one that a rule admits.
struct NotTrusted(Fingerprint);

// rustls shows `CertificateError::Other` with `{:?}`: make that readable in logs.
impl fmt::Debug for NotTrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for NotTrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer fingerprint {} is not trusted", self.0)
    }
}

impl std::error::Error for NotTrusted {}

/// The verifier for both directions: applies [`TrustRules`] and always checks the
/// handshake signature.
#[derive(Debug)]
pub struct PeerVerifier {
    rules: TrustRules,
    algorithms: WebPkiSupportedAlgorithms,
    /// The fingerprint of the last certificate checked, for error messages.
    seen: std::sync::Mutex<Option<Fingerprint>>,
}

impl PeerVerifier {
    fn new(rules: TrustRules, provider: &CryptoProvider) -> Self {
        Self {
            rules,
            algorithms: provider.signature_verification_algorithms,
            seen: std::sync::Mutex::new(None),
        }
    }

    /// The fingerprint of the last certificate this verifier was shown.
    pub fn seen(&self) -> Option<Fingerprint> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rules this verifier applies.
    pub fn rules(&self) -> &TrustRules {
        &self.rules
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if let Ok(fp) = Fingerprint::of_certificate(end_entity) {
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp);
        }
        self.rules.check(end_entity)
    }

    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// ring's provider with AES-128-GCM preferred: as strong as needed for a session key,
/// and a quarter cheaper per byte than AES-256 (payload encryption is the largest cost
/// after hashing in a transfer).
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// The rustls server configuration: our identity, client certificates required and
/// checked against `rules`, TLS 1.3 only, no session tickets.
pub fn server_config(
    identity: &Identity,
    rules: TrustRules,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PeerVerifier::new(rules, &provider));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.certs.clone(), identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The rustls client configuration: our identity as client certificate, the server
/// checked against `rules`, TLS 1.3 only, no resumption. The verifier is returned too:
/// after a refusal it tells which fingerprint the peer showed.
pub fn client_config(
    identity: &Identity,
    rules: TrustRules,
) -> Result<(rustls::ClientConfig, Arc<PeerVerifier>), TlsError> {
    let provider = provider();
    let verifier = Arc::new(PeerVerifier::new(rules, &provider));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_auth_cert(identity.certs.clone(), identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok((config, verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_through_text() {
        let id = Identity::ephemeral().unwrap();
        let text = id.fingerprint.to_string();
        assert_eq!(text.len(), 52);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        assert_eq!(text.parse::<Fingerprint>().unwrap(), id.fingerprint);
        assert_eq!(
            text.to_ascii_uppercase().parse::<Fingerprint>().unwrap(),
            id.fingerprint
        );
    }

    #[test]
    fn bad_fingerprints_are_refused() {
        for bad in ["", "abc", &"a".repeat(51), &"a".repeat(53), &"1".repeat(52)] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn persistent_identity_is_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let a = Identity::load_or_create(&path).unwrap();
        let b = Identity::load_or_create(&path).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::KeyPermissions { .. }), "{err}");
    }

    #[test]
    fn corrupt_key_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join(KEY_FILE);
        std::fs::write(&key, "not a key").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "not a key");
    }

    #[test]
    fn pinned_rule_admits_only_its_fingerprint() {
        let a = Identity::ephemeral().unwrap();
        let b = Identity::ephemeral().unwrap();
        let rules = TrustRules::pinned_to(a.fingerprint);
        assert!(rules.check(&a.certs[0]).is_ok());
        assert!(rules.check(&b.certs[0]).is_err());
        assert!(TrustRules::any().check(&b.certs[0]).is_ok());
    }
}
