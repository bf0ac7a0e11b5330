-- Notes that one partition reached an end marker; one end run per topic: a new end id starts
-- a fresh set of partitions seen.
-- KEYS[1] end:<topic> (hash: id, p<partition> -> time seen, completed)
-- ARGV[1] end id, ARGV[2] partition, ARGV[3] number of partitions, ARGV[4] caller's time
-- Returns 1 once every partition has seen this end id (the run is over), else 0.
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'id', ARGV[1])
end
redis.call('HSET', KEYS[1], 'p' .. ARGV[2], ARGV[4])
if redis.call('HLEN', KEYS[1]) - 1 >= tonumber(ARGV[3]) then
  redis.call('HSETNX', KEYS[1], 'completed', ARGV[4])
  return 1
end
return 0
