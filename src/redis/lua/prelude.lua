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
-- Values live in fields "d<scope length>:<scope><key>"; `b`, when present, holds the session's
-- size as limits.max_session_bytes counts it (names and values), kept by every script that
-- writes or deletes a value.
local function data_len()
  return redis.call('HLEN', key) - 4 - redis.call('HEXISTS', key, 'b')
end
-- The scope and key bytes of value field f.
local function names(f)
  return #f - 2 - #string.match(f, '^d(%d+):')
end
-- The session's size: `b`, or for a session written before `b` was kept, counted once here.
local function size()
  local b = redis.call('HGET', key, 'b')
  if b then return tonumber(b) end
  local n = 0
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, 1) == 'd' then n = n + names(f) + redis.call('HSTRLEN', key, f) end
  end
  return n
end
-- Writes value field f = v unless that adds a key past max_keys or grows the session past
-- max_bytes (a write that does not grow it always works). Answers nil when written, else the
-- refusal: {"toomany"} or {"toobig", size it would have}.
local function put(f, v, max_keys, max_bytes)
  local exists = redis.call('HEXISTS', key, f) == 1
  if not exists and data_len() >= max_keys then return {'toomany'} end
  local old = exists and redis.call('HSTRLEN', key, f) or -names(f)
  local after = size() - old + #v
  if #v > old and after > max_bytes then return {'toobig', after} end
  redis.call('HSET', key, f, v, 'b', after)
  return nil
end
-- Deletes value field f; answers 1 when it was there, else 0.
local function drop(f)
  if redis.call('HEXISTS', key, f) == 0 then return 0 end
  local after = size() - names(f) - redis.call('HSTRLEN', key, f)
  redis.call('HDEL', key, f)
  redis.call('HSET', key, 'b', after)
  return 1
end
-- The "ok" answer: the metadata (layout in reply.rs), then the script's own items.
local function reply(...)
  return {'ok', m[1], m[2], tonumber(m[3]), tonumber(m[4]), expires(), tonumber(m[5] or m[4]), ...}
end
-- Whether a creation must be refused: DBSIZE has reached the live-sessions cap `cap` ('' = the
-- caller checked). The event stream KEYS[3], when passed, is not a session: not counted.
local function full(cap)
  if cap == '' then return false end
  local n = redis.call('DBSIZE')
  if KEYS[3] then n = n - redis.call('EXISTS', KEYS[3]) end
  return n >= tonumber(cap)
end
-- With KEYS[3], the event stream (one Redis server; a cluster keeps it in another slot and the
-- caller appends instead), appends this new session's "created" event: ARGV[e] the stream's
-- cap, ARGV[e + 1] the session's handle. Field names as in events.rs.
local function created(e)
  if KEYS[3] then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[e], '*', 'k', 'created', 'u', '0', 's', ARGV[e + 1], 't', ARGV[1])
  end
end
