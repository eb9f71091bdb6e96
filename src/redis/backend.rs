//! The Redis backend's side of the [`Backend`] seam: each operation is the store's own,
//! handed over as its future (no `async fn` layer in between: see `engine/store.rs`).

use std::future::Future;

use super::RedisStore;
use crate::backend::Backend;
use crate::error::{Result, SessionError};
use crate::id::{SessionHandle, SessionId};
use crate::message::{EngineStats, SessionInfo, UpdateFn, UserSession};

impl Backend for RedisStore {
    fn shards(&self) -> usize {
        1
    }

    fn create(&self, id: Option<SessionId>) -> impl Future<Output = Result<SessionInfo>> + Send {
        RedisStore::create(self, id)
    }

    fn create_counter(
        &self,
        scope: &str,
        key: &str,
        by: i64,
    ) -> impl Future<Output = Result<Option<(SessionInfo, i64)>>> + Send {
        RedisStore::create_counter(self, scope, key, by)
    }

    fn get(&self, id: SessionId, scope: &str, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        RedisStore::get(self, id, scope, key)
    }

    fn set(&self, id: SessionId, scope: &str, key: &str, value: Vec<u8>) -> impl Future<Output = Result<()>> + Send {
        RedisStore::set(self, id, scope, key, value)
    }

    fn remove(&self, id: SessionId, scope: &str, key: &str) -> impl Future<Output = Result<bool>> + Send {
        RedisStore::remove(self, id, scope, key)
    }

    fn clear(&self, id: SessionId, scope: Option<&str>) -> impl Future<Output = Result<()>> + Send {
        RedisStore::clear(self, id, scope)
    }

    fn keys(&self, id: SessionId, scope: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        RedisStore::keys(self, id, scope)
    }

    fn update(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        f: UpdateFn,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        RedisStore::update(self, id, scope, key, f)
    }

    fn increment(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        by: i64,
    ) -> impl Future<Output = Result<Option<i64>>> + Send {
        RedisStore::increment(self, id, scope, key, by)
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

    fn set_persistent(&self, id: SessionId, persistent: bool) -> impl Future<Output = Result<SessionInfo>> + Send {
        RedisStore::set_persistent(self, id, persistent)
    }

    fn info(&self, id: SessionId, touch: bool) -> impl Future<Output = Result<SessionInfo>> + Send {
        RedisStore::info(self, id, touch)
    }

    fn looked_up<R, F>(&self, id: SessionId, op: F) -> impl Future<Output = (Result<SessionInfo>, Result<R>)>
    where
        F: Future<Output = Result<R>>,
    {
        RedisStore::looked_up(self, id, op)
    }

    fn destroy(&self, id: SessionId) -> impl Future<Output = Result<bool>> + Send {
        RedisStore::destroy(self, id)
    }

    fn logout_user(&self, userid: u64) -> impl Future<Output = Result<usize>> + Send {
        RedisStore::logout_user(self, userid)
    }

    fn sessions_of(&self, userid: u64) -> impl Future<Output = Result<Vec<UserSession>>> + Send {
        RedisStore::sessions_of(self, userid)
    }

    fn revoke(&self, userid: u64, handle: SessionHandle) -> impl Future<Output = Result<bool>> + Send {
        RedisStore::revoke(self, userid, handle)
    }

    fn stats(&self) -> impl Future<Output = Result<EngineStats>> + Send {
        RedisStore::stats(self)
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
