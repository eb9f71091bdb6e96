-- DESTROY (any layout): deletes the session, only if its user is one of ARGV[9..] (each form
-- the user may be stored in, see redis/sealed.rs: its id as text, `#` and its pseudonym) when
-- ARGV[9] is not empty. A sealed `u` is compared by its first 33 bytes (`#`, the pseudonym).
-- Answers {"done", userid} (as stored) when it deleted it, else {"done", nil}.
local u = redis.call('HGET', key, 'u')
if not u then return {'done', false} end
if ARGV[9] ~= '' then
  local who = u
  if string.byte(u, 1) == 35 then who = string.sub(u, 1, 33) end
  local mine = false
  for i = 9, #ARGV - 1 do
    if ARGV[i] == who then mine = true end
  end
  if not mine then return {'done', false} end
end
redis.call('DEL', key)
return {'done', u}
