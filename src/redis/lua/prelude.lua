-- Shared by every script (concatenated before each one, see scripts.rs): the common arguments,
-- the session's metadata `m` and the helpers that load, write, expire and answer it. Answers
-- nothing. Helpers only some scripts need are in load.lua (every script on an existing
-- session), sizes.lua, values.lua and creating.lua.
--
-- Cost, on Redis's one thread: a script reads what it needs in one HMGET (`load`) and writes
-- the session's fields in one HSET (`save`); times stay text (Lua numbers are doubles, and
-- each conversion between text and number costs about as much as a command), compared as
-- numbers by `older` and turned into expiry times by the caller (reply.rs); every helper is a
-- closure made again on each run, so there are few.
--
-- `m` holds {userid, persistent, created, last_access} as text, then the fields `load` was
-- asked for. Common arguments: see scripts.rs.
local key, lock = KEYS[1], KEYS[2]
local now, token = ARGV[1], ARGV[5]
local m
-- The last access before this script's use (nil: a new session); whether the use moved it.
local before, touched
-- Writes the fields `...` (name, value, ...) and the last access when the use moved it, in
-- one HSET (none when there is nothing to write).
local function save(...)
  if touched then
    touched = false
    redis.call('HSET', key, 'a', now, ...)
  elseif select('#', ...) > 0 then
    redis.call('HSET', key, ...)
  end
end
-- `save(...)`, then sets Redis's expiry from the metadata: sliding, both lifetimes, the
-- absolute cap (ARGV[2..4]).
local function slide(...)
  save(...)
  local ttl = m[2] == '1' and ARGV[3] or ARGV[2]
  if m[4] ~= now or ARGV[4] ~= '0' then
    -- A last access after now (another instance's clock), or an absolute lifetime: as numbers.
    local e = tonumber(m[4]) + tonumber(ttl)
    if ARGV[4] ~= '0' then e = math.min(e, tonumber(m[3]) + tonumber(ARGV[4])) end
    ttl = math.max(1, e - tonumber(now))
  end
  redis.call('PEXPIRE', key, ttl)
end
