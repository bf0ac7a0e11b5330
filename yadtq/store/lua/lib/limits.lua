-- Rate and concurrency limits of a task name, read from the limits hash `key`: `set:` (run time)
-- over `code:` (decorator), per field; a JSON null is explicitly no limit. Cached for the call.
local function limits_reader(key)
  local cache = {}
  return function(task)
    local got = cache[task]
    if got then return got end
    local raw = redis.call('HMGET', key, 'set:' .. task, 'code:' .. task)
    local set = raw[1] and cjson.decode(raw[1]) or {}
    local code = raw[2] and cjson.decode(raw[2]) or {}
    local function pick(f)
      local v = set[f]
      if v == nil then v = code[f] end
      if v == cjson.null then return nil end
      return v
    end
    got = {interval = pick('interval'), max = pick('max_concurrency')}
    cache[task] = got
    return got
  end
end

-- Tasks parked in Redis over their task name's max_concurrency, included (`--! include limits`) by
-- the scripts that count runs or end them: step (claims and outcomes) and release.
--
-- A task over its max_concurrency whose worker's buffer is crowded is parked in the retries set for
-- a lease (step.lua over_limit): there is no start to book, and a place frees when a run ends or its
-- lease lapses. It is also noted in <limit:running key>:parked (Keys.limit_parked), task id -> the
-- time it was parked until, so the step that ends a run (its count leaves limit:running) makes the
-- first one parked due at once: it is published again within a look of ParkedRetries, not a lease
-- later. One place, one task woken; the others wait their turn (or their lease, if no run ends).

-- Notes `id` as parked over the limit counted in `ck` until now + lease.
local function note_parked(ck, id, now, lease)
  local pk = ck .. ':parked'
  redis.call('ZADD', pk, now + lease, id)
  redis.call('EXPIRE', pk, math.ceil(lease) * 4 + 60)  -- members leave when they run; a stale set goes
end

-- A run counted in `lk` (a limit:running key) ended: the first task still parked over that limit is
-- made due now (`prefix`: the keys' prefix). A parked task that is already due
-- (being published) takes the place; one that ran or ended meanwhile is dropped and the next tried.
local function wake_parked(lk, retries, prefix, now)
  local pk = lk .. ':parked'
  for _ = 1, 10 do
    local id = redis.call('ZRANGE', pk, 0, 0)[1]
    if not id then return end
    redis.call('ZREM', pk, id)
    local tk = prefix .. 'task:' .. id
    local score = redis.call('ZSCORE', retries, id)
    if score and redis.call('HGET', tk, 'status') == 'queued' then
      local due = tonumber(redis.call('HGET', tk, 'due') or '0')
      if due > now then
        redis.call('ZADD', retries, now, id)
        redis.call('HSET', tk, 'due', tostring(now))
        local ek = prefix .. 'events:' .. id
        redis.call('RPUSH', ek, now .. ' a place under its concurrency limit freed: tries again now')
        redis.call('LTRIM', ek, -50, -1)
      end
      return
    end
  end
end
