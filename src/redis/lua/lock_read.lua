-- LOCK_READ (update, step 1): takes the update lock (token ARGV[5], for ARGV[7] ms) and reads
-- field ARGV[6]; a use.
-- Answers "ok", the metadata and the value (nil when absent); {"gone"}, {"locked"}.
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
redis.call('SET', lock, token, 'PX', ARGV[7])
slide()
return reply(redis.call('HGET', key, ARGV[6]))
