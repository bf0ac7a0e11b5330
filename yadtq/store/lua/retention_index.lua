-- Gives finished tasks their expiry: the record notes `expires_at` and the expiry set holds it, so
-- the sweep finds what is due without reading what is not. A task is given one only while it is
-- still in the index entry the caller read (same status, same score): one requeued and finished
-- again since is left to the caller's next pass, which reads its new entry.
-- KEYS[1] retention:expiry, KEYS[2] status:<s> (the index read), then task:<id> per task
-- ARGV[1] the status s, then per task (3): id, its score in status:<s>, expiry (Redis time)
-- Returns how many were given an expiry.
local n = 0
local k = 3
for a = 2, #ARGV, 3 do
  local id, score, at = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local tk = KEYS[k]
  k = k + 1
  local now_score = redis.call('ZSCORE', KEYS[2], id)
  if now_score and tonumber(now_score) == tonumber(score) and redis.call('HGET', tk, 'status') == ARGV[1] then
    redis.call('HSET', tk, 'expires_at', at)
    redis.call('ZADD', KEYS[1], at, id)
    n = n + 1
  end
end
return n
