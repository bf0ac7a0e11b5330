-- Defines (adds or replaces) a periodic schedule. A definition already there and equal is left
-- alone, its last slot and runs kept (a worker registering its decorated schedules at every start).
-- A new or changed definition takes a new version (a scheduler that read the old one is refused)
-- and its last slot becomes at least `current slot`, so defining never fires the slot under way;
-- it is due for a look at once (the scheduler then computes its next slot).
-- KEYS[1] schedule:<name>   KEYS[2] schedules (sorted set: name -> when to look next)
-- ARGV[1] name  ARGV[2] definition (canonical JSON)  ARGV[3] current slot of the new definition
-- ARGV[4] origin ('decorator' | 'runtime')
-- Returns {'same'} | {'new'} | {'changed'}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('HMGET', KEYS[1], 'definition', 'last_slot', 'version')
if cur[1] == ARGV[2] then
  if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then redis.call('ZADD', KEYS[2], 0, ARGV[1]) end
  return {'same'}
end
local last = tonumber(ARGV[3])
if cur[2] and tonumber(cur[2]) > last then last = tonumber(cur[2]) end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'definition', ARGV[2], 'last_slot', tostring(last),
  'version', tostring((tonumber(cur[3]) or 0) + 1), 'origin', ARGV[4], 'defined_at', tostring(now))
if not cur[1] then redis.call('HSET', KEYS[1], 'created_at', tostring(now), 'fired', 0, 'skipped', 0) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if cur[1] then return {'changed'} end
return {'new'}
