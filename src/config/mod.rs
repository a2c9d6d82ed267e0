//! Configuration: flag > environment > config file > default, with the place each setting came
//! from, so that an error can say exactly which setting was wrong and where it was read.
//!
//! Every setting the tool knows is a field of [`Config`], resolved once; no other module reads
//! the environment or the file. Secrets may also come from `NAME_FILE=/path`; they are held as
//! [`SecretString`] and no flag takes one. The contracts with the chat system (names of channels,
//! events, keys, the table and token claims) are resolved here too ([`crate::contracts`]).

pub use crate::settings;
pub mod sla;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub use crate::layers::{ConfigError, Layers, MAX_FILE_BYTES, Setting, Source, read_small_file};

use crate::contracts::Contracts;

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
/// each command asks for what it needs through [`Config::require`].
#[derive(Debug, Clone)]
pub struct Config {
    pub ably_api_key: Option<Setting<AblyKey>>,
    /// The key the Ably webhook rule signs with (`ABLY_WEBHOOK_KEY`), when it is not ABLY_API_KEY.
    pub ably_webhook_key: Option<Setting<AblyKey>>,
    pub ably_rest_url: Setting<Url>,
    pub chatwoot_base_url: Option<Setting<Url>>,
    pub chatwoot_inbox_identifier: Option<Setting<String>>,
    pub chatwoot_api_token: Option<Setting<SecretString>>,
    pub chatwoot_account_id: Option<Setting<u64>>,
    pub redis_url: Option<Setting<SecretString>>,
    pub database_url: Option<Setting<SecretString>>,
    pub resume_token_secret: Option<Setting<SecretString>>,
    pub resume_token_keys: Option<Setting<SecretString>>,
    pub resume_token_kid: Option<Setting<String>>,
    pub app_base_url: Option<Setting<Url>>,
    /// Where the runbooks are served (the repository's web address, a wiki): rules' runbook
    /// paths become links under it.
    pub runbook_base_url: Option<Setting<Url>>,
    pub slack_webhook_url: Option<Setting<SecretString>>,
    pub slack_bot_token: Option<Setting<SecretString>>,
    pub slack_channel: Option<Setting<String>>,
    pub slack_api_url: Setting<Url>,
    pub smtp_url: Option<Setting<SecretString>>,
    /// Allows SMTP AUTH over a connection without TLS to a host that is not loopback.
    pub smtp_allow_plaintext_auth: bool,
    pub alert_email_from: Option<Setting<String>>,
    pub alert_email_to: Option<Setting<String>>,
    /// Alert state when Redis is not configured or not answering: `BROKER_OPS_STATE_DIR`, else
    /// `$XDG_STATE_HOME/broker-ops`, else `~/.local/state/broker-ops`.
    pub state_dir: Option<Setting<PathBuf>>,
    pub broker_queue: Setting<String>,
    pub bull_prefix: Setting<String>,
    /// Prefix before broker-ops' own Redis keys and the mirror's (empty in production; drills and
    /// tests keep their keys apart with it).
    pub redis_key_prefix: Setting<String>,
    pub timeout: Setting<Duration>,
    /// How long the alert state's Redis lock outlives a run killed while holding it.
    pub alert_lock_ttl: Setting<Duration>,
    /// The longest a silence may last.
    pub alert_silence_max: Setting<Duration>,
    /// The sandbox's own Ably key and inbox identifier (random when unset).
    pub sandbox_key: Option<Setting<SecretString>>,
    pub sandbox_inbox: Option<Setting<String>>,
    /// The web app's kill switch as its environment has it, as text: the app's code treats only
    /// the exact string `false` as off (docs/rollout.md), and so does this tool.
    pub enable_ably_realtime: Option<Setting<String>>,
    /// Roots added to the trust store of every TLS connection (`TLS_CA_FILE`, PEM), read and
    /// checked here so that a bad file stops the command before it connects anywhere.
    pub tls_ca_file: Option<Setting<crate::tls::Trust>>,
    /// The client certificate for a Redis or Postgres that asks for one (`TLS_CLIENT_CERT`
    /// with `TLS_CLIENT_KEY`), read and checked here.
    pub tls_client: Option<Setting<crate::tls::ClientIdentity>>,
    /// Who makes rollout changes, for the audit (`BROKER_OPS_ACTOR`), when `--by` is not given.
    pub actor: Option<Setting<String>>,
    pub contracts: Contracts,
    /// The one SLA (`[sla]`): every command that judges the SLA starts from it.
    pub sla: sla::Sla,
    layers: Layers,
}

pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";

impl Config {
    pub fn resolve(layers: Layers) -> Result<Self, ConfigError> {
        let l = &layers;
        check_env(&l.env)?;
        let ably_api_key = match l.secret("ABLY_API_KEY")? {
            Some(s) => Some(parse_setting("ABLY_API_KEY", s.source, |_| AblyKey::parse(s.value.expose_secret()))?),
            None => None,
        };
        let ably_webhook_key = match l.secret("ABLY_WEBHOOK_KEY")? {
            Some(s) => Some(parse_setting("ABLY_WEBHOOK_KEY", s.source, |_| AblyKey::parse(s.value.expose_secret()))?),
            None => None,
        };
        let redis_key_prefix =
            l.plain("REDIS_KEY_PREFIX")?.unwrap_or(Setting { value: String::new(), source: Source::Default });
        let contracts = crate::contracts::resolve(l, redis_key_prefix.value.clone())?;
        Ok(Config {
            ably_api_key,
            ably_webhook_key,
            ably_rest_url: url_or(l, "ABLY_REST_URL", DEFAULT_ABLY_REST_URL)?,
            chatwoot_base_url: opt_parse(l, "CHATWOOT_BASE_URL", parse_http_url)?,
            chatwoot_inbox_identifier: l.plain("CHATWOOT_INBOX_IDENTIFIER")?,
            chatwoot_api_token: l.secret("CHATWOOT_API_TOKEN")?,
            chatwoot_account_id: opt_parse(l, "CHATWOOT_ACCOUNT_ID", |v| {
                v.trim().parse::<u64>().map_err(|_| format!("expected a positive integer, got {v:?}"))
            })?,
            redis_url: checked_secret_url(
                l,
                "REDIS_URL",
                &["redis", "rediss", "valkey", "valkeys", "unix", "redis+unix"],
            )?,
            database_url: checked_secret_url(l, "DATABASE_URL", &["postgres", "postgresql"])?,
            resume_token_secret: l.secret("RESUME_TOKEN_SECRET")?,
            resume_token_keys: l.secret("RESUME_TOKEN_KEYS")?,
            resume_token_kid: l.plain("RESUME_TOKEN_KID")?,
            app_base_url: opt_parse(l, "APP_BASE_URL", parse_http_url)?,
            runbook_base_url: opt_parse(l, "RUNBOOK_BASE_URL", parse_http_url)?,
            slack_webhook_url: checked_secret_url(l, "SLACK_WEBHOOK_URL", &["https", "http"])?,
            slack_bot_token: l.secret("SLACK_BOT_TOKEN")?,
            slack_channel: l.plain("SLACK_CHANNEL")?,
            slack_api_url: url_or(l, "SLACK_API_URL", DEFAULT_SLACK_API_URL)?,
            smtp_url: checked_secret_url(l, "SMTP_URL", &["smtp", "smtps"])?,
            smtp_allow_plaintext_auth: opt_parse(l, "SMTP_ALLOW_PLAINTEXT_AUTH", parse_bool)?.is_some_and(|s| s.value),
            alert_email_from: l.plain("ALERT_EMAIL_FROM")?,
            alert_email_to: l.plain("ALERT_EMAIL_TO")?,
            state_dir: state_dir(l)?,
            broker_queue: l
                .plain("BROKER_QUEUE")?
                .unwrap_or(Setting { value: "broker".into(), source: Source::Default }),
            bull_prefix: l.plain("BULL_PREFIX")?.unwrap_or(Setting { value: "bull".into(), source: Source::Default }),
            redis_key_prefix,
            timeout: match l.plain("BROKER_OPS_TIMEOUT")? {
                Some(s) => {
                    parse_setting("BROKER_OPS_TIMEOUT", s.source, |_| crate::duration::parse_duration(&s.value))?
                }
                None => Setting { value: Duration::from_secs(10), source: Source::Default },
            },
            alert_lock_ttl: match l.plain("ALERT_LOCK_TTL")? {
                Some(s) => parse_setting("ALERT_LOCK_TTL", s.source, |_| lock_ttl(&s.value))?,
                None => Setting { value: Duration::from_secs(15), source: Source::Default },
            },
            alert_silence_max: match l.plain("ALERT_SILENCE_MAX")? {
                Some(s) => parse_setting("ALERT_SILENCE_MAX", s.source, |_| {
                    crate::duration::parse_positive_duration(&s.value)
                })?,
                None => Setting { value: Duration::from_secs(7 * 24 * 3600), source: Source::Default },
            },
            sandbox_key: l.secret("BROKER_OPS_SANDBOX_KEY")?,
            sandbox_inbox: l.plain("BROKER_OPS_SANDBOX_INBOX")?,
            enable_ably_realtime: l.plain("ENABLE_ABLY_REALTIME")?,
            actor: opt_parse(l, "BROKER_OPS_ACTOR", actor_name)?,
            tls_ca_file: opt_parse(l, "TLS_CA_FILE", ca_file)?,
            tls_client: client_identity(l)?,
            contracts,
            sla: sla::resolve(l)?,
            layers,
        })
    }

    /// The setting, or the error naming where it could have been set.
    pub fn require<'a, T>(&self, name: &'static str, s: &'a Option<Setting<T>>) -> Result<&'a Setting<T>, ConfigError> {
        s.as_ref().ok_or_else(|| self.layers.missing(name))
    }

    /// The config file the settings were read from, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.layers.file.as_ref().map(|(p, _)| p.as_path())
    }
}

/// `TLS_CA_FILE`: a PEM file of one or more CA certificates.
fn ca_file(path: &str) -> Result<crate::tls::Trust, String> {
    let bytes = read_small_file(std::path::Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
    let extra = crate::tls::read_pem_certificates(bytes.as_bytes()).map_err(|e| format!("{path}: {e}"))?;
    Ok(crate::tls::Trust { extra, ca_file: Some(path.to_string()), client: None })
}

/// `TLS_CLIENT_CERT` and `TLS_CLIENT_KEY`: both or neither.
fn client_identity(l: &Layers) -> Result<Option<Setting<crate::tls::ClientIdentity>>, ConfigError> {
    match (l.plain("TLS_CLIENT_CERT")?, l.plain("TLS_CLIENT_KEY")?) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => {
            parse_setting("TLS_CLIENT_CERT", c.source, |_| crate::tls::ClientIdentity::read(&c.value, &k.value))
                .map(Some)
        }
        (Some(c), None) => {
            parse_setting("TLS_CLIENT_CERT", c.source, |_| Err::<(), _>("needs TLS_CLIENT_KEY too".to_string()))?;
            Ok(None)
        }
        (None, Some(k)) => {
            parse_setting("TLS_CLIENT_KEY", k.source, |_| Err::<(), _>("needs TLS_CLIENT_CERT too".to_string()))?;
            Ok(None)
        }
    }
}

/// The alert lock's lifetime: from 1 s (renewed every third of it, so a slow Redis round trip
/// must not lose it) to 10 minutes (longer blocks every other run after a crash).
fn lock_ttl(s: &str) -> Result<Duration, String> {
    let d = crate::duration::parse_duration(s)?;
    if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&d) {
        return Err(format!("{s:?}: the lock must live from 1s to 10m"));
    }
    Ok(d)
}

/// A name for the rollout audit (`--by`, `BROKER_OPS_ACTOR`): one line, not empty, at most 200
/// characters.
pub fn actor_name(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > 200 || t.chars().any(char::is_control) {
        return Err(format!("{t:?}: name who makes the change in one line of 1 to 200 characters"));
    }
    Ok(t.to_string())
}

/// The tool's own variables besides the settings: where the config file is, the log filter.
const OWN_VARS: &[&str] = &["BROKER_OPS_CONFIG", "BROKER_OPS_LOG"];

/// Every `BROKER_OPS_*` variable must be one the tool reads: a misspelt one would otherwise be
/// ignored without a word, while the same typo in the config file is refused.
fn check_env(env: &std::collections::HashMap<String, String>) -> Result<(), ConfigError> {
    let mut known: Vec<String> = OWN_VARS.iter().map(|v| v.to_string()).collect();
    for s in settings::SETTINGS.iter().filter(|s| s.name.starts_with("BROKER_OPS_")) {
        known.push(s.name.to_string());
        if s.secret {
            known.push(format!("{}_FILE", s.name));
        }
    }
    known.extend(crate::contracts::CONTRACT_KEYS.iter().map(|(k, _)| crate::contracts::env_var(k)));
    known.extend(sla::SLA_KEYS.iter().map(|(k, _)| sla::env_var(k)));
    let mut ours: Vec<&String> = env.keys().filter(|k| k.starts_with("BROKER_OPS_")).collect();
    ours.sort();
    if let Some(unknown) = ours.into_iter().find(|k| !known.contains(k)) {
        let near = known
            .iter()
            .min_by_key(|k| strsim::levenshtein(k, unknown))
            .filter(|k| strsim::levenshtein(k, unknown) <= 3);
        let hint = near.map(|k| format!(" (did you mean {k}?)")).unwrap_or_default();
        return Err(ConfigError::UnknownVariable { name: unknown.to_string(), hint });
    }
    Ok(())
}

fn url_or(l: &Layers, name: &'static str, default: &str) -> Result<Setting<Url>, ConfigError> {
    Ok(match l.plain(name)? {
        Some(s) => parse_setting(name, s.source, |_| parse_http_url(&s.value))?,
        // The defaults are constant URLs that parse.
        None => Setting { value: Url::parse(default).expect("constant URL"), source: Source::Default },
    })
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

fn state_dir(l: &Layers) -> Result<Option<Setting<PathBuf>>, ConfigError> {
    if let Some(d) = l.plain("BROKER_OPS_STATE_DIR")? {
        return Ok(Some(Setting { value: PathBuf::from(d.value), source: d.source }));
    }
    let from_env = |var: &str, tail: &str| {
        l.env
            .get(var)
            .filter(|v| !v.is_empty())
            .map(|v| Setting { value: PathBuf::from(v).join(tail), source: Source::Env(var.to_string()) })
    };
    Ok(from_env("XDG_STATE_HOME", "broker-ops").or_else(|| from_env("HOME", ".local/state/broker-ops")))
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
    use std::collections::HashMap;

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
    fn files_that_are_not_small_regular_files_are_refused() {
        let layers = Layers::new(env(&[("RESUME_TOKEN_SECRET_FILE", "/dev/zero")]), None).unwrap();
        let err = Config::resolve(layers).unwrap_err().to_string();
        assert!(err.contains("RESUME_TOKEN_SECRET_FILE=/dev/zero") && err.contains("not a regular file"), "{err}");
        let err = Layers::new(HashMap::new(), Some(std::path::Path::new("/dev/zero"))).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let layers = Layers::new(env(&[("ABLY_API_KEY_FILE", big.to_str().unwrap())]), None).unwrap();
        assert!(Config::resolve(layers).unwrap_err().to_string().contains("over the 1024 KiB limit"));
    }

    #[test]
    fn unknown_keys_and_two_sources_of_one_secret_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "redis_urll = \"redis://x\"\n").unwrap();
        let err = Layers::new(HashMap::new(), Some(&path)).unwrap_err().to_string();
        assert!(err.contains("unknown key `redis_urll` (did you mean `redis_url`?)"), "{err}");
        std::fs::write(&path, "redis_url_file = \"/x\"\nbroker_queue = \"q\"\n[contracts]\n").unwrap();
        assert!(Layers::new(HashMap::new(), Some(&path)).is_ok());
        let layers = Layers::new(env(&[("REDIS_URL", "redis://a"), ("REDIS_URL_FILE", "/x")]), None).unwrap();
        let err = Config::resolve(layers).unwrap_err().to_string();
        assert!(err.contains("both REDIS_URL and REDIS_URL_FILE are set"), "{err}");
    }

    #[test]
    fn missing_settings_name_the_variable() {
        let layers = Layers::new(HashMap::new(), None).unwrap();
        let c = Config::resolve(layers).unwrap();
        let err = c.require("REDIS_URL", &c.redis_url).unwrap_err().to_string();
        assert!(err.starts_with("REDIS_URL is not set"), "{err}");
    }
}
