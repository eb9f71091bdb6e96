-- Shared by every script (concatenated before each one, see scripts.rs): the common arguments,
-- the session's metadata `m` and the helpers that load, write, expire and answer it. Answers
-- nothing. Helpers only some scripts need are in sizes.lua, values.lua and creating.lua.
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
-- Whether time x is before time y, or at it with `at`: times are canonical non-negative
-- integers as text (from ARGV[1]), so the shorter is the smaller.
local function older(x, y, at)
  if #x ~= #y then return #x < #y end
  if at then return x <= y end
  return x < y
end
-- Loads the live session's metadata into m, and the fields `...` after it (m[5], ...; false
-- when absent), in one HMGET; a use (touch) moves last_access to now, written by the next
-- `save` (every answer after a touching load saves, `slide` included). Logical expiry by the
-- engine's clock backs up Redis's own (the two agree with the system clock): the session is
-- gone once its last access is at or before ARGV[6] (volatile) or ARGV[7] (persistent), or its
-- creation at or before ARGV[8] (absolute); "" = nothing that old.
local function load(touch, ...)
  m = redis.call('HMGET', key, 'u', 'p', 'c', 'a', ...)
  if not m[1] then return false end
  local idle = m[2] == '1' and ARGV[7] or ARGV[6]
  if (idle ~= '' and older(m[4], idle, true)) or (ARGV[8] ~= '' and older(m[3], ARGV[8], true)) then
    redis.call('DEL', key)
    return false
  end
  before = m[4]
  if touch and older(m[4], now) then
    m[4] = now
    touched = true
  end
  return true
end
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
-- Another caller's update holds the session.
local function busy()
  local l = redis.call('GET', lock)
  return l and l ~= token
end
-- The "ok" answer: the metadata (layout in reply.rs; the expiry is left to the caller, nil
-- here), then the script's own items.
local function reply(...)
  return {'ok', m[1], m[2], m[3], m[4], false, before or m[4], ...}
end
