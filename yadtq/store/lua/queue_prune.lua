-- Drops from a named queue's index the ids that are neither queued nor processing (finished,
-- cancelled, or gone), keeping the others with their scores. Atomic, so an id queued meanwhile
-- (its index and `queued` are written in one script) is never dropped; one still processing
-- stays, so a retry that puts it back to `queued` counts in its queue's depth again.
-- A delayed task (scheduled) stays too: it is queued in it once due.
-- KEYS[1] queue:<name>   KEYS[2] status:queued   KEYS[3] status:processing   KEYS[4] scratch key
-- KEYS[5] status:scheduled
redis.call('ZUNIONSTORE', KEYS[4], 3, KEYS[2], KEYS[3], KEYS[5], 'WEIGHTS', 0, 0, 0)
local kept = redis.call('ZINTERSTORE', KEYS[1], 2, KEYS[1], KEYS[4], 'WEIGHTS', 1, 0)
redis.call('DEL', KEYS[4])
return kept
