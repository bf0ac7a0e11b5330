-- One worker step: store outcomes (each only under its current fence), then claim tasks.
-- All times are Redis server time (TIME), never a worker's clock.
--
-- KEYS[1] status:queued   KEYS[2] status:processing   KEYS[3] status:success
-- KEYS[4] status:failed   KEYS[5] done_by             KEYS[6] failed_by
-- KEYS[7] retries (sorted set: task id -> due time of a parked retry)   KEYS[8] limits (hash, yadtq.store.limits)
-- then per outcome: task:<id>, events:<id>, dlq (its queue's dead letters on this shard);
-- then per claim: task:<id>, events:<id>, withdrawn:<id>, limit:rate:<task>, limit:running:<task>,
--   limit:booked:<task>, dlq (as for an outcome)
-- KEYS[9] scheduled (sorted set: task id -> due time of a delayed task)   KEYS[10] status:scheduled
-- KEYS[11] status:expired
-- (a run counted against a max_concurrency notes its limit:running key in its record, field
-- 'limit_key'; outcomes, renew.lua and release.lua take it from there; the tasks parked over that
-- limit are also in <limit:running key>:parked, Keys.limit_parked, so a run that ends wakes one)
--
-- ARGV[1] worker name   ARGV[2] incarnation   ARGV[3] lease seconds   ARGV[4] result ttl: a workflow's state only
--   (task records leave Redis with their index entries by the retention sweep, store/retention.py, never by EXPIRE)
-- ARGV[5] number of outcomes   ARGV[6] max lost runs (quarantine threshold)
-- then per outcome (7): id, fence, outcome (success|retry|failed|cancelled), result json, error, park delay,
--   dead letter (a JSON object, yadtq.store.dead_letters.entry_json; '' none: pushed with its time and
--   error on the dlq key when this call stores the failure)
--   (park delay > 0: the retry waits in KEYS[7] until due; 0: the worker holds it in place)
-- then per claim (19): id, task, args, kwargs, tries, time_limit, submitted, partition, offset, digest, key,
--   eta, countdown, expires_at, expires ("" unset; used only when the message makes the record),
--   queue (named queue the record came from, '' for the default one: noted at each claim, so a task
--   published by a path that did not record its queue is republished where it ran),
--   park ('1': over its rate, wait in Redis rather than in the worker's crowded buffer; see over_limit),
--   dead letter, raw: what a claim that quarantines its task writes as its dead letter. Raw '': dead letter
--   is an outcome's ('' none); else dead letter holds the members this call cannot know (topic, queue,
--   partition in the topic: yadtq.store.claims.ClaimPipeline.letter_where) and raw the record as read
--   (ASCII, within RAW_KEPT), and the entry is composed here only if the claim quarantines (claim_letter)
-- A delayed task is never claimed before its eta ({'parked', eta}: the scheduler publishes it when due);
-- a task not started by its `expires` time ends `expired` instead of running ({'done', 'expired'}).
--
-- Returns one verdict per outcome: 'ok' | 'fenced'; then one per claim:
--   {'run', fence, attempts, task, args, kwargs, tries, time_limit, failures, lease_until, lost_runs}
--   {'done', status} | {'busy', lease_until} | {'parked', due} | {'quarantined', error} | {'foreign', reason}
--   | {'limited', seconds to wait, 'rate' | 'concurrency'}: over its task name's limit, nothing changed
--   (a queued task without an ordering key over its rate is booked a start and parked instead, see over_limit)
--   | {'early', eta, now[, 'rate']}: a delayed task published ahead of its eta, or a task over its rate
--     booked a start (see over_limit), held until then
--   ({'done', 'withdrawn'}: a submit that failed and was undone; its message must not run)
--! include workflow
--! include limits
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local worker, incarnation = ARGV[1], ARGV[2]
local lease = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local n_out = tonumber(ARGV[5])
local max_lost = tonumber(ARGV[6])
local IDX = {queued = KEYS[1], processing = KEYS[2], success = KEYS[3], failed = KEYS[4], scheduled = KEYS[10],
  expired = KEYS[11]}
local out = {}

-- Index moves are gathered and written by flush_moves, a ZREM and a ZADD per index rather than per task
-- (the step is atomic: no reader sees the difference). Flushed after the outcomes and after the claims,
-- so a retry stored and claimed again in one step leaves queued before it enters processing; within
-- one phase a task moves at most once (claimed_here), and the ids an index gains and loses are apart.
local moves = {}
local function moved(key)
  local m = moves[key]
  if not m then
    m = {rem = {}, add = {}}
    moves[key] = m
  end
  return m
end

-- A task that ends (success, failed, expired) also leaves its queue's index (`queue`: the record's
-- queue, '' or none the default one), in the same ZREM per index: the index then holds only the ids that may
-- still be waiting, rather than every finished id until queue_prune.lua drops them (Redis memory
-- per finished task). A cancelled task is left to queue_prune.lua.
local ENDS = {success = true, failed = true, expired = true}
local prefix = wf_prefix(KEYS[1])  -- lib/workflow.lua
local function move(id, from, to, queue)
  if IDX[from] then table.insert(moved(IDX[from]).rem, id) end
  local add = moved(IDX[to]).add
  add[#add + 1] = now
  add[#add + 1] = id
  if ENDS[to] then table.insert(moved(queue_index(prefix, queue)).rem, id) end
end

local CHUNK = 1000  -- arguments per call (unpack's stack)
local function flush_moves()
  for key, m in pairs(moves) do
    for i = 1, #m.rem, CHUNK do redis.call('ZREM', key, unpack(m.rem, i, math.min(i + CHUNK - 1, #m.rem))) end
  end
  for key, m in pairs(moves) do
    for i = 1, #m.add, CHUNK do redis.call('ZADD', key, unpack(m.add, i, math.min(i + CHUNK - 1, #m.add))) end
  end
  moves = {}
end

-- Tells subscribers (YADTQ.wait, `status --follow`, the API's event stream) that a record changed,
-- atomically with the change: channel <task key>:changes (Keys.changes), payload the new status.
-- A final outcome carries the record (status, a space, HGETALL as JSON) while someone listens,
-- so a waiter returns without reading it again (yadtq.store.announcements.pushed_record).
-- The listeners of the outcomes' channels are read in one PUBSUB NUMSUB before the outcomes (below):
-- a redis.call costs a script more than the command itself, and no subscription changes while
-- a script runs. A channel not read then (a claim that quarantines its task) is read when announced.
local listeners = {}
local function announce(tk, what)
  local ch = tk .. ':changes'
  if what == 'success' or what == 'failed' then
    local n = listeners[ch] or redis.call('PUBSUB', 'NUMSUB', ch)[2]
    if n > 0 then what = what .. ' ' .. cjson.encode(redis.call('HGETALL', tk)) end
  end
  redis.call('PUBLISH', ch, what)
end

-- A failed task's dead letter, in the call that stores the failure (so a crash cannot part them):
-- `fields` is a JSON object (yadtq.store.dead_letters.entry_json) completed here with Redis time and
-- the error; the list keeps its newest DLQ_KEPT (yadtq.store.dead_letters).
local DLQ_KEPT = 10000
local function dead_letter(key, fields, err)
  if fields == '' then return end
  redis.call('LPUSH', key, '{"ts":' .. now .. ',"error":' .. cjson.encode(err) .. ',' .. string.sub(fields, 2))
  redis.call('LTRIM', key, 0, DLQ_KEPT - 1)
end

-- A JSON string as orjson writes it (yadtq.store.dead_letters.entry_json): cjson escapes '/', orjson
-- does not (`DeadLetterStore.forget` looks for a task id as written). A '\/' in cjson's output is
-- always an escaped '/': a backslash itself is written '\\'.
local function jstr(s)
  return (string.gsub(cjson.encode(s), '\\/', '/'))
end

-- A claim's dead letter fields, in entry_json's order (task_id, task, topic, queue, partition, offset,
-- size, raw): composed only when the claim quarantines its task, from what the claim carries.
local function claim_letter(fields, raw, id, task, offset)
  if raw == '' then return fields end
  return '{"task_id":' .. jstr(id) .. ',"task":' .. jstr(task) .. ',' .. fields .. ',"offset":' .. offset ..
    ',"size":' .. #raw .. ',"raw":' .. jstr(raw) .. '}'
end

local function event(ek, text)
  redis.call('RPUSH', ek, now .. ' ' .. text)
  redis.call('LTRIM', ek, -50, -1)
end

local limits_of = limits_reader(KEYS[8])  -- lib/limits.lua

-- Seconds a booked task is published ahead of its start; the worker holds it until then ('early').
local BOOK_LEAD = 0.5
-- Seconds the booked starts may slip behind their booking (an earlier start ran late) and still be
-- kept; a task later than that is booked again behind the others.
local MAX_SLIP = 1.0

-- nil when a new run may start now (a rate's next start is then taken), else a verdict.
-- Rates are GCRA: one start per interval T, a start allowed up to 0.9 T early, so a claim that
-- comes a little late does not lose its turn, and no 1-second window holds more than rate + 1.
-- A queued task without an ordering key (`may_book`) over its rate is booked the next start not
-- booked yet (bk: one past the last booked; its record's `limit_slot`), and claimed again then under
-- the same GCRA: the worker holds it until its start ('early'), so a saturated rate costs two claims
-- per task, never a loop. When its worker asks (`may_park`: its partition's buffer is crowded, and
-- waiting there would pause the partition and hold back the tasks behind it), a task booked more
-- than BOOK_LEAD ahead is parked in the retries set until BOOK_LEAD before its start instead, as a
-- parked retry waits; the worker commits past it, and it is published again then. Tasks not booked
-- wait behind the booked ones. A booked task whose start came while the GCRA is not ready yet (an
-- earlier start ran late, or it came back late) keeps its place and is claimed again at the next
-- start allowed (after the booked ones due before it, Keys.limit_started), so no start goes unused
-- and the starts never bunch up; one more than MAX_SLIP late is booked again behind them. A keyed task (its key's
-- order) and a lapsed run (its record is not queued) wait in place with no booking, as before.
-- A task over its max_concurrency waits in place and is tried again in 0.1 s; when its worker asks
-- (`may_park`), it is parked for a lease instead (there is no start to book), and noted in the
-- name's parked set, so the end of a run makes the first one due at once (lib/limits.lua).
local function over_limit(lim, rk, ck, bk, slot, may_book, may_park, id, tk, ek)
  if lim.max then
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', now)  -- runs whose lease lapsed (a dead worker's) count no more
    if redis.call('ZCARD', ck) >= lim.max then
      if not may_park then return {'limited', '0.1', 'concurrency'} end
      -- no start to book: parked for a lease (a run ends by then, or its holder's lease lapses)
      redis.call('HSET', tk, 'due', tostring(now + lease))
      redis.call('ZADD', KEYS[7], now + lease, id)
      note_parked(ck, id, now, lease)
      event(ek, 'over its concurrency limit: tries again in ' .. string.format('%.1fs', lease) ..
        ' or when a place frees')
      return {'parked', tostring(now + lease)}
    end
  end
  if lim.interval then
    local T = lim.interval
    local tat = tonumber(redis.call('GET', rk) or '0')
    local booked = tonumber(slot or '')
    if booked and booked > now then return {'early', tostring(booked), tostring(now), 'rate'} end
    local tail = tonumber(redis.call('GET', bk) or '0')
    local turn = booked and tat or math.max(tat, tail)
    if turn - 0.9 * T > now then
      if booked and turn - 0.9 * T - now <= MAX_SLIP then
        -- Its start came, but an earlier booked start ran late and the GCRA moved on by as much: it
        -- keeps its place and is claimed again at the next start the GCRA allows, after the booked
        -- tasks still due before it (one start each). Booked again behind the others instead, its
        -- start would go unused and the rate would fall below its limit for each late start.
        local last = tonumber(redis.call('GET', bk .. ':started') or '') or (booked - T)
        local behind = math.min(math.max(booked - last - T, 0), MAX_SLIP)
        return {'early', tostring(turn - 0.9 * T + behind), tostring(now), 'rate'}
      end
      if not may_book then return {'limited', tostring(turn - 0.9 * T - now), 'rate'} end
      turn = math.max(tat, tail, now)
      redis.call('SET', bk, tostring(turn + T), 'EX', math.ceil(turn + T - now) + 60)
      redis.call('HSET', tk, 'limit_slot', tostring(turn))
      if may_park and turn - BOOK_LEAD > now then
        local due = turn - BOOK_LEAD
        redis.call('HSET', tk, 'due', tostring(due))
        redis.call('ZADD', KEYS[7], due, id)
        event(ek, 'over its rate limit: waits for its start in ' .. string.format('%.1fs', turn - now))
        return {'parked', tostring(due)}
      end
      return {'early', tostring(turn), tostring(now), 'rate'}
    end
    local nxt = math.max(tat, now) + T
    redis.call('SET', rk, tostring(nxt), 'EX', math.ceil(nxt - now) + 60)
    if booked then redis.call('SET', bk .. ':started', tostring(booked), 'EX', math.ceil(T) + 60) end
  end
  return nil
end

local function count_run(lim, ck, tk, id, lease_until)
  if lim.max then
    redis.call('ZADD', ck, lease_until, tk)
    redis.call('HSET', tk, 'limit_key', ck)
    redis.call('ZREM', ck .. ':parked', id)  -- it ran: no place to wake it for
  end
end

do
  local channels = {}
  for i = 0, n_out - 1 do
    local outcome = ARGV[7 + 7 * i + 2]
    if outcome == 'success' or outcome == 'failed' then channels[#channels + 1] = KEYS[12 + 3 * i] .. ':changes' end
  end
  for i = 1, #channels, CHUNK do
    local counts = redis.call('PUBSUB', 'NUMSUB', unpack(channels, i, math.min(i + CHUNK - 1, #channels)))
    for j = 1, #counts, 2 do listeners[counts[j]] = counts[j + 1] end
  end
end

local k = 12
local a = 7
local done = 0
for _ = 1, n_out do
  local id, fence, outcome, result, err = ARGV[a], ARGV[a+1], ARGV[a+2], ARGV[a+3], ARGV[a+4]
  local park, dl = tonumber(ARGV[a+5]), ARGV[a+6]
  local tk, ek, dk = KEYS[k], KEYS[k+1], KEYS[k+2]
  a = a + 7
  k = k + 3
  local cur = redis.call('HMGET', tk, 'fence', 'status', 'owner', 'workflow', 'limit_key', 'queue')
  local want = outcome == 'retry' and 'queued' or outcome
  -- 'cancelled': cancel.lua already ended the record; only the same-step check below applies
  if cur[1] == fence and cur[2] == 'processing' and outcome ~= 'cancelled' then
    -- A task that ends keeps none of what only a queued or running task needs (Redis memory per
    -- finished task): its lease and owner (renew, progress and confirm read them of a running one;
    -- a step sent again is known by its fence, below), its submit's token (unsubmit.lua, of a queued
    -- one) and its message's broker epoch (the monitor's, of a queued or running one).
    if outcome == 'retry' then
      redis.call('HDEL', tk, 'lease')
    else
      redis.call('HDEL', tk, 'lease', 'owner', 'submit_token', 'epoch')
    end
    local lk = cur[5]
    if lk then
      redis.call('ZREM', lk, tk)
      redis.call('HDEL', tk, 'limit_key')
      wake_parked(lk, KEYS[7], prefix, now)
    end
    if outcome == 'success' then
      redis.call('HSET', tk, 'status', 'success', 'result', result, 'finished', now)
      move(id, 'processing', 'success', cur[6])
      done = done + 1  -- KEYS[5] counted once, after the outcomes
      announce(tk, 'success')
    elseif outcome == 'retry' then
      redis.call('HSET', tk, 'status', 'queued', 'error', err)
      redis.call('HINCRBY', tk, 'failures', 1)
      move(id, 'processing', 'queued')
      if park > 0 then
        redis.call('HSET', tk, 'due', now + park)
        redis.call('ZADD', KEYS[7], now + park, id)
      end
      event(ek, 'retry after error: ' .. string.sub(err, 1, 200) .. ' (due in ' .. string.format('%.1f', park) .. 's)')
      announce(tk, 'queued')
    else
      redis.call('HSET', tk, 'status', 'failed', 'result', 'null', 'error', err, 'finished', now)
      redis.call('HINCRBY', tk, 'failures', 1)
      move(id, 'processing', 'failed', cur[6])
      redis.call('HINCRBY', KEYS[6], worker, 1)
      event(ek, 'failed by ' .. worker .. ': ' .. string.sub(err, 1, 200))
      dead_letter(dk, dl, err)
      announce(tk, 'failed')
    end
    -- a workflow member: count it and record the next step in this same step (lib/workflow.lua)
    if cur[4] and outcome ~= 'retry' then wf_task_ended(prefix, now, ttl, tk, outcome, result, err) end
    table.insert(out, 'ok')
  elseif cur[1] == fence and cur[2] == want and (cur[3] == incarnation or (not cur[3] and want ~= 'queued')) then
    -- the same step sent again after a lost connection: already applied; or the end of a run
    -- cancel.lua had ended: its max_concurrency count (if any) ends now, with the run.
    -- An end this call's branch above stored has no owner left: the fence, given to one claim only,
    -- says it was this run's. (A task back in `queued` lost its owner to release or requeue, not to
    -- this run's retry; a quarantined one has owner '': neither was stored by this run.)
    local lk = outcome == 'cancelled' and redis.call('HGET', tk, 'limit_key')
    if lk then
      redis.call('ZREM', lk, tk)
      redis.call('HDEL', tk, 'limit_key')
      wake_parked(lk, KEYS[7], prefix, now)
    end
    table.insert(out, 'ok')
  else
    table.insert(out, 'fenced')
  end
end
if done > 0 then redis.call('HINCRBY', KEYS[5], worker, done) end
flush_moves()

-- task id -> lease end of a claim made in this call: a second message of that task in the same step
-- is busy, never a second 'run' (the "our own claim" branch below would hand it out again)
local claimed_here = {}
while a <= #ARGV do
  local id = ARGV[a]
  local tk, ek, wk, rk, ck, bk, dk = KEYS[k], KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], KEYS[k+5], KEYS[k+6]
  local digest = ARGV[a+9]
  -- One read of all a claim looks at and a 'run' verdict returns (10..17: fence, attempts, args, kwargs,
  -- tries, time_limit, failures, lost_runs; a claim changes none of 12..16 before it returns them).
  local rec = redis.call('HMGET', tk, 'status', 'digest', 'task', 'owner', 'lease', 'due', 'eta', 'expires',
    'limit_slot', 'fence', 'attempts', 'args', 'kwargs', 'tries', 'time_limit', 'failures', 'lost_runs',
    'progress', 'queue')
  local st = rec[1]
  local verdict = nil
  if claimed_here[id] then
    verdict = {'busy', claimed_here[id]}
  elseif not st and redis.call('EXISTS', wk) == 1 then
    verdict = {'done', 'withdrawn'}
  elseif not st then
    -- a message from any Kafka client, with no record yet: create it
    -- (unset options left out, as submit.lua does)
    local fields = {'task', ARGV[a+1], 'args', ARGV[a+2], 'kwargs', ARGV[a+3], 'tries', ARGV[a+4],
      'submitted', ARGV[a+6], 'status', 'queued', 'attempts', 0, 'fence', 0, 'digest', digest}
    for _, f in ipairs({{'time_limit', ARGV[a+5]}, {'key', ARGV[a+10]}, {'queue', ARGV[a+15]}}) do
      if f[2] ~= '' then fields[#fields + 1] = f[1]; fields[#fields + 1] = f[2] end
    end
    redis.call('HSET', tk, unpack(fields))
    local due, exp = nil, nil
    if ARGV[a+11] ~= '' then due = tonumber(ARGV[a+11]) elseif ARGV[a+12] ~= '' then due = now + tonumber(ARGV[a+12]) end
    if ARGV[a+13] ~= '' then exp = tonumber(ARGV[a+13]) elseif ARGV[a+14] ~= '' then exp = now + tonumber(ARGV[a+14]) end
    if due then redis.call('HSET', tk, 'eta', tostring(due)) end
    if exp then redis.call('HSET', tk, 'expires', tostring(exp)) end
    rec[7], rec[8] = due and tostring(due), exp and tostring(exp)
    rec[3], rec[10], rec[11], rec[12], rec[13], rec[14], rec[15], rec[16], rec[17] =
      ARGV[a+1], '0', '0', ARGV[a+2], ARGV[a+3], ARGV[a+4], ARGV[a+5], '0', '0'
    if due and due > now then
      redis.call('HSET', tk, 'status', 'scheduled')
      redis.call('ZADD', KEYS[10], now, id)
      redis.call('ZADD', KEYS[9], due, id)
      event(ek, 'scheduled (record created by worker)')
      st = 'scheduled'
    else
      redis.call('ZADD', KEYS[1], now, id)
      event(ek, 'queued (record created by worker)')
      st = 'queued'
    end
  elseif (rec[2] and rec[2] ~= '' and digest ~= '' and rec[2] ~= digest) or
         ((not rec[2] or rec[2] == '') and rec[3] ~= ARGV[a+1]) then
    verdict = {'foreign', 'task id ' .. id .. ' belongs to another task (' .. (rec[3] or '?') .. ')'}
  end
  if verdict then
    -- decided above
  elseif st == 'success' or st == 'failed' or st == 'cancelled' or st == 'expired' then
    verdict = {'done', st}
  elseif st == 'scheduled' then
    -- its message came early: the scheduler publishes it again once due
    verdict = {'parked', rec[7] or tostring(now)}
  elseif st == 'queued' and tonumber(rec[6] or '0') > now then
    verdict = {'parked', rec[6]}
  elseif st == 'processing' and rec[4] == incarnation then
    -- our own claim, sent again after a lost connection: the same claim
    local r = redis.call('HMGET', tk, 'fence', 'attempts', 'task', 'args', 'kwargs', 'tries', 'time_limit',
      'failures', 'lost_runs')
    local lease_until = now + lease
    redis.call('HSET', tk, 'lease', lease_until)
    local lk = redis.call('HGET', tk, 'limit_key')
    if lk then redis.call('ZADD', lk, 'XX', lease_until, tk) end
    verdict = {'run', r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tostring(lease_until), r[9] or '0'}
  elseif st == 'processing' and tonumber(rec[5] or '0') > now then
    verdict = {'busy', rec[5]}
  elseif st == 'queued' and tonumber(rec[7] or '') and tonumber(rec[7]) > now then
    -- published ahead of its eta (the schedule's lead): the worker holds it until then
    verdict = {'early', rec[7], tostring(now)}
  elseif tonumber(rec[8] or '') and now >= tonumber(rec[8]) then
    -- not started before it expired (a late message, or a retry after its expiry): it never runs
    redis.call('HSET', tk, 'status', 'expired', 'result', 'null', 'finished', now,
      'error', 'expired: not started before ' .. rec[8])
    redis.call('HDEL', tk, 'lease', 'owner', 'due')
    move(id, st, 'expired', ARGV[a+15])
    event(ek, 'expired: not started before its expiry')
    announce(tk, 'expired')
    verdict = {'done', 'expired'}
  else
    local lim = limits_of(ARGV[a+1])
    local may_book = st == 'queued' and ARGV[a+10] == ''
    verdict = over_limit(lim, rk, ck, bk, rec[9], may_book, may_book and ARGV[a+16] == '1', id, tk, ek)
    local lost = rec[17] or '0'
    if not verdict and st == 'processing' then
      -- its worker died or froze mid-run: a run cut off
      lost = redis.call('HINCRBY', tk, 'lost_runs', 1)
      local prev = redis.call('HGET', tk, 'worker') or '?'
      local by = redis.call('HGET', tk, 'lost_by')
      by = (by and by ~= '') and (by .. ', ' .. prev) or prev
      redis.call('HSET', tk, 'lost_by', by)
      event(ek, 'run cut off on ' .. prev .. ' (' .. lost .. ' of ' .. max_lost .. ')')
      if lost >= max_lost then
        local err = 'quarantined: its worker died ' .. lost .. ' times while running it (' .. by .. ')'
        redis.call('HSET', tk, 'status', 'failed', 'result', 'null', 'error', err, 'finished', now, 'owner', '')
        redis.call('HDEL', tk, 'lease')
        move(id, 'processing', 'failed', ARGV[a+15])
        redis.call('HINCRBY', KEYS[6], worker, 1)
        event(ek, err)
        dead_letter(dk, claim_letter(ARGV[a+17], ARGV[a+18], id, ARGV[a+1], ARGV[a+8]), err)
        wf_task_ended(prefix, now, ttl, tk, 'failed', 'null', err)
        announce(tk, 'failed')
        verdict = {'quarantined', err}
      end
    end
    if not verdict then
      -- (as HINCRBY would: a missing field counts from 0)
      local fence = tostring(math.floor(tonumber(rec[10] or '0')) + 1)
      local attempts = math.floor(tonumber(rec[11] or '0')) + 1
      local lease_until = now + lease
      -- The record notes the queue it ran from; the default one as no field (as submit.lua writes it).
      if ARGV[a+15] ~= '' then
        if rec[19] ~= ARGV[a+15] then redis.call('HSET', tk, 'queue', ARGV[a+15]) end
      elseif rec[19] then
        redis.call('HDEL', tk, 'queue')
      end
      redis.call('HSET', tk, 'status', 'processing', 'worker', worker, 'owner', incarnation, 'fence', fence,
        'attempts', tostring(attempts), 'lease', lease_until, 'started', now, 'partition', ARGV[a+7],
        'offset', ARGV[a+8])
      -- a new attempt starts from nothing (progress_message is only ever written with progress)
      if rec[6] or rec[9] or rec[18] then redis.call('HDEL', tk, 'due', 'limit_slot', 'progress', 'progress_message') end
      if rec[7] then redis.call('ZREM', KEYS[9], id) end  -- a delayed task: published, now claimed
      count_run(lim, ck, tk, id, lease_until)
      move(id, st, 'processing')
      announce(tk, 'processing')
      if attempts > 1 then event(ek, 'attempt ' .. attempts .. ' by ' .. worker) end
      verdict = {'run', fence, tostring(attempts), rec[3], rec[12], rec[13], rec[14], rec[15], rec[16],
        tostring(lease_until), tostring(lost)}
    end
  end
  if verdict[1] == 'run' then claimed_here[id] = verdict[10] end
  table.insert(out, verdict)
  a = a + 19
  k = k + 7
end
flush_moves()
return out
