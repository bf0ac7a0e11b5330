-- Fires, skips or defers one slot of a periodic schedule: the fence that makes each slot fire once
-- however many schedulers race on it. The slot's task record is written in this same call that
-- moves the schedule's last slot on, and parked in the retries set armed `hold` seconds ahead:
-- the caller publishes it and confirms with untake.lua; if the caller dies first, the parked
-- retries path (any worker) publishes it once armed. So a slot is neither lost nor doubled.
-- KEYS[1] schedule:<name>  KEYS[2] schedules  KEYS[3] task:<id>  KEYS[4] status:queued
-- KEYS[5] retries  KEYS[6] broker:epoch
-- ARGV[1] name  ARGV[2] version read  ARGV[3] action ('fire' | 'skip' | 'wait')  ARGV[4] slot
-- ARGV[5] next due  ARGV[6] task id  ARGV[7] task  ARGV[8] args (JSON)  ARGV[9] kwargs (JSON)
-- ARGV[10] tries  ARGV[11] digest  ARGV[12] hold seconds
-- Returns {'fired', armed} | {'exists'} | {'skipped'} | {'waiting'} | {'taken', last slot}
--   | {'changed'} (the definition changed since it was read) | {'gone'} (removed) | {'early', now}
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('HMGET', KEYS[1], 'version', 'last_slot')
if not cur[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone'}
end
if cur[1] ~= ARGV[2] then return {'changed'} end
local action = ARGV[3]
if action == 'wait' then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), ARGV[1])
  return {'waiting'}
end
local slot = tonumber(ARGV[4])
if slot <= tonumber(cur[2] or '0') then return {'taken', cur[2]} end
if slot > now then return {'early', tostring(now)} end
redis.call('HSET', KEYS[1], 'last_slot', ARGV[4])
redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), ARGV[1])
if action == 'skip' then
  redis.call('HINCRBY', KEYS[1], 'skipped', 1)
  redis.call('HSET', KEYS[1], 'last_skipped', ARGV[4])
  return {'skipped'}
end
redis.call('HINCRBY', KEYS[1], 'fired', 1)
redis.call('HSET', KEYS[1], 'last_run', tostring(now), 'last_task', ARGV[6])
if redis.call('EXISTS', KEYS[3]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[3], 'task', ARGV[7], 'args', ARGV[8], 'kwargs', ARGV[9], 'tries', ARGV[10],
  'time_limit', '', 'digest', ARGV[11], 'submit_token', '', 'submitted', now,
  'status', 'queued', 'attempts', 0, 'failures', 0, 'fence', 0, 'schedule', ARGV[1],
  'epoch', redis.call('GET', KEYS[6]) or '')
redis.call('ZADD', KEYS[4], now, ARGV[6])
local armed = now + tonumber(ARGV[12])
redis.call('ZADD', KEYS[5], armed, ARGV[6])
return {'fired', tostring(armed)}
