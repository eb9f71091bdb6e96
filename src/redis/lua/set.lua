-- SET: writes field ARGV[9] = ARGV[10], unless that adds a key past ARGV[11] (max keys) or
-- grows the session past ARGV[12] bytes (max session bytes), ARGV[13] for an anonymous one.
-- Answers "ok" and the metadata; {"gone"}, {"stale"}, {"locked"}, {"toomany"}, {"toobig", size, cap}.
if not load(true, 'b') then return missing end
if busy() then
  save()
  return {'locked'}
end
return put(ARGV[9], ARGV[10], tonumber(ARGV[11]), ARGV[12], ARGV[13], m[7], length(ARGV[9])) or reply()
