-- CREATE: a new anonymous session at now. ARGV[6], unless empty: the live-sessions cap.
-- ARGV[7], ARGV[8] with KEYS[3]: the creation event (see `created` in prelude.lua).
-- Answers "ok" and the metadata; {"full"} when DBSIZE reaches the cap; {"exists"} when the
-- key is taken.
if full(ARGV[6]) then return {'full'} end
if redis.call('EXISTS', key) == 1 then return {'exists'} end
redis.call('HSET', key, 'u', '0', 'p', '0', 'c', ARGV[1], 'a', ARGV[1])
m = {'0', '0', ARGV[1], ARGV[1]}
slide()
created(7)
return reply()
