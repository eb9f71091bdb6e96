//! [`Door`]: the one way from the engine's callers to its backend. Every operation goes
//! through [`Door::run`], generic over the typed message: names checked, the backend's run,
//! the metrics (`src/telemetry.rs`), and the login policy (`limits.max_sessions_per_user`).
//!
//! The engine's public methods verify an id's tag and come here; the web layer comes here
//! directly, so a request's id (verified by the middleware as it parsed the cookie, or made by
//! the engine itself) is verified once. No operation reaches the backend another way, so none
//! skips the metrics. Not counted, on purpose: the engine's lifecycle calls (`subscribe`,
//! `host_here`, `shutdown`, which `SessionEngine` makes on the backend itself), and the
//! metadata read a lookup makes on its own (counted as the `lookup`).

use std::future::Future;

use futures_util::FutureExt;
use futures_util::future::Either;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::SessionEngine;
use super::store::BackendOp;
use crate::error::{Result, SessionError};
use crate::id::{SessionHandle, SessionId};
use crate::message::op::Op;
use crate::message::{Create, Info, OpKind, Revoke, SessionInfo, SessionsOf, Set, Update, UpdateFn};
use crate::telemetry::Metrics;

/// The engine's operations for ids known to be ours (see the module guide).
#[derive(Clone, Copy)]
pub(crate) struct Door<'a>(pub(super) &'a SessionEngine);

/// `fut`, operation `M`, counted when it ends: its label, latency (sampled), error kind and,
/// on success, the lifecycle counter it adds to. A combinator, not an `async fn`: see
/// `engine/store.rs` on futures passed through.
fn measured<'a, M: Op>(
    m: &'a Metrics,
    fut: impl Future<Output = Result<M::Reply>> + Send + 'a,
) -> impl Future<Output = Result<M::Reply>> + Send + 'a {
    let start = m.start();
    fut.map(move |r| {
        count::<M>(m, start, &r);
        r
    })
}

/// Counts operation `M`, begun at `start`, as it answered `r` (see [`measured`]).
fn count<M: Op>(m: &Metrics, start: Option<std::time::Instant>, r: &Result<M::Reply>) {
    m.finish((M::KIND as usize, M::KIND.name()), start, r.as_ref().err());
    if let Ok(reply) = r
        && let Some((counter, n)) = M::counts(reply)
    {
        m.lifecycle(counter).increment(n);
    }
}

impl<'a> Door<'a> {
    fn metrics(self) -> &'a Metrics {
        &self.0.inner.metrics
    }

    /// Runs `msg` on the backend: the one path every operation takes. A combinator, not an
    /// `async fn` (see `engine/store.rs` on futures passed through).
    pub fn run<M: BackendOp + 'a>(self, msg: M) -> impl Future<Output = Result<M::Reply>> + Send + 'a {
        self.exec(msg).then(move |reply| match reply.as_ref().ok().and_then(M::logged_in).cloned() {
            None => Either::Left(std::future::ready(reply)),
            // Boxed: only a login pays for the policy's state, every other operation's future
            // stays as small as its own.
            Some(info) => {
                let policy: std::pin::Pin<Box<dyn Future<Output = Result<M::Reply>> + Send + 'a>> =
                    Box::pin(async move {
                        self.keep_newest(&info).await;
                        reply
                    });
                Either::Right(policy)
            }
        })
    }

    /// [`run`](Self::run) without the login policy (which itself runs operations). A
    /// combinator, not an `async fn`: see `engine/store.rs` on futures passed through.
    fn exec<M: BackendOp + 'a>(self, msg: M) -> impl Future<Output = Result<M::Reply>> + Send + 'a {
        match msg.check() {
            Ok(()) => Either::Left(measured::<M>(&self.0.inner.metrics, self.0.inner.backend.run(msg))),
            Err(e) => Either::Right(std::future::ready(Err(e))),
        }
    }

    pub async fn insert<T: Serialize + ?Sized>(self, id: &SessionId, scope: &str, key: &str, value: &T) -> Result<()> {
        let value = encode(value)?;
        self.run(Set { id: *id, scope: scope.into(), key: key.into(), value }).await
    }

    pub async fn update<T, F>(self, id: &SessionId, scope: &str, key: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Option<T>) -> T + Send + 'static,
    {
        let f = update_step(f);
        decode_updated(self.run(Update { id: *id, scope: scope.into(), key: key.into(), f }).await?)
    }

    /// Creates an empty anonymous session with a fresh id.
    pub fn create(self) -> impl Future<Output = Result<SessionInfo>> + Send + 'a {
        self.run(Create { id: self.new_id() })
    }

    /// A fresh id for a session about to be created here: on the memory backend, one of this
    /// thread's own shard when it hosts one (a new session is born where its requests are
    /// served), so the caller can send the first operation on it along with the creation.
    pub fn new_id(self) -> SessionId {
        self.0.inner.backend.new_id(&self.0.inner.keyring)
    }

    /// A new session whose counter `scope`/`key` is incremented once by `by`, in one step
    /// (one Redis script), counted as a `create`. `Ok(None)`: not done (the memory backend,
    /// or a value a limit refuses): create and increment instead. Names that do not check
    /// also answer `None`: the two steps report them, as they always did.
    pub async fn create_counter(self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        if crate::names::check_name("scope", scope).is_err() || crate::names::check_name("key", key).is_err() {
            return Ok(None);
        }
        let m = self.metrics();
        let start = m.start();
        let r = self.0.inner.backend.create_counter(scope, key, by).await;
        let label = (OpKind::Create as usize, OpKind::Create.name());
        match &r {
            Ok(None) => {}
            Ok(Some(_)) => {
                m.finish(label, start, None);
                m.created.increment(1);
            }
            Err(e) => m.finish(label, start, Some(e)),
        }
        r
    }

    /// Runs `msg`, an operation on `id`, and looks `id` up as it was before `msg` used it, in
    /// one trip: on the memory backend one shard call (here, or one message to the shard's
    /// host), on Redis the metadata from the operation's own reply. `msg` must change nothing
    /// but data and the last access (no rotation, `destroy` or persistence change): on Redis
    /// the metadata comes from its reply, after it. Counted twice: as `lookup`, and as the
    /// operation it is. A message whose names do not check is not sent: the lookup goes alone.
    pub fn looked_up<M: BackendOp + 'a>(
        self,
        id: &SessionId,
        msg: M,
    ) -> impl Future<Output = (Result<SessionInfo>, Result<M::Reply>)> + Send + 'a {
        // Not an `async fn`: see `engine/store.rs` on futures passed through.
        let (m, start) = (self.metrics(), self.metrics().start());
        let backend = &self.0.inner.backend;
        let checked = msg.check();
        let sent = checked.is_ok();
        let both = match checked {
            Ok(()) => {
                let id = *id;
                Either::Left(backend.looked_up(id, msg, move || backend.run(Info { id })))
            }
            // The lookup on its own is the backend's, uncounted: `lookup` counts it.
            Err(e) => Either::Right(backend.run(Info { id: *id }).map(move |info| (info, Err(e)))),
        };
        both.map(move |(info, r)| {
            m.finish((OpKind::Lookup as usize, OpKind::Lookup.name()), start, info.as_ref().err());
            if sent {
                count::<M>(m, start, &r);
            }
            (info, r)
        })
    }

    /// Makes every change durable now (counted as `snapshot`).
    pub fn snapshot(self) -> impl Future<Output = Result<usize>> + Send + 'a {
        let (m, start) = (self.metrics(), self.metrics().start());
        self.0.inner.backend.snapshot().map(move |r| {
            m.finish((OpKind::Snapshot as usize, OpKind::Snapshot.name()), start, r.as_ref().err());
            r
        })
    }

    /// Keeps `info`'s user to `limits.max_sessions_per_user` sessions: the one just logged in
    /// and the most recently used others, the rest ended. One user's logins do this one at a
    /// time — in this engine (a lock per user), and on Redis across every instance (a lock of
    /// the user's there) — so two logins at the same moment leave at most the limit, and with
    /// a limit of two or more neither ends the other (each is among the other's most recent).
    /// A failure here is logged: the login itself has succeeded.
    async fn keep_newest(self, info: &SessionInfo) {
        let limit = self.0.config().limits.max_sessions_per_user;
        if limit == 0 {
            return;
        }
        let logins = &self.0.inner.logins;
        #[allow(clippy::cast_possible_truncation, reason = "the remainder is below the stripe count")]
        let _mine = logins[(info.userid % logins.len() as u64) as usize].lock().await;
        let current = self.0.handle_of(&info.id);
        let ended = self.0.inner.backend.exclusive_for_user(info.userid, self.end_others(info.userid, &current, limit));
        match ended.await {
            Ok(0) => {}
            Ok(n) => log::info!(
                "user {}: {n} least recently used sessions ended (limits.max_sessions_per_user)",
                info.userid
            ),
            Err(e) => log::warn!("user {}: sessions past limits.max_sessions_per_user not ended: {e}", info.userid),
        }
    }

    /// Ends the sessions of `userid` but `current` and, when `keep` is 1 or more, the `keep - 1`
    /// most recently used others: `keep` sessions at most are left. How many ended.
    pub async fn end_others(self, userid: u64, current: &SessionHandle, keep: usize) -> Result<usize> {
        let mut ended = 0;
        let sessions = self.exec(SessionsOf { userid }).await?;
        // A login's own session ended meanwhile by another login's turn (a limit of one): it
        // ends nothing, or two logins would end each other.
        if keep > 0 && !sessions.iter().any(|s| s.handle == *current) {
            return Ok(0);
        }
        for s in sessions.iter().filter(|s| s.handle != *current).skip(keep.saturating_sub(1)) {
            ended += usize::from(self.exec(Revoke { userid, handle: s.handle }).await?);
        }
        Ok(ended)
    }
}

/// The step an `update` runs inside the backend: decode, apply `f`, encode.
pub(crate) fn update_step<T, F>(f: F) -> UpdateFn
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: FnOnce(Option<T>) -> T + Send + 'static,
{
    Box::new(move |current| {
        let current = current.map(decode::<T>).transpose()?;
        encode(&f(current)).map(Some)
    })
}

/// The value an `update` stored, decoded.
pub(crate) fn decode_updated<T: DeserializeOwned>(stored: Option<Vec<u8>>) -> Result<T> {
    match stored {
        Some(new) => decode(&new),
        None => Err(SessionError::internal("an update step that stores a value answered none")),
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| SessionError::Codec(e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| SessionError::WrongType(e.to_string()))
}
