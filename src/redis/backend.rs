//! The Redis backend's side of the [`Backend`] seam: each operation is the store's own.

use std::future::Future;

use super::RedisStore;
use crate::backend::Backend;
use crate::error::{Result, SessionError};
use crate::id::SessionId;
use crate::message::{EngineStats, SessionInfo, UpdateFn};

impl Backend for RedisStore {
    fn shards(&self) -> usize {
        1
    }

    async fn create(&self, id: Option<SessionId>) -> Result<SessionInfo> {
        RedisStore::create(self, id).await
    }

    async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        RedisStore::create_counter(self, scope, key, by).await
    }

    async fn get(&self, id: SessionId, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        RedisStore::get(self, id, scope, key).await
    }

    async fn set(&self, id: SessionId, scope: &str, key: &str, value: Vec<u8>) -> Result<()> {
        RedisStore::set(self, id, scope, key, value).await
    }

    async fn remove(&self, id: SessionId, scope: &str, key: &str) -> Result<bool> {
        RedisStore::remove(self, id, scope, key).await
    }

    async fn clear(&self, id: SessionId, scope: Option<&str>) -> Result<()> {
        RedisStore::clear(self, id, scope).await
    }

    async fn keys(&self, id: SessionId, scope: &str) -> Result<Vec<String>> {
        RedisStore::keys(self, id, scope).await
    }

    async fn update(&self, id: SessionId, scope: &str, key: &str, f: UpdateFn) -> Result<Option<Vec<u8>>> {
        RedisStore::update(self, id, scope, key, f).await
    }

    async fn increment(&self, id: SessionId, scope: &str, key: &str, by: i64) -> Result<Option<i64>> {
        RedisStore::increment(self, id, scope, key, by).await
    }

    async fn login(&self, id: SessionId, userid: u64) -> Result<SessionInfo> {
        if userid == 0 {
            return Err(SessionError::InvalidUserId);
        }
        self.rotate(id, userid).await
    }

    async fn logout(&self, id: SessionId) -> Result<SessionInfo> {
        self.rotate(id, 0).await
    }

    async fn set_persistent(&self, id: SessionId, persistent: bool) -> Result<SessionInfo> {
        RedisStore::set_persistent(self, id, persistent).await
    }

    async fn info(&self, id: SessionId, touch: bool) -> Result<SessionInfo> {
        RedisStore::info(self, id, touch).await
    }

    async fn looked_up<R, F>(&self, id: SessionId, op: F) -> (Result<SessionInfo>, Result<R>)
    where
        F: Future<Output = Result<R>>,
    {
        RedisStore::looked_up(self, id, op).await
    }

    async fn destroy(&self, id: SessionId) -> Result<bool> {
        RedisStore::destroy(self, id).await
    }

    async fn logout_user(&self, userid: u64) -> Result<usize> {
        RedisStore::logout_user(self, userid).await
    }

    async fn sessions_of(&self, userid: u64) -> Result<Vec<SessionInfo>> {
        RedisStore::sessions_of(self, userid).await
    }

    async fn stats(&self) -> Result<EngineStats> {
        RedisStore::stats(self).await
    }

    /// Redis expires sessions on its own: nothing to sweep.
    async fn sweep(&self) -> Result<usize> {
        self.check_open().map(|()| 0)
    }

    /// Redis persists by its own configuration: nothing to write.
    async fn snapshot(&self) -> Result<usize> {
        self.check_open().map(|()| 0)
    }

    async fn shutdown(&self) {
        self.close();
    }
}
