//! High-entropy secrets: generation, SHA-256 hashing for storage, and
//! constant-time comparison.

use aws_lc_rs::rand::SecureRandom;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::b64url;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).expect("system RNG failed");
    bytes
}

/// A random secret of `N` bytes, base64url without padding.
pub fn random_token<const N: usize>() -> String {
    b64url(&random_bytes::<N>())
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random identifier of `len` base62 characters (unbiased by rejection).
pub fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in random_bytes::<32>() {
            // 248 = 62 * 4: reject the tail so every character is equally likely.
            if byte < 248 && out.len() < len {
                out.push(BASE62[(byte % 62) as usize] as char);
            }
        }
    }
    out
}

/// SHA-256 of a secret, hex-encoded, as stored in the database.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Compares a presented secret with a stored SHA-256 hash in constant time.
pub fn verify_secret(presented: &str, stored_hash: &str) -> bool {
    hash_secret(presented).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// SHA-256 then base64url, as used by PKCE S256.
pub fn sha256_b64url(input: &[u8]) -> String {
    b64url(&Sha256::digest(input))
}

/// Constant-time equality for two strings.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_verify() {
        let secret = random_token::<32>();
        assert_eq!(secret.len(), 43);
        let stored = hash_secret(&secret);
        assert!(verify_secret(&secret, &stored));
        assert!(!verify_secret("wrong", &stored));
        assert_ne!(random_token::<32>(), secret);
    }

    #[test]
    fn base62_has_requested_length_and_alphabet() {
        let id = random_base62(32);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
