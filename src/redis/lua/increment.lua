-- INCREMENT: adds ARGV[7] to the integer in field ARGV[6] (absent = 0); ARGV[8] max keys,
-- ARGV[9] max value bytes, ARGV[10] max session bytes.
-- Answers "ok", the metadata and the new value as text; {"gone"}, {"locked"}, {"toomany"},
-- {"toolarge", size}, {"toobig", size}; {"fallback"} when the stored value or the sum is not
-- an integer Lua adds exactly: the caller then uses the general update path, which decodes
-- with serde like the memory backend.
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
local v = redis.call('HGET', key, ARGV[6])
local n = 0
if v then
  if not (v == '0' or string.match(v, '^-?[1-9]%d*$')) or #v > 15 then return {'fallback'} end
  n = tonumber(v)
elseif data_len() >= tonumber(ARGV[8]) then
  slide()
  return {'toomany'}
end
local r = n + tonumber(ARGV[7])
if r >= 9007199254740992 or r <= -9007199254740992 then return {'fallback'} end
local s = string.format('%.0f', r)
if #s > tonumber(ARGV[9]) then return {'toolarge', #s} end
local refused = put(ARGV[6], s, tonumber(ARGV[8]), tonumber(ARGV[10]))
slide()
if refused then return refused end
return reply(s)
