//! Signing and verifying batched webhook bodies: `X-Ably-Signature` is
//! `base64(HMAC-SHA256(secret, body))`, `X-Ably-Key` names the key. Verification compares in
//! constant time, and says exactly why a request is refused (the route answers 401 to all).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::AblyKey;

/// The signature of `body` under `key`.
pub fn sign(key: &AblyKey, body: &[u8]) -> String {
    STANDARD.encode(mac(key, body).finalize().into_bytes())
}

fn mac(key: &AblyKey, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(key.secret().as_bytes()).expect("HMAC takes any key");
    m.update(body);
    m
}

/// Why a webhook request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no X-Ably-Signature header")]
    NoSignature,
    #[error("no X-Ably-Key header")]
    NoKey,
    #[error("X-Ably-Key names a key this route does not know")]
    UnknownKey,
    #[error("X-Ably-Signature is not base64")]
    NotBase64,
    #[error("X-Ably-Signature does not match the body")]
    Mismatch,
}

/// Checks a request's headers against the keys the route trusts. `X-Ably-Key` may be the key
/// name (`appId.keyId`) or the bare key id.
pub fn verify(keys: &[AblyKey], key_header: Option<&str>, signature: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
    let signature = signature.ok_or(Refusal::NoSignature)?;
    let named = key_header.ok_or(Refusal::NoKey)?.trim();
    let key = keys
        .iter()
        .find(|k| k.name == named || k.name.split_once('.').is_some_and(|(_, id)| id == named))
        .ok_or(Refusal::UnknownKey)?;
    let given = STANDARD.decode(signature.trim()).map_err(|_| Refusal::NotBase64)?;
    mac(key, body).verify_slice(&given).map_err(|_| Refusal::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_key_and_exact_body() {
        let key = AblyKey::parse("app.key1:s3cret").unwrap();
        let other = AblyKey::parse("app.key2:other").unwrap();
        let body = br#"{"items":[]}"#;
        let sig = sign(&key, body);
        // Independently: python3 -c "import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b's3cret',
        // b'{\"items\":[]}',hashlib.sha256).digest()).decode())"
        assert_eq!(sig, "LS8xnxb1EcI3YGlXcq7XRCsYVz4o3h9b0qlrhelhQao=");
        let keys = [other.clone(), key.clone()];
        assert_eq!(verify(&keys, Some("app.key1"), Some(&sig), body), Ok(()));
        assert_eq!(verify(&keys, Some("key1"), Some(&sig), body), Ok(()), "the bare key id");
        assert_eq!(verify(&keys, Some("app.key1"), Some(&sig), br#"{"items":[ ]}"#), Err(Refusal::Mismatch));
        assert_eq!(verify(&keys, Some("app.key2"), Some(&sig), body), Err(Refusal::Mismatch));
        assert_eq!(verify(&keys, Some("app.key3"), Some(&sig), body), Err(Refusal::UnknownKey));
        assert_eq!(verify(&keys, Some("app.key1"), None, body), Err(Refusal::NoSignature));
        assert_eq!(verify(&keys, None, Some(&sig), body), Err(Refusal::NoKey));
        assert_eq!(verify(&keys, Some("app.key1"), Some("%%%"), body), Err(Refusal::NotBase64));
    }
}
