//! [`SessionEngine`]: the handle applications, middleware and load tests use.
//!
//! Each operation is a typed message (`crate::message`); the engine verifies the id it names
//! and hands it to the [`Door`], the one generic path to the backend (`src/backend.rs`). It
//! knows nothing of shards or Redis itself.
//!
//! - `builder.rs`: [`EngineBuilder`], starting an engine on the configured backend.
//! - `door.rs`: [`Door`], the generic path: names, metrics, the login policy, the backend.
//! - `store.rs`: the closed set of backends an engine holds.
//! - `send.rs`: typed messages run as engine operations ([`EngineMessage`]).

mod builder;
mod door;
mod send;
mod store;

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::EngineBuilder;
pub use send::EngineMessage;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Result, SessionError, StartError};
use crate::id::{Keyring, SessionId};
#[cfg(test)]
use crate::memory::MemoryBackend;
use crate::memory::Placement;
use crate::message::*;
use crate::rate::CreateLimiter;
use crate::robot::RobotDetector;
pub(crate) use door::Door;
pub(crate) use door::{decode, decode_updated, encode, update_step};
use store::AnyBackend;
pub(crate) use store::BackendOp;

/// A handle to a running session engine. Cheap to clone; `Send + Sync`.
///
/// Every per-session call verifies the id's tag, then runs where the backend keeps the
/// session: with the memory backend, inside the one worker that owns it.
#[derive(Clone)]
pub struct SessionEngine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    /// Built once at start-up (the config's patterns are compiled here, and only here).
    robots: RobotDetector,
    keyring: Keyring,
    clock: Arc<dyn Clock>,
    backend: AnyBackend,
    /// `limits.create_rate`, shared by every middleware of this engine.
    create_limiter: Option<CreateLimiter>,
    /// Metric handles, resolved as the engine started (`src/telemetry.rs`).
    metrics: crate::telemetry::Metrics,
    /// One user's logins apply `limits.max_sessions_per_user` one at a time (`Door`): locks
    /// by user id, striped.
    logins: Box<[tokio::sync::Mutex<()>]>,
}

impl std::fmt::Debug for SessionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEngine")
            .field("backend", &self.inner.backend.name())
            .field("shards", &self.shards())
            .finish()
    }
}

impl SessionEngine {
    /// A builder for an engine with this config.
    pub fn builder(config: Config) -> EngineBuilder {
        EngineBuilder::new(config, Arc::new(SystemClock), Placement::default())
    }

    /// Starts an engine with this config, the system clock and the configured keyring
    /// (memory backend only; [`start_async`](Self::start_async) starts either backend).
    ///
    /// # Errors
    /// See [`EngineBuilder::start`].
    pub fn start(config: Config) -> Result<Self, StartError> {
        Self::builder(config).start()
    }

    /// Starts an engine with this config for whichever `storage.backend` it names.
    ///
    /// ```no_run
    /// use draco_session::{Config, SessionEngine};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::from_toml(
    ///     "[session]\nsecret = \"shared by every instance, 32 bytes or more\"\n\
    ///      [storage]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"",
    ///     "inline",
    /// )?;
    /// let engine = SessionEngine::start_async(config).await?;
    /// let session = engine.create().await?;
    /// engine.insert(&session.id, "cart", "items", &["book"]).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// See [`EngineBuilder::start_async`].
    pub async fn start_async(config: Config) -> Result<Self, StartError> {
        Self::builder(config).start_async().await
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The robot detector for `[robots]`, shared by every middleware of this engine.
    pub(crate) fn robots(&self) -> &RobotDetector {
        &self.inner.robots
    }

    /// Takes a token of `limits.create_rate` for a new session of client `ip`, by the engine's
    /// clock; when there is none, how long until there is one. Always `Ok` when it is off.
    pub(crate) fn take_create_token(&self, ip: std::net::IpAddr) -> Result<(), std::time::Duration> {
        match &self.inner.create_limiter {
            Some(limiter) => limiter.take(ip, self.inner.clock.now_ms()),
            None => Ok(()),
        }
    }

    /// Number of shards: the memory backend's workers; 1 for Redis.
    pub fn shards(&self) -> usize {
        self.inner.backend.shards()
    }

    /// The memory backend, for tests that stop a worker on purpose.
    #[cfg(test)]
    pub(crate) fn memory(&self) -> &MemoryBackend {
        self.inner.backend.memory().expect("a memory backend")
    }

    /// Parses and verifies an id (e.g. from a cookie).
    ///
    /// # Errors
    /// [`SessionError::InvalidId`] for a malformed or forged id.
    pub fn parse_id(&self, text: &[u8]) -> Result<SessionId> {
        self.inner.keyring.parse(text)
    }

    /// The one way to the backend, for ids known to be ours (see [`Door`]).
    pub(crate) fn door(&self) -> Door<'_> {
        Door(self)
    }

    fn verify(&self, id: &SessionId) -> Result<()> {
        if self.inner.keyring.verify(id) { Ok(()) } else { Err(SessionError::InvalidId) }
    }

    /// The engine's metric handles.
    pub(crate) fn metrics(&self) -> &crate::telemetry::Metrics {
        &self.inner.metrics
    }

    /// Sends a typed message ([`Get`], [`Set`], [`Login`], [`LogoutUser`], …): runs the engine
    /// operation it stands for, on either backend, after verifying a per-session message's id.
    ///
    /// ```
    /// use draco_session::message::{Get, Set};
    /// use draco_session::{Config, SessionEngine};
    ///
    /// # actix_rt::System::new().block_on(async {
    /// # let mut config = Config::default();
    /// # config.session.secret = Some("an example secret of at least 32 bytes".into());
    /// # config.storage.persist = false;
    /// let engine = SessionEngine::start(config).unwrap();
    /// let id = engine.create().await.unwrap().id;
    /// engine.send(Set { id, scope: "cart".into(), key: "n".into(), value: b"2".to_vec() }).await.unwrap();
    /// let raw = engine.send(Get { id, scope: "cart".into(), key: "n".into() }).await.unwrap();
    /// assert_eq!(raw.as_deref(), Some(&b"2"[..]));
    /// # engine.shutdown().await;
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`SessionError::InvalidId`] for an id this engine did not issue;
    /// [`SessionError::Unavailable`] when the engine is stopped; else the operation's own.
    pub async fn send<M: EngineMessage>(&self, msg: M) -> Result<M::Reply> {
        msg.dispatch(self).await
    }

    /// Creates an empty anonymous session with a fresh id.
    ///
    /// # Errors
    /// [`SessionError::Full`] when `limits.max_sessions` are live (Redis: when the database
    /// holds that many keys); [`SessionError::Unavailable`].
    pub async fn create(&self) -> Result<SessionInfo> {
        self.door().create().await
    }

    /// Reads `scope`/`key` as a `T`.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`], [`SessionError::WrongType`] if the value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, id: &SessionId, scope: &str, key: &str) -> Result<Option<T>> {
        let stored = self.get_raw(id, scope, key).await?;
        stored.map(|bytes| decode(&bytes)).transpose()
    }

    /// Reads the JSON encoding stored under `scope`/`key` (the [`Get`] message).
    ///
    /// # Errors
    /// [`SessionError::SessionGone`], [`SessionError::InvalidName`].
    pub async fn get_raw(&self, id: &SessionId, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.send(Get { id: *id, scope: scope.into(), key: key.into() }).await
    }

    /// Stores `value` under `scope`/`key`.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`], [`SessionError::ValueTooLarge`], [`SessionError::TooManyKeys`],
    /// [`SessionError::SessionTooLarge`].
    pub async fn insert<T: Serialize + ?Sized>(&self, id: &SessionId, scope: &str, key: &str, value: &T) -> Result<()> {
        self.verify(id)?;
        self.door().insert(id, scope, key, value).await
    }

    /// Stores an already JSON-encoded value under `scope`/`key` (the [`Set`] message).
    ///
    /// # Errors
    /// As [`insert`](Self::insert); also [`SessionError::Codec`] when `json` is not valid JSON.
    pub async fn insert_raw(&self, id: &SessionId, scope: &str, key: &str, json: Vec<u8>) -> Result<()> {
        self.send(Set { id: *id, scope: scope.into(), key: key.into(), value: json }).await
    }

    /// Removes `scope`/`key`; whether it was there.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn remove(&self, id: &SessionId, scope: &str, key: &str) -> Result<bool> {
        self.send(Remove { id: *id, scope: scope.into(), key: key.into() }).await
    }

    /// Removes every key of `scope`, or of all scopes when `None`.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn clear(&self, id: &SessionId, scope: Option<&str>) -> Result<()> {
        self.send(Clear { id: *id, scope: scope.map(Into::into) }).await
    }

    /// The keys of `scope`, sorted.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn keys(&self, id: &SessionId, scope: &str) -> Result<Vec<String>> {
        self.send(Keys { id: *id, scope: scope.into() }).await
    }

    /// Atomically replaces `scope`/`key` with `f(current)`, inside the owning worker: no
    /// concurrent update is lost. Answers the new value.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`]; [`SessionError::WrongType`] if the stored value is not a `T`;
    /// [`SessionError::Panicked`] if `f` panics (the session is unchanged); limits.
    pub async fn update<T, F>(&self, id: &SessionId, scope: &str, key: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Option<T>) -> T + Send + 'static,
    {
        let f = update_step(f);
        decode_updated(self.send(Update { id: *id, scope: scope.into(), key: key.into(), f }).await?)
    }

    /// Atomically adds `by` to the integer under `scope`/`key` (absent counts as 0).
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn increment(&self, id: &SessionId, scope: &str, key: &str, by: i64) -> Result<i64> {
        self.send(Increment { id: *id, scope: scope.into(), key: key.into(), by }).await
    }

    /// Now, by the engine's clock (the time its operations record as a use).
    pub(crate) fn now(&self) -> std::time::SystemTime {
        crate::clock::to_system_time(self.inner.clock.now_ms())
    }

    /// Logs `userid` in: the id rotates (the old one is dead at once), the data stays. Past
    /// `limits.max_sessions_per_user`, the user's least recently used other sessions end.
    ///
    /// # Errors
    /// [`SessionError::InvalidUserId`] for 0; [`SessionError::SessionGone`].
    pub async fn login(&self, id: &SessionId, userid: u64) -> Result<SessionInfo> {
        self.send(Login { id: *id, userid }).await
    }

    /// Logs out: user id 0, volatile, id rotated, other data kept, or, with
    /// `session.logout_clears_data`, every scope cleared in the same atomic step.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn logout(&self, id: &SessionId) -> Result<SessionInfo> {
        self.send(Logout { id: *id }).await
    }

    /// Makes the session persistent (remember me) or volatile.
    ///
    /// # Errors
    /// [`SessionError::NotLoggedIn`] for `true` on an anonymous session; [`SessionError::SessionGone`].
    pub async fn set_persistent(&self, id: &SessionId, persistent: bool) -> Result<SessionInfo> {
        self.send(SetPersistent { id: *id, persistent }).await
    }

    /// The session's metadata; does not count as a use.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn info(&self, id: &SessionId) -> Result<SessionInfo> {
        self.send(Info { id: *id }).await
    }

    /// Counts as a use: slides the expiry.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn touch(&self, id: &SessionId) -> Result<SessionInfo> {
        self.send(Touch { id: *id }).await
    }

    /// Ends the session; whether it existed.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn destroy(&self, id: &SessionId) -> Result<bool> {
        self.send(Destroy { id: *id }).await
    }

    /// Ends every session of `userid` on every shard ("log out everywhere"); how many.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn logout_user(&self, userid: u64) -> Result<usize> {
        self.send(LogoutUser { userid }).await
    }

    /// Erases `userid`: ends every session of the user ("log out everywhere") and leaves no
    /// copy of their sessions' data in the backend; answers how many sessions ended (0 for a
    /// user without any).
    ///
    /// - Memory backend with `storage.persist`: the intent is recorded in
    ///   `<storage.dir>/erasing/` (fsynced) before anything ends; then the sessions end, and
    ///   every shard writes a snapshot without them (twice: two clean generations) and deletes
    ///   every older snapshot generation, every file set aside as damaged and every log segment
    ///   before the new snapshot. The answer comes once all of that is durable. A crash in
    ///   between is finished at the next start, before the engine serves.
    /// - Without `storage.persist` nothing is on disk: the sessions end.
    /// - Redis: every session of the user is deleted (hash and lock key), then the user's index
    ///   key, and the user's entries in the event stream `<redis_prefix>:events` written before
    ///   the erasure (the erasure's own "revoked" events, which say no more than that, stay
    ///   until the capped stream drops them).
    ///
    /// Sessions the user logs into while the erasure runs are not erased. Copies outside the
    /// backend (backups of the data directory, Redis' own RDB/AOF files and replicas, blocks
    /// the file system freed) are beyond its reach: see README.md, "Erasing a user".
    ///
    /// # Errors
    /// [`SessionError::Unavailable`]: the engine is stopped, a shard is restarting, or a file
    /// could not be written or removed. The sessions may have ended already; calling again (or,
    /// on the memory backend, the next start) finishes the erasure.
    pub async fn erase_user(&self, userid: u64) -> Result<usize> {
        self.send(EraseUser { userid }).await
    }

    /// The live sessions of `userid`, most recently used first. Each is named by a
    /// [`SessionHandle`](crate::SessionHandle), never by its id (the engine does not keep ids).
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn sessions_of(&self, userid: u64) -> Result<Vec<UserSession>> {
        self.send(SessionsOf { userid }).await
    }

    /// The keyring (the web layer's fresh-login markers).
    pub(crate) fn keyring(&self) -> &crate::id::Keyring {
        &self.inner.keyring
    }

    /// The handle [`sessions_of`](Self::sessions_of) lists session `id` under: how a devices
    /// page tells which entry is the session asking.
    pub fn handle_of(&self, id: &SessionId) -> crate::SessionHandle {
        self.inner.keyring.handle(id.locator())
    }

    /// Ends the session of `userid` that `handle` names (see [`sessions_of`](Self::sessions_of));
    /// whether there was one. A handle of another user's session ends nothing.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn revoke(&self, userid: u64, handle: &crate::SessionHandle) -> Result<bool> {
        self.send(Revoke { userid, handle: *handle }).await
    }

    /// Subscribes to the engine's session events: created, logged in, logged out,
    /// remember-me on/off, revoked, destroyed, expired ([`SessionEvent`](crate::SessionEvent)),
    /// from now on. Bounded by `events.capacity` per subscriber: the engine never waits for
    /// a subscriber, and one that falls behind is told how many events it missed. On Redis,
    /// every instance's events arrive (read from the stream `<redis_prefix>:events`), and expiries are
    /// reported only when an instance observes them (see [`Subscription`](crate::Subscription)).
    ///
    /// # Errors
    /// [`SessionError::Unavailable`] when the engine is stopped or Redis cannot be read.
    pub async fn subscribe(&self) -> Result<crate::Subscription> {
        self.inner.backend.subscribe().await
    }

    /// Ends every other session of `id`'s user ("log out everywhere else"); how many.
    ///
    /// # Errors
    /// [`SessionError::NotLoggedIn`] when `id` is anonymous; [`SessionError::SessionGone`];
    /// [`SessionError::Unavailable`].
    pub async fn logout_others(&self, id: &SessionId) -> Result<usize> {
        self.send(LogoutOthers { id: *id }).await
    }

    /// Counters of every shard.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn stats(&self) -> Result<EngineStats> {
        self.send(Stats).await
    }

    /// Drops every expired session now; how many. Redis expires sessions on its own: 0.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn sweep(&self) -> Result<usize> {
        self.send(Sweep).await
    }

    /// Snapshots every shard changed since its last snapshot, and waits until the files are
    /// durable; answers how many sessions were written (0 when nothing changed, or when
    /// `storage.persist` is off). Workers also do this every `storage.snapshot_interval`.
    /// With Redis, which persists by its own configuration: 0 once Redis answers.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`] when the engine is stopped or a snapshot could not be
    /// written (the previous generation stays in place; the reason says why).
    pub async fn snapshot(&self) -> Result<usize> {
        self.door().snapshot().await
    }

    /// Hosts one of the engine's shards on the calling thread, which must run an actix arbiter
    /// (every actix-web worker thread does): sessions created on this thread are then born in
    /// that shard, and their operations issued here run without leaving the thread.
    /// [`SessionMiddleware`](crate::SessionMiddleware) does this on each actix-web worker as
    /// the worker builds its service, so servers need not call it; call it on threads of your
    /// own (an `Arbiter` running jobs) to give them the same.
    ///
    /// Only with [`Placement::ServerThreads`] (the default) and the memory backend. The first
    /// shard no server thread hosts yet moves here: its previous host finishes what was
    /// queued for it and hands it over; operations sent meanwhile wait for the new host. A
    /// thread hosts at most one shard of an engine; when the thread stops, its shard goes back
    /// to a thread of its own, nothing lost. Answers the shard now hosted here, `None` when
    /// this thread hosts one already, every shard has a server thread, or the placement or
    /// backend does not move shards.
    pub async fn host_here(&self) -> Option<usize> {
        self.inner.backend.host_here().await
    }

    /// Stops the engine gracefully: every worker writes a final snapshot (when
    /// `storage.persist` is on and its shard changed) and stops; returns once those
    /// snapshots are durable. Later calls answer `Unavailable`. With Redis: later calls answer
    /// `Unavailable`; the connection closes when the last handle is dropped.
    pub async fn shutdown(&self) {
        self.inner.backend.shutdown().await;
    }
}
