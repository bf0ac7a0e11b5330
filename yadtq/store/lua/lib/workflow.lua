-- The workflow engine, included (`--! include workflow`) by the scripts that end or start tasks:
-- step (success, failure, quarantine), reject, cancel, requeue and workflow_start. Because it runs
-- inside the same call that stores a member's outcome, counting a group's members, creating the
-- next step's task record and queueing it for publishing are one atomic step with that outcome:
-- no unlock task polls, two last members cannot both see zero, a crash cannot split them.
--
-- <prefix>workflow:<id> is a hash: state (running|success|failed), result, error, created,
-- finished, failing (members failed now), nodes; then per node i (0 is the root):
--   k:i kind (task|chain|group|chord)   p:i "parent,position" (parent -1: root; -2: an error callback)
--   c:i children, comma-separated        spec:i a task node's call (JSON: id, task, args and kwargs
--   as JSON text, tries, time_limit, immutable, errback, queue: a named queue)   s:i state   r:i result (JSON)   e:i error
--   n:i a group's members still to succeed
-- A new task record is `queued` and sits in the retries sorted set (the outbox) due at `outbox_at`:
-- a worker's ParkedRetries publishes it and confirms with untake, so a crash before the publish
-- only delays it, and a second publish is harmless (the claim runs a task once).

local function wf_prefix(queued_index_key)
  return string.sub(queued_index_key, 1, #queued_index_key - #'status:queued')
end

-- A named queue's index (Keys.queue_index); a record's queue '' (or none) is the default queue.
local function queue_index(prefix, queue)
  if not queue or queue == '' then queue = 'default' end
  return prefix .. 'queue:' .. queue
end

-- Wakes waiters on the workflow's state (`YADTQ.result(workflow id)`), on the channel a task of
-- that id would use (Keys.changes): payload the new state.
local function wf_announce(ctx, state)
  redis.call('PUBLISH', ctx.prefix .. 'task:' .. ctx.id .. ':changes', state)
end

local function wf_children(wk, i)
  local out = {}
  local c = redis.call('HGET', wk, 'c:' .. i)
  if c then
    for x in string.gmatch(c, '[^,]+') do table.insert(out, x) end
  end
  return out
end

local function wf_parent(wk, i)
  local p = redis.call('HGET', wk, 'p:' .. i) or '-1,0'
  local parent, pos = string.match(p, '^(-?%d+),(%d+)$')
  return parent, tonumber(pos)
end

-- Records task node i as a queued task; `lead` (JSON text) goes before its own arguments.
local function wf_create_task(ctx, i, lead)
  local spec = cjson.decode(redis.call('HGET', ctx.wk, 'spec:' .. i))
  local args = spec.args
  if lead and not spec.immutable then
    if args == '[]' then args = '[' .. lead .. ']' else args = '[' .. lead .. ',' .. string.sub(args, 2) end
  end
  redis.call('HSET', ctx.wk, 's:' .. i, 'queued')
  local tk = ctx.prefix .. 'task:' .. spec.id
  if redis.call('EXISTS', tk) == 1 then return end
  redis.call('HSET', tk, 'task', spec.task, 'args', args, 'kwargs', spec.kwargs, 'tries', spec.tries,
    'time_limit', spec.time_limit, 'digest', '', 'submit_token', '', 'submitted', ctx.now,
    'status', 'queued', 'attempts', 0, 'failures', 0, 'fence', 0,
    'epoch', redis.call('GET', ctx.prefix .. 'broker:epoch') or '', 'workflow', ctx.id, 'node', i,
    'queue', spec.queue or '')
  redis.call('ZADD', ctx.prefix .. 'status:queued', ctx.now, spec.id)
  -- its queue's index (depth per queue, as submit.lua keeps it); a named queue is listed
  redis.call('ZADD', queue_index(ctx.prefix, spec.queue), ctx.now, spec.id)
  if spec.queue then redis.call('SADD', ctx.prefix .. 'queues', spec.queue) end
  redis.call('ZADD', ctx.prefix .. 'retries', ctx.outbox_at, spec.id)
  table.insert(ctx.created, spec.id)
end

local wf_finish

-- Starts node i with `lead` (the previous step's result as JSON text, or nil).
local function wf_start(ctx, i, lead)
  local kind = redis.call('HGET', ctx.wk, 'k:' .. i)
  if kind == 'task' then return wf_create_task(ctx, i, lead) end
  redis.call('HSET', ctx.wk, 's:' .. i, 'running')
  local ch = wf_children(ctx.wk, i)
  if kind == 'group' then
    if #ch == 0 then return wf_finish(ctx, i, '[]') end
    redis.call('HSET', ctx.wk, 'n:' .. i, #ch)
    for _, c in ipairs(ch) do wf_start(ctx, c, lead) end
  else  -- chain, chord: the first child (a chord's header group)
    wf_start(ctx, ch[1], lead)
  end
end

-- Node i succeeded with `value` (JSON text): tell its parent.
wf_finish = function(ctx, i, value)
  redis.call('HSET', ctx.wk, 's:' .. i, 'success', 'r:' .. i, value)
  local parent, pos = wf_parent(ctx.wk, i)
  if parent == '-2' then return end
  if parent == '-1' then
    redis.call('HSET', ctx.wk, 'state', 'success', 'result', value, 'finished', ctx.now)
    redis.call('HDEL', ctx.wk, 'error')
    if ctx.ttl > 0 then redis.call('EXPIRE', ctx.wk, ctx.ttl) end
    wf_announce(ctx, 'success')
    return
  end
  local pk = redis.call('HGET', ctx.wk, 'k:' .. parent)
  local ch = wf_children(ctx.wk, parent)
  if pk == 'group' then
    if redis.call('HINCRBY', ctx.wk, 'n:' .. parent, -1) == 0 then
      local vals = {}
      for start = 1, #ch, 1000 do  -- HMGET in slices: unpack has a stack limit
        local fields = {}
        for j = start, math.min(start + 999, #ch) do table.insert(fields, 'r:' .. ch[j]) end
        for _, v in ipairs(redis.call('HMGET', ctx.wk, unpack(fields))) do table.insert(vals, v or 'null') end
      end
      wf_finish(ctx, parent, '[' .. table.concat(vals, ',') .. ']')
    end
  elseif pos < #ch then  -- chain (next step) or chord (header done: the body)
    wf_start(ctx, ch[pos + 1], value)
  else
    wf_finish(ctx, parent, value)
  end
end

local function wf_context(prefix, id, now, ttl, outbox_at)
  return {prefix = prefix, id = id, wk = prefix .. 'workflow:' .. id, now = now, ttl = ttl,
          outbox_at = outbox_at, created = {}}
end

-- A task record with a `workflow` field ended (outcome 'success' with `result`, or 'failed' with `err`).
local function wf_task_ended(prefix, now, ttl, tk, outcome, result, err)
  local meta = redis.call('HMGET', tk, 'workflow', 'node', 'task')
  if not meta[1] then return end
  local ctx = wf_context(prefix, meta[1], now, ttl, now)
  if redis.call('EXISTS', ctx.wk) == 0 then return end  -- the workflow expired
  local i = meta[2]
  local prev = redis.call('HGET', ctx.wk, 's:' .. i)
  local parent = wf_parent(ctx.wk, i)
  if outcome == 'success' then
    if prev == 'success' then return end
    if prev == 'failed' and parent ~= '-2' then
      -- a failed member succeeded after a requeue that was not seen (defensive): resume
      if redis.call('HINCRBY', ctx.wk, 'failing', -1) <= 0 then
        redis.call('HSET', ctx.wk, 'state', 'running')
        redis.call('HDEL', ctx.wk, 'error', 'finished')
      end
    end
    wf_finish(ctx, i, result)
    return
  end
  if prev == 'failed' or prev == 'success' then return end
  redis.call('HSET', ctx.wk, 's:' .. i, 'failed', 'e:' .. i, err)
  if parent == '-2' then return end  -- an error callback that failed fails nothing else
  redis.call('HINCRBY', ctx.wk, 'failing', 1)
  local spec = cjson.decode(redis.call('HGET', ctx.wk, 'spec:' .. i))
  if redis.call('HGET', ctx.wk, 'state') ~= 'failed' then
    redis.call('HSET', ctx.wk, 'state', 'failed', 'finished', now,
      'error', meta[3] .. ' (' .. spec.id .. ') failed: ' .. err)
    wf_announce(ctx, 'failed')
  end
  if spec.errback then
    wf_create_task(ctx, spec.errback, cjson.encode(spec.id) .. ',' .. cjson.encode(err))
  end
end

-- A failed (or cancelled) member was requeued: the workflow runs again once none is failing.
local function wf_task_requeued(prefix, tk)
  local meta = redis.call('HMGET', tk, 'workflow', 'node')
  if not meta[1] then return end
  local wk = prefix .. 'workflow:' .. meta[1]
  if redis.call('HGET', wk, 's:' .. meta[2]) ~= 'failed' then return end
  redis.call('HSET', wk, 's:' .. meta[2], 'queued')
  redis.call('HDEL', wk, 'e:' .. meta[2])
  local parent = wf_parent(wk, meta[2])
  if parent ~= '-2' and redis.call('HINCRBY', wk, 'failing', -1) <= 0 then
    redis.call('HSET', wk, 'state', 'running')
    redis.call('HDEL', wk, 'error', 'finished')
  end
  redis.call('PERSIST', wk)
end
