"""Lua scripts: every check-then-act on a task record is atomic.

Scripts live in yadtq/store/lua/*.lua, each with a header naming its KEYS and ARGV;
`load(name)` reads one. The worker's whole step (store outcomes, then claim)
is one call of `step.lua` (see yadtq.worker.claims).

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
    """The source of yadtq/store/lua/<name>.lua."""
    return (_LUA / f"{name}.lua").read_text()


# Records a task as queued, unless a record exists (idempotent submit).
SUBMIT = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'task', ARGV[2], 'args', ARGV[3], 'kwargs', ARGV[4], 'tries', ARGV[5],
  'time_limit', ARGV[6], 'submitted', ARGV[1], 'status', 'queued', 'attempts', 0, 'failures', 0, 'fence', 0)
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[7])
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
