-- GET: reads field ARGV[6]; a use.
-- Answers "ok", the metadata and the value (nil when absent); {"gone"}.
if not load(true) then return {'gone'} end
slide()
return reply(redis.call('HGET', key, ARGV[6]))
