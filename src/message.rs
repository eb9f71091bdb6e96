//! Typed engine messages: each operation of the engine as a value. Send any of them with
//! [`SessionEngine::send`](crate::SessionEngine::send), on either backend: it verifies a
//! per-session message's id and runs the matching engine operation (the memory backend
//! delivers the message itself to the worker owning the session). They are public because
//! the design asks for typed messages callers can build, queue and send; [`EngineMessage`] is
//! sealed, so the set is closed and every message is known to be handled.

use std::future::Future;
use std::time::SystemTime;

use actix::Message;

use crate::engine::SessionEngine;
use crate::error::Result;
use crate::id::SessionId;

/// What the engine knows about one session besides its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's current id (after `login`/`logout`, the new one).
    pub id: SessionId,
    /// Logged-in user, 0 when anonymous.
    pub userid: u64,
    /// Remember-me session.
    pub persistent: bool,
    /// When it was created.
    pub created: SystemTime,
    /// When it was last used.
    pub last_access: SystemTime,
    /// When it expires unless used again.
    pub expires: SystemTime,
}

/// A read-modify-write step run inside the owning worker: gets the current JSON encoding
/// (`None` when absent) and returns the new one (`None` removes the key).
pub type UpdateFn = Box<dyn FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>> + Send>;

/// A message about one session.
pub trait SessionMessage {
    /// The session it is about.
    fn session_id(&self) -> &SessionId;
}

/// A message [`SessionEngine::send`](crate::SessionEngine::send) answers with a
/// `Result<Self::Reply>`. Sealed: implemented by this module's messages only.
pub trait EngineMessage: sealed::Dispatch<Self::Reply> + Send + 'static {
    /// What the engine answers.
    type Reply: Send + 'static;
}

pub(crate) mod sealed {
    use super::*;

    /// Runs a message as the engine operation it stands for.
    pub trait Dispatch<R> {
        /// The operation, on `engine`.
        fn dispatch(self, engine: &SessionEngine) -> impl Future<Output = Result<R>> + Send + '_;
    }
}

// Per-session messages share the `id` field and the `SessionMessage` impl.
macro_rules! define {
    ($( $(#[$doc:meta])* $name:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* } -> $ret:ty
        => |$m:ident, $e:ident| $call:expr; )*) => {$(
        $(#[$doc])*
        pub struct $name {
            /// The session.
            pub id: SessionId,
            $( $(#[$fdoc])* pub $field: $ty, )*
        }

        impl Message for $name {
            type Result = Result<$ret>;
        }

        impl SessionMessage for $name {
            fn session_id(&self) -> &SessionId {
                &self.id
            }
        }

        impl EngineMessage for $name {
            type Reply = $ret;
        }

        impl sealed::Dispatch<$ret> for $name {
            fn dispatch(self, $e: &SessionEngine) -> impl Future<Output = Result<$ret>> + Send + '_ {
                let $m = self;
                async move { $call.await }
            }
        }
    )*};
}

define! {
    /// Creates an empty anonymous session under a fresh id.
    Create {} -> SessionInfo => |m, e| e.create_as(m.id);
    /// Reads one value (its JSON encoding).
    Get { /// Namespace.
          scope: String, /// Key.
          key: String } -> Option<Vec<u8>> => |m, e| e.get_raw(&m.id, &m.scope, &m.key);
    /// Writes one value (its JSON encoding).
    Set { /// Namespace.
          scope: String, /// Key.
          key: String, /// JSON encoding.
          value: Vec<u8> } -> () => |m, e| e.insert_raw(&m.id, &m.scope, &m.key, m.value);
    /// Removes one value; answers whether it was there.
    Remove { /// Namespace.
             scope: String, /// Key.
             key: String } -> bool => |m, e| e.remove(&m.id, &m.scope, &m.key);
    /// Removes every value of one scope, or of all scopes.
    Clear { /// Namespace, or `None` for all.
            scope: Option<String> } -> () => |m, e| e.clear(&m.id, m.scope.as_deref());
    /// Lists the keys of one scope, sorted.
    Keys { /// Namespace.
           scope: String } -> Vec<String> => |m, e| e.keys(&m.id, &m.scope);
    /// Atomic read-modify-write of one value; answers the new encoding.
    Update { /// Namespace.
             scope: String, /// Key.
             key: String, /// The step, run inside the owning worker.
             f: UpdateFn } -> Option<Vec<u8>> => |m, e| e.update_raw(&m.id, &m.scope, &m.key, m.f);
    /// Logs a user in: sets the user id and rotates the session id, keeping the data.
    Login { /// User id, at least 1.
            userid: u64 } -> SessionInfo => |m, e| e.login(&m.id, m.userid);
    /// Logs out: user id 0, not persistent, id rotated, other data kept.
    Logout {} -> SessionInfo => |m, e| e.logout(&m.id);
    /// Makes a logged-in session persistent (remember me) or volatile again.
    SetPersistent { /// Persistent or not.
                    persistent: bool } -> SessionInfo => |m, e| e.set_persistent(&m.id, m.persistent);
    /// Reads the session's metadata without counting as a use.
    Info {} -> SessionInfo => |m, e| e.info(&m.id);
    /// Counts as a use: slides the expiry.
    Touch {} -> SessionInfo => |m, e| e.touch(&m.id);
    /// Ends the session; answers whether it existed.
    Destroy {} -> bool => |m, e| e.destroy(&m.id);
}

/// Ends every session of one user, on every shard ("log out everywhere"); answers how many.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<usize>")]
pub struct LogoutUser {
    /// The user.
    pub userid: u64,
}

/// Lists the live sessions of one user, on every shard.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<Vec<SessionInfo>>")]
pub struct SessionsOf {
    /// The user.
    pub userid: u64,
}

/// Engine statistics.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<EngineStats>")]
pub struct Stats;

/// Drops every expired session now; answers how many (workers also do it on their own).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<usize>")]
pub struct Sweep;

// Engine-wide messages: answered by every shard together.
macro_rules! engine_wide {
    ($($name:ident -> $ret:ty => |$m:ident, $e:ident| $call:expr;)*) => {$(
        impl EngineMessage for $name {
            type Reply = $ret;
        }

        impl sealed::Dispatch<$ret> for $name {
            fn dispatch(self, $e: &SessionEngine) -> impl Future<Output = Result<$ret>> + Send + '_ {
                #[allow(unused_variables)]
                let $m = self;
                async move { $call.await }
            }
        }
    )*};
}

engine_wide! {
    LogoutUser -> usize => |m, e| e.logout_user(m.userid);
    SessionsOf -> Vec<SessionInfo> => |m, e| e.sessions_of(m.userid);
    Stats -> EngineStats => |m, e| e.stats();
    Sweep -> usize => |m, e| e.sweep();
}

/// Counters of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Live sessions.
    pub sessions: usize,
    /// Sessions created since the worker started.
    pub created: u64,
    /// Sessions dropped by expiry.
    pub expired: u64,
    /// Sessions destroyed (including `LogoutUser`).
    pub destroyed: u64,
    /// Messages handled.
    pub operations: u64,
    /// Operations that panicked and were contained.
    pub panics: u64,
    /// Times this shard's worker was restarted.
    pub restarts: u64,
}

/// Counters of the whole engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Live sessions over all shards.
    pub sessions: usize,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardStats>,
}
