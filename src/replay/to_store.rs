//! Backfilling one mirror from the other, idempotent on the Ably message id.
//!
//! Postgres: `INSERT … ON CONFLICT (id) DO NOTHING`. Redis: one Lua script per conversation
//! and page, atomic, which skips ids already in the stream, appends when the new events come
//! after the stream's last one and otherwise rebuilds the stream in timestamp order; the stream
//! expires 24 h after its newest event (never earlier than it already would) and the
//! conversation's score in the active set is its newest event. Events older than the stream
//! lifetime are not written (Redis would already have dropped them) and are counted as expired.

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

const BACKFILL_LUA: &str = r#"
-- KEYS: stream, active set. ARGV: lifetime ms, now ms, conversation, dry ('1'), then five per
-- event: id, name, data, clientId, timestamp (ms, decimal). Flat arguments: no decoding here.
local ttl, now, dry = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4] == '1'
local n = (#ARGV - 4) / 5
local old_pttl = redis.call('PTTL', KEYS[1])
local existing = redis.call('XRANGE', KEYS[1], '-', '+')
local seen, newest_old = {}, nil
for _, e in ipairs(existing) do
  local f = e[2]
  for j = 1, #f, 2 do
    if f[j] == 'id' then
      seen[f[j + 1]] = true
    elseif f[j] == 'timestamp' then
      local ts = tonumber(f[j + 1]) or 0
      if newest_old == nil or ts > newest_old then newest_old = ts end
    end
  end
end
local fresh, skipped, expired, sorted, prev = {}, 0, 0, true, nil
for k = 0, n - 1 do
  local b = 5 + k * 5
  local ts = tonumber(ARGV[b + 4])
  if seen[ARGV[b]] then
    skipped = skipped + 1
  elseif ts + ttl <= now then
    expired = expired + 1
  else
    seen[ARGV[b]] = true
    fresh[#fresh + 1] = b
    if prev ~= nil and ts < prev then sorted = false end
    prev = ts
  end
end
if #fresh == 0 or dry then return {#fresh, skipped, expired} end
if not sorted then
  table.sort(fresh, function(a, b)
    local ta, tb = tonumber(ARGV[a + 4]), tonumber(ARGV[b + 4])
    if ta ~= tb then return ta < tb end
    return a < b
  end)
end
local first, newest = tonumber(ARGV[fresh[1] + 4]), tonumber(ARGV[fresh[#fresh] + 4])
if newest_old == nil or first >= newest_old then
  -- The usual case: append after what the stream holds. Stream ids are write times, as the
  -- live mirror's are; the order is the events' time order.
  for _, b in ipairs(fresh) do
    redis.call('XADD', KEYS[1], '*', 'id', ARGV[b], 'name', ARGV[b + 1], 'data', ARGV[b + 2],
      'clientId', ARGV[b + 3], 'timestamp', ARGV[b + 4])
  end
else
  -- Older events than the stream holds: rebuild the stream in timestamp order.
  local rows = {}
  for i, e in ipairs(existing) do
    local ts = 0
    for j = 1, #e[2], 2 do if e[2][j] == 'timestamp' then ts = tonumber(e[2][j + 1]) or 0 end end
    rows[#rows + 1] = {e[2], ts, i}
  end
  for i, b in ipairs(fresh) do
    local f = {'id', ARGV[b], 'name', ARGV[b + 1], 'data', ARGV[b + 2], 'clientId', ARGV[b + 3], 'timestamp', ARGV[b + 4]}
    rows[#rows + 1] = {f, tonumber(ARGV[b + 4]), #existing + i}
  end
  table.sort(rows, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[3] < b[3] end)
  redis.call('DEL', KEYS[1])
  for _, r in ipairs(rows) do redis.call('XADD', KEYS[1], '*', unpack(r[1])) end
end
if newest_old ~= nil and newest_old > newest then newest = newest_old end
local expire_at = newest + ttl
if old_pttl > 0 and now + old_pttl > expire_at then expire_at = now + old_pttl end
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', expire_at))
redis.call('ZADD', KEYS[2], 'GT', string.format('%.0f', newest), ARGV[3])
return {#fresh, skipped, expired}
"#;

/// What a stream entry is made of: a parsed event, or one whose `data` is still JSON text.
pub trait StreamRow {
    fn conversation(&self) -> &str;
    fn entry(&self) -> (&str, &str, std::borrow::Cow<'_, str>, &str, i64);
}

impl StreamRow for MirroredEvent {
    fn conversation(&self) -> &str {
        &self.conversation_id
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
}

impl RedisTarget {
    pub async fn new(mut redis: Redis, contracts: Contracts, dry_run: bool) -> Result<Self, MirrorError> {
        let script = redis::Script::new(BACKFILL_LUA);
        script.prepare_invoke().load_async(&mut redis.conn).await.map_err(redis.err("SCRIPT LOAD"))?;
        Ok(RedisTarget { redis, contracts, script, dry_run })
    }

    /// Writes a page: one script call per conversation, all in one pipeline.
    pub async fn write<R: StreamRow>(&mut self, events: &[R]) -> Result<Written, MirrorError> {
        if events.is_empty() {
            return Ok(Written::default());
        }
        // Events of one conversation, in page order (a page holds few conversations when it comes
        // from Postgres in conversation order, many when it comes from a time-ordered read).
        let mut order: Vec<&str> = Vec::new();
        let mut groups: HashMap<&str, Vec<&R>> = HashMap::new();
        for e in events {
            groups
                .entry(e.conversation())
                .or_insert_with(|| {
                    order.push(e.conversation());
                    Vec::new()
                })
                .push(e);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let ttl_ms = self.contracts.stream_ttl_secs * 1000;
        let mut pipe = redis::pipe();
        for conv in &order {
            let cmd = pipe
                .cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(2)
                .arg(self.contracts.stream_key(conv))
                .arg(self.contracts.active_key())
                .arg(ttl_ms)
                .arg(now)
                .arg(*conv)
                .arg(if self.dry_run { "1" } else { "0" });
            for e in groups.get(conv).map(Vec::as_slice).unwrap_or_default() {
                let (id, name, data, client, ts) = e.entry();
                cmd.arg(id).arg(name).arg(data.as_ref()).arg(client).arg(ts);
            }
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
