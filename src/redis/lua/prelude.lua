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
-- `m` holds {userid, persistent, created, last_access, i, k} as text (see `slide`; `k` the
-- layout mark, see redis/sealed.rs), then the fields `load` was asked for. Common arguments: see scripts.rs.
local key, lock = KEYS[1], KEYS[2]
local now, token = ARGV[1], ARGV[5]
-- The caller's layout, always the last argument (see redis/sealed.rs): the names key's id, '' for
-- the plain layout, '*' for a script that works on any (metadata, rotation, migration).
local form = ARGV[#ARGV]
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
-- What this script's use asks the caller to ensure of the user's index (`index.rs`):
-- {userid, the time (ms) it must last to}, or nil. Every answer ends with it (nil: false; see
-- scripts.rs).
local index
-- `save(...)`, then sets Redis's expiry from the metadata: sliding, both lifetimes, the
-- absolute cap (ARGV[2..4]). A logged-in session keeps its user's index alive: `i` (m[5]) is
-- the latest time the index is known to last to (set at login; absent in a session from before
-- it was kept); when the new expiry passes it, `i` moves to that expiry and a day, written in
-- the same HSET, and `index` asks the caller to make the index last as long. So that costs a
-- command of the caller's about once a day per session; other uses of a logged-in session pay
-- only for comparing the expiry with `i` as numbers.
local function slide(...)
  local ttl = m[2] == '1' and ARGV[3] or ARGV[2]
  local e
  if m[4] ~= now or ARGV[4] ~= '0' then
    -- A last access after now (another instance's clock), or an absolute lifetime: as numbers.
    e = tonumber(m[4]) + tonumber(ttl)
    if ARGV[4] ~= '0' then e = math.min(e, tonumber(m[3]) + tonumber(ARGV[4])) end
    ttl = math.max(1, e - tonumber(now))
  end
  if m[1] ~= '0' then
    e = e or tonumber(now) + tonumber(ttl)
    if not m[5] or e > tonumber(m[5]) then
      local d = e + 86400000
      m[5] = string.format('%d', d)
      index = {m[1], d}
      -- After the caller's fields, so that this `i` wins over one among them.
      local fields = {...}
      fields[#fields + 1] = 'i'
      fields[#fields + 1] = m[5]
      save(unpack(fields))
      redis.call('PEXPIRE', key, ttl)
      return
    end
  end
  save(...)
  redis.call('PEXPIRE', key, ttl)
end
