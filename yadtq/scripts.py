"""Lua scripts: every check-then-act on a task record is atomic.

The engine's scripts live in yadtq/lua/*.lua, each with a header naming its
KEYS and ARGV; `load(name)` reads one.

`STEP` completes at most one task (only if the caller's fence is still
current) and then claims any number of tasks, in one round trip. Keys are
built inside the script from the prefix, so a worker's whole step is one call.

The common path (queued, processing, success) writes nothing but the record
and the status indexes: its history is the record's timestamps. Each task's
`events:<id>` list holds only what they cannot tell: retries, failures,
reclaims after a cut-off run, rejections, requeues.
"""

import functools
from pathlib import Path

_LUA = Path(__file__).resolve().parent / "lua"


@functools.cache
def load(name: str) -> str:
    """The source of yadtq/lua/<name>.lua."""
    return (_LUA / f"{name}.lua").read_text()


STEP = r"""
local prefix = ARGV[1]
local now = tonumber(ARGV[2])
local worker = ARGV[3]
local incarnation = ARGV[4]
local lease_until = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local n_complete = tonumber(ARGV[7])
local i = 8
local out = {}

local function move(id, from, to)
  redis.call('ZREM', prefix .. 'status:' .. from, id)
  redis.call('ZADD', prefix .. 'status:' .. to, now, id)
end

local function event(id, text)
  local k = prefix .. 'events:' .. id
  redis.call('RPUSH', k, now .. ' ' .. text)
  redis.call('LTRIM', k, -50, -1)
  if ttl > 0 then redis.call('EXPIRE', k, ttl) end
end

-- complete: id, fence, outcome (success|retry|failed), result-json, error
if n_complete == 1 then
  local id, fence, outcome, result, err = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  i = i + 5
  local k = prefix .. 'task:' .. id
  local cur = redis.call('HMGET', k, 'fence', 'status')
  if cur[1] ~= fence or cur[2] ~= 'processing' then
    table.insert(out, 'fenced')
  else
    if outcome == 'success' then
      redis.call('HSET', k, 'status', 'success', 'result', result, 'finished', now)
      redis.call('HDEL', k, 'lease')
      move(id, 'processing', 'success')
      redis.call('HINCRBY', prefix .. 'done_by', worker, 1)
      if ttl > 0 then redis.call('EXPIRE', k, ttl) end
    elseif outcome == 'retry' then
      redis.call('HSET', k, 'status', 'queued', 'error', err)
      redis.call('HINCRBY', k, 'failures', 1)
      redis.call('HDEL', k, 'lease')
      move(id, 'processing', 'queued')
      event(id, 'retry after error: ' .. string.sub(err, 1, 200))
    else
      redis.call('HSET', k, 'status', 'failed', 'result', 'null', 'error', err, 'finished', now)
      redis.call('HINCRBY', k, 'failures', 1)
      redis.call('HDEL', k, 'lease')
      move(id, 'processing', 'failed')
      redis.call('HINCRBY', prefix .. 'failed_by', worker, 1)
      if ttl > 0 then redis.call('EXPIRE', k, ttl) end
      event(id, 'failed by ' .. worker .. ': ' .. string.sub(err, 1, 200))
    end
    table.insert(out, 'ok')
  end
end

-- claims: id, task, args, kwargs, tries, time_limit, submitted, partition, offset
while i <= #ARGV do
  local id = ARGV[i]
  local k = prefix .. 'task:' .. id
  local st = redis.call('HGET', k, 'status')
  if not st then
    -- a message from any Kafka client, with no record yet: create it
    redis.call('HSET', k, 'task', ARGV[i+1], 'args', ARGV[i+2], 'kwargs', ARGV[i+3],
      'tries', ARGV[i+4], 'time_limit', ARGV[i+5], 'submitted', ARGV[i+6],
      'status', 'queued', 'attempts', 0, 'failures', 0, 'fence', 0)
    redis.call('ZADD', prefix .. 'status:queued', now, id)
    event(id, 'queued (record created by worker)')
    st = 'queued'
  end
  local verdict = nil
  if st == 'success' or st == 'failed' then
    verdict = {'done', st}
  elseif st == 'processing' then
    local held = redis.call('HMGET', k, 'owner', 'lease')
    if held[1] ~= incarnation and tonumber(held[2] or '0') > now then
      verdict = {'busy', held[2]}
    end
  end
  if verdict then
    table.insert(out, verdict)
  else
    local fence = redis.call('HINCRBY', k, 'fence', 1)
    local attempts = redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('HSET', k, 'status', 'processing', 'worker', worker, 'owner', incarnation,
      'lease', lease_until, 'started', now, 'partition', ARGV[i+7], 'offset', ARGV[i+8])
    move(id, st, 'processing')
    if st == 'processing' then
      event(id, 'reclaimed by ' .. worker .. ' attempt ' .. attempts .. ' (earlier run cut off)')
    elseif attempts > 1 then
      event(id, 'attempt ' .. attempts .. ' by ' .. worker)
    end
    local rec = redis.call('HMGET', k, 'task', 'args', 'kwargs', 'tries', 'time_limit', 'failures')
    table.insert(out, {'run', tostring(fence), tostring(attempts), rec[1], rec[2], rec[3], rec[4], rec[5], rec[6]})
  end
  i = i + 9
end
return out
"""

# Extends the lease of a running task, only while the caller still holds it.
RENEW = r"""
local cur = redis.call('HMGET', KEYS[1], 'fence', 'status')
if cur[1] == ARGV[1] and cur[2] == 'processing' then
  redis.call('HSET', KEYS[1], 'lease', ARGV[2])
  return 1
end
return 0
"""

# Records a task as queued, unless a record exists (idempotent submit).
SUBMIT = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'task', ARGV[2], 'args', ARGV[3], 'kwargs', ARGV[4], 'tries', ARGV[5],
  'time_limit', ARGV[6], 'submitted', ARGV[1], 'status', 'queued', 'attempts', 0, 'failures', 0, 'fence', 0)
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[7])
return 1
"""

# Marks a task failed before it ever ran (bad message with a readable id).
REJECT = r"""
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then return 0 end
if not st then
  redis.call('HSET', KEYS[1], 'task', ARGV[3], 'args', '[]', 'kwargs', '{}', 'attempts', 0,
    'failures', 0, 'fence', 0, 'submitted', ARGV[1])
else
  redis.call('ZREM', ARGV[4] .. 'status:' .. st, ARGV[5])
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'result', 'null', 'error', ARGV[2], 'finished', ARGV[1])
redis.call('ZADD', ARGV[4] .. 'status:failed', ARGV[1], ARGV[5])
redis.call('RPUSH', KEYS[2], ARGV[1] .. ' rejected: ' .. string.sub(ARGV[2], 1, 200))
return 1
"""

# Puts a finished or stuck-queued task back to `queued` with fresh attempts;
# returns its fields so the caller can publish it again. A running or
# successful task is refused (returns the status instead).
REQUEUE = r"""
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing'} end
if st == 'processing' or st == 'success' then return {st} end
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'failures', 0, 'submitted', ARGV[1])
redis.call('HDEL', KEYS[1], 'result', 'error', 'finished', 'started', 'lease', 'owner', 'worker')
redis.call('PERSIST', KEYS[1])
redis.call('ZREM', ARGV[2] .. 'status:' .. st, ARGV[3])
redis.call('ZADD', ARGV[2] .. 'status:queued', ARGV[1], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[1] .. ' requeued (was ' .. st .. ')')
return {'ok', unpack(redis.call('HMGET', KEYS[1], 'task', 'args', 'kwargs', 'tries', 'time_limit'))}
"""

# Undoes a claim made ahead for a task that will not run here now (the worker
# stops, loses the partition, or an earlier task of the partition must retry
# first): back to `queued`, the attempt not counted.
RELEASE = r"""
local cur = redis.call('HMGET', KEYS[1], 'fence', 'status')
if cur[1] ~= ARGV[1] or cur[2] ~= 'processing' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
redis.call('HDEL', KEYS[1], 'owner', 'lease', 'worker', 'started')
redis.call('ZREM', ARGV[2] .. 'status:processing', ARGV[3])
redis.call('ZADD', ARGV[2] .. 'status:queued', ARGV[4], ARGV[3])
return 1
"""
