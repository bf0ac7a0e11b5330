-- Marks a task failed that cannot run (its record unreadable, its task unknown, its arguments wrong),
-- unless the id belongs to another task (a foreign record never touches it) or it already finished.
-- Either way the record is a dead letter, pushed in this same call (so a crash cannot leave the task
-- failed without it).
-- KEYS[1] task:<id>, KEYS[2] events:<id>, KEYS[3] status:queued, KEYS[4] status:failed, KEYS[5] failed_by,
-- KEYS[6] dlq (its queue's dead letters on this shard)
-- ARGV[1] task id, ARGV[2] task name ('' if unreadable), ARGV[3] error, ARGV[4] digest ('' if none), ARGV[5] worker,
-- ARGV[6] dead letter (a JSON object, yadtq.store.dead_letters.entry_json, completed here with time and error)
-- Returns 'rejected' | 'foreign' | the status it was left in.
--! include workflow
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local DLQ_KEPT = 10000  -- yadtq.store.dead_letters
if ARGV[6] ~= '' then
  redis.call('LPUSH', KEYS[6], '{"ts":' .. now .. ',"error":' .. cjson.encode(ARGV[3]) .. ',' .. string.sub(ARGV[6], 2))
  redis.call('LTRIM', KEYS[6], 0, DLQ_KEPT - 1)
end
local rec = redis.call('HMGET', KEYS[1], 'status', 'task', 'digest')
local st = rec[1]
if st then
  local digest_differs = rec[3] and rec[3] ~= '' and ARGV[4] ~= '' and rec[3] ~= ARGV[4]
  if digest_differs or (ARGV[2] ~= '' and rec[2] ~= ARGV[2]) then return 'foreign' end
  if st ~= 'queued' then return st end
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('HSET', KEYS[1], 'task', ARGV[2], 'args', '[]', 'kwargs', '{}', 'attempts', 0, 'failures', 0,
    'lost_runs', 0, 'fence', 0, 'submitted', now, 'digest', ARGV[4])
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'result', 'null', 'error', ARGV[3], 'finished', now, 'worker', ARGV[5])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[5], 1)
redis.call('RPUSH', KEYS[2], now .. ' rejected: ' .. string.sub(ARGV[3], 1, 200))
redis.call('LTRIM', KEYS[2], -50, -1)
wf_task_ended(wf_prefix(KEYS[3]), now, 0, KEYS[1], 'failed', 'null', ARGV[3])
redis.call('PUBLISH', KEYS[1] .. ':changes', 'failed')  -- see step.lua's announce
return 'rejected'
