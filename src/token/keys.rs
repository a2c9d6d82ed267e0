//! Signing keys: `RESUME_TOKEN_SECRET` (one key, kid `RESUME_TOKEN_KID` or `default`) or
//! `RESUME_TOKEN_KEYS` (`kid:secret,...`: the first signs, all verify), each also as `_FILE`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::codec::PreparedKey;
use crate::config::{Config, ConfigError, Source};

/// Shorter secrets are refused: HS256 needs at least as many key bytes as hash bytes.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub struct Keys {
    keys: Vec<(String, SecretString)>,
    /// The same keys, prepared for verification (same order).
    prepared: Vec<PreparedKey>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "Keys({kids:?})")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("RESUME_TOKEN_SECRET or RESUME_TOKEN_KEYS is not set (nor their _FILE forms)")]
    Missing,
    #[error("{name} from {source_}: {reason}")]
    Invalid { name: &'static str, source_: Source, reason: String },
}

impl Keys {
    /// The keys of the configuration: `RESUME_TOKEN_KEYS`, else `RESUME_TOKEN_SECRET`.
    pub fn from_config(c: &Config) -> Result<Self, KeysError> {
        if let Some(s) = &c.resume_token_keys {
            let invalid =
                |reason: String| KeysError::Invalid { name: "RESUME_TOKEN_KEYS", source_: s.source.clone(), reason };
            let mut keys = Vec::new();
            for (i, item) in s.value.expose_secret().split(',').map(str::trim).filter(|x| !x.is_empty()).enumerate() {
                let (kid, secret) =
                    item.split_once(':').ok_or_else(|| invalid(format!("entry {} is not kid:secret", i + 1)))?;
                let kid = kid.trim();
                if kid.is_empty() {
                    return Err(invalid(format!("entry {} has an empty kid", i + 1)));
                }
                if keys.iter().any(|(k, _)| k == kid) {
                    return Err(invalid(format!("kid {kid:?} appears twice")));
                }
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(invalid(format!(
                        "the secret of kid {kid:?} is {} bytes; at least {MIN_SECRET_BYTES} are required",
                        secret.len()
                    )));
                }
                keys.push((kid.to_string(), SecretString::from(secret.to_string())));
            }
            if keys.is_empty() {
                return Err(invalid("no kid:secret entries".into()));
            }
            return Ok(Keys::new(keys));
        }
        if let Some(s) = &c.resume_token_secret {
            let len = s.value.expose_secret().len();
            if len < MIN_SECRET_BYTES {
                return Err(KeysError::Invalid {
                    name: "RESUME_TOKEN_SECRET",
                    source_: s.source.clone(),
                    reason: format!("the secret is {len} bytes; at least {MIN_SECRET_BYTES} are required"),
                });
            }
            let kid = c.resume_token_kid.as_ref().map(|k| k.value.clone()).unwrap_or_else(|| "default".into());
            return Ok(Keys::new(vec![(kid, s.value.clone())]));
        }
        Err(KeysError::Missing)
    }

    fn new(keys: Vec<(String, SecretString)>) -> Self {
        let prepared = keys.iter().map(|(_, s)| PreparedKey::new(s.expose_secret().as_bytes())).collect();
        Keys { keys, prepared }
    }

    /// Keys from `(kid, secret)` pairs (tests, benchmarks, fuzzing). At least one pair: the first
    /// signs, and `signing` relies on it.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        assert!(!pairs.is_empty(), "Keys::from_pairs needs at least one key");
        Keys::new(pairs.iter().map(|(k, s)| (k.to_string(), SecretString::from(s.to_string()))).collect())
    }

    /// The key that signs: the first. Every constructor refuses an empty key list, so it exists.
    pub fn signing(&self) -> (&str, &[u8]) {
        let (kid, s) = &self.keys[0];
        (kid, s.expose_secret().as_bytes())
    }

    /// The verification key of `kid`.
    pub fn get(&self, kid: &str) -> Option<&PreparedKey> {
        self.keys.iter().position(|(k, _)| k == kid).map(|i| &self.prepared[i])
    }

    /// The verification key when there is only one.
    pub fn single(&self) -> Option<&PreparedKey> {
        (self.keys.len() == 1).then(|| &self.prepared[0])
    }

    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|(k, _)| k.as_str()).collect()
    }
}
