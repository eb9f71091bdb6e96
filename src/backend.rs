//! The seam between the engine handle and where sessions live: [`Backend`], one trait every
//! backend implements in full, and [`Store`], the closed set of backends an engine can run.
//!
//! [`SessionEngine`](crate::SessionEngine) checks names and verifies ids, then forwards each
//! call to its `Store` once; `Store` hands it to the backend it holds. Adding an operation
//! means adding it to `Backend`, and the compiler then asks every backend for it.

use std::future::Future;

use crate::error::Result;
use crate::id::SessionId;
use crate::memory::MemoryBackend;
use crate::message::{EngineStats, SessionInfo, UpdateFn};

/// What a backend does. Ids reaching it were verified by the engine; scope and key names
/// were checked. Every future is `Send`, so a request's handle can move across threads.
pub(crate) trait Backend: Send + Sync + 'static {
    /// Shards of the backend (1 when it has none of its own).
    fn shards(&self) -> usize;

    /// Creates an empty anonymous session, under `id` when given (the caller made it first,
    /// to send an operation along), else under a fresh one.
    fn create(&self, id: Option<SessionId>) -> impl Future<Output = Result<SessionInfo>> + Send;

    /// A new session whose counter `scope`/`key` holds `by`, in one step; `None` when the
    /// backend has no such step (the caller creates, then increments).
    fn create_counter(
        &self,
        scope: &str,
        key: &str,
        by: i64,
    ) -> impl Future<Output = Result<Option<(SessionInfo, i64)>>> + Send;

    fn get(&self, id: SessionId, scope: &str, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    fn set(&self, id: SessionId, scope: &str, key: &str, value: Vec<u8>) -> impl Future<Output = Result<()>> + Send;

    fn remove(&self, id: SessionId, scope: &str, key: &str) -> impl Future<Output = Result<bool>> + Send;

    fn clear(&self, id: SessionId, scope: Option<&str>) -> impl Future<Output = Result<()>> + Send;

    fn keys(&self, id: SessionId, scope: &str) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Runs `f` on the current value where no concurrent change can interleave.
    fn update(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        f: UpdateFn,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send;

    /// Adds `by` to an integer counter in one step; `None` when the backend has no such step
    /// or the value is not a plain integer (the caller then uses [`update`](Self::update)).
    fn increment(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        by: i64,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// Logs `userid` (at least 1) in: the id rotates, the data stays.
    fn login(&self, id: SessionId, userid: u64) -> impl Future<Output = Result<SessionInfo>> + Send;

    fn logout(&self, id: SessionId) -> impl Future<Output = Result<SessionInfo>> + Send;

    fn set_persistent(&self, id: SessionId, persistent: bool) -> impl Future<Output = Result<SessionInfo>> + Send;

    /// The metadata; `touch` counts as a use.
    fn info(&self, id: SessionId, touch: bool) -> impl Future<Output = Result<SessionInfo>> + Send;

    /// Runs `op` on `id` and answers `id`'s metadata as it was before `op`, in one trip where
    /// the backend can (see `SessionEngine::looked_up`).
    /// Not bound `Send` here: whether it is depends on `op`, and callers see the concrete type.
    fn looked_up<R, F>(&self, id: SessionId, op: F) -> impl Future<Output = (Result<SessionInfo>, Result<R>)>
    where
        F: Future<Output = Result<R>>;

    fn destroy(&self, id: SessionId) -> impl Future<Output = Result<bool>> + Send;

    fn logout_user(&self, userid: u64) -> impl Future<Output = Result<usize>> + Send;

    fn sessions_of(&self, userid: u64) -> impl Future<Output = Result<Vec<SessionInfo>>> + Send;

    fn stats(&self) -> impl Future<Output = Result<EngineStats>> + Send;

    /// Drops expired sessions now; how many.
    fn sweep(&self) -> impl Future<Output = Result<usize>> + Send;

    /// Makes every change durable now; how many sessions were written.
    fn snapshot(&self) -> impl Future<Output = Result<usize>> + Send;

    /// Stops serving; later calls answer `Unavailable(EngineStopped)`.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}

/// The backend an engine runs on (`storage.backend`).
pub(crate) enum Store {
    /// Shard workers in this process.
    Memory(MemoryBackend),
    /// A Redis server or cluster.
    #[cfg(feature = "redis")]
    Redis(crate::redis::RedisStore),
}

impl Store {
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

/// `$call` on whichever backend `$store` holds, bound to `$b`.
macro_rules! each {
    ($store:expr, $b:ident => $call:expr) => {
        match $store {
            Store::Memory($b) => $call,
            #[cfg(feature = "redis")]
            Store::Redis($b) => $call,
        }
    };
}

impl Backend for Store {
    fn shards(&self) -> usize {
        each!(self, b => b.shards())
    }

    async fn create(&self, id: Option<SessionId>) -> Result<SessionInfo> {
        each!(self, b => b.create(id).await)
    }

    async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        each!(self, b => b.create_counter(scope, key, by).await)
    }

    async fn get(&self, id: SessionId, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        each!(self, b => b.get(id, scope, key).await)
    }

    async fn set(&self, id: SessionId, scope: &str, key: &str, value: Vec<u8>) -> Result<()> {
        each!(self, b => b.set(id, scope, key, value).await)
    }

    async fn remove(&self, id: SessionId, scope: &str, key: &str) -> Result<bool> {
        each!(self, b => b.remove(id, scope, key).await)
    }

    async fn clear(&self, id: SessionId, scope: Option<&str>) -> Result<()> {
        each!(self, b => b.clear(id, scope).await)
    }

    async fn keys(&self, id: SessionId, scope: &str) -> Result<Vec<String>> {
        each!(self, b => b.keys(id, scope).await)
    }

    async fn update(&self, id: SessionId, scope: &str, key: &str, f: UpdateFn) -> Result<Option<Vec<u8>>> {
        each!(self, b => b.update(id, scope, key, f).await)
    }

    async fn increment(&self, id: SessionId, scope: &str, key: &str, by: i64) -> Result<Option<i64>> {
        each!(self, b => b.increment(id, scope, key, by).await)
    }

    async fn login(&self, id: SessionId, userid: u64) -> Result<SessionInfo> {
        each!(self, b => b.login(id, userid).await)
    }

    async fn logout(&self, id: SessionId) -> Result<SessionInfo> {
        each!(self, b => b.logout(id).await)
    }

    async fn set_persistent(&self, id: SessionId, persistent: bool) -> Result<SessionInfo> {
        each!(self, b => b.set_persistent(id, persistent).await)
    }

    async fn info(&self, id: SessionId, touch: bool) -> Result<SessionInfo> {
        each!(self, b => b.info(id, touch).await)
    }

    async fn looked_up<R, F>(&self, id: SessionId, op: F) -> (Result<SessionInfo>, Result<R>)
    where
        F: Future<Output = Result<R>>,
    {
        each!(self, b => b.looked_up(id, op).await)
    }

    async fn destroy(&self, id: SessionId) -> Result<bool> {
        each!(self, b => b.destroy(id).await)
    }

    async fn logout_user(&self, userid: u64) -> Result<usize> {
        each!(self, b => b.logout_user(userid).await)
    }

    async fn sessions_of(&self, userid: u64) -> Result<Vec<SessionInfo>> {
        each!(self, b => b.sessions_of(userid).await)
    }

    async fn stats(&self) -> Result<EngineStats> {
        each!(self, b => b.stats().await)
    }

    async fn sweep(&self) -> Result<usize> {
        each!(self, b => b.sweep().await)
    }

    async fn snapshot(&self) -> Result<usize> {
        each!(self, b => b.snapshot().await)
    }

    async fn shutdown(&self) {
        each!(self, b => b.shutdown().await)
    }
}
