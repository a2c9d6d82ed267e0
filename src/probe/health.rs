//! `ably health`: reachability and round trip (`GET /time`), clock skew, app statistics over a
//! window, channel occupancy, and Ably's public status. Requests run concurrently; each check
//! that cannot decide is UNKNOWN with its reason.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::{Check, ProbeReport, Rule, Rules, Unit};
use crate::ably::{AblyClient, AblyError};
use crate::config::{Config, ConfigError, DEFAULT_ABLY_REST_URL};

/// Ably's public status document, checked only for the default endpoint unless asked.
pub const STATUS_URL: &str = "https://ably.com/status/up.json";

/// A certificate is a WARNING with under 21 days left and CRITICAL under 7, as Gatus's
/// `[CERTIFICATE_EXPIRATION]` is used: three weeks to renew, one week before it is an outage.
pub const DEFAULT_WARN: &[&str] = &["latency>300ms", "skew>2s", "failed>0", "refused>0", "cert_expiry<21"];
pub const DEFAULT_CRIT: &[&str] = &["latency>1s", "skew>5s", "cert_expiry<7"];
/// The metrics a rule of this probe may name.
pub const METRICS: &[&str] = &[
    "latency",
    "skew",
    "messages",
    "connections",
    "channels",
    "failed",
    "refused",
    "subscribers",
    "status",
    "cert_expiry",
];

/// What `ably health` was asked.
#[derive(Debug, Clone)]
pub struct HealthRequest {
    pub window: Duration,
    pub channels: Channels,
    /// Ably's status document; by default checked only for Ably's default endpoint.
    pub status: StatusCheck,
    pub warn: Vec<Rule>,
    pub crit: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub enum StatusCheck {
    Default,
    At(Url),
    Off,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ably(#[from] AblyError),
    #[error(transparent)]
    Redis(#[from] crate::redis_handle::RedisError),
}

impl crate::exit::Classified for ProbeError {
    fn kind(&self) -> crate::exit::ErrorKind {
        match self {
            ProbeError::Usage(_) => crate::exit::ErrorKind::Usage,
            _ => crate::exit::ErrorKind::CouldNotRun,
        }
    }
}

/// `ably health` from the configuration: the whole probe finishes within the time-out,
/// whatever hangs (what did not answer is UNKNOWN).
pub async fn run(config: &Config, req: HealthRequest) -> Result<ProbeReport, ProbeError> {
    let rules = Rules::new(DEFAULT_WARN, DEFAULT_CRIT, req.warn, req.crit, METRICS).map_err(ProbeError::Usage)?;
    let key = config.require("ABLY_API_KEY", &config.ably_api_key)?;
    let t = config.timeout.value;
    let client = AblyClient::new(config.ably_rest_url.value.clone(), Some(key.value.clone()), t)?;
    let default_endpoint = config.ably_rest_url.value.as_str().trim_end_matches('/') == DEFAULT_ABLY_REST_URL;
    let status_url = match req.status {
        StatusCheck::Off => None,
        StatusCheck::At(u) => Some(u),
        // A constant URL that parses.
        StatusCheck::Default if default_endpoint => Some(Url::parse(STATUS_URL).expect("constant URL")),
        StatusCheck::Default => None,
    };
    // The certificates customers' browsers and our clients meet: Ably's endpoint and the web
    // app's (APP_BASE_URL), when they are HTTPS.
    let mut certificates: Vec<Url> = vec![config.ably_rest_url.value.clone()];
    certificates.extend(config.app_base_url.as_ref().map(|s| s.value.clone()));
    certificates.retain(|u| u.scheme() == "https");
    let opts =
        HealthOptions { window: req.window, channels: req.channels, status_url, rules, timeout: t, certificates };
    let limit = t + Duration::from_millis(500);
    Ok(super::within("ably_health", limit, &opts.rules, ("latency", Unit::Ms), health(&client, &opts)).await)
}

/// Which channels to report occupancy for.
#[derive(Debug, Clone)]
pub enum Channels {
    None,
    Named(Vec<String>),
    Prefix { prefix: String, limit: usize },
}

#[derive(Debug, Clone)]
pub struct HealthOptions {
    pub window: Duration,
    pub channels: Channels,
    /// Where to read Ably's status (`None`: not checked).
    pub status_url: Option<Url>,
    pub rules: Rules,
    pub timeout: Duration,
    /// HTTPS endpoints whose certificate's expiry is checked (`cert_expiry`).
    pub certificates: Vec<Url>,
}

pub async fn health(client: &AblyClient, opts: &HealthOptions) -> ProbeReport {
    let (time, stats, occupancy, status, certificates) = tokio::join!(
        time(client, &opts.rules),
        stats(client, opts),
        occupancy(client, opts),
        status(opts),
        certificates(opts)
    );
    let mut checks = time;
    checks.extend(stats);
    checks.extend(occupancy);
    checks.extend(status);
    checks.extend(certificates);
    ProbeReport { kind: "ably_health", checks }
}

async fn time(client: &AblyClient, rules: &Rules) -> Vec<Check> {
    match client.time().await {
        Ok((server_ms, rtt)) => {
            let local_mid = chrono::Utc::now().timestamp_millis() - rtt.as_millis() as i64 / 2;
            let skew_s = (server_ms - local_mid) as f64 / 1000.0;
            let rtt_ms = rtt.as_secs_f64() * 1000.0;
            vec![
                rules.check("latency", (rtt_ms * 10.0).round() / 10.0, Unit::Ms, "GET /time round trip"),
                rules.check(
                    "skew",
                    (skew_s.abs() * 1000.0).round() / 1000.0,
                    Unit::S,
                    format!(
                        "Ably's clock is {} ours by {:.3} s",
                        if skew_s >= 0.0 { "ahead of" } else { "behind" },
                        skew_s.abs()
                    ),
                ),
            ]
        }
        Err(e) => {
            let (r, f) = (e.to_string(), e.fault());
            vec![rules.failed("latency", Unit::Ms, f, r.clone()), rules.unknown("skew", Unit::S, r)]
        }
    }
}

/// Sums the current-shape `entries` over the window (peaks take the maximum).
fn totals(items: &[Value]) -> BTreeMap<&'static str, f64> {
    let mut t: BTreeMap<&'static str, f64> = BTreeMap::new();
    let sum_keys: [(&str, &[&str]); 3] = [
        ("messages", &["messages.all.all.count"]),
        ("failed", &["apiRequests.all.failed", "messages.all.all.failed"]),
        (
            "refused",
            &["apiRequests.all.refused", "messages.all.all.refused", "connections.all.refused", "channels.refused"],
        ),
    ];
    let peak_keys = [("connections", "connections.all.peak"), ("channels", "channels.peak")];
    for item in items {
        let e = &item["entries"];
        for (name, keys) in sum_keys {
            *t.entry(name).or_default() += keys.iter().filter_map(|k| e[*k].as_f64()).sum::<f64>();
        }
        for (name, key) in peak_keys {
            let v = e[key].as_f64().unwrap_or(0.0);
            let cur = t.entry(name).or_default();
            *cur = cur.max(v);
        }
    }
    t
}

async fn stats(client: &AblyClient, opts: &HealthOptions) -> Vec<Check> {
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - opts.window.as_millis() as i64;
    let url = client.url(&format!("stats?start={start}&end={now}&unit=minute&direction=forwards&limit=1000"));
    let names = ["messages", "connections", "channels", "failed", "refused"];
    let window = crate::duration::format_duration(opts.window);
    match client.get_all::<Value>("GET /stats", url, 10).await {
        Ok((items, _)) if items.iter().any(|i| i.get("entries").is_none()) => names
            .iter()
            .map(|n| opts.rules.unknown(n, Unit::Count, "GET /stats answered the legacy (protocol 1) shape"))
            .collect(),
        Ok((items, _)) => {
            let t = totals(&items);
            names
                .iter()
                .map(|n| {
                    let what = match *n {
                        "connections" | "channels" => format!("peak over the last {window}"),
                        _ => format!("total over the last {window}"),
                    };
                    opts.rules.check(n, t.get(n).copied().unwrap_or(0.0), Unit::Count, what)
                })
                .collect()
        }
        Err(e) => names.iter().map(|n| opts.rules.failed(n, Unit::Count, e.fault(), e.to_string())).collect(),
    }
}

async fn occupancy(client: &AblyClient, opts: &HealthOptions) -> Vec<Check> {
    let names = match &opts.channels {
        Channels::None => return Vec::new(),
        Channels::Named(n) => n.clone(),
        Channels::Prefix { prefix, limit } => {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("prefix", prefix)
                .append_pair("limit", &limit.min(&1000).to_string())
                .append_pair("by", "id")
                .finish();
            match client.get_page::<Value>("GET /channels", client.url(&format!("channels?{q}"))).await {
                Ok(page) => page.items.iter().filter_map(|v| v.as_str().map(str::to_string)).take(*limit).collect(),
                Err(e) => {
                    return vec![
                        opts.rules
                            .failed("subscribers", Unit::Count, e.fault(), e.to_string())
                            .at(format!("{prefix}*")),
                    ];
                }
            }
        }
    };
    let lookups = names.iter().map(|name| async move {
        let path = format!("channels/{}", url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>());
        let r = client.get_one::<Value>("GET /channels/{id}", client.url(&path)).await;
        (name, r)
    });
    futures::future::join_all(lookups)
        .await
        .into_iter()
        .map(|(name, r)| match r {
            Ok(v) => {
                let m = &v["status"]["occupancy"]["metrics"];
                let subs = m["subscribers"].as_f64().unwrap_or(0.0);
                let detail = format!(
                    "connections {}, publishers {}, presence members {}",
                    m["connections"].as_u64().unwrap_or(0),
                    m["publishers"].as_u64().unwrap_or(0),
                    m["presenceMembers"].as_u64().unwrap_or(0)
                );
                opts.rules.check("subscribers", subs, Unit::Count, detail).at(name.as_str())
            }
            Err(e) => opts.rules.failed("subscribers", Unit::Count, e.fault(), e.to_string()).at(name.as_str()),
        })
        .collect()
}

/// `cert_expiry`: whole days before each endpoint's certificate expires, measured on it; a
/// certificate that is refused (expired, untrusted, another name) is CRITICAL: customers'
/// browsers refuse it too.
async fn certificates(opts: &HealthOptions) -> Vec<Check> {
    let each = opts.certificates.iter().filter_map(crate::tls::https_target).map(|(host, port)| async move {
        let target = if port == 443 { host.clone() } else { format!("{host}:{port}") };
        match crate::tls::inspect(&host, port, opts.timeout).await {
            Ok(peer) => {
                let days = peer.days_left(chrono::Utc::now());
                let detail = format!(
                    "{}, issued by {}, expires {}",
                    peer.protocol,
                    peer.issuer,
                    peer.not_after.format("%Y-%m-%d")
                );
                opts.rules.check("cert_expiry", days as f64, Unit::Count, detail).at(target)
            }
            Err(e) => opts.rules.failed("cert_expiry", Unit::Count, crate::exit::Fault::Service, e).at(target),
        }
    });
    futures::future::join_all(each).await
}

async fn status(opts: &HealthOptions) -> Vec<Check> {
    let Some(url) = &opts.status_url else { return Vec::new() };
    let http = crate::http::client(opts.timeout);
    let result = async {
        let resp = http
            .get(url.clone())
            .header("Ably-Agent", concat!("broker-ops/", env!("CARGO_PKG_VERSION")))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::http::describe(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
        }
        let v: Value = resp.json().await.map_err(|e| format!("GET {url}: {}", crate::http::describe(&e)))?;
        v.get("status").and_then(Value::as_bool).ok_or_else(|| format!("GET {url}: no boolean \"status\" in {v}"))
    }
    .await;
    // Ably's own word that it is down is critical whatever the rules say.
    // A constant rule on this probe's own metric.
    let rules = Rules::new(&[], &["status<1"], vec![], vec![], METRICS).expect("constant status rule");
    match result {
        Ok(up) => vec![rules.check(
            "status",
            if up { 1.0 } else { 0.0 },
            Unit::Count,
            format!("{url} says {}", if up { "operational" } else { "NOT operational" }),
        )],
        Err(e) => vec![rules.unknown("status", Unit::Count, e)],
    }
}
