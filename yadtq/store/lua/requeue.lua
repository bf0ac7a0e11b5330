-- Puts a task back to `queued` and returns its fields so the caller can publish it again.
-- Accepted: failed, queued (its message lost), and processing whose lease has lapsed (its
-- worker is gone: the fence moves on, so a late completion of the old run is discarded).
-- The reply carries the stored ordering key, so the task goes back to its key's partition and order.
-- Refused: success, and processing under a live lease (returns {status}).
-- KEYS[1] task:<id>  KEYS[2] events:<id>  KEYS[3] status:<current>  KEYS[4] status:queued
-- KEYS[5] queue:<name> (the index of the queue the caller read)
-- KEYS[3] must be the index of the status the caller read; a changed status returns {'moved', st}.
-- ARGV[1] id  ARGV[2] status read by the caller  ARGV[3] "fresh" (reset attempts and cut-off runs) | "lost"
-- (count a cut-off run)
--! include workflow
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('HMGET', KEYS[1], 'status', 'lease')
local st = cur[1]
if not st then return {'missing'} end
if st ~= ARGV[2] then return {'moved', st} end
if st == 'success' then return {st} end
if st == 'processing' and tonumber(cur[2] or '0') > now then return {'running'} end
redis.call('HINCRBY', KEYS[1], 'fence', 1)
if ARGV[3] == 'fresh' then
  -- A user's requeue starts over: a quarantined task gets its YADTQ_MAX_LOST_RUNS again (its
  -- runs cut off before count no more, as its attempts do not).
  redis.call('HSET', KEYS[1], 'attempts', 0, 'failures', 0, 'lost_runs', 0)
  redis.call('HDEL', KEYS[1], 'lost_by')
elseif st == 'processing' then
  redis.call('HINCRBY', KEYS[1], 'lost_runs', 1)
end
-- Waits count from this publish: `submitted` moves to now; the first one is kept once.
local first = redis.call('HGET', KEYS[1], 'submitted')
if first then redis.call('HSETNX', KEYS[1], 'first_submitted', first) end
redis.call('HSET', KEYS[1], 'status', 'queued', 'submitted', now)
-- A requeue runs it now: an eta still ahead (a scheduled task) no longer holds, nor, in a user's
-- requeue ("fresh"), an expired task's expiry. An eta passed stays: it is the record's (when the
-- task was due), and a run cut off (the monitor's requeue) started after it. A run cut off keeps
-- its expiry: past it, its claim ends it `expired` (step.lua), as it would a redelivered message.
redis.call('HDEL', KEYS[1], 'result', 'error', 'finished', 'started', 'lease', 'owner')
if ARGV[3] == 'fresh' then redis.call('HDEL', KEYS[1], 'expires') end
local eta = tonumber(redis.call('HGET', KEYS[1], 'eta') or '')
if eta and eta > now then redis.call('HDEL', KEYS[1], 'eta') end
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZADD', KEYS[5], now, ARGV[1])
local how = ARGV[3] == 'fresh' and 'requeued' or 'requeued after its run was cut off'
redis.call('RPUSH', KEYS[2], now .. ' ' .. how .. ' (was ' .. st .. ')')
redis.call('LTRIM', KEYS[2], -50, -1)
-- No longer finished: the retention sweep must not delete it (store/retention.py).
redis.call('HDEL', KEYS[1], 'expires_at')
wf_task_requeued(wf_prefix(KEYS[4]), KEYS[1])
redis.call('PUBLISH', KEYS[1] .. ':changes', 'queued')  -- see step.lua's announce
return {'ok', unpack(redis.call('HMGET', KEYS[1], 'task', 'args', 'kwargs', 'tries', 'time_limit', 'key', 'queue'))}
