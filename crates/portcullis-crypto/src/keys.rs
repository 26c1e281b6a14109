//! Signing key generation, loading and public JWK export.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair};
use serde_json::{Value, json};

use crate::{CryptoError, b64url, b64url_decode};

/// The signing algorithms an environment's keys may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Es256,
    EdDsa,
}

impl Algorithm {
    /// The name used in the Management API (`rs256`, `es256`, `eddsa`).
    pub fn api_name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "rs256",
            Algorithm::Es256 => "es256",
            Algorithm::EdDsa => "eddsa",
        }
    }

    /// The JOSE `alg` value.
    pub fn jose_name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    pub fn from_api_name(name: &str) -> Option<Self> {
        match name {
            "rs256" => Some(Algorithm::Rs256),
            "es256" => Some(Algorithm::Es256),
            "eddsa" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

/// RSA modulus sizes we accept.
pub const RSA_KEY_SIZES: [u32; 3] = [2048, 3072, 4096];

/// A freshly generated key: the PKCS#8 private key (to be encrypted before it
/// is stored) and the public JWK (stored in clear, served from the JWKS).
pub struct GeneratedKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub pkcs8: Vec<u8>,
    pub public_jwk: Value,
}

/// A random key id: 8 random bytes, 11 base64url characters.
pub fn new_kid() -> String {
    b64url(&crate::secret::random_bytes::<8>())
}

/// Generates a key pair. `rsa_bits` is only read for RS256.
pub fn generate(algorithm: Algorithm, rsa_bits: u32) -> Result<GeneratedKey, CryptoError> {
    let kid = new_kid();
    let pkcs8 = match algorithm {
        Algorithm::Rs256 => {
            let size = match rsa_bits {
                2048 => KeySize::Rsa2048,
                3072 => KeySize::Rsa3072,
                4096 => KeySize::Rsa4096,
                _ => return Err(CryptoError::KeyGeneration),
            };
            let pair = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|_| CryptoError::KeyGeneration)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                pair.as_der().map_err(|_| CryptoError::KeyGeneration)?;
            der.as_ref().to_vec()
        }
        Algorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| CryptoError::KeyGeneration)?
                .as_ref()
                .to_vec()
        }
        Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| CryptoError::KeyGeneration)?
            .as_ref()
            .to_vec(),
    };
    let key = SigningKey::from_pkcs8(&kid, algorithm, &pkcs8)?;
    Ok(GeneratedKey { public_jwk: key.public_jwk(), kid, algorithm, pkcs8 })
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private key parsed once and kept for signing.
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    pair: Pair,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn from_pkcs8(kid: &str, algorithm: Algorithm, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let pair = match algorithm {
            Algorithm::Rs256 => {
                Pair::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidKey)?)
            }
            Algorithm::Es256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| CryptoError::InvalidKey)?,
            ),
            Algorithm::EdDsa => {
                Pair::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::InvalidKey)?)
            }
        };
        Ok(SigningKey { kid: kid.to_owned(), algorithm, pair, rng: SystemRandom::new() })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut sig)
                    .map_err(|_| CryptoError::Signing)?;
                Ok(sig)
            }
            Pair::Ec(pair) => {
                Ok(pair.sign(&self.rng, message).map_err(|_| CryptoError::Signing)?.as_ref().to_vec())
            }
            Pair::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
        }
    }

    /// The public half as a JWK (RFC 7517) with `kid`, `use` and `alg`.
    pub fn public_jwk(&self) -> Value {
        let alg = self.algorithm.jose_name();
        match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                let components: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = public.into();
                json!({"kty": "RSA", "use": "sig", "alg": alg, "kid": self.kid,
                       "n": b64url(&components.n), "e": b64url(&components.e)})
            }
            Pair::Ec(pair) => {
                // Uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "use": "sig", "alg": alg, "kid": self.kid, "crv": "P-256",
                       "x": b64url(&point[1..33]), "y": b64url(&point[33..65])})
            }
            Pair::Ed(pair) => {
                json!({"kty": "OKP", "use": "sig", "alg": alg, "kid": self.kid, "crv": "Ed25519",
                       "x": b64url(pair.public_key().as_ref())})
            }
        }
    }

    /// The matching verifier, without a round trip through the JWK.
    pub fn verifying_key(&self) -> Result<VerifyingKey, CryptoError> {
        VerifyingKey::from_jwk(&self.public_jwk())
    }
}

/// A public key parsed once and kept for verification.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: String,
    pub algorithm: Algorithm,
    parsed: ParsedPublicKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Builds a verifier from one of our own public JWKs.
    pub fn from_jwk(jwk: &Value) -> Result<Self, CryptoError> {
        let field = |name: &str| -> Result<Vec<u8>, CryptoError> {
            b64url_decode(jwk.get(name).and_then(Value::as_str).ok_or(CryptoError::InvalidKey)?)
        };
        let kid = jwk.get("kid").and_then(Value::as_str).ok_or(CryptoError::InvalidKey)?;
        let (algorithm, parsed) = match jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                let components = aws_lc_rs::rsa::PublicKeyComponents { n: field("n")?, e: field("e")? };
                let der: aws_lc_rs::encoding::PublicKeyX509Der<'static> =
                    components.as_der().map_err(|_| CryptoError::InvalidKey)?;
                let parsed = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der.as_ref())
                    .map_err(|_| CryptoError::InvalidKey)?;
                (Algorithm::Rs256, parsed)
            }
            Some("EC") => {
                let mut point = vec![0x04];
                point.extend(field("x")?);
                point.extend(field("y")?);
                let parsed = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .map_err(|_| CryptoError::InvalidKey)?;
                (Algorithm::Es256, parsed)
            }
            Some("OKP") => {
                let parsed = ParsedPublicKey::new(&signature::ED25519, field("x")?)
                    .map_err(|_| CryptoError::InvalidKey)?;
                (Algorithm::EdDsa, parsed)
            }
            _ => return Err(CryptoError::InvalidKey),
        };
        Ok(VerifyingKey { kid: kid.to_owned(), algorithm, parsed })
    }

    pub fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.parsed.verify_sig(message, sig).map_err(|_| CryptoError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_and_verifies() {
        for (alg, bits) in [(Algorithm::Es256, 0), (Algorithm::EdDsa, 0), (Algorithm::Rs256, 2048)] {
            let generated = generate(alg, bits).unwrap();
            assert_eq!(generated.kid.len(), 11);
            let key = SigningKey::from_pkcs8(&generated.kid, alg, &generated.pkcs8).unwrap();
            let sig = key.sign(b"message").unwrap();
            let verifier = VerifyingKey::from_jwk(&generated.public_jwk).unwrap();
            verifier.verify(b"message", &sig).unwrap();
            assert!(verifier.verify(b"massage", &sig).is_err(), "{alg:?} accepted a wrong message");
            assert_eq!(generated.public_jwk["alg"], alg.jose_name());
        }
    }

    #[test]
    fn rejects_unsupported_rsa_size_and_garbage_keys() {
        assert!(generate(Algorithm::Rs256, 1024).is_err());
        assert!(SigningKey::from_pkcs8("k", Algorithm::Es256, b"not a key").is_err());
        assert!(VerifyingKey::from_jwk(&json!({"kty": "EC", "kid": "k", "x": "AA", "y": "AA"})).is_err());
    }
}
