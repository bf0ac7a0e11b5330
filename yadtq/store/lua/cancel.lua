-- Cancels a task that is still queued or scheduled: it ends `cancelled` and the claim never runs it.
-- A task that is running or finished is left alone (a running task is not interrupted).
-- KEYS[1] task hash, KEYS[2] status:queued index, KEYS[3] status:cancelled index, KEYS[4] the task's events list
-- KEYS[5] status:scheduled index, KEYS[6] scheduled (due set): a delayed task is cancelled before it is published
-- ARGV[1] result TTL in seconds (0: keep), ARGV[2] who cancelled (for the history), ARGV[3] the task id
-- Returns {'ok', time} | {'missing'} | {status}
--! include workflow
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {'missing'}
end
if status ~= 'queued' and status ~= 'scheduled' then
  return {status}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished', tostring(now), 'result', 'null',
  'error', 'cancelled by ' .. ARGV[2])
redis.call('HDEL', KEYS[1], 'lease')
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
redis.call('ZREM', KEYS[6], ARGV[3])
redis.call('ZADD', KEYS[3], now, ARGV[3])
redis.call('RPUSH', KEYS[4], tostring(now) .. ' cancelled by ' .. ARGV[2])
redis.call('LTRIM', KEYS[4], -50, -1)
local ttl = tonumber(ARGV[1])
wf_task_ended(wf_prefix(KEYS[2]), now, ttl, KEYS[1], 'failed', 'null', 'cancelled by ' .. ARGV[2])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[4], ttl)
end
redis.call('PUBLISH', KEYS[1] .. ':changes', 'cancelled')  -- see step.lua's announce
return {'ok', tostring(now)}
