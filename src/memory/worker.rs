//! The shard worker actor: the host of one [`Shard`]. Typed messages in, one shard call each,
//! replies out; plus the timers (sweep, snapshot schedule) and the lifecycle (reload after a
//! restart, final snapshot on stop). The session logic itself is in [`Shard`].

use std::sync::Arc;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message, MessageResult};
use tokio::sync::oneshot;

use super::Shared;
use super::shard::Shard;
use super::snapshot_run::{Run, SNAPSHOT_BATCH, Schedule, SnapshotResult};
use crate::error::{Result, Unavailable};
use crate::message::*;
use crate::snapshot::{Record, Written};

/// Sessions examined per periodic sweep step: bounds how long one step holds the worker.
const SWEEP_BATCH: usize = 4096;
/// Messages queued in a worker's mailbox before senders wait.
const MAILBOX_CAPACITY: usize = 1024;

/// Owns the sessions of one shard (see [`Shard`]), one message at a time.
pub(crate) struct Worker {
    shard: Shard,
    schedule: Schedule,
    /// Times the supervisor restarted this shard's worker.
    restarts: u64,
    /// Restarted and waiting for its snapshot to be read back: operations answer
    /// `ShardRestarting`.
    loading: bool,
    /// The final snapshot was handed to the writer (`FinalSnapshot`): nothing left to save.
    finished: bool,
}

impl Worker {
    /// A worker owning `sessions` (loaded at start-up). A restarted worker (`reload`) reads
    /// its shard's last snapshot back before it serves.
    pub fn new(index: usize, shared: Arc<Shared>, restarts: u64, sessions: Vec<Record>, reload: bool) -> Self {
        let loading = reload && shared.snapshots.is_some();
        Self {
            shard: Shard::new(index, shared, sessions),
            schedule: Schedule::default(),
            restarts,
            loading,
            finished: false,
        }
    }

    /// Runs one operation on the shard, unless it is still reloading.
    fn apply<R>(&mut self, op: impl FnOnce(&mut Shard) -> Result<R>) -> Result<R> {
        if self.loading {
            return Err(Unavailable::ShardRestarting { shard: self.shard.index() }.into());
        }
        self.shard.guarded(op)
    }

    fn persisting(&self) -> bool {
        self.shard.shared().snapshots.is_some() && !self.loading
    }

    /// Begins a snapshot when the shard changed since the last durable one and none is under
    /// way; answers the waiters at once when there is nothing to write.
    fn start_snapshot(&mut self, ctx: &mut Context<Self>) {
        if !self.persisting() {
            return;
        }
        if !self.schedule.dirty(&self.shard) {
            self.schedule.answer(Ok(None));
        } else if self.schedule.may_begin(&self.shard) {
            self.shard.begin_run();
            ctx.notify(SnapshotStep);
        }
    }

    /// Hands a finished run to the writer; `done` hears when it is durable.
    fn hand_over(&self, run: Run, done: crate::snapshot::WriteDone) -> bool {
        let shared = self.shard.shared();
        shared.snapshots.as_ref().is_some_and(|s| run.hand_over(self.shard.index(), s, done))
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Senders wait (backpressure) once this many messages are queued.
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let shared = self.shard.shared().clone();
        ctx.run_interval(shared.config.session.sweep_interval, |worker, _| {
            let dropped = worker.shard.sweep_step(SWEEP_BATCH);
            if dropped > 0 {
                log::debug!("shard {}: {dropped} expired sessions dropped", worker.shard.index());
            }
        });
        let Some(snapshots) = &shared.snapshots else { return };
        ctx.run_interval(shared.config.storage.snapshot_interval, |worker, ctx| worker.start_snapshot(ctx));
        if self.loading {
            let addr = ctx.address();
            if !snapshots.load(self.shard.index(), Box::new(move |records| addr.do_send(Reloaded(records)))) {
                log::error!("shard {}: snapshot writer is gone; the restarted shard starts empty", self.shard.index());
                self.loading = false;
            }
        }
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
        if !self.shard.running() {
            return;
        }
        let Some(run) = self.shard.run_step(SNAPSHOT_BATCH) else {
            ctx.notify(SnapshotStep);
            return;
        };
        let (at, entries) = (run.at(), run.entries());
        let addr = ctx.address();
        let done = Box::new(move |result: std::io::Result<Written>| {
            addr.do_send(SnapshotWritten { at, result: result.map(|_| Some(entries)).map_err(|e| e.to_string()) });
        });
        if self.hand_over(run, done) {
            self.schedule.handed_over();
        } else {
            self.schedule.answer(Err("the snapshot writer thread is gone".into()));
        }
    }
}

/// The writer thread finished a snapshot of this shard.
#[derive(Message)]
#[rtype(result = "()")]
struct SnapshotWritten {
    at: u64,
    result: SnapshotResult,
}

impl Handler<SnapshotWritten> for Worker {
    type Result = ();

    fn handle(&mut self, msg: SnapshotWritten, ctx: &mut Context<Self>) {
        let ok = msg.result.is_ok();
        // The writer logged a failure; the shard stays dirty, so the next tick retries.
        let result = msg.result.map_err(|e| format!("shard {}: {e}", self.shard.index()));
        self.schedule.written(msg.at, result);
        // Waiters that need changes made during this snapshot get another one.
        if ok && self.schedule.has_waiters() {
            self.start_snapshot(ctx);
        }
    }
}

/// Snapshot now if anything changed; the answer arrives once the snapshot is durable.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<SnapshotResult>")]
pub(crate) struct SnapshotNow;

impl Handler<SnapshotNow> for Worker {
    type Result = MessageResult<SnapshotNow>;

    fn handle(&mut self, _: SnapshotNow, ctx: &mut Context<Self>) -> Self::Result {
        if self.shard.shared().snapshots.is_none() || !self.schedule.dirty(&self.shard) {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Ok(None));
            return MessageResult(rx);
        }
        let rx = self.schedule.wait(self.shard.changes());
        self.start_snapshot(ctx);
        MessageResult(rx)
    }
}

/// Graceful stop: write everything in this one turn and stop, so no operation is
/// acknowledged after the final snapshot. Answers `None` when there was nothing to write.
#[derive(Message)]
#[rtype(result = "Option<oneshot::Receiver<SnapshotResult>>")]
pub(crate) struct FinalSnapshot;

impl Handler<FinalSnapshot> for Worker {
    type Result = Option<oneshot::Receiver<SnapshotResult>>;

    fn handle(&mut self, _: FinalSnapshot, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        self.finished = true;
        self.shard.abandon_run();
        if !self.persisting() || !self.schedule.dirty(&self.shard) {
            return None;
        }
        let run = self.shard.encode_all();
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

/// The sessions of this shard's last snapshot, read back after a restart.
#[derive(Message)]
#[rtype(result = "()")]
struct Reloaded(Vec<Record>);

impl Handler<Reloaded> for Worker {
    type Result = ();

    fn handle(&mut self, msg: Reloaded, _: &mut Context<Self>) {
        let n = msg.0.len();
        self.shard.install(msg.0);
        self.loading = false;
        log::info!("shard {}: restarted worker reloaded {n} sessions from its last snapshot", self.shard.index());
    }
}

/// Each typed message is one call of the shard, guarded (see [`Worker::apply`]).
macro_rules! host {
    ($($msg:ident => |$s:ident, $m:ident| $call:expr;)*) => {$(
        impl Handler<$msg> for Worker {
            type Result = <$msg as Message>::Result;

            fn handle(&mut self, $m: $msg, _: &mut Context<Self>) -> Self::Result {
                self.apply(move |$s| $call)
            }
        }
    )*};
}

host! {
    Create => |s, m| s.create(m.id);
    Get => |s, m| s.get(&m.id, &m.scope, &m.key);
    Set => |s, m| s.set(&m.id, &m.scope, &m.key, &m.value);
    Remove => |s, m| s.remove(&m.id, &m.scope, &m.key);
    Clear => |s, m| s.clear(&m.id, m.scope.as_deref());
    Keys => |s, m| s.keys(&m.id, &m.scope);
    Update => |s, m| s.update(&m.id, &m.scope, &m.key, m.f);
    Login => |s, m| s.login(&m.id, m.userid);
    Logout => |s, m| s.logout(&m.id);
    SetPersistent => |s, m| s.set_persistent(&m.id, m.persistent);
    Info => |s, m| s.info_of(&m.id, false);
    Touch => |s, m| s.info_of(&m.id, true);
    Destroy => |s, m| s.destroy(&m.id);
    LogoutUser => |s, m| Ok(s.logout_user(m.userid));
    SessionsOf => |s, m| Ok(s.sessions_of(m.userid));
    Sweep => |s, _m| Ok(s.sweep_all());
}

impl Handler<Stats> for Worker {
    type Result = Result<EngineStats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        let stats = ShardStats { restarts: self.restarts, ..self.shard.stats() };
        Ok(EngineStats { sessions: stats.sessions, shards: vec![stats] })
    }
}

/// The actix system stopped (actix-server does that on SIGTERM/SIGINT) before the engine's
/// `shutdown()` could ask for a final snapshot: the worker is being dropped with its arbiter
/// thread, so it writes the final snapshot here and waits until it is durable. `shutdown()`
/// joins the arbiter threads, so it still returns only after these writes.
impl Drop for Worker {
    fn drop(&mut self) {
        if self.finished || !self.persisting() || !self.schedule.dirty(&self.shard) {
            return;
        }
        let index = self.shard.index();
        let run = self.shard.encode_all();
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
