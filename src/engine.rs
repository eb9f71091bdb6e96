//! [`SessionEngine`]: the handle applications, middleware and load tests use.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use actix::{Addr, Handler, MailboxError, Message};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StorageBackend};
use crate::error::{Result, SessionError, StartError, Unavailable};
use crate::id::{Keyring, SessionId};
use crate::message::*;
use crate::snapshot;
use crate::state::{Lifetimes, check_name};
use crate::supervisor::{Router, Shutdown, SnapshotAll, Supervisor, WorkerDown};
use crate::worker::{Shared, Worker};

/// A handle to a running session engine. Cheap to clone; `Send + Sync`.
///
/// Every per-session call verifies the id's tag, then runs inside the one worker that owns
/// the session.
#[derive(Clone)]
pub struct SessionEngine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    keyring: Keyring,
    clock: Arc<dyn Clock>,
    backend: Backend,
}

/// Where the sessions live (`storage.backend`).
enum Backend {
    /// Shard worker actors in this process.
    Memory { shared: Arc<Shared>, router: Arc<Router>, supervisor: Addr<Supervisor> },
    /// A Redis server.
    #[cfg(feature = "redis")]
    Redis(crate::redis::RedisStore),
}

/// Runs `$memory` for the memory backend; for Redis, verifies `$id` and runs `$redis` with
/// the store bound to `$r`.
macro_rules! dispatch {
    ($self:ident, $id:expr, memory => $memory:expr, redis($r:ident) => $redis:expr $(,)?) => {
        match &$self.inner.backend {
            Backend::Memory { .. } => $memory,
            #[cfg(feature = "redis")]
            Backend::Redis($r) => {
                $self.verify($id)?;
                $redis
            }
        }
    };
}

impl std::fmt::Debug for SessionEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.inner.backend {
            Backend::Memory { .. } => "memory",
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "redis",
        };
        f.debug_struct("SessionEngine").field("backend", &backend).field("shards", &self.shards()).finish()
    }
}

/// Where the shard workers run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// Each shard worker on a thread of its own. Shards work in parallel; every operation
    /// crosses threads (a wake-up of the worker's thread, then of the caller's). The default.
    #[default]
    DedicatedThreads,
    /// Every shard worker on the thread that starts the engine. Operations from that thread
    /// never cross threads, which is several times faster per operation (see BENCHMARKS.md);
    /// calls from other threads still work. For a server with one actix-web worker that starts
    /// the engine in its app factory, for load generators and background jobs. The engine's
    /// work then shares that thread, so sweeps and snapshot encoding run between its requests.
    CurrentThread,
}

/// Builds a [`SessionEngine`] with a non-default clock, keyring or placement.
#[derive(Debug)]
pub struct EngineBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    keyring: Option<Keyring>,
    placement: Placement,
}

impl EngineBuilder {
    /// Uses `clock` for every timestamp and expiry. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses `keyring` to tag ids. Defaults to the one [`Keyring::load`] finds for the config.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Runs the shard workers where `placement` says. Defaults to [`Placement::DedicatedThreads`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// Starts the supervisor and its workers (the memory backend). With `storage.persist` on,
    /// first loads every snapshot in `<storage.dir>/snapshots/` (re-hashed to the current
    /// shard count, expired sessions dropped, a damaged file set aside for the previous
    /// generation).
    ///
    /// # Errors
    /// [`StartError`] for an invalid config, no actix `System`, or an unusable data directory:
    /// [`StartError::Storage`] when it cannot be created or written, when a snapshot cannot be
    /// read, or when a snapshot was written by a newer version.
    /// [`StartError::NeedsAsyncStart`] for `storage.backend = "redis"`: connecting is
    /// asynchronous, use [`start_async`](Self::start_async).
    pub fn start(self) -> Result<SessionEngine, StartError> {
        let config = self.config;
        config.validate("<config>")?;
        if config.storage.backend != StorageBackend::Memory {
            return Err(StartError::NeedsAsyncStart);
        }
        if actix::System::try_current().is_none() {
            return Err(StartError::NoSystem);
        }
        let keyring = match self.keyring {
            Some(k) => k,
            None => Keyring::load(&config)?,
        };
        let shards = config.session.effective_shards();
        let lifetimes = Lifetimes::from_config(&config.session);
        let (snapshots, sessions) = if config.storage.persist {
            let (snapshots, sessions) = snapshot::open(&config.storage.dir, shards, self.clock.clone(), lifetimes)?;
            (Some(snapshots), sessions)
        } else {
            (None, (0..shards).map(|_| Vec::new()).collect())
        };
        let clock = self.clock.clone();
        let shared = Arc::new(Shared {
            keyring,
            clock: self.clock,
            lifetimes,
            limits: config.limits.clone(),
            live: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            shards,
            config,
            snapshots,
        });
        let (supervisor, router) = Supervisor::launch(shared.clone(), sessions, self.placement);
        let (config, keyring) = (shared.config.clone(), shared.keyring.clone());
        let backend = Backend::Memory { shared, router, supervisor };
        Ok(SessionEngine { inner: Arc::new(Inner { config, keyring, clock, backend }) })
    }

    /// Starts the engine for any `storage.backend`: for `"memory"` as
    /// [`start`](Self::start); for `"redis"`, connects to `storage.redis_url` (at most 2 s)
    /// and checks the server answers. Every instance sharing a Redis server needs the same
    /// id secret (`session.secret` or `$DRACO_SESSION_SECRET`) to accept each other's ids.
    /// With Redis, `storage.persist`, `session.shards` and `session.sweep_interval` do not
    /// apply (Redis persists and expires on its own), and no actix `System` is needed.
    ///
    /// # Errors
    /// As [`start`](Self::start); [`StartError::Backend`] naming the URL when Redis cannot be
    /// reached; an invalid config naming `storage.backend` when the `redis` cargo feature is
    /// not compiled in.
    pub async fn start_async(self) -> Result<SessionEngine, StartError> {
        match self.config.storage.backend {
            #[cfg(feature = "redis")]
            StorageBackend::Redis => {
                let config = self.config;
                config.validate("<config>")?;
                let keyring = match self.keyring {
                    Some(k) => k,
                    None => Keyring::load(&config)?,
                };
                let clock = self.clock.clone();
                let store = crate::redis::RedisStore::connect(
                    &config.storage.redis_url,
                    config.storage.redis_cluster,
                    keyring.clone(),
                    self.clock,
                    Lifetimes::from_config(&config.session),
                    config.limits.clone(),
                )
                .await?;
                Ok(SessionEngine { inner: Arc::new(Inner { config, keyring, clock, backend: Backend::Redis(store) }) })
            }
            _ => self.start(),
        }
    }
}

impl SessionEngine {
    /// A builder for an engine with this config.
    pub fn builder(config: Config) -> EngineBuilder {
        EngineBuilder { config, clock: Arc::new(SystemClock), keyring: None, placement: Placement::default() }
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

    /// Number of shards: the memory backend's workers; 1 for Redis.
    pub fn shards(&self) -> usize {
        match &self.inner.backend {
            Backend::Memory { shared, .. } => shared.shards,
            #[cfg(feature = "redis")]
            Backend::Redis(_) => 1,
        }
    }

    /// The supervisor, for sending engine-wide messages ([`LogoutUser`], [`SessionsOf`],
    /// [`Stats`], [`Sweep`]) directly; `None` with `storage.backend = "redis"`, which has no
    /// actors (use the engine's methods, which work with both backends).
    pub fn supervisor(&self) -> Option<&Addr<Supervisor>> {
        match &self.inner.backend {
            Backend::Memory { supervisor, .. } => Some(supervisor),
            #[cfg(feature = "redis")]
            Backend::Redis(_) => None,
        }
    }

    /// Shard → worker routing, for tests that stop a worker on purpose.
    #[cfg(test)]
    pub(crate) fn router(&self) -> &Router {
        match &self.inner.backend {
            Backend::Memory { router, .. } => router,
            #[cfg(feature = "redis")]
            Backend::Redis(_) => panic!("no router with the redis backend"),
        }
    }

    /// Parses and verifies an id (e.g. from a cookie).
    ///
    /// # Errors
    /// [`SessionError::InvalidId`] for a malformed or forged id.
    pub fn parse_id(&self, text: &[u8]) -> Result<SessionId> {
        self.inner.keyring.parse(text)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn verify(&self, id: &SessionId) -> Result<()> {
        if self.inner.keyring.verify(id) { Ok(()) } else { Err(SessionError::InvalidId) }
    }

    /// Sends a per-session message to the worker that owns its session, after verifying
    /// the id. With the Redis backend the message runs as the matching engine operation.
    ///
    /// # Errors
    /// [`SessionError::InvalidId`] for an id this engine did not issue;
    /// [`SessionError::Unavailable`] when the engine is stopped; else the message's own errors.
    pub async fn send<M, R>(&self, msg: M) -> Result<R>
    where
        M: SessionMessage + Message<Result = Result<R>> + Send + 'static,
        R: Send + 'static,
        Worker: Handler<M>,
    {
        let id = *msg.session_id();
        match &self.inner.backend {
            Backend::Memory { shared, router, supervisor } => {
                if !shared.keyring.verify(&id) {
                    return Err(SessionError::InvalidId);
                }
                let addr = router.get(id.shard(shared.shards));
                match addr.send(msg).await {
                    Ok(result) => result,
                    Err(MailboxError::Closed) => {
                        supervisor.do_send(WorkerDown);
                        Err(Unavailable::ShardRestarting { shard: id.shard(shared.shards) }.into())
                    }
                    Err(MailboxError::Timeout) => {
                        Err(Unavailable::Busy { what: "the shard worker did not take the operation in time" }.into())
                    }
                }
            }
            #[cfg(feature = "redis")]
            Backend::Redis(store) => {
                self.verify(&id)?;
                let answer = crate::redis::send_any(store, Box::new(msg)).await?;
                answer.downcast::<R>().map(|r| *r).map_err(|_| SessionError::internal("message result type mismatch"))
            }
        }
    }

    async fn ask<M, R>(&self, msg: M) -> Result<R>
    where
        M: Message<Result = Result<R>> + Send + 'static,
        R: Send + 'static,
        Supervisor: Handler<M>,
    {
        let supervisor = self.supervisor().ok_or_else(|| SessionError::internal("no supervisor actor"))?;
        supervisor.send(msg).await.map_err(|_| SessionError::from(Unavailable::EngineStopped))?
    }

    /// Creates an empty anonymous session with a fresh id.
    ///
    /// # Errors
    /// [`SessionError::Full`] when `limits.max_sessions` are live (Redis: when the database
    /// holds that many keys); [`SessionError::Unavailable`].
    pub async fn create(&self) -> Result<SessionInfo> {
        match &self.inner.backend {
            Backend::Memory { .. } => self.send(Create { id: self.inner.keyring.generate() }).await,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.create(None).await,
        }
    }

    /// Reads `scope`/`key` as a `T`.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`], [`SessionError::Codec`] if the value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, id: &SessionId, scope: &str, key: &str) -> Result<Option<T>> {
        match self.get_raw(id, scope, key).await? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Reads the JSON encoding stored under `scope`/`key`.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`], [`SessionError::InvalidName`].
    pub async fn get_raw(&self, id: &SessionId, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        names(scope, key)?;
        dispatch!(self, id,
            memory => self.send(Get { id: *id, scope: scope.into(), key: key.into() }).await,
            redis(r) => r.get(*id, scope, key).await)
    }

    /// Stores `value` under `scope`/`key`.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`], [`SessionError::ValueTooLarge`], [`SessionError::TooManyKeys`].
    pub async fn insert<T: Serialize + ?Sized>(&self, id: &SessionId, scope: &str, key: &str, value: &T) -> Result<()> {
        self.insert_raw(id, scope, key, encode(value)?).await
    }

    /// Stores an already JSON-encoded value under `scope`/`key`.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); also [`SessionError::Codec`] when `json` is not valid JSON.
    pub async fn insert_raw(&self, id: &SessionId, scope: &str, key: &str, json: Vec<u8>) -> Result<()> {
        names(scope, key)?;
        dispatch!(self, id,
            memory => self.send(Set { id: *id, scope: scope.into(), key: key.into(), value: json }).await,
            redis(r) => r.set(*id, scope, key, json).await)
    }

    /// Removes `scope`/`key`; whether it was there.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn remove(&self, id: &SessionId, scope: &str, key: &str) -> Result<bool> {
        names(scope, key)?;
        dispatch!(self, id,
            memory => self.send(Remove { id: *id, scope: scope.into(), key: key.into() }).await,
            redis(r) => r.remove(*id, scope, key).await)
    }

    /// Removes every key of `scope`, or of all scopes when `None`.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn clear(&self, id: &SessionId, scope: Option<&str>) -> Result<()> {
        if let Some(s) = scope {
            check_name("scope", s)?;
        }
        dispatch!(self, id,
            memory => self.send(Clear { id: *id, scope: scope.map(Into::into) }).await,
            redis(r) => r.clear(*id, scope).await)
    }

    /// The keys of `scope`, sorted.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn keys(&self, id: &SessionId, scope: &str) -> Result<Vec<String>> {
        check_name("scope", scope)?;
        dispatch!(self, id,
            memory => self.send(Keys { id: *id, scope: scope.into() }).await,
            redis(r) => r.keys(*id, scope).await)
    }

    /// Atomically replaces `scope`/`key` with `f(current)`, inside the owning worker: no
    /// concurrent update is lost. Answers the new value.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`]; [`SessionError::Codec`] if the stored value is not a `T`;
    /// [`SessionError::Panicked`] if `f` panics (the session is unchanged); limits.
    pub async fn update<T, F>(&self, id: &SessionId, scope: &str, key: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Option<T>) -> T + Send + 'static,
    {
        names(scope, key)?;
        let step: UpdateFn = Box::new(move |current| {
            let current = current.map(decode::<T>).transpose()?;
            encode(&f(current)).map(Some)
        });
        let new = dispatch!(self, id,
            memory => self.send(Update { id: *id, scope: scope.into(), key: key.into(), f: step }).await?,
            redis(r) => r.update(*id, scope, key, step).await?);
        decode(&new.expect("update stores a value"))
    }

    /// Atomically adds `by` to the integer under `scope`/`key` (absent counts as 0).
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn increment(&self, id: &SessionId, scope: &str, key: &str, by: i64) -> Result<i64> {
        #[cfg(feature = "redis")]
        if let Backend::Redis(r) = &self.inner.backend {
            names(scope, key)?;
            self.verify(id)?;
            if let Some(n) = r.increment(*id, scope, key, by).await? {
                return Ok(n);
            }
        }
        self.update(id, scope, key, move |n: Option<i64>| n.unwrap_or(0).saturating_add(by)).await
    }

    /// A new session whose counter `scope`/`key` is `increment`ed once by `by`, in one step
    /// (one Redis script). `Ok(None)`: not done (the memory backend, or a value a limit
    /// refuses): use [`create`](Self::create) and [`increment`](Self::increment).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        if names(scope, key).is_err() {
            return Ok(None); // the two steps report it, as they always did
        }
        match &self.inner.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.create_counter(scope, key, by).await,
            _ => Ok(None),
        }
    }

    /// Runs `op`, an operation on `id`, and looks `id` up as it was before `op` used it, in
    /// one trip where the backend allows: the memory backend queues both messages before
    /// waiting (one wake-up of the shard), Redis reads the metadata from `op`'s own reply.
    /// `op` must change nothing but data and the last access (no rotation, `destroy` or
    /// persistence change): on Redis the metadata comes from `op`'s reply, after `op`.
    pub(crate) async fn looked_up<R>(
        &self,
        id: &SessionId,
        op: impl Future<Output = Result<R>>,
    ) -> (Result<SessionInfo>, Result<R>) {
        match &self.inner.backend {
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.looked_up(*id, op).await,
            _ => futures_util::future::join(self.info(id), op).await,
        }
    }

    /// A fresh id for [`create_as`](Self::create_as).
    pub(crate) fn new_id(&self) -> SessionId {
        self.inner.keyring.generate()
    }

    /// Creates an empty anonymous session under `id` (from [`new_id`](Self::new_id)): the
    /// caller knows the id before the session exists, so it can send the first operation on
    /// it along with the creation.
    pub(crate) async fn create_as(&self, id: SessionId) -> Result<SessionInfo> {
        match &self.inner.backend {
            Backend::Memory { .. } => self.send(Create { id }).await,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.create(Some(id)).await,
        }
    }

    /// Now, by the engine's clock (the time its operations record as a use).
    pub(crate) fn now(&self) -> std::time::SystemTime {
        crate::clock::to_system_time(self.inner.clock.now_ms())
    }

    /// Logs `userid` in: the id rotates (the old one is dead at once), the data stays.
    ///
    /// # Errors
    /// [`SessionError::InvalidUserId`] for 0; [`SessionError::SessionGone`].
    pub async fn login(&self, id: &SessionId, userid: u64) -> Result<SessionInfo> {
        dispatch!(self, id,
        memory => self.send(Login { id: *id, userid }).await,
        redis(r) => {
            if userid == 0 {
                return Err(SessionError::InvalidUserId);
            }
            r.rotate(*id, userid).await
        })
    }

    /// Logs out: user id 0, volatile, id rotated, other data kept.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn logout(&self, id: &SessionId) -> Result<SessionInfo> {
        dispatch!(self, id, memory => self.send(Logout { id: *id }).await, redis(r) => r.rotate(*id, 0).await)
    }

    /// Makes the session persistent (remember me) or volatile.
    ///
    /// # Errors
    /// [`SessionError::NotLoggedIn`] for `true` on an anonymous session; [`SessionError::SessionGone`].
    pub async fn set_persistent(&self, id: &SessionId, persistent: bool) -> Result<SessionInfo> {
        dispatch!(self, id,
            memory => self.send(SetPersistent { id: *id, persistent }).await,
            redis(r) => r.set_persistent(*id, persistent).await)
    }

    /// The session's metadata; does not count as a use.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn info(&self, id: &SessionId) -> Result<SessionInfo> {
        dispatch!(self, id, memory => self.send(Info { id: *id }).await, redis(r) => r.info(*id, false).await)
    }

    /// Counts as a use: slides the expiry.
    ///
    /// # Errors
    /// [`SessionError::SessionGone`].
    pub async fn touch(&self, id: &SessionId) -> Result<SessionInfo> {
        dispatch!(self, id, memory => self.send(Touch { id: *id }).await, redis(r) => r.info(*id, true).await)
    }

    /// Ends the session; whether it existed.
    ///
    /// # Errors
    /// [`SessionError::InvalidId`], [`SessionError::Unavailable`].
    pub async fn destroy(&self, id: &SessionId) -> Result<bool> {
        dispatch!(self, id, memory => self.send(Destroy { id: *id }).await, redis(r) => r.destroy(*id).await)
    }

    /// Ends every session of `userid` on every shard ("log out everywhere"); how many.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn logout_user(&self, userid: u64) -> Result<usize> {
        match &self.inner.backend {
            Backend::Memory { .. } => self.ask(LogoutUser { userid }).await,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.logout_user(userid).await,
        }
    }

    /// The live sessions of `userid`, most recently used first.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn sessions_of(&self, userid: u64) -> Result<Vec<SessionInfo>> {
        match &self.inner.backend {
            Backend::Memory { .. } => self.ask(SessionsOf { userid }).await,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.sessions_of(userid).await,
        }
    }

    /// Counters of every shard.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn stats(&self) -> Result<EngineStats> {
        match &self.inner.backend {
            Backend::Memory { .. } => self.ask(Stats).await,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.stats().await,
        }
    }

    /// Drops every expired session now; how many. Redis expires sessions on its own: 0.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`].
    pub async fn sweep(&self) -> Result<usize> {
        match &self.inner.backend {
            Backend::Memory { .. } => self.ask(Sweep).await,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.check_open().map(|()| 0),
        }
    }

    /// Snapshots every shard changed since its last snapshot, and waits until the files are
    /// durable; answers how many sessions were written (0 when nothing changed, or when
    /// `storage.persist` is off). Workers also do this every `storage.snapshot_interval`.
    /// With Redis, which persists by its own configuration: 0 once Redis answers.
    ///
    /// # Errors
    /// [`SessionError::Unavailable`] when the engine is stopped or a snapshot could not be
    /// written (the previous generation stays in place; the message says why).
    pub async fn snapshot(&self) -> Result<usize> {
        match &self.inner.backend {
            Backend::Memory { .. } => self.ask(SnapshotAll).await,
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.check_open().map(|()| 0),
        }
    }

    /// Stops the engine gracefully: every worker writes a final snapshot (when
    /// `storage.persist` is on and its shard changed) and stops; returns once those
    /// snapshots are durable. Later calls answer `Unavailable`. With Redis: later calls answer
    /// `Unavailable`; the connection closes when the last handle is dropped.
    pub async fn shutdown(&self) {
        match &self.inner.backend {
            Backend::Memory { supervisor, .. } => {
                let _ = supervisor.send(Shutdown).await;
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.close(),
        }
    }
}

fn names(scope: &str, key: &str) -> Result<()> {
    check_name("scope", scope)?;
    check_name("key", key)
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| SessionError::Codec(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| SessionError::Codec(e.to_string()))
}
