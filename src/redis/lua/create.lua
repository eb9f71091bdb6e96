-- CREATE: a new anonymous session at now. ARGV[9], unless empty: the live-sessions cap.
-- ARGV[10], ARGV[11] with KEYS[3]: the creation event (see `created` in creating.lua).
-- Answers {"new", now} (the caller knows the rest of the metadata); {"full"} when DBSIZE
-- reaches the cap; {"exists"} when the key is taken. A sealed session gets the layout mark `k`.
if full(ARGV[9]) then return {'full'} end
if redis.call('EXISTS', key) == 1 then return {'exists'} end
m = {'0', '0', now, now}
if form == '' then
  slide('u', '0', 'p', '0', 'c', now, 'a', now)
else
  slide('u', '0', 'p', '0', 'c', now, 'a', now, 'k', form)
end
created(10)
return {'new', now}
