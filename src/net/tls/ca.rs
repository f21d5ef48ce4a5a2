//! CA trust (`--ca`): the peer's certificate must chain to one of the given CA
//! certificates: every signature on the chain, every certificate's validity period, the
//! key usage (digitalSignature, when the certificate restricts key usage at all: the key
//! signs the TLS handshake) and the extended key usage (below). No host name is checked:
//! peers are addressed by IP, and the CA vouches for a key, not an address.
//!
//! Extended key usage: a peer verified as a TLS server (a listener, checked by a sender)
//! must allow `serverAuth`, one verified as a client (a sender, checked by a listener)
//! `clientAuth`, each only if its certificate lists extended key usages at all (RFC 5280
//! 4.2.1.12: no list, no restriction). One identity both listens and sends, so a CA
//! issues peer certificates with both purposes (which `qp2p id --csr` asks for) or with
//! none; a certificate its CA restricted to one purpose is honoured as restricted.
//!
//! webpki's refusals are mapped here to a [`CaRefusal`] that names its reason (expired,
//! not yet valid, self-signed, unknown issuer, bad signature, wrong usage) with the
//! dates or names involved, so a refusal is one somebody can act on.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256};

use super::certinfo::unreadable;
use super::identity::read_chain;
use super::{format_date, CertInfo, Side, TlsError};

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
    pub(super) fn verify(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::identity::pem_certificate;
    use crate::net::tls::testing::{ca_rules, check, check_as, days, key, write, TestCa};
    use crate::net::tls::{Identity, Refusal};

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

    #[test]
    fn an_ed25519_ca_issues_too() {
        let ca = TestCa::with_key("Ed CA", key());
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        for leaf in [key(), p256] {
            let cert = ca.issue(&leaf, |_| {});
            assert!(check_as(&ca_rules(&ca), std::slice::from_ref(&cert), Side::Client).is_ok());
        }
    }
}
