-- Takes parked retries that are due, so the caller publishes them again. Each taken task is
-- re-armed `hold` seconds ahead first, so a caller that dies before publishing loses nothing:
-- the task comes due again. The caller confirms with untake.lua once published.
-- KEYS[1] retries (sorted set), KEYS[2] broker:epoch, then task:<id> per candidate.
-- Each taken task's record notes the broker epoch its new message goes to.
-- ARGV[1] hold seconds, then one task id per candidate (same order as KEYS[3..]).
-- Returns per taken task: {id, armed_score, task, args, kwargs, tries, time_limit, submitted, key, queue}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local hold = tonumber(ARGV[1])
local out = {}
local epoch = redis.call('GET', KEYS[2]) or ''
for i = 3, #KEYS do
  local id = ARGV[i - 1]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now then
    local st = redis.call('HGET', KEYS[i], 'status')
    if st == 'queued' then
      local armed = now + hold
      redis.call('ZADD', KEYS[1], armed, id)
      redis.call('HSET', KEYS[i], 'epoch', epoch)
      local r = redis.call('HMGET', KEYS[i], 'task', 'args', 'kwargs', 'tries', 'time_limit', 'submitted', 'key', 'queue')
      table.insert(out, {id, tostring(armed), r[1] or '', r[2] or '[]', r[3] or '{}', r[4] or '', r[5] or '',
        r[6] or '', r[7] or '', r[8] or ''})
    else
      redis.call('ZREM', KEYS[1], id)  -- finished or running meanwhile: nothing to publish
    end
  end
end
return out
