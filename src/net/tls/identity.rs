//! Identities: a key pair and the certificate that carries its public key, and the key
//! store on disk.
//!
//! The certificate is of one of two [`IdentityKind`]s:
//! - *self-signed*, made by qp2p from the key: persistent (`key.pem` + `cert.pem` in an
//!   identity directory, the key file mode 0600) or ephemeral (in memory, fresh each run);
//! - *CA-issued*: `--cert FILE --key FILE` (the certificate file may hold the chain, leaf
//!   first), or a `cert.pem` in the identity directory that a CA issued for its
//!   `key.pem`. A certificate counts as CA-issued when its issuer differs from its
//!   subject: qp2p's own certificate names itself as its issuer, a CA names itself (a CA
//!   must not give its own name to a peer). [`Identity::csr`] makes a signing request for
//!   the key (`qp2p id --csr`), so the key never leaves the machine.
//!
//! Keys: qp2p makes Ed25519 keys (persistent identities created on first use and
//! `--ephemeral` ones): signing and, above all, verifying an Ed25519 handshake signature
//! costs less than ECDSA P-256 in ring, and each full handshake does two of each. Any key
//! rustls' ring provider can sign with is accepted when loaded: an identity directory
//! made by an earlier qp2p (ECDSA P-256), and whatever key a CA issued a certificate for
//! (ECDSA P-256/P-384, Ed25519, RSA). The verifier accepts handshake signatures of all of
//! these, so identities of different key types talk to each other.
//!
//! A key file others can read is refused with advice, as ssh does (a `--key` file too);
//! a corrupt identity is reported, never silently replaced; a CA-issued certificate is
//! used only if it carries the public key of its key file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use sha2::{Digest, Sha256};

use super::certinfo::unreadable;
use super::config::{client_template, provider};
use super::{CertInfo, Fingerprint, TlsError, SERVER_NAME};

const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";

/// The subject (and issuer) common name of a self-signed identity.
const SELF_SIGNED_NAME: &str = "qp2p peer";

/// Where an identity's certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// Made by qp2p from the key; it names itself as its issuer.
    SelfSigned,
    /// Issued by a certificate authority: its issuer is not its subject.
    CaIssued,
}

impl IdentityKind {
    /// The name in reports: `self-signed` or `ca-issued`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::SelfSigned => "self-signed",
            IdentityKind::CaIssued => "ca-issued",
        }
    }
}

/// A key pair and the certificate that carries its public key.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain presented to peers (the leaf first).
    pub certs: Vec<CertificateDer<'static>>,
    pub(super) key: PrivateKeyDer<'static>,
    /// The chain with its loaded signing key, made once and shared by every TLS
    /// configuration (loading a key computes its public key: an elliptic-curve
    /// multiplication per dial otherwise).
    pub(super) certified: Arc<SingleCertAndKey>,
    /// The client configuration every dial starts from (see
    /// [`client_config`](super::client_config)).
    pub(super) client: rustls::ClientConfig,
    /// The fingerprint peers see.
    pub fingerprint: Fingerprint,
    /// Where the identity is stored; `None` for an ephemeral one or `--cert/--key`.
    pub dir: Option<PathBuf>,
    /// The certificate file the identity was loaded from (`--cert`, or a CA-issued
    /// `cert.pem`); `None` when qp2p made the certificate from the key.
    pub cert_file: Option<PathBuf>,
    /// Self-signed or CA-issued.
    pub kind: IdentityKind,
    /// Subject, issuer and validity of the leaf certificate.
    pub info: CertInfo,
}

impl Identity {
    /// A secret derived from the private key, for QUIC's stateless reset tokens: an
    /// endpoint restarted with the same identity resets the connections of its
    /// previous run, whose peers then notice at once instead of after an idle
    /// timeout (`endpoint`). One-way: it reveals nothing of the key.
    pub fn reset_secret(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"qp2p/1 stateless reset key\0");
        h.update(self.key.secret_der());
        h.finalize().into()
    }

    /// A fresh identity that lives in memory only.
    pub fn ephemeral() -> Result<Self, TlsError> {
        let key = new_key()?;
        Self::self_signed(key, None)
    }

    /// Loads the identity stored in `dir`, creating it (and `dir`) on first use. A
    /// `cert.pem` there that a CA issued for `key.pem` is used as it is; otherwise the
    /// self-signed certificate is made from the key.
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

    /// Loads a CA-issued (or any other) identity from a certificate file (PEM, the leaf
    /// first, then any intermediates) and its key file (PEM, mode 0600).
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let bad = |path: &Path| {
            let path = path.to_path_buf();
            move |reason| TlsError::BadFile { path, reason }
        };
        let key_der = read_key(key, bad(key))?;
        let chain = read_chain(cert, bad(cert))?;
        Self::with_chain(chain, key_der, Some((cert, key)), None)
    }

    fn load(dir: &Path) -> Result<Self, TlsError> {
        let corrupt = |path: &Path| {
            let path = path.to_path_buf();
            move |reason| TlsError::Corrupt { path, reason }
        };
        let key_path = dir.join(KEY_FILE);
        let key = read_key(&key_path, corrupt(&key_path))?;
        let cert_path = dir.join(CERT_FILE);
        if cert_path.exists() {
            let chain = read_chain(&cert_path, corrupt(&cert_path))?;
            let info = CertInfo::of(&chain[0]).map_err(corrupt(&cert_path))?;
            if !info.self_issued {
                return Self::with_chain(
                    chain,
                    key,
                    Some((&cert_path, &key_path)),
                    Some(dir.to_path_buf()),
                );
            }
        }
        // The self-signed certificate is derived from the key; a missing one is simply
        // made again.
        let key = rcgen::KeyPair::try_from(&key).map_err(|e| TlsError::Corrupt {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        Self::self_signed(key, Some(dir.to_path_buf()))
    }

    fn create(dir: &Path) -> Result<Self, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { path, source }
        };
        create_private_dir(dir).map_err(io(dir))?;
        let key = new_key()?;
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
        let identity = Self::self_signed(key, Some(dir.to_path_buf()))?;
        let cert_path = dir.join(CERT_FILE);
        let cert_pem = pem_certificate(&identity.certs[0]);
        std::fs::write(&cert_path, cert_pem).map_err(io(&cert_path))?;
        Ok(identity)
    }

    fn self_signed(key: rcgen::KeyPair, dir: Option<PathBuf>) -> Result<Self, TlsError> {
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, SELF_SIGNED_NAME);
        // A self-signed identity names a key, not a period of trust: make it valid for
        // as long as X.509 can say, so a clock that is off never breaks a pinned peer.
        params.not_before = rcgen::date_time_ymd(1975, 1, 1);
        params.not_after = rcgen::date_time_ymd(4096, 1, 1);
        let cert = params.self_signed(&key)?;
        let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        Self::with_chain(vec![cert.der().clone()], key, None, dir)
    }

    /// An identity from a certificate chain and its key; `files` are where they were
    /// read from (certificate, key), for messages.
    fn with_chain(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        files: Option<(&Path, &Path)>,
        dir: Option<PathBuf>,
    ) -> Result<Self, TlsError> {
        let bad = |file: Option<&Path>, reason: String| match file {
            Some(path) => TlsError::BadFile {
                path: path.to_path_buf(),
                reason,
            },
            // Only a certificate qp2p just made has no file; it is always well-formed.
            None => TlsError::Config(rustls::Error::General(reason)),
        };
        let Some(leaf) = certs.first() else {
            return Err(bad(files.map(|f| f.0), "no certificate".into()));
        };
        let signer = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| bad(files.map(|f| f.1), format!("unusable key: {e}")))?;
        let fingerprint = Fingerprint::of_certificate(leaf)
            .map_err(|e| bad(files.map(|f| f.0), unreadable(leaf, e)))?;
        if let Some(public) = signer.public_key() {
            if Fingerprint(Sha256::digest(public.as_ref()).into()) != fingerprint {
                let (cert, key) = files.unwrap_or((Path::new("(generated)"), Path::new("")));
                return Err(TlsError::KeyMismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                });
            }
        }
        let info = CertInfo::of(leaf).map_err(|e| bad(files.map(|f| f.0), e))?;
        let kind = if info.self_issued {
            IdentityKind::SelfSigned
        } else {
            IdentityKind::CaIssued
        };
        let certified = Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            certs.clone(),
            signer,
        )));
        let client = client_template(certified.clone())?;
        Ok(Self {
            certs,
            key,
            certified,
            client,
            fingerprint,
            dir,
            cert_file: files.map(|(cert, _)| cert.to_path_buf()),
            kind,
            info,
        })
    }

    /// A PEM certificate signing request (PKCS #10) for this identity's key, asking for
    /// subject `CN=common_name`, key usage digitalSignature and both TLS purposes
    /// (server and client authentication: one identity listens and sends).
    pub fn csr(&self, common_name: &str) -> Result<String, TlsError> {
        let key = rcgen::KeyPair::try_from(&self.key).map_err(|e| {
            TlsError::Csr(format!(
                "{e}; qp2p signs requests with PKCS#8 keys only: convert the key with \
                 `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`"
            ))
        })?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let csr = params.serialize_request(&key)?;
        Ok(csr.pem()?)
    }
}

/// The PKCS #8 v1 encoding of an Ed25519 private key (RFC 8410 section 7) up to the
/// 32 bytes of the key itself.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A key for a new identity: Ed25519 (see the module documentation for why), 32 random
/// bytes (RFC 8032), kept as PKCS #8 v1: the form OpenSSL reads too (ring's own, v2
/// with the public key, is refused by OpenSSL 3.0).
pub(super) fn new_key() -> Result<rcgen::KeyPair, TlsError> {
    use rand::RngCore;
    let mut der = ED25519_PKCS8_V1_PREFIX.to_vec();
    der.resize(ED25519_PKCS8_V1_PREFIX.len() + 32, 0);
    rand::rngs::OsRng
        .try_fill_bytes(&mut der[ED25519_PKCS8_V1_PREFIX.len()..])
        .map_err(|e| TlsError::Random(e.to_string()))?;
    Ok(rcgen::KeyPair::try_from(&PrivateKeyDer::Pkcs8(der.into()))?)
}

/// Reads a PEM private key (PKCS #8, SEC1 or PKCS #1), refusing a file others can read.
fn read_key(
    path: &Path,
    bad: impl FnOnce(String) -> TlsError,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    check_key_permissions(path)?;
    let pem = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        bad(match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no unencrypted private key in it \
                (PEM `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`)"
                .to_string(),
            e => e.to_string(),
        })
    })
}

/// Reads the PEM certificates of a file, in order; at least one.
pub(super) fn read_chain(
    path: &Path,
    bad: impl FnOnce(String) -> TlsError,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if certs.is_empty() => {
            Err(bad("no certificate in it (PEM `CERTIFICATE`)".to_string()))
        }
        Ok(certs) => Ok(certs),
        Err(e) => Err(bad(e.to_string())),
    }
}

pub(super) fn pem_certificate(cert: &CertificateDer<'_>) -> String {
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
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::net::tls::testing::{ca_rules, check_as, handshake, key, write, TestCa};
    use crate::net::tls::{client_config, server_config, Side, TrustRules};

    #[cfg(unix)]
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

    #[cfg(unix)]
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

    #[cfg(unix)]
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
    fn ca_issued_identity_from_files_keeps_the_fingerprint_of_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let own = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(own.kind, IdentityKind::SelfSigned);
        let key_pem = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        let k = rcgen::KeyPair::from_pem(&key_pem).unwrap();
        let ca = TestCa::new("Test CA");
        let cert = ca.issue(&k, |_| {});
        let cert_path = write(dir.path(), "me.crt", &pem_certificate(&cert), 0o644);
        let issued = Identity::from_files(&cert_path, &dir.path().join(KEY_FILE)).unwrap();
        assert_eq!(issued.kind, IdentityKind::CaIssued);
        assert_eq!(issued.fingerprint, own.fingerprint);
        assert_eq!(issued.info.subject, "CN=alice");
        assert_eq!(issued.info.issuer, "CN=Test CA");
        assert_eq!(issued.cert_file.as_deref(), Some(cert_path.as_path()));
        assert!(issued.info.validity_problem(SystemTime::now()).is_none());

        // The identity-directory convention: a CA-issued cert.pem is used as it is.
        std::fs::write(dir.path().join(CERT_FILE), pem_certificate(&cert)).unwrap();
        let from_dir = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(from_dir.kind, IdentityKind::CaIssued);
        assert_eq!(from_dir.certs, vec![cert]);
        assert_eq!(from_dir.fingerprint, own.fingerprint);
    }

    #[test]
    fn a_certificate_for_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let key_path = write(dir.path(), "me.key", &k.serialize_pem(), 0o600);
        let cert = TestCa::new("Test CA").issue(&key(), |_| {});
        let cert_path = write(dir.path(), "me.crt", &pem_certificate(&cert), 0o644);
        let err = Identity::from_files(&cert_path, &key_path).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        // In the identity directory too: a stranger's cert.pem is not quietly ignored.
        write(dir.path(), KEY_FILE, &k.serialize_pem(), 0o600);
        std::fs::write(dir.path().join(CERT_FILE), pem_certificate(&cert)).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_is_refused_for_cert_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let k = key();
        let key_path = write(dir.path(), "me.key", &k.serialize_pem(), 0o640);
        let cert = TestCa::new("Test CA").issue(&k, |_| {});
        let cert_path = write(dir.path(), "me.crt", &pem_certificate(&cert), 0o644);
        let err = Identity::from_files(&cert_path, &key_path).unwrap_err();
        assert!(matches!(err, TlsError::KeyPermissions { .. }), "{err}");
        let not_pem = write(dir.path(), "bad.crt", "hello", 0o644);
        std::fs::set_permissions(
            &key_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let err = Identity::from_files(&not_pem, &key_path).unwrap_err();
        assert!(matches!(err, TlsError::BadFile { .. }), "{err}");
    }

    #[test]
    fn csr_asks_for_this_key() {
        let id = Identity::ephemeral().unwrap();
        let pem = id.csr("alice").unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{pem}"
        );
        let request = rcgen::CertificateSigningRequestParams::from_pem(&pem).unwrap();
        let ca = TestCa::new("Test CA");
        let cert = request.signed_by(&ca.issuer).unwrap().der().clone();
        assert_eq!(Fingerprint::of_certificate(&cert).unwrap(), id.fingerprint);
        let info = CertInfo::of(&cert).unwrap();
        assert_eq!(info.subject, "CN=alice");
        assert!(check_as(&ca_rules(&ca), std::slice::from_ref(&cert), Side::Server).is_ok());
        assert!(check_as(&ca_rules(&ca), &[cert], Side::Client).is_ok());
    }

    /// A 2048-bit RSA key (made with `openssl genpkey`), for RSA identities: ring cannot
    /// make RSA keys.
    const RSA_KEY: &str = include_str!("../../../tests/data/rsa-2048-test-key.pem");

    /// A self-signed identity for a key of any type, as qp2p makes it.
    fn identity_of(key: rcgen::KeyPair) -> Identity {
        Identity::self_signed(key, None).unwrap()
    }

    /// `a` dials `b`, each pinning the other's fingerprint.
    fn pinned_handshake(a: &Identity, b: &Identity) -> Result<(), (Side, rustls::Error)> {
        let (client, _) = client_config(a, TrustRules::pinned_to(b.fingerprint));
        let server = server_config(b, TrustRules::pinned_to(a.fingerprint)).unwrap();
        handshake(client, server)
    }

    #[test]
    fn new_identities_are_ed25519() {
        assert_eq!(Identity::ephemeral().unwrap().info.key, "ed25519");
        let dir = tempfile::tempdir().unwrap();
        let created = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(created.info.key, "ed25519");
        let pem = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        let stored = rcgen::KeyPair::from_pem(&pem).unwrap();
        assert_eq!(stored.algorithm(), &rcgen::PKCS_ED25519);
        // PKCS #8 v1, as OpenSSL writes and reads it: the prefix, then 32 key bytes.
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        let der = der.secret_der();
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_PKCS8_V1_PREFIX);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let loaded = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(loaded.info.key, "ed25519");
        assert_eq!(loaded.fingerprint, created.fingerprint);
    }

    /// An identity directory made by qp2p before Ed25519 (a P-256 key in PKCS #8 and
    /// its self-signed certificate) keeps its key, its fingerprint and its peers.
    #[test]
    fn an_old_p256_identity_directory_still_loads_and_talks_to_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let expected =
            Fingerprint(Sha256::digest(rcgen::PublicKeyData::subject_public_key_info(&old)).into());
        write(dir.path(), KEY_FILE, &old.serialize_pem(), 0o600);
        let cert = identity_of(old).certs[0].clone();
        write(dir.path(), CERT_FILE, &pem_certificate(&cert), 0o644);
        let loaded = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(loaded.fingerprint, expected);
        assert_eq!(loaded.info.key, "ecdsa-p256");
        assert_eq!(loaded.kind, IdentityKind::SelfSigned);
        let new = Identity::ephemeral().unwrap();
        assert_eq!(pinned_handshake(&loaded, &new), Ok(()));
        assert_eq!(pinned_handshake(&new, &loaded), Ok(()));
    }

    /// Every key type rustls' ring provider signs with works as an identity, as client
    /// and as server, against a peer with qp2p's own key type.
    #[test]
    fn identities_of_every_key_type_handshake_both_ways() {
        let keys = [
            ("ed25519", new_key().unwrap()),
            (
                "ecdsa-p256",
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            ),
            (
                "ecdsa-p384",
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
            ),
            ("rsa-2048", rcgen::KeyPair::from_pem(RSA_KEY).unwrap()),
        ];
        let ours = Identity::ephemeral().unwrap();
        for (name, key) in keys {
            let theirs = identity_of(key);
            assert_eq!(theirs.info.key, name);
            assert_eq!(pinned_handshake(&theirs, &ours), Ok(()), "{name} dials");
            assert_eq!(pinned_handshake(&ours, &theirs), Ok(()), "{name} listens");
        }
    }
}
