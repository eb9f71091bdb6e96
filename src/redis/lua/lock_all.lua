-- LOCK_ALL (migration, step 1; any layout): takes the update lock (token ARGV[5], for ARGV[9]
-- ms) and reads every field of the session; not a use.
-- Answers "ok", the metadata and the fields (name, value, ...); {"gone"}, {"locked"}.
if not load(false) then return missing end
if busy() then return {'locked'} end
redis.call('SET', lock, token, 'PX', ARGV[9])
return reply(redis.call('HGETALL', key))
