-- GET: reads field ARGV[9]; a use.
-- Answers "ok", the metadata and the value (nil when absent); {"gone"}, {"stale"}.
if not load(true, ARGV[9]) then return missing end
slide()
return reply(m[7])
