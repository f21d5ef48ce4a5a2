//! TLS identity and peer verification.
//!
//! Every qp2p process holds an [`Identity`]: a key pair and the certificate that carries
//! its public key, made by qp2p from the key (persistent or ephemeral) or issued by a CA
//! (see [`IdentityKind`]). A peer is named by its [`Fingerprint`], the hash of its public
//! key. Both sides always present a certificate (mutual TLS 1.3); which peers are
//! accepted is decided by one `PeerVerifier` holding a set of [`TrustRules`] (pins and
//! allow-lists, [`CaTrust`]), each of which must hold; the first that fails is the
//! [`Refusal`], told to the user and, as a TLS alert, to the peer.
//!
//! One concern per file, after rustls' own `src/webpki/` (anchors, verifiers and the
//! mapping of webpki's errors each in a file of their own); this file holds the error
//! type they share and the re-exports, so every item is named `tls::X` whichever file
//! holds it:
//!
//! | file | what it holds |
//! | --- | --- |
//! | `fingerprint.rs` | [`Fingerprint`]: the SHA-256 of a certificate's public key, its text form (base32) and parsing |
//! | `identity.rs` | [`Identity`]: persistent, ephemeral or CA-issued; the key store on disk (key file mode 0600, checked on load); the key type of new identities; signing requests |
//! | `certinfo.rs` | [`CertInfo`]: what is read out of a certificate for reports and errors (names, validity, key type); [`format_date`] |
//! | `ca.rs` | [`CaTrust`]: the `--ca` trust anchors and path building; [`CaRefusal`]: webpki's refusals mapped to reasons a user can act on |
//! | `verifier.rs` | [`TrustRules`] and the one `PeerVerifier` enforcing them, as client and as server verifier; [`Refusal`] and the TLS alert it becomes |
//! | `config.rs` | the rustls client and server configurations, made once, and the crypto provider they share |
//! | `testing.rs` | (tests only) rule checks, a CA made in the test, handshakes in memory |
//!
//! What could go wrong, and how it is prevented:
//! - *A peer shows someone else's certificate.* The verifier never skips the handshake
//!   signature: `verify_tls13_signature` checks that the peer signed the transcript with
//!   the key in the certificate it showed, so holding a copy of a certificate, even a
//!   CA-issued one, is not enough (`verifier.rs`).
//! - *Resumption skipping verification.* Session tickets and resumption are disabled on
//!   both sides, so every connection is verified from its certificate (`config.rs`).
//! - *A key file readable by others.* Loading refuses it with advice, as ssh does (a
//!   `--key` file too); a corrupt identity is reported, never silently replaced
//!   (`identity.rs`).
//! - *A certificate for another key.* A CA-issued certificate is used only if it carries
//!   the public key of its key file; otherwise loading fails, not every handshake later
//!   (`identity.rs`).
//! - *A group member standing in for a pinned peer.* Rules combine with AND: `--ca` with
//!   a ticket or `--allow` admits only a peer that passes both (`verifier.rs`).
//! - *A connection verified under other rules reused.* [`TrustRules`] compare by value
//!   (a CA set by a hash of its certificates), and the connection pool keys on them.
//! - *A refusal nobody can act on.* Every CA refusal names its reason (expired, not yet
//!   valid, self-signed, unknown issuer, bad signature, wrong usage) with the dates or
//!   names involved (`ca.rs`).
//! - *Clock trouble.* Validity is checked against this host's clock, without grace. A
//!   self-signed identity is valid from 1975 to 4096, so pins never depend on clocks;
//!   an identity whose certificate is outside its validity is warned about at start.
//! - *A member who must be shut out before its certificate expires.* Revocation is not
//!   checked (no CRL or OCSP: peers often cannot reach one), so CA certificates should be
//!   short-lived; an allow-list narrows a group at once.
//! - *Downgrade.* Only TLS 1.3 is offered and accepted, with ALPN `qp2p/1` (`config.rs`).

use std::path::PathBuf;

mod ca;
mod certinfo;
mod config;
mod fingerprint;
mod identity;
#[cfg(test)]
mod testing;
mod verifier;

pub use ca::{CaRefusal, CaTrust};
pub use certinfo::{format_date, CertInfo};
pub(crate) use config::{client_config, server_config, SERVER_NAME};
pub use fingerprint::Fingerprint;
pub use identity::{Identity, IdentityKind};
pub(crate) use verifier::PeerVerifier;
pub use verifier::{Refusal, Side, TrustRules};

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
