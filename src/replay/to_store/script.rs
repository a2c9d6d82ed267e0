//! The backfill script: one atomic call per conversation and page, which skips ids already in
//! the stream, appends when the new events come after the stream's last one and otherwise
//! rebuilds the stream in timestamp order; the stream expires 24 h after its newest event (never
//! earlier than it already would) and the conversation's score in the active set is its newest
//! event. The call is encoded here for either connection: the shared one (a pipeline) and the
//! bulk one (raw protocol).

use super::StreamRow;
use crate::contracts::Contracts;
use crate::redis_handle::RedisError;
use crate::redis_handle::bulk::{self, Reply};

pub(super) const BACKFILL_LUA: &str = r#"
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

/// What every call of a page shares.
pub(super) struct Page<'a> {
    pub contracts: &'a Contracts,
    pub sha: &'a str,
    pub active: &'a str,
    pub ttl_ms: i64,
    pub now: i64,
    pub dry: bool,
    pub addr: &'a str,
}

/// The call for one conversation, on a pipeline of the shared connection.
pub(super) fn pipe_call<R: StreamRow>(pipe: &mut redis::Pipeline, page: &Page<'_>, conv: &str, events: &[&R]) {
    let cmd = pipe
        .cmd("EVALSHA")
        .arg(page.sha)
        .arg(2)
        .arg(page.contracts.stream_key(conv))
        .arg(page.active)
        .arg(page.ttl_ms)
        .arg(page.now)
        .arg(conv)
        .arg(if page.dry { "1" } else { "0" });
    for e in events {
        let (id, name, data, client, ts) = e.entry();
        cmd.arg(id).arg(name).arg(data.as_ref()).arg(client).arg(ts);
    }
}

/// The same call, encoded for the bulk connection.
pub(super) fn encode_call<R: StreamRow>(out: &mut Vec<u8>, page: &Page<'_>, conv: &str, events: &[&R]) {
    bulk::command(out, 9 + 5 * events.len());
    bulk::arg(out, b"EVALSHA");
    bulk::arg(out, page.sha.as_bytes());
    bulk::arg(out, b"2");
    bulk::arg(out, page.contracts.stream_key(conv).as_bytes());
    bulk::arg(out, page.active.as_bytes());
    bulk::int_arg(out, page.ttl_ms);
    bulk::int_arg(out, page.now);
    bulk::arg(out, conv.as_bytes());
    bulk::arg(out, if page.dry { b"1" } else { b"0" });
    for e in events {
        let (id, name, data, client, ts) = e.entry();
        bulk::arg(out, id.as_bytes());
        bulk::arg(out, name.as_bytes());
        bulk::arg(out, data.as_bytes());
        bulk::arg(out, client.as_bytes());
        bulk::int_arg(out, ts);
    }
}

/// The call's answer read from the bulk connection: written, skipped, expired.
pub(super) fn counts(op: &str, addr: &str, reply: &Reply) -> Result<(u64, u64, u64), RedisError> {
    match reply {
        Reply::Array(v) => match v.as_slice() {
            [Reply::Int(w), Reply::Int(s), Reply::Int(x)] => {
                Ok((w.max(&0).unsigned_abs(), s.max(&0).unsigned_abs(), x.max(&0).unsigned_abs()))
            }
            _ => Err(bulk::unexpected(op, addr, reply)),
        },
        _ => Err(bulk::unexpected(op, addr, reply)),
    }
}
