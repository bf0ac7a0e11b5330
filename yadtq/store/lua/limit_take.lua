-- Redis Cluster only (yadtq.store.cluster_limits): admits runs of rate- or concurrency-limited task
-- names before their claims go to their shards. Every limit's definition and state sit on the
-- cluster-wide slot, so every worker's admission for a name is atomic here, whichever shard its
-- tasks are on. The same rules as step.lua's over_limit, without booking: a run over its limit
-- waits in its worker's buffer ({'limited', ...}), as a keyed task does on one server.
-- KEYS[1] limits (hash, yadtq.store.limits), then per claim: limit:rate:<task>, limit:running:<task>
-- ARGV[1] lease seconds, then per claim (2): task name, member (the run's entry in limit:running:
--   `<task id> <worker incarnation>`, so a run's end never removes another worker's run of that task)
-- Returns per claim: {'ok', tat before ('' none), tat set ('' none), '1' if counted in limit:running else ''}
--   | {'limited', seconds to wait, 'rate' | 'concurrency'}: nothing changed
--! include limits
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[1])
local limits_of = limits_reader(KEYS[1])  -- lib/limits.lua

local out = {}
local k = 2
for a = 2, #ARGV, 2 do
  local lim, member = limits_of(ARGV[a]), ARGV[a + 1]
  local rk, ck = KEYS[k], KEYS[k + 1]
  k = k + 2
  local verdict = nil
  if lim.max then
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', now)  -- runs whose lease lapsed (a dead worker's) count no more
    if not redis.call('ZSCORE', ck, member) and redis.call('ZCARD', ck) >= lim.max then
      verdict = {'limited', '0.1', 'concurrency'}
    end
  end
  local before, set = '', ''
  if not verdict and lim.interval then
    local T = lim.interval
    local tat = tonumber(redis.call('GET', rk) or '0')
    if tat - 0.9 * T > now then
      verdict = {'limited', tostring(tat - 0.9 * T - now), 'rate'}
    else
      local nxt = math.max(tat, now) + T
      before, set = redis.call('GET', rk) or '', tostring(nxt)
      redis.call('SET', rk, set, 'EX', math.ceil(nxt - now) + 60)
    end
  end
  if not verdict then
    local counted = ''
    if lim.max then
      redis.call('ZADD', ck, now + lease, member)
      counted = '1'
    end
    verdict = {'ok', before, set, counted}
  end
  table.insert(out, verdict)
end
return out
