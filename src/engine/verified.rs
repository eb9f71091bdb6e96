//! [`Verified`]: the engine's per-session operations for ids already known to be ours.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{SessionEngine, decode, decode_updated, encode, names, update_step};
use crate::error::Result;
use crate::id::SessionId;
use crate::message::{SessionInfo, UpdateFn};
use crate::names::check_name;

/// The engine's per-session operations without the id's tag check: for ids the middleware
/// verified as it parsed the cookie, or the engine made itself. The public methods of
/// [`SessionEngine`] check the tag and come here; the web layer comes here directly, so a
/// request's id is verified once. Names are still checked.
#[derive(Clone, Copy)]
pub(crate) struct Verified<'a>(pub(super) &'a SessionEngine);

impl Verified<'_> {
    pub async fn get<T: DeserializeOwned>(self, id: &SessionId, scope: &str, key: &str) -> Result<Option<T>> {
        match self.get_raw(id, scope, key).await? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub async fn get_raw(self, id: &SessionId, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        names(scope, key)?;
        self.0.backend().get(*id, scope, key).await
    }

    pub async fn insert<T: Serialize + ?Sized>(self, id: &SessionId, scope: &str, key: &str, value: &T) -> Result<()> {
        self.insert_raw(id, scope, key, encode(value)?).await
    }

    pub async fn insert_raw(self, id: &SessionId, scope: &str, key: &str, json: Vec<u8>) -> Result<()> {
        names(scope, key)?;
        self.0.backend().set(*id, scope, key, json).await
    }

    pub async fn remove(self, id: &SessionId, scope: &str, key: &str) -> Result<bool> {
        names(scope, key)?;
        self.0.backend().remove(*id, scope, key).await
    }

    pub async fn clear(self, id: &SessionId, scope: Option<&str>) -> Result<()> {
        if let Some(s) = scope {
            check_name("scope", s)?;
        }
        self.0.backend().clear(*id, scope).await
    }

    pub async fn keys(self, id: &SessionId, scope: &str) -> Result<Vec<String>> {
        check_name("scope", scope)?;
        self.0.backend().keys(*id, scope).await
    }

    pub async fn update<T, F>(self, id: &SessionId, scope: &str, key: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Option<T>) -> T + Send + 'static,
    {
        decode_updated(self.update_raw(id, scope, key, update_step(f)).await?)
    }

    pub async fn update_raw(self, id: &SessionId, scope: &str, key: &str, f: UpdateFn) -> Result<Option<Vec<u8>>> {
        names(scope, key)?;
        self.0.backend().update(*id, scope, key, f).await
    }

    pub async fn increment(self, id: &SessionId, scope: &str, key: &str, by: i64) -> Result<i64> {
        names(scope, key)?;
        let backend = self.0.backend();
        if let Some(n) = backend.increment(*id, scope, key, by).await? {
            return Ok(n);
        }
        let step = update_step(move |n: Option<i64>| n.unwrap_or(0).saturating_add(by));
        decode_updated(backend.update(*id, scope, key, step).await?)
    }

    /// Logs `userid` in; past `limits.max_sessions_per_user`, ends the user's least recently
    /// used other sessions.
    pub async fn login(self, id: &SessionId, userid: u64) -> Result<SessionInfo> {
        let info = self.0.backend().login(*id, userid).await?;
        let limit = self.0.config().limits.max_sessions_per_user;
        if limit > 0 {
            self.keep_newest(&info, limit).await;
        }
        Ok(info)
    }

    /// Ends the sessions of `info`'s user past the `limit` most recently used, the one just
    /// logged in excepted. Two logins at once each see the other as the more recent, so neither
    /// ends the other. A failure here is logged: the login itself has succeeded.
    async fn keep_newest(self, info: &SessionInfo, limit: usize) {
        match self.end_others(info.userid, &self.0.handle_of(&info.id), limit).await {
            Ok(0) => {}
            Ok(n) => log::info!(
                "user {}: {n} least recently used sessions ended (limits.max_sessions_per_user)",
                info.userid
            ),
            Err(e) => log::warn!("user {}: sessions past limits.max_sessions_per_user not ended: {e}", info.userid),
        }
    }

    /// Ends the sessions of `userid` past its `keep` most recently used, except `current`;
    /// how many ended.
    pub async fn end_others(self, userid: u64, current: &crate::SessionHandle, keep: usize) -> Result<usize> {
        let backend = self.0.backend();
        let mut ended = 0;
        for s in backend.sessions_of(userid).await?.iter().skip(keep).filter(|s| s.handle != *current) {
            ended += usize::from(backend.revoke(userid, s.handle).await?);
        }
        Ok(ended)
    }

    pub async fn logout(self, id: &SessionId) -> Result<SessionInfo> {
        self.0.backend().logout(*id).await
    }

    pub async fn set_persistent(self, id: &SessionId, persistent: bool) -> Result<SessionInfo> {
        self.0.backend().set_persistent(*id, persistent).await
    }

    pub async fn info(self, id: &SessionId) -> Result<SessionInfo> {
        self.0.backend().info(*id, false).await
    }

    pub async fn touch(self, id: &SessionId) -> Result<SessionInfo> {
        self.0.backend().info(*id, true).await
    }

    pub async fn destroy(self, id: &SessionId) -> Result<bool> {
        self.0.backend().destroy(*id).await
    }
}
