-- Confirms published retries: removes each from the retries set, unless it was parked again
-- since (its score differs from the one take_due armed).
-- KEYS[1] retries.   ARGV: pairs of task id, armed score.   Returns how many were removed.
local n = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tostring(tonumber(score)) == tostring(tonumber(ARGV[i + 1])) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
