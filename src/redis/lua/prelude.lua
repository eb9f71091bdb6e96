-- Shared by every script (concatenated before each one, see scripts.rs): the common arguments,
-- the session's metadata `m` and the helpers that load, expire and answer it. Answers nothing.
--
-- `m` holds {userid, persistent, created, last_access} (and after `load`, the last access before
-- it as m[5]). The user id stays a string: Lua numbers are doubles, user ids are u64.
local key, lock = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local vol, per, abs = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local token = ARGV[5]
local m
local function expires()
  local e = tonumber(m[4]) + (m[2] == '1' and per or vol)
  if abs > 0 then e = math.min(e, tonumber(m[3]) + abs) end
  return e
end
-- Loads the live session into m; a use (touch) moves last_access to now. Logical expiry by
-- the engine's clock backs up Redis's own (the two agree with the system clock).
local function load(touch)
  m = redis.call('HMGET', key, 'u', 'p', 'c', 'a')
  if not m[1] then return false end
  if expires() <= now then
    redis.call('DEL', key)
    return false
  end
  m[5] = m[4]
  if touch and tonumber(m[4]) < now then
    m[4] = ARGV[1]
    redis.call('HSET', key, 'a', ARGV[1])
  end
  return true
end
-- Sets Redis's expiry from the metadata: sliding, both lifetimes, the absolute cap.
local function slide()
  redis.call('PEXPIRE', key, math.max(1, expires() - now))
end
-- Another caller's update holds the session.
local function busy()
  local l = redis.call('GET', lock)
  return l and l ~= token
end
local function data_len()
  return redis.call('HLEN', key) - 4
end
-- The "ok" answer: the metadata (layout in reply.rs), then the script's own items.
local function reply(...)
  return {'ok', m[1], m[2], tonumber(m[3]), tonumber(m[4]), expires(), tonumber(m[5] or m[4]), ...}
end
