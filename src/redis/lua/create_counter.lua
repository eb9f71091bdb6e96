-- CREATE_COUNTER: a new anonymous session at now holding field ARGV[7] = ARGV[8] (an integer,
-- as text: the first increment of a counter). ARGV[6] as in create.lua; ARGV[9] max keys,
-- ARGV[10] max value bytes, ARGV[11] max session bytes; ARGV[12], ARGV[13] with KEYS[3]: the
-- creation event (see `created` in prelude.lua).
-- Answers "ok", the metadata and the value; {"full"} and {"exists"} as create.lua;
-- {"fallback"}, creating nothing, when either limit refuses the value: the caller then creates
-- and increments in two steps, which report the error the same way as always.
if full(ARGV[6]) then return {'full'} end
if redis.call('EXISTS', key) == 1 then return {'exists'} end
local bytes = names(ARGV[7]) + #ARGV[8]
if tonumber(ARGV[9]) < 1 or #ARGV[8] > tonumber(ARGV[10]) or bytes > tonumber(ARGV[11]) then return {'fallback'} end
redis.call('HSET', key, 'u', '0', 'p', '0', 'c', ARGV[1], 'a', ARGV[1], ARGV[7], ARGV[8], 'b', bytes)
m = {'0', '0', ARGV[1], ARGV[1]}
slide()
created(12)
return reply(ARGV[8])
