-- Extends the lease on a worker name while its incarnation still holds it (worker_names.py: renew_worker_name).
-- KEYS[1]  the name's hash (Keys.worker_name)
-- ARGV[1]  incarnation that claimed the name
-- ARGV[2]  lease in milliseconds
-- Returns 1 when renewed, 0 when the name was lost (expired, or another incarnation took it).
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
