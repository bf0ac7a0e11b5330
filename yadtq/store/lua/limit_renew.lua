-- Redis Cluster only (yadtq.store.cluster_limits): a running run's entry in limit:running lasts
-- another lease, as renew.lua extends its claim (Redis time). An entry already gone stays gone.
-- KEYS per run: limit:running:<task>   ARGV[1] lease seconds, then per run: member
-- Returns the number of entries renewed.
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local n = 0
for i, ck in ipairs(KEYS) do
  n = n + redis.call('ZADD', ck, 'XX', 'CH', until_, ARGV[i + 1])
end
return n
