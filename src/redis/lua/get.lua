-- GET: reads field ARGV[9]; a use.
-- Answers "ok", the metadata and the value (nil when absent); {"gone"}.
if not load(true, ARGV[9]) then return {'gone'} end
slide()
return reply(m[6])
