//! The name of a peer: the SHA-256 of its certificate's SubjectPublicKeyInfo, written as
//! 52 lowercase base32 characters. Hashing the public key rather than the whole
//! certificate means a re-issued certificate for the same key (a CA-issued one
//! included) keeps its name.

use std::fmt;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;
use rustls::CertificateError;
use sha2::{Digest, Sha256};

use super::TlsError;

/// The SHA-256 of a certificate's SubjectPublicKeyInfo: the name of a peer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of the public key in a DER certificate.
    pub(crate) fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, rustls::Error> {
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

/// Lowercase base32 without padding, built once (a listener names its peer in every
/// report: building the tables each time cost more than the encoding).
fn base32() -> &'static data_encoding::Encoding {
    static ENCODING: std::sync::OnceLock<data_encoding::Encoding> = std::sync::OnceLock::new();
    ENCODING.get_or_init(|| {
        let mut spec = data_encoding::Specification::new();
        spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
        // The specification is a constant that is known to be valid.
        spec.encoding().expect("valid base32 specification")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::Identity;

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
}
