//! Envelope encryption of data at rest (private keys, app credentials) with
//! AES-256-GCM under the master key. The associated data binds a ciphertext to
//! the row it belongs to, so a value copied to another row does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;

use crate::CryptoError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const VERSION: &str = "v1";

#[derive(Clone)]
pub struct MasterKey(Aes256Gcm);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Parses a base64-encoded 32-byte key.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = B64.decode(text.trim()).map_err(|_| CryptoError::InvalidKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        Ok(MasterKey(Aes256Gcm::new(&key.into())))
    }

    /// A new random key, base64-encoded.
    pub fn generate_base64() -> String {
        B64.encode(crate::secret::random_bytes::<32>())
    }

    /// Encrypts to `v1:<base64 nonce||ciphertext>`.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<String, CryptoError> {
        let nonce = crate::secret::random_bytes::<12>();
        let ciphertext = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            .map_err(|_| CryptoError::InvalidKey)?;
        let mut blob = nonce.to_vec();
        blob.extend(ciphertext);
        Ok(format!("{VERSION}:{}", B64.encode(blob)))
    }

    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, CryptoError> {
        let body = sealed.strip_prefix("v1:").ok_or(CryptoError::Decryption)?;
        let blob = B64.decode(body).map_err(|_| CryptoError::Decryption)?;
        if blob.len() < 12 {
            return Err(CryptoError::Decryption);
        }
        let (nonce, ciphertext) = blob.split_at(12);
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: aad.as_bytes() })
            .map_err(|_| CryptoError::Decryption)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let sealed = key.seal(b"private", "row-1").unwrap();
        assert!(!sealed.contains("private"));
        assert_eq!(key.open(&sealed, "row-1").unwrap(), b"private");
        assert!(key.open(&sealed, "row-2").is_err(), "ciphertext moved to another row decrypted");
        let other = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        assert!(other.open(&sealed, "row-1").is_err());
        assert!(MasterKey::from_base64("short").is_err());
    }
}

/// Sealed values (private keys at rest, sealed sign-in flows in cookies)
/// come back only to the key and row they were sealed for, unaltered.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn open_inverts_seal_only_for_the_same_associated_data(
            plaintext in prop::collection::vec(any::<u8>(), 0..512),
            aad in any::<String>(),
            other_aad in any::<String>(),
        ) {
            let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
            let sealed = key.seal(&plaintext, &aad).unwrap();
            prop_assert_eq!(key.open(&sealed, &aad).unwrap(), plaintext);
            if other_aad != aad {
                prop_assert!(key.open(&sealed, &other_aad).is_err());
            }
        }

        #[test]
        fn any_change_to_a_sealed_value_is_refused(
            plaintext in prop::collection::vec(any::<u8>(), 0..64),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
            let sealed = key.seal(&plaintext, "row").unwrap();
            let blob = B64.decode(&sealed[3..]).unwrap();
            let reseal = |blob: &[u8]| format!("v1:{}", B64.encode(blob));
            let mut changed = blob.clone();
            changed[at.index(blob.len())] ^= 1 << bit;
            prop_assert!(key.open(&reseal(&changed), "row").is_err());
            // Cut short or extended: refused too.
            prop_assert!(key.open(&reseal(&blob[..blob.len() - 1]), "row").is_err());
            let mut longer = blob;
            longer.push(0);
            prop_assert!(key.open(&reseal(&longer), "row").is_err());
        }

        #[test]
        fn arbitrary_text_never_opens(text in any::<String>()) {
            let key = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
            let prefixed = ["v1:", &text].concat();
            prop_assert!(key.open(&text, "row").is_err());
            prop_assert!(key.open(&prefixed, "row").is_err());
        }
    }
}
