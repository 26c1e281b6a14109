//! Compact JWS (RFC 7515) signing and verification for our own tokens.

use serde::Serialize;
use serde_json::Value;

use crate::{CryptoError, SigningKey, VerifyingKey, b64url, b64url_decode};

/// Signs `claims` with `key`, putting `typ` (e.g. `at+jwt`, `JWT`) and the key's
/// `kid` and `alg` in the protected header.
pub fn sign<T: Serialize>(key: &SigningKey, typ: &str, claims: &T) -> Result<String, CryptoError> {
    let header = serde_json::json!({"alg": key.algorithm().jose_name(), "kid": key.kid(), "typ": typ});
    let header = serde_json::to_vec(&header).map_err(|_| CryptoError::Signing)?;
    let payload = serde_json::to_vec(claims).map_err(|_| CryptoError::Signing)?;
    let mut token = String::with_capacity(64 + payload.len() * 4 / 3 + 700);
    token.push_str(&b64url(&header));
    token.push('.');
    token.push_str(&b64url(&payload));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64url(&signature));
    Ok(token)
}

/// The parts of a verified token.
#[derive(Debug)]
pub struct Verified {
    pub header: Value,
    pub claims: Value,
}

/// The unverified protected header, to pick the key by `kid`.
pub fn peek_header(token: &str) -> Result<Value, CryptoError> {
    let header = token.split('.').next().ok_or(CryptoError::Malformed)?;
    serde_json::from_slice(&b64url_decode(header)?).map_err(|_| CryptoError::Malformed)
}

/// Verifies a compact JWS with the key that `find_key` returns for its `kid`.
/// The header's `alg` must be the key's algorithm (no `none`, no confusion).
pub fn verify<'k>(
    token: &str,
    find_key: impl FnOnce(&str) -> Option<&'k VerifyingKey>,
) -> Result<Verified, CryptoError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(CryptoError::Malformed);
    };
    let header: Value =
        serde_json::from_slice(&b64url_decode(header_b64)?).map_err(|_| CryptoError::Malformed)?;
    let kid = header.get("kid").and_then(Value::as_str).ok_or(CryptoError::UnknownKey)?;
    let key = find_key(kid).ok_or(CryptoError::UnknownKey)?;
    if header.get("alg").and_then(Value::as_str) != Some(key.algorithm.jose_name()) {
        return Err(CryptoError::BadSignature);
    }
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    key.verify(&token.as_bytes()[..signing_input_len], &b64url_decode(sig_b64)?)?;
    let claims = serde_json::from_slice(&b64url_decode(payload_b64)?).map_err(|_| CryptoError::Malformed)?;
    Ok(Verified { header, claims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, generate};
    use serde_json::json;

    fn key() -> (SigningKey, VerifyingKey) {
        let g = generate(Algorithm::Es256, 0).unwrap();
        let sk = SigningKey::from_pkcs8(&g.kid, g.algorithm, &g.pkcs8).unwrap();
        let vk = sk.verifying_key().unwrap();
        (sk, vk)
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let (sk, vk) = key();
        let token = sign(&sk, "at+jwt", &json!({"sub": "abc"})).unwrap();
        let verified = verify(&token, |kid| (kid == vk.kid).then_some(&vk)).unwrap();
        assert_eq!(verified.claims["sub"], "abc");
        assert_eq!(verified.header["typ"], "at+jwt");

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64url(br#"{"sub":"admin"}"#);
        parts[1] = &forged;
        let tampered = parts.join(".");
        assert!(matches!(verify(&tampered, |_| Some(&vk)), Err(CryptoError::BadSignature)));
    }

    #[test]
    fn rejects_unknown_kid_alg_none_and_garbage() {
        let (sk, vk) = key();
        let token = sign(&sk, "JWT", &json!({})).unwrap();
        assert!(matches!(verify(&token, |_| None), Err(CryptoError::UnknownKey)));
        let none_header = b64url(format!(r#"{{"alg":"none","kid":"{}"}}"#, vk.kid).as_bytes());
        let rest: Vec<&str> = token.split('.').skip(1).collect();
        let forged = format!("{none_header}.{}.", rest[0]);
        assert!(verify(&forged, |_| Some(&vk)).is_err());
        assert!(matches!(verify("a.b", |_| Some(&vk)), Err(CryptoError::Malformed)));
        assert!(matches!(verify("a.b.c.d", |_| Some(&vk)), Err(CryptoError::Malformed)));
    }
}
