-- KEYS: stream, active set. ARGV: lifetime ms, now ms, conversation, dry ('1'), then the
-- caller's position in this stream ('' = none: read it all): the entry id after which an entry
-- may still repeat an event, the newest timestamp up to it, the stream's last entry id when the
-- caller left it and '1' when everything after the position was then in time order; then the
-- horizon (no later call brings an event older than this; 0 = no such promise), then five per
-- event: id, name, data, clientId, timestamp (ms, decimal). Flat arguments: no decoding here.
-- Written for a call per conversation and page, hundreds of thousands a run: no closures, no
-- tables beyond what is kept.
local ttl, now, dry = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4] == '1'
local after, newest, left_last, left_sorted = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8] == '1'
local horizon, H = tonumber(ARGV[9]), 9
local n = (#ARGV - H) / 5
local max_new = -math.huge
for b = H + 5, #ARGV, 5 do
  local ts = tonumber(ARGV[b])
  if ts > max_new then max_new = ts end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local last_id = last and last[1] or ''
-- Only what lies after the position can repeat one of these events: everything before it is
-- older than an earlier call's horizon, and these events are not. When nobody wrote to the
-- stream since the caller left it in time order, reading stops at the first entry newer than
-- every event here (an event and its copy share their timestamp); else it reads to the end.
-- Entries are read in stream order; the position moves past those older than the horizon.
local quick = left_sorted and last_id ~= '' and last_id == left_last
local cursor, cursor_max, advancing = after, tonumber(ARGV[6]), true
local seen, sorted, prev = {}, true, nil
local from = after == '' and '-' or '(' .. after
-- A quick read expects about as many entries as events here (a rerun finds each one), so it
-- asks for that many first and doubles from there.
local count = quick and n + 2 or 256
while not (quick and after == last_id) do
  local batch = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', count)
  local stop = #batch < count
  count = math.min(count * 2, 256)
  for _, e in ipairs(batch) do
    local f, id, ts = e[2], nil, 0
    if f[1] == 'id' and f[9] == 'timestamp' then
      id, ts = f[2], tonumber(f[10]) or 0
    else
      for j = 1, #f, 2 do
        if f[j] == 'id' then id = f[j + 1] elseif f[j] == 'timestamp' then ts = tonumber(f[j + 1]) or 0 end
      end
    end
    if quick and ts > max_new then stop = true break end
    if id then seen[id] = true end
    if newest == nil or ts > newest then newest = ts end
    if prev ~= nil and ts < prev then sorted = false end
    prev = ts
    if advancing and ts < horizon then
      cursor = e[1]
      if cursor_max == nil or ts > cursor_max then cursor_max = ts end
    else
      advancing = false
    end
    from = '(' .. e[1]
  end
  if stop then break end
end
if quick then
  -- In time order, the last entry is the newest; `sorted` still describes the whole stream.
  local f, ts = last[2], 0
  for j = 1, #f, 2 do if f[j] == 'timestamp' then ts = tonumber(f[j + 1]) or 0 end end
  if newest == nil or ts > newest then newest = ts end
  -- Entries left unread (newer than these events) end the advance.
  if last_id ~= cursor and from ~= '(' .. last_id then advancing = false end
end
local fresh, skipped, expired, in_order, prevn = {}, 0, 0, true, nil
for b = H + 1, #ARGV, 5 do
  local ts = tonumber(ARGV[b + 4])
  if seen[ARGV[b]] then
    skipped = skipped + 1
  elseif ts + ttl <= now then
    expired = expired + 1
  else
    seen[ARGV[b]] = true
    fresh[#fresh + 1] = b
    if prevn ~= nil and ts < prevn then in_order = false end
    prevn = ts
  end
end
if #fresh > 0 and not dry then
  if not in_order then
    table.sort(fresh, function(a, b)
      local ta, tb = tonumber(ARGV[a + 4]), tonumber(ARGV[b + 4])
      if ta ~= tb then return ta < tb end
      return a < b
    end)
  end
  local first, latest = tonumber(ARGV[fresh[1] + 4]), tonumber(ARGV[fresh[#fresh] + 4])
  local old_pttl = redis.call('PTTL', KEYS[1])
  if newest == nil or first >= newest then
    -- The usual case: append after what the stream holds. Stream ids are write times, as the
    -- live mirror's are; the order is the events' time order. (Quick reads end before the
    -- stream's end only when something newer is there, which rules this branch out.)
    for _, b in ipairs(fresh) do
      local ts = tonumber(ARGV[b + 4])
      last_id = redis.call('XADD', KEYS[1], '*', 'id', ARGV[b], 'name', ARGV[b + 1], 'data', ARGV[b + 2],
        'clientId', ARGV[b + 3], 'timestamp', ARGV[b + 4])
      if advancing and ts < horizon then
        cursor = last_id
        if cursor_max == nil or ts > cursor_max then cursor_max = ts end
      else
        advancing = false
      end
    end
  else
    -- Older events than the stream holds: rebuild the whole stream in timestamp order.
    local rows = {}
    for i, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
      local ts = 0
      for j = 1, #e[2], 2 do if e[2][j] == 'timestamp' then ts = tonumber(e[2][j + 1]) or 0 end end
      rows[#rows + 1] = {e[2], ts, i}
    end
    local base = #rows
    for i, b in ipairs(fresh) do
      local f = {'id', ARGV[b], 'name', ARGV[b + 1], 'data', ARGV[b + 2], 'clientId', ARGV[b + 3], 'timestamp', ARGV[b + 4]}
      rows[#rows + 1] = {f, tonumber(ARGV[b + 4]), base + i}
    end
    table.sort(rows, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[3] < b[3] end)
    redis.call('DEL', KEYS[1])
    cursor, cursor_max, sorted, advancing = '', nil, true, true
    for _, r in ipairs(rows) do
      last_id = redis.call('XADD', KEYS[1], '*', unpack(r[1]))
      if advancing and r[2] < horizon then
        cursor = last_id
        if cursor_max == nil or r[2] > cursor_max then cursor_max = r[2] end
      else
        advancing = false
      end
    end
  end
  if newest == nil or latest > newest then newest = latest end
  local expire_at = newest + ttl
  if old_pttl > 0 and now + old_pttl > expire_at then expire_at = now + old_pttl end
  redis.call('PEXPIREAT', KEYS[1], string.format('%.0f', expire_at))
  redis.call('ZADD', KEYS[2], 'GT', string.format('%.0f', newest), ARGV[3])
end
return {#fresh, skipped, expired, cursor, cursor_max and string.format('%.0f', cursor_max) or '', last_id,
  sorted and '1' or '0'}
