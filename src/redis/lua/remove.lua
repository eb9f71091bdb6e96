-- REMOVE: deletes field ARGV[6].
-- Answers "ok", the metadata and 1 when the field was there (else 0); {"gone"}, {"locked"}.
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
local n = drop(ARGV[6])
slide()
return reply(n)
