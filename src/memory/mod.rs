//! The memory backend (`storage.backend = "memory"`): sessions in this process, sharded over
//! worker actors by a stable hash of the id, persisted by bincode snapshots.
//!
//! - [`shard`]: the sessions of one shard, a plain struct (no actors).
//! - [`snapshot_run`]: how a shard becomes a snapshot while it serves, and when.
//! - [`worker`]: the actor hosting one shard: messages in, shard calls, replies out.
//! - [`supervisor`]: starts, watches and restarts the workers; fans engine-wide calls out.
//!
//! [`MemoryBackend`] is this backend's side of the [`Backend`] seam.

pub(crate) mod shard;
pub(crate) mod snapshot_run;
pub(crate) mod supervisor;
pub(crate) mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Addr, Handler, MailboxError, Message};

use crate::backend::Backend;
use crate::clock::Clock;
use crate::config::{Config, LimitsConfig};
use crate::error::{Result, SessionError, StartError, Unavailable};
use crate::id::{Keyring, SessionId};
use crate::message::*;
use crate::snapshot::{self, Snapshots};
use crate::state::Lifetimes;
use supervisor::{Router, Shutdown, SnapshotAll, Supervisor, WorkerDown};
use worker::Worker;

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

/// What every shard and the engine handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub keyring: Keyring,
    pub clock: Arc<dyn Clock>,
    pub lifetimes: Lifetimes,
    pub limits: LimitsConfig,
    pub config: Config,
    pub shards: usize,
    /// Live sessions per shard; their sum is checked against `limits.max_sessions`.
    pub live: Vec<AtomicUsize>,
    /// The snapshot writer; `None` when `storage.persist` is off.
    pub snapshots: Option<Snapshots>,
}

impl Shared {
    pub fn live_total(&self) -> usize {
        self.live.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

/// The memory backend: the supervisor and the routing table to its workers.
pub(crate) struct MemoryBackend {
    shared: Arc<Shared>,
    router: Arc<Router>,
    supervisor: Addr<Supervisor>,
}

impl MemoryBackend {
    /// Loads the snapshots (when `storage.persist` is on) and starts the workers; the caller
    /// must be inside a running actix `System`.
    pub fn start(
        config: Config,
        keyring: Keyring,
        clock: Arc<dyn Clock>,
        placement: Placement,
    ) -> Result<Self, StartError> {
        let shards = config.session.effective_shards();
        let lifetimes = Lifetimes::from_config(&config.session);
        let (snapshots, sessions) = if config.storage.persist {
            let (snapshots, sessions) = snapshot::open(&config.storage.dir, shards, clock.clone(), lifetimes)?;
            (Some(snapshots), sessions)
        } else {
            (None, (0..shards).map(|_| Vec::new()).collect())
        };
        let shared = Arc::new(Shared {
            keyring,
            clock,
            lifetimes,
            limits: config.limits.clone(),
            live: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            shards,
            config,
            snapshots,
        });
        let (supervisor, router) = Supervisor::launch(shared.clone(), sessions, placement);
        Ok(Self { shared, router, supervisor })
    }

    /// Shard → worker routing, for tests that stop a worker on purpose.
    #[cfg(test)]
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Sends a per-session message to the worker owning its session (the id is verified).
    async fn send<M, R>(&self, id: SessionId, msg: M) -> Result<R>
    where
        M: Message<Result = Result<R>> + Send + 'static,
        R: Send + 'static,
        Worker: Handler<M>,
    {
        let shard = id.shard(self.shared.shards);
        match self.router.get(shard).send(msg).await {
            Ok(result) => result,
            Err(MailboxError::Closed) => {
                self.supervisor.do_send(WorkerDown);
                Err(Unavailable::ShardRestarting { shard }.into())
            }
            Err(MailboxError::Timeout) => {
                Err(Unavailable::Busy { what: "the shard worker did not take the operation in time" }.into())
            }
        }
    }

    async fn send_info(&self, id: SessionId, touch: bool) -> Result<SessionInfo> {
        if touch { self.send(id, Touch { id }).await } else { self.send(id, Info { id }).await }
    }

    /// Sends an engine-wide message to the supervisor.
    async fn ask<M, R>(&self, msg: M) -> Result<R>
    where
        M: Message<Result = Result<R>> + Send + 'static,
        R: Send + 'static,
        Supervisor: Handler<M>,
    {
        self.supervisor.send(msg).await.map_err(|_| SessionError::from(Unavailable::EngineStopped))?
    }
}

impl Backend for MemoryBackend {
    fn shards(&self) -> usize {
        self.shared.shards
    }

    async fn create(&self, id: Option<SessionId>) -> Result<SessionInfo> {
        let id = id.unwrap_or_else(|| self.shared.keyring.generate());
        self.send(id, Create { id }).await
    }

    async fn create_counter(&self, _: &str, _: &str, _: i64) -> Result<Option<(SessionInfo, i64)>> {
        // Left to create + increment, which leave together in one trip (the web layer).
        Ok(None)
    }

    fn get(&self, id: SessionId, scope: &str, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        self.send(id, Get { id, scope: scope.into(), key: key.into() })
    }

    fn set(&self, id: SessionId, scope: &str, key: &str, value: Vec<u8>) -> impl Future<Output = Result<()>> + Send {
        self.send(id, Set { id, scope: scope.into(), key: key.into(), value })
    }

    fn remove(&self, id: SessionId, scope: &str, key: &str) -> impl Future<Output = Result<bool>> + Send {
        self.send(id, Remove { id, scope: scope.into(), key: key.into() })
    }

    fn clear(&self, id: SessionId, scope: Option<&str>) -> impl Future<Output = Result<()>> + Send {
        self.send(id, Clear { id, scope: scope.map(Into::into) })
    }

    fn keys(&self, id: SessionId, scope: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        self.send(id, Keys { id, scope: scope.into() })
    }

    fn update(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        f: UpdateFn,
    ) -> impl Future<Output = Result<Option<Vec<u8>>>> + Send {
        self.send(id, Update { id, scope: scope.into(), key: key.into(), f })
    }

    async fn increment(&self, _: SessionId, _: &str, _: &str, _: i64) -> Result<Option<i64>> {
        // The engine's generic update does it inside the worker: nothing faster here.
        Ok(None)
    }

    fn login(&self, id: SessionId, userid: u64) -> impl Future<Output = Result<SessionInfo>> + Send {
        self.send(id, Login { id, userid })
    }

    fn logout(&self, id: SessionId) -> impl Future<Output = Result<SessionInfo>> + Send {
        self.send(id, Logout { id })
    }

    fn set_persistent(&self, id: SessionId, persistent: bool) -> impl Future<Output = Result<SessionInfo>> + Send {
        self.send(id, SetPersistent { id, persistent })
    }

    fn info(&self, id: SessionId, touch: bool) -> impl Future<Output = Result<SessionInfo>> + Send {
        // One message type either way, so one future type: no branch to await.
        self.send_info(id, touch)
    }

    fn looked_up<R, F>(&self, id: SessionId, op: F) -> impl Future<Output = (Result<SessionInfo>, Result<R>)>
    where
        F: Future<Output = Result<R>>,
    {
        // Both messages are queued before either is awaited: one wake-up of the worker. Not an
        // `async fn`: that would keep `op` in its state beside the join holding it too.
        futures_util::future::join(self.info(id, false), op)
    }

    fn destroy(&self, id: SessionId) -> impl Future<Output = Result<bool>> + Send {
        self.send(id, Destroy { id })
    }

    fn logout_user(&self, userid: u64) -> impl Future<Output = Result<usize>> + Send {
        self.ask(LogoutUser { userid })
    }

    fn sessions_of(&self, userid: u64) -> impl Future<Output = Result<Vec<SessionInfo>>> + Send {
        self.ask(SessionsOf { userid })
    }

    fn stats(&self) -> impl Future<Output = Result<EngineStats>> + Send {
        self.ask(Stats)
    }

    fn sweep(&self) -> impl Future<Output = Result<usize>> + Send {
        self.ask(Sweep)
    }

    fn snapshot(&self) -> impl Future<Output = Result<usize>> + Send {
        self.ask(SnapshotAll)
    }

    async fn shutdown(&self) {
        let _ = self.supervisor.send(Shutdown).await;
    }
}
