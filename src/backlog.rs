//! `ably backlog`: the BullMQ queue (counts as `getJobCounts`, overdue delayed jobs, age of the
//! oldest waiting job) and the mirror's lag behind Ably for the most active conversations.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde_json::Value;
use sqlx::PgPool;

use crate::ably::AblyClient;
use crate::contracts::Names;
use crate::probe::{Check, ProbeReport, Rules, Unit};
use crate::queue::{QueueKeys, counts};

pub const DEFAULT_WARN: &[&str] =
    &["waiting>100", "oldest_wait>10s", "overdue>0", "queue_paused>0", "mirror_lag>10s", "missing>0"];
pub const DEFAULT_CRIT: &[&str] = &["waiting>1000", "oldest_wait>30s", "mirror_lag>60s"];

pub struct BacklogOptions {
    pub keys: QueueKeys,
    pub names: Names,
    /// Conversations to check the mirror for; empty: the most active ones.
    pub conversations: Vec<String>,
    pub top: usize,
    pub rules: Rules,
    pub timeout: Duration,
}

/// The stores the probe reads; `None` where not configured.
pub struct Stores<'a> {
    pub redis: Option<(&'a mut ConnectionManager, String)>,
    pub postgres: Option<(&'a PgPool, String)>,
    pub ably: Option<&'a AblyClient>,
}

pub async fn backlog(stores: Stores<'_>, opts: &BacklogOptions) -> ProbeReport {
    let now = chrono::Utc::now().timestamp_millis();
    let mut checks = Vec::new();
    let Stores { redis, postgres, ably } = stores;
    match redis {
        None => checks.push(opts.rules.unknown("queue", "waiting", Unit::Count, "REDIS_URL is not set")),
        Some((conn, addr)) => {
            checks.extend(queue_checks(conn, &addr, opts, now).await);
            checks.extend(mirror_checks(conn, &addr, postgres, ably, opts).await);
        }
    }
    ProbeReport { kind: "ably_backlog", checks }
}

async fn queue_checks(conn: &mut ConnectionManager, addr: &str, opts: &BacklogOptions, now: i64) -> Vec<Check> {
    let r = &opts.rules;
    let q = format!("{}:{}", opts.keys.prefix, opts.keys.queue);
    let c = match counts::read(conn, addr, &opts.keys, now).await {
        Ok(c) => c,
        Err(e) => return vec![r.unknown("waiting", "waiting", Unit::Count, e.to_string())],
    };
    if !c.exists {
        return vec![r.unknown(
            "waiting",
            "waiting",
            Unit::Count,
            format!("queue {q} has no keys in Redis at {addr} (does it exist?)"),
        )];
    }
    let mut out = vec![
        r.check("waiting", "waiting", c.waiting as f64, Unit::Count, format!("{q}:wait")),
        r.check("active", "active", c.active as f64, Unit::Count, format!("{q}:active")),
        r.check("delayed", "delayed", c.delayed as f64, Unit::Count, format!("{q}:delayed")),
        r.check("overdue", "overdue", c.overdue as f64, Unit::Count, "delayed jobs already due: is a worker running?"),
        r.check("prioritized", "prioritized", c.prioritized as f64, Unit::Count, format!("{q}:prioritized")),
        r.check("paused", "paused", c.paused as f64, Unit::Count, format!("{q}:paused (v4/v5 layout)")),
        r.check("failed", "failed", c.failed as f64, Unit::Count, format!("{q}:failed")),
        r.check("completed", "completed", c.completed as f64, Unit::Count, format!("{q}:completed")),
        r.check(
            "waiting-children",
            "waiting_children",
            c.waiting_children as f64,
            Unit::Count,
            format!("{q}:waiting-children"),
        ),
        r.check(
            "queue_paused",
            "queue_paused",
            if c.queue_paused { 1.0 } else { 0.0 },
            Unit::Count,
            if c.queue_paused { "the queue is paused" } else { "running" },
        ),
    ];
    out.push(match (c.oldest_wait_ms, &c.oldest_problem) {
        (Some(ms), _) => {
            let detail = c.oldest_job.as_ref().map_or("no job waiting".to_string(), |j| format!("job {j}"));
            r.check("oldest_wait", "oldest_wait", ms as f64 / 1000.0, Unit::S, detail)
        }
        (None, Some(p)) => r.unknown("oldest_wait", "oldest_wait", Unit::S, p.clone()),
        (None, None) => r.unknown("oldest_wait", "oldest_wait", Unit::S, "unknown"),
    });
    out
}

/// Newest mirrored timestamp (ms) of a conversation in Redis.
async fn redis_newest(conn: &mut ConnectionManager, names: &Names, conv: &str) -> Result<Option<i64>, String> {
    let key = names.stream_key(conv);
    let last: Vec<(String, std::collections::HashMap<String, String>)> = redis::cmd("XREVRANGE")
        .arg(&key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await
        .map_err(|e| format!("XREVRANGE {key}: {e}"))?;
    Ok(last.first().and_then(|(_, f)| f.get("timestamp")).and_then(|t| t.parse().ok()))
}

async fn postgres_newest(pool: &PgPool, conv: &str) -> Result<Option<i64>, String> {
    let t: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT max(occurred_at) FROM chat_events WHERE conversation_id = $1")
            .persistent(false)
            .bind(conv)
            .fetch_one(pool)
            .await
            .map_err(|e| format!("SELECT max(occurred_at): {e}"))?;
    Ok(t.map(|t| t.timestamp_millis()))
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
    conn: &mut ConnectionManager,
    addr: &str,
    postgres: Option<(&PgPool, String)>,
    ably: Option<&AblyClient>,
    opts: &BacklogOptions,
) -> Vec<Check> {
    let r = &opts.rules;
    // Without Ably there is nothing to compare the mirror with: a queue-only probe, by design
    // (docs/runbook.md), rather than an UNKNOWN that would page every run.
    let Some(ably) = ably else { return Vec::new() };
    let conversations = if opts.conversations.is_empty() {
        match conn.zrevrange::<_, Vec<String>>(opts.names.active_key(), 0, opts.top as isize - 1).await {
            Ok(c) => c,
            Err(e) => {
                return vec![r.unknown(
                    "mirror_lag redis",
                    "mirror_lag",
                    Unit::S,
                    format!("Redis ZREVRANGE at {addr}: {e}"),
                )];
            }
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
        let mut problem = None;
        for conv in &conversations {
            let newest = match (store, &postgres) {
                ("postgres", Some((pool, _))) => postgres_newest(pool, conv).await,
                _ => redis_newest(conn, &opts.names, conv).await,
            };
            let newest = match newest {
                Ok(n) => n,
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            };
            match ably_newer(ably, &opts.names.channel_of(conv), newest).await {
                Ok(newer) => {
                    missing += newer.len() as u64;
                    if let (Some(ably_newest), Some(store_newest)) = (newer.first(), newest) {
                        let lag = (ably_newest - store_newest).max(0) as f64 / 1000.0;
                        if lag > worst.0 {
                            worst = (lag, Some(conv.clone()));
                        }
                    } else if let (Some(ably_newest), None) = (newer.first(), newest) {
                        let lag = (chrono::Utc::now().timestamp_millis() - ably_newest).max(0) as f64 / 1000.0;
                        if lag > worst.0 {
                            worst = (lag, Some(conv.clone()));
                        }
                    }
                }
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            }
        }
        let (lag_name, miss_name) = (format!("mirror_lag {store}"), format!("missing {store}"));
        match problem {
            Some(p) => {
                out.push(r.unknown(lag_name, "mirror_lag", Unit::S, p.clone()));
                out.push(r.unknown(miss_name, "missing", Unit::Count, p));
            }
            None => {
                let detail = match (&worst.1, conversations.len()) {
                    (_, 0) => "no active conversations".to_string(),
                    (Some(c), n) => format!("worst: conversation {c} of {n} checked"),
                    (None, n) => format!("{n} conversations in step with Ably"),
                };
                out.push(r.check(lag_name, "mirror_lag", worst.0, Unit::S, detail));
                out.push(r.check(
                    miss_name,
                    "missing",
                    missing as f64,
                    Unit::Count,
                    "Ably messages newer than the mirror's newest",
                ));
            }
        }
    }
    out
}
