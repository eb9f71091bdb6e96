//! The typed messages: each operation of the engine as a value, and what the engine answers.
//!
//! A message is the one definition of its operation (as in mini-redis's `cmd/`): its fields, its
//! reply, its metric name (`OpKind`) and the checks its names must pass are here; each backend
//! implements it once (`memory/ops.rs` on a shard, `redis/ops.rs` on Redis); every layer in
//! between is generic over it. Send any of them with [`SessionEngine::send`](crate::SessionEngine::send),
//! on either backend: it verifies a per-session message's id and runs it where the session
//! lives. The set is closed ([`EngineMessage`](crate::EngineMessage) is sealed), so every
//! message is known to be handled.
//!
//! Names (`scope`, `key`) are [`Cow`]s: build them from `&str` or `String` with `.into()`.
//! The engine's own methods borrow them, and a message is copied into owned names only when
//! it must cross to another thread.
//!
//! ```
//! use draco_session::message::{Get, Set};
//! use draco_session::{Config, SessionEngine};
//!
//! # actix_rt::System::new().block_on(async {
//! # let mut config = Config::default();
//! # config.session.secret = Some("an example secret of at least 32 bytes".into());
//! # config.storage.persist = false;
//! let engine = SessionEngine::start(config).unwrap();
//! let id = engine.create().await.unwrap().id;
//! engine.send(Set { id, scope: "cart".into(), key: "n".into(), value: b"2".to_vec() }).await.unwrap();
//! let raw = engine.send(Get { id, scope: "cart".into(), key: "n".into() }).await.unwrap();
//! assert_eq!(raw.as_deref(), Some(&b"2"[..]));
//! # engine.shutdown().await;
//! # });
//! ```

use std::borrow::Cow;
use std::time::SystemTime;

use crate::error::Result;
use crate::id::{SessionHandle, SessionId};
use crate::names::check_name;
use crate::telemetry::Lifecycle;

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

/// Creates an empty anonymous session under `id`, a fresh id of this engine (answers
/// [`SessionError::InvalidId`](crate::SessionError::InvalidId) when a session has it).
#[derive(Debug, Clone, Copy)]
pub struct Create {
    /// The new session's id.
    pub id: SessionId,
}

/// Reads one value (its JSON encoding).
#[derive(Debug, Clone)]
pub struct Get<'a> {
    /// The session.
    pub id: SessionId,
    /// Namespace.
    pub scope: Cow<'a, str>,
    /// Key.
    pub key: Cow<'a, str>,
}

/// Writes one value (its JSON encoding): [`SessionEngine::insert`](crate::SessionEngine::insert).
#[derive(Debug, Clone)]
pub struct Set<'a> {
    /// The session.
    pub id: SessionId,
    /// Namespace.
    pub scope: Cow<'a, str>,
    /// Key.
    pub key: Cow<'a, str>,
    /// JSON encoding.
    pub value: Vec<u8>,
}

/// Removes one value; answers whether it was there.
#[derive(Debug, Clone)]
pub struct Remove<'a> {
    /// The session.
    pub id: SessionId,
    /// Namespace.
    pub scope: Cow<'a, str>,
    /// Key.
    pub key: Cow<'a, str>,
}

/// Removes every value of one scope, or of all scopes.
#[derive(Debug, Clone)]
pub struct Clear<'a> {
    /// The session.
    pub id: SessionId,
    /// Namespace, or `None` for all.
    pub scope: Option<Cow<'a, str>>,
}

/// Lists the keys of one scope, sorted.
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    /// The session.
    pub id: SessionId,
    /// Namespace.
    pub scope: Cow<'a, str>,
}

/// Atomic read-modify-write of one value; answers the new encoding.
pub struct Update<'a> {
    /// The session.
    pub id: SessionId,
    /// Namespace.
    pub scope: Cow<'a, str>,
    /// Key.
    pub key: Cow<'a, str>,
    /// The step, run where no other change to the session can interleave.
    pub f: UpdateFn,
}

impl std::fmt::Debug for Update<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Update").field("id", &self.id).field("scope", &self.scope).field("key", &self.key).finish()
    }
}

/// Adds `by` to the integer stored under one key (absent counts as 0), saturating; answers
/// the new value.
#[derive(Debug, Clone)]
pub struct Increment<'a> {
    /// The session.
    pub id: SessionId,
    /// Namespace.
    pub scope: Cow<'a, str>,
    /// Key.
    pub key: Cow<'a, str>,
    /// What to add (negative to subtract).
    pub by: i64,
}

/// Logs a user in: sets the user id and rotates the session id, keeping the data.
#[derive(Debug, Clone, Copy)]
pub struct Login {
    /// The session.
    pub id: SessionId,
    /// User id, at least 1.
    pub userid: u64,
}

/// Logs out: user id 0, not persistent, id rotated, other data kept (cleared with
/// `session.logout_clears_data`).
#[derive(Debug, Clone, Copy)]
pub struct Logout {
    /// The session.
    pub id: SessionId,
}

/// Makes a logged-in session persistent (remember me) or volatile again.
#[derive(Debug, Clone, Copy)]
pub struct SetPersistent {
    /// The session.
    pub id: SessionId,
    /// Persistent or not.
    pub persistent: bool,
}

/// Reads the session's metadata without counting as a use.
#[derive(Debug, Clone, Copy)]
pub struct Info {
    /// The session.
    pub id: SessionId,
}

/// `M`, and its session's metadata as it was before `M` ran, in one trip: the cookie's lookup
/// riding along a request's first operation. Not public: the web layer's.
#[derive(Debug, Clone)]
pub(crate) struct Looked<M>(pub M);

impl<M: Op> Op for Looked<M> {
    type Reply = (Result<SessionInfo>, Result<M::Reply>);
    type Owned = Looked<M::Owned>;
    const KIND: OpKind = OpKind::Lookup;
    fn session(&self) -> Option<&SessionId> {
        self.0.session()
    }
    fn check(&self) -> Result<()> {
        self.0.check()
    }
    fn into_owned(self) -> Looked<M::Owned> {
        Looked(self.0.into_owned())
    }
}

/// Counts as a use: slides the expiry; answers the metadata.
#[derive(Debug, Clone, Copy)]
pub struct Touch {
    /// The session.
    pub id: SessionId,
}

/// Ends the session; answers whether it existed.
#[derive(Debug, Clone, Copy)]
pub struct Destroy {
    /// The session.
    pub id: SessionId,
}

/// Ends every other session of the session's user ("log out everywhere else"); answers how
/// many.
#[derive(Debug, Clone, Copy)]
pub struct LogoutOthers {
    /// The session that stays.
    pub id: SessionId,
}

/// Ends every session of one user, on every shard ("log out everywhere"); answers how many.
#[derive(Debug, Clone, Copy)]
pub struct LogoutUser {
    /// The user.
    pub userid: u64,
}

/// Ends every session of one user, leaving no copy of their data in the backend; answers how many.
#[derive(Debug, Clone, Copy)]
pub struct EraseUser {
    /// The user.
    pub userid: u64,
}

/// Lists the live sessions of one user, on every shard, most recently used first.
#[derive(Debug, Clone, Copy)]
pub struct SessionsOf {
    /// The user.
    pub userid: u64,
}

/// Ends one session of a user, named by its [`SessionHandle`] (from [`SessionsOf`]); answers
/// whether a live session of that user had that handle.
#[derive(Debug, Clone, Copy)]
pub struct Revoke {
    /// The user the session must belong to.
    pub userid: u64,
    /// Which of the user's sessions.
    pub handle: SessionHandle,
}

/// Engine statistics.
#[derive(Debug, Clone, Copy)]
pub struct Stats;

/// Drops every expired session now; answers how many (workers also do it on their own).
#[derive(Debug, Clone, Copy)]
pub struct Sweep;

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
    /// Anonymous sessions evicted to keep the shard within its share of `limits.max_memory`
    /// (memory backend).
    pub evicted: u64,
    /// What the shard's sessions take, as `limits.max_memory` estimates it (memory backend).
    pub memory_bytes: usize,
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

pub(crate) mod op {
    //! What every layer knows of an operation, generically. Public in a private module: the
    //! backends' traits build on it and the engine's public [`EngineMessage`] is implemented
    //! for every `Op`, yet nobody outside the crate can name or implement it.
    //!
    //! [`EngineMessage`]: crate::EngineMessage

    use super::{SessionId, SessionInfo};
    use crate::error::Result;
    use crate::telemetry::Lifecycle;

    /// Every operation the engine counts, the `op` label of its metrics.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum OpKind {
        Create,
        Get,
        Set,
        Remove,
        Clear,
        Keys,
        Update,
        Increment,
        Login,
        Logout,
        SetPersistent,
        Info,
        Touch,
        /// The lookup of a request's cookie riding along with its first operation.
        Lookup,
        Destroy,
        LogoutUser,
        SessionsOf,
        Revoke,
        Stats,
        Sweep,
        Snapshot,
        EraseUser,
    }

    impl OpKind {
        /// Every kind, in the enum's order (its discriminant indexes this).
        pub const ALL: [OpKind; 22] = [
            OpKind::Create,
            OpKind::Get,
            OpKind::Set,
            OpKind::Remove,
            OpKind::Clear,
            OpKind::Keys,
            OpKind::Update,
            OpKind::Increment,
            OpKind::Login,
            OpKind::Logout,
            OpKind::SetPersistent,
            OpKind::Info,
            OpKind::Touch,
            OpKind::Lookup,
            OpKind::Destroy,
            OpKind::LogoutUser,
            OpKind::SessionsOf,
            OpKind::Revoke,
            OpKind::Stats,
            OpKind::Sweep,
            OpKind::Snapshot,
            OpKind::EraseUser,
        ];

        /// The `op` label.
        pub fn name(self) -> &'static str {
            match self {
                OpKind::Create => "create",
                OpKind::Get => "get",
                OpKind::Set => "set",
                OpKind::Remove => "remove",
                OpKind::Clear => "clear",
                OpKind::Keys => "keys",
                OpKind::Update => "update",
                OpKind::Increment => "increment",
                OpKind::Login => "login",
                OpKind::Logout => "logout",
                OpKind::SetPersistent => "set_persistent",
                OpKind::Info => "info",
                OpKind::Touch => "touch",
                OpKind::Lookup => "lookup",
                OpKind::Destroy => "destroy",
                OpKind::LogoutUser => "logout_user",
                OpKind::SessionsOf => "sessions_of",
                OpKind::Revoke => "revoke",
                OpKind::Stats => "stats",
                OpKind::Sweep => "sweep",
                OpKind::Snapshot => "snapshot",
                OpKind::EraseUser => "erase_user",
            }
        }

        /// Every `op` label, indexed by the kind's discriminant.
        pub fn names() -> [&'static str; 22] {
            OpKind::ALL.map(OpKind::name)
        }
    }

    /// An operation the backends run.
    pub trait Op: Send + Sized {
        /// What it answers.
        type Reply: Send + Sync + 'static;
        /// The same operation with owned names, to cross to another thread.
        type Owned: Op<Reply = Self::Reply, Owned = Self::Owned> + 'static;
        /// Its metric label.
        const KIND: OpKind;

        /// The session it is about; `None` for an engine-wide operation.
        fn session(&self) -> Option<&SessionId>;

        /// Checks its names before it goes anywhere.
        fn check(&self) -> Result<()> {
            Ok(())
        }

        /// Owned names, for a message to another thread.
        fn into_owned(self) -> Self::Owned;

        /// The bytes of the value it stores, if it stores one given by the caller: checked
        /// against `limits.max_value_bytes` before a session is created for it.
        fn value_len(&self) -> usize {
            0
        }

        /// The lifecycle counter a successful answer adds to, and by how much.
        fn counts(_reply: &Self::Reply) -> Option<(Lifecycle, u64)> {
            None
        }

        /// A successful login's session, for `limits.max_sessions_per_user`.
        fn logged_in(_reply: &Self::Reply) -> Option<&SessionInfo> {
            None
        }
    }
}

use op::Op;
pub(crate) use op::OpKind;

fn owned(name: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(name.into_owned())
}

fn names(scope: &str, key: &str) -> Result<()> {
    check_name("scope", scope)?;
    check_name("key", key)
}

/// `Op` for a message about one session: its id, its reply, its kind, what else it says.
macro_rules! session_op {
    ($msg:ident -> $reply:ty, $kind:ident $(, $extra:item)*) => {
        impl Op for $msg {
            type Reply = $reply;
            type Owned = Self;
            const KIND: OpKind = OpKind::$kind;
            fn session(&self) -> Option<&SessionId> {
                Some(&self.id)
            }
            fn into_owned(self) -> Self {
                self
            }
            $($extra)*
        }
    };
}

/// `Op` for an engine-wide message.
macro_rules! engine_op {
    ($msg:ident -> $reply:ty, $kind:ident $(, $extra:item)*) => {
        impl Op for $msg {
            type Reply = $reply;
            type Owned = Self;
            const KIND: OpKind = OpKind::$kind;
            fn session(&self) -> Option<&SessionId> {
                None
            }
            fn into_owned(self) -> Self {
                self
            }
            $($extra)*
        }
    };
}

/// `Op` for a message naming a value (`scope`, `key`): names checked, owned on demand.
macro_rules! value_op {
    ($msg:ident -> $reply:ty, $kind:ident, $($field:ident),* $(; $extra:item)*) => {
        impl<'a> Op for $msg<'a> {
            type Reply = $reply;
            type Owned = $msg<'static>;
            const KIND: OpKind = OpKind::$kind;
            fn session(&self) -> Option<&SessionId> {
                Some(&self.id)
            }
            fn check(&self) -> Result<()> {
                names(&self.scope, &self.key)
            }
            fn into_owned(self) -> $msg<'static> {
                $msg { id: self.id, scope: owned(self.scope), key: owned(self.key), $($field: self.$field),* }
            }
            $($extra)*
        }
    };
}

session_op!(Create -> SessionInfo, Create,
    fn counts(_: &SessionInfo) -> Option<(Lifecycle, u64)> { Some((Lifecycle::Created, 1)) });
value_op!(Get -> Option<Vec<u8>>, Get,);
value_op!(Set -> (), Set, value; fn value_len(&self) -> usize { self.value.len() });
value_op!(Remove -> bool, Remove,);
value_op!(Update -> Option<Vec<u8>>, Update, f);
value_op!(Increment -> i64, Increment, by);
session_op!(Login -> SessionInfo, Login,
    fn counts(_: &SessionInfo) -> Option<(Lifecycle, u64)> { Some((Lifecycle::Login, 1)) },
    fn logged_in(reply: &SessionInfo) -> Option<&SessionInfo> { Some(reply) });
session_op!(Logout -> SessionInfo, Logout,
    fn counts(_: &SessionInfo) -> Option<(Lifecycle, u64)> { Some((Lifecycle::Logout, 1)) });
session_op!(SetPersistent -> SessionInfo, SetPersistent);
session_op!(Info -> SessionInfo, Info);
session_op!(Touch -> SessionInfo, Touch);
session_op!(Destroy -> bool, Destroy,
    fn counts(ended: &bool) -> Option<(Lifecycle, u64)> { Some((Lifecycle::Destroyed, u64::from(*ended))) });
engine_op!(LogoutUser -> usize, LogoutUser,
    fn counts(n: &usize) -> Option<(Lifecycle, u64)> { Some((Lifecycle::Revoked, *n as u64)) });
engine_op!(EraseUser -> usize, EraseUser, fn counts(n: &usize) -> Option<(Lifecycle, u64)> { LogoutUser::counts(n) });
engine_op!(SessionsOf -> Vec<UserSession>, SessionsOf);
engine_op!(Revoke -> bool, Revoke,
    fn counts(ended: &bool) -> Option<(Lifecycle, u64)> { Some((Lifecycle::Revoked, u64::from(*ended))) });
engine_op!(Stats -> EngineStats, Stats);
engine_op!(Sweep -> usize, Sweep);

impl<'a> Op for Clear<'a> {
    type Reply = ();
    type Owned = Clear<'static>;
    const KIND: OpKind = OpKind::Clear;
    fn session(&self) -> Option<&SessionId> {
        Some(&self.id)
    }
    fn check(&self) -> Result<()> {
        self.scope.as_deref().map_or(Ok(()), |s| check_name("scope", s))
    }
    fn into_owned(self) -> Clear<'static> {
        Clear { id: self.id, scope: self.scope.map(owned) }
    }
}

impl<'a> Op for Keys<'a> {
    type Reply = Vec<String>;
    type Owned = Keys<'static>;
    const KIND: OpKind = OpKind::Keys;
    fn session(&self) -> Option<&SessionId> {
        Some(&self.id)
    }
    fn check(&self) -> Result<()> {
        check_name("scope", &self.scope)
    }
    fn into_owned(self) -> Keys<'static> {
        Keys { id: self.id, scope: owned(self.scope) }
    }
}
