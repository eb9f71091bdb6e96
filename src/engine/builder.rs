//! [`EngineBuilder`]: how an engine starts — config check, keyring, robot detector, and the
//! backend `storage.backend` names.

use std::sync::Arc;

use super::store::AnyBackend;
use super::{Inner, SessionEngine};
use crate::clock::Clock;
use crate::config::{Config, StorageBackend};
use crate::error::StartError;
use crate::id::Keyring;
use crate::memory::{MemoryBackend, Placement};
use crate::rate::CreateLimiter;
use crate::robot::RobotDetector;
use crate::wal::io::{Disk, LogIo};

/// Builds a [`SessionEngine`] with a non-default clock, keyring or placement.
#[derive(Debug)]
pub struct EngineBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    keyring: Option<Keyring>,
    placement: Placement,
    log_io: LogIoHandle,
}

/// The write-ahead log's file system: the disk, or a fault-injecting one in tests.
struct LogIoHandle(Arc<dyn LogIo>);

impl std::fmt::Debug for LogIoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogIo")
    }
}

/// Locks the engine keeps for users' logins (see `Inner::logins`).
const LOGIN_STRIPES: usize = 64;

impl EngineBuilder {
    pub(super) fn new(config: Config, clock: Arc<dyn Clock>, placement: Placement) -> Self {
        Self { config, clock, keyring: None, placement, log_io: LogIoHandle(Arc::new(Disk)) }
    }

    /// Writes the log through `io` (tests inject faults).
    #[cfg(test)]
    pub(crate) fn log_io(mut self, io: Arc<dyn LogIo>) -> Self {
        self.log_io = LogIoHandle(io);
        self
    }

    /// Uses `clock` for every timestamp and expiry. Defaults to [`SystemClock`](crate::SystemClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses `keyring` to tag ids. Defaults to the one [`Keyring::load`] finds for the config.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Runs the shard workers where `placement` says. Defaults to [`Placement::ServerThreads`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The keyring given, else the one the (validated) config names.
    fn take_keyring(&mut self) -> Result<Keyring, StartError> {
        match self.keyring.take() {
            Some(k) => Ok(k),
            None => Keyring::load(&self.config),
        }
    }

    /// Checks the config; answers the robot detector its patterns compile to.
    fn validate(&self) -> Result<RobotDetector, StartError> {
        self.config.validate_settings("<config>")?;
        Ok(RobotDetector::build(&self.config.robots, "<config>")?)
    }

    fn engine(self, robots: RobotDetector, keyring: Keyring, backend: AnyBackend) -> SessionEngine {
        let create_limiter = CreateLimiter::from_config(&self.config.limits);
        let metrics = crate::telemetry::Metrics::resolve(&crate::message::OpKind::names());
        let logins = (0..LOGIN_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        let inner =
            Inner { config: self.config, robots, keyring, clock: self.clock, backend, create_limiter, metrics, logins };
        SessionEngine { inner: Arc::new(inner) }
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
    pub fn start(mut self) -> Result<SessionEngine, StartError> {
        let robots = self.validate()?;
        if self.config.storage.backend != StorageBackend::Memory {
            return Err(StartError::NeedsAsyncStart);
        }
        if actix::System::try_current().is_none() {
            return Err(StartError::NoSystem);
        }
        let keyring = self.take_keyring()?;
        let memory = MemoryBackend::start(
            self.config.clone(),
            keyring.clone(),
            self.clock.clone(),
            self.placement,
            self.log_io.0.clone(),
        )?;
        Ok(self.engine(robots, keyring, AnyBackend::Memory(memory)))
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
        #[cfg(feature = "redis")]
        if self.config.storage.backend == StorageBackend::Redis {
            let mut this = self;
            let robots = this.validate()?;
            let keyring = this.take_keyring()?;
            let store = crate::redis::RedisStore::connect(&this.config, keyring.clone(), this.clock.clone()).await?;
            return Ok(this.engine(robots, keyring, AnyBackend::Redis(store)));
        }
        self.start()
    }
}
