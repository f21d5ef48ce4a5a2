//! The one peer verifier: [`TrustRules`] applied by a [`PeerVerifier`], which serves as
//! rustls' client *and* server certificate verifier, so there is one code path for
//! every rule.
//!
//! Both sides always present a certificate (mutual TLS 1.3). Which peers are accepted is
//! decided by the rules:
//! - *pinned*: the peer's fingerprint must be one of a set (a ticket or `--expect` on
//!   the sender; `--allow`/`--allow-file` on the listener). Nothing in the certificate
//!   is verified for it, not even a self-signature: the handshake signature (always
//!   checked) already proves the peer holds the pinned key, and a self-signature would
//!   prove nothing more;
//! - *CA* ([`CaTrust`], `--ca`): the peer's certificate must chain to one of the given CA
//!   certificates (see `ca.rs` for what is checked);
//! - no rule at all: any peer is accepted; the caller sees its fingerprint and warns.
//!
//! Each rule that is given must hold. The first that fails is the [`Refusal`]; the
//! verifier keeps it, so the dialing side can say why (`endpoint` turns it into the error
//! the user sees), and it is sent to the peer as the matching TLS alert
//! (certificate_expired, unknown_ca, …) so that side can say what is wrong too.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{CaRefusal, CaTrust, Fingerprint};

/// Which TLS role the peer being verified plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The peer accepted our connection (a listener, seen by a sender).
    Server,
    /// The peer dialed us (a sender, seen by a listener).
    Client,
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
    pub(super) fn check(
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

    /// `check` (kept for tests) for a certificate whose fingerprint is known.
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
pub(crate) struct PeerVerifier {
    rules: TrustRules,
    algorithms: WebPkiSupportedAlgorithms,
    /// The last certificate checked, for error messages (a client verifier checks one).
    seen: Mutex<Seen>,
}

impl PeerVerifier {
    pub(super) fn new(rules: TrustRules, provider: &CryptoProvider) -> Self {
        Self {
            rules,
            algorithms: provider.signature_verification_algorithms,
            seen: Mutex::default(),
        }
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

#[cfg(test)]
mod tests {
    use rustls::sign::{CertifiedKey, SingleCertAndKey};

    use super::*;
    use crate::net::tls::config::provider;
    use crate::net::tls::testing::{ca_rules, check, handshake, key, TestCa};
    use crate::net::tls::{client_config, server_config, Identity};

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
}
