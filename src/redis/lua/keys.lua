-- KEYS: lists the fields starting with the prefix ARGV[9].
-- Answers "ok", the metadata and an array of their names after the prefix; {"gone"}.
if not load(true) then return {'gone'} end
local p = ARGV[9]
local out = {}
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, #p) == p then out[#out + 1] = string.sub(f, #p + 1) end
end
slide()
return reply(out)
