//! Typed engine messages: each operation of the engine as a value. Send any of them with
//! [`SessionEngine::send`](crate::SessionEngine::send), on either backend: it verifies a
//! per-session message's id and runs the matching engine operation (the memory backend
//! delivers the message itself to the worker owning the session). They are public because
//! the design asks for typed messages callers can build, queue and send; the set is closed
//! ([`EngineMessage`](crate::EngineMessage) is sealed), so every message is known to be handled.

use std::time::SystemTime;

use actix::Message;

use crate::error::Result;
use crate::id::{SessionHandle, SessionId};

/// What the engine knows about one session besides its data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

// Per-session messages share the `id` field and the `SessionMessage` impl.
macro_rules! define {
    ($( $(#[$doc:meta])* $name:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty ),* } -> $ret:ty; )*) => {$(
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
    )*};
}

define! {
    /// Creates an empty anonymous session under a fresh id.
    Create {} -> SessionInfo;
    /// Reads one value (its JSON encoding).
    Get { /// Namespace.
          scope: String, /// Key.
          key: String } -> Option<Vec<u8>>;
    /// Writes one value (its JSON encoding).
    Set { /// Namespace.
          scope: String, /// Key.
          key: String, /// JSON encoding.
          value: Vec<u8> } -> ();
    /// Removes one value; answers whether it was there.
    Remove { /// Namespace.
             scope: String, /// Key.
             key: String } -> bool;
    /// Removes every value of one scope, or of all scopes.
    Clear { /// Namespace, or `None` for all.
            scope: Option<String> } -> ();
    /// Lists the keys of one scope, sorted.
    Keys { /// Namespace.
           scope: String } -> Vec<String>;
    /// Atomic read-modify-write of one value; answers the new encoding.
    Update { /// Namespace.
             scope: String, /// Key.
             key: String, /// The step, run inside the owning worker.
             f: UpdateFn } -> Option<Vec<u8>>;
    /// Logs a user in: sets the user id and rotates the session id, keeping the data.
    Login { /// User id, at least 1.
            userid: u64 } -> SessionInfo;
    /// Logs out: user id 0, not persistent, id rotated, other data kept (cleared with
    /// `session.logout_clears_data`).
    Logout {} -> SessionInfo;
    /// Makes a logged-in session persistent (remember me) or volatile again.
    SetPersistent { /// Persistent or not.
                    persistent: bool } -> SessionInfo;
    /// Reads the session's metadata without counting as a use.
    Info {} -> SessionInfo;
    /// Counts as a use: slides the expiry.
    Touch {} -> SessionInfo;
    /// Ends the session; answers whether it existed.
    Destroy {} -> bool;
    /// Ends every other session of the session's user ("log out everywhere else"); answers
    /// how many.
    LogoutOthers {} -> usize;
}

/// Ends every session of one user, on every shard ("log out everywhere"); answers how many.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<usize>")]
pub struct LogoutUser {
    /// The user.
    pub userid: u64,
}

/// Lists the live sessions of one user, on every shard, most recently used first.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<Vec<UserSession>>")]
pub struct SessionsOf {
    /// The user.
    pub userid: u64,
}

/// Ends one session of a user, named by its [`SessionHandle`] (from [`SessionsOf`]); answers
/// whether a live session of that user had that handle.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<bool>")]
pub struct Revoke {
    /// The user the session must belong to.
    pub userid: u64,
    /// Which of the user's sessions.
    pub handle: SessionHandle,
}

/// One of a user's sessions as [`SessionsOf`] lists it: everything but its id, which the
/// engine does not keep (see [`SessionHandle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSession {
    /// Names the session to [`Revoke`] it.
    pub handle: SessionHandle,
    /// The user.
    pub userid: u64,
    /// A short name of the browser and system that logged in ("Firefox 133 on Windows 10"),
    /// recorded by the web layer at login; `None` when none was recorded.
    pub label: Option<String>,
    /// The client's address at login, when `session.record_ip` was on.
    pub ip: Option<String>,
    /// Remember-me session.
    pub persistent: bool,
    /// When it was created.
    pub created: SystemTime,
    /// When it was last used.
    pub last_access: SystemTime,
    /// When it expires unless used again.
    pub expires: SystemTime,
}

/// Engine statistics.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<EngineStats>")]
pub struct Stats;

/// Drops every expired session now; answers how many (workers also do it on their own).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<usize>")]
pub struct Sweep;

/// Counters of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStats {
    /// Live sessions.
    pub sessions: usize,
    /// Sessions created since the worker started.
    pub created: u64,
    /// Sessions dropped by expiry.
    pub expired: u64,
    /// Sessions destroyed (including `LogoutUser`).
    pub destroyed: u64,
    /// Operations handled.
    pub operations: u64,
    /// Of those, operations issued on the thread hosting the shard and run there without a
    /// message (the local path; see [`Placement`](crate::Placement)). The rest came as
    /// messages from other threads.
    pub local_operations: u64,
    /// Operations that panicked and were contained.
    pub panics: u64,
    /// Times this shard's worker was restarted.
    pub restarts: u64,
    /// Write-ahead log records this shard appended (memory backend, `storage.log` on).
    pub log_records: u64,
    /// Bytes of those records.
    pub log_bytes: u64,
}

/// Counters of the whole engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineStats {
    /// Live sessions over all shards.
    pub sessions: usize,
    /// One entry per shard, in shard order.
    pub shards: Vec<ShardStats>,
    /// Fsyncs of the write-ahead log so far (memory backend, `storage.log` on): with
    /// `"always"`, records per fsync is the group commit's batch size.
    pub log_fsyncs: u64,
}
