-- Gives a claim back: the task returns to `queued` for the next owner at once.
-- KEYS[1] task:<id>, KEYS[2] status:processing, KEYS[3] status:queued, KEYS[4] events:<id>,
-- KEYS[5] retries (a task parked over the same max_concurrency is woken: lib/limits.lua)
-- ARGV[1] fence, ARGV[2] task id, ARGV[3] 1 if the task never started (its attempt is not counted)
-- Returns 1, or 0 when the claim was no longer current.
--! include limits
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('HMGET', KEYS[1], 'fence', 'status')
if cur[1] ~= ARGV[1] or cur[2] ~= 'processing' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
else
  redis.call('RPUSH', KEYS[4], now .. ' released mid-run by a stopping worker')
  redis.call('LTRIM', KEYS[4], -50, -1)
end
local lk = redis.call('HGET', KEYS[1], 'limit_key')  -- a run counted against a max_concurrency (step.lua)
if lk then
  redis.call('ZREM', lk, KEYS[1])
  wake_parked(lk, KEYS[5], string.sub(KEYS[3], 1, #KEYS[3] - #'status:queued'), now)
end
redis.call('HDEL', KEYS[1], 'owner', 'lease', 'started', 'limit_key')
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('PUBLISH', KEYS[1] .. ':changes', 'queued')  -- see step.lua's announce
return 1
