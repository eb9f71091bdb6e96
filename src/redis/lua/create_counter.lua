-- CREATE_COUNTER: a new anonymous session at now holding field ARGV[10] = ARGV[11] (an
-- integer, as text: the first increment of a counter), of ARGV[12] bytes as `b` counts them.
-- ARGV[9] as in create.lua; ARGV[13], ARGV[14] with KEYS[3]: the creation event (see `created`
-- in creating.lua). The caller checked the value against the limits (else it creates and
-- increments in two steps, which report any error the same way as always). In the sealed layout the field
-- and value are sealed by the caller, and the session gets the layout mark `k`.
-- Answers {"new", now} (the caller knows the rest of the metadata, and the value); {"full"}
-- and {"exists"} as create.lua.
if full(ARGV[9]) then return {'full'} end
if redis.call('EXISTS', key) == 1 then return {'exists'} end
m = {'0', '0', now, now}
local fields = {'u', '0', 'p', '0', 'c', now, 'a', now, ARGV[10], ARGV[11], 'b', ARGV[12]}
if form ~= '' then
  fields[#fields + 1] = 'k'
  fields[#fields + 1] = form
end
slide(unpack(fields))
created(13)
return {'new', now}
