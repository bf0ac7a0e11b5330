-- Cancels a task that has not finished: it ends `cancelled` at once, and no claim runs it afterwards
-- (the claim step treats `cancelled` as finished).
-- A waiting task (queued, a parked retry: also `queued`, or scheduled: delayed, not yet published)
-- never runs. A running task (`processing`) is cancelled in its record at once, keeping its fence and
-- owner, and its worker is told through its command list (taken about twice a second) to interrupt
-- the run; whatever that run still returns is not stored (the worker's `cancelled` outcome matches
-- the record; any other is fenced).
-- KEYS[1] task hash, KEYS[2] status:queued index, KEYS[3] status:cancelled index, KEYS[4] the task's events list
-- KEYS[5] status:scheduled index, KEYS[6] scheduled (due set): a delayed task is cancelled before it is published
-- KEYS[7] status:processing index, KEYS[8] the command list of the worker the caller read in the record
-- ARGV[1] result TTL: a workflow's state only (the task record leaves by the retention sweep), ARGV[2] who cancelled (for the history), ARGV[3] the task id,
-- ARGV[4] the worker the caller read in the record ('' if none)
-- Returns {'ok', time} | {'missing'} | {'moved'} (running on another worker than read: read again) | {status}
--! include workflow
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {'missing'}
end
-- Statuses that wait for a worker, with their index: cancelled without any worker knowing.
local WAITING = {queued = KEYS[2], scheduled = KEYS[5]}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local note = 'cancelled by ' .. ARGV[2]
if WAITING[status] then
  redis.call('ZREM', WAITING[status], ARGV[3])
  redis.call('ZREM', KEYS[6], ARGV[3])
elseif status == 'processing' then
  local rec = redis.call('HMGET', KEYS[1], 'worker', 'fence')
  if (rec[1] or '') ~= ARGV[4] then
    return {'moved'}
  end
  redis.call('ZREM', KEYS[7], ARGV[3])
  redis.call('RPUSH', KEYS[8], 'cancel:' .. (rec[2] or '') .. ':' .. ARGV[3])
  redis.call('LTRIM', KEYS[8], -100, -1)
  note = note .. ' while running on ' .. ARGV[4]
else
  return {status}
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished', tostring(now), 'result', 'null', 'error', note)
redis.call('HDEL', KEYS[1], 'lease')
redis.call('ZADD', KEYS[3], now, ARGV[3])
redis.call('RPUSH', KEYS[4], tostring(now) .. ' ' .. note)
redis.call('LTRIM', KEYS[4], -50, -1)
local ttl = tonumber(ARGV[1])  -- a workflow's state only: the task record leaves by the retention sweep
wf_task_ended(wf_prefix(KEYS[2]), now, ttl, KEYS[1], 'failed', 'null', note)
redis.call('PUBLISH', KEYS[1] .. ':changes', 'cancelled')  -- see step.lua's announce
return {'ok', tostring(now)}
