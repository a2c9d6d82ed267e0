//! The sandbox's writes to the real Redis and Postgres: the event mirror (as the production
//! webhook writes it) and the BullMQ-layout queue (as the production worker leaves it). One
//! task drains a queue of operations in batches, so publishing never waits on a database.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::channels::Stored;
use super::{SandboxOptions, SinkCounters};
use crate::contracts::Contracts;
use crate::mirror::{self, MirroredEvent};
use crate::queue::QueueKeys;
use crate::redis_handle::Redis;

#[derive(Debug)]
pub enum SinkOp {
    Mirror(MirroredEvent),
    JobAdded { id: String, data: String, at_ms: i64 },
    JobActive { id: String, at_ms: i64 },
    JobCompleted { id: String, at_ms: i64, result: String },
    JobFailed { id: String, at_ms: i64, reason: String },
}

pub fn to_event(conversation_id: &str, s: &Stored) -> MirroredEvent {
    MirroredEvent {
        id: s.message.id.clone().unwrap_or_default(),
        conversation_id: conversation_id.to_string(),
        channel: s.channel.clone(),
        name: s.message.name.clone().unwrap_or_default(),
        data: s.message.decoded_data(),
        client_id: s.message.client_id.clone(),
        timestamp_ms: s.message.timestamp.unwrap_or(0),
    }
}

type Started = (Option<mpsc::UnboundedSender<SinkOp>>, Option<tokio::task::JoinHandle<()>>, Arc<SinkCounters>);

/// Connects what was configured (failing loudly when it cannot) and starts the writer.
pub async fn start(opts: &SandboxOptions) -> Result<Started, mirror::MirrorError> {
    let counters = Arc::new(SinkCounters::default());
    if opts.redis_url.is_none() && opts.database_url.is_none() {
        return Ok((None, None, counters));
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
            let pool = mirror::postgres::connect(url, opts.connect_timeout).await?;
            // The sandbox stands in for the app, whose deployment owns the table: it makes its own.
            mirror::postgres::migrate(&pool, &addr, &opts.contracts.table).await?;
            Some((pool, addr))
        }
        None => None,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = Writer {
        redis,
        pg,
        contracts: opts.contracts.clone(),
        keys: QueueKeys::new(&opts.bull_prefix, &opts.queue),
        counters: counters.clone(),
    };
    let task = tokio::spawn(writer.run(rx));
    Ok((Some(tx), Some(task), counters))
}

struct Writer {
    redis: Option<Redis>,
    pg: Option<(PgPool, String)>,
    contracts: Contracts,
    keys: QueueKeys,
    counters: Arc<SinkCounters>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<SinkOp>) {
        let mut batch = Vec::with_capacity(512);
        while rx.recv_many(&mut batch, 512).await > 0 {
            let (events, jobs): (Vec<_>, Vec<_>) = batch.drain(..).partition(|op| matches!(op, SinkOp::Mirror(_)));
            let events: Vec<MirroredEvent> =
                events.into_iter().filter_map(|op| if let SinkOp::Mirror(e) = op { Some(e) } else { None }).collect();
            self.mirror(&events).await;
            if !jobs.is_empty() {
                self.queue(&jobs).await;
            }
        }
    }

    async fn mirror(&mut self, events: &[MirroredEvent]) {
        if events.is_empty() {
            return;
        }
        let mut ok = true;
        if let Some(redis) = &mut self.redis
            && let Err(e) = mirror::redis::append(redis, &self.contracts, events).await
        {
            tracing::warn!("sandbox mirror: {e}");
            ok = false;
        }
        if let Some((pool, addr)) = &self.pg
            && let Err(e) = mirror::postgres::insert(pool, addr, &self.contracts.table, events).await
        {
            tracing::warn!("sandbox mirror: {e}");
            ok = false;
        }
        let counter = if ok { &self.counters.mirrored } else { &self.counters.errors };
        counter.fetch_add(events.len(), Ordering::Relaxed);
    }

    /// Moves jobs through `wait` → `active` → `completed`/`failed` as BullMQ (v5 layout) does.
    async fn queue(&mut self, ops: &[SinkOp]) {
        let Some(redis) = &mut self.redis else { return };
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic();
        for op in ops {
            match op {
                SinkOp::JobAdded { id, data, at_ms } => {
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
                SinkOp::JobActive { id, at_ms } => {
                    pipe.lrem(k.key("wait"), 1, id).ignore();
                    pipe.lpush(k.key("active"), id).ignore();
                    pipe.hset_multiple(k.job(id), &[("processedOn", at_ms.to_string()), ("ats", "1".into())]).ignore();
                }
                SinkOp::JobCompleted { id, at_ms, result } => {
                    pipe.lrem(k.key("active"), 1, id).ignore();
                    pipe.zadd(k.key("completed"), id, at_ms).ignore();
                    pipe.hset_multiple(
                        k.job(id),
                        &[("finishedOn", at_ms.to_string()), ("returnvalue", result.clone()), ("atm", "1".into())],
                    )
                    .ignore();
                }
                SinkOp::JobFailed { id, at_ms, reason } => {
                    pipe.lrem(k.key("active"), 1, id).ignore();
                    pipe.zadd(k.key("failed"), id, at_ms).ignore();
                    pipe.hset_multiple(
                        k.job(id),
                        &[("finishedOn", at_ms.to_string()), ("failedReason", reason.clone()), ("atm", "1".into())],
                    )
                    .ignore();
                }
                SinkOp::Mirror(_) => {}
            }
        }
        if let Err(e) = pipe.query_async::<()>(&mut redis.conn).await {
            tracing::warn!("sandbox queue: Redis at {}: {e}", redis.addr);
            self.counters.errors.fetch_add(ops.len(), Ordering::Relaxed);
        }
    }
}
