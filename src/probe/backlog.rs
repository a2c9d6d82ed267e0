//! `ably backlog`: the BullMQ queue (counts as `getJobCounts`, overdue delayed jobs, age of the
//! oldest waiting job), the mirror's lag behind Ably for the most active conversations, and the
//! Redis they live in (stream expiry, memory, eviction policy: `probe::redis_health`).

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use sqlx::PgPool;

use super::health::ProbeError;
use super::{Check, ProbeReport, Rule, Rules, Unit};
use crate::ably::AblyClient;
use crate::config::Config;
use crate::contracts::Contracts;
use crate::queue::{QueueKeys, counts};
use crate::redis_handle::Redis;
use crate::store::postgres::{Deadline, limit_of};

pub const DEFAULT_WARN: &[&str] = &[
    "waiting>100",
    "oldest_wait>10s",
    "overdue>0",
    "queue_paused>0",
    "mirror_lag>10s",
    "missing>0",
    "long_expiry>0",
    "memory_used>=0.8",
];
pub const DEFAULT_CRIT: &[&str] =
    &["waiting>1000", "oldest_wait>30s", "mirror_lag>60s", "no_expiry>0", "memory_used>=0.9", "evicting>0"];
/// The metrics a rule of this probe may name.
pub const METRICS: &[&str] = &[
    "waiting",
    "active",
    "delayed",
    "overdue",
    "prioritized",
    "paused",
    "failed",
    "completed",
    "waiting_children",
    "queue_paused",
    "oldest_wait",
    "mirror_lag",
    "missing",
    "no_expiry",
    "long_expiry",
    "memory_used",
    "evicting",
];

/// What `ably backlog` was asked.
#[derive(Debug, Clone, Default)]
pub struct BacklogRequest {
    /// BullMQ queue (default `BROKER_QUEUE`).
    pub queue: Option<String>,
    pub conversations: Vec<String>,
    pub top: usize,
    pub warn: Vec<Rule>,
    pub crit: Vec<Rule>,
    /// How long Ably keeps channel history (about 2 minutes without persisted history).
    pub history_window: Duration,
}

/// Ably's history window without persisted history.
pub const DEFAULT_HISTORY_WINDOW: Duration = Duration::from_secs(120);

/// `ably backlog` from the configuration. A store that cannot be reached becomes an UNKNOWN
/// check and the others still report; the whole probe is bounded by 3 x the time-out.
pub async fn run(config: &Config, req: BacklogRequest) -> Result<ProbeReport, ProbeError> {
    run_on(config, req, &crate::store::opened::Connections::open(config).await).await
}

/// `ably backlog` on stores already opened (a `monitor` sweep shares them).
pub async fn run_on(
    config: &Config,
    req: BacklogRequest,
    opened: &crate::store::opened::Connections,
) -> Result<ProbeReport, ProbeError> {
    let rules = Rules::new(DEFAULT_WARN, DEFAULT_CRIT, req.warn, req.crit, METRICS).map_err(ProbeError::Usage)?;
    let t = config.timeout.value;
    let queue = req.queue.unwrap_or_else(|| config.broker_queue.value.clone());
    let opts = BacklogOptions {
        keys: QueueKeys::new(config.bull_prefix.value.clone(), queue),
        contracts: config.contracts.clone(),
        conversations: req.conversations,
        top: req.top,
        rules,
        timeout: t,
        history_window: req.history_window,
    };
    let mut unknown = Vec::new();
    let redis = match opened.redis.clone().transpose() {
        Ok(r) => r,
        Err(e) => {
            // Without Redis nothing else can be read (the mirror check starts from its active set).
            let check = opts.rules.failed("waiting", Unit::Count, e.fault, e.reason);
            return Ok(ProbeReport { kind: "ably_backlog", checks: vec![check] });
        }
    };
    let pg = opened.postgres.clone().transpose().unwrap_or_else(|e| {
        unknown.push(opts.rules.failed("mirror_lag", Unit::S, e.fault, e.reason).at("postgres"));
        None
    });
    let ably = match &config.ably_api_key {
        Some(k) => Some(AblyClient::new(config.ably_rest_url.value.clone(), Some(k.value.clone()), t)?),
        None => None,
    };
    let mut redis = redis;
    let stores = Stores { redis: redis.as_mut(), postgres: pg.as_ref(), ably: ably.as_ref() };
    let limit = t * 3;
    let mut report =
        super::within("ably_backlog", limit, &opts.rules, ("waiting", Unit::Count), backlog(stores, &opts)).await;
    report.checks.extend(unknown);
    Ok(report)
}

/// `ably backlog --failed N`: the queue's `n` latest failed jobs with BullMQ's `failedReason`
/// and attempts, read-only (nothing is retried or removed).
pub async fn failed(
    config: &Config,
    queue: Option<String>,
    n: usize,
) -> Result<crate::queue::failed::FailedReport, ProbeError> {
    let url = config.require("REDIS_URL", &config.redis_url)?;
    let t = config.timeout.value;
    let mut redis = Redis::connect(secrecy::ExposeSecret::expose_secret(&url.value), "", t).await?;
    let keys =
        QueueKeys::new(config.bull_prefix.value.clone(), queue.unwrap_or_else(|| config.broker_queue.value.clone()));
    Ok(crate::queue::failed::report(&mut redis, &keys, n).await?)
}

pub struct BacklogOptions {
    pub keys: QueueKeys,
    pub contracts: Contracts,
    /// Conversations to check the mirror for; empty: the most active ones.
    pub conversations: Vec<String>,
    pub top: usize,
    pub rules: Rules,
    pub timeout: Duration,
    pub history_window: Duration,
}

/// The stores the probe reads; `None` where not configured.
pub struct Stores<'a> {
    pub redis: Option<&'a mut Redis>,
    pub postgres: Option<&'a crate::store::postgres::Pg>,
    pub ably: Option<&'a AblyClient>,
}

pub async fn backlog(stores: Stores<'_>, opts: &BacklogOptions) -> ProbeReport {
    let now = chrono::Utc::now().timestamp_millis();
    let mut checks = Vec::new();
    let Stores { redis, postgres, ably } = stores;
    match redis {
        None => checks.push(opts.rules.unknown("waiting", Unit::Count, "REDIS_URL is not set")),
        Some(redis) => {
            let (queue, queue_here) = queue_checks(redis, opts, now).await;
            checks.extend(queue);
            checks.extend(mirror_checks(redis, postgres, ably, opts).await);
            checks.extend(super::redis_health::checks(redis, &opts.contracts, queue_here, &opts.rules).await);
        }
    }
    ProbeReport { kind: "ably_backlog", checks }
}

/// The queue's checks, and whether the queue lives in this Redis.
async fn queue_checks(redis: &mut Redis, opts: &BacklogOptions, now: i64) -> (Vec<Check>, bool) {
    let r = &opts.rules;
    let q = format!("{}:{}", opts.keys.prefix, opts.keys.queue);
    let addr = redis.addr.clone();
    let c = match counts::read(redis, &opts.keys, now).await {
        Ok(c) => c,
        Err(e) => return (vec![r.failed("waiting", Unit::Count, e.fault(), e.to_string())], false),
    };
    if !c.exists {
        let why = format!("queue {q} has no keys in Redis at {addr} (does it exist?)");
        return (vec![r.unknown("waiting", Unit::Count, why)], false);
    }
    let mut out = vec![
        r.check("waiting", c.waiting as f64, Unit::Count, format!("{q}:wait")),
        r.check("active", c.active as f64, Unit::Count, format!("{q}:active")),
        r.check("delayed", c.delayed as f64, Unit::Count, format!("{q}:delayed")),
        r.check("overdue", c.overdue as f64, Unit::Count, "delayed jobs already due: is a worker running?"),
        r.check("prioritized", c.prioritized as f64, Unit::Count, format!("{q}:prioritized")),
        r.check("paused", c.paused as f64, Unit::Count, format!("{q}:paused (v4/v5 layout)")),
        r.check("failed", c.failed as f64, Unit::Count, format!("{q}:failed")),
        r.check("completed", c.completed as f64, Unit::Count, format!("{q}:completed")),
        r.check("waiting_children", c.waiting_children as f64, Unit::Count, format!("{q}:waiting-children")),
        r.check(
            "queue_paused",
            if c.queue_paused { 1.0 } else { 0.0 },
            Unit::Count,
            if c.queue_paused { "the queue is paused" } else { "running" },
        ),
    ];
    out.push(match (c.oldest_wait_ms, &c.oldest_problem) {
        (Some(ms), _) => {
            let detail = c.oldest_job.as_ref().map_or("no job waiting".to_string(), |j| format!("job {j}"));
            r.check("oldest_wait", ms as f64 / 1000.0, Unit::S, detail)
        }
        (None, Some(p)) => r.unknown("oldest_wait", Unit::S, p.clone()),
        (None, None) => r.unknown("oldest_wait", Unit::S, "unknown"),
    });
    (out, true)
}

/// Newest mirrored timestamp (ms) of a conversation in Redis.
async fn redis_newest(redis: &mut Redis, contracts: &Contracts, conv: &str) -> Result<Option<i64>, String> {
    let key = contracts.stream_key(conv);
    let last: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XREVRANGE")
        .arg(&key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut redis.conn)
        .await
        .map_err(|e| format!("Redis XREVRANGE {key} at {}: {e}", redis.addr))?;
    Ok(last.first().and_then(|(_, f)| f.get("timestamp")).and_then(|t| t.parse().ok()))
}

async fn postgres_newest(pool: &PgPool, addr: &str, contracts: &Contracts, conv: &str) -> Result<Option<i64>, String> {
    let t: Option<chrono::DateTime<chrono::Utc>> =
        crate::store::postgres::scalar(&contracts.table.newest_of_conversation_sql())
            .bind(conv)
            .fetch_one(pool)
            .within(limit_of(pool))
            .await
            .map_err(|e| format!("Postgres SELECT max(occurred_at) FROM {} at {addr}: {e}", contracts.table))?;
    Ok(t.map(|t| t.timestamp_millis()))
}

/// The `top` most active conversations that are customers': test traffic (smoke chats and
/// canaries, named with the contracts' synthetic prefix) is left out, as `sla report` leaves it
/// out, so that a canary published a moment ago never reads as the mirror falling behind.
async fn most_active(redis: &mut Redis, opts: &BacklogOptions) -> Result<Vec<String>, String> {
    let key = opts.contracts.active_key();
    let page = (opts.top * 2).max(50) as isize;
    let mut out = Vec::new();
    // At most ten pages: a set that is nearly all test traffic must not hold the probe up.
    for n in 0..10 {
        let ids: Vec<String> = redis
            .conn
            .zrevrange(&key, n * page, (n + 1) * page - 1)
            .await
            .map_err(|e| format!("Redis ZREVRANGE {key} at {}: {e}", redis.addr))?;
        let last = (ids.len() as isize) < page;
        out.extend(ids.into_iter().filter(|c| !c.starts_with(&opts.contracts.synthetic_prefix)));
        if out.len() >= opts.top || last {
            break;
        }
    }
    out.truncate(opts.top);
    Ok(out)
}

/// How far (s) a store is behind Ably for one conversation. `newer` are the timestamps of Ably's
/// messages newer than the store's newest (`store_newest`), newest first. Nothing newer: 0. The
/// store has nothing at all: the age of Ably's newest message.
pub fn mirror_lag(newer: &[i64], store_newest: Option<i64>, now_ms: i64) -> f64 {
    match (newer.first(), store_newest) {
        (None, _) => 0.0,
        (Some(ably_newest), Some(store)) => (ably_newest - store).max(0) as f64 / 1000.0,
        (Some(ably_newest), None) => (now_ms - ably_newest).max(0) as f64 / 1000.0,
    }
}

/// Whether a conversation's "in step" is unverifiable: Ably has nothing newer than the store's
/// newest, but that newest is older than Ably's history window, so anything published after it
/// may already be gone from history (a dead webhook reads green here).
pub fn beyond_history(newer: &[i64], store_newest: Option<i64>, now_ms: i64, window: Duration) -> bool {
    newer.is_empty() && store_newest.is_none_or(|t| now_ms - t > window.as_millis() as i64)
}

/// Ably's messages of a channel newer than `after_ms` (at most 1,000), newest first.
async fn ably_newer(ably: &AblyClient, channel: &str, after_ms: Option<i64>) -> Result<Vec<i64>, String> {
    let ch: String = url::form_urlencoded::byte_serialize(channel.as_bytes()).collect();
    let start = after_ms.map(|t| format!("&start={}", t + 1)).unwrap_or_default();
    let url = ably.url(&format!("channels/{ch}/messages?limit=1000{start}"));
    let page = ably.get_page::<Value>("GET history", url).await.map_err(|e| e.to_string())?;
    Ok(page.items.iter().filter_map(|m| m["timestamp"].as_i64()).collect())
}

async fn mirror_checks(
    redis: &mut Redis,
    postgres: Option<&crate::store::postgres::Pg>,
    ably: Option<&AblyClient>,
    opts: &BacklogOptions,
) -> Vec<Check> {
    let r = &opts.rules;
    // Without Ably there is nothing to compare the mirror with: a queue-only probe, by design
    // (docs/runbook.md), rather than an UNKNOWN that would page every run.
    let Some(ably) = ably else { return Vec::new() };
    let conversations = if opts.conversations.is_empty() {
        match most_active(redis, opts).await {
            Ok(c) => c,
            Err(why) => return vec![r.unknown("mirror_lag", Unit::S, why).at("redis")],
        }
    } else {
        opts.conversations.clone()
    };
    let mut stores: Vec<&str> = vec!["redis"];
    if postgres.is_some() {
        stores.push("postgres");
    }
    let mut out = Vec::new();
    for store in stores {
        let mut worst: (f64, Option<String>) = (0.0, None);
        let mut missing = 0u64;
        let mut blind = 0usize;
        let mut problem = None;
        for conv in &conversations {
            let newest = match (store, &postgres) {
                ("postgres", Some(pg)) => postgres_newest(&pg.pool, &pg.addr, &opts.contracts, conv).await,
                _ => redis_newest(redis, &opts.contracts, conv).await,
            };
            let newest = match newest {
                Ok(n) => n,
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            };
            match ably_newer(ably, &opts.contracts.channel_of(conv), newest).await {
                Ok(newer) => {
                    missing += newer.len() as u64;
                    let now = chrono::Utc::now().timestamp_millis();
                    blind += usize::from(beyond_history(&newer, newest, now, opts.history_window));
                    let lag = mirror_lag(&newer, newest, now);
                    if lag > worst.0 {
                        worst = (lag, Some(conv.clone()));
                    }
                }
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            }
        }
        match problem {
            Some(p) => {
                out.push(r.unknown("mirror_lag", Unit::S, p.clone()).at(store));
                out.push(r.unknown("missing", Unit::Count, p).at(store));
            }
            None => {
                let mut detail = match (&worst.1, conversations.len()) {
                    (_, 0) => "no active conversations".to_string(),
                    (Some(c), n) => format!("worst: conversation {c} of {n} checked"),
                    (None, n) => format!("{n} conversations in step with Ably"),
                };
                if blind > 0 {
                    let w = crate::duration::format_duration(opts.history_window);
                    detail.push_str(&format!(
                        "; {blind} last mirrored more than {w} ago, past Ably's history window ({w}): a lag \
                         there cannot be seen from history; `broker-ops mirror canary` checks the pipeline itself"
                    ));
                }
                out.push(r.check("mirror_lag", worst.0, Unit::S, detail).at(store));
                out.push(
                    r.check("missing", missing as f64, Unit::Count, "Ably messages newer than the mirror's newest")
                        .at(store),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_lag_is_ablys_newest_against_the_stores_newest() {
        assert_eq!(mirror_lag(&[], Some(1_000), 9_000), 0.0, "nothing newer in Ably: in step");
        assert_eq!(mirror_lag(&[5_500, 4_000], Some(1_000), 9_000), 4.5);
        assert_eq!(mirror_lag(&[5_500], None, 9_000), 3.5, "an empty store lags by the age of Ably's newest");
        assert_eq!(mirror_lag(&[500], Some(1_000), 9_000), 0.0, "never negative");
        let w = Duration::from_secs(120);
        assert!(beyond_history(&[], Some(0), 121_000, w), "in step only as far as history can tell");
        assert!(!beyond_history(&[], Some(0), 119_000, w));
        assert!(!beyond_history(&[5], Some(0), 500_000, w), "newer messages in history: the lag is measured");
        assert!(beyond_history(&[], None, 0, w));
        for d in [DEFAULT_WARN, DEFAULT_CRIT] {
            Rules::new(d, &[], vec![], vec![], METRICS).unwrap();
            assert!(d.iter().all(|r| METRICS.contains(&r.parse::<Rule>().unwrap().metric.as_str())));
        }
    }
}
