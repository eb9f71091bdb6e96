-- CLEAR: deletes every field starting with ARGV[6] (a scope's prefix, or "d" for all).
-- Answers "ok" and the metadata; {"gone"}, {"locked"}.
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
local p = ARGV[6]
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, #p) == p then drop(f) end
end
slide()
return reply()
