-- DESTROY: deletes the session, only if its user is ARGV[9] when that is not empty.
-- Answers {"done", userid} when it deleted it, else {"done", nil}.
local u = redis.call('HGET', key, 'u')
if not u then return {'done', false} end
if ARGV[9] ~= '' and u ~= ARGV[9] then return {'done', false} end
redis.call('DEL', key)
return {'done', u}
