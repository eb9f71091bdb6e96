//! Where a shard lives, and how it moves.
//!
//! A shard's state ([`Core`]) is owned by one worker actor, its host, on one thread. The
//! host's thread also lists the core in a thread-local table ([`local`]), so an operation
//! issued on that thread (a request served by the actix-web worker hosting the session's
//! shard) runs on the core directly: no message, no wake-up, no lock another thread takes.
//! Operations from other threads go through the host's mailbox, as before; the host is still
//! the only one to run the shard's timers (sweep, snapshots) and to answer remote mail.
//!
//! With [`Placement::ServerThreads`](super::Placement) every shard starts on a dedicated
//! thread of its own (its *home*: snapshots load before any server thread exists); each
//! actix-web worker thread that builds a [`SessionMiddleware`](crate::SessionMiddleware)
//! service then [adopts](adopt) one shard that no server thread hosts yet. When that thread
//! stops (SIGTERM, or a worker fault that actix-server answers with a new thread), the host
//! actor is dropped and hands its core back to the shard's home thread on the spot (a move
//! in memory, no I/O), so requests still draining elsewhere and the shutdown snapshot find
//! every acknowledged write. A shard is hosted by one actor at any moment: the router points
//! at it, and the previous host, if any, has given its core away.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use actix::{Actor, Addr, AsyncContext, Context};
use tokio::sync::oneshot;

use super::Hosting;
use super::ops::OnShard;
use super::outbox::{NO_NAMES, Names};
use super::shard::Shard;
use super::snapshot_run::{Run, Schedule, SnapshotResult};
use super::worker::{EraseNow, HandOver, Worker};
use crate::error::{Result, Unavailable};
use crate::snapshot::Recovered;
use crate::wal::append::{Committed, ShardLog};

/// A shard and everything that moves with it when its host changes: its log, its snapshot
/// schedule. The only writer to the shard's log and the one publisher of its events: what an
/// operation changed is delivered from the shard's outbox as the operation ends.
pub(crate) struct Core {
    pub shard: Shard,
    /// The shard's write-ahead log: every change to persisted state is recorded here before
    /// the operation answers.
    pub log: ShardLog,
    pub schedule: Schedule,
    /// Restarted and reading its last snapshot back: operations answer `ShardRestarting`.
    pub loading: bool,
    /// Times the supervisor restarted this shard's worker.
    pub restarts: u64,
    /// Where the outbox goes: the event hub, the metrics (and the log's files).
    hosting: Arc<Hosting>,
}

impl Core {
    /// Shard `index` of the engine `hosting` describes, holding what start-up recovered (its
    /// snapshot and the log records after it); its log goes on from there.
    pub fn new(index: usize, hosting: Arc<Hosting>, recovered: Recovered) -> Self {
        let mut core = Self { shard: Shard::new(index, hosting.env.clone()), ..Self::vacant(index, hosting) };
        core.resume(recovered);
        core
    }

    /// Shard `index` restarted: empty, its live count reset, and loading until a reload brings
    /// its sessions and log ([`resume`](Self::resume)).
    pub fn reloading(index: usize, hosting: Arc<Hosting>) -> Self {
        Self { shard: Shard::new(index, hosting.env.clone()), loading: true, ..Self::vacant(index, hosting) }
    }

    /// An empty stand-in for shard `index` (see [`Shard::vacant`]), without a log.
    pub fn vacant(index: usize, hosting: Arc<Hosting>) -> Self {
        Self {
            shard: Shard::vacant(index, hosting.env.clone()),
            log: ShardLog::disabled(index, 0),
            schedule: Schedule::default(),
            loading: false,
            restarts: 0,
            hosting,
        }
    }

    /// Installs recovered sessions and opens the log after them. Sessions that came from the
    /// log are in no snapshot yet: the shard is dirty until one holds them.
    pub fn resume(&mut self, recovered: Recovered) {
        self.shard.install(recovered.records);
        let index = self.shard.index();
        self.log = ShardLog::open(self.hosting.wal.clone(), index, recovered.next_lsn);
        self.shard.outbox.set_logging(self.log.enabled());
        if recovered.replayed > 0 {
            self.shard.force_dirty();
        }
        self.settle(NO_NAMES);
    }

    /// Runs one operation on the shard (guarded), unless it is still reloading, and delivers
    /// what it changed: its log records are written before it answers, its events published.
    /// `local`: the caller is on the host's thread and came without a message (counted for
    /// locality). With `storage.log = "always"`, the answer comes with what the reply must
    /// wait for (the records' fsync).
    pub fn apply<M: OnShard>(&mut self, local: bool, op: &mut M) -> (Result<M::Reply>, Option<Committed>) {
        if self.loading {
            return (Err(Unavailable::ShardRestarting { shard: self.shard.index() }.into()), None);
        }
        if local {
            self.shard.count_local();
        }
        if self.log.always() {
            self.shard.outbox.set_refusing(self.log.refusing());
            self.shard.outbox.take_refused();
        }
        let result = self.shard.guarded(|s| op.apply(s));
        if self.log.always() && self.shard.outbox.take_refused() {
            // The `"always"` log cannot take a change now: counted in the disk's outage.
            self.log.refused(1);
        }
        // Also after a panic: what the operation changed before it is changed.
        self.settle(op.names());
        match self.log.commit() {
            Ok(committed) => (result, committed),
            // Not durable, so not acknowledged (the change stays in memory).
            Err(e) => (result.and(Err(e)), None),
        }
    }

    /// Runs an operation that only reads counters (`Stats`): not an operation of the shard,
    /// answered even while it reloads.
    pub fn read<R>(&mut self, op: impl FnOnce(&mut Shard) -> Result<R>) -> Result<R> {
        self.shard.stats.log_records = self.log.records;
        self.shard.stats.log_bytes = self.log.bytes;
        let result = op(&mut self.shard);
        self.settle(NO_NAMES);
        result
    }

    /// A step of the periodic sweep ([`Shard::sweep_step`]); how many sessions expired.
    pub fn sweep_step(&mut self, budget: usize) -> usize {
        let dropped = self.shard.sweep_step(budget);
        self.settle(NO_NAMES);
        dropped
    }

    /// Delivers what the shard changed since the last delivery, its values under `names`
    /// (see [`Outbox::deliver`](super::outbox::Outbox::deliver)).
    #[inline]
    fn settle(&mut self, names: Names<'_>) {
        if !self.shard.outbox.is_empty() {
            self.shard.outbox.deliver(names, &self.shard.sessions, &mut self.log, &self.hosting);
        }
    }

    /// Begins a snapshot run over the sessions live now (nothing is encoded yet). The log's
    /// records from here on go to a new segment, so the older ones can go once it is durable.
    pub fn begin_run(&mut self) {
        let log_from = self.log.rotate();
        let no = self.schedule.next_run();
        let erase = self.schedule.begin_erasure();
        let sealer = self.shard.env.sealer.sealing();
        self.shard.run = Some(
            Run::new(self.shard.index(), no, self.shard.changes(), log_from)
                .for_erasure(erase)
                .sealed_by(sealer, self.shard.env.shards),
        );
    }

    /// An erasure wants this shard rewritten (see `snapshot/erase.rs`): a run being encoded is
    /// dropped (it may hold sessions the erasure ended) and the shard counts as changed; the
    /// answer comes once a run begun after now, written as an erasure's, is durable.
    pub fn want_erasure(&mut self) -> oneshot::Receiver<SnapshotResult> {
        let rx = self.schedule.wait_erasure();
        self.abandon_run();
        self.shard.force_dirty();
        rx
    }

    /// Whether a run is under way.
    pub fn running(&self) -> bool {
        self.shard.run.is_some()
    }

    /// Drops the run under way, if any (the erasures it would have answered wait for the next).
    pub fn abandon_run(&mut self) {
        if self.shard.run.take().is_some() {
            self.schedule.run_dropped();
        }
    }

    /// Encodes the next `budget` sessions of the run under way; the finished run once the
    /// walk reached the end (`None` while it goes on, or when no run is under way).
    pub fn run_step(&mut self, budget: usize) -> Option<Run> {
        let shard = &mut self.shard;
        let done = shard.run.as_mut()?.step(&mut shard.sessions, budget, &shard.env);
        if done { shard.run.take() } else { None }
    }

    /// A whole run in one go (a final snapshot), replacing any run under way.
    pub fn encode_all(&mut self) -> Run {
        self.begin_run();
        loop {
            if let Some(run) = self.run_step(usize::MAX) {
                return run;
            }
        }
    }

    /// Takes this core away, leaving an empty one in its place (a host that moved). What its
    /// operations logged is written first, here (the flush scheduled here would find nothing).
    pub fn take(&mut self) -> Core {
        self.log.flush();
        let vacant = Core { restarts: self.restarts, ..Core::vacant(self.shard.index(), self.hosting.clone()) };
        std::mem::replace(self, vacant)
    }
}

/// The answer to an erasure's rewrite ([`EraseNow`]) reaching a host that cannot make it:
/// nothing to rewrite without persistence; after a move (the message was on its way), the new
/// host's answer; else the engine is stopping.
pub(crate) fn erasure_elsewhere(hosting: &Hosting, shard: usize, moved: bool) -> oneshot::Receiver<SnapshotResult> {
    let (tx, rx) = oneshot::channel();
    let gone = move || Err(format!("shard {shard}: its host stopped before the erasure's rewrite"));
    if hosting.snapshots.is_none() {
        let _ = tx.send(Ok(None));
    } else if moved {
        let to = hosting.router.get(shard);
        actix::spawn(async move {
            let answer = match to.send(EraseNow).await {
                Ok(durable) => durable.await.unwrap_or_else(|_| gone()),
                Err(_) => gone(),
            };
            let _ = tx.send(answer);
        });
    } else {
        let _ = tx.send(gone());
    }
    rx
}

/// Schedules the write of `core`'s log batch on this thread, after the tasks ready now (the
/// requests being served in this turn add their records to the same batch: one `write`).
pub(crate) fn flush_soon(core: &Rc<RefCell<Core>>) {
    let core = core.clone();
    actix::spawn(async move {
        match core.try_borrow_mut() {
            Ok(mut core) => core.log.flush(),
            // Only if an operation is under way on this thread right now: try again after it.
            Err(_) => flush_soon(&core),
        }
    });
}

/// The cores hosted on this thread, by engine and shard.
struct Hosted {
    engine: u64,
    shard: usize,
    core: Rc<RefCell<Core>>,
}

thread_local! {
    static HOSTED: RefCell<Vec<Hosted>> = const { RefCell::new(Vec::new()) };
}

/// Lists `core` as hosted on this thread.
pub(crate) fn register(engine: u64, shard: usize, core: &Rc<RefCell<Core>>) {
    HOSTED.with_borrow_mut(|h| {
        h.retain(|x| (x.engine, x.shard) != (engine, shard));
        h.push(Hosted { engine, shard, core: core.clone() });
    });
}

/// Takes shard `shard` of `engine` off this thread's list. Safe while the thread ends.
pub(crate) fn unregister(engine: u64, shard: usize) {
    let _ = HOSTED.try_with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            h.retain(|x| (x.engine, x.shard) != (engine, shard));
        }
    });
}

/// The core of shard `shard` of `engine`, when this thread hosts it.
pub(crate) fn local(engine: u64, shard: usize) -> Option<Rc<RefCell<Core>>> {
    HOSTED.with_borrow(|h| h.iter().find(|x| x.engine == engine && x.shard == shard).map(|x| x.core.clone()))
}

/// A shard of `engine` this thread hosts, where its new sessions are born. With several, the
/// first one adopted.
pub(crate) fn home_shard(engine: u64) -> Option<usize> {
    HOSTED.with_borrow(|h| h.iter().find(|x| x.engine == engine).map(|x| x.shard))
}

/// Hosts one shard of the engine `hosting` describes on this thread, which must be running an
/// actix arbiter (an actix-web worker thread is one): the first shard no server thread hosts
/// yet moves here from its home thread. Its host there finishes what was queued for it, hands
/// the core over, and forwards what still reaches it for a while; operations sent meanwhile
/// wait in the new host's mailbox. `None`: this thread hosts one already, every shard has a
/// server thread, or the thread runs no actix arbiter.
pub(crate) async fn adopt(hosting: &Arc<Hosting>) -> Option<usize> {
    if actix::Arbiter::try_current().is_none() {
        log::warn!("host_here() called on a thread without an actix arbiter: no shard is hosted here");
        return None;
    }
    let me = std::thread::current().id();
    let shard = {
        let mut hosts = hosting.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if hosts.contains(&Some(me)) {
            return None;
        }
        let Some(shard) = hosts.iter().position(Option::is_none) else {
            log::warn!(
                "this thread hosts no shard: all {} are hosted by other server threads, so its requests \
                 reach their sessions by message; set session.shards to at least the number of workers",
                hosts.len()
            );
            return None;
        };
        hosts[shard] = Some(me);
        shard
    };
    // The new host's address exists before the host does: from the router switch on, new
    // operations queue in its mailbox until the core arrives.
    let context = Context::<Worker>::new();
    let old = hosting.router.replace(shard, context.address());
    let (core, how) = match old.send(HandOver).await {
        Ok(Some(core)) => (core, "moved"),
        // The old host was gone (a restart under way): reload like a restarted worker.
        Ok(None) | Err(_) => {
            log::warn!("shard {shard}: its previous host was gone; the shard reloads its last snapshot here");
            (Worker::fresh_core(shard, hosting.clone(), Recovered::default(), true), "reloaded")
        }
    };
    log::debug!("shard {shard}: {how} to server thread {me:?}");
    let worker = Worker::with_core(core, hosting.clone(), true);
    // Listed now, not when the actor first runs: the caller's next operation is local.
    worker.register_here();
    context.run(worker);
    Some(shard)
}

/// A server thread's host is being dropped with its core: back to the shard's home thread, at
/// once (no I/O here), and the router follows. `Some(core)`: the home thread is gone too (the
/// actix system is stopping), so the caller must save the core itself.
pub(crate) fn send_home(hosting: &Arc<Hosting>, shard: usize, core: Core) -> Option<Core> {
    let Some(home) = hosting.homes.get().and_then(|h| h.get(shard)).cloned() else { return Some(core) };
    if !home.spawn(async {}) {
        return Some(core);
    }
    let moved = hosting.clone();
    let addr = Worker::start_in_arbiter(&home, move |_| Worker::with_core(core, moved, false));
    hosting.router.replace(shard, addr);
    let mut hosts = hosting.hosts.lock().unwrap_or_else(|e| e.into_inner());
    hosts[shard] = None;
    None
}

/// The host that replaced `gone` as `shard`'s, once the router has one: a stopping server
/// thread sends its shard home as its host is dropped, a moment after the mailbox closes, and
/// the supervisor restarts a crashed one. `None` after a second without one.
pub(crate) async fn next_host(hosting: &Hosting, shard: usize, gone: &Addr<Worker>) -> Option<Addr<Worker>> {
    for _ in 0..100 {
        let now = hosting.router.get(shard);
        if now != *gone && now.connected() {
            return Some(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    None
}

/// Sends `msg` to `shard`'s host, following the shard when it moves: when the host's mailbox
/// closed with the message unanswered (its server thread stopped, or it crashed), `again`
/// (told the address that failed) makes the message anew — `None` when it cannot be sent
/// again — and it goes to the shard's next host.
pub(crate) async fn send_following<M>(
    hosting: &Hosting,
    shard: usize,
    msg: M,
    mut again: impl FnMut(&Addr<Worker>) -> Option<M>,
) -> Result<M::Result, actix::MailboxError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    Worker: actix::Handler<M>,
{
    let (mut addr, mut msg) = (hosting.router.get(shard), msg);
    let _queued = hosting.metrics.queued(shard);
    loop {
        match addr.send(msg).await {
            Err(actix::MailboxError::Closed) => match again(&addr) {
                Some(next_msg) => match next_host(hosting, shard, &addr).await {
                    Some(next) => (addr, msg) = (next, next_msg),
                    None => return Err(actix::MailboxError::Closed),
                },
                None => return Err(actix::MailboxError::Closed),
            },
            answer => return answer,
        }
    }
}

/// [`send_following`] for an engine-wide message (cloneable, answered at once).
pub(crate) async fn ask_shard<M>(hosting: Arc<Hosting>, shard: usize, msg: M) -> Result<M::Result, actix::MailboxError>
where
    M: actix::Message + Clone + Send + 'static,
    M::Result: Send,
    Worker: actix::Handler<M>,
{
    send_following(&hosting, shard, msg.clone(), |_| Some(msg.clone())).await
}
