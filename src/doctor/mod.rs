//! `broker-ops doctor`: for every dependency, whether it is configured, whether it answers,
//! how fast, and the exact error when it does not; then every contract (names of channels,
//! events, keys, the table, token claims) with where its value came from and what the real
//! stores show ([`evidence`]). Checks run concurrently, each bounded by the configured time-out,
//! and none of them writes anything.

pub mod evidence;
pub mod tls;

use std::future::Future;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};

use crate::ably::AblyClient;
use crate::chatwoot::ChatwootClient;
use crate::config::Config;
use crate::output::{Render, Style, escape, table};
use crate::queue::QueueKeys;

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
    pub contracts: Vec<evidence::ContractRow>,
    /// Each TLS dependency's protocol, issuer and days left.
    pub tls: Vec<tls::TlsRow>,
}

impl DoctorReport {
    /// Everything configured is reachable.
    pub fn reachable(&self) -> bool {
        self.checks.iter().all(|c| !c.configured || c.reachable == Some(true))
    }

    /// The contracts the stores contradict.
    pub fn mismatches(&self) -> Vec<&evidence::ContractRow> {
        self.contracts.iter().filter(|r| matches!(r.evidence, evidence::Evidence::Mismatch(_))).collect()
    }

    /// Reachable, and no contract contradicted.
    pub fn healthy(&self) -> bool {
        self.reachable() && self.mismatches().is_empty()
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
        Err(_) => Err(format!("{name} at {target}: no answer within {}", crate::duration::format_duration(timeout))),
    };
    let latency_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let (reachable, detail, error) = match result {
        Ok(d) => (Some(true), Some(d), None),
        Err(e) => (Some(false), None, Some(e)),
    };
    Check { name, configured: true, reachable, target: Some(target), latency_ms, detail, error }
}

/// Everything runs at once and within the time-out: the whole of `doctor` takes about one
/// time-out when something hangs.
pub async fn run(config: &Config) -> DoctorReport {
    let t = config.timeout.value;
    let (ably, chatwoot, redis, postgres, slack, smtp, contracts, tls) = tokio::join!(
        ably(config, t),
        chatwoot(config, t),
        redis(config, t),
        postgres(config, t),
        slack(config, t),
        smtp(config, t),
        tokio::time::timeout(t, contract_evidence(config, t)),
        tls::rows(config, t)
    );
    let contracts = contracts.unwrap_or_else(|_| {
        let why = format!("the look at the stores did not finish within {}", crate::duration::format_duration(t));
        config
            .contracts
            .values()
            .into_iter()
            .map(|(key, value)| evidence::ContractRow {
                key,
                value,
                source: config.contracts.source_of(key).to_string(),
                evidence: evidence::Evidence::NoEvidence(why.clone()),
            })
            .collect()
    });
    DoctorReport { checks: vec![ably, chatwoot, redis, postgres, slack, smtp], contracts, tls }
}

/// Connects to what is configured (what does not answer is simply not looked at: the checks
/// above already report it) and gathers the evidence.
async fn contract_evidence(config: &Config, t: Duration) -> Vec<evidence::ContractRow> {
    let mut redis = crate::redis_handle::Redis::from_config(config).await.ok().flatten();
    let pg = crate::store::postgres::Pg::from_config(config).await.ok().flatten();
    let ably = config
        .ably_api_key
        .as_ref()
        .and_then(|k| AblyClient::new(config.ably_rest_url.value.clone(), Some(k.value.clone()), t).ok());
    let rows =
        evidence::contracts(&config.contracts, &config.bull_prefix.value, redis.as_mut(), pg.as_ref(), ably.as_ref())
            .await;
    if let Some(pg) = pg {
        pg.pool.close().await;
    }
    rows
}

async fn ably(config: &Config, t: Duration) -> Check {
    let Some(key) = &config.ably_api_key else { return Check::unconfigured("ably", "ABLY_API_KEY") };
    let base = config.ably_rest_url.value.clone();
    timed("ably", crate::redact::url(base.as_str()), t, async {
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
    timed("chatwoot", crate::redact::url(base.value.as_str()), t, async move {
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
    let prefix = config.redis_key_prefix.value.clone();
    let contracts = config.contracts.clone();
    let queue = QueueKeys::new(config.bull_prefix.value.clone(), config.broker_queue.value.clone());
    timed("redis", crate::redact::url(&url), t, async move {
        let mut r = crate::redis_handle::Redis::connect(&url, &prefix, t).await.map_err(|e| e.to_string())?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut r.conn)
            .await
            .map_err(|e| format!("Redis INFO at {}: {e}", r.addr))?;
        let version =
            info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("unknown").trim().to_string();
        Ok(format!("Redis {version}; {}", redis_health(&mut r, &contracts, &queue).await))
    })
    .await
}

/// What `ably backlog` says of this Redis (stream expiry, memory, eviction under the queue), in
/// one line: the findings that are not OK, or that all are.
async fn redis_health(r: &mut crate::redis_handle::Redis, c: &crate::contracts::Contracts, q: &QueueKeys) -> String {
    use crate::probe::{Rules, backlog, redis_health};
    let queue_here = redis::cmd("EXISTS").arg(q.key("meta")).arg(q.key("id")).query_async::<i64>(&mut r.conn).await;
    // The backlog probe's own constant rules, parsed in its unit test.
    let rules = Rules::new(backlog::DEFAULT_WARN, backlog::DEFAULT_CRIT, vec![], vec![], backlog::METRICS)
        .expect("constant rules");
    let checks = redis_health::checks(r, c, queue_here.unwrap_or(0) > 0, &rules).await;
    let bad: Vec<String> = checks
        .iter()
        // The findings, and the memory line when no limit is set (said plainly, not an alarm).
        .filter(|c| c.state != crate::exit::ProbeState::Ok || (c.name == "memory_used" && c.value.is_none()))
        .map(|c| format!("{} {}: {}", c.state.label(), c.name, c.detail))
        .collect();
    if bad.is_empty() { "keys expire, memory and eviction policy OK".into() } else { bad.join("; ") }
}

async fn postgres(config: &Config, t: Duration) -> Check {
    let Some(url) = &config.database_url else { return Check::unconfigured("postgres", "DATABASE_URL") };
    let url = url.value.expose_secret().to_string();
    let addr = crate::redact::url(&url);
    let table = config.contracts.table.clone();
    timed("postgres", addr.clone(), t, async move {
        let pool = crate::store::postgres::connect(&url, t).await.map_err(|e| e.to_string())?;
        let version: String = crate::store::postgres::scalar("SELECT current_setting('server_version')")
            .fetch_one(&pool)
            .await
            .map_err(|e| format!("Postgres query at {addr}: {e}"))?;
        let present = crate::store::postgres::table_exists(&pool, &addr, &table).await.map_err(|e| e.to_string())?;
        pool.close().await;
        let mirror = if present {
            format!("{table} present")
        } else {
            format!("{table} missing (`broker-ops db migrate` creates it)")
        };
        Ok(format!("PostgreSQL {version}; {mirror}"))
    })
    .await
}

async fn slack(config: &Config, t: Duration) -> Check {
    let Some(url) = &config.slack_webhook_url else { return Check::unconfigured("slack", "SLACK_WEBHOOK_URL") };
    let text = url.value.expose_secret().to_string();
    let shown = crate::redact::secret_path_url(&text);
    timed("slack", shown.clone(), t, async move {
        // Posting would send a message. A GET completes the TLS and HTTP exchange (Slack answers
        // it with an error status) and posts nothing; a host that accepts TCP but never answers
        // is not reachable.
        // The check's own deadline (`timed`, at `t`) decides and says so; the client's a little
        // later only stops a leak.
        let resp = crate::http::client(t + Duration::from_millis(500))
            .get(&text)
            .send()
            .await
            .map_err(|e| format!("Slack GET {shown}: {}", crate::http::describe(&e)))?;
        Ok(format!("answered HTTP {} to a GET (no message sent)", resp.status().as_u16()))
    })
    .await
}

async fn smtp(config: &Config, t: Duration) -> Check {
    let smtp = match crate::smtp::Smtp::from_config(config) {
        Ok(Some(s)) => s,
        Ok(None) => return Check::unconfigured("smtp", "SMTP_URL"),
        Err(e) => {
            let target = config.smtp_url.as_ref().map(|u| crate::redact::url(u.value.expose_secret()));
            return Check {
                name: "smtp",
                configured: true,
                reachable: Some(false),
                target,
                latency_ms: None,
                detail: None,
                error: Some(e),
            };
        }
    };
    timed("smtp", smtp.addr.clone(), t, async move {
        smtp.check().await?;
        Ok("EHLO and NOOP answered".to_string())
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
                escape(c.target.as_deref().unwrap_or("-")),
                escape(&detail),
            ]);
        }
        writeln!(w, "{t}\n")?;
        let mut t = table(&["contract", "value", "from", "found"]);
        for r in &self.contracts {
            let found = match &r.evidence {
                evidence::Evidence::Match(d) => style.good(&format!("ok: {}", escape(d))),
                evidence::Evidence::Mismatch(d) => style.bad(&format!("MISMATCH: {}", escape(d))),
                evidence::Evidence::NoEvidence(d) => style.dim(&format!("-: {}", escape(d))),
            };
            t.add_row(vec![r.key.to_string(), escape(&r.value), escape(&r.source), found]);
        }
        writeln!(w, "{t}")?;
        if !self.tls.is_empty() {
            let mut t = table(&["TLS", "target", "protocol", "issuer", "expires", "days left"]);
            for r in &self.tls {
                let days = match r.days_left {
                    Some(d) if d < 7 => style.bad(&d.to_string()),
                    Some(d) => d.to_string(),
                    None => "-".into(),
                };
                let issuer = r.issuer.as_deref().or(r.note.as_deref()).unwrap_or("-");
                t.add_row(vec![
                    r.dependency.to_string(),
                    escape(&r.target),
                    r.protocol.clone().unwrap_or_else(|| "-".into()),
                    escape(issuer),
                    r.expires.clone().unwrap_or_else(|| "-".into()),
                    days,
                ]);
            }
            writeln!(w, "\n{t}")?;
        }
        let mismatches = self.mismatches();
        if !self.reachable() {
            writeln!(w, "{}", style.bad("some configured dependencies are NOT reachable"))?;
        }
        for m in &mismatches {
            if let evidence::Evidence::Mismatch(d) = &m.evidence {
                writeln!(w, "{}", style.bad(&format!("contracts.{} = {:?}: {}", m.key, escape(&m.value), escape(d))))?;
            }
        }
        if self.healthy() {
            writeln!(w, "{}", style.good("all configured dependencies are reachable; no contract is contradicted"))?;
        }
        Ok(())
    }

    fn json(&self) -> Value {
        json!({"schema_version": 1, "kind": "doctor", "healthy": self.healthy(), "checks": self.checks,
               "contracts": self.contracts, "tls": self.tls})
    }

    fn ndjson(&self) -> Vec<Value> {
        self.checks.iter().map(|c| json!(c)).chain(self.contracts.iter().map(|c| json!(c))).collect()
    }
}
