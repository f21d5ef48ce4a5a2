//! The rustls configurations: the server's, made once per endpoint, and the client's,
//! made per dial from a template made once per identity; and the crypto provider they
//! share, made once per process.
//!
//! Both offer and accept TLS 1.3 only, with ALPN `qp2p/1`, and disable session tickets,
//! resumption and early data, so every connection is verified from its certificate.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::sign::SingleCertAndKey;

use super::{Identity, PeerVerifier, TlsError, TrustRules};

/// The ALPN protocol id of this wire protocol version.
pub(crate) const ALPN: &[u8] = b"qp2p/1";

/// The name a client puts in its SNI; peers are addressed by IP, so it is never checked.
pub(crate) const SERVER_NAME: &str = "qp2p";

/// ring's provider with AES-128-GCM preferred: as strong as needed for a session key,
/// and a quarter cheaper per byte than AES-256 (payload encryption is the largest cost
/// after hashing in a transfer). Made once per process: every dial shares it.
pub(super) fn provider() -> Arc<CryptoProvider> {
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
pub(crate) fn server_config(
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
pub(crate) fn client_config(
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
pub(super) fn client_template(
    certified: Arc<SingleCertAndKey>,
) -> Result<rustls::ClientConfig, TlsError> {
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
    use crate::net::tls::testing::handshake;
    use crate::net::tls::Side;

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
}
