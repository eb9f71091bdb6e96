//! The memory backend (`storage.backend = "memory"`): sessions in this process, sharded over
//! worker actors by a stable hash of the id, persisted by bincode snapshots.
//!
//! - [`shard`]: the sessions of one shard, a plain struct (no actors), seeing only its
//!   [`env`]: clock, lifetimes, limits, keys, live counts.
//! - [`ops`]: each typed message as one operation on a shard.
//! - [`outbox`]: what an operation changed, delivered to the log and the event hub by the
//!   shard's host after it ran.
//! - [`snapshot_run`]: how a shard becomes a snapshot while it serves, and when.
//! - [`worker`]: the actor hosting one shard: messages in, shard calls, replies out.
//! - [`host`]: where a shard lives — the thread-local path to a shard hosted on the caller's
//!   thread, and the moves between a shard's home thread and a server thread.
//! - [`supervisor`]: starts, watches and restarts the workers; fans engine-wide calls out.
//!
//! [`MemoryBackend`] is what the engine's seam (`engine/store.rs`) calls.

pub(crate) mod budget;
pub(crate) mod env;
pub(crate) mod host;
pub(crate) mod ops;
pub(crate) mod outbox;
pub(crate) mod shard;
pub(crate) mod snapshot_run;
pub(crate) mod supervisor;
pub(crate) mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

use actix::{Addr, ArbiterHandle, MailboxError};

use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Result, SessionError, StartError, Unavailable};
use crate::id::{Keyring, SessionId};
use crate::message::op::Op;
use crate::seal::Sealer;
use crate::snapshot::{self, Recovered, Snapshots};
use crate::state::Lifetimes;
use crate::wal::Wal;
use crate::wal::append::Durable;
use crate::wal::io::LogIo;
use env::Env;
pub(crate) use ops::{EveryShard, OnShard, ShardOp};
use supervisor::{EraseAll, FanOut, Router, Shutdown, SnapshotAll, Supervisor, WorkerDown};
use worker::Carried;

/// Where the shard workers run.
///
/// Whatever the placement, a shard has one owner at a time and an operation issued on the
/// thread that hosts its session's shard runs there directly, without a message (see
/// [`SessionEngine::host_here`](crate::SessionEngine::host_here)); operations from other
/// threads are messages to the host, one cross-thread trip each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// Shards start on threads of their own (as with `DedicatedThreads`), and each actix-web
    /// worker thread adopts one as it builds its [`SessionMiddleware`](crate::SessionMiddleware)
    /// service (thread per core): new sessions are created on the shard of the thread that
    /// serves the request and stay there through login and logout, so a returning visitor's
    /// request on the same worker never leaves its thread. Shards no server thread took stay on
    /// their own threads and keep serving; a server thread that stops sends its shard back
    /// there. Without a server (jobs, load generators) this is `DedicatedThreads`. The default.
    #[default]
    ServerThreads,
    /// Each shard worker on a thread of its own, always. Shards work in parallel; every
    /// operation crosses threads (a wake-up of the worker's thread, then of the caller's).
    DedicatedThreads,
    /// Every shard worker on the thread that starts the engine. Operations from that thread
    /// never cross threads; calls from other threads still work. For a server with one
    /// actix-web worker that starts the engine in its app factory, for load generators and
    /// background jobs. The engine's work then shares that thread, so sweeps and snapshot
    /// encoding run between its requests.
    CurrentThread,
}

/// Numbers engines, so a thread's table of hosted shards can tell engines apart.
static ENGINES: AtomicU64 = AtomicU64::new(1);

/// What the memory backend's hosts and its engine handle share: where each shard is hosted
/// (router, home threads, server threads), the snapshot writer, the log, the event hub, the
/// metrics — and the [`Env`] each shard sees, which holds none of these.
#[derive(Debug)]
pub(crate) struct Hosting {
    /// This engine's number (see [`host`]).
    pub engine: u64,
    pub placement: Placement,
    /// Shard → its host's address.
    pub router: Router,
    /// Each shard's own thread (not with [`Placement::CurrentThread`]): where it starts, and
    /// where it goes back when the server thread that adopted it stops.
    pub homes: OnceLock<Vec<ArbiterHandle>>,
    /// The server thread hosting each shard (`None`: on its home thread).
    pub hosts: Mutex<Vec<Option<ThreadId>>>,
    /// What every shard sees of the engine.
    pub env: Arc<Env>,
    pub config: Config,
    /// The snapshot writer; `None` when `storage.persist` is off.
    pub snapshots: Option<Snapshots>,
    /// The write-ahead log; `None` when `storage.log` or `storage.persist` is off.
    pub wal: Option<Arc<Wal>>,
    /// Where shards' events are published (by their hosts, from the shards' outboxes).
    pub events: Arc<crate::events::EventHub>,
    /// Per-shard metric handles (`src/telemetry.rs`), resolved as the engine starts.
    pub metrics: crate::telemetry::ShardMetrics,
}

impl Hosting {
    pub fn new(
        config: Config,
        keyring: Keyring,
        sealer: Arc<Sealer>,
        clock: Arc<dyn Clock>,
        placement: Placement,
        snapshots: Option<Snapshots>,
        wal: Option<Arc<Wal>>,
    ) -> Self {
        let events = crate::events::EventHub::new(config.events.capacity);
        let env = Arc::new(Env::new(&config, keyring, sealer, clock, events.listeners()));
        let shards = env.shards;
        Self {
            engine: ENGINES.fetch_add(1, Ordering::Relaxed),
            placement,
            router: Router::default(),
            homes: OnceLock::new(),
            hosts: Mutex::new(vec![None; shards]),
            env,
            events,
            config,
            snapshots,
            wal,
            metrics: crate::telemetry::ShardMetrics::resolve(shards),
        }
    }

    /// Sets shard `shard`'s gauges (live sessions, mailbox depth) from its atomics.
    pub fn refresh_gauges(&self, shard: usize) {
        if let Some(live) = self.env.live.get(shard) {
            self.metrics.refresh(shard, live.load(Ordering::Relaxed));
        }
    }
}

/// The memory backend: the supervisor, and the engine's view of the shards.
pub(crate) struct MemoryBackend {
    hosting: Arc<Hosting>,
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
        log_io: Arc<dyn LogIo>,
    ) -> Result<Self, StartError> {
        let shards = config.session.effective_shards();
        let lifetimes = Lifetimes::from_config(&config.session);
        let sealer = Arc::new(Sealer::new(&keyring, config.storage.encrypt));
        // The disk's outages, told in a few lines by the snapshot writer and the log alike.
        let disk = Arc::new(crate::outage::disk(&config.storage.dir, Arc::new(crate::clock::SystemClock)));
        let (snapshots, sessions) = if config.storage.persist {
            let (snapshots, sessions) =
                snapshot::open(&config.storage.dir, shards, clock.clone(), lifetimes, sealer.clone(), disk.clone())?;
            (Some(snapshots), sessions)
        } else {
            (None, (0..shards).map(|_| Recovered::default()).collect())
        };
        let wal = match config.storage.log {
            crate::config::LogMode::Off => None,
            _ if !config.storage.persist => None,
            _ => Some(crate::wal::start(&config.storage, shards, log_io, sealer.clone(), disk)?),
        };
        let hosting = Arc::new(Hosting::new(config, keyring, sealer, clock, placement, snapshots, wal));
        let supervisor = Supervisor::launch(hosting.clone(), sessions);
        Ok(Self { hosting, supervisor })
    }

    /// Shard → worker routing, for tests that stop a worker on purpose.
    #[cfg(test)]
    pub fn router(&self) -> &Router {
        &self.hosting.router
    }

    /// A fresh id, on this thread's shard when it hosts one (a new session is born where the
    /// request that made it is served).
    fn fresh_id(&self) -> SessionId {
        match host::home_shard(self.hosting.engine) {
            Some(shard) => self.hosting.env.id_in(shard),
            None => self.hosting.env.keyring.generate(),
        }
    }

    /// Sets every shard's gauges from its atomics.
    pub fn refresh_gauges(&self) {
        (0..self.hosting.env.shards).for_each(|shard| self.hosting.refresh_gauges(shard));
    }

    /// Runs an operation on its session's shard: on the shard directly when this thread hosts
    /// it, else as a message to the shard's host. Either way it runs when the future is first
    /// polled, so operations keep the order they are awaited in.
    pub fn on_session<M: ShardOp>(&self, msg: M) -> OnSession<'_, M> {
        OnSession { backend: self, step: Step::Unrun(msg) }
    }

    /// Runs `msg` on the shard of its session if this thread hosts it (and no operation of
    /// this thread is under way on it): its answer, and what the answer waits for. Else the
    /// message back, with its shard.
    fn run_here<M: ShardOp>(&self, mut msg: M) -> std::result::Result<Ran<M>, (M, usize)> {
        let Some(id) = msg.session() else {
            return Ok((Err(SessionError::internal("an engine-wide operation")), None));
        };
        let shard = id.shard(self.hosting.env.shards);
        let Some(core) = host::local(self.hosting.engine, shard) else { return Err((msg, shard)) };
        // Busy only if an operation re-entered the engine synchronously: then it queues.
        let Ok(mut c) = core.try_borrow_mut() else { return Err((msg, shard)) };
        let (result, committed) = c.apply(true, &mut msg);
        drop(c);
        let durable = committed.map(|committed| {
            if committed.schedule {
                host::flush_soon(&core);
            }
            committed.durable
        });
        Ok((result, durable))
    }

    /// Sends a per-session operation to the host of `shard`. A host that moved away (a server
    /// thread adopted the shard) forwards what still reaches it to the new host; a message left
    /// unrun in the mailbox of a host whose thread stopped goes again to the shard's next host.
    async fn send<M: OnShard + 'static>(&self, shard: usize, msg: M) -> Result<M::Reply> {
        let carried = Carried::new(msg);
        let again = |gone: &Addr<worker::Worker>| {
            if self.hosting.router.get(shard) == *gone {
                // A crashed host, or a server thread's on its way home: the supervisor restarts
                // the first and leaves the second to its host.
                self.supervisor.do_send(WorkerDown);
            }
            carried.unrun().then(|| carried.again())
        };
        match host::send_following(&self.hosting, shard, carried.again(), again).await {
            Ok(result) => result,
            Err(MailboxError::Timeout) => {
                Err(Unavailable::Busy { what: "the shard worker did not take the operation in time" }.into())
            }
            Err(MailboxError::Closed) => Err(Unavailable::ShardRestarting { shard }.into()),
        }
    }

    /// Runs an engine-wide operation on every shard (through the supervisor, which knows
    /// their restarts) and merges the answers.
    pub async fn on_every_shard<M: EveryShard>(&self, msg: M) -> Result<M::Reply> {
        self.ask(FanOut(msg)).await
    }

    /// Erases user `userid` (`msg` ends their sessions on every shard; see
    /// `snapshot/erase.rs` for the design): with `storage.persist` on, the intent is recorded
    /// durably first, then the sessions end, then every shard is rewritten without them and
    /// its older files deleted; the intent goes once all of that is durable. Answers the
    /// sessions ended. On an error the intent stays: calling again, or the next start,
    /// finishes the erasure. The intent's fsync runs on the calling thread (milliseconds, and
    /// erasures are rare); the rewrites run on the writer thread, as snapshots do.
    pub async fn erasure<M: EveryShard<Reply = usize>>(&self, userid: u64, msg: M) -> Result<usize> {
        let storage = |what: &str, e: std::io::Error| {
            SessionError::from(Unavailable::Storage { message: format!("erasure of user {userid}: {what}: {e}") })
        };
        let intent = match self.hosting.snapshots {
            Some(_) => Some(
                snapshot::erase::Intent::record(&self.hosting.config.storage.dir, userid)
                    .map_err(|e| storage("cannot record the intent", e))?,
            ),
            None => None,
        };
        let ended = self.on_every_shard(msg).await?;
        self.ask(EraseAll).await?;
        if let Some(intent) = intent {
            intent.done().map_err(|e| storage("rewritten, but the intent file cannot be removed", e))?;
        }
        Ok(ended)
    }

    /// Sends an engine-wide message to the supervisor.
    async fn ask<M, R>(&self, msg: M) -> Result<R>
    where
        M: actix::Message<Result = Result<R>> + Send + 'static,
        R: Send + 'static,
        Supervisor: actix::Handler<M>,
    {
        self.supervisor.send(msg).await.map_err(|_| SessionError::from(Unavailable::EngineStopped))?
    }
}

/// The memory backend as the engine calls it (`engine/store.rs`).
impl MemoryBackend {
    pub fn shards(&self) -> usize {
        self.hosting.env.shards
    }

    pub fn run<M: ShardOp>(&self, msg: M) -> impl Future<Output = Result<M::Reply>> + Send {
        msg.route(self)
    }

    pub fn new_id(&self, _: &Keyring) -> SessionId {
        self.fresh_id()
    }

    /// Hosts one shard on the calling thread (see [`host::adopt`]), with
    /// [`Placement::ServerThreads`].
    pub async fn host_here(&self) -> Option<usize> {
        if self.hosting.placement != Placement::ServerThreads {
            return None;
        }
        host::adopt(&self.hosting).await
    }

    pub async fn subscribe(&self) -> Result<crate::events::Subscription> {
        Ok(self.hosting.events.subscribe())
    }

    pub fn snapshot(&self) -> impl Future<Output = Result<usize>> + Send {
        self.ask(SnapshotAll)
    }

    pub async fn shutdown(&self) {
        let _ = self.supervisor.send(Shutdown).await;
    }
}

/// The future of [`MemoryBackend::on_session`]: the message, then what its answer waits for,
/// or the trip to the shard's host on another thread (boxed: the rare way). Hand-written so it
/// stays a few bytes larger than the message: an operation's future is part of the request's,
/// which is copied as it moves.
pub(crate) struct OnSession<'a, M: ShardOp> {
    backend: &'a MemoryBackend,
    step: Step<'a, M>,
}

/// An operation that ran here: its answer, and what the answer waits for.
type Ran<M> = (Result<<M as Op>::Reply>, Option<Durable>);

enum Step<'a, M: ShardOp> {
    Unrun(M),
    /// Ran here; its answer waits for its records' write (or fsync).
    Waiting(M::Reply, Durable),
    Remote(std::pin::Pin<Box<dyn Future<Output = Result<M::Reply>> + Send + 'a>>),
    Answered,
}

impl<M: ShardOp> Future for OnSession<'_, M> {
    type Output = Result<M::Reply>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.step, Step::Answered) {
                Step::Unrun(msg) => match this.backend.run_here(msg) {
                    Ok((Ok(value), Some(durable))) => this.step = Step::Waiting(value, durable),
                    Ok((result, _)) => return Poll::Ready(result),
                    Err((msg, shard)) => {
                        let backend = this.backend;
                        this.step = Step::Remote(Box::pin(backend.send(shard, msg.into_owned())));
                    }
                },
                Step::Waiting(value, mut durable) => match std::pin::Pin::new(&mut durable).poll(cx) {
                    Poll::Ready(written) => return Poll::Ready(written.map(|()| value)),
                    Poll::Pending => {
                        this.step = Step::Waiting(value, durable);
                        return Poll::Pending;
                    }
                },
                Step::Remote(mut remote) => match remote.as_mut().poll(cx) {
                    Poll::Ready(answer) => return Poll::Ready(answer),
                    Poll::Pending => {
                        this.step = Step::Remote(remote);
                        return Poll::Pending;
                    }
                },
                Step::Answered => {
                    return Poll::Ready(Err(SessionError::internal("an operation polled after it answered")));
                }
            }
        }
    }
}
