-- KEYS: lists the fields starting with the prefix ARGV[9].
-- Answers "ok", the metadata and an array: in the plain layout their names after the prefix;
-- sealed, the fields and their values (name, value, ...), which the caller opens for the key
-- names; {"gone"}, {"stale"}.
if not load(true) then return missing end
local p = ARGV[9]
local out = {}
if form == '' then
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, #p) == p then out[#out + 1] = string.sub(f, #p + 1) end
  end
else
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #p) == p then
      out[#out + 1] = all[i]
      out[#out + 1] = all[i + 1]
    end
  end
end
slide()
return reply(out)
