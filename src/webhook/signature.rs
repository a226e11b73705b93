//! `X-Hub-Signature-256` verification: HMAC-SHA256 over the exact raw body, constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. All variants answer 401; the detail is for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match any configured secret")]
    Mismatch,
}

/// `sha256=<hex>` for `body` under `secret` (used by `send-webhook` and tests).
#[must_use]
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `header` against every secret (rotation); compares in constant time.
///
/// # Errors
/// Missing, malformed or mismatched signature.
pub fn verify_signature(secrets: &[Secret], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_part = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    if hex_part.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let mut given = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut given).map_err(|_| SignatureError::Malformed)?;
    let mut ok = subtle::Choice::from(0);
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts keys of any length");
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        // Check every secret, so timing does not reveal which one matched.
        ok |= expected[..].ct_eq(&given);
    }
    if bool::from(ok) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented test vector (docs "Validating webhook deliveries").
    const SECRET: &str = "It's a Secret to Everybody";
    const PAYLOAD: &str = "Hello, World!";
    const HEADER: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_test_vector_verifies() {
        assert_eq!(sign(SECRET.as_bytes(), PAYLOAD.as_bytes()), HEADER);
        assert_eq!(verify_signature(&[Secret::from(SECRET)], Some(HEADER), PAYLOAD.as_bytes()), Ok(()));
    }

    #[test]
    fn any_of_several_secrets_verifies_for_rotation() {
        let secrets = [Secret::from("old"), Secret::from(SECRET)];
        assert_eq!(verify_signature(&secrets, Some(HEADER), PAYLOAD.as_bytes()), Ok(()));
    }

    #[test]
    fn refuses_missing_malformed_tampered_and_uppercase_prefix() {
        let s = [Secret::from(SECRET)];
        assert_eq!(verify_signature(&s, None, b"x"), Err(SignatureError::Missing));
        assert_eq!(verify_signature(&s, Some("sha1=abc"), b"x"), Err(SignatureError::Malformed));
        assert_eq!(verify_signature(&s, Some("sha256=zz"), b"x"), Err(SignatureError::Malformed));
        assert_eq!(verify_signature(&s, Some(HEADER), b"Hello, World?"), Err(SignatureError::Mismatch));
        let other = [Secret::from("wrong")];
        assert_eq!(verify_signature(&other, Some(HEADER), PAYLOAD.as_bytes()), Err(SignatureError::Mismatch));
    }
}
