-- LOCK_READ (update, step 1): takes the update lock (token ARGV[5], for ARGV[10] ms) and reads
-- field ARGV[9]; a use.
-- Answers "ok", the metadata and the value (nil when absent); {"gone"}, {"stale"}, {"locked"}.
if not load(true, ARGV[9]) then return missing end
if busy() then
  save()
  return {'locked'}
end
redis.call('SET', lock, token, 'PX', ARGV[10])
slide()
return reply(m[7])
