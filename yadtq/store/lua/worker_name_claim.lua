-- Claims a live worker name for one incarnation (worker_names.py: claim_worker_name).
-- KEYS[1]  the name's hash (Keys.worker_name): incarnation, host, pid, since, space
-- ARGV[1]  incarnation claiming the name
-- ARGV[2]  lease in milliseconds
-- ARGV[3]  host of the claimant
-- ARGV[4]  pid of the claimant
-- ARGV[5]  an incarnation known to be dead that may be replaced ('' for none)
-- ARGV[6]  process space of the claimant (boot id and pid namespace: worker_names.process_space)
-- Returns 1 when the name is now held by ARGV[1], 0 when another live incarnation holds it.
local holder = redis.call('HGET', KEYS[1], 'incarnation')
if holder and holder ~= ARGV[1] and holder ~= ARGV[5] then
  return 0
end
local since = redis.call('HGET', KEYS[1], 'since')
if holder ~= ARGV[1] then
  since = redis.call('TIME')[1]
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'incarnation', ARGV[1], 'host', ARGV[3], 'pid', ARGV[4], 'since', since,
           'space', ARGV[6] or '')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
