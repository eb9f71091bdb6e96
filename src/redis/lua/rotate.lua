-- ROTATE (login/logout; any layout): moves the session to KEYS[3] (same slot) with user
-- ARGV[9] (as stored: see redis/sealed.rs); the old key is gone in the same step. ARGV[12..]:
-- the forms the new user may be stored in (its id, `#` and its pseudonym), by which the old
-- user is compared. ARGV[10] "1": every value is deleted too (a logout with
-- session.logout_clears_data), in the same step. ARGV[11], on a login: the time the caller
-- has made the new user's index last to, the session's `i` (see prelude.lua's `slide`).
-- Answers "ok", the metadata and the previous user id; {"gone"}, {"locked"}, {"exists"} when
-- KEYS[3] is taken.
if not load(true) then return missing end
if busy() then
  save()
  return {'locked'}
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  save()
  return {'exists'}
end
local old, new = m[1], ARGV[9]
-- Remember-me survives a re-login of the same user only.
local same = false
if new ~= '0' then
  local who = old
  if string.byte(old, 1) == 35 then who = string.sub(old, 1, 33) end
  for i = 12, #ARGV - 1 do
    if ARGV[i] == who then same = true end
  end
end
if not (m[2] == '1' and same) then m[2] = '0' end
m[1] = new
local fields = {'u', m[1], 'p', m[2]}
if new ~= '0' then
  m[5] = ARGV[11]
  fields[5], fields[6] = 'i', m[5]
end
redis.call('RENAME', key, KEYS[3])
key = KEYS[3]
if ARGV[10] == '1' then
  -- Values are the fields "d<scope len>:..." or "e..." (keys.rs, sealed.rs); metadata fields
  -- are one letter.
  for _, f in ipairs(redis.call('HKEYS', key)) do
    local c = string.byte(f, 1)
    if #f > 1 and (c == 100 or c == 101) then redis.call('HDEL', key, f) end
  end
  -- No value left: the size max_session_bytes counts is 0.
  fields[#fields + 1] = 'b'
  fields[#fields + 1] = '0'
end
slide(unpack(fields))
return reply(old)
