-- Value helpers (after prelude.lua and sizes.lua).
--
-- The length of value field f, nil when there is none.
local function length(f)
  local n = redis.call('HSTRLEN', key, f)
  if n == 0 and redis.call('HEXISTS', key, f) == 0 then return nil end
  return n
end
-- Whether value field f = v fits: not when that adds a key past max_keys or grows the session
-- past its byte cap (`cap`, see sizes.lua; a write that does not grow it always fits); `old`
-- is the stored value's length (nil: no such field). Sizes are as limits count them (`weight`).
-- Answers nil and the session's size after the write (for `b`), else the refusal:
-- {"toomany"} or {"toobig", size it would have, cap}.
local function fits(f, v, max_keys, max_bytes, max_anonymous, b, old)
  if not old and data_len(b) >= max_keys then return {'toomany'} end
  local was, will = old and weight(f, old) or 0, weight(f, #v)
  local after = size(b) - was + will
  if will > was then
    local limit = cap(max_bytes, max_anonymous)
    if after > limit then return {'toobig', after, limit} end
  end
  return nil, after
end
-- Deletes value field f; answers 1 when it was there, else 0, and `b` after it (to write).
local function drop(f, b)
  local n = length(f)
  if not n then return 0, b end
  redis.call('HDEL', key, f)
  return 1, size(b) - weight(f, n)
end
-- Writes value field f = v when it fits (`fits`), and slides the expiry either way (with `b`
-- after the write when it happens). Answers the refusal, or nil.
local function put(f, v, max_keys, max_bytes, max_anonymous, b, old)
  local refused, after = fits(f, v, max_keys, max_bytes, max_anonymous, b, old)
  if refused then
    slide()
    return refused
  end
  slide(f, v, 'b', after)
end
-- Deletes value field f (`drop`) and slides the expiry (with `b` when it changed). Answers 1
-- when the field was there, else 0.
local function take(f, b)
  local n, after = drop(f, b)
  if n == 1 then
    slide('b', after)
  else
    slide()
  end
  return n
end
