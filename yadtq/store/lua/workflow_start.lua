-- Records a workflow and starts it: the task records of its first steps are written `queued` and
-- put in the outbox (the retries set) armed `hold` seconds ahead, so the caller publishes them
-- now and confirms with untake; a caller that dies first leaves them to any worker.
-- Idempotent: a workflow id that exists is left alone.
-- KEYS[1] workflow:<id>   KEYS[2] status:queued (its prefix names every other key)
-- ARGV[1] workflow id   ARGV[2] hold seconds   ARGV[3] result ttl (0 keeps)   then field, value pairs
-- Returns {'new', armed score, {task id...}} | {'exists'}
--! include workflow
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
local fields = {}
for a = 4, #ARGV do table.insert(fields, ARGV[a]) end
for start = 1, #fields, 2000 do
  redis.call('HSET', KEYS[1], unpack(fields, start, math.min(start + 1999, #fields)))
end
redis.call('HSET', KEYS[1], 'state', 'running', 'created', now, 'failing', 0)
-- the newest workflows, for listings (the dashboard): capped, ids only
local index = wf_prefix(KEYS[2]) .. 'workflows'
redis.call('ZADD', index, now, ARGV[1])
redis.call('ZREMRANGEBYRANK', index, 0, -10001)
local armed = now + tonumber(ARGV[2])
local ctx = wf_context(wf_prefix(KEYS[2]), ARGV[1], now, tonumber(ARGV[3]), armed)
wf_start(ctx, '0', nil)
return {'new', tostring(armed), ctx.created}
