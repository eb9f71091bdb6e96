-- DESTROY: deletes the session, only if its user is ARGV[6] when that is not empty.
-- Answers {"done", userid} when it deleted it, else {"done", nil}.
local u = redis.call('HGET', key, 'u')
if not u then return {'done', false} end
if ARGV[6] ~= '' and u ~= ARGV[6] then return {'done', false} end
redis.call('DEL', key)
return {'done', u}
