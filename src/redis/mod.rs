//! The Redis backend (`storage.backend = "redis"`, cargo feature `redis`): sessions live in a
//! Redis server shared by every app instance pointing at it, behind the same API.
//!
//! - **Key prefix** `storage.redis_prefix` (`<p>`, `draco` by default: the key names of
//!   earlier versions): every key, per-user index and the event stream starts with `<p>:`, so
//!   apps sharing one Redis (a Cluster has only database 0) keep apart their sessions, users
//!   ("log out everywhere", devices, revoke) and events (`keys.rs`).
//! - **One session = one hash** (`u`, `p`, `c`, `a` metadata fields; `b` its size; `i` for a
//!   logged-in session, the time (ms, the engine's clock) its user's index is known to last
//!   to; `k` the layout mark of a sealed session; values under `e<digests>`, sealed, or
//!   `d<scope len>:<scope><key>` in the plain layout), expiring through Redis's own
//!   `PEXPIRE`, slid on every use.
//! - **Sealed at rest** (`storage.encrypt`, on by default; `sealed.rs` has the layout): a
//!   value's field is named by keyed digests of its scope and key, and holds the box
//!   (AES-256-GCM, `crate::seal`) of the scope, key and value, bound to the field name;
//!   `u` is `0` or `#`, the user's pseudonym (a keyed digest) and the box of its id; the
//!   per-user index is named by the pseudonym; an event's user id and device label are a box.
//!   Keys are derived from the engine secret, which never reaches Redis; nonces are 24 random
//!   bytes per box. A box that does not open is `SessionError::Damaged`, never data. Sessions
//!   written plain (before sealing, or with `encrypt` off) or under a previous secret are
//!   rewritten in the engine's layout on their next use; with `encrypt` off the engine writes
//!   the plain layout and still reads sealed sessions.
//! - **What stays plain, and why**: the times `c`, `a`, `i` and the expiry (the scripts
//!   expire sessions by them, and Redis by `PEXPIRE`); the remember-me flag `p` and whether
//!   anyone is logged in (`u` = `0`; the anonymous byte cap and remember-me are checked in
//!   the script); `b` and every stored length (the size limits are checked in the script:
//!   a sealed field's length is its plaintext's and 49 bytes), and so the number of values;
//!   which values share a scope (the scope digest prefixes its fields, for `clear` and `keys`);
//!   key names, which hold the session's locator (a one-way digest of the id's random part,
//!   as the memory backend keys it: no id verifies without the secret) and the user's pseudonym, which links a user's sessions as the index must;
//!   in the event stream the kind, the session handles (keyed digests), the time and the
//!   remember-me flag. None of these is a name, a value, a user id or a device label.
//!   Every operation is one Lua script on that session's keys, so it is atomic.
//! - **Script cost.** A script's time is Redis's one thread's, shared by every instance: each
//!   reads what it needs in one `HMGET` and writes the session's fields in one `HSET`; times
//!   stay text (the caller passes the times at or before which a session is gone, and works
//!   out the reply's expiry itself). In the plain layout a counter adds with `HINCRBY` and
//!   touches `b` only when its digit count changes: a returning visitor's increment is one
//!   script of five commands (`HMGET`, `GET` of the lock, `HINCRBY`, `HSET`, `PEXPIRE`).
//!   Sealed, Lua cannot add inside a box: the value is read (`get.lua`), added to by the
//!   caller and written by `swap.lua` only if the field still holds the box read (boxes are
//!   never alike), two scripts; increments meeting each other on one instance are added up in
//!   batches (`sealed.rs`). A new visitor's first increment is one script of `DBSIZE`,
//!   `EXISTS`, `HSET`, `PEXPIRE` and the created event's `XADD` (the first value sealed by the
//!   caller), which answers only the time (`{"new", now}`: the rest of a new session's
//!   metadata is known).
//! - **Key names** (`keys.rs`): `<p>:{ggg}:S:<locator hex>`, keyed by the locator as the memory
//!   backend is, so `draco-session migrate` moves sessions between the two; sessions under
//!   the names of earlier versions (the id's random part) are moved on their next use.
//! - **Cluster.** A session's keys carry the hash tag `{ggg}`, its locator's 10-bit slot group,
//!   and login/logout draw the new id until its locator is in the same group, so the rotation script (rename to
//!   the new key, old key gone in the same step) touches one slot only. The per-user index
//!   `<p>:u:{uid}` lives in its own slot and is only ever changed by separate commands
//!   (`index.rs`: added to before a login's rotation, stale entries skipped and removed).
//! - **Index lifetime.** The index lasts as long as any session in it: its expiry is only ever
//!   extended (a small script comparing `PTTL`, so before Redis 7 too). A login extends it to
//!   the longest lifetime and a minute and records that deadline in the session's `i`; a
//!   script whose use slides a logged-in session's expiry past `i` moves `i` to that expiry
//!   and a day, in the same `HSET`, and ends its answer with the user and that deadline, which
//!   the caller (`scripts.rs`, `Core::exec_keys`) then ensures with one more command: about
//!   once a day per session, no extra round trip on other requests (a failure is logged as a
//!   warning, not returned).
//! - **Update** runs the caller's closure exactly once: a script reads the value and takes a
//!   short per-session lock (a key in the same slot, expiring by itself), the closure runs,
//!   and a second script writes and releases it (`lock.rs` states the protocol and its
//!   invariants). Writes by others wait for the lock; reads do not. `increment` is one script
//!   when the value is a plain integer (two, sealed: see above), and the web layer's increment
//!   on a request without a session creates it in one script. A migration to another layout
//!   takes the same lock.
//! - **Live-sessions cap**: `create` compares `DBSIZE` (every key of the selected database:
//!   sessions, update locks, one index per logged-in user) with `limits.max_sessions`, an
//!   upper bound on live sessions; give the engine its own database (`redis_url` `/N`). On one
//!   server the creating script checks it itself (exact, no round trip of its own, the event
//!   stream not counted); on a cluster a `DBSIZE` summed over the primaries comes first (the
//!   stream counted as one key). Apps sharing a database (their own `redis_prefix`) share it.
//! - **Events**: the capped stream `<p>:events`, appended to by every instance and read by
//!   each one with a subscriber (`events.rs`).
//! - **Connection**: one server through a `ConnectionManager` (reconnects by itself), or a
//!   Redis Cluster (`storage.redis_cluster`, seed nodes in `redis_url`) through the cluster
//!   client; both on a small I/O runtime owned by the store, every command bounded (1 s, 3 s
//!   per operation), every Redis error an `Unavailable` (HTTP 503). One-script operations are
//!   polled on the caller's task (no hop to the store's threads), and on one server over TCP
//!   a caller's current-thread runtime (each actix-web worker) gets its own connection,
//!   driven on that runtime, so a request's commands never leave its thread (`conn.rs`,
//!   `Local`).
//! - **Stats**: live sessions by `SCAN` of the database for this prefix's session keys (one server) or `DBSIZE` summed over
//!   the primaries (cluster, every key counted); `sweep` and `snapshot` answer 0.
//! - **Typed messages**: each is one operation here (`ops.rs`, `OnRedis`), which the engine's
//!   seam (`engine/store.rs`) runs through `RedisStore::run`.
//! - **Time**: lifetimes are enforced by Redis's expiry, and backed up by the engine's clock
//!   inside the scripts (a session past its expiry by that clock is gone too).
//!
//! Files: `store.rs` ([`RedisStore`]: connecting, running a step on its runtime, the steps
//! several operations share), `ops.rs` (each operation), `conn.rs` (connections, the I/O
//! runtime, time bounds, outage logging), `scripts.rs` and `lua/*.lua` (the scripts, and running
//! one), `reply.rs` (a script's answer, typed), `lock.rs` (the update lock), `index.rs` (the
//! per-user index), `keys.rs` (key and field names), `sealed.rs` (what is sealed and how,
//! migration between layouts, sealed counters), `transfer.rs` (whole sessions read and written,
//! for the `draco-session` command).

mod conn;
mod events;
mod index;
mod keys;
mod lock;
mod ops;
mod reply;
mod scripts;
mod sealed;
pub(crate) mod sentinel;
mod store;
#[cfg(feature = "cli")]
mod transfer;

pub(crate) use ops::OnRedis;
pub(crate) use store::RedisStore;
