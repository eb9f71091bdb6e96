//! The Lua scripts that make each session operation one atomic step inside Redis.
//!
//! Every script touches only keys of one session (its hash, its update lock, and for a
//! rotation the new hash), which share one hash tag and so one Redis Cluster slot. The
//! per-user index is updated by separate commands (see `store.rs`).
//!
//! Common arguments: `KEYS[1]` the session hash, `KEYS[2]` its update lock; `ARGV[1]` now
//! (ms, the engine's clock), `ARGV[2..4]` the volatile, persistent and absolute lifetimes (ms,
//! absolute 0 = none), `ARGV[5]` the caller's lock token (`""` = holds none). Op arguments
//! follow from `ARGV[6]`.
//!
//! Replies: `{"ok", userid, persistent, created, last_access, expires, previous_access,
//! extra...}` (`previous_access`: `last_access` before this operation's use), or a one-element
//! status (`{"gone"}`, `{"locked"}`, ...) that `store.rs` maps to an error.

use std::sync::LazyLock;

use redis::Script;

/// Shared by every script. `m` holds `{userid, persistent, created, last_access}` (and after
/// `load`, the last access before it as `m[5]`): the user
/// id stays a string (Lua numbers are doubles, user ids are u64).
const PRELUDE: &str = r#"
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
local function reply(...)
  return {'ok', m[1], m[2], tonumber(m[3]), tonumber(m[4]), expires(), tonumber(m[5] or m[4]), ...}
end
"#;

macro_rules! script {
    ($name:ident, $doc:literal, $body:literal) => {
        #[doc = $doc]
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{PRELUDE}{}", $body)));
    };
}

script!(
    CREATE,
    "A new anonymous session at now; `{\"exists\"}` when the key is taken. `ARGV[6]`, unless \
empty: the live-sessions cap, `{\"full\"}` when `DBSIZE` reaches it.",
    r#"
if ARGV[6] ~= '' and redis.call('DBSIZE') >= tonumber(ARGV[6]) then return {'full'} end
if redis.call('EXISTS', key) == 1 then return {'exists'} end
redis.call('HSET', key, 'u', '0', 'p', '0', 'c', ARGV[1], 'a', ARGV[1])
m = {'0', '0', ARGV[1], ARGV[1]}
slide()
return reply()
"#
);

script!(
    CREATE_COUNTER,
    "A new anonymous session at now holding field `ARGV[7]` = `ARGV[8]` (an integer, as text: the \
first increment of a counter). `ARGV[6]` as in `CREATE`; `ARGV[9]` max keys, `ARGV[10]` max value bytes. \
`{\"fallback\"}`, creating nothing, when either limit refuses the value: the caller then creates and \
increments in two steps, which report the error the same way as always.",
    r#"
if ARGV[6] ~= '' and redis.call('DBSIZE') >= tonumber(ARGV[6]) then return {'full'} end
if redis.call('EXISTS', key) == 1 then return {'exists'} end
if tonumber(ARGV[9]) < 1 or #ARGV[8] > tonumber(ARGV[10]) then return {'fallback'} end
redis.call('HSET', key, 'u', '0', 'p', '0', 'c', ARGV[1], 'a', ARGV[1], ARGV[7], ARGV[8])
m = {'0', '0', ARGV[1], ARGV[1]}
slide()
return reply(ARGV[8])
"#
);

script!(
    GET,
    "`ARGV[6]` field: its value (or nil) after the metadata.",
    r#"
if not load(true) then return {'gone'} end
slide()
return reply(redis.call('HGET', key, ARGV[6]))
"#
);

script!(
    SET,
    "`ARGV[6]` field, `ARGV[7]` value, `ARGV[8]` max keys.",
    r#"
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
if redis.call('HEXISTS', key, ARGV[6]) == 0 and data_len() >= tonumber(ARGV[8]) then
  slide()
  return {'toomany'}
end
redis.call('HSET', key, ARGV[6], ARGV[7])
slide()
return reply()
"#
);

script!(
    REMOVE,
    "`ARGV[6]` field: 1 when it was there.",
    r#"
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
local n = redis.call('HDEL', key, ARGV[6])
slide()
return reply(n)
"#
);

script!(
    CLEAR,
    "Removes every field starting with `ARGV[6]` (a scope's prefix, or `d` for all).",
    r#"
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
local p = ARGV[6]
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, #p) == p then redis.call('HDEL', key, f) end
end
slide()
return reply()
"#
);

script!(
    KEYS,
    "The names after the prefix `ARGV[6]` of the fields that start with it.",
    r#"
if not load(true) then return {'gone'} end
local p = ARGV[6]
local out = {}
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, #p) == p then out[#out + 1] = string.sub(f, #p + 1) end
end
slide()
return reply(out)
"#
);

script!(
    INFO,
    "The metadata; not a use.",
    r#"
if not load(false) then return {'gone'} end
return reply()
"#
);

script!(
    TOUCH,
    "A use: slides the expiry.",
    r#"
if not load(true) then return {'gone'} end
slide()
return reply()
"#
);

script!(
    SET_PERSISTENT,
    "`ARGV[6]` \"1\" or \"0\".",
    r#"
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
if ARGV[6] == '1' and m[1] == '0' then
  slide()
  return {'notloggedin'}
end
m[2] = ARGV[6]
redis.call('HSET', key, 'p', m[2])
slide()
return reply()
"#
);

script!(
    ROTATE,
    "Login/logout: moves the session to `KEYS[3]` (same slot) with user `ARGV[6]`; the old key is \
gone in the same step. Answers the previous user id after the metadata.",
    r#"
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'exists'} end
local old, new = m[1], ARGV[6]
-- Remember-me survives a re-login of the same user only.
if not (m[2] == '1' and new ~= '0' and new == old) then m[2] = '0' end
m[1] = new
redis.call('RENAME', key, KEYS[3])
key = KEYS[3]
redis.call('HSET', key, 'u', m[1], 'p', m[2])
slide()
return reply(old)
"#
);

script!(
    DESTROY,
    "Deletes the session, only if its user is `ARGV[6]` when that is not empty. Answers \
`{\"done\", userid-or-nil}`.",
    r#"
local u = redis.call('HGET', key, 'u')
if not u then return {'done', false} end
if ARGV[6] ~= '' and u ~= ARGV[6] then return {'done', false} end
redis.call('DEL', key)
return {'done', u}
"#
);

script!(
    INCREMENT,
    "`ARGV[6]` field, `ARGV[7]` the amount, `ARGV[8]` max keys, `ARGV[9]` max value bytes. \
`{\"fallback\"}` when the stored value or the sum is not an integer Lua adds exactly: the caller then uses \
the general update path, which decodes with serde like the memory backend.",
    r#"
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
local v = redis.call('HGET', key, ARGV[6])
local n = 0
if v then
  if not (v == '0' or string.match(v, '^-?[1-9]%d*$')) or #v > 15 then return {'fallback'} end
  n = tonumber(v)
elseif data_len() >= tonumber(ARGV[8]) then
  slide()
  return {'toomany'}
end
local r = n + tonumber(ARGV[7])
if r >= 9007199254740992 or r <= -9007199254740992 then return {'fallback'} end
local s = string.format('%.0f', r)
if #s > tonumber(ARGV[9]) then return {'toolarge', #s} end
redis.call('HSET', key, ARGV[6], s)
slide()
return reply(s)
"#
);

script!(
    LOCK_READ,
    "Takes the update lock (token `ARGV[5]`, `ARGV[7]` ms) and reads field `ARGV[6]`.",
    r#"
if not load(true) then return {'gone'} end
if busy() then return {'locked'} end
redis.call('SET', lock, token, 'PX', ARGV[7])
slide()
return reply(redis.call('HGET', key, ARGV[6]))
"#
);

script!(
    COMMIT,
    "Writes field `ARGV[6]` (`ARGV[7]` \"1\": to `ARGV[8]`; \"0\": removes it; `ARGV[9]` max keys) \
and releases the lock, only while the caller still holds it.",
    r#"
if redis.call('GET', lock) ~= token then return {'lost'} end
redis.call('DEL', lock)
if not load(true) then return {'gone'} end
if ARGV[7] == '1' then
  if redis.call('HEXISTS', key, ARGV[6]) == 0 and data_len() >= tonumber(ARGV[9]) then
    slide()
    return {'toomany'}
  end
  redis.call('HSET', key, ARGV[6], ARGV[8])
else
  redis.call('HDEL', key, ARGV[6])
end
slide()
return reply()
"#
);

script!(
    UNLOCK,
    "Releases the update lock if the caller still holds it.",
    r#"
if redis.call('GET', lock) == token then redis.call('DEL', lock) end
return {'done'}
"#
);
