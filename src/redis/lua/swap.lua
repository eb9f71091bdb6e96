-- SWAP (a sealed counter's increment, redis/ops.rs): writes field ARGV[9] = ARGV[11] only
-- while it still holds ARGV[10] ('' = absent; a box is never empty, and each one is unique),
-- unless that adds a key past ARGV[12] (max keys) or grows the session past ARGV[13] bytes,
-- ARGV[14] for an anonymous one.
-- Answers "ok" and the metadata; {"changed"} when the field holds something else now (the
-- caller reads it again); {"gone"}, {"stale"}, {"locked"}, {"toomany"}, {"toobig", size, cap}.
if not load(true, ARGV[9], 'b') then return missing end
if busy() then
  save()
  return {'locked'}
end
local v = m[7]
if (v or '') ~= ARGV[10] then
  save()
  return {'changed'}
end
return put(ARGV[9], ARGV[11], tonumber(ARGV[12]), ARGV[13], ARGV[14], m[8], v and #v) or reply()
