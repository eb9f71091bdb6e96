-- UNLOCK (update, abandoned): releases the update lock if the caller (token ARGV[5]) still
-- holds it. Answers {"done"}.
if redis.call('GET', lock) == token then redis.call('DEL', lock) end
return {'done'}
