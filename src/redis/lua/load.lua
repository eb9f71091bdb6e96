-- Loading an existing session (after prelude.lua, for every script but the creating ones).
--
-- Whether time x is before time y, or at it with `at`: times are canonical non-negative
-- integers as text (from ARGV[1]), so the shorter is the smaller.
local function older(x, y, at)
  if #x ~= #y then return #x < #y end
  if at then return x <= y end
  return x < y
end
-- Why `load` found no session to work on: gone, or ("stale") in another layout than the
-- caller's, which the caller migrates before it runs the script again (redis/sealed.rs).
local missing = {'gone'}
-- Loads the live session's metadata into m (m[5]: `i`, see prelude.lua's `slide`; m[6]: `k`), and the
-- fields `...` after it (m[7], ...; false when absent), in one HMGET; a use (touch) moves last_access to now, written by the next
-- `save` (every answer after a touching load saves, `slide` included). Logical expiry by the
-- engine's clock backs up Redis's own (the two agree with the system clock): the session is
-- gone once its last access is at or before ARGV[6] (volatile) or ARGV[7] (persistent), or its
-- creation at or before ARGV[8] (absolute); "" = nothing that old.
local function load(touch, ...)
  m = redis.call('HMGET', key, 'u', 'p', 'c', 'a', 'i', 'k', ...)
  if not m[1] then return false end
  local idle = m[2] == '1' and ARGV[7] or ARGV[6]
  if (idle ~= '' and older(m[4], idle, true)) or (ARGV[8] ~= '' and older(m[3], ARGV[8], true)) then
    redis.call('DEL', key)
    return false
  end
  if form ~= '*' and (m[6] or '') ~= form then
    missing = {'stale'}
    return false
  end
  before = m[4]
  if touch and older(m[4], now) then
    m[4] = now
    touched = true
  end
  return true
end
-- Another caller's update holds the session.
local function busy()
  local l = redis.call('GET', lock)
  return l and l ~= token
end
-- The "ok" answer: the metadata (layout in reply.rs; the expiry is left to the caller, nil
-- here) and the layout mark, then the script's own items.
local function reply(...)
  return {'ok', m[1], m[2], m[3], m[4], false, before or m[4], m[6] or '', ...}
end
