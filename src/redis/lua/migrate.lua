-- MIGRATE (migration, step 2; any layout): only while the caller still holds the lock (token
-- ARGV[5]), releases it, deletes the ARGV[10] fields that follow, writes the (name, value)
-- pairs after them and sets the layout mark `k` to ARGV[9] ('' deletes it). Sizes as limits
-- count them do not change: `b` stays. Not a use.
-- Answers "ok" and the metadata; {"lost"} (nothing written); {"gone"}.
if redis.call('GET', lock) ~= token then return {'lost'} end
redis.call('DEL', lock)
if not load(false) then return missing end
local n, last = tonumber(ARGV[10]), #ARGV - 1
if n > 0 then redis.call('HDEL', key, unpack(ARGV, 11, 10 + n)) end
if last > 10 + n then redis.call('HSET', key, unpack(ARGV, 11 + n, last)) end
if ARGV[9] == '' then
  redis.call('HDEL', key, 'k')
  m[6] = false
else
  redis.call('HSET', key, 'k', ARGV[9])
  m[6] = ARGV[9]
end
return reply()
