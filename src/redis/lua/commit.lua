-- COMMIT (update, step 2): only while the caller still holds the lock (token ARGV[5]), releases
-- it and writes field ARGV[9]: ARGV[10] "1" sets it to ARGV[11] (unless that adds a key past
-- ARGV[12], max keys, or grows the session past ARGV[13] bytes, ARGV[14] for an anonymous
-- one), "0" removes it.
-- Answers "ok" and the metadata; {"lost"} when the lock expired or passed to another caller
-- (nothing written); {"gone"}, {"stale"}, {"toomany"}, {"toobig", size, cap}.
if redis.call('GET', lock) ~= token then return {'lost'} end
redis.call('DEL', lock)
if not load(true, 'b') then return missing end
if ARGV[10] == '1' then
  local refused = put(ARGV[9], ARGV[11], tonumber(ARGV[12]), ARGV[13], ARGV[14], m[7], length(ARGV[9]))
  if refused then return refused end
else
  take(ARGV[9], m[7])
end
return reply()
