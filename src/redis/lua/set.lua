-- SET: writes field ARGV[6] = ARGV[7], unless that adds a key past ARGV[8] (max keys).
-- Answers "ok" and the metadata; {"gone"}, {"locked"}, {"toomany"}.
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
if redis.call('HEXISTS', key, ARGV[6]) == 0 and data_len() >= tonumber(ARGV[8]) then
  slide()
  return {'toomany'}
end
redis.call('HSET', key, ARGV[6], ARGV[7])
slide()
return reply()
