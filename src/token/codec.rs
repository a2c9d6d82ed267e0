//! The JWT compact form, decoded strictly: three parts, unpadded base64url with no stray
//! characters, JSON objects without duplicate keys. HS256 signing and constant-time checking.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sign(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = mac(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig))
}

pub fn mac(secret: &[u8], input: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(input);
    m.finalize().into_bytes().to_vec()
}

/// An HMAC-SHA256 key prepared once (its inner and outer pads hashed), cloned per token.
#[derive(Clone)]
pub struct PreparedKey(HmacSha256);

impl PreparedKey {
    pub fn new(secret: &[u8]) -> Self {
        PreparedKey(HmacSha256::new_from_slice(secret).expect("HMAC takes any key length"))
    }

    /// Whether `sig` is the HS256 signature of `input`, compared in constant time.
    pub fn signature_ok(&self, input: &[u8], sig: &[u8]) -> bool {
        let mut m = self.0.clone();
        m.update(input);
        m.verify_slice(sig).is_ok()
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
