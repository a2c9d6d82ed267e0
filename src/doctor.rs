//! `broker-ops doctor`: for every dependency, whether it is configured, whether it answers,
//! how fast, and the exact error when it does not. Checks run concurrently, each bounded by
//! the configured time-out, and none of them writes anything.

use std::future::Future;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};

use crate::ably::AblyClient;
use crate::chatwoot::ChatwootClient;
use crate::config::Config;
use crate::output::{Render, Style, table};

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub configured: bool,
    pub reachable: Option<bool>,
    /// The address checked, with secrets removed.
    pub target: Option<String>,
    pub latency_ms: Option<f64>,
    pub detail: Option<String>,
    pub error: Option<String>,
}

impl Check {
    fn unconfigured(name: &'static str, vars: &str) -> Self {
        Check {
            name,
            configured: false,
            reachable: None,
            target: None,
            latency_ms: None,
            detail: Some(format!("not configured ({vars})")),
            error: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// True when everything configured is reachable.
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|c| !c.configured || c.reachable == Some(true))
    }
}

/// Runs one check with a deadline, timing it.
async fn timed<F>(name: &'static str, target: String, timeout: Duration, f: F) -> Check
where
    F: Future<Output = Result<String, String>>,
{
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}", crate::duration::format_duration(timeout))),
    };
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let (reachable, detail, error) = match result {
        Ok(d) => (Some(true), Some(d), None),
        Err(e) => (Some(false), None, Some(e)),
    };
    Check { name, configured: true, reachable, target: Some(target), latency_ms, detail, error }
}

pub async fn run(config: &Config) -> DoctorReport {
    let t = config.timeout.value;
    let (ably, chatwoot, redis, postgres, slack, smtp) = tokio::join!(
        ably(config, t),
        chatwoot(config, t),
        redis(config, t),
        postgres(config, t),
        slack(config, t),
        smtp(config, t)
    );
    DoctorReport { checks: vec![ably, chatwoot, redis, postgres, slack, smtp] }
}

async fn ably(config: &Config, t: Duration) -> Check {
    let Some(key) = &config.ably_api_key else { return Check::unconfigured("ably", "ABLY_API_KEY") };
    let base = config.ably_rest_url.value.clone();
    timed("ably", base.to_string(), t, async {
        let client = AblyClient::new(base, Some(key.value.clone()), t).map_err(|e| e.to_string())?;
        let (server_ms, rtt) = client.time().await.map_err(|e| e.to_string())?;
        let skew_ms = server_ms - (chrono::Utc::now().timestamp_millis() - rtt.as_millis() as i64 / 2);
        // /stats needs a valid key and nothing else, so it checks the credentials without side effects.
        let url = client.url("stats?limit=1");
        client.get_page::<Value>("GET /stats", url).await.map_err(|e| e.to_string())?;
        Ok(format!("key {} accepted; clock skew {skew_ms} ms", key.value.name))
    })
    .await
}

async fn chatwoot(config: &Config, t: Duration) -> Check {
    let Some(base) = &config.chatwoot_base_url else {
        return Check::unconfigured("chatwoot", "CHATWOOT_BASE_URL, CHATWOOT_INBOX_IDENTIFIER");
    };
    let client = ChatwootClient::new(
        base.value.clone(),
        config.chatwoot_inbox_identifier.as_ref().map(|s| s.value.clone()),
        config.chatwoot_api_token.as_ref().map(|s| s.value.clone()),
        config.chatwoot_account_id.as_ref().map(|s| s.value),
        t,
    );
    let has_token = config.chatwoot_api_token.is_some();
    timed("chatwoot", base.value.to_string(), t, async move {
        let info = client.api_info().await.map_err(|e| e.to_string())?;
        let version = info.get("version").and_then(Value::as_str).unwrap_or("unknown").to_string();
        if has_token {
            client.profile().await.map_err(|e| e.to_string())?;
            Ok(format!("version {version}; API token accepted"))
        } else {
            Ok(format!("version {version}; CHATWOOT_API_TOKEN not set, application API not checked"))
        }
    })
    .await
}

async fn redis(config: &Config, t: Duration) -> Check {
    let Some(url) = &config.redis_url else { return Check::unconfigured("redis", "REDIS_URL") };
    let url = url.value.expose_secret().to_string();
    timed("redis", crate::redact::url(&url), t, async move {
        let mut conn = crate::mirror::redis::connect(&url, t).await.map_err(|e| e.to_string())?;
        let info: String =
            redis::cmd("INFO").arg("server").query_async(&mut conn).await.map_err(|e| format!("INFO: {e}"))?;
        let version =
            info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("unknown").trim().to_string();
        Ok(format!("Redis {version}"))
    })
    .await
}

async fn postgres(config: &Config, t: Duration) -> Check {
    let Some(url) = &config.database_url else { return Check::unconfigured("postgres", "DATABASE_URL") };
    let url = url.value.expose_secret().to_string();
    let addr = crate::redact::url(&url);
    timed("postgres", addr.clone(), t, async move {
        let pool = crate::mirror::postgres::connect(&url, t).await.map_err(|e| e.to_string())?;
        let (version, table): (String, Option<String>) =
            sqlx::query_as("SELECT current_setting('server_version'), to_regclass('chat_events')::text")
                .persistent(false)
                .fetch_one(&pool)
                .await
                .map_err(|e| format!("Postgres query at {addr}: {e}"))?;
        pool.close().await;
        let mirror = if table.is_some() {
            "chat_events present"
        } else {
            "chat_events missing (the sandbox or migration creates it)"
        };
        Ok(format!("PostgreSQL {version}; {mirror}"))
    })
    .await
}

async fn slack(config: &Config, t: Duration) -> Check {
    let Some(url) = &config.slack_webhook_url else { return Check::unconfigured("slack", "SLACK_WEBHOOK_URL") };
    let text = url.value.expose_secret().to_string();
    timed("slack", crate::redact::secret_path_url(&text), t, async move {
        // Posting would send a message; a TCP connect shows the host answers without doing so.
        let u = url::Url::parse(&text).map_err(|e| format!("invalid URL: {e}"))?;
        let host = u.host_str().ok_or("URL has no host")?.to_string();
        let port = u.port_or_known_default().unwrap_or(443);
        tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        Ok(format!("{host}:{port} accepts connections (no message sent)"))
    })
    .await
}

async fn smtp(config: &Config, t: Duration) -> Check {
    let Some(url) = &config.smtp_url else { return Check::unconfigured("smtp", "SMTP_URL") };
    let text = url.value.expose_secret().to_string();
    timed("smtp", crate::redact::url(&text), t, async move {
        crate::http::ensure_crypto_provider();
        let transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor> =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&text)
                .map_err(|e| format!("invalid SMTP_URL: {e}"))?
                .timeout(Some(t))
                .build();
        match transport.test_connection().await {
            Ok(true) => Ok("EHLO and NOOP answered".into()),
            Ok(false) => Err("the server did not answer NOOP".into()),
            Err(e) => Err(format!("SMTP: {e}")),
        }
    })
    .await
}

impl Render for DoctorReport {
    fn table(&self, w: &mut dyn Write, style: Style) -> io::Result<()> {
        let mut t = table(&["dependency", "configured", "reachable", "latency", "target", "detail"]);
        for c in &self.checks {
            let reachable = match c.reachable {
                Some(true) => style.good("yes"),
                Some(false) => style.bad("NO"),
                None => style.dim("-"),
            };
            let latency = c.latency_ms.map(|ms| format!("{ms:.0}ms")).unwrap_or_else(|| "-".into());
            let detail = c.error.clone().or(c.detail.clone()).unwrap_or_default();
            t.add_row(vec![
                c.name.to_string(),
                if c.configured { "yes".into() } else { "no".into() },
                reachable,
                latency,
                c.target.clone().unwrap_or_else(|| "-".into()),
                detail,
            ]);
        }
        writeln!(w, "{t}")?;
        let verdict = if self.healthy() {
            style.good("all configured dependencies are reachable")
        } else {
            style.bad("some configured dependencies are NOT reachable")
        };
        writeln!(w, "{verdict}")
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": "doctor", "healthy": self.healthy(), "checks": self.checks})
    }

    fn ndjson(&self) -> Vec<Value> {
        self.checks.iter().map(|c| json!(c)).collect()
    }
}
