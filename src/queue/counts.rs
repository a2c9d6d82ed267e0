//! Read-only job counts, exactly as BullMQ's own `getJobCounts` counts them (v4, v5 and v6
//! layouts; docs/contracts.md, "BullMQ"), in two round trips whatever the
//! queue holds. Unlike BullMQ's script it never pops the legacy `0:` marker: it only subtracts it.

use serde::Serialize;

use super::QueueKeys;
use crate::redis_handle::{Redis, RedisError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub waiting: u64,
    pub paused: u64,
    pub active: u64,
    pub prioritized: u64,
    pub delayed: u64,
    /// Delayed jobs already due (no worker has promoted them).
    pub overdue: u64,
    pub failed: u64,
    pub completed: u64,
    pub waiting_children: u64,
    /// `meta.paused` is set.
    pub queue_paused: bool,
    /// Any of the queue's keys exists.
    pub exists: bool,
    /// The oldest waiting job (tail of `wait`, else of `paused`) and its age.
    pub oldest_job: Option<String>,
    pub oldest_wait_ms: Option<i64>,
    /// Why the oldest job's age could not be read, if so.
    pub oldest_problem: Option<String>,
}

fn is_marker(id: &Option<String>) -> bool {
    id.as_deref().is_some_and(|s| s.starts_with("0:"))
}

/// Reads the counts of the queue `keys` at `now_ms`.
pub async fn read(redis: &mut Redis, keys: &QueueKeys, now_ms: i64) -> Result<JobCounts, RedisError> {
    let addr = redis.addr.clone();
    let err = |op: &str| {
        let op = op.to_string();
        let addr = addr.clone();
        move |source| RedisError { op, addr, source }
    };
    // Delayed scores are (due ms) * 4096 + sequence; everything at or below this is due.
    let due_max = (now_ms + 1) * 4096 - 1;
    let mut pipe = redis::pipe();
    pipe.llen(keys.key("wait"))
        .lindex(keys.key("wait"), -1)
        .lindex(keys.key("wait"), -2)
        .llen(keys.key("paused"))
        .lindex(keys.key("paused"), -1)
        .lindex(keys.key("paused"), -2)
        .llen(keys.key("active"))
        .zcard(keys.key("prioritized"))
        .zcard(keys.key("delayed"))
        .zcount(keys.key("delayed"), 0, due_max)
        .zcard(keys.key("failed"))
        .zcard(keys.key("completed"))
        .zcard(keys.key("waiting-children"))
        .hexists(keys.key("meta"), "paused")
        .exists(keys.key("meta"))
        .exists(keys.key("id"));
    let v: Vec<redis::Value> = pipe.query_async(&mut redis.conn).await.map_err(err("count pipeline"))?;
    let n = |i: usize| -> Result<u64, RedisError> {
        redis::from_redis_value_ref(&v[i]).map_err(|e| err("count pipeline")(e.into()))
    };
    let s = |i: usize| -> Result<Option<String>, RedisError> {
        redis::from_redis_value_ref(&v[i]).map_err(|e| err("count pipeline")(e.into()))
    };
    let b = |i: usize| -> Result<bool, RedisError> {
        redis::from_redis_value_ref(&v[i]).map_err(|e| err("count pipeline")(e.into()))
    };
    if v.len() != 16 {
        let source = redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "unexpected reply length"));
        return Err(err("count pipeline")(source));
    }
    let (wait, w1, w2, paused, p1, p2) = (n(0)?, s(1)?, s(2)?, n(3)?, s(4)?, s(5)?);
    let (active, prioritized, delayed, overdue, failed, completed, children) =
        (n(6)?, n(7)?, n(8)?, n(9)?, n(10)?, n(11)?, n(12)?);
    let (is_paused, meta, id) = (b(13)?, b(14)?, b(15)?);
    let waiting = if is_marker(&w1) { wait.saturating_sub(1) } else { wait };
    let paused_n = if is_marker(&p1) { paused.saturating_sub(1) } else { paused };
    let tail = |a: Option<String>, b: Option<String>| if is_marker(&a) { b } else { a };
    let oldest_job = if waiting > 0 {
        tail(w1, w2)
    } else if paused_n > 0 {
        tail(p1, p2)
    } else {
        None
    };
    let mut c = JobCounts {
        waiting,
        paused: paused_n,
        active,
        prioritized,
        delayed,
        overdue,
        failed,
        completed,
        waiting_children: children,
        queue_paused: is_paused,
        exists: meta || id || wait + paused + active + prioritized + delayed + failed + completed + children > 0,
        oldest_job: oldest_job.clone(),
        ..JobCounts::default()
    };
    if let Some(job) = oldest_job {
        let ts: Option<String> = redis::cmd("HGET")
            .arg(keys.job(&job))
            .arg("timestamp")
            .query_async(&mut redis.conn)
            .await
            .map_err(err("HGET timestamp"))?;
        match ts.as_deref().map(str::parse::<i64>) {
            Some(Ok(t)) => c.oldest_wait_ms = Some((now_ms - t).max(0)),
            Some(Err(_)) => {
                c.oldest_problem = Some(format!("job {job} has a malformed timestamp {:?}", ts.unwrap_or_default()))
            }
            None => {
                c.oldest_problem =
                    Some(format!("job {job} is in the wait list but its hash {} is missing", keys.job(&job)))
            }
        }
    } else {
        c.oldest_wait_ms = Some(0);
    }
    Ok(c)
}
