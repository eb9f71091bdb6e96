//! The seam between the engine handle and where sessions live: [`Backend`], one trait every
//! backend implements in full (the memory backend in `crate::memory`, Redis in
//! `crate::redis`).
//!
//! [`SessionEngine`](crate::SessionEngine) checks names and verifies ids, then forwards each
//! call once to its store (`engine/store.rs`), which hands it to the backend it holds. Adding
//! an operation means adding it here, and the compiler then asks every backend for it.

use std::future::Future;

use crate::error::Result;
use crate::id::{SessionHandle, SessionId};
use crate::message::{EngineStats, SessionInfo, UpdateFn, UserSession};

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

    /// The live sessions of `userid`, most recently used first.
    fn sessions_of(&self, userid: u64) -> impl Future<Output = Result<Vec<UserSession>>> + Send;

    /// Ends the session of `userid` named by `handle`; whether there was one.
    fn revoke(&self, userid: u64, handle: SessionHandle) -> impl Future<Output = Result<bool>> + Send;

    fn stats(&self) -> impl Future<Output = Result<EngineStats>> + Send;

    /// Drops expired sessions now; how many.
    fn sweep(&self) -> impl Future<Output = Result<usize>> + Send;

    /// Makes every change durable now; how many sessions were written.
    fn snapshot(&self) -> impl Future<Output = Result<usize>> + Send;

    /// Stops serving; later calls answer `Unavailable(EngineStopped)`.
    fn shutdown(&self) -> impl Future<Output = ()> + Send;
}
