//! The Redis backend's side of the engine's [`Backend`] seam: operations run as their
//! [`OnRedis`](super::ops::OnRedis) implementation; the rest is the store's own.

use std::future::Future;

use super::RedisStore;
use super::ops::OnRedis;
use crate::backend::{Backend, BackendOp};
use crate::error::Result;
use crate::id::SessionId;
use crate::message::SessionInfo;

impl Backend for RedisStore {
    fn shards(&self) -> usize {
        1
    }

    fn run<M: BackendOp>(&self, msg: M) -> impl Future<Output = Result<M::Reply>> + Send {
        OnRedis::run(msg, self)
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
        RedisStore::looked_up(self, id, op, lookup)
    }

    fn create_counter(
        &self,
        scope: &str,
        key: &str,
        by: i64,
    ) -> impl Future<Output = Result<Option<(SessionInfo, i64)>>> + Send {
        RedisStore::create_counter(self, scope, key, by)
    }

    fn subscribe(&self) -> impl Future<Output = Result<crate::events::Subscription>> + Send {
        RedisStore::subscribe(self)
    }

    /// Redis persists by its own configuration: nothing to write.
    async fn snapshot(&self) -> Result<usize> {
        self.check_open().map(|()| 0)
    }

    async fn shutdown(&self) {
        self.close();
    }
}
