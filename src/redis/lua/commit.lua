-- COMMIT (update, step 2): only while the caller still holds the lock (token ARGV[5]), releases
-- it and writes field ARGV[6]: ARGV[7] "1" sets it to ARGV[8] (unless that adds a key past
-- ARGV[9], max keys), "0" removes it.
-- Answers "ok" and the metadata; {"lost"} when the lock expired or passed to another caller
-- (nothing written); {"gone"}, {"toomany"}.
if redis.call('GET', lock) ~= token then return {'lost'} end
redis.call('DEL', lock)
if not load(true) then return {'gone'} end
if ARGV[7] == '1' then
  if redis.call('HEXISTS', key, ARGV[6]) == 0 and data_len() >= tonumber(ARGV[9]) then
    slide()
    return {'toomany'}
  end
  redis.call('HSET', key, ARGV[6], ARGV[8])
else
  redis.call('HDEL', key, ARGV[6])
end
slide()
return reply()
