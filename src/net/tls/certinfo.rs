//! What is read out of a certificate for reports and errors: its subject, issuer,
//! validity period and key type ([`CertInfo`]), dates written for people and JSON, and
//! why a certificate cannot be read at all.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;

use super::CaRefusal;

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
    pub(super) self_issued: bool,
    /// The key usage allows signatures (or the certificate does not restrict it).
    pub(super) signs: bool,
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

/// Why a certificate cannot be used, in words a user can act on: webpki reads only
/// X.509 v3, and `openssl x509 -req` without extensions makes a v1 certificate, which
/// it calls only "bad encoding".
pub(super) fn unreadable(cert: &CertificateDer<'_>, e: impl std::fmt::Display) -> String {
    match x509_parser::parse_x509_certificate(cert.as_ref()) {
        Ok((_, parsed)) if parsed.version() != x509_parser::x509::X509Version::V3 => format!(
            "unreadable certificate: it is X.509 v{}, only v3 is accepted; have it signed \
             with extensions (openssl x509 -req ... -copy_extensions copy, or -extfile)",
            parsed.version().0 + 1
        ),
        _ => format!("unreadable certificate: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(format_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_date(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(format_date(-157_766_400), "1965-01-01T00:00:00Z");
    }
}
