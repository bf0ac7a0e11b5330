-- Stores the progress of running tasks, each only while the caller's claim is current and unexpired
-- (a run cut off, fenced or past its lease writes nothing), and announces it on the record's channel.
-- KEYS: task:<id> per report.   ARGV[1] incarnation, then per report (3): fence, fraction, message.
-- Returns one 1 (stored) or 0 (claim lost) per key.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i, tk in ipairs(KEYS) do
  local a = 2 + (i - 1) * 3
  local cur = redis.call('HMGET', tk, 'fence', 'status', 'owner', 'lease')
  if cur[1] == ARGV[a] and cur[2] == 'processing' and cur[3] == ARGV[1] and tonumber(cur[4] or '0') > now then
    redis.call('HSET', tk, 'progress', ARGV[a + 1], 'progress_message', ARGV[a + 2], 'progress_at', now)
    redis.call('PUBLISH', tk .. ':changes', 'progress')  -- see step.lua's announce
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
