//! The seam between the engine and where sessions live: [`AnyBackend`], the closed set of
//! backends an engine can run on, handing each call to the one it holds; [`BackendOp`], an
//! operation every backend implements.
//!
//! An operation is a typed message (`crate::message`). Each backend implements each message
//! once, in its own `ops.rs` (`OnShard` against a shard, `OnRedis` against Redis); a message
//! both implement is a [`BackendOp`], and the compiler asks every backend for every message the
//! engine sends. The backends know nothing of this file: the engine depends on them, never the
//! other way round.

use std::future::Future;

#[cfg(feature = "redis")]
use futures_util::future::Either;

use crate::error::Result;
use crate::events::Subscription;
use crate::id::{Keyring, SessionId};
use crate::memory::MemoryBackend;
use crate::memory::ShardOp;
use crate::message::op::Op;
use crate::message::{Looked, SessionInfo};
#[cfg(feature = "redis")]
use crate::redis::OnRedis;

/// Without the `redis` feature every message is trivially a Redis operation: there is no
/// Redis backend to run it.
#[cfg(not(feature = "redis"))]
pub(crate) trait OnRedis {}
#[cfg(not(feature = "redis"))]
impl<T> OnRedis for T {}

/// An operation every backend runs.
pub(crate) trait BackendOp: Op + ShardOp + OnRedis {}
impl<T: Op + ShardOp + OnRedis> BackendOp for T {}

/// The backend an engine runs on (`storage.backend`).
pub(crate) enum AnyBackend {
    /// Shard workers in this process.
    Memory(MemoryBackend),
    /// A Redis server or cluster.
    #[cfg(feature = "redis")]
    Redis(crate::redis::RedisStore),
}

impl AnyBackend {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
        }
    }

    /// The memory backend, if that is the one.
    #[cfg(test)]
    pub fn memory(&self) -> Option<&MemoryBackend> {
        match self {
            Self::Memory(m) => Some(m),
            #[cfg(feature = "redis")]
            Self::Redis(_) => None,
        }
    }
}

/// `$call` on whichever backend `$any` holds, bound to `$b`. The backends' futures are
/// wrapped (`Either`), not awaited inside another `async fn`: an `async fn` keeps its
/// arguments in its state beside the future it awaits, so each pass-through layer would grow
/// every future the web layer builds (measured: 12k instructions of copying per request).
#[cfg(feature = "redis")]
macro_rules! each {
    ($any:expr, $b:ident => $call:expr) => {
        match $any {
            AnyBackend::Memory($b) => Either::Left($call),
            AnyBackend::Redis($b) => Either::Right($call),
        }
    };
}

/// As above, with the memory backend only.
#[cfg(not(feature = "redis"))]
macro_rules! each {
    ($any:expr, $b:ident => $call:expr) => {
        match $any {
            AnyBackend::Memory($b) => $call,
        }
    };
}

impl AnyBackend {
    /// Shards of the backend (1 when it has none of its own).
    pub fn shards(&self) -> usize {
        match self {
            Self::Memory(b) => b.shards(),
            #[cfg(feature = "redis")]
            Self::Redis(_) => 1,
        }
    }

    /// Runs one operation. Ids reaching here were verified by the engine; names were checked.
    /// Every future an operation answers is `Send`, so a request's handle can move across
    /// threads.
    pub fn run<M: BackendOp>(&self, msg: M) -> impl Future<Output = Result<M::Reply>> + Send {
        match self {
            #[cfg(feature = "redis")]
            Self::Memory(b) => Either::Left(b.run(msg)),
            #[cfg(not(feature = "redis"))]
            Self::Memory(b) => b.run(msg),
            // Boxed: a round trip to Redis dwarfs an allocation, and unboxed its state would
            // grow the memory backend's futures too (an `Either` is as large as its larger side).
            #[cfg(feature = "redis")]
            Self::Redis(b) => Either::Right(Box::pin(b.run_op(msg))),
        }
    }

    /// Runs `msg`, an operation on `id`, and answers `id`'s metadata as it was before `msg`,
    /// in one trip (see `Door::looked_up`): one shard call, here or as one message to the
    /// shard's host; on Redis the metadata comes from the operation's own reply (read on its
    /// own by `lookup` only when the reply lacks it).
    #[cfg_attr(not(feature = "redis"), expect(unused_variables, reason = "the memory backend's message does both"))]
    pub fn looked_up<M: BackendOp, L: Future<Output = Result<SessionInfo>> + Send>(
        &self,
        id: SessionId,
        msg: M,
        lookup: impl FnOnce() -> L + Send,
    ) -> impl Future<Output = (Result<SessionInfo>, Result<M::Reply>)> + Send {
        use futures_util::FutureExt as _;
        match self {
            Self::Memory(b) => {
                let both = b.run(Looked(msg)).map(|answer| {
                    // The shard did not run it (restarting, or its host unreachable): both fail.
                    answer.unwrap_or_else(|e| (Err(e.clone()), Err(e)))
                });
                #[cfg(feature = "redis")]
                let both = Either::Left(both);
                both
            }
            #[cfg(feature = "redis")]
            Self::Redis(b) => Either::Right(Box::pin(b.looked_up(id, b.run_op(msg), lookup))),
        }
    }

    /// Runs `op` (the login policy's list-and-end of one user's sessions) while no other
    /// instance on the same Redis runs it for `userid` (a lock of the user's, see
    /// `redis/index.rs`); on the memory backend, `op` as it is (the engine's own per-user lock
    /// in `Door` is enough: every session is in this process).
    #[cfg_attr(not(feature = "redis"), expect(unused_variables, reason = "only Redis needs the user"))]
    pub async fn exclusive_for_user<T>(&self, userid: u64, op: impl Future<Output = T>) -> T {
        match self {
            Self::Memory(_) => op.await,
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.exclusive_for_user(userid, op).await,
        }
    }

    /// A fresh id for a session about to be created on this thread.
    pub fn new_id(&self, keyring: &Keyring) -> SessionId {
        match self {
            Self::Memory(b) => b.new_id(keyring),
            #[cfg(feature = "redis")]
            Self::Redis(_) => keyring.generate(),
        }
    }

    /// A new session whose counter `scope`/`key` holds `by`, in one step; `None` when the
    /// backend has no such step (the caller creates, then increments).
    #[cfg_attr(not(feature = "redis"), expect(unused_variables, reason = "the memory backend has no such step"))]
    pub async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        match self {
            Self::Memory(_) => Ok(None),
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.create_counter(scope, key, by).await,
        }
    }

    /// Hosts a shard on this thread, where the backend and placement do that.
    pub async fn host_here(&self) -> Option<usize> {
        match self {
            Self::Memory(b) => b.host_here().await,
            #[cfg(feature = "redis")]
            Self::Redis(_) => None,
        }
    }

    /// A subscription to the backend's session events (see [`crate::events`]).
    pub fn subscribe(&self) -> impl Future<Output = Result<Subscription>> + Send {
        each!(self, b => b.subscribe())
    }

    /// Makes every change durable now; how many sessions were written.
    pub fn snapshot(&self) -> impl Future<Output = Result<usize>> + Send {
        each!(self, b => b.snapshot())
    }

    /// Stops serving; later calls answer `Unavailable(EngineStopped)`.
    pub async fn shutdown(&self) {
        match self {
            Self::Memory(b) => b.shutdown().await,
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.close(),
        }
    }
}
