-- Undoes a submit whose message could not be published: deletes the record only while it is
-- still this submit's own, untouched `queued` (or `scheduled`) record (no worker claimed it), and
-- leaves a `withdrawn` marker for `ARGV[3]` seconds so a message that landed after all is refused.
-- KEYS[1] task:<id>   KEYS[2] status:queued   KEYS[3] withdrawn:<id>
-- KEYS[4] status:scheduled   KEYS[5] scheduled (due set)
-- ARGV[1] id  ARGV[2] submit token  ARGV[3] marker TTL (seconds)
-- Returns 1 when undone, 0 when the task stays (claimed, or not this submit's record).
local cur = redis.call('HMGET', KEYS[1], 'status', 'submit_token', 'attempts')
if (cur[1] ~= 'queued' and cur[1] ~= 'scheduled') or (cur[2] or '') ~= ARGV[2] or tonumber(cur[3] or '0') ~= 0 then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]))
return 1
