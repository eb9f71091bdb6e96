-- CLEAR: deletes every field starting with ARGV[9] (a scope's prefix, or that of every value:
-- "d" plain, "e" sealed).
-- Answers "ok" and the metadata; {"gone"}, {"stale"}, {"locked"}.
if not load(true, 'b') then return missing end
if busy() then
  save()
  return {'locked'}
end
local p, b, dropped = ARGV[9], m[7], 0
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, #p) == p then
    local n
    n, b = drop(f, b)
    dropped = dropped + n
  end
end
if dropped > 0 then
  slide('b', b)
else
  slide()
end
return reply()
