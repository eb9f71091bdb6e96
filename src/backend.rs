//! The seam between the engine handle and where sessions live: [`Backend`], one trait every
//! backend implements (the memory backend in `crate::memory`, Redis in `crate::redis`).
//!
//! An operation is a typed message (`crate::message`): [`Backend::run`] takes any of them.
//! Each backend implements each message once, in its own `ops.rs` (`OnShard` against a
//! shard, [`OnRedis`] against Redis); a message both implement is a [`BackendOp`], and
//! the compiler asks every backend for every message the engine sends.

use std::future::Future;

use crate::error::Result;
use crate::events::Subscription;
use crate::id::{Keyring, SessionId};
use crate::message::SessionInfo;
use crate::message::op::Op;

pub(crate) use crate::memory::ShardOp;
#[cfg(feature = "redis")]
pub(crate) use crate::redis::OnRedis;

/// Without the `redis` feature every message is trivially a Redis operation: there is no
/// Redis backend to run it.
#[cfg(not(feature = "redis"))]
pub(crate) trait OnRedis {}
#[cfg(not(feature = "redis"))]
impl<T> OnRedis for T {}

/// An operation every backend runs.
pub(crate) trait BackendOp: Op + ShardOp + OnRedis {}
impl<T: Op + ShardOp + OnRedis> BackendOp for T {}

/// What a backend does. Ids reaching it were verified by the engine; names were checked.
/// Every future an operation answers is `Send`, so a request's handle can move across
/// threads.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Shards of the backend (1 when it has none of its own).
    fn shards(&self) -> usize;

    /// Runs one operation.
    fn run<M: BackendOp>(&self, msg: M) -> impl Future<Output = Result<M::Reply>> + Send;

    /// Runs `op`, an operation on `id`, and answers `id`'s metadata as it was before `op`, in
    /// one trip where the backend can (see `Door::looked_up`); `lookup` reads the metadata on
    /// its own where the backend needs that. Not bound `Send` here: whether it is depends on
    /// `op`, and callers see the concrete type.
    fn looked_up<R, F, L>(
        &self,
        id: SessionId,
        op: F,
        lookup: impl FnOnce() -> L,
    ) -> impl Future<Output = (Result<SessionInfo>, Result<R>)>
    where
        F: Future<Output = Result<R>>,
        L: Future<Output = Result<SessionInfo>>;

    /// A fresh id for a session about to be created on this thread.
    fn new_id(&self, keyring: &Keyring) -> SessionId {
        keyring.generate()
    }

    /// A new session whose counter `scope`/`key` holds `by`, in one step; `None` when the
    /// backend has no such step (the caller creates, then increments).
    fn create_counter(
        &self,
        _scope: &str,
        _key: &str,
        _by: i64,
    ) -> impl Future<Output = Result<Option<(SessionInfo, i64)>>> + Send {
        std::future::ready(Ok(None))
    }

    /// Hosts a shard on this thread, where the backend and placement do that.
    fn host_here(&self) -> impl Future<Output = Option<usize>> {
        std::future::ready(None)
    }

    /// A subscription to the backend's session events (see [`crate::events`]).
    fn subscribe(&self) -> impl Future<Output = Result<Subscription>> + Send;

    /// Makes every change durable now; how many sessions were written.
    fn snapshot(&self) -> impl Future<Output = Result<usize>> + Send;

    /// Stops serving; later calls answer `Unavailable(EngineStopped)`.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}
