-- REMOVE: deletes field ARGV[9].
-- Answers "ok", the metadata and 1 when the field was there (else 0); {"gone"}, {"stale"}, {"locked"}.
if not load(true, 'b') then return missing end
if busy() then
  save()
  return {'locked'}
end
return reply(take(ARGV[9], m[7]))
