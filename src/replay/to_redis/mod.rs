//! Backfilling the Redis mirror, idempotent on the Ably message id.
//!
//! One Lua script per conversation and page ([`SCRIPT`]), atomic, skips ids already in the
//! stream, appends when the new events come after the stream's newest and otherwise rebuilds the
//! stream in timestamp order; the stream expires 24 h after its newest event (never earlier than
//! it already would) and the conversation's score in the active set is its newest event. Events
//! older than the stream lifetime are not written (Redis would already have dropped them) and
//! are counted as expired.
//!
//! A backfill reads Postgres in global time order ([`RedisTarget::time_ordered`]), so a
//! conversation comes back page after page. The target remembers where it left each stream
//! ([`position`]): the script then reads only the stream's tail, and when the stream ends where
//! it was left, the events go straight in with plain `XADD`s carrying the ids that follow the
//! last one, which Redis refuses if anyone wrote to the stream since (the script then takes
//! over). That path costs Redis what a plain pipelined `XADD` does.

mod position;

use std::collections::HashMap;

use position::{Position, Positions};

use super::to_store::{StreamRow, Written};
use crate::contracts::Contracts;
use crate::mirror::MirrorError;
use crate::redis_handle::Redis;

/// The backfill script (its arguments are described at its top).
const SCRIPT: &str = include_str!("backfill.lua");

pub struct RedisTarget {
    redis: Redis,
    contracts: Contracts,
    script: redis::Script,
    dry_run: bool,
    /// Where each conversation's stream was left, when the events come in time order.
    positions: Option<Positions>,
}

/// Events per pipeline: small enough that building the next one overlaps Redis working on
/// this one, large enough that a round trip is not paid per few events.
const CHUNK: usize = 1000;

/// How one conversation of a chunk is written.
enum Plan {
    /// Plain `XADD`s (the replies at `at..at + n`), then `PEXPIREAT`.
    Append { at: usize, n: usize },
    /// The script (its reply at `at`).
    Script { at: usize },
}

/// A chunk planned and built, waiting for its replies.
struct Prepared<'a, R> {
    pipe: redis::Pipeline,
    order: Vec<&'a str>,
    groups: HashMap<&'a str, Vec<&'a R>>,
    plans: Vec<Plan>,
    now: i64,
    horizon: i64,
}

type Replies = Vec<redis::RedisResult<redis::Value>>;

fn add(total: &mut Written, w: Written) {
    total.written += w.written;
    total.skipped += w.skipped;
    total.expired += w.expired;
}

/// The script's answer: written, skipped, expired, then the position (after, newest, last, sorted).
type Answer = (u64, u64, u64, String, String, String, String);

impl RedisTarget {
    pub async fn new(mut redis: Redis, contracts: Contracts, dry_run: bool) -> Result<Self, MirrorError> {
        let script = redis::Script::new(SCRIPT);
        script.prepare_invoke().load_async(&mut redis.conn).await.map_err(redis.err("SCRIPT LOAD"))?;
        Ok(RedisTarget { redis, contracts, script, dry_run, positions: None })
    }

    /// Promises that every page comes in time order, after the previous one (no event of a
    /// page older than the newest of the page before): each stream is then read from where
    /// the last call left it, not from its start. Not for writers of events as they arrive
    /// (the sandbox's webhook receiver), which keep reading whole streams.
    pub fn time_ordered(mut self) -> Self {
        self.positions = Some(Positions::default());
        self
    }

    /// Writes a page, in chunks of [`CHUNK`] events: per conversation, plain appends or one
    /// script call, in one pipeline per chunk. Each chunk's pipeline is on its way while the
    /// next one is built, so Redis and this process work at the same time; appends that Redis
    /// refused go through the script when their chunk's replies are read. Returns once every
    /// chunk is acknowledged.
    pub async fn write<R: StreamRow>(&mut self, events: &[R]) -> Result<Written, MirrorError> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut written = Written::default();
        let mut in_flight: Option<Prepared<'_, R>> = None;
        for chunk in events.chunks(CHUNK) {
            let next = match in_flight.take() {
                None => self.prepare(chunk, now),
                Some(mut sent) => {
                    let mut conn = self.redis.conn.clone();
                    let pipe = std::mem::take(&mut sent.pipe);
                    let mut reply = std::pin::pin!(pipe.query_async::<Replies>(&mut conn));
                    // Polled once: the request is queued on the connection before the next
                    // chunk is built, so the chunks reach Redis in order.
                    let early = futures::poll!(reply.as_mut());
                    let next = self.prepare(chunk, now);
                    let replies = match early {
                        std::task::Poll::Ready(r) => r,
                        std::task::Poll::Pending => reply.await,
                    };
                    add(&mut written, self.settle(sent, replies).await?);
                    next
                }
            };
            in_flight = Some(next);
        }
        if let Some(mut sent) = in_flight {
            let pipe = std::mem::take(&mut sent.pipe);
            let replies = pipe.query_async::<Replies>(&mut self.redis.conn).await;
            add(&mut written, self.settle(sent, replies).await?);
        }
        Ok(written)
    }

    /// Plans a chunk and builds its pipeline. The positions of appended streams move at once
    /// (the next chunk builds on them; if Redis refuses these appends it refuses those too).
    fn prepare<'a, R: StreamRow>(&mut self, events: &'a [R], now: i64) -> Prepared<'a, R> {
        // Events of one conversation, in chunk order (a chunk in time order holds many
        // conversations, a few events each).
        let mut order: Vec<&'a str> = Vec::new();
        let mut groups: HashMap<&'a str, Vec<&'a R>> = HashMap::new();
        for e in events {
            groups
                .entry(e.conversation())
                .or_insert_with(|| {
                    order.push(e.conversation());
                    Vec::new()
                })
                .push(e);
        }
        // Without the time-order promise no position is kept: 0 is older than every event.
        let horizon = match self.positions {
            Some(_) => events.iter().map(StreamRow::timestamp_ms).max().unwrap_or(0),
            None => 0,
        };
        let ttl_ms = i64::try_from(self.contracts.stream_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut plans = Vec::with_capacity(order.len());
        let mut scores: Vec<(i64, &str)> = Vec::new();
        let mut stamps = Vec::new();
        for conv in &order {
            let group = groups.get(conv).map(Vec::as_slice).unwrap_or_default();
            let at = self.position(conv);
            stamps.clear();
            stamps.extend(group.iter().map(|e| e.timestamp_ms()));
            match at.append_after(&stamps, now, ttl_ms).filter(|_| !self.dry_run) {
                Some(last) => {
                    let key = self.contracts.stream_key(conv);
                    for (i, e) in group.iter().enumerate() {
                        let (id, name, data, client, ts) = e.entry();
                        let sid = last.plus(i as u64 + 1).map(|s| s.to_string()).unwrap_or_default();
                        pipe.cmd("XADD").arg(&key).arg(sid).arg("id").arg(id).arg("name").arg(name);
                        pipe.arg("data").arg(data.as_ref()).arg("clientId").arg(client).arg("timestamp").arg(ts);
                    }
                    let newest = stamps.last().copied().unwrap_or(0);
                    // The stream already has an expiry (the script set it); GT keeps a later one.
                    pipe.cmd("PEXPIREAT").arg(&key).arg(newest.saturating_add(ttl_ms)).arg("GT");
                    scores.push((newest, conv));
                    plans.push(Plan::Append { at: pipe.len() - group.len() - 1, n: group.len() });
                    if let (Some(p), Some(first)) = (self.positions.as_mut(), last.plus(1)) {
                        let next = p.get(conv).cloned().unwrap_or_default().appended(first, &stamps, horizon);
                        p.set(conv, next);
                    }
                }
                None => {
                    self.script_call(&mut pipe, conv, self.position(conv), group, now, horizon);
                    plans.push(Plan::Script { at: pipe.len() - 1 });
                }
            }
        }
        if !scores.is_empty() {
            let zadd = pipe.cmd("ZADD").arg(self.contracts.active_key()).arg("GT");
            for (score, conv) in &scores {
                zadd.arg(score).arg(*conv);
            }
        }
        Prepared { pipe, order, groups, plans, now, horizon }
    }

    /// Reads a chunk's replies: counts, and a second pipeline of script calls for the
    /// conversations whose appends Redis refused (someone wrote to the stream meanwhile).
    async fn settle<R: StreamRow>(
        &mut self,
        sent: Prepared<'_, R>,
        replies: redis::RedisResult<Vec<redis::RedisResult<redis::Value>>>,
    ) -> Result<Written, MirrorError> {
        let replies = replies.map_err(self.redis.err("backfill pipeline"))?;
        let Prepared { order, groups, plans, now, horizon, .. } = sent;
        let mut written = Written::default();
        let mut retry: Vec<(&str, u64)> = Vec::new();
        for (conv, plan) in order.iter().zip(&plans) {
            match *plan {
                Plan::Script { at } => {
                    let answer = reply::<Answer>(&replies, at).map_err(self.redis.err("EVALSHA backfill"))?;
                    self.count(conv, answer, 0, &mut written);
                }
                Plan::Append { at, n } => {
                    let ok = (at..at + n).take_while(|i| matches!(replies.get(*i), Some(Ok(_)))).count();
                    reply::<redis::Value>(&replies, at + n).map_err(self.redis.err("PEXPIREAT"))?;
                    written.written += ok as u64;
                    if ok < n {
                        retry.push((conv, ok as u64));
                    }
                }
            }
        }
        if let Some(Err(e)) = replies.last().filter(|_| plans.iter().any(|p| matches!(p, Plan::Append { .. }))) {
            return Err(self.redis.err("ZADD")(e.clone()).into());
        }
        if retry.is_empty() {
            return Ok(written);
        }
        let mut pipe = redis::pipe();
        for (conv, _) in &retry {
            self.script_call(&mut pipe, conv, self.position(conv), &groups[conv], now, horizon);
        }
        let answers: Vec<Answer> =
            pipe.query_async(&mut self.redis.conn).await.map_err(self.redis.err("EVALSHA backfill"))?;
        for ((conv, appended), answer) in retry.iter().zip(answers) {
            self.count(conv, answer, *appended, &mut written);
        }
        Ok(written)
    }

    fn position(&self, conversation: &str) -> &Position {
        static NEVER_SEEN: Position =
            Position { after: String::new(), newest: None, last: String::new(), sorted: false };
        self.positions.as_ref().and_then(|p| p.get(conversation)).unwrap_or(&NEVER_SEEN)
    }

    /// Adds a script answer to the counts (less `appended`: events this page already wrote with
    /// plain appends, which the script then found in the stream) and keeps its position.
    fn count(&mut self, conv: &str, answer: Answer, appended: u64, written: &mut Written) {
        let (w, s, x, after, newest, last, sorted) = answer;
        written.written += w;
        written.skipped += s.saturating_sub(appended);
        written.expired += x;
        if let Some(p) = self.positions.as_mut() {
            p.set(conv, Position::from_answer(after, &newest, last, &sorted));
        }
    }

    fn script_call<R: StreamRow>(
        &self,
        pipe: &mut redis::Pipeline,
        conv: &str,
        at: &Position,
        group: &[&R],
        now: i64,
        horizon: i64,
    ) {
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(self.script.get_hash())
            .arg(2)
            .arg(self.contracts.stream_key(conv))
            .arg(self.contracts.active_key())
            .arg(self.contracts.stream_ttl_secs * 1000)
            .arg(now)
            .arg(conv)
            .arg(if self.dry_run { "1" } else { "0" })
            .arg(&at.args()[..])
            .arg(horizon);
        for e in group {
            let (id, name, data, client, ts) = e.entry();
            cmd.arg(id).arg(name).arg(data.as_ref()).arg(client).arg(ts);
        }
    }
}

/// Reply `i` of a pipeline run with `ignore_errors`, as `T`.
fn reply<T: redis::FromRedisValue>(replies: &[redis::RedisResult<redis::Value>], i: usize) -> redis::RedisResult<T> {
    match replies.get(i) {
        Some(Ok(v)) => redis::from_redis_value(v.clone()).map_err(redis::RedisError::from),
        Some(Err(e)) => Err(e.clone()),
        None => Err(redis::RedisError::from((redis::ErrorKind::Client, "missing reply"))),
    }
}
