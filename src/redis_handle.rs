//! The one way broker-ops talks to Redis: a reconnecting connection, the address it shows (with
//! the password removed) and the key prefix of this deployment or test, carried together so
//! that every module that reads or writes Redis names the same address and uses the same keys.

use std::time::Duration;

use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;

use crate::config::Config;

pub mod bulk;

#[derive(Debug, thiserror::Error)]
#[error("Redis {op} at {addr}: {}", crate::tls::with_reason(&source.to_string()))]
pub struct RedisError {
    pub op: String,
    pub addr: String,
    #[source]
    pub source: redis::RedisError,
}

impl RedisError {
    /// Whose failure this is: a Redis that refuses, resets, times out or cannot be resolved is
    /// the service's; a URL that does not parse, a password refused, or a command our user may
    /// not run (`NOPERM`, a managed Redis without `INFO`/`CONFIG`) is ours.
    pub fn fault(&self) -> crate::exit::Fault {
        use redis::ErrorKind;
        let ours = matches!(self.source.kind(), ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig)
            || matches!(self.source.code(), Some("NOPERM" | "WRONGPASS" | "NOAUTH"))
            || self.op == "open";
        if ours { crate::exit::Fault::Ours } else { crate::exit::Fault::Service }
    }
}

/// A Redis connection with its shown address and key prefix.
#[derive(Clone)]
pub struct Redis {
    pub conn: ConnectionManager,
    /// The address, password removed: what every error and report names.
    pub addr: String,
    /// Put before every key broker-ops reads or writes (`REDIS_KEY_PREFIX`).
    pub prefix: String,
    pub timeout: Duration,
    /// Where and how to connect, for a second connection ([`Redis::bulk`]).
    info: std::sync::Arc<redis::ConnectionInfo>,
}

/// The client for `url`; over TLS (`rediss://`, `valkeys://`) under the trust policy
/// ([`crate::tls`]): the platform's roots and `TLS_CA_FILE`'s.
fn client(url: &str) -> redis::RedisResult<redis::Client> {
    let tls = url.starts_with("rediss://") || url.starts_with("valkeys://");
    if !tls {
        return redis::Client::open(url);
    }
    use secrecy::ExposeSecret;
    let client_tls = crate::tls::trust().client.as_ref().map(|c| redis::ClientTlsConfig {
        client_cert: c.cert_pem.clone(),
        client_key: c.key_pem.expose_secret().to_vec(),
    });
    let certs = redis::TlsCertificates { client_tls, root_cert: Some(crate::tls::roots_pem()) };
    redis::Client::build_with_tls(url, certs)
}

impl Redis {
    /// Connects to `url`. Every command then has `timeout` as its whole budget: one attempt,
    /// no hidden retry that would double it.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Redis, RedisError> {
        crate::http::ensure_crypto_provider();
        let addr = crate::redact::url(url);
        let err = |op: &str, source| RedisError { op: op.into(), addr: addr.clone(), source };
        let client = client(url).map_err(|e| err("open", e))?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(0);
        let conn = match tokio::time::timeout(timeout, client.get_connection_manager_with_config(cfg)).await {
            Ok(r) => r.map_err(|e| err("connect", e))?,
            Err(_) => {
                let source = redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}", crate::duration::format_duration(timeout)),
                ));
                return Err(err("connect", source));
            }
        };
        let info = std::sync::Arc::new(client.get_connection_info().clone());
        Ok(Redis { conn, addr, prefix: prefix.to_string(), timeout, info })
    }

    /// A second connection to the same Redis for bulk writes ([`bulk::Bulk`]); `None` when the URL
    /// asks for TLS without checking the server's name (`#insecure`), which only the main
    /// connection honours.
    pub async fn bulk(&self) -> Result<Option<bulk::Bulk>, RedisError> {
        if let redis::ConnectionAddr::TcpTls { insecure: true, .. } = self.info.addr() {
            return Ok(None);
        }
        bulk::Bulk::open(&self.info, &self.addr, self.timeout).await.map(Some)
    }

    /// The configured Redis (`REDIS_URL`, `REDIS_KEY_PREFIX`, `--timeout`), `None` when unset.
    /// The Redis of a setting the caller required (`config.require("REDIS_URL", ..)`).
    pub async fn of_setting(
        config: &Config,
        url: &crate::config::Setting<secrecy::SecretString>,
    ) -> Result<Redis, RedisError> {
        Redis::connect(url.value.expose_secret(), &config.redis_key_prefix.value, config.timeout.value).await
    }

    pub async fn from_config(config: &Config) -> Result<Option<Redis>, RedisError> {
        match &config.redis_url {
            None => Ok(None),
            Some(u) => {
                let r = Redis::connect(u.value.expose_secret(), &config.redis_key_prefix.value, config.timeout.value)
                    .await?;
                Ok(Some(r))
            }
        }
    }

    /// The error of operation `op` on this connection, for `map_err`.
    pub fn err(&self, op: &str) -> impl FnOnce(redis::RedisError) -> RedisError + use<> {
        let (op, addr) = (op.to_string(), self.addr.clone());
        move |source| RedisError { op, addr, source }
    }

    /// A key with this connection's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}
