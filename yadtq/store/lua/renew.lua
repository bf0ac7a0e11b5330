-- Extends the leases of running tasks, each only while the caller's claim is current.
-- KEYS: task:<id> per claim.   ARGV[1] lease seconds, ARGV[2] incarnation, then one fence per key.
-- Returns one 1 (renewed, or cancelled under this claim: the worker is interrupting the run and its
-- `cancelled` outcome will be accepted, so the claim is not lost) or 0 (claim lost) per key.
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local out = {}
for i, tk in ipairs(KEYS) do
  local cur = redis.call('HMGET', tk, 'fence', 'status', 'owner')
  if cur[1] == ARGV[i + 2] and cur[2] == 'processing' and cur[3] == ARGV[2] then
    redis.call('HSET', tk, 'lease', until_)
    local lk = redis.call('HGET', tk, 'limit_key')  -- a run counted against a max_concurrency (step.lua)
    if lk then redis.call('ZADD', lk, 'XX', until_, tk) end
    out[i] = 1
  elseif cur[1] == ARGV[i + 2] and cur[2] == 'cancelled' and cur[3] == ARGV[2] then
    local lk = redis.call('HGET', tk, 'limit_key')  -- still running until interrupted: still counted
    if lk then redis.call('ZADD', lk, 'XX', until_, tk) end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
