-- Records a task as queued (or scheduled, when delayed), unless a record of its id exists (idempotent submit).
-- KEYS[1] task:<id>   KEYS[2] status:queued   KEYS[3] withdrawn:<id>   KEYS[4] broker:epoch
-- KEYS[5] scheduled (sorted set: id -> due time)   KEYS[6] status:scheduled
-- KEYS[7] queue:<name> (the task's queue index)
-- ARGV[1] id  ARGV[2] task name  ARGV[3] args (JSON)  ARGV[4] kwargs (JSON)  ARGV[5] tries
-- ARGV[6] time limit ("" for none)  ARGV[7] digest of [task, args, kwargs]  ARGV[8] submit token
-- ARGV[9] eta (epoch)  ARGV[10] countdown (s)  ARGV[11] expires at (epoch)  ARGV[12] expires in (s); "" unset
-- ARGV[13] ordering key ("" for none: every later publish of the task uses the stored one)
-- ARGV[14] result ttl of this submit in seconds ("" for the task's or the farm's; see store/retention.py)
-- ARGV[15] queue name ("" for the default queue)
-- Returns {'new', status} (status queued: publish it now; scheduled: the scheduler publishes it when due)
--   | {'exists', status} | {'foreign', digest}: 'foreign' when the id is taken by a task with another body.
-- Timestamps are Redis server time (one clock for every host).
-- `epoch` notes the broker epoch the message goes to, so a message lost with that broker is known.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cur = redis.call('HMGET', KEYS[1], 'status', 'digest')
if cur[1] then
  if cur[2] and cur[2] ~= ARGV[7] then return {'foreign', cur[2]} end
  return {'exists', cur[1]}
end
local due = nil
if ARGV[9] ~= '' then due = tonumber(ARGV[9]) elseif ARGV[10] ~= '' then due = now + tonumber(ARGV[10]) end
local expires = nil
if ARGV[11] ~= '' then expires = tonumber(ARGV[11]) elseif ARGV[12] ~= '' then expires = now + tonumber(ARGV[12]) end
local status = 'queued'
if due and due > now then status = 'scheduled' end
redis.call('HSET', KEYS[1], 'task', ARGV[2], 'args', ARGV[3], 'kwargs', ARGV[4], 'tries', ARGV[5],
  'time_limit', ARGV[6], 'digest', ARGV[7], 'submit_token', ARGV[8], 'submitted', now,
  'status', status, 'attempts', 0, 'failures', 0, 'fence', 0,
  'epoch', redis.call('GET', KEYS[4]) or '', 'key', ARGV[13], 'queue', ARGV[15])
if ARGV[14] ~= '' then redis.call('HSET', KEYS[1], 'result_ttl', ARGV[14]) end
if due then redis.call('HSET', KEYS[1], 'eta', tostring(due)) end
if expires then redis.call('HSET', KEYS[1], 'expires', tostring(expires)) end
if status == 'scheduled' then
  redis.call('ZADD', KEYS[6], now, ARGV[1])
  redis.call('ZADD', KEYS[5], due, ARGV[1])
else
  redis.call('ZADD', KEYS[2], now, ARGV[1])
end
redis.call('ZADD', KEYS[7], now, ARGV[1])
redis.call('DEL', KEYS[3])
return {'new', status}
