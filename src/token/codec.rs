//! The JWT compact form, decoded strictly: three parts, unpadded base64url with no stray
//! characters, JSON objects without duplicate keys. Signatures are made and checked by the
//! `jsonwebtoken` crate (HS256 only); the strict decoding around it is this project's own,
//! because the crate accepts what a strict reader should not (docs/tokens.md lists where).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `header.claims` with HS256 as given (tests use this to make tokens with odd headers;
/// `issue` goes through `jsonwebtoken::encode`).
pub fn sign(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = mac(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig))
}

/// The crate refuses an empty HMAC key. HMAC pads keys with zero bytes to its block size, so an
/// empty key and the one-byte key `[0]` are the same key: that stands in for it.
fn hmac_key(secret: &[u8]) -> &[u8] {
    if secret.is_empty() { &[0] } else { secret }
}

/// The raw HS256 MAC of `input`.
pub fn mac(secret: &[u8], input: &[u8]) -> Vec<u8> {
    // Not empty (above), so the key is accepted.
    let key = EncodingKey::from_secret(hmac_key(secret)).expect("a non-empty HMAC key");
    let sig = jsonwebtoken::crypto::sign(input, &key, Algorithm::HS256)
        // HMAC takes a key of any length and HS256 is built in: signing cannot fail.
        .expect("HS256 signing");
    // The crate returns base64url text, which it made itself.
    URL_SAFE_NO_PAD.decode(sig).expect("the crate's own base64url")
}

/// An HS256 verification key for `jsonwebtoken`.
///
/// The crate's verifier holds the HMAC state with the key already absorbed (two hash blocks
/// saved per token), but it is neither `Send` nor `Sync`; so each thread that verifies keeps its
/// own verifiers, made once per key by the crate's crypto provider and cloned per token by the
/// crate itself.
#[derive(Clone)]
pub struct PreparedKey {
    key: DecodingKey,
    /// Tells this key's verifier apart in a thread's cache.
    id: u64,
}

thread_local! {
    static VERIFIERS: std::cell::RefCell<Vec<(u64, Box<dyn jsonwebtoken::crypto::JwtVerifier>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl PreparedKey {
    pub fn new(secret: &[u8]) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        // Not empty (see `hmac_key`), so the key is accepted.
        let key = DecodingKey::from_secret(hmac_key(secret)).expect("a non-empty HMAC key");
        PreparedKey { key, id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) }
    }

    /// Whether `signature` (decoded) is the HS256 signature of `input`, checked by
    /// `jsonwebtoken`'s verifier (constant-time comparison).
    pub fn signature_ok(&self, input: &[u8], signature: &[u8]) -> bool {
        VERIFIERS.with_borrow_mut(|cache| {
            if !cache.iter().any(|(id, _)| *id == self.id) {
                let Some(provider) = jsonwebtoken::crypto::CryptoProvider::try_get_default() else { return false };
                let Ok(v) = (provider.verifier_factory)(&Algorithm::HS256, &self.key) else { return false };
                // Keys are few (a rotation keeps two or three); a process that made many is a
                // test or a fuzzer, and a cleared cache only costs a rebuild.
                if cache.len() >= 64 {
                    cache.clear();
                }
                cache.push((self.id, v));
            }
            cache
                .iter()
                .find(|(id, _)| *id == self.id)
                .is_some_and(|(_, v)| v.verify(input, &signature.to_vec()).is_ok())
        })
    }
}

/// The three parts of a compact JWT, still encoded.
pub struct Parts<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
}

impl<'a> Parts<'a> {
    pub fn split(token: &'a str) -> Result<Self, String> {
        let n = token.split('.').count();
        let mut it = token.splitn(3, '.');
        match (n, it.next(), it.next(), it.next()) {
            (3, Some(h), Some(p), Some(s)) => {
                Ok(Parts { header: h, payload: p, signature: s, signing_input: &token[..h.len() + 1 + p.len()] })
            }
            _ => Err(format!("expected three dot-separated parts (header.payload.signature), found {n}")),
        }
    }
}

/// Decodes one part; the error names the part and what is wrong with it.
pub fn decode_part(name: &str, text: &str) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Err(format!("the {name} is empty"));
    }
    // The strict engine refuses padding and stray characters by itself; the scans below only
    // run to say precisely what was wrong.
    if let Ok(bytes) = URL_SAFE_NO_PAD.decode(text) {
        return Ok(bytes);
    }
    if text.contains('=') {
        return Err(format!("the {name} is base64 with padding ('='), which JWTs do not use"));
    }
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_')) {
        return Err(format!("the {name} has a character base64url does not use: {c:?}"));
    }
    URL_SAFE_NO_PAD.decode(text).map_err(|e| format!("the {name} is not valid base64url: {e}"))
}

/// Parses a JSON object, refusing duplicate keys (serde_json would keep the last silently,
/// which lets two parsers of one token disagree).
pub fn parse_object(name: &str, bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("the {name} is not UTF-8 text"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let map = de.deserialize_map(StrictMap).map_err(|e| {
        let m = e.to_string();
        if m.starts_with("duplicate key") {
            format!("the {name} has a {m}")
        } else {
            format!("the {name} is not a JSON object: {m}")
        }
    })?;
    de.end().map_err(|e| format!("the {name} has trailing data: {e}"))?;
    Ok(map)
}

struct StrictMap;

impl<'de> Visitor<'de> for StrictMap {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let v: Value = access.next_value()?;
            map.insert(key, v);
        }
        Ok(map)
    }
}
