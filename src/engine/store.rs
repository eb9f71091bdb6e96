//! [`Store`]: the closed set of backends an engine can run on, itself a [`Backend`] that
//! hands each call to the one it holds.

use std::future::Future;

#[cfg(feature = "redis")]
use futures_util::future::Either;

use crate::backend::Backend;
use crate::error::Result;
use crate::id::{SessionHandle, SessionId};
use crate::memory::MemoryBackend;
use crate::message::{EngineStats, SessionInfo, UpdateFn, UserSession};

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

    /// A fresh id for a session about to be created on this thread: on the memory backend,
    /// one of this thread's own shard when it hosts one.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub fn new_id(&self, keyring: &crate::id::Keyring) -> SessionId {
        match self {
            Self::Memory(m) => m.new_id(),
            #[cfg(feature = "redis")]
            Self::Redis(_) => keyring.generate(),
        }
    }

    /// Hosts a shard on this thread, where the backend and placement do that.
    pub async fn host_here(&self) -> Option<usize> {
        match self {
            Self::Memory(m) => m.host_here().await,
            #[cfg(feature = "redis")]
            Self::Redis(_) => None,
        }
    }

    /// A subscription to the backend's session events (see [`crate::events`]).
    pub async fn subscribe(&self) -> Result<crate::events::Subscription> {
        match self {
            Self::Memory(m) => Ok(m.subscribe()),
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.subscribe().await,
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

/// `$call` on whichever backend `$store` holds, bound to `$b`. The backends' futures are
/// wrapped (`Either`), not awaited inside another `async fn`: an `async fn` keeps its
/// arguments in its state beside the future it awaits, so each pass-through layer would grow
/// every future the web layer builds (measured: 12k instructions of copying per request).
#[cfg(feature = "redis")]
macro_rules! each {
    ($store:expr, $b:ident => $call:expr) => {
        match $store {
            Store::Memory($b) => Either::Left($call),
            Store::Redis($b) => Either::Right($call),
        }
    };
}

/// As above, with the memory backend only.
#[cfg(not(feature = "redis"))]
macro_rules! each {
    ($store:expr, $b:ident => $call:expr) => {
        match $store {
            Store::Memory($b) => $call,
        }
    };
}

impl Backend for Store {
    fn shards(&self) -> usize {
        match self {
            Self::Memory(b) => b.shards(),
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.shards(),
        }
    }

    fn create(&self, id: Option<SessionId>) -> impl Future<Output = Result<SessionInfo>> + Send {
        each!(self, b => b.create(id))
    }

    fn create_counter(
        &self,
        scope: &str,
        key: &str,
        by: i64,
    ) -> impl Future<Output = Result<Option<(SessionInfo, i64)>>> + Send {
        each!(self, b => b.create_counter(scope, key, by))
    }

    fn get(&self, id: SessionId, scope: &str, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        each!(self, b => b.get(id, scope, key))
    }

    fn set(&self, id: SessionId, scope: &str, key: &str, value: Vec<u8>) -> impl Future<Output = Result<()>> + Send {
        each!(self, b => b.set(id, scope, key, value))
    }

    fn remove(&self, id: SessionId, scope: &str, key: &str) -> impl Future<Output = Result<bool>> + Send {
        each!(self, b => b.remove(id, scope, key))
    }

    fn clear(&self, id: SessionId, scope: Option<&str>) -> impl Future<Output = Result<()>> + Send {
        each!(self, b => b.clear(id, scope))
    }

    fn keys(&self, id: SessionId, scope: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        each!(self, b => b.keys(id, scope))
    }

    fn update(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        f: UpdateFn,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        each!(self, b => b.update(id, scope, key, f))
    }

    fn increment(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        by: i64,
    ) -> impl Future<Output = Result<Option<i64>>> + Send {
        each!(self, b => b.increment(id, scope, key, by))
    }

    fn login(&self, id: SessionId, userid: u64) -> impl Future<Output = Result<SessionInfo>> + Send {
        each!(self, b => b.login(id, userid))
    }

    fn logout(&self, id: SessionId) -> impl Future<Output = Result<SessionInfo>> + Send {
        each!(self, b => b.logout(id))
    }

    fn set_persistent(&self, id: SessionId, persistent: bool) -> impl Future<Output = Result<SessionInfo>> + Send {
        each!(self, b => b.set_persistent(id, persistent))
    }

    fn info(&self, id: SessionId, touch: bool) -> impl Future<Output = Result<SessionInfo>> + Send {
        each!(self, b => b.info(id, touch))
    }

    fn looked_up<R, F>(&self, id: SessionId, op: F) -> impl Future<Output = (Result<SessionInfo>, Result<R>)>
    where
        F: Future<Output = Result<R>>,
    {
        each!(self, b => b.looked_up(id, op))
    }

    fn destroy(&self, id: SessionId) -> impl Future<Output = Result<bool>> + Send {
        each!(self, b => b.destroy(id))
    }

    fn logout_user(&self, userid: u64) -> impl Future<Output = Result<usize>> + Send {
        each!(self, b => b.logout_user(userid))
    }

    fn sessions_of(&self, userid: u64) -> impl Future<Output = Result<Vec<UserSession>>> + Send {
        each!(self, b => b.sessions_of(userid))
    }

    fn revoke(&self, userid: u64, handle: SessionHandle) -> impl Future<Output = Result<bool>> + Send {
        each!(self, b => b.revoke(userid, handle))
    }

    fn stats(&self) -> impl Future<Output = Result<EngineStats>> + Send {
        each!(self, b => b.stats())
    }

    fn sweep(&self) -> impl Future<Output = Result<usize>> + Send {
        each!(self, b => b.sweep())
    }

    fn snapshot(&self) -> impl Future<Output = Result<usize>> + Send {
        each!(self, b => b.snapshot())
    }

    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        each!(self, b => b.shutdown())
    }
}
