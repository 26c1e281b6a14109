//! Cryptography for Portcullis: signing keys and compact JWS, secret hashing,
//! password hashing and envelope encryption of data at rest.
//!
//! JWS is done directly on aws-lc-rs with key pairs parsed once and kept in
//! memory: token issuance is the hot path and re-parsing a private key per
//! signature (as generic JWT crates do) costs as much as the signature itself.

pub mod aead;
pub mod jws;
pub mod keys;
pub mod password;
pub mod secret;
pub mod webhook;

pub use keys::{Algorithm, GeneratedKey, SigningKey, VerifyingKey};

/// Errors from this crate. Messages never contain key material or secrets.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key generation failed")]
    KeyGeneration,
    #[error("invalid key material")]
    InvalidKey,
    #[error("signing failed")]
    Signing,
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("signature verification failed")]
    BadSignature,
    #[error("decryption failed")]
    Decryption,
    #[error("password hashing failed")]
    PasswordHash,
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn b64url_decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| CryptoError::Malformed)
}
