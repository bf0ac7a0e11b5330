-- Checks, just before a task starts, that a claim made earlier is still current and unexpired
-- (the worker may have been frozen since), and extends its lease.
-- KEYS[1] task:<id>.   ARGV[1] fence, ARGV[2] incarnation, ARGV[3] lease seconds.   Returns 1 or 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('HMGET', KEYS[1], 'fence', 'status', 'owner', 'lease')
if cur[1] == ARGV[1] and cur[2] == 'processing' and cur[3] == ARGV[2] and tonumber(cur[4] or '0') > now then
  redis.call('HSET', KEYS[1], 'lease', now + tonumber(ARGV[3]))
  return 1
end
return 0
