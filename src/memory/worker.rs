//! The shard worker actor: the host of one [`Shard`](super::shard::Shard). Typed messages in,
//! one shard call each, replies out; plus the timers (sweep, snapshot schedule) and the
//! lifecycle (reload after a restart, final snapshot on stop). The session logic itself is in
//! the shard; what moves with it, its log included, in [`Core`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message, MessageResult};
use tokio::sync::oneshot;

use super::Hosting;
use super::host::{self, Core};
use super::ops::{EveryShard, OnShard};
use super::snapshot_run::{Run, SNAPSHOT_BATCH, SnapshotResult};
use crate::error::{Result, Unavailable};
use crate::message::op::Op;
use crate::snapshot::{Recovered, Written};
use crate::wal::append::Durable;

/// Sessions examined per periodic sweep step: bounds how long one step holds the worker.
const SWEEP_BATCH: usize = 4096;
/// Messages queued in a worker's mailbox before senders wait.
const MAILBOX_CAPACITY: usize = 1024;
/// How long a host that gave its shard away keeps forwarding messages that were already on
/// their way to it (senders read the router before the move): far longer than any of them
/// takes to arrive.
const FORWARD_GRACE: Duration = Duration::from_secs(2);

/// Hosts one shard (see [`Core`], [`Shard`](super::shard::Shard)): its mail, one message at a time, and its timers.
/// The core is shared with this thread's table of hosted shards (see [`host`]), so calls made
/// on this thread reach it without a message.
pub(crate) struct Worker {
    core: Rc<RefCell<Core>>,
    hosting: Arc<Hosting>,
    index: usize,
    /// Adopted by a server thread: dropped with that thread, it sends its core home.
    on_server: bool,
    /// The final snapshot was handed to the writer (`FinalSnapshot`): nothing left to save.
    finished: bool,
    /// Gave its core to a new host (`HandOver`): operations still reaching it are refused
    /// with `ShardRestarting`, and the sender retries with the new host.
    moved: bool,
}

impl Worker {
    /// A worker owning `sessions` (loaded at start-up). A restarted worker (`reload`) reads
    /// its shard's last snapshot back before it serves.
    pub fn new(index: usize, hosting: Arc<Hosting>, restarts: u64, sessions: Recovered, reload: bool) -> Self {
        let mut core = Self::fresh_core(index, hosting.clone(), sessions, reload);
        core.restarts = restarts;
        Self::with_core(core, hosting, false)
    }

    /// A new core for shard `index` holding `sessions`.
    pub fn fresh_core(index: usize, hosting: Arc<Hosting>, sessions: Recovered, reload: bool) -> Core {
        if reload && hosting.snapshots.is_some() {
            // Its log opens once the reload says where it goes on.
            Core::reloading(index, hosting)
        } else {
            Core::new(index, hosting, sessions)
        }
    }

    /// The host of `core`, which may come from another host (a move).
    pub fn with_core(core: Core, hosting: Arc<Hosting>, on_server: bool) -> Self {
        let index = core.shard.index();
        Self { core: Rc::new(RefCell::new(core)), hosting, index, on_server, finished: false, moved: false }
    }

    /// Lists this host's core in the calling thread's table (see [`host::local`]).
    pub fn register_here(&self) {
        host::register(self.hosting.engine, self.index, &self.core);
    }

    /// Runs one operation that came by message on the shard; after a move, forwards it to
    /// the new host.
    fn serve<M: OnShard + 'static>(&mut self, mut msg: M) -> Answer<M> {
        if self.moved {
            return Answer::Forward { to: self.hosting.router.get(self.index), msg, shard: self.index };
        }
        if self.finished {
            return Answer::Now(Err(Unavailable::ShardRestarting { shard: self.index }.into()));
        }
        let (result, committed) = self.core.borrow_mut().apply(false, &mut msg);
        match committed {
            None => Answer::Now(result),
            Some(committed) => {
                if committed.schedule {
                    host::flush_soon(&self.core);
                }
                Answer::Durable(result, committed.durable)
            }
        }
    }

    fn persisting(&self) -> bool {
        self.hosting.snapshots.is_some() && !self.core.borrow().loading
    }

    /// Begins a snapshot when the shard changed since the last durable one and none is under
    /// way; answers the waiters at once when there is nothing to write.
    fn start_snapshot(&mut self, ctx: &mut Context<Self>) {
        if !self.persisting() || self.moved {
            return;
        }
        let core = &mut *self.core.borrow_mut();
        if !core.schedule.dirty(&core.shard) {
            core.schedule.answer(Ok(None));
        } else if core.schedule.may_begin(&core.shard) {
            core.begin_run();
            ctx.notify(SnapshotStep);
        }
    }

    /// Hands a finished run to the writer; `done` hears when it is durable.
    fn hand_over(&self, run: Run, done: crate::snapshot::WriteDone) -> bool {
        self.hosting.snapshots.as_ref().is_some_and(|s| run.hand_over(s, done))
    }

    /// Delivers a message to this shard's host when it arrives (a writer callback): to this
    /// worker while it runs — after a move it forwards — and to the router's current host once
    /// it is gone (a forwarder stops a while after the move; a snapshot may take longer).
    fn to_host<M>(&self, ctx: &Context<Self>) -> impl Fn(M) + Send + 'static
    where
        M: Message<Result = ()> + Send + 'static,
        Self: Handler<M>,
    {
        let (own, hosting, index) = (ctx.address(), self.hosting.clone(), self.index);
        move |msg| {
            if own.connected() {
                own.do_send(msg);
            } else {
                hosting.router.get(index).do_send(msg);
            }
        }
    }

    /// A writer's answer that reached this host after it gave the shard away.
    fn forward<M>(&self, msg: M)
    where
        M: Message<Result = ()> + Send + 'static,
        Self: Handler<M>,
    {
        self.hosting.router.get(self.index).do_send(msg);
    }

    /// Writes the whole shard as its final snapshot in this one turn; the answer comes once it
    /// is durable. `None`: nothing to write.
    fn final_snapshot(&mut self) -> Option<oneshot::Receiver<SnapshotResult>> {
        self.finished = true;
        let mut core = self.core.borrow_mut();
        core.abandon_run();
        if self.hosting.snapshots.is_none() || core.loading || !core.schedule.dirty(&core.shard) {
            return None;
        }
        let run = core.encode_all();
        drop(core);
        let entries = run.entries();
        let (tx, rx) = oneshot::channel();
        let done = Box::new(move |result: std::io::Result<Written>| {
            let _ = tx.send(result.map(|_| Some(entries)).map_err(|e| e.to_string()));
        });
        // If the writer is gone the job, and the sender in it, are dropped: the receiver says so.
        self.hand_over(run, done);
        Some(rx)
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Senders wait (backpressure) once this many messages are queued.
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.register_here();
        let hosting = self.hosting.clone();
        ctx.run_interval(hosting.config.session.sweep_interval, |worker, _| {
            if worker.moved {
                return;
            }
            worker.hosting.refresh_gauges(worker.index);
            let dropped = worker.core.borrow_mut().sweep_step(SWEEP_BATCH);
            if dropped > 0 {
                log::debug!("shard {}: {dropped} expired sessions dropped", worker.index);
            }
        });
        if hosting.wal.is_some() {
            // A log that failed resumes with a snapshot, and one that grew past its share of
            // storage.log_max is cut short by one: checked every second, not every interval.
            ctx.run_interval(Duration::from_secs(1), |worker, ctx| {
                if worker.moved || !worker.persisting() {
                    return;
                }
                let wants = {
                    let mut core = worker.core.borrow_mut();
                    let wants = !core.running() && core.log.wants_snapshot(std::time::Instant::now());
                    if wants {
                        core.shard.force_dirty();
                    }
                    wants
                };
                if wants {
                    worker.start_snapshot(ctx);
                }
            });
        }
        let Some(snapshots) = &hosting.snapshots else { return };
        ctx.run_interval(hosting.config.storage.snapshot_interval, |worker, ctx| worker.start_snapshot(ctx));
        // A run under way when the shard moved here goes on here.
        if self.core.borrow().running() {
            ctx.notify(SnapshotStep);
        }
        let loading = self.core.borrow().loading;
        if loading {
            let send = self.to_host::<Reloaded>(ctx);
            if !snapshots.load(self.index, Box::new(move |records| send(Reloaded(records)))) {
                log::error!("shard {}: snapshot writer is gone; the restarted shard starts empty", self.index);
                self.core.borrow_mut().loading = false;
            }
        }
    }
}

/// Give the core to the host that asked (see [`host::adopt`]) and stop. `None`: this host
/// has no core to give any more.
#[derive(Message)]
#[rtype(result = "Option<Core>")]
pub(crate) struct HandOver;

impl Handler<HandOver> for Worker {
    type Result = MessageResult<HandOver>;

    fn handle(&mut self, _: HandOver, ctx: &mut Context<Self>) -> Self::Result {
        if self.moved || self.finished {
            return MessageResult(None);
        }
        self.moved = true;
        host::unregister(self.hosting.engine, self.index);
        ctx.run_later(FORWARD_GRACE, |_, ctx| ctx.stop());
        MessageResult(Some(self.core.borrow_mut().take()))
    }
}

/// Encode the next batch of the snapshot under way (sent by the worker to itself, so
/// operations queued meanwhile run between batches).
#[derive(Message)]
#[rtype(result = "()")]
struct SnapshotStep;

impl Handler<SnapshotStep> for Worker {
    type Result = ();

    fn handle(&mut self, _: SnapshotStep, ctx: &mut Context<Self>) {
        if self.moved {
            return;
        }
        let mut core = self.core.borrow_mut();
        if !core.running() {
            return;
        }
        let Some(run) = core.run_step(SNAPSHOT_BATCH) else {
            ctx.notify(SnapshotStep);
            return;
        };
        let (at, entries, log_from) = (run.at(), run.entries(), run.log_from());
        let send = self.to_host::<SnapshotWritten>(ctx);
        let done = Box::new(move |result: std::io::Result<Written>| {
            send(SnapshotWritten { at, log_from, result: result.map(|_| Some(entries)).map_err(|e| e.to_string()) });
        });
        if self.hand_over(run, done) {
            core.schedule.handed_over();
        } else {
            core.schedule.written(at, Err("the snapshot writer thread is gone".into()));
        }
    }
}

/// The writer thread finished a snapshot of this shard.
#[derive(Message)]
#[rtype(result = "()")]
struct SnapshotWritten {
    at: u64,
    /// The run's log position: every record before it is in the snapshot.
    log_from: u64,
    result: SnapshotResult,
}

impl Handler<SnapshotWritten> for Worker {
    type Result = ();

    fn handle(&mut self, msg: SnapshotWritten, ctx: &mut Context<Self>) {
        if self.moved {
            // Sent before the move reached the router: the new host needs it.
            self.forward(msg);
            return;
        }
        let ok = msg.result.is_ok();
        // The writer logged a failure; the shard stays dirty, so the next tick retries.
        let result = msg.result.map_err(|e| format!("shard {}: {e}", self.index));
        let waiters = {
            let mut core = self.core.borrow_mut();
            if ok {
                core.log.snapshot_durable(msg.log_from);
            }
            core.schedule.written(msg.at, result);
            core.schedule.has_waiters()
        };
        // Waiters that need changes made during this snapshot get another one, and an erasure
        // that came while it was written gets its own.
        if (ok && waiters) || self.core.borrow().schedule.erasure_wanted() {
            self.start_snapshot(ctx);
        }
    }
}

/// Snapshot now if anything changed; the answer arrives once the snapshot is durable.
#[derive(Clone, Copy, Message)]
#[rtype(result = "oneshot::Receiver<SnapshotResult>")]
pub(crate) struct SnapshotNow;

impl Handler<SnapshotNow> for Worker {
    type Result = MessageResult<SnapshotNow>;

    fn handle(&mut self, _: SnapshotNow, ctx: &mut Context<Self>) -> Self::Result {
        let rx = {
            let core = &mut *self.core.borrow_mut();
            if self.hosting.snapshots.is_none() || self.moved || !core.schedule.dirty(&core.shard) {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Ok(None));
                return MessageResult(rx);
            }
            core.schedule.wait(core.shard.changes())
        };
        self.start_snapshot(ctx);
        MessageResult(rx)
    }
}

/// An erasure's rewrite of this shard ([`Core::want_erasure`]); answered once it is durable.
#[derive(Clone, Copy, Message)]
#[rtype(result = "oneshot::Receiver<SnapshotResult>")]
pub(crate) struct EraseNow;

impl Handler<EraseNow> for Worker {
    type Result = MessageResult<EraseNow>;

    fn handle(&mut self, _: EraseNow, ctx: &mut Context<Self>) -> Self::Result {
        if self.hosting.snapshots.is_none() || self.moved || self.finished {
            return MessageResult(host::erasure_elsewhere(&self.hosting, self.index, self.moved));
        }
        let rx = self.core.borrow_mut().want_erasure();
        // A run at the writer finishes first: its answer starts the erasure's, as a reload's end does.
        self.start_snapshot(ctx);
        MessageResult(rx)
    }
}

/// Graceful stop: write everything in this one turn and stop, so no operation is
/// acknowledged after the final snapshot. Answers `None` when there was nothing to write.
#[derive(Clone, Copy, Message)]
#[rtype(result = "Option<oneshot::Receiver<SnapshotResult>>")]
pub(crate) struct FinalSnapshot;

impl Handler<FinalSnapshot> for Worker {
    type Result = Option<oneshot::Receiver<SnapshotResult>>;

    fn handle(&mut self, _: FinalSnapshot, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        if self.moved || self.finished {
            return None;
        }
        host::unregister(self.hosting.engine, self.index);
        self.final_snapshot()
    }
}

/// The sessions of this shard's last snapshot and log, read back after a restart.
#[derive(Message)]
#[rtype(result = "()")]
struct Reloaded(Recovered);

impl Handler<Reloaded> for Worker {
    type Result = ();

    fn handle(&mut self, msg: Reloaded, ctx: &mut Context<Self>) {
        if self.moved {
            self.forward(msg);
            return;
        }
        let (n, replayed) = (msg.0.records.len(), msg.0.replayed);
        let erasure = {
            let mut core = self.core.borrow_mut();
            core.resume(msg.0);
            core.loading = false;
            core.schedule.erasure_wanted()
        };
        log::info!(
            "shard {}: restarted worker reloaded {n} sessions from its last snapshot and {replayed} log records",
            self.index
        );
        if erasure {
            self.start_snapshot(ctx);
        }
    }
}

/// A host's answer to an operation: now, or — when the shard moved away — the operation
/// forwarded to the new host, whose answer goes back to the sender.
pub(crate) enum Answer<M: Op> {
    Now(Result<M::Reply>),
    /// The result, once its log records are written (and with `storage.log = "always"`,
    /// fsynced).
    Durable(Result<M::Reply>, Durable),
    Forward {
        to: Addr<Worker>,
        msg: M,
        shard: usize,
    },
}

impl<M, O> MessageResponse<Worker, O> for Answer<M>
where
    M: OnShard + 'static,
    O: Message<Result = Result<M::Reply>>,
{
    fn handle(self, _: &mut Context<Worker>, tx: Option<OneshotSender<Result<M::Reply>>>) {
        match self {
            Answer::Now(result) => {
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
            Answer::Durable(result, durable) => {
                // The shard goes on with other work; the reply waits for the fsync.
                actix::spawn(async move {
                    let result = match result {
                        Ok(value) => durable.await.map(|()| value),
                        Err(e) => Err(e),
                    };
                    if let Some(tx) = tx {
                        let _ = tx.send(result);
                    }
                });
            }
            Answer::Forward { to, msg, shard } => {
                actix::spawn(async move {
                    let result = to
                        .send(Carried::new(msg))
                        .await
                        .unwrap_or_else(|_| Err(Unavailable::ShardRestarting { shard }.into()));
                    if let Some(tx) = tx {
                        let _ = tx.send(result);
                    }
                });
            }
        }
    }
}

/// A per-session operation the sender can take back: the host takes it out of the shared slot
/// when it handles it, so an operation still in the slot after the host's mailbox closed (its
/// thread stopped with the message queued) was never run, and goes again to the new host.
pub(crate) struct Carried<M>(Arc<Mutex<Option<M>>>);

impl<M: Op + 'static> Message for Carried<M> {
    type Result = Result<M::Reply>;
}

impl<M> Carried<M> {
    pub fn new(msg: M) -> Self {
        Self(Arc::new(Mutex::new(Some(msg))))
    }

    /// The operation, when no host took it.
    pub fn take(&self) -> Option<M> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// No host took the operation (yet).
    pub fn unrun(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Another handle on the same operation, to send.
    pub fn again(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: OnShard + 'static> Handler<Carried<M>> for Worker {
    type Result = Answer<M>;

    fn handle(&mut self, carried: Carried<M>, _: &mut Context<Self>) -> Self::Result {
        match carried.take() {
            Some(msg) => self.serve(msg),
            None => Answer::Now(Err(Unavailable::ShardRestarting { shard: self.index }.into())),
        }
    }
}

/// An engine-wide operation, sent to every shard's host (see [`EveryShard`]).
#[derive(Clone)]
pub(crate) struct Every<M>(pub M);

impl<M: EveryShard> Message for Every<M> {
    type Result = Result<M::Reply>;
}

impl<M: EveryShard> Handler<Every<M>> for Worker {
    type Result = Answer<M>;

    fn handle(&mut self, Every(mut msg): Every<M>, _: &mut Context<Self>) -> Self::Result {
        if M::COUNTED {
            return self.serve(msg);
        }
        // Only reads counters: not an operation of the shard, answered even while it reloads.
        if self.moved {
            return Answer::Now(Err(Unavailable::ShardRestarting { shard: self.index }.into()));
        }
        Answer::Now(self.core.borrow_mut().read(|s| msg.apply(s)))
    }
}

/// A host is dropped with its thread. On a server thread (actix-web's workers stop before
/// `HttpServer::run()` returns, and a faulted one is replaced by a new thread) the core goes
/// back to the shard's home thread at once, a move in memory, so requests still draining and
/// the shutdown snapshot find every acknowledged write. On the shard's home thread (the actix
/// system stopped before the engine's `shutdown()` could ask for a final snapshot) it writes
/// the final snapshot here and waits until it is durable; `shutdown()` joins the home threads,
/// so it still returns only after these writes.
impl Drop for Worker {
    fn drop(&mut self) {
        host::unregister(self.hosting.engine, self.index);
        if self.moved {
            return;
        }
        if self.on_server {
            if self.finished {
                // Stopped for good (its final snapshot): the supervisor may restart it at home.
                self.hosting.hosts.lock().unwrap_or_else(|e| e.into_inner())[self.index] = None;
                return;
            }
            let core = self.core.borrow_mut().take();
            match host::send_home(&self.hosting, self.index, core) {
                None => {
                    log::info!("shard {}: its server thread stopped; the shard is back on its own thread", self.index);
                    return;
                }
                Some(core) => *self.core.borrow_mut() = core,
            }
        }
        if self.finished || !self.persisting() {
            return;
        }
        let index = self.index;
        let run = {
            let core = &mut *self.core.borrow_mut();
            if !core.schedule.dirty(&core.shard) {
                return;
            }
            core.encode_all()
        };
        let entries = run.entries();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let done = Box::new(move |result: std::io::Result<Written>| {
            let _ = tx.send(result);
        });
        if !self.hand_over(run, done) {
            log::error!("shard {index}: stopped with unsaved changes and the snapshot writer is gone");
            return;
        }
        match rx.recv() {
            Ok(Ok(_)) => {
                log::info!("shard {index}: stopped by the actix system; final snapshot of {entries} sessions durable")
            }
            Ok(Err(e)) => log::error!("shard {index}: stopped by the actix system; final snapshot failed: {e}"),
            Err(_) => log::error!("shard {index}: stopped by the actix system; the snapshot writer went away"),
        }
    }
}
