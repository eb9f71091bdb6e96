-- Size helpers (after prelude.lua, for the scripts that write or delete values).
--
-- Values live in fields "d<scope length>:<scope><key>" (the plain layout) or "e..." (sealed,
-- see redis/sealed.rs); `b`, when present, holds the session's size as
-- limits.max_session_bytes counts it (names and values, unsealed), kept by every script that
-- writes or deletes a value. The helpers take `b` as the script loaded it (false: absent).
--
-- The number of values: every field but the four of the metadata, `i` (as loaded, m[5]), `k`
-- (m[6]) and `b` (`b` as loaded, or nil: looked up).
local function data_len(b)
  if b == nil then b = redis.call('HEXISTS', key, 'b') == 1 end
  return redis.call('HLEN', key) - 4 - (m[5] and 1 or 0) - (m[6] and 1 or 0) - (b and 1 or 0)
end
-- The scope and key bytes of plain value field f.
local function names(f)
  return #f - 2 - #string.match(f, '^d(%d+):')
end
-- What limits.max_session_bytes counts of value field f storing n bytes: its scope, key and
-- value. A sealed field's box holds the names, and 53 bytes more (SEALED_EXTRA in sealed.rs).
local function weight(f, n)
  if string.byte(f, 1) == 101 then return n - 53 end
  return names(f) + n
end
-- Whether field f holds a value (metadata fields are one letter).
local function is_value(f)
  local c = string.byte(f, 1)
  return #f > 1 and (c == 100 or c == 101)
end
-- The byte cap of the loaded session: limits.max_session_bytes `max_bytes`, or for a session
-- nobody is logged into limits.max_anonymous_session_bytes `max_anonymous` (as
-- `session_bytes_of(0)` passes it: never more than max_bytes). Arguments as text.
local function cap(max_bytes, max_anonymous)
  if m[1] == '0' then return tonumber(max_anonymous) end
  return tonumber(max_bytes)
end
-- The session's size: `b`, or for a session written before `b` was kept, counted once here.
local function size(b)
  if b then return tonumber(b) end
  local n = 0
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if is_value(f) then n = n + weight(f, redis.call('HSTRLEN', key, f)) end
  end
  return n
end
