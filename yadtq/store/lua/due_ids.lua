-- The ids in a due-time sorted set that are due within ARGV[2] seconds (Redis time), earliest
-- first, at most ARGV[1]. Read only: the caller takes them with its own script, which checks each again.
-- KEYS[1] sorted set (id -> due time)   ARGV[1] limit   ARGV[2] lead seconds.   Returns the ids.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + tonumber(ARGV[2]), 'LIMIT', 0, tonumber(ARGV[1]))
