-- INCREMENT (the plain layout; a sealed counter takes swap.lua): adds ARGV[10] to the integer in field ARGV[9] (absent = 0); ARGV[11] max keys,
-- ARGV[12] max value bytes, ARGV[13] max session bytes, ARGV[14] that of an anonymous session.
-- Answers "ok", the metadata and the new value (an integer); {"gone"}, {"stale"}, {"locked"},
-- {"toomany"}, {"toolarge", size}, {"toobig", size, cap}; {"fallback"} when the stored value or the
-- sum is not an integer Lua adds exactly: the caller then uses the general update path, which
-- decodes with serde like the memory backend.
-- A counter that keeps its number of digits takes five commands: HMGET (metadata, the value),
-- GET (the lock), HINCRBY, HSET (the last access), PEXPIRE; `b` is read only when the size
-- changes.
if not load(true, ARGV[9]) then return missing end
if busy() then
  save()
  return {'locked'}
end
local v = m[7]
local n = 0
if v then
  if not (v == '0' or string.match(v, '^-?[1-9]%d*$')) or #v > 15 then
    save()
    return {'fallback'}
  end
  n = tonumber(v)
elseif data_len() >= tonumber(ARGV[11]) then
  slide()
  return {'toomany'}
end
local r = n + tonumber(ARGV[10])
if r >= 9007199254740992 or r <= -9007199254740992 then
  save()
  return {'fallback'}
end
-- The length of r as text (an integer, so without a fraction).
local len, mag, ten = 1, math.abs(r), 10
if r < 0 then len = 2 end
while mag >= ten do
  len = len + 1
  ten = ten * 10
end
if len > tonumber(ARGV[12]) then
  save()
  return {'toolarge', len}
end
-- The size, and so `b`, changes only when the number of digits does.
local old, after = v and #v, nil
if len ~= old then
  old = old or -names(ARGV[9])
  after = size(redis.call('HGET', key, 'b')) - old + len
  if len > old then
    local limit = cap(ARGV[13], ARGV[14])
    if after > limit then
      slide()
      return {'toobig', after, limit}
    end
  end
end
r = redis.call('HINCRBY', key, ARGV[9], ARGV[10])
if after then
  slide('b', after)
else
  slide()
end
return reply(r)
