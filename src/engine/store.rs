//! [`AnyBackend`]: the closed set of backends an engine can run on, itself a [`Backend`] that
//! hands each call to the one it holds.

use std::future::Future;

#[cfg(feature = "redis")]
use futures_util::future::Either;

use crate::backend::{Backend, BackendOp};
use crate::error::Result;
use crate::events::Subscription;
use crate::id::{Keyring, SessionId};
use crate::memory::MemoryBackend;
use crate::message::SessionInfo;

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

impl Backend for AnyBackend {
    fn shards(&self) -> usize {
        match self {
            Self::Memory(b) => b.shards(),
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.shards(),
        }
    }

    fn run<M: BackendOp>(&self, msg: M) -> impl Future<Output = Result<M::Reply>> + Send {
        each!(self, b => b.run(msg))
    }

    fn looked_up<R, F, L>(
        &self,
        id: SessionId,
        op: F,
        lookup: impl FnOnce() -> L,
    ) -> impl Future<Output = (Result<SessionInfo>, Result<R>)>
    where
        F: Future<Output = Result<R>>,
        L: Future<Output = Result<SessionInfo>>,
    {
        each!(self, b => b.looked_up(id, op, lookup))
    }

    fn new_id(&self, keyring: &Keyring) -> SessionId {
        match self {
            Self::Memory(b) => b.new_id(keyring),
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.new_id(keyring),
        }
    }

    fn create_counter(
        &self,
        scope: &str,
        key: &str,
        by: i64,
    ) -> impl Future<Output = Result<Option<(SessionInfo, i64)>>> + Send {
        each!(self, b => b.create_counter(scope, key, by))
    }

    fn host_here(&self) -> impl Future<Output = Option<usize>> {
        each!(self, b => b.host_here())
    }

    fn subscribe(&self) -> impl Future<Output = Result<Subscription>> + Send {
        each!(self, b => b.subscribe())
    }

    fn snapshot(&self) -> impl Future<Output = Result<usize>> + Send {
        each!(self, b => b.snapshot())
    }

    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        each!(self, b => b.shutdown())
    }
}
