-- ROTATE (login/logout): moves the session to KEYS[3] (same slot) with user ARGV[6]; the old
-- key is gone in the same step.
-- Answers "ok", the metadata and the previous user id; {"gone"}, {"locked"}, {"exists"} when
-- KEYS[3] is taken.
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'exists'} end
local old, new = m[1], ARGV[6]
-- Remember-me survives a re-login of the same user only.
if not (m[2] == '1' and new ~= '0' and new == old) then m[2] = '0' end
m[1] = new
redis.call('RENAME', key, KEYS[3])
key = KEYS[3]
redis.call('HSET', key, 'u', m[1], 'p', m[2])
slide()
return reply(old)
