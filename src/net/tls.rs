//! TLS identity and peer verification.
//!
//! Every qp2p process holds an [`Identity`]: a key pair and the certificate that carries
//! its public key. The certificate is of one of two [`IdentityKind`]s:
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
//! A peer is named by its [`Fingerprint`]: the SHA-256 of its certificate's
//! SubjectPublicKeyInfo, written as 52 lowercase base32 characters. Hashing the public key
//! rather than the whole certificate means a re-issued certificate for the same key (a
//! CA-issued one included) keeps its name.
//!
//! Both sides always present a certificate (mutual TLS 1.3). Which peers are accepted is
//! decided by one [`PeerVerifier`] holding a set of [`TrustRules`]; the same type serves
//! as rustls' client *and* server certificate verifier, so there is one code path for
//! every rule:
//! - *pinned*: the peer's fingerprint must be one of a set (a ticket or `--expect` on
//!   the sender; `--allow`/`--allow-file` on the listener). Nothing in the certificate
//!   is verified for it, not even a self-signature: the handshake signature (always
//!   checked) already proves the peer holds the pinned key, and a self-signature would
//!   prove nothing more;
//! - *CA* ([`CaTrust`], `--ca`): the peer's certificate must chain to one of the given CA
//!   certificates: every signature on the chain, every certificate's validity period,
//!   the key usage (digitalSignature, when the certificate restricts key usage at all:
//!   the key signs the TLS handshake) and the extended key usage (below). No host name is
//!   checked: peers are addressed by IP, and the CA vouches for a key, not an address;
//! - no rule at all: any peer is accepted; the caller sees its fingerprint and warns.
//!
//! Each rule that is given must hold. The first that fails is the [`Refusal`]; the
//! verifier keeps it, so the dialing side can say why (`endpoint` turns it into the error
//! the user sees), and it is sent to the peer as the matching TLS alert
//! (certificate_expired, unknown_ca, …) so that side can say what is wrong too.
//!
//! Extended key usage: a peer verified as a TLS server (a listener, checked by a sender)
//! must allow `serverAuth`, one verified as a client (a sender, checked by a listener)
//! `clientAuth`, each only if its certificate lists extended key usages at all (RFC 5280
//! 4.2.1.12: no list, no restriction). One identity both listens and sends, so a CA
//! issues peer certificates with both purposes (which `qp2p id --csr` asks for) or with
//! none; a certificate its CA restricted to one purpose is honoured as restricted.
//!
//! What could go wrong, and how it is prevented:
//! - *A peer shows someone else's certificate.* The verifier never skips the handshake
//!   signature: `verify_tls13_signature` checks that the peer signed the transcript with
//!   the key in the certificate it showed, so holding a copy of a certificate, even a
//!   CA-issued one, is not enough.
//! - *Resumption skipping verification.* Session tickets and resumption are disabled on
//!   both sides, so every connection is verified from its certificate.
//! - *A key file readable by others.* Loading refuses it with advice, as ssh does (a
//!   `--key` file too); a corrupt identity is reported, never silently replaced.
//! - *A certificate for another key.* A CA-issued certificate is used only if it carries
//!   the public key of its key file; otherwise loading fails, not every handshake later.
//! - *A group member standing in for a pinned peer.* Rules combine with AND: `--ca` with
//!   a ticket or `--allow` admits only a peer that passes both.
//! - *A connection verified under other rules reused.* [`TrustRules`] compare by value
//!   (a CA set by a hash of its certificates), and the connection pool keys on them.
//! - *A refusal nobody can act on.* Every CA refusal names its reason (expired, not yet
//!   valid, self-signed, unknown issuer, bad signature, wrong usage) with the dates or
//!   names involved.
//! - *Clock trouble.* Validity is checked against this host's clock, without grace. A
//!   self-signed identity is valid from 1975 to 4096, so pins never depend on clocks;
//!   an identity whose certificate is outside its validity is warned about at start.
//! - *A member who must be shut out before its certificate expires.* Revocation is not
//!   checked (no CRL or OCSP: peers often cannot reach one), so CA certificates should be
//!   short-lived; an allow-list narrows a group at once.
//! - *Downgrade.* Only TLS 1.3 is offered and accepted, with ALPN `qp2p/1`.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// The ALPN protocol id of this wire protocol version.
pub const ALPN: &[u8] = b"qp2p/1";

/// The name a client puts in its SNI; peers are addressed by IP, so it is never checked.
pub const SERVER_NAME: &str = "qp2p";

const KEY_FILE: &str = "key.pem";
const CERT_FILE: &str = "cert.pem";

/// The subject (and issuer) common name of a self-signed identity.
const SELF_SIGNED_NAME: &str = "qp2p peer";

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
    /// A file of the identity directory exists but cannot be parsed.
    #[error("identity {path} is corrupt: {reason}; move it away to create a new identity")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--cert` or `--key` file cannot be used.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate does not carry the public key of the key file it came with.
    #[error("certificate {cert} is not for the key {key}: their public keys differ")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A `--ca` file cannot be read.
    #[error("CA file {path}: {source}")]
    CaIo {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `--ca` file holds no usable CA certificate.
    #[error("CA file {path}: {reason}")]
    BadCa {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key cannot sign a certificate signing request.
    #[error("cannot make a certificate signing request: {0}")]
    Csr(String),
    /// Certificate generation failed.
    #[error("could not generate an identity: {0}")]
    Generate(#[from] rcgen::Error),
    /// The system's random number generator failed.
    #[error("could not generate an identity: no randomness from the system: {0}")]
    Random(String),
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

/// Why a certificate cannot be used, in words a user can act on: webpki reads only
/// X.509 v3, and `openssl x509 -req` without extensions makes a v1 certificate, which
/// it calls only "bad encoding".
fn unreadable(cert: &CertificateDer<'_>, e: impl std::fmt::Display) -> String {
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, parsed)) if parsed.version() != x509_parser::x509::X509Version::V3 => format!(
            "unreadable certificate: it is X.509 v{}, only v3 is accepted; have it signed \
             with extensions (openssl x509 -req ... -copy_extensions copy, or -extfile)",
            parsed.version().0 + 1
        ),
        _ => format!("unreadable certificate: {e}"),
    }
}

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

/// What a certificate says about itself, for reports and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject, as `CN=…, O=…`.
    pub subject: String,
    /// The issuer, written the same way.
    pub issuer: String,
    /// Start of the validity period, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of the validity period, seconds since the Unix epoch.
    pub not_after: i64,
    /// Issuer and subject are the same name (RFC 5280 "self-issued").
    self_issued: bool,
    /// The key usage allows signatures (or the certificate does not restrict it).
    signs: bool,
    /// The type of the certified public key: `ed25519`, `ecdsa-p256`, `ecdsa-p384`,
    /// `rsa-2048`, … (its algorithm's OID when qp2p has no name for it).
    pub key: String,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn of(cert: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
        let signs = match parsed.key_usage() {
            Ok(Some(usage)) => usage.value.digital_signature(),
            Ok(None) => true,
            Err(e) => return Err(format!("bad key usage extension: {e}")),
        };
        let name = |n: &x509_parser::x509::X509Name<'_>| {
            let text = n.to_string();
            if text.is_empty() {
                "(no name)".to_string()
            } else {
                text
            }
        };
        Ok(Self {
            subject: name(parsed.subject()),
            issuer: name(parsed.issuer()),
            not_before: parsed.validity().not_before.timestamp(),
            not_after: parsed.validity().not_after.timestamp(),
            self_issued: parsed.subject().as_raw() == parsed.issuer().as_raw(),
            signs,
            key: key_type(parsed.public_key()),
        })
    }

    /// Whether the certificate is outside its validity period at `now`, and how.
    pub fn validity_problem(&self, now: SystemTime) -> Option<CaRefusal> {
        let now = unix_seconds(now);
        if now > self.not_after {
            Some(CaRefusal::Expired {
                not_after: self.not_after,
            })
        } else if now < self.not_before {
            Some(CaRefusal::NotYetValid {
                not_before: self.not_before,
            })
        } else {
            None
        }
    }
}

/// A short name for the type of a public key.
fn key_type(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    let bits = spki.parsed().map(|key| key.key_size()).unwrap_or(0);
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.3.101.112" => "ed25519".to_string(),
        "1.3.101.113" => "ed448".to_string(),
        "1.2.840.10045.2.1" => format!("ecdsa-p{bits}"),
        "1.2.840.113549.1.1.1" => format!("rsa-{bits}"),
        other => other.to_string(),
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// A date for people and JSON: RFC 3339 in UTC (`2026-01-01T00:00:00Z`).
pub fn format_date(unix_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix_seconds} (Unix time)"))
}

/// A key pair and the certificate that carries its public key.
#[derive(Debug)]
pub struct Identity {
    /// The certificate chain presented to peers (the leaf first).
    pub certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The chain with its loaded signing key, made once and shared by every TLS
    /// configuration (loading a key computes its public key: an elliptic-curve
    /// multiplication per dial otherwise).
    certified: Arc<SingleCertAndKey>,
    /// The client configuration every dial starts from (see [`client_config`]).
    client: rustls::ClientConfig,
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
fn new_key() -> Result<rcgen::KeyPair, TlsError> {
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
fn read_chain(
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
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Which TLS role the peer being verified plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The peer accepted our connection (a listener, seen by a sender).
    Server,
    /// The peer dialed us (a sender, seen by a listener).
    Client,
}

/// The CA certificates whose peers are trusted (`--ca`), ready for path building.
///
/// Two sets are the same rule when they hold the same certificates: they compare and
/// hash by a SHA-256 over the certificates, in any order.
#[derive(Clone)]
pub struct CaTrust {
    anchors: Arc<[TrustAnchor<'static>]>,
    names: Arc<[String]>,
    id: [u8; 32],
}

impl CaTrust {
    /// Reads every certificate of every PEM file (at least one per file).
    pub fn load(paths: &[PathBuf]) -> Result<Self, TlsError> {
        let mut certs = Vec::new();
        for path in paths {
            let bad = |reason: String| TlsError::BadCa {
                path: path.clone(),
                reason,
            };
            let chain = read_chain(path, bad).map_err(|e| match e {
                TlsError::Io { path, source } => TlsError::CaIo { path, source },
                e => e,
            })?;
            for cert in &chain {
                webpki::anchor_from_trusted_cert(cert)
                    .map_err(|e| bad(format!("unusable certificate: {e}")))?;
            }
            certs.extend(chain);
        }
        Self::from_certificates(&certs).map_err(|reason| TlsError::BadCa {
            path: paths.first().cloned().unwrap_or_default(),
            reason,
        })
    }

    /// Trusts these DER certificates as CAs.
    pub fn from_certificates(certs: &[CertificateDer<'_>]) -> Result<Self, String> {
        if certs.is_empty() {
            return Err("no CA certificate".into());
        }
        let mut anchors = Vec::new();
        let mut names = Vec::new();
        let mut digests = Vec::new();
        for cert in certs {
            let anchor = webpki::anchor_from_trusted_cert(cert)
                .map_err(|e| format!("unusable certificate: {e}"))?;
            anchors.push(anchor.to_owned());
            names.push(CertInfo::of(cert).map(|i| i.subject).unwrap_or_default());
            digests.push(<[u8; 32]>::from(Sha256::digest(cert.as_ref())));
        }
        digests.sort_unstable();
        digests.dedup();
        let mut all = Sha256::new();
        for d in &digests {
            all.update(d);
        }
        Ok(Self {
            anchors: anchors.into(),
            names: names.into(),
            id: all.finalize().into(),
        })
    }

    /// The subjects of the CA certificates.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Checks that `end_entity` chains to one of the CAs, through `intermediates`, at
    /// `now`, for the role the peer plays.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        side: Side,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Result<(), CaRefusal> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| CaRefusal::Other(unreadable(end_entity, e)))?;
        let usage = match side {
            Side::Server => webpki::KeyUsage::server_auth(),
            Side::Client => webpki::KeyUsage::client_auth(),
        };
        let verified = cert.verify_for_usage(
            algorithms.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        );
        if let Err(e) = verified {
            return Err(CaRefusal::from_webpki(e, end_entity, side));
        }
        match CertInfo::of(end_entity) {
            Ok(info) if !info.signs => Err(CaRefusal::KeyUsage),
            Ok(_) => Ok(()),
            Err(e) => Err(CaRefusal::Other(format!("unreadable certificate: {e}"))),
        }
    }
}

impl PartialEq for CaTrust {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for CaTrust {}

impl Hash for CaTrust {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl fmt::Debug for CaTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CaTrust").field(&self.names).finish()
    }
}

/// Why CA trust refused a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaRefusal {
    /// The validity period is over.
    #[error("expired (not after {})", format_date(*not_after))]
    Expired {
        /// End of the validity period, seconds since the Unix epoch.
        not_after: i64,
    },
    /// The validity period has not begun.
    #[error("not yet valid (not before {})", format_date(*not_before))]
    NotYetValid {
        /// Start of the validity period, seconds since the Unix epoch.
        not_before: i64,
    },
    /// A self-signed certificate (such as qp2p's own), which no CA vouches for.
    #[error("self-signed, not issued by a trusted CA")]
    SelfSigned,
    /// Issued by a CA that is not trusted (or through an intermediate not shown).
    #[error("unknown issuer {issuer:?}: not a trusted CA")]
    UnknownIssuer {
        /// The issuer the certificate names.
        issuer: String,
    },
    /// A signature on the chain does not verify: not made by the CA it names.
    #[error("bad signature: not signed by the CA it names")]
    BadSignature,
    /// The extended key usage excludes this role.
    #[error(
        "not valid for TLS {} authentication (its extended key usage lacks {})",
        side_name(*.0),
        eku_name(*.0)
    )]
    WrongPurpose(Side),
    /// The key usage does not allow signing the handshake.
    #[error("its key usage does not allow digital signatures")]
    KeyUsage,
    /// A CA certificate shown as a peer's own.
    #[error("a CA certificate, not a peer's")]
    CaAsPeer,
    /// Anything else the path building refused.
    #[error("{0}")]
    Other(String),
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Server => "server",
        Side::Client => "client",
    }
}

fn eku_name(side: Side) -> &'static str {
    match side {
        Side::Server => "serverAuth",
        Side::Client => "clientAuth",
    }
}

impl CaRefusal {
    fn from_webpki(e: webpki::Error, cert: &CertificateDer<'_>, side: Side) -> Self {
        use webpki::Error as E;
        let secs = |t: UnixTime| i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
        match e {
            E::CertExpired { not_after, .. } => Self::Expired {
                not_after: secs(not_after),
            },
            E::CertNotValidYet { not_before, .. } => Self::NotYetValid {
                not_before: secs(not_before),
            },
            E::UnknownIssuer => match CertInfo::of(cert) {
                Ok(info) if info.self_issued => Self::SelfSigned,
                Ok(info) => Self::UnknownIssuer {
                    issuer: info.issuer,
                },
                Err(_) => Self::UnknownIssuer { issuer: "?".into() },
            },
            E::InvalidSignatureForPublicKey | E::SignatureAlgorithmMismatch => Self::BadSignature,
            E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
                Self::Other("signed with an algorithm qp2p does not support".into())
            }
            E::RequiredEkuNotFoundContext(_) => Self::WrongPurpose(side),
            E::CaUsedAsEndEntity => Self::CaAsPeer,
            other => Self::Other(format!("{other:?}")),
        }
    }
}

/// Why a peer's certificate was refused: the first rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The fingerprint is not one the pins or allow-list admit.
    #[error("peer fingerprint {0} is not trusted")]
    NotPinned(Fingerprint),
    /// The certificate does not chain to a trusted CA.
    #[error("peer certificate rejected: {0}")]
    Ca(#[from] CaRefusal),
    /// The certificate cannot be parsed.
    #[error("peer certificate rejected: unreadable")]
    Unreadable,
}

impl Refusal {
    /// The rustls error, chosen so that the TLS alert the peer gets names the problem:
    /// certificate_expired (45) for the validity period, unknown_ca (48) for the issuer,
    /// unsupported_certificate (43) for the usage, certificate_unknown (46) otherwise.
    fn to_rustls(&self, now: UnixTime) -> rustls::Error {
        let at = |secs: i64| {
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                u64::try_from(secs).unwrap_or(0),
            ))
        };
        let e = match self {
            Refusal::Ca(CaRefusal::Expired { not_after }) => CertificateError::ExpiredContext {
                time: now,
                not_after: at(*not_after),
            },
            Refusal::Ca(CaRefusal::NotYetValid { not_before }) => {
                CertificateError::NotValidYetContext {
                    time: now,
                    not_before: at(*not_before),
                }
            }
            Refusal::Ca(CaRefusal::SelfSigned | CaRefusal::UnknownIssuer { .. }) => {
                CertificateError::UnknownIssuer
            }
            Refusal::Ca(CaRefusal::WrongPurpose(_) | CaRefusal::KeyUsage) => {
                CertificateError::InvalidPurpose
            }
            Refusal::Unreadable => CertificateError::BadEncoding,
            other => CertificateError::Other(rustls::OtherError(Arc::new(Readable(other.clone())))),
        };
        rustls::Error::InvalidCertificate(e)
    }
}

/// A refusal that rustls shows readably: it prints `CertificateError::Other` with `{:?}`.
struct Readable(Refusal);

impl fmt::Debug for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Readable {}

/// What a peer's certificate must satisfy. Every rule that is set must hold; with none
/// set, any peer that proves possession of its key is accepted.
///
/// Rules compare and hash by value, so they can key a pool of verified connections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TrustRules {
    /// The peer's fingerprint must be one of these (ticket, `--expect`, `--allow`).
    pub pinned: Option<BTreeSet<Fingerprint>>,
    /// The peer's certificate must chain to one of these CAs (`--ca`).
    pub ca: Option<CaTrust>,
}

impl TrustRules {
    /// Rules that accept any peer.
    pub fn any() -> Self {
        Self::default()
    }

    /// Rules that accept exactly one fingerprint.
    pub fn pinned_to(fp: Fingerprint) -> Self {
        Self::any().with_pin(Some(fp))
    }

    /// These rules, and (if given) the peer must also have fingerprint `fp`. Pins
    /// combine like every rule: a peer must pass all, so a second pin narrows the set.
    pub fn with_pin(mut self, fp: Option<Fingerprint>) -> Self {
        if let Some(fp) = fp {
            self.pinned = Some(match self.pinned.take() {
                Some(set) => set.into_iter().filter(|f| *f == fp).collect(),
                None => [fp].into_iter().collect(),
            });
        }
        self
    }

    /// These rules, and (if given) the peer's certificate must also chain to `ca`.
    pub fn with_ca(mut self, ca: Option<CaTrust>) -> Self {
        if ca.is_some() {
            self.ca = ca;
        }
        self
    }

    /// Whether any rule restricts the peer (if not, the peer is not authenticated).
    pub fn authenticates(&self) -> bool {
        self.pinned.is_some() || self.ca.is_some()
    }

    /// Applies every rule to a peer playing `side`; returns its fingerprint, or the first
    /// rule that failed.
    #[cfg(test)]
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        side: Side,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Result<Fingerprint, Refusal> {
        let fp = Fingerprint::of_certificate(end_entity).map_err(|_| Refusal::Unreadable)?;
        self.check_fingerprinted(fp, end_entity, intermediates, now, side, algorithms)
    }

    /// [`check`](Self::check) for a certificate whose fingerprint is known.
    fn check_fingerprinted(
        &self,
        fp: Fingerprint,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        side: Side,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> Result<Fingerprint, Refusal> {
        if let Some(pinned) = &self.pinned {
            if !pinned.contains(&fp) {
                return Err(Refusal::NotPinned(fp));
            }
        }
        if let Some(ca) = &self.ca {
            ca.verify(end_entity, intermediates, now, side, algorithms)?;
        }
        Ok(fp)
    }
}

/// What the verifier saw last: the peer's fingerprint and, if refused, why.
#[derive(Debug, Default)]
struct Seen {
    fingerprint: Option<Fingerprint>,
    refusal: Option<Refusal>,
}

/// The verifier for both directions: applies [`TrustRules`] and always checks the
/// handshake signature.
#[derive(Debug)]
pub struct PeerVerifier {
    rules: TrustRules,
    algorithms: WebPkiSupportedAlgorithms,
    /// The last certificate checked, for error messages (a client verifier checks one).
    seen: Mutex<Seen>,
}

impl PeerVerifier {
    fn new(rules: TrustRules, provider: &CryptoProvider) -> Self {
        Self {
            rules,
            algorithms: provider.signature_verification_algorithms,
            seen: Mutex::default(),
        }
    }

    /// The fingerprint of the last certificate this verifier was shown.
    pub fn seen(&self) -> Option<Fingerprint> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fingerprint
    }

    /// Why the last certificate this verifier was shown was refused, if it was.
    pub fn refusal(&self) -> Option<Refusal> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refusal
            .clone()
    }

    /// The rules this verifier applies.
    pub fn rules(&self) -> &TrustRules {
        &self.rules
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        side: Side,
    ) -> Result<(), rustls::Error> {
        let fp = Fingerprint::of_certificate(end_entity).ok();
        let verdict = match fp {
            Some(fp) => self.rules.check_fingerprinted(
                fp,
                end_entity,
                intermediates,
                now,
                side,
                &self.algorithms,
            ),
            None => Err(Refusal::Unreadable),
        };
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.fingerprint = fp;
            seen.refusal = verdict.as_ref().err().cloned();
        }
        match verdict {
            Ok(_) => Ok(()),
            Err(refusal) => {
                if side == Side::Client {
                    // We are the listener: the sender is told by the TLS alert; the log
                    // says why in words (at info: refusals are the peer's doing, and
                    // listen already warns that the handshake failed).
                    tracing::info!(fingerprint = ?fp, reason = %refusal, "sender refused");
                }
                Err(refusal.to_rustls(now))
            }
        }
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
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, Side::Server)?;
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
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, Side::Client)?;
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
/// after hashing in a transfer). Made once per process: every dial shares it.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::ring::default_provider();
            provider.cipher_suites.sort_by_key(|suite| {
                suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            });
            Arc::new(provider)
        })
        .clone()
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
        .with_cert_resolver(identity.certified.clone());
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The rustls client configuration: our identity as client certificate, the server
/// checked against `rules`, TLS 1.3 only, no resumption. The verifier is returned too:
/// after a refusal it tells which fingerprint the peer showed. Made per dial (the
/// verifier remembers what this one peer showed) by setting that verifier in a copy of
/// the identity's template, which holds the parts made once: the provider, the loaded
/// key, the protocol settings.
pub fn client_config(
    identity: &Identity,
    rules: TrustRules,
) -> (rustls::ClientConfig, Arc<PeerVerifier>) {
    let verifier = Arc::new(PeerVerifier::new(rules, &provider()));
    let mut config = identity.client.clone();
    config
        .dangerous()
        .set_certificate_verifier(verifier.clone());
    (config, verifier)
}

/// What [`client_config`] starts from: everything but the verifier, made once per
/// identity (the builder checks the provider and makes a session cache each time). Its
/// own verifier admits no peer at all, in case a dial ever forgot to set one.
fn client_template(certified: Arc<SingleCertAndKey>) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let nobody = TrustRules {
        pinned: Some(BTreeSet::new()),
        ca: None,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier::new(nobody, &provider)))
        .with_client_cert_resolver(certified);
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
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

    /// Applies `rules` to `cert` (and its chain) as a peer playing `side`, now.
    fn check_as(
        rules: &TrustRules,
        chain: &[CertificateDer<'static>],
        side: Side,
    ) -> Result<Fingerprint, Refusal> {
        let algorithms = provider().signature_verification_algorithms;
        rules.check(&chain[0], &chain[1..], UnixTime::now(), side, &algorithms)
    }

    fn check(
        rules: &TrustRules,
        chain: &[CertificateDer<'static>],
    ) -> Result<Fingerprint, Refusal> {
        check_as(rules, chain, Side::Server)
    }

    #[test]
    fn pinned_rule_admits_only_its_fingerprint() {
        let a = Identity::ephemeral().unwrap();
        let b = Identity::ephemeral().unwrap();
        let rules = TrustRules::pinned_to(a.fingerprint);
        assert_eq!(check(&rules, &a.certs), Ok(a.fingerprint));
        assert_eq!(
            check(&rules, &b.certs),
            Err(Refusal::NotPinned(b.fingerprint))
        );
        assert!(check(&TrustRules::any(), &b.certs).is_ok());
    }

    /// A CA made here, and certificates it issues.
    struct TestCa {
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
        cert: CertificateDer<'static>,
    }

    /// Days from now, as an rcgen time.
    fn days(n: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + time::Duration::days(n)
    }

    impl TestCa {
        fn new(name: &str) -> Self {
            let key = rcgen::KeyPair::generate().unwrap();
            Self::with_key(name, key)
        }

        fn with_key(name: &str, key: rcgen::KeyPair) -> Self {
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

        fn trust(&self) -> CaTrust {
            CaTrust::from_certificates(std::slice::from_ref(&self.cert)).unwrap()
        }

        /// Issues a certificate for `key`, shaped by `edit`.
        fn issue(
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
    fn key() -> rcgen::KeyPair {
        new_key().unwrap()
    }

    fn ca_rules(ca: &TestCa) -> TrustRules {
        TrustRules::any().with_ca(Some(ca.trust()))
    }

    #[test]
    fn ca_rule_admits_a_certificate_it_issued_both_ways() {
        let ca = TestCa::new("Test CA");
        let cert = ca.issue(&key(), |_| {});
        let rules = ca_rules(&ca);
        assert!(check_as(&rules, std::slice::from_ref(&cert), Side::Server).is_ok());
        assert!(check_as(&rules, &[cert], Side::Client).is_ok());
    }

    #[test]
    fn ca_rule_refuses_with_the_reason() {
        let ca = TestCa::new("Test CA");
        let rules = ca_rules(&ca);
        let refusal = |cert: CertificateDer<'static>| match check(&rules, &[cert]) {
            Err(Refusal::Ca(r)) => r,
            other => panic!("expected a CA refusal, got {other:?}"),
        };

        let expired = ca.issue(&key(), |p| {
            p.not_before = days(-60);
            p.not_after = days(-30);
        });
        let r = refusal(expired);
        assert!(matches!(r, CaRefusal::Expired { .. }), "{r}");
        assert!(r.to_string().starts_with("expired (not after 20"), "{r}");

        let early = ca.issue(&key(), |p| {
            p.not_before = days(30);
            p.not_after = days(60);
        });
        let r = refusal(early);
        assert!(matches!(r, CaRefusal::NotYetValid { .. }), "{r}");
        assert!(
            r.to_string().starts_with("not yet valid (not before 20"),
            "{r}"
        );

        let other = TestCa::new("Other CA").issue(&key(), |_| {});
        let r = refusal(other);
        assert_eq!(
            r,
            CaRefusal::UnknownIssuer {
                issuer: "CN=Other CA".into()
            }
        );

        let own = Identity::ephemeral().unwrap();
        assert_eq!(refusal(own.certs[0].clone()), CaRefusal::SelfSigned);

        // Another CA that took the trusted CA's name: the name matches, the signature
        // does not.
        let impostor = TestCa::new("Test CA").issue(&key(), |_| {});
        assert_eq!(refusal(impostor), CaRefusal::BadSignature);

        let no_signing = ca.issue(&key(), |p| {
            p.key_usages = vec![rcgen::KeyUsagePurpose::KeyEncipherment];
        });
        assert_eq!(refusal(no_signing), CaRefusal::KeyUsage);
    }

    #[test]
    fn extended_key_usage_is_checked_per_role_when_present() {
        let ca = TestCa::new("Test CA");
        let rules = ca_rules(&ca);
        let server_only = ca.issue(&key(), |p| {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        });
        assert!(check_as(&rules, std::slice::from_ref(&server_only), Side::Server).is_ok());
        assert_eq!(
            check_as(&rules, &[server_only], Side::Client),
            Err(Refusal::Ca(CaRefusal::WrongPurpose(Side::Client)))
        );
        let both = ca.issue(&key(), |p| {
            p.extended_key_usages = vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ];
        });
        assert!(check_as(&rules, std::slice::from_ref(&both), Side::Server).is_ok());
        assert!(check_as(&rules, &[both], Side::Client).is_ok());
    }

    #[test]
    fn a_chain_through_an_intermediate_is_followed() {
        let root = TestCa::new("Root CA");
        let inter_key = key();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Intermediate CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        params.not_before = days(-1);
        params.not_after = days(365);
        let inter_cert = params
            .signed_by(&inter_key, &root.issuer)
            .unwrap()
            .der()
            .clone();
        let inter = TestCa {
            issuer: rcgen::Issuer::new(params, inter_key),
            cert: inter_cert.clone(),
        };
        let leaf = inter.issue(&key(), |_| {});
        let rules = ca_rules(&root);
        assert!(check(&rules, &[leaf.clone(), inter_cert]).is_ok());
        assert!(matches!(
            check(&rules, &[leaf]),
            Err(Refusal::Ca(CaRefusal::UnknownIssuer { .. }))
        ));
    }

    #[test]
    fn pins_and_ca_must_both_hold() {
        let ca = TestCa::new("Test CA");
        let k = key();
        let cert = ca.issue(&k, |_| {});
        let fp = Fingerprint::of_certificate(&cert).unwrap();
        let stranger = Identity::ephemeral().unwrap().fingerprint;
        let both = ca_rules(&ca).with_pin(Some(fp));
        assert_eq!(check(&both, std::slice::from_ref(&cert)), Ok(fp));
        let wrong_pin = ca_rules(&ca).with_pin(Some(stranger));
        assert_eq!(check(&wrong_pin, &[cert]), Err(Refusal::NotPinned(fp)));
        // The right pin does not excuse a certificate the CA did not issue.
        let own = Identity::ephemeral().unwrap();
        let pinned_own = ca_rules(&ca).with_pin(Some(own.fingerprint));
        assert_eq!(
            check(&pinned_own, &own.certs),
            Err(Refusal::Ca(CaRefusal::SelfSigned))
        );
        // Two pins narrow: only a fingerprint in both is admitted.
        let narrowed = TrustRules::pinned_to(fp).with_pin(Some(stranger));
        assert_eq!(narrowed.pinned, Some(BTreeSet::new()));
    }

    #[test]
    fn rules_compare_by_value() {
        let ca = TestCa::new("Test CA");
        let again = CaTrust::from_certificates(std::slice::from_ref(&ca.cert)).unwrap();
        assert_eq!(ca_rules(&ca), TrustRules::any().with_ca(Some(again)));
        assert_ne!(ca_rules(&ca), TrustRules::any());
        assert_ne!(ca_rules(&ca), ca_rules(&TestCa::new("Test CA")));
        let fp = Identity::ephemeral().unwrap().fingerprint;
        assert_ne!(ca_rules(&ca).with_pin(Some(fp)), ca_rules(&ca));
    }

    #[test]
    fn refusals_become_alerts_that_name_them() {
        use rustls::AlertDescription as A;
        let now = UnixTime::now();
        let alert = |r: Refusal| match r.to_rustls(now) {
            rustls::Error::InvalidCertificate(e) => A::from(e),
            other => panic!("{other:?}"),
        };
        let ca = |r: CaRefusal| alert(Refusal::Ca(r));
        assert_eq!(
            ca(CaRefusal::Expired { not_after: 0 }),
            A::CertificateExpired
        );
        assert_eq!(
            ca(CaRefusal::NotYetValid { not_before: 0 }),
            A::CertificateExpired
        );
        assert_eq!(ca(CaRefusal::SelfSigned), A::UnknownCA);
        assert_eq!(
            ca(CaRefusal::UnknownIssuer {
                issuer: String::new()
            }),
            A::UnknownCA
        );
        assert_eq!(
            ca(CaRefusal::WrongPurpose(Side::Client)),
            A::UnsupportedCertificate
        );
        assert_eq!(ca(CaRefusal::BadSignature), A::CertificateUnknown);
        assert_eq!(
            alert(Refusal::NotPinned(Fingerprint([0; 32]))),
            A::CertificateUnknown
        );
    }

    /// Writes `text` to `name` in `dir` with `mode`.
    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
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

    #[test]
    fn ca_files_need_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.pem", "", 0o644);
        let err = CaTrust::load(&[empty]).unwrap_err();
        assert!(matches!(err, TlsError::BadCa { .. }), "{err}");
        let err = CaTrust::load(&[dir.path().join("missing.pem")]).unwrap_err();
        assert!(matches!(err, TlsError::CaIo { .. }), "{err}");
        assert!(err.to_string().starts_with("CA file "), "{err}");
        let a = TestCa::new("A");
        let b = TestCa::new("B");
        let both = format!("{}{}", pem_certificate(&a.cert), pem_certificate(&b.cert));
        let path = write(dir.path(), "both.pem", &both, 0o644);
        let trust = CaTrust::load(&[path]).unwrap();
        assert_eq!(trust.names(), ["CN=A".to_string(), "CN=B".to_string()]);
    }

    /// A 2048-bit RSA key (made with `openssl genpkey`), for RSA identities: ring cannot
    /// make RSA keys.
    const RSA_KEY: &str = include_str!("../../tests/data/rsa-2048-test-key.pem");

    /// A self-signed identity for a key of any type, as qp2p makes it.
    fn identity_of(key: rcgen::KeyPair) -> Identity {
        Identity::self_signed(key, None).unwrap()
    }

    /// Runs a TLS handshake in memory between a client and a server configuration
    /// (QUIC carries the same messages); the error is the side that failed and why.
    fn handshake(
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

    /// The handshake signature is checked whatever the rules: a peer that shows a
    /// certificate (here, the pinned one) without its key is refused, either way round.
    #[test]
    fn a_certificate_shown_without_its_key_is_refused() {
        let owner = Identity::ephemeral().unwrap();
        let thief = Identity::ephemeral().unwrap();
        let signer = provider()
            .key_provider
            .load_private_key(thief.key.clone_key())
            .unwrap();
        let stolen = Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            owner.certs.clone(),
            signer,
        )));
        let honest = Identity::ephemeral().unwrap();
        let bad_signature = rustls::Error::InvalidCertificate(CertificateError::BadSignature);

        // The thief dials a listener that admits the owner only.
        let (mut client, _) = client_config(&thief, TrustRules::pinned_to(honest.fingerprint));
        client.client_auth_cert_resolver = stolen.clone();
        let server = server_config(&honest, TrustRules::pinned_to(owner.fingerprint)).unwrap();
        assert_eq!(
            handshake(client, server),
            Err((Side::Client, bad_signature.clone()))
        );

        // The thief listens, and a sender dials it with the owner's ticket.
        let (client, _) = client_config(&honest, TrustRules::pinned_to(owner.fingerprint));
        let mut server = server_config(&thief, TrustRules::any()).unwrap();
        server.cert_resolver = stolen;
        assert_eq!(
            handshake(client, server),
            Err((Side::Server, bad_signature))
        );
    }

    /// The template each dial copies admits no listener until the dial sets its rules.
    #[test]
    fn the_client_template_admits_nobody() {
        let us = Identity::ephemeral().unwrap();
        let them = Identity::ephemeral().unwrap();
        let server = server_config(&them, TrustRules::any()).unwrap();
        assert!(matches!(
            handshake(us.client.clone(), server),
            Err((Side::Server, rustls::Error::InvalidCertificate(_)))
        ));
        let (dial, _) = client_config(&us, TrustRules::any());
        let server = server_config(&them, TrustRules::any()).unwrap();
        assert_eq!(handshake(dial, server), Ok(()));
    }

    #[test]
    fn an_ed25519_ca_issues_too() {
        let ca = TestCa::with_key("Ed CA", key());
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        for leaf in [key(), p256] {
            let cert = ca.issue(&leaf, |_| {});
            assert!(check_as(&ca_rules(&ca), std::slice::from_ref(&cert), Side::Client).is_ok());
        }
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(format_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_date(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(format_date(-157_766_400), "1965-01-01T00:00:00Z");
    }
}
