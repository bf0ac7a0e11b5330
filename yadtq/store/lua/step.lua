-- One worker step: store outcomes (each only under its current fence), then claim tasks.
-- All times are Redis server time (TIME), never a worker's clock.
--
-- KEYS[1] status:queued   KEYS[2] status:processing   KEYS[3] status:success
-- KEYS[4] status:failed   KEYS[5] done_by             KEYS[6] failed_by
-- KEYS[7] retries (sorted set: task id -> due time of a parked retry)
-- then per outcome: task:<id>, events:<id>;  then per claim: task:<id>, events:<id>, withdrawn:<id>
--
-- ARGV[1] worker name   ARGV[2] incarnation   ARGV[3] lease seconds   ARGV[4] result ttl (0 keeps)
-- ARGV[5] number of outcomes   ARGV[6] max lost runs (quarantine threshold)
-- then per outcome (6): id, fence, outcome (success|retry|failed), result json, error, park delay
--   (park delay > 0: the retry waits in KEYS[7] until due; 0: the worker holds it in place)
-- then per claim (12): id, task, args, kwargs, tries, time_limit, submitted, partition, offset, digest, key,
--   queue (named queue the record came from, '' for the default one: noted at each claim, so a task
--   published by a path that did not record its queue is republished where it ran)
--
-- Returns one verdict per outcome: 'ok' | 'fenced'; then one per claim:
--   {'run', fence, attempts, task, args, kwargs, tries, time_limit, failures, lease_until, lost_runs}
--   {'done', status} | {'busy', lease_until} | {'parked', due} | {'quarantined', error} | {'foreign', reason}
--   ({'done', 'withdrawn'}: a submit that failed and was undone; its message must not run)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local worker, incarnation = ARGV[1], ARGV[2]
local lease = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local n_out = tonumber(ARGV[5])
local max_lost = tonumber(ARGV[6])
local IDX = {queued = KEYS[1], processing = KEYS[2], success = KEYS[3], failed = KEYS[4]}
local out = {}

local function move(id, from, to)
  if IDX[from] then redis.call('ZREM', IDX[from], id) end
  redis.call('ZADD', IDX[to], now, id)
end

local function event(ek, text)
  redis.call('RPUSH', ek, now .. ' ' .. text)
  redis.call('LTRIM', ek, -50, -1)
  if ttl > 0 then redis.call('EXPIRE', ek, ttl) end
end

local k = 8
local a = 7
for _ = 1, n_out do
  local id, fence, outcome, result, err = ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4]
  local park = tonumber(ARGV[a+5])
  local tk, ek = KEYS[k], KEYS[k+1]
  a = a + 6
  k = k + 2
  local cur = redis.call('HMGET', tk, 'fence', 'status', 'owner')
  local want = outcome == 'retry' and 'queued' or outcome
  if cur[1] == fence and cur[2] == 'processing' then
    redis.call('HDEL', tk, 'lease')
    if outcome == 'success' then
      redis.call('HSET', tk, 'status', 'success', 'result', result, 'finished', now)
      move(id, 'processing', 'success')
      redis.call('HINCRBY', KEYS[5], worker, 1)
      if ttl > 0 then redis.call('EXPIRE', tk, ttl) end
    elseif outcome == 'retry' then
      redis.call('HSET', tk, 'status', 'queued', 'error', err)
      redis.call('HINCRBY', tk, 'failures', 1)
      move(id, 'processing', 'queued')
      if park > 0 then
        redis.call('HSET', tk, 'due', now + park)
        redis.call('ZADD', KEYS[7], now + park, id)
      end
      event(ek, 'retry after error: ' .. string.sub(err, 1, 200) .. ' (due in ' .. string.format('%.1f', park) .. 's)')
    else
      redis.call('HSET', tk, 'status', 'failed', 'result', 'null', 'error', err, 'finished', now)
      redis.call('HINCRBY', tk, 'failures', 1)
      move(id, 'processing', 'failed')
      redis.call('HINCRBY', KEYS[6], worker, 1)
      if ttl > 0 then redis.call('EXPIRE', tk, ttl) end
      event(ek, 'failed by ' .. worker .. ': ' .. string.sub(err, 1, 200))
    end
    table.insert(out, 'ok')
  elseif cur[1] == fence and cur[2] == want and cur[3] == incarnation then
    -- the same step sent again after a lost connection: already applied
    table.insert(out, 'ok')
  else
    table.insert(out, 'fenced')
  end
end

while a <= #ARGV do
  local id = ARGV[a]
  local tk, ek, wk = KEYS[k], KEYS[k+1], KEYS[k+2]
  local digest = ARGV[a+9]
  local rec = redis.call('HMGET', tk, 'status', 'digest', 'task', 'owner', 'lease', 'due')
  local st = rec[1]
  local verdict = nil
  if not st and redis.call('EXISTS', wk) == 1 then
    verdict = {'done', 'withdrawn'}
  elseif not st then
    -- a message from any Kafka client, with no record yet: create it
    redis.call('HSET', tk, 'task', ARGV[a+1], 'args', ARGV[a+2], 'kwargs', ARGV[a+3], 'tries', ARGV[a+4],
      'time_limit', ARGV[a+5], 'submitted', ARGV[a+6], 'status', 'queued', 'attempts', 0, 'failures', 0,
      'lost_runs', 0, 'fence', 0, 'digest', digest, 'key', ARGV[a+10], 'queue', ARGV[a+11])
    redis.call('ZADD', KEYS[1], now, id)
    event(ek, 'queued (record created by worker)')
    st = 'queued'
  elseif (rec[2] and rec[2] ~= '' and digest ~= '' and rec[2] ~= digest) or
         ((not rec[2] or rec[2] == '') and rec[3] ~= ARGV[a+1]) then
    verdict = {'foreign', 'task id ' .. id .. ' belongs to another task (' .. (rec[3] or '?') .. ')'}
  end
  if verdict then
    -- decided above
  elseif st == 'success' or st == 'failed' or st == 'cancelled' then
    verdict = {'done', st}
  elseif st == 'queued' and tonumber(rec[6] or '0') > now then
    verdict = {'parked', rec[6]}
  elseif st == 'processing' and rec[4] == incarnation then
    -- our own claim, sent again after a lost connection: the same claim
    local r = redis.call('HMGET', tk, 'fence', 'attempts', 'task', 'args', 'kwargs', 'tries', 'time_limit',
      'failures', 'lost_runs')
    local lease_until = now + lease
    redis.call('HSET', tk, 'lease', lease_until)
    verdict = {'run', r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tostring(lease_until), r[9] or '0'}
  elseif st == 'processing' and tonumber(rec[5] or '0') > now then
    verdict = {'busy', rec[5]}
  else
    local lost = 0
    if st == 'processing' then
      -- its worker died or froze mid-run: a run cut off
      lost = redis.call('HINCRBY', tk, 'lost_runs', 1)
      local prev = redis.call('HGET', tk, 'worker') or '?'
      local by = redis.call('HGET', tk, 'lost_by')
      by = (by and by ~= '') and (by .. ', ' .. prev) or prev
      redis.call('HSET', tk, 'lost_by', by)
      event(ek, 'run cut off on ' .. prev .. ' (' .. lost .. ' of ' .. max_lost .. ')')
      if lost >= max_lost then
        local err = 'quarantined: its worker died ' .. lost .. ' times while running it (' .. by .. ')'
        redis.call('HSET', tk, 'status', 'failed', 'result', 'null', 'error', err, 'finished', now)
        redis.call('HDEL', tk, 'lease', 'owner')
        move(id, 'processing', 'failed')
        redis.call('HINCRBY', KEYS[6], worker, 1)
        event(ek, err)
        verdict = {'quarantined', err}
      end
    end
    if not verdict then
      local fence = redis.call('HINCRBY', tk, 'fence', 1)
      local attempts = redis.call('HINCRBY', tk, 'attempts', 1)
      local lease_until = now + lease
      redis.call('HSET', tk, 'status', 'processing', 'worker', worker, 'owner', incarnation,
        'lease', lease_until, 'started', now, 'partition', ARGV[a+7], 'offset', ARGV[a+8], 'queue', ARGV[a+11])
      redis.call('HDEL', tk, 'due')
      move(id, st, 'processing')
      if attempts > 1 then event(ek, 'attempt ' .. attempts .. ' by ' .. worker) end
      local r = redis.call('HMGET', tk, 'task', 'args', 'kwargs', 'tries', 'time_limit', 'failures', 'lost_runs')
      verdict = {'run', tostring(fence), tostring(attempts), r[1], r[2], r[3], r[4], r[5], r[6],
        tostring(lease_until), r[7] or '0'}
    end
  end
  table.insert(out, verdict)
  a = a + 12
  k = k + 3
end
return out
