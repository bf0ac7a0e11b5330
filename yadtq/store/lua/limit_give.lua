-- Redis Cluster only (yadtq.store.cluster_limits): ends admissions made by limit_take.lua. A run
-- that ended (its outcome stored, or given back) leaves limit:running; an admission whose claim did
-- not run (the task was done, busy, delayed...) also gives its rate start back, unless another
-- start was taken since (then the start stays used: a rate is never exceeded, at worst under-used).
-- KEYS per admission: limit:rate:<task>, limit:running:<task>
-- ARGV per admission (3): member, tat before ('' none), tat set ('' to leave the rate alone)
-- Returns the number of admissions given back.
for i = 1, #KEYS / 2 do
  local rk, ck = KEYS[2 * i - 1], KEYS[2 * i]
  local member, before, set = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  redis.call('ZREM', ck, member)
  if set ~= '' and redis.call('GET', rk) == set then
    if before == '' then redis.call('DEL', rk) else redis.call('SET', rk, before, 'KEEPTTL') end
  end
end
return #KEYS / 2
