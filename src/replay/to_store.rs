//! Backfilling one mirror from the other, idempotent on the Ably message id.
//!
//! Postgres: `INSERT … ON CONFLICT (id) DO NOTHING`. Redis: one Lua script per conversation
//! and page, atomic, which skips ids already in the stream, appends when the new events come
//! after the stream's last one and otherwise rebuilds the stream in timestamp order; the stream
//! expires 24 h after its newest event (never earlier than it already would) and the
//! conversation's score in the active set is its newest event. Events older than the stream
//! lifetime are not written (Redis would already have dropped them) and are counted as expired.

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::contracts::Names;
use crate::mirror::{MirrorError, MirroredEvent};

/// What one write did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub written: u64,
    pub skipped: u64,
    pub expired: u64,
}

const BACKFILL_LUA: &str = r#"
-- KEYS: stream, active set. ARGV: lifetime ms, now ms, conversation, dry ('1'), events as JSON
-- [[id, name, data, clientId, timestamp], ...] (timestamp a decimal string).
local ttl, now, dry = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4] == '1'
local incoming = cjson.decode(ARGV[5])
local old_pttl = redis.call('PTTL', KEYS[1])
local existing = redis.call('XRANGE', KEYS[1], '-', '+')
local seen, rows, last_ts = {}, {}, nil
for i, e in ipairs(existing) do
  local f, m = e[2], {}
  for j = 1, #f, 2 do m[f[j]] = f[j + 1] end
  if m['id'] then seen[m['id']] = true end
  local ts = tonumber(m['timestamp']) or 0
  rows[#rows + 1] = {f, ts, i}
  last_ts = ts
end
local fresh, skipped, expired = {}, 0, 0
for _, ev in ipairs(incoming) do
  local ts = tonumber(ev[5])
  if seen[ev[1]] then
    skipped = skipped + 1
  elseif ts + ttl <= now then
    expired = expired + 1
  else
    seen[ev[1]] = true
    local f = {'id', ev[1], 'name', ev[2], 'data', ev[3], 'clientId', ev[4], 'timestamp', ev[5]}
    fresh[#fresh + 1] = {f, ts, #existing + #fresh + 1}
  end
end
if #fresh == 0 or dry then return {#fresh, skipped, expired} end
local function before(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[3] < b[3] end
table.sort(fresh, before)
local function add(r, ms)
  local args = {'XADD', KEYS[1], string.format('%.0f-*', ms)}
  for _, v in ipairs(r[1]) do args[#args + 1] = v end
  redis.call(unpack(args))
end
local ms = 0
if last_ts == nil or fresh[1][2] >= last_ts then
  if #existing > 0 then ms = tonumber(string.match(existing[#existing][1], '^(%d+)')) end
  for _, r in ipairs(fresh) do ms = math.max(ms, r[2]); add(r, ms) end
else
  for _, r in ipairs(fresh) do rows[#rows + 1] = r end
  table.sort(rows, before)
  redis.call('DEL', KEYS[1])
  for _, r in ipairs(rows) do ms = math.max(ms, r[2]); add(r, ms) end
end
local newest = fresh[#fresh][2]
if last_ts ~= nil and last_ts > newest then newest = last_ts end
local expire_at = newest + ttl
if old_pttl > 0 and now + old_pttl > expire_at then expire_at = now + old_pttl end
redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', expire_at))
redis.call('ZADD', KEYS[2], 'GT', string.format('%.0f', newest), ARGV[3])
return {#fresh, skipped, expired}
"#;

pub struct RedisTarget {
    conn: ConnectionManager,
    addr: String,
    names: Names,
    script: redis::Script,
    dry_run: bool,
}

impl RedisTarget {
    pub async fn new(
        mut conn: ConnectionManager,
        addr: String,
        names: Names,
        dry_run: bool,
    ) -> Result<Self, MirrorError> {
        let script = redis::Script::new(BACKFILL_LUA);
        script.prepare_invoke().load_async(&mut conn).await.map_err(|source| MirrorError::Redis {
            op: "SCRIPT LOAD",
            addr: addr.clone(),
            source,
        })?;
        Ok(RedisTarget { conn, addr, names, script, dry_run })
    }

    /// Writes a page: one script call per conversation, all in one pipeline.
    pub async fn write(&mut self, events: &[MirroredEvent]) -> Result<Written, MirrorError> {
        if events.is_empty() {
            return Ok(Written::default());
        }
        let mut order: Vec<&str> = Vec::new();
        let mut groups: HashMap<&str, Vec<Value>> = HashMap::new();
        for e in events {
            let row = json!([
                e.id,
                e.name,
                e.data.to_string(),
                e.client_id.as_deref().unwrap_or(""),
                e.timestamp_ms.to_string()
            ]);
            groups
                .entry(e.conversation_id.as_str())
                .or_insert_with(|| {
                    order.push(&e.conversation_id);
                    Vec::new()
                })
                .push(row);
        }
        let now = chrono::Utc::now().timestamp_millis();
        let ttl_ms = self.names.stream_ttl_secs * 1000;
        let mut pipe = redis::pipe();
        for conv in &order {
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(2)
                .arg(self.names.stream_key(conv))
                .arg(self.names.active_key())
                .arg(ttl_ms)
                .arg(now)
                .arg(*conv)
                .arg(if self.dry_run { "1" } else { "0" })
                .arg(Value::Array(groups.remove(conv).unwrap_or_default()).to_string());
        }
        let results: Vec<(u64, u64, u64)> = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|source| MirrorError::Redis { op: "EVALSHA backfill", addr: self.addr.clone(), source })?;
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
    dry_run: bool,
}

impl PostgresTarget {
    /// Creates the mirror table (the project's migration) unless this is a dry run.
    pub async fn new(pool: PgPool, addr: String, dry_run: bool) -> Result<Self, MirrorError> {
        if !dry_run {
            crate::mirror::postgres::migrate(&pool, &addr).await?;
        }
        Ok(PostgresTarget { pool, addr, dry_run })
    }

    pub async fn write(&mut self, events: &[MirroredEvent]) -> Result<Written, MirrorError> {
        let n = events.len() as u64;
        let written = if self.dry_run {
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            let present: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_events WHERE id = ANY($1)")
                .persistent(false)
                .bind(&ids)
                .fetch_one(&self.pool)
                .await
                .map_err(|source| MirrorError::Postgres {
                    op: "SELECT chat_events",
                    addr: self.addr.clone(),
                    source,
                })?;
            n - present.max(0) as u64
        } else {
            crate::mirror::postgres::insert(&self.pool, &self.addr, events).await?
        };
        Ok(Written { written, skipped: n - written, expired: 0 })
    }
}
