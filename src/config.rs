//! Configuration: flag > environment > config file > default, with the place each setting came
//! from, so that an error can say exactly which setting was wrong and where it was read.
//!
//! Secrets (`ABLY_API_KEY`, `CHATWOOT_API_TOKEN`, `REDIS_URL`, `DATABASE_URL`, `RESUME_TOKEN_*`,
//! `SLACK_WEBHOOK_URL`, `SMTP_URL`) may also come from `NAME_FILE=/path`; they are held as
//! [`SecretString`] and no flag takes one.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// Where a setting's value was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(String),
    Env(String),
    EnvFile { var: String, path: PathBuf },
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "flag {name}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::EnvFile { var, path } => write!(f, "{var}={}", path.display()),
            Source::File(path) => write!(f, "config file {}", path.display()),
            Source::Default => write!(f, "default"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{name} is not set (set the environment variable {name}, {name}_FILE, or `{key}` in the config file{looked})"
    )]
    Missing { name: &'static str, key: String, looked: String },
    #[error("{name} from {source_}: {reason}")]
    Invalid { name: &'static str, source_: Source, reason: String },
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// The raw material settings are resolved from. Built by the binary from the real process
/// environment, and by tests from a map.
#[derive(Debug, Default, Clone)]
pub struct Layers {
    pub flags: HashMap<&'static str, (String, String)>,
    pub env: HashMap<String, String>,
    pub file: Option<(PathBuf, toml::Table)>,
}

impl Layers {
    /// Reads the config file named by `--config`, else `BROKER_OPS_CONFIG`, else
    /// `./broker-ops.toml` when it exists.
    pub fn new(env: HashMap<String, String>, config_flag: Option<&Path>) -> Result<Self, ConfigError> {
        let path = match (config_flag, env.get("BROKER_OPS_CONFIG")) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => {
                let p = PathBuf::from("broker-ops.toml");
                p.exists().then_some(p)
            }
        };
        let file = match path {
            Some(path) => Some((path.clone(), read_toml(&path)?)),
            None => None,
        };
        Ok(Layers { flags: HashMap::new(), env, file })
    }

    /// Records a non-secret setting given on the command line (`name` is the variable name).
    pub fn flag(&mut self, name: &'static str, flag: &str, value: Option<String>) {
        if let Some(v) = value {
            self.flags.insert(name, (flag.to_string(), v));
        }
    }

    fn file_key(name: &str) -> String {
        name.to_ascii_lowercase()
    }

    /// Looks a plain setting up through the layers.
    pub fn plain(&self, name: &'static str) -> Result<Option<Setting<String>>, ConfigError> {
        if let Some((flag, v)) = self.flags.get(name) {
            return Ok(Some(Setting { value: v.clone(), source: Source::Flag(flag.clone()) }));
        }
        if let Some(v) = self.env.get(name).filter(|v| !v.is_empty()) {
            return Ok(Some(Setting { value: v.clone(), source: Source::Env(name.to_string()) }));
        }
        self.file_value(name)
    }

    /// Looks a secret up: environment, `NAME_FILE`, config file (`name` or `name_file`).
    /// Flags are never consulted.
    pub fn secret(&self, name: &'static str) -> Result<Option<Setting<SecretString>>, ConfigError> {
        if let Some(v) = self.env.get(name).filter(|v| !v.is_empty()) {
            let value = SecretString::from(v.trim().to_string());
            return Ok(Some(Setting { value, source: Source::Env(name.to_string()) }));
        }
        let file_var = format!("{name}_FILE");
        if let Some(p) = self.env.get(&file_var).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(p);
            let source = Source::EnvFile { var: file_var, path: path.clone() };
            return read_secret_file(name, &path, source).map(Some);
        }
        if let Some(s) = self.file_value(name)? {
            return Ok(Some(Setting { value: SecretString::from(s.value), source: s.source }));
        }
        let key = format!("{}_file", Self::file_key(name));
        if let Some((cfg, table)) = &self.file
            && let Some(v) = table.get(&key)
        {
            let p = v.as_str().ok_or_else(|| ConfigError::Invalid {
                name,
                source_: Source::File(cfg.clone()),
                reason: format!("`{key}` must be a string path"),
            })?;
            return read_secret_file(name, Path::new(p), Source::File(cfg.clone())).map(Some);
        }
        Ok(None)
    }

    fn file_value(&self, name: &'static str) -> Result<Option<Setting<String>>, ConfigError> {
        let Some((path, table)) = &self.file else { return Ok(None) };
        let key = Self::file_key(name);
        match table.get(&key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(Setting { value: s.clone(), source: Source::File(path.clone()) })),
            Some(toml::Value::Integer(i)) => {
                Ok(Some(Setting { value: i.to_string(), source: Source::File(path.clone()) }))
            }
            Some(other) => Err(ConfigError::Invalid {
                name,
                source_: Source::File(path.clone()),
                reason: format!("`{key}` must be a string, found {}", other.type_str()),
            }),
        }
    }

    /// The error for a setting a command needs but nobody set.
    pub fn missing(&self, name: &'static str) -> ConfigError {
        let looked = match &self.file {
            Some((p, _)) => format!(" {}", p.display()),
            None => String::new(),
        };
        ConfigError::Missing { name, key: Self::file_key(name), looked }
    }
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File { path: path.to_path_buf(), reason: e.to_string() })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::File { path: path.to_path_buf(), reason: e.message().to_string() })
}

fn read_secret_file(name: &'static str, path: &Path, source: Source) -> Result<Setting<SecretString>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        name,
        source_: source.clone(),
        reason: format!("cannot read secret file: {e}"),
    })?;
    // Files written by `echo` or editors end in a newline that is not part of the secret.
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(ConfigError::Invalid { name, source_: source, reason: "secret file is empty".into() });
    }
    Ok(Setting { value: SecretString::from(value), source })
}

/// An Ably API key `appId.keyId:secret`; the secret half never leaves this type unredacted.
#[derive(Clone)]
pub struct AblyKey {
    pub name: String,
    secret: SecretString,
}

impl AblyKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, secret) = text.split_once(':').ok_or("expected appId.keyId:secret (no colon found)")?;
        if !name.contains('.') || name.starts_with('.') || name.ends_with('.') {
            return Err("expected appId.keyId:secret (the key name has no appId.keyId form)".into());
        }
        if secret.is_empty() {
            return Err("expected appId.keyId:secret (the secret is empty)".into());
        }
        Ok(AblyKey { name: name.to_string(), secret: SecretString::from(secret.to_string()) })
    }

    pub fn secret(&self) -> &str {
        self.secret.expose_secret()
    }

    pub fn full(&self) -> String {
        format!("{}:{}", self.name, self.secret.expose_secret())
    }
}

impl fmt::Debug for AblyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AblyKey({}:***)", self.name)
    }
}

pub const DEFAULT_ABLY_REST_URL: &str = "https://main.realtime.ably.net";

/// Every setting the tool knows, resolved. Optional ones are `None` when nobody set them;
/// each command asks for what it needs through the `require_*` methods.
#[derive(Debug, Clone)]
pub struct Config {
    pub ably_api_key: Option<Setting<AblyKey>>,
    pub ably_rest_url: Setting<Url>,
    pub chatwoot_base_url: Option<Setting<Url>>,
    pub chatwoot_inbox_identifier: Option<Setting<String>>,
    pub chatwoot_api_token: Option<Setting<SecretString>>,
    pub chatwoot_account_id: Option<Setting<u64>>,
    pub redis_url: Option<Setting<SecretString>>,
    pub database_url: Option<Setting<SecretString>>,
    pub app_base_url: Option<Setting<Url>>,
    pub slack_webhook_url: Option<Setting<SecretString>>,
    pub smtp_url: Option<Setting<SecretString>>,
    pub alert_email_from: Option<Setting<String>>,
    pub alert_email_to: Option<Setting<String>>,
    pub broker_queue: Setting<String>,
    pub bull_prefix: Setting<String>,
    /// Prefix before broker-ops' own Redis keys and the mirror's (empty in production; drills and
    /// tests keep their keys apart with it).
    pub redis_key_prefix: Setting<String>,
    pub timeout: Setting<Duration>,
    layers: Layers,
}

impl Config {
    pub fn resolve(layers: Layers) -> Result<Self, ConfigError> {
        let l = &layers;
        let ably_api_key = match l.secret("ABLY_API_KEY")? {
            Some(s) => Some(parse_setting("ABLY_API_KEY", s.source, |_| AblyKey::parse(s.value.expose_secret()))?),
            None => None,
        };
        let ably_rest_url = match l.plain("ABLY_REST_URL")? {
            Some(s) => parse_setting("ABLY_REST_URL", s.source, |_| parse_http_url(&s.value))?,
            None => {
                Setting { value: Url::parse(DEFAULT_ABLY_REST_URL).expect("constant URL"), source: Source::Default }
            }
        };
        let chatwoot_base_url = opt_parse(l, "CHATWOOT_BASE_URL", parse_http_url)?;
        let chatwoot_inbox_identifier = l.plain("CHATWOOT_INBOX_IDENTIFIER")?;
        let chatwoot_api_token = l.secret("CHATWOOT_API_TOKEN")?;
        let chatwoot_account_id = opt_parse(l, "CHATWOOT_ACCOUNT_ID", |v| {
            v.trim().parse::<u64>().map_err(|_| format!("expected a positive integer, got {v:?}"))
        })?;
        let redis_url =
            checked_secret_url(l, "REDIS_URL", &["redis", "rediss", "valkey", "valkeys", "unix", "redis+unix"])?;
        let database_url = checked_secret_url(l, "DATABASE_URL", &["postgres", "postgresql"])?;
        let app_base_url = opt_parse(l, "APP_BASE_URL", parse_http_url)?;
        let slack_webhook_url = checked_secret_url(l, "SLACK_WEBHOOK_URL", &["https", "http"])?;
        let smtp_url = checked_secret_url(l, "SMTP_URL", &["smtp", "smtps"])?;
        let alert_email_from = l.plain("ALERT_EMAIL_FROM")?;
        let alert_email_to = l.plain("ALERT_EMAIL_TO")?;
        let broker_queue =
            l.plain("BROKER_QUEUE")?.unwrap_or(Setting { value: "broker".into(), source: Source::Default });
        let bull_prefix = l.plain("BULL_PREFIX")?.unwrap_or(Setting { value: "bull".into(), source: Source::Default });
        let redis_key_prefix =
            l.plain("REDIS_KEY_PREFIX")?.unwrap_or(Setting { value: String::new(), source: Source::Default });
        let timeout = match l.plain("BROKER_OPS_TIMEOUT")? {
            Some(s) => parse_setting("BROKER_OPS_TIMEOUT", s.source, |_| crate::duration::parse_duration(&s.value))?,
            None => Setting { value: Duration::from_secs(10), source: Source::Default },
        };
        Ok(Config {
            ably_api_key,
            ably_rest_url,
            chatwoot_base_url,
            chatwoot_inbox_identifier,
            chatwoot_api_token,
            chatwoot_account_id,
            redis_url,
            database_url,
            app_base_url,
            slack_webhook_url,
            smtp_url,
            alert_email_from,
            alert_email_to,
            broker_queue,
            bull_prefix,
            redis_key_prefix,
            timeout,
            layers,
        })
    }

    /// The layers the configuration was resolved from, for commands with settings of their own.
    pub fn layers(&self) -> &Layers {
        &self.layers
    }

    pub fn require<'a, T>(&self, name: &'static str, s: &'a Option<Setting<T>>) -> Result<&'a Setting<T>, ConfigError> {
        s.as_ref().ok_or_else(|| self.layers.missing(name))
    }
}

fn parse_setting<T>(
    name: &'static str,
    source: Source,
    parse: impl FnOnce(&Source) -> Result<T, String>,
) -> Result<Setting<T>, ConfigError> {
    match parse(&source) {
        Ok(value) => Ok(Setting { value, source }),
        Err(reason) => Err(ConfigError::Invalid { name, source_: source, reason }),
    }
}

fn opt_parse<T>(
    l: &Layers,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<Setting<T>>, ConfigError> {
    match l.plain(name)? {
        Some(s) => parse_setting(name, s.source, |_| parse(&s.value)).map(Some),
        None => Ok(None),
    }
}

fn parse_http_url(text: &str) -> Result<Url, String> {
    let u = Url::parse(text.trim()).map_err(|e| format!("invalid URL: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("expected an http:// or https:// URL, got scheme {:?}", u.scheme()));
    }
    if u.host_str().is_none() {
        return Err("the URL has no host".into());
    }
    Ok(u)
}

/// A secret URL: checked for its scheme at load time, with errors that never echo the value.
fn checked_secret_url(
    l: &Layers,
    name: &'static str,
    schemes: &[&str],
) -> Result<Option<Setting<SecretString>>, ConfigError> {
    let Some(s) = l.secret(name)? else { return Ok(None) };
    match Url::parse(s.value.expose_secret()) {
        Ok(u) if schemes.contains(&u.scheme()) => Ok(Some(s)),
        Ok(u) => Err(ConfigError::Invalid {
            name,
            source_: s.source,
            reason: format!("unsupported scheme {:?} (expected one of {})", u.scheme(), schemes.join(", ")),
        }),
        Err(e) => Err(ConfigError::Invalid { name, source_: s.source, reason: format!("not a valid URL: {e}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "broker_queue = \"from-file\"\nbull_prefix = \"fileprefix\"\n").unwrap();
        let mut layers = Layers::new(env(&[("BROKER_QUEUE", "from-env")]), Some(&path)).unwrap();
        let c = Config::resolve(layers.clone()).unwrap();
        assert_eq!(c.broker_queue.value, "from-env");
        assert_eq!(c.bull_prefix.value, "fileprefix");
        assert_eq!(c.bull_prefix.source, Source::File(path.clone()));
        assert_eq!(c.ably_rest_url.source, Source::Default);
        layers.flag("BROKER_QUEUE", "--queue", Some("from-flag".into()));
        let c = Config::resolve(layers).unwrap();
        assert_eq!(c.broker_queue.value, "from-flag");
    }

    #[test]
    fn secrets_come_from_name_file_and_never_show_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "app.key:s3cr3t-value\n").unwrap();
        let layers = Layers::new(env(&[("ABLY_API_KEY_FILE", path.to_str().unwrap())]), None).unwrap();
        let c = Config::resolve(layers).unwrap();
        let key = &c.ably_api_key.as_ref().unwrap().value;
        assert_eq!(key.full(), "app.key:s3cr3t-value");
        assert!(!format!("{c:?}").contains("s3cr3t-value"));

        let layers = Layers::new(env(&[("REDIS_URL", "http://u:topsecret@h")]), None).unwrap();
        let err = Config::resolve(layers).unwrap_err().to_string();
        assert!(err.starts_with("REDIS_URL from environment variable REDIS_URL: unsupported scheme"), "{err}");
        assert!(!err.contains("topsecret"));
    }

    #[test]
    fn missing_settings_name_the_variable() {
        let layers = Layers::new(HashMap::new(), None).unwrap();
        let c = Config::resolve(layers).unwrap();
        let err = c.require("REDIS_URL", &c.redis_url).unwrap_err().to_string();
        assert!(err.starts_with("REDIS_URL is not set"), "{err}");
    }
}
