//! The Redis backend (`storage.backend = "redis"`, cargo feature `redis`): sessions live in a
//! Redis server shared by every app instance pointing at it, behind the same API.
//!
//! - **One session = one hash** (`u`, `p`, `c`, `a` metadata fields; values under
//!   `d<scope len>:<scope><key>`), expiring through Redis's own `PEXPIRE`, slid on every use.
//!   Every operation is one Lua script on that session's keys, so it is atomic.
//! - **Cluster.** A session's keys carry the hash tag `{gggg}`, the id's 14-bit slot group,
//!   and login/logout draw the new id from the same group, so the rotation script (rename to
//!   the new key, old key gone in the same step) touches one slot only. The per-user index
//!   `draco:u:{uid}` lives in its own slot and is only ever changed by separate commands
//!   (`index.rs`: added to before a login's rotation, stale entries skipped and removed).
//! - **Update** runs the caller's closure exactly once: a script reads the value and takes a
//!   short per-session lock (a key in the same slot, expiring by itself), the closure runs,
//!   and a second script writes and releases it (`lock.rs` states the protocol and its
//!   invariants). Writes by others wait for the lock; reads do not. `increment` is one script
//!   when the value is a plain integer, and the web layer's increment on a request without a
//!   session creates it in that same script.
//! - **Live-sessions cap**: `create` compares `DBSIZE` (every key of the selected database:
//!   sessions, update locks, one index per logged-in user) with `limits.max_sessions`, an
//!   upper bound on live sessions; give the engine its own database (`redis_url` `/N`). On one
//!   server the creating script checks it itself (exact, no round trip of its own); on a
//!   cluster a `DBSIZE` summed over the primaries comes first.
//! - **Connection**: one server through a `ConnectionManager` (reconnects by itself), or a
//!   Redis Cluster (`storage.redis_cluster`, seed nodes in `redis_url`) through the cluster
//!   client; both on a small I/O runtime owned by the store, every command bounded (1 s, 3 s
//!   per operation), every Redis error an `Unavailable` (HTTP 503). One-script operations are
//!   polled on the caller's task (no hop to the store's threads), and on one server over TCP
//!   a caller's current-thread runtime (each actix-web worker) gets its own connection,
//!   driven on that runtime, so a request's commands never leave its thread (`conn.rs`,
//!   `Local`).
//! - **Stats**: live sessions by `SCAN` of the database (one server) or `DBSIZE` summed over
//!   the primaries (cluster, every key counted); `sweep` and `snapshot` answer 0.
//! - **Typed messages** sent with `SessionEngine::send` run as the matching operation; the
//!   supervisor does not exist (`SessionEngine::supervisor` panics, documented there).
//! - **Time**: lifetimes are enforced by Redis's expiry, and backed up by the engine's clock
//!   inside the scripts (a session past its expiry by that clock is gone too).
//!
//! Files: `store.rs` ([`RedisStore`] and its operations), `conn.rs` (connections, the I/O
//! runtime, time bounds, outage logging), `scripts.rs` and `lua/*.lua` (the scripts, and running
//! one), `reply.rs` (a script's answer, typed), `lock.rs` (the update lock), `index.rs` (the
//! per-user index), `keys.rs` (key and field names).

mod conn;
mod index;
mod keys;
mod lock;
mod reply;
mod scripts;
mod store;

use std::any::Any;

pub(crate) use store::RedisStore;

use crate::error::{Result, SessionError};
use crate::message::*;

/// Runs a typed per-session message (as sent to a shard worker by the memory backend) on the
/// Redis store. The answer is boxed; the engine unboxes it as the message's result type.
pub(crate) async fn send_any(store: &RedisStore, msg: Box<dyn Any + Send>) -> Result<Box<dyn Any + Send>> {
    fn boxed<T: Send + 'static>(r: Result<T>) -> Result<Box<dyn Any + Send>> {
        r.map(|v| Box::new(v) as Box<dyn Any + Send>)
    }
    macro_rules! route {
        ($msg:ident, $($ty:ident => |$m:ident| $op:expr;)*) => {{
            $(
                let $msg = match $msg.downcast::<$ty>() {
                    Ok($m) => return boxed($op.await),
                    Err(other) => other,
                };
            )*
            let _ = $msg;
            Err(SessionError::internal("message not supported by the redis backend"))
        }};
    }
    route!(msg,
        Create => |m| store.create(Some(m.id));
        Get => |m| store.get(m.id, &m.scope, &m.key);
        Set => |m| store.set(m.id, &m.scope, &m.key, m.value);
        Remove => |m| store.remove(m.id, &m.scope, &m.key);
        Clear => |m| store.clear(m.id, m.scope.as_deref());
        Keys => |m| store.keys(m.id, &m.scope);
        Update => |m| async move {
            let Update { id, scope, key, f } = *m;
            store.update(id, &scope, &key, f).await
        };
        Login => |m| async move {
            if m.userid == 0 { Err(SessionError::InvalidUserId) } else { store.rotate(m.id, m.userid).await }
        };
        Logout => |m| store.rotate(m.id, 0);
        SetPersistent => |m| store.set_persistent(m.id, m.persistent);
        Info => |m| store.info(m.id, false);
        Touch => |m| store.info(m.id, true);
        Destroy => |m| store.destroy(m.id);
    )
}
