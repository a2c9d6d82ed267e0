//! The sandbox's connections to the real Redis and Postgres: the stores its webhook receiver
//! writes the event mirror into (as the app's route does), and the BullMQ-layout queue (as the
//! production worker leaves it), which one task writes in batches so that the worker never
//! waits on a database.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use secrecy::ExposeSecret;
use tokio::sync::mpsc;

use super::receiver::Stores;
use super::{SandboxOptions, SinkCounters};
use crate::queue::QueueKeys;
use crate::redis_handle::Redis;
use crate::replay::to_store::{PostgresTarget, RedisTarget};
use crate::store;

#[derive(Debug)]
pub enum JobOp {
    Added {
        id: String,
        data: String,
        at_ms: i64,
    },
    Active {
        id: String,
        at_ms: i64,
    },
    Completed {
        id: String,
        at_ms: i64,
        result: String,
    },
    /// Failed after `attempts` attempts, each throwing `reason`.
    Failed {
        id: String,
        at_ms: i64,
        reason: String,
        attempts: u32,
    },
}

pub struct Started {
    pub sink: Option<mpsc::UnboundedSender<JobOp>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
    pub counters: Arc<SinkCounters>,
    /// What the webhook receiver writes; `None` without `--mirror`.
    pub stores: Option<Stores>,
}

/// Connects what was configured (failing loudly when it cannot) and starts the queue writer.
pub async fn start(opts: &SandboxOptions) -> Result<Started, store::MirrorError> {
    let counters = Arc::new(SinkCounters::default());
    if opts.redis_url.is_none() && opts.database_url.is_none() {
        return Ok(Started { sink: None, task: None, counters, stores: None });
    }
    let redis = match &opts.redis_url {
        Some(u) => {
            let prefix = &opts.contracts.redis_prefix;
            Some(Redis::connect(u.expose_secret(), prefix, opts.connect_timeout).await?)
        }
        None => None,
    };
    let pg = match &opts.database_url {
        Some(u) => {
            let url = u.expose_secret();
            let addr = crate::redact::url(url);
            let pool = store::postgres::connect(url, opts.connect_timeout).await?;
            // The sandbox stands in for the app, whose deployment owns the table: it makes its own.
            store::postgres::migrate(&pool, &addr, &opts.contracts.table).await?;
            Some((pool, addr))
        }
        None => None,
    };
    let stores = Stores {
        redis: match &redis {
            Some(r) => Some(RedisTarget::new(r.clone(), opts.contracts.clone(), false).await?),
            None => None,
        },
        postgres: match pg {
            Some((pool, addr)) => Some(PostgresTarget::new(pool, addr, opts.contracts.table.clone(), false).await?),
            None => None,
        },
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = Writer { redis, keys: QueueKeys::new(&opts.bull_prefix, &opts.queue), counters: counters.clone() };
    let task = tokio::spawn(writer.run(rx));
    Ok(Started { sink: Some(tx), task: Some(task), counters, stores: Some(stores) })
}

struct Writer {
    redis: Option<Redis>,
    keys: QueueKeys,
    counters: Arc<SinkCounters>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<JobOp>) {
        let mut batch = Vec::with_capacity(512);
        while rx.recv_many(&mut batch, 512).await > 0 {
            self.queue(&batch).await;
            batch.clear();
        }
    }

    /// Moves jobs through `wait` → `active` → `completed`/`failed` as BullMQ (v5 layout) does.
    async fn queue(&mut self, ops: &[JobOp]) {
        let Some(redis) = &mut self.redis else { return };
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for op in ops {
            match op {
                JobOp::Added { id, data, at_ms } => {
                    pipe.hset_multiple(
                        k.job(id),
                        &[
                            ("name", "message_created"),
                            ("data", data.as_str()),
                            ("opts", "{\"attempts\":1}"),
                            ("timestamp", &at_ms.to_string()),
                            ("delay", "0"),
                            ("priority", "0"),
                        ],
                    )
                    .ignore();
                    pipe.lpush(k.key("wait"), id).ignore();
                    pipe.cmd("XADD")
                        .arg(k.key("events"))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(10_000)
                        .arg("*")
                        .arg("event")
                        .arg("added")
                        .arg("jobId")
                        .arg(id)
                        .arg("name")
                        .arg("message_created")
                        .ignore();
                }
                JobOp::Active { id, at_ms } => {
                    pipe.lrem(k.key("wait"), 1, id).ignore();
                    pipe.lpush(k.key("active"), id).ignore();
                    pipe.hset_multiple(k.job(id), &[("processedOn", at_ms.to_string()), ("ats", "1".into())]).ignore();
                }
                JobOp::Completed { id, at_ms, result } => {
                    pipe.lrem(k.key("active"), 1, id).ignore();
                    pipe.zadd(k.key("completed"), id, at_ms).ignore();
                    pipe.hset_multiple(
                        k.job(id),
                        &[("finishedOn", at_ms.to_string()), ("returnvalue", result.clone()), ("atm", "1".into())],
                    )
                    .ignore();
                }
                JobOp::Failed { id, at_ms, reason, attempts } => {
                    pipe.lrem(k.key("active"), 1, id).ignore();
                    pipe.zadd(k.key("failed"), id, at_ms).ignore();
                    // As BullMQ's moveToFinished writes a failure: the reason, one stack line
                    // per attempt (a JSON array), the attempts made.
                    let stack: Vec<String> =
                        (0..*attempts).map(|_| format!("Error: {reason}\n    at handler (sandbox worker)")).collect();
                    let stack = serde_json::to_string(&stack).unwrap_or_default();
                    let fields = [
                        ("finishedOn", at_ms.to_string()),
                        ("failedReason", reason.clone()),
                        ("stacktrace", stack),
                        ("atm", attempts.to_string()),
                    ];
                    pipe.hset_multiple(k.job(id), &fields).ignore();
                }
            }
        }
        if let Err(e) = pipe.query_async::<()>(&mut redis.conn).await {
            tracing::warn!("sandbox queue: Redis at {}: {e}", redis.addr);
            self.counters.errors.fetch_add(ops.len(), Ordering::Relaxed);
        }
    }
}
