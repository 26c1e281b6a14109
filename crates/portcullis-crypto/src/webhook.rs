//! Standard Webhooks signatures (<https://www.standardwebhooks.com>):
//! `whsec_` secrets and `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.
//! Receivers verify with the `standardwebhooks` or `svix` libraries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::CryptoError;
use crate::secret::random_bytes;

/// The prefix of a signing secret; the rest is the key, base64.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: 32 random bytes (the specification asks for 24 to 64).
pub fn generate_secret() -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(random_bytes::<32>()))
}

/// The key bytes of a `whsec_` secret.
fn key_of(secret: &str) -> Result<Vec<u8>, CryptoError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(CryptoError::InvalidKey)?;
    STANDARD.decode(encoded).map_err(|_| CryptoError::InvalidKey)
}

/// One `v1,<signature>` entry of the `webhook-signature` header.
pub fn sign(secret: &str, message_id: &str, timestamp: i64, body: &[u8]) -> Result<String, CryptoError> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key_of(secret)?);
    let mut context = aws_lc_rs::hmac::Context::with_key(&key);
    context.update(message_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    Ok(format!("v1,{}", STANDARD.encode(context.sign().as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specifications_example() {
        // The example of the Standard Webhooks specification (and of the
        // libraries' own tests).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_prefixed_and_decode_to_32_bytes() {
        let secret = generate_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(key_of(&secret).unwrap().len(), 32);
        assert_ne!(secret, generate_secret());
        assert!(sign("not-a-secret", "id", 1, b"").is_err());
    }
}
