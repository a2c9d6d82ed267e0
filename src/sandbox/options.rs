//! What the sandbox can be told, and what it says about itself once it runs.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::SandboxError;
use crate::config::Config;
use crate::contracts::Contracts;

/// Everything the sandbox can be told.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    pub listen: SocketAddr,
    pub sla_warning: Duration,
    pub sla_violation: Duration,
    /// Ably key `appId.keyId:secret`; random when not given.
    pub key: Option<SecretString>,
    /// Chatwoot inbox identifier; random when not given.
    pub inbox: Option<String>,
    /// Chatwoot `api_access_token`; random when not given.
    pub api_token: Option<SecretString>,
    pub account_id: u64,
    pub redis_url: Option<SecretString>,
    pub database_url: Option<SecretString>,
    pub contracts: Contracts,
    pub queue: String,
    pub bull_prefix: String,
    /// Interval of SSE keepalives (`:keepalive` comments or `heartbeat` events).
    pub sse_keepalive: Duration,
    /// Seed of the sandbox's random draws (latencies, faults), for repeatable runs.
    pub seed: Option<u64>,
    /// Time-out for connecting to Redis and Postgres.
    pub connect_timeout: Duration,
    /// Serve on a non-loopback address (it serves known keys: refused unless asked for).
    pub allow_remote: bool,
    /// Where the webhook rule sends; default (with a mirror) the sandbox's own receiver.
    pub webhook_url: Option<url::Url>,
    /// Least time between two webhook requests (Ably: at most one a second per instance).
    pub webhook_interval: Duration,
    /// The faults at start, the services' and the mirror pipeline's (changeable at run time).
    pub faults: super::Faults,
    /// Serve HTTPS with this certificate and key (`--tls-cert`, `--tls-key`).
    pub tls: Option<super::tls::TlsIdentity>,
    /// The keys the reference resume route checks tokens with (`RESUME_TOKEN_SECRET` or
    /// `RESUME_TOKEN_KEYS`); `None`: the route answers 501.
    pub resume_keys: Option<crate::token::Keys>,
    /// Simulated customers (`--traffic RATE`).
    pub traffic: Option<super::traffic::TrafficOptions>,
}

impl SandboxOptions {
    /// The defaults with what the configuration says: the sandbox's own key and inbox
    /// (`BROKER_OPS_SANDBOX_KEY`, `BROKER_OPS_SANDBOX_INBOX`), the BullMQ queue and prefix, the
    /// time-out, and the contracts, so the sandbox speaks the deployment's names.
    pub fn from_config(c: &crate::config::Config) -> Self {
        SandboxOptions {
            key: c.sandbox_key.as_ref().map(|k| k.value.clone()),
            inbox: c.sandbox_inbox.as_ref().map(|i| i.value.clone()),
            queue: c.broker_queue.value.clone(),
            bull_prefix: c.bull_prefix.value.clone(),
            connect_timeout: c.timeout.value,
            contracts: c.contracts.clone(),
            resume_keys: crate::token::Keys::from_config(c).ok(),
            ..SandboxOptions::default()
        }
    }

    /// The same options on a free loopback port (in-process use: tests, `sla smoke --sandbox`).
    pub fn with_free_port(mut self) -> Self {
        self.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        self
    }
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8790)),
            sla_warning: Duration::from_secs(4),
            sla_violation: Duration::from_secs(5),
            key: None,
            inbox: None,
            api_token: None,
            account_id: 1,
            redis_url: None,
            database_url: None,
            contracts: Contracts::default(),
            queue: "broker".into(),
            bull_prefix: "bull".into(),
            sse_keepalive: Duration::from_secs(15),
            seed: None,
            connect_timeout: Duration::from_secs(5),
            allow_remote: false,
            webhook_url: None,
            webhook_interval: Duration::ZERO,
            faults: super::Faults::default(),
            tls: None,
            resume_keys: None,
            traffic: None,
        }
    }
}

impl SandboxOptions {
    /// Where the sandbox mirrors: a URL given as a flag (which must not carry a password: no
    /// flag takes a secret), else with `mirror` the configured `REDIS_URL` and `DATABASE_URL`.
    pub fn mirror_from(
        &mut self,
        config: &Config,
        redis_flag: Option<&str>,
        database_flag: Option<&str>,
        mirror: bool,
    ) -> Result<(), SandboxError> {
        self.redis_url = match (redis_flag, mirror) {
            (Some(u), _) => Some(flag_url("--redis-url", "REDIS_URL", u)?),
            (None, true) => config.redis_url.as_ref().map(|s| s.value.clone()),
            (None, false) => None,
        };
        self.database_url = match (database_flag, mirror) {
            (Some(u), _) => Some(flag_url("--database-url", "DATABASE_URL", u)?),
            (None, true) => config.database_url.as_ref().map(|s| s.value.clone()),
            (None, false) => None,
        };
        if mirror && self.redis_url.is_none() && self.database_url.is_none() {
            return Err(SandboxError::Option("--mirror needs REDIS_URL or DATABASE_URL to be set".into()));
        }
        Ok(())
    }

    /// The mirrors, addresses redacted.
    pub fn mirrors(&self) -> Vec<String> {
        [("redis", &self.redis_url), ("postgres", &self.database_url)]
            .iter()
            .filter_map(|(n, u)| u.as_ref().map(|u| format!("{n} {}", crate::redact::url(u.expose_secret()))))
            .collect()
    }
}

fn flag_url(flag: &str, var: &str, value: &str) -> Result<SecretString, SandboxError> {
    let u = url::Url::parse(value).map_err(|e| SandboxError::Option(format!("{flag}: not a valid URL: {e}")))?;
    if u.password().is_some() {
        return Err(SandboxError::Option(format!(
            "{flag} must not carry a password: set {var} (or {var}_FILE) and pass --mirror instead"
        )));
    }
    Ok(SecretString::from(value.to_string()))
}

/// What a started sandbox tells its user: where it listens and the environment pointing at it.
#[derive(Debug, Clone)]
pub struct Summary {
    pub listen: SocketAddr,
    pub ai_latency: String,
    pub mirrors: Vec<String>,
    /// Where the webhook rule sends (address redacted), when it runs.
    pub webhook: Option<String>,
    pub env: Vec<(&'static str, String)>,
}

impl Summary {
    pub fn json(&self) -> Value {
        let vars: serde_json::Map<_, _> = self.env.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({"schema_version": 1, "kind": "sandbox", "listen": self.listen.to_string(),
               "ai_latency": self.ai_latency, "mirrors": self.mirrors, "webhook": self.webhook, "env": vars})
    }

    /// `export NAME=value ...` for `eval`.
    pub fn exports(&self) -> String {
        let pairs: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("export {}", pairs.join(" "))
    }

    pub fn banner(&self) -> String {
        let mut mirrors =
            if self.mirrors.is_empty() { String::new() } else { format!("; mirroring to {}", self.mirrors.join(", ")) };
        if let Some(w) = &self.webhook {
            mirrors.push_str(&format!(" through the webhook to {w}"));
        }
        let base = self.env.iter().find(|(k, _)| *k == "ABLY_REST_URL").map_or(String::new(), |(_, v)| v.clone());
        format!("broker-ops sandbox listening on {base} (AI latency {}{mirrors}); Ctrl-C stops it", self.ai_latency)
    }
}
