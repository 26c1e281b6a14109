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
