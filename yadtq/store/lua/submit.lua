-- Records tasks as queued (or scheduled, when delayed), each unless a record of its id exists (idempotent
-- submit): one call for a chunk of messages of one shard, each message exactly as if it came alone, in order
-- (a later message of the chunk sees the record an earlier one made).
-- KEYS[1] status:queued   KEYS[2] broker:epoch   KEYS[3] scheduled (sorted set: id -> due time)
-- KEYS[4] status:scheduled; then for message n (0-based), o = 4 + 3n:
--   KEYS[o+1] task:<id>   KEYS[o+2] withdrawn:<id>   KEYS[o+3] queue:<name> (the task's queue index)
-- ARGV for message n, a = 15n:
--   ARGV[a+1] id  ARGV[a+2] task name  ARGV[a+3] args (JSON)  ARGV[a+4] kwargs (JSON)  ARGV[a+5] tries
--   ARGV[a+6] time limit ("" for none)  ARGV[a+7] digest of [task, args, kwargs]  ARGV[a+8] submit token
--   ARGV[a+9] eta (epoch)  ARGV[a+10] countdown (s)  ARGV[a+11] expires at (epoch)  ARGV[a+12] expires in (s);
--   "" unset   ARGV[a+13] ordering key ("" for none: every later publish of the task uses the stored one)
--   ARGV[a+14] result ttl of this submit in seconds ("" for the task's or the farm's; see store/retention.py)
--   ARGV[a+15] queue name ("" for the default queue)
-- Returns one reply per message, in order: {'new', status} (status queued: publish it now; scheduled: the
--   scheduler publishes it when due) | {'exists', status} | {'foreign', digest}: 'foreign' when the id is
--   taken by a task with another body (nothing is written for that message; the others are).
-- Timestamps are Redis server time (one clock for every host).
-- `epoch` notes the broker epoch the message goes to, so a message lost with that broker is known.
local epoch = redis.call('GET', KEYS[2]) or ''
local replies = {}
-- The chunk's index entries, one ZADD per index at the end (no read of this script looks at them): a
-- redis.call costs about as much as the entry it adds.
local adds = {}
-- The chunk's withdrawn markers (an undone submit's, unsubmit.lua) are cleared in one DEL at the end too:
-- only a worker's claim reads them.
local withdrawn = {}
local function add(key, score, id)
  local list = adds[key]
  if not list then list = {}; adds[key] = list end
  list[#list + 1] = score
  list[#list + 1] = id
end

-- Adds `name` to a record's fields unless its value is unset ('' or none).
local function option(fields, name, value)
  if value and value ~= '' then fields[#fields + 1] = name; fields[#fields + 1] = value end
end

local function submit_one(now, o, a)
  local cur = redis.call('HMGET', KEYS[o + 1], 'status', 'digest')
  if cur[1] then
    if cur[2] and cur[2] ~= ARGV[a + 7] then return {'foreign', cur[2]} end
    return {'exists', cur[1]}
  end
  local id = ARGV[a + 1]
  local due = nil
  if ARGV[a + 9] ~= '' then due = tonumber(ARGV[a + 9])
  elseif ARGV[a + 10] ~= '' then due = now + tonumber(ARGV[a + 10]) end
  local expires = nil
  if ARGV[a + 11] ~= '' then expires = tonumber(ARGV[a + 11])
  elseif ARGV[a + 12] ~= '' then expires = now + tonumber(ARGV[a + 12]) end
  local status = 'queued'
  if due and due > now then status = 'scheduled' end
  -- Unset options are left out rather than stored empty (every reader takes a missing field as unset):
  -- a record is kept long after its task ends, and each empty field costs about 16 B of Redis memory.
  local fields = {'task', ARGV[a + 2], 'args', ARGV[a + 3], 'kwargs', ARGV[a + 4], 'tries', ARGV[a + 5],
    'digest', ARGV[a + 7], 'submitted', now, 'status', status, 'attempts', 0, 'fence', 0}
  option(fields, 'submit_token', ARGV[a + 8])
  option(fields, 'epoch', epoch)
  option(fields, 'time_limit', ARGV[a + 6])
  option(fields, 'key', ARGV[a + 13])
  option(fields, 'queue', ARGV[a + 15])
  option(fields, 'result_ttl', ARGV[a + 14])
  option(fields, 'eta', due and tostring(due))
  option(fields, 'expires', expires and tostring(expires))
  redis.call('HSET', KEYS[o + 1], unpack(fields))
  if status == 'scheduled' then
    redis.call('ZADD', KEYS[4], now, id)
    redis.call('ZADD', KEYS[3], due, id)
  else
    add(KEYS[1], now, id)
  end
  add(KEYS[o + 3], now, id)
  withdrawn[#withdrawn + 1] = KEYS[o + 2]
  return {'new', status}
end

for n = 0, #ARGV / 15 - 1 do
  local t = redis.call('TIME')
  replies[n + 1] = submit_one(tonumber(t[1]) + tonumber(t[2]) / 1000000, 4 + 3 * n, 15 * n)
end
for key, entries in pairs(adds) do redis.call('ZADD', key, unpack(entries)) end
if #withdrawn > 0 then redis.call('DEL', unpack(withdrawn)) end
return replies
