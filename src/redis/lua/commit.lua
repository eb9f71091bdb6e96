-- COMMIT (update, step 2): only while the caller still holds the lock (token ARGV[5]), releases
-- it and writes field ARGV[6]: ARGV[7] "1" sets it to ARGV[8] (unless that adds a key past
-- ARGV[9], max keys, or grows the session past ARGV[10] bytes), "0" removes it.
-- Answers "ok" and the metadata; {"lost"} when the lock expired or passed to another caller
-- (nothing written); {"gone"}, {"toomany"}, {"toobig", size}.
if redis.call('GET', lock) ~= token then return {'lost'} end
redis.call('DEL', lock)
if not load(true) then return {'gone'} end
if ARGV[7] == '1' then
  local refused = put(ARGV[6], ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10]))
  if refused then
    slide()
    return refused
  end
else
  drop(ARGV[6])
end
slide()
return reply()
