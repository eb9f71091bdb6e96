-- Creation helpers (after prelude.lua, for create.lua and create_counter.lua).
--
-- Whether a creation must be refused: DBSIZE has reached the live-sessions cap `cap` ('' = the
-- caller checked). The event stream KEYS[3], when passed, is not a session: not counted.
local function full(cap)
  if cap == '' then return false end
  cap = tonumber(cap)
  local n = redis.call('DBSIZE')
  if n < cap then return false end
  if KEYS[3] then n = n - redis.call('EXISTS', KEYS[3]) end
  return n >= cap
end
-- With KEYS[3], the event stream (one Redis server; a cluster keeps it in another slot and the
-- caller appends instead), appends this new session's "created" event: ARGV[e] the stream's
-- cap, ARGV[e + 1] the session's handle. Field names as in events.rs.
local function created(e)
  if KEYS[3] then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[e], '*', 'k', 'created', 'u', '0', 's', ARGV[e + 1], 't', now)
  end
end
