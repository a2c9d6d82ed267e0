//! Backfilling one mirror from the other, idempotent on the Ably message id.
//!
//! Postgres: `INSERT … ON CONFLICT (id) DO NOTHING`. Redis: streams that exist go through one
//! Lua script per conversation and page ([`script`]); streams that do not, through plain
//! `XADD`s on a bulk connection ([`plain`]), each way exactly once. Events older than the stream
//! lifetime are not written (Redis would already have dropped them) and are counted as expired.

mod plain;
mod script;

use std::collections::HashMap;

use sqlx::PgPool;

use crate::contracts::{Contracts, Table};
use crate::event::MirroredEvent;
use crate::redis_handle::Redis;
use crate::store::MirrorError;
use crate::store::postgres::{Deadline, limit_of, stalled_after};

/// What one write did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub written: u64,
    pub skipped: u64,
    pub expired: u64,
}

/// What a stream entry is made of: a parsed event, or one whose `data` is still JSON text.
pub trait StreamRow {
    fn conversation(&self) -> &str;
    fn id(&self) -> &str;
    fn timestamp_ms(&self) -> i64;
    /// The entry's fields: id, name, data (JSON text), clientId (empty when none), timestamp.
    fn entry(&self) -> (&str, &str, std::borrow::Cow<'_, str>, &str, i64);
}

impl StreamRow for MirroredEvent {
    fn conversation(&self) -> &str {
        &self.conversation_id
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    fn entry(&self) -> (&str, &str, std::borrow::Cow<'_, str>, &str, i64) {
        let client = self.client_id.as_deref().unwrap_or("");
        (&self.id, &self.name, self.data.to_string().into(), client, self.timestamp_ms)
    }
}

impl StreamRow for super::RawEvent {
    fn conversation(&self) -> &str {
        &self.conversation_id
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }
    fn entry(&self) -> (&str, &str, std::borrow::Cow<'_, str>, &str, i64) {
        let client = self.client_id.as_deref().unwrap_or("");
        (&self.id, &self.name, self.data.get().into(), client, self.timestamp_ms)
    }
}

pub struct RedisTarget {
    redis: Redis,
    contracts: Contracts,
    script: redis::Script,
    dry_run: bool,
    /// The bulk connection's writer, when the target was opened for bulk ([`Self::bulk`]).
    plain: Option<plain::Plain>,
}

impl RedisTarget {
    /// A target that writes every page through the script, on the shared connection: for
    /// writers of a few events at a time (the sandbox's mirror), where one round trip per page
    /// is what counts.
    pub async fn new(mut redis: Redis, contracts: Contracts, dry_run: bool) -> Result<Self, MirrorError> {
        let script = redis::Script::new(script::BACKFILL_LUA);
        script.prepare_invoke().load_async(&mut redis.conn).await.map_err(redis.err("SCRIPT LOAD"))?;
        Ok(RedisTarget { redis, contracts, script, dry_run, plain: None })
    }

    /// A target for a backfill: streams that do not exist yet take plain writes on a second,
    /// bulk connection ([`plain`]). A dry run writes nothing, so it stays on the script.
    pub async fn bulk(redis: Redis, contracts: Contracts, dry_run: bool) -> Result<Self, MirrorError> {
        let mut target = RedisTarget::new(redis, contracts, dry_run).await?;
        if !dry_run {
            target.plain = target.redis.bulk().await?.map(plain::Plain::new);
        }
        Ok(target)
    }

    /// Writes a page: one script call or one run of plain writes per conversation, pipelined.
    pub async fn write<R: StreamRow>(&mut self, events: &[R]) -> Result<Written, MirrorError> {
        if events.is_empty() {
            return Ok(Written::default());
        }
        let groups = by_conversation(events);
        let active = self.contracts.active_key();
        let page = script::Page {
            contracts: &self.contracts,
            sha: self.script.get_hash(),
            active: &active,
            ttl_ms: i64::try_from(self.contracts.stream_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            now: chrono::Utc::now().timestamp_millis(),
            dry: self.dry_run,
            addr: &self.redis.addr,
        };
        if let Some(plain) = &mut self.plain {
            return Ok(plain.write(&page, &groups).await?);
        }
        let mut pipe = redis::pipe();
        for (conv, group) in &groups {
            script::pipe_call(&mut pipe, &page, conv, group);
        }
        let results: Vec<(u64, u64, u64)> =
            pipe.query_async(&mut self.redis.conn).await.map_err(self.redis.err("EVALSHA backfill"))?;
        Ok(results.iter().fold(Written::default(), |acc, (w, s, x)| Written {
            written: acc.written + w,
            skipped: acc.skipped + s,
            expired: acc.expired + x,
        }))
    }
}

/// A page's events by conversation, conversations in the order the page meets them (a page
/// holds few conversations when it comes from Postgres in conversation order, many when it
/// comes from a time-ordered read).
fn by_conversation<R: StreamRow>(events: &[R]) -> Vec<(&str, Vec<&R>)> {
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(&str, Vec<&R>)> = Vec::new();
    for e in events {
        let i = *at.entry(e.conversation()).or_insert_with(|| {
            groups.push((e.conversation(), Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(e);
    }
    groups
}

pub struct PostgresTarget {
    pool: PgPool,
    addr: String,
    table: Table,
    dry_run: bool,
}

impl PostgresTarget {
    /// The table must exist, dry run or not: a replay never creates tables in someone's
    /// database (`broker-ops db migrate` does, when asked).
    pub async fn new(pool: PgPool, addr: String, table: Table, dry_run: bool) -> Result<Self, MirrorError> {
        crate::store::postgres::require_table(&pool, &addr, &table).await?;
        Ok(PostgresTarget { pool, addr, table, dry_run })
    }

    pub async fn write(&mut self, events: &[MirroredEvent]) -> Result<Written, MirrorError> {
        let n = events.len() as u64;
        let written = if self.dry_run {
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            let present: i64 = crate::store::postgres::scalar(&self.table.count_ids_sql())
                .bind(&ids)
                .fetch_one(&self.pool)
                .within(limit_of(&self.pool))
                .await
                .map_err(MirrorError::pg(format!("SELECT count(*) FROM {}", self.table), &self.addr))?;
            n - present.max(0) as u64
        } else {
            let insert = crate::store::postgres::insert(&self.pool, &self.addr, &self.table, events);
            stalled_after(limit_of(&self.pool), &format!("INSERT INTO {}", self.table), &self.addr, insert).await?
        };
        Ok(Written { written, skipped: n - written, expired: 0 })
    }
}
