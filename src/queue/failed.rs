//! The latest failed jobs, read-only, as BullMQ's `getFailed` returns them: newest first (the
//! `failed` sorted set is scored by `finishedOn`), each job's hash as BullMQ wrote it.

use serde::Serialize;

use super::QueueKeys;
use crate::redis_handle::{Redis, RedisError};

/// At most this many jobs are listed: a look at the latest failures, not an export.
pub const MAX_FAILED: usize = 1000;

/// One failed job, with the fields an on-call engineer reads to see why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedJob {
    pub id: String,
    pub name: Option<String>,
    /// `failedReason`: the message of the error the handler threw.
    pub failed_reason: Option<String>,
    /// `attemptsMade` (`atm` since BullMQ v5, `attemptsMade` before).
    pub attempts_made: u64,
    /// When it was added and when it failed, in ms since the epoch.
    pub timestamp: Option<i64>,
    pub finished_on: Option<i64>,
    /// The first line of the last attempt's stack trace, when BullMQ kept one.
    pub stack: Option<String>,
    /// The job's data, as stored (JSON text).
    pub data: Option<String>,
}

/// The `n` latest failed jobs of the queue `keys` (at most [`MAX_FAILED`]), newest first.
pub async fn latest(redis: &mut Redis, keys: &QueueKeys, n: usize) -> Result<Vec<FailedJob>, RedisError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let last = isize::try_from(n.min(MAX_FAILED)).unwrap_or(isize::MAX) - 1;
    let ids: Vec<String> = redis::cmd("ZREVRANGE")
        .arg(keys.key("failed"))
        .arg(0)
        .arg(last)
        .query_async(&mut redis.conn)
        .await
        .map_err(redis.err("ZREVRANGE failed"))?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in &ids {
        pipe.hgetall(keys.job(id));
    }
    let hashes: Vec<std::collections::HashMap<String, String>> =
        pipe.query_async(&mut redis.conn).await.map_err(redis.err("HGETALL failed jobs"))?;
    Ok(ids.into_iter().zip(hashes).map(|(id, h)| job(id, &h)).collect())
}

fn job(id: String, h: &std::collections::HashMap<String, String>) -> FailedJob {
    let int = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
    let attempts = h.get("atm").or_else(|| h.get("attemptsMade")).and_then(|v| v.parse::<u64>().ok());
    let stack = h
        .get("stacktrace")
        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
        .and_then(|v| v.last().and_then(|s| s.lines().next().map(str::to_string)));
    FailedJob {
        id,
        name: h.get("name").cloned(),
        failed_reason: h.get("failedReason").cloned(),
        attempts_made: attempts.unwrap_or(0),
        timestamp: int("timestamp"),
        finished_on: int("finishedOn"),
        stack,
        data: h.get("data").cloned(),
    }
}

/// `ably backlog --failed N`: the queue's latest failed jobs.
#[derive(Debug, Clone, Serialize)]
pub struct FailedReport {
    pub queue: String,
    /// How many failed jobs the queue holds in all.
    pub failed_total: u64,
    pub jobs: Vec<FailedJob>,
}

/// The report of the `n` latest failed jobs of `keys`, read-only.
pub async fn report(redis: &mut Redis, keys: &QueueKeys, n: usize) -> Result<FailedReport, RedisError> {
    let total: u64 = redis::cmd("ZCARD")
        .arg(keys.key("failed"))
        .query_async(&mut redis.conn)
        .await
        .map_err(redis.err("ZCARD failed"))?;
    let jobs = latest(redis, keys, n).await?;
    Ok(FailedReport { queue: format!("{}:{}", keys.prefix, keys.queue), failed_total: total, jobs })
}

impl crate::output::Render for FailedReport {
    fn table(&self, w: &mut dyn std::io::Write, _style: crate::output::Style) -> std::io::Result<()> {
        use crate::output::escape;
        let mut t = crate::output::table(&["job", "failed at (UTC)", "attempts", "name", "reason"]);
        for j in &self.jobs {
            let at = j
                .finished_on
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
            t.add_row(vec![
                escape(&j.id),
                at,
                j.attempts_made.to_string(),
                escape(j.name.as_deref().unwrap_or("-")),
                escape(j.failed_reason.as_deref().unwrap_or("-")),
            ]);
        }
        if !self.jobs.is_empty() {
            writeln!(w, "{t}")?;
        }
        writeln!(
            w,
            "{} failed job(s) in {}; the latest {} shown (data and stack traces in -o json)",
            self.failed_total,
            escape(&self.queue),
            self.jobs.len()
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({"schema_version": 1, "kind": "failed_jobs", "queue": self.queue,
                           "failed_total": self.failed_total, "jobs": self.jobs})
    }

    fn ndjson(&self) -> Vec<serde_json::Value> {
        self.jobs.iter().map(|j| serde_json::json!(j)).collect()
    }
}
