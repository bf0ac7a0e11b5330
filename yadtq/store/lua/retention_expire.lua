-- Deletes finished records whose time is up, with every index entry of theirs, in one step: the
-- record, its events list, its status index entry, its queue index entry and its expiry entry go
-- together, so no listing, count or search ever shows an id whose record is gone.
-- KEYS[1] retention:expiry, KEYS[2 .. 1+n] status:<s> of each final status, then per candidate:
-- task:<id>, events:<id>, queue:<name> (the index of the queue its record names, as the caller read it)
-- ARGV[1] n, ARGV[2 .. 1+n] the final status names (same order as their KEYS), then one id per candidate
-- Returns the ids deleted. A candidate not due is left: one requeued since (not finished, or finished
-- again and not given its new expiry yet) leaves the expiry set; one due later is moved to its time.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local idx = {}
for i = 1, n do idx[ARGV[1 + i]] = KEYS[1 + i] end
local out = {}
local k = 2 + n
for a = 2 + n, #ARGV do
  local id = ARGV[a]
  local tk, ek, qk = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  k = k + 3
  local rec = redis.call('HMGET', tk, 'status', 'expires_at')
  local st, at = rec[1], tonumber(rec[2] or '')
  if not st then
    -- the record went already (purged, or expired by an older version): only index entries are left
    for _, key in pairs(idx) do redis.call('ZREM', key, id) end
    redis.call('ZREM', qk, id)
    redis.call('DEL', ek)
    redis.call('ZREM', KEYS[1], id)
    table.insert(out, id)
  elseif idx[st] and at and at <= now then
    redis.call('DEL', tk, ek)
    redis.call('ZREM', idx[st], id)
    redis.call('ZREM', qk, id)
    redis.call('ZREM', KEYS[1], id)
    table.insert(out, id)
  elseif idx[st] and at then
    redis.call('ZADD', KEYS[1], at, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
