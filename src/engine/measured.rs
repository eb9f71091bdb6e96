//! [`Measured`]: the engine's backend as its operations see it — each call forwarded to the
//! [`Store`], and counted, sampled for latency and checked for errors on the way back
//! (`src/telemetry.rs`). Calls it does not measure reach the store through `Deref`.

use std::future::Future;
use std::ops::Deref;

use futures_util::FutureExt;

use super::store::Store;
use crate::backend::Backend;
use crate::error::Result;
use crate::id::{SessionHandle, SessionId};
use crate::message::{EngineStats, SessionInfo, UpdateFn, UserSession};
use crate::telemetry::{Metrics, Op};

/// The store and the engine's metric handles, for one call.
#[derive(Clone, Copy)]
pub(crate) struct Measured<'a> {
    pub store: &'a Store,
    pub metrics: &'a Metrics,
}

impl Deref for Measured<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.store
    }
}

/// `fut` for operation `op`, counted when it ends; `then` records what its answer means.
/// A combinator, not an `async fn`: see `engine/store.rs` on futures passed through.
fn measured<'a, T, F>(
    m: &'a Metrics,
    op: Op,
    fut: F,
    then: impl FnOnce(&Metrics, &T) + Send + 'a,
) -> impl Future<Output = Result<T>> + Send + 'a
where
    F: Future<Output = Result<T>> + Send + 'a,
{
    let start = m.start();
    fut.map(move |r| {
        m.finish(op, start, r.as_ref().err());
        if let Ok(v) = &r {
            then(m, v);
        }
        r
    })
}

fn nothing<T>(_: &Metrics, _: &T) {}

impl<'a> Measured<'a> {
    pub fn create(self, id: Option<SessionId>) -> impl Future<Output = Result<SessionInfo>> + Send + 'a {
        measured(self.metrics, Op::Create, self.store.create(id), |m, _| m.created.increment(1))
    }

    /// Counted as a `create` when it creates (Redis); the memory backend declines at once,
    /// uncounted, and the caller creates and increments.
    pub async fn create_counter(self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        let start = self.metrics.start();
        let r = self.store.create_counter(scope, key, by).await;
        match &r {
            Ok(None) => {}
            Ok(Some(_)) => {
                self.metrics.finish(Op::Create, start, None);
                self.metrics.created.increment(1);
            }
            Err(e) => self.metrics.finish(Op::Create, start, Some(e)),
        }
        r
    }

    pub fn get(
        self,
        id: SessionId,
        scope: &'a str,
        key: &'a str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send + 'a {
        measured(self.metrics, Op::Get, self.store.get(id, scope, key), nothing)
    }

    pub fn set(
        self,
        id: SessionId,
        scope: &'a str,
        key: &'a str,
        value: Vec<u8>,
    ) -> impl Future<Output = Result<()>> + Send + 'a {
        measured(self.metrics, Op::Set, self.store.set(id, scope, key, value), nothing)
    }

    pub fn remove(self, id: SessionId, scope: &'a str, key: &'a str) -> impl Future<Output = Result<bool>> + Send + 'a {
        measured(self.metrics, Op::Remove, self.store.remove(id, scope, key), nothing)
    }

    pub fn clear(self, id: SessionId, scope: Option<&'a str>) -> impl Future<Output = Result<()>> + Send + 'a {
        measured(self.metrics, Op::Clear, self.store.clear(id, scope), nothing)
    }

    pub fn keys(self, id: SessionId, scope: &'a str) -> impl Future<Output = Result<Vec<String>>> + Send + 'a {
        measured(self.metrics, Op::Keys, self.store.keys(id, scope), nothing)
    }

    pub fn update(
        self,
        id: SessionId,
        scope: &'a str,
        key: &'a str,
        f: UpdateFn,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send + 'a {
        measured(self.metrics, Op::Update, self.store.update(id, scope, key, f), nothing)
    }

    pub fn increment(
        self,
        id: SessionId,
        scope: &'a str,
        key: &'a str,
        by: i64,
    ) -> impl Future<Output = Result<Option<i64>>> + Send + 'a {
        measured(self.metrics, Op::Increment, self.store.increment(id, scope, key, by), nothing)
    }

    pub fn login(self, id: SessionId, userid: u64) -> impl Future<Output = Result<SessionInfo>> + Send + 'a {
        measured(self.metrics, Op::Login, self.store.login(id, userid), |m, _| m.logins.increment(1))
    }

    pub fn logout(self, id: SessionId) -> impl Future<Output = Result<SessionInfo>> + Send + 'a {
        measured(self.metrics, Op::Logout, self.store.logout(id), |m, _| m.logouts.increment(1))
    }

    pub fn set_persistent(
        self,
        id: SessionId,
        persistent: bool,
    ) -> impl Future<Output = Result<SessionInfo>> + Send + 'a {
        measured(self.metrics, Op::SetPersistent, self.store.set_persistent(id, persistent), nothing)
    }

    pub fn info(self, id: SessionId, touch: bool) -> impl Future<Output = Result<SessionInfo>> + Send + 'a {
        let op = if touch { Op::Touch } else { Op::Info };
        measured(self.metrics, op, self.store.info(id, touch), nothing)
    }

    /// The lookup is counted as `lookup`; `op` counts itself.
    pub fn looked_up<R, F>(self, id: SessionId, op: F) -> impl Future<Output = (Result<SessionInfo>, Result<R>)>
    where
        F: Future<Output = Result<R>>,
    {
        let (m, start) = (self.metrics, self.metrics.start());
        self.store.looked_up(id, op).map(move |(info, r)| {
            m.finish(Op::Lookup, start, info.as_ref().err());
            (info, r)
        })
    }

    pub fn destroy(self, id: SessionId) -> impl Future<Output = Result<bool>> + Send + 'a {
        measured(self.metrics, Op::Destroy, self.store.destroy(id), |m, ended| {
            m.destroyed.increment(u64::from(*ended));
        })
    }

    pub fn logout_user(self, userid: u64) -> impl Future<Output = Result<usize>> + Send + 'a {
        measured(self.metrics, Op::LogoutUser, self.store.logout_user(userid), |m, n| {
            m.revoked.increment(*n as u64);
        })
    }

    pub fn sessions_of(self, userid: u64) -> impl Future<Output = Result<Vec<UserSession>>> + Send + 'a {
        measured(self.metrics, Op::SessionsOf, self.store.sessions_of(userid), nothing)
    }

    pub fn revoke(self, userid: u64, handle: SessionHandle) -> impl Future<Output = Result<bool>> + Send + 'a {
        measured(self.metrics, Op::Revoke, self.store.revoke(userid, handle), |m, ended| {
            m.revoked.increment(u64::from(*ended));
        })
    }

    pub fn stats(self) -> impl Future<Output = Result<EngineStats>> + Send + 'a {
        measured(self.metrics, Op::Stats, self.store.stats(), nothing)
    }

    pub fn sweep(self) -> impl Future<Output = Result<usize>> + Send + 'a {
        measured(self.metrics, Op::Sweep, self.store.sweep(), nothing)
    }

    pub fn snapshot(self) -> impl Future<Output = Result<usize>> + Send + 'a {
        measured(self.metrics, Op::Snapshot, self.store.snapshot(), nothing)
    }

    pub fn shutdown(self) -> impl Future<Output = ()> + Send + 'a {
        self.store.shutdown()
    }
}
