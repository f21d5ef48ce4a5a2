//! What lets an endpoint restarted with the same identity reset the connections of its
//! previous run (QUIC stateless reset, RFC 9000 §10.3): reset tokens keyed by the
//! identity, and connection IDs that any run accepts as its own.
//!
//! What could go wrong, and how it is prevented: a peer of a restarted endpoint
//! (a listener registered with an introducer) would wait out an idle timeout; the
//! tokens are HMAC-SHA-256 of the connection ID under a key derived from the private
//! key (`Identity::reset_secret`), so only the holder of the identity can reset its
//! connections. quinn answers unknown packets with a reset at most every 20 ms and
//! always smaller than the packet, so resets cannot amplify.

use std::time::Duration;

/// Connection IDs of 8 random bytes.
pub(super) struct RandomCids;

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&rand::random::<[u8; 8]>())
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// HMAC-SHA-256 (RFC 2104) over sha2, the key of quinn's stateless reset tokens.
pub(super) struct ResetKey {
    inner: [u8; 64],
    outer: [u8; 64],
}

impl ResetKey {
    pub(super) fn new(secret: &[u8; 32]) -> Self {
        let (mut inner, mut outer) = ([0x36u8; 64], [0x5cu8; 64]);
        for (i, b) in secret.iter().enumerate() {
            inner[i] ^= b;
            outer[i] ^= b;
        }
        Self { inner, outer }
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let inner = Sha256::new()
            .chain_update(self.inner)
            .chain_update(data)
            .finalize();
        Sha256::new()
            .chain_update(self.outer)
            .chain_update(inner)
            .finalize()
            .into()
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let mac = self.mac(data);
        let n = signature_out.len().min(mac.len());
        signature_out[..n].copy_from_slice(&mac[..n]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        let mac = self.mac(data);
        // Constant time: no early exit on the first differing byte.
        let same = signature.len() == mac.len()
            && signature
                .iter()
                .zip(mac.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(quinn::crypto::CryptoError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reset key is HMAC-SHA-256: RFC 4231's test case 2 (a short key), and
    /// verify accepts its own signatures only.
    #[test]
    fn the_reset_key_is_hmac_sha256() {
        use quinn::crypto::HmacKey;
        let mut secret = [0u8; 32];
        secret[..4].copy_from_slice(b"Jefe");
        let key = ResetKey::new(&secret);
        let mac = key.mac(b"what do ya want for nothing?");
        assert_eq!(
            data_encoding::HEXLOWER.encode(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut sig = [0u8; 32];
        key.sign(b"cid", &mut sig);
        assert!(key.verify(b"cid", &sig).is_ok());
        assert!(key.verify(b"cie", &sig).is_err());
    }
}
