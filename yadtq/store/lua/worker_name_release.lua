-- Frees a worker name, but only if this incarnation still holds it (worker_names.py: release_worker_name).
-- KEYS[1]  the name's hash (Keys.worker_name)
-- ARGV[1]  incarnation that claimed the name
-- Returns 1 when released, 0 when it was not held by ARGV[1].
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
