//! [`Store`]: the closed set of backends an engine can run on, itself a [`Backend`] that
//! hands each call to the one it holds.

use std::future::Future;

use crate::backend::Backend;
use crate::error::Result;
use crate::id::SessionId;
use crate::memory::MemoryBackend;
use crate::message::{EngineStats, SessionInfo, UpdateFn};

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
