-- Takes delayed tasks that are due within `lead` seconds, so the caller publishes them (a worker
-- that claims one before its eta holds it until then: step.lua answers 'early'). Atomic: of several schedulers
-- at once, each due task is taken by one. A taken task turns `queued` (noting `released`, the
-- Redis time it was let go) and is re-armed `hold` seconds ahead, so a caller that dies before
-- publishing loses nothing: it comes due again and another scheduler takes it. The caller confirms
-- with untake.lua once the broker has it; the claim (step.lua) also drops it from the set.
-- A task past its `expires` time ends `expired` here instead of being published.
-- KEYS[1] scheduled (sorted set)  KEYS[2] broker:epoch  KEYS[3] status:scheduled  KEYS[4] status:queued
-- KEYS[5] status:expired, then task:<id> per candidate.
-- ARGV[1] hold seconds, ARGV[2] unused (the retention sweep removes finished records), ARGV[3] lead seconds, then one task id per candidate
-- (same order as KEYS[6..]).
-- Returns per taken task: {id, armed_score, task, args, kwargs, tries, time_limit, submitted, key, eta, expires,
--   queue}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local hold = tonumber(ARGV[1])
local lead = tonumber(ARGV[3])
local out = {}
local epoch = redis.call('GET', KEYS[2]) or ''
for i = 6, #KEYS do
  local id = ARGV[i - 2]
  local tk = KEYS[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now + lead then
    local r = redis.call('HMGET', tk, 'status', 'expires')
    local st = r[1]
    if st == 'scheduled' and tonumber(r[2] or '') and now >= tonumber(r[2]) then
      redis.call('HSET', tk, 'status', 'expired', 'result', 'null', 'finished', now,
        'error', 'expired: not started before ' .. r[2])
      redis.call('ZREM', KEYS[3], id)
      redis.call('ZADD', KEYS[5], now, id)
      redis.call('ZREM', KEYS[1], id)
      redis.call('PUBLISH', tk .. ':changes', 'expired')  -- wakes a waiter (see step.lua's announce)
    elseif st == 'scheduled' or st == 'queued' then
      -- queued: taken before by a scheduler that did not confirm (it died, or the broker was away)
      if st == 'scheduled' then
        redis.call('ZREM', KEYS[3], id)
        redis.call('ZADD', KEYS[4], now, id)
        redis.call('HSET', tk, 'status', 'queued', 'released', now)
        redis.call('PUBLISH', tk .. ':changes', 'queued')
      end
      local armed = now + lead + hold
      redis.call('ZADD', KEYS[1], armed, id)
      redis.call('HSET', tk, 'epoch', epoch)
      local m = redis.call('HMGET', tk, 'task', 'args', 'kwargs', 'tries', 'time_limit', 'submitted', 'key',
        'eta', 'expires', 'queue')
      table.insert(out, {id, tostring(armed), m[1] or '', m[2] or '[]', m[3] or '{}', m[4] or '', m[5] or '',
        m[6] or '', m[7] or '', m[8] or '', m[9] or '', m[10] or ''})
    else
      redis.call('ZREM', KEYS[1], id)  -- claimed, finished, cancelled or gone: nothing to publish
    end
  end
end
return out
