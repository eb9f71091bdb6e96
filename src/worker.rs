//! Shard worker actor: the only owner of its sessions' state. Every operation on a session
//! runs here, one message at a time, so concurrent requests never lose each other's writes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message};
use indexmap::IndexMap;
use tokio::sync::oneshot;

use crate::clock::{Clock, to_system_time};
use crate::config::{Config, LimitsConfig};
use crate::error::{Result, SessionError, Unavailable};
use crate::id::{Keyring, SessionId};
use crate::message::*;
use crate::snapshot::{Record, Snapshots, Written, format};
use crate::state::{Lifetimes, SessionState};

/// Sessions examined per periodic sweep step: bounds how long one step holds the worker.
const SWEEP_BATCH: usize = 4096;
/// Sessions encoded per snapshot step: one step holds the worker for well under a
/// millisecond (see BENCHMARKS.md), so operations keep flowing while a big shard is written.
const SNAPSHOT_BATCH: usize = 256;
/// Encoded bytes per chunk handed to the writer; chunks avoid re-growing one huge buffer.
const CHUNK_BYTES: usize = 1 << 20;
/// Messages queued in a worker's mailbox before senders wait.
const MAILBOX_CAPACITY: usize = 1024;

/// What every worker and the engine handle share.
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
    fn live_total(&self) -> usize {
        self.live.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

/// Session ids are CSPRNG output checked by a MAC before they reach a worker, so their
/// first eight bytes are already a uniform hash: no need to hash them again.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

type Random = [u8; 16];

struct Slot {
    id: SessionId,
    state: SessionState,
    /// Written at least once (value, login); a session never written is never persisted.
    written: bool,
    /// The snapshot run that last took this session (see [`Run`]); 0: none yet.
    mark: u64,
}

/// Where this shard's snapshots stand.
#[derive(Default)]
struct SnapState {
    /// Changes to persisted state so far (a counter, so a snapshot knows what it covers).
    changes: u64,
    /// `changes` as of the start of the last durable snapshot.
    persisted: u64,
    /// The snapshot being encoded, a batch per actor turn.
    run: Option<Run>,
    /// A finished snapshot is at the writer thread.
    writing: bool,
    /// `SnapshotNow` callers: the change count they need durable, and their answer.
    waiters: Vec<(u64, oneshot::Sender<SnapshotResult>)>,
}

/// A snapshot in progress: a walk over the shard's sessions by index, a batch per actor turn,
/// with operations running between batches. Each session it takes is marked with the run's
/// number, so it is taken once whatever moves: a session rotated during the walk carries its
/// mark to its new id (taken under the old id or the new one, never both, never neither), and
/// when a removal moves the last session into the part already walked, that session is taken
/// on the spot. Sessions created during the walk are taken if the walk reaches them. Starting
/// a run costs nothing, whatever the shard's size.
struct Run {
    /// This run's number (the marks it sets).
    no: u64,
    /// The next index to walk.
    pos: usize,
    chunks: Vec<Vec<u8>>,
    chunk: Vec<u8>,
    entries: u64,
    /// `changes` when the snapshot began: every change up to here is in it.
    at: u64,
    started: Instant,
    turns: u32,
    longest_turn: Duration,
}

/// Sessions written by one shard's snapshot (`None`: unchanged, nothing written), or why not.
pub(crate) type SnapshotResult = std::result::Result<Option<u64>, String>;

/// Owns the sessions of one shard.
pub struct Worker {
    shard: usize,
    shared: Arc<Shared>,
    sessions: IndexMap<Random, Slot, BuildHasherDefault<IdHasher>>,
    by_user: HashMap<u64, Vec<Random>>,
    sweep_cursor: usize,
    stats: ShardStats,
    snap: SnapState,
    /// The number of the last snapshot run begun.
    runs: u64,
    /// Restarted and waiting for its snapshot to be read back: operations answer `Unavailable`.
    loading: bool,
    /// The final snapshot was handed to the writer (`FinalSnapshot`): nothing left to save.
    finished: bool,
}

impl Worker {
    /// A worker owning `sessions` (loaded at start-up). A restarted worker (`reload`) reads
    /// its shard's last snapshot back before it serves.
    pub(crate) fn new(shard: usize, shared: Arc<Shared>, restarts: u64, sessions: Vec<Record>, reload: bool) -> Self {
        shared.live[shard].store(0, Ordering::Relaxed);
        let loading = reload && shared.snapshots.is_some();
        let mut worker = Self {
            shard,
            shared,
            sessions: IndexMap::default(),
            by_user: HashMap::new(),
            sweep_cursor: 0,
            stats: ShardStats { restarts, ..ShardStats::default() },
            snap: SnapState::default(),
            runs: 0,
            loading,
            finished: false,
        };
        worker.install(sessions);
        worker
    }

    /// Adds sessions read from a snapshot. They are already on disk, so nothing is dirty.
    fn install(&mut self, records: Vec<Record>) {
        self.sessions.reserve(records.len());
        for (id, state) in records {
            let random = *id.random();
            if let Some(old) = self.sessions.get(&random) {
                if old.state.last_access_ms >= state.last_access_ms {
                    continue;
                }
                let index = self.sessions.get_index_of(&random).expect("present");
                self.remove_index(index, false);
            }
            if state.userid != 0 {
                self.by_user.entry(state.userid).or_default().push(random);
            }
            self.sessions.insert(random, Slot { id, state, written: true, mark: 0 });
            self.shared.live[self.shard].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn now(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    fn info(&self, slot: &Slot) -> SessionInfo {
        let s = &slot.state;
        SessionInfo {
            id: slot.id,
            userid: s.userid,
            persistent: s.persistent,
            created: to_system_time(s.created_ms),
            last_access: to_system_time(s.last_access_ms),
            expires: to_system_time(s.expires_ms(&self.shared.lifetimes)),
        }
    }

    /// Runs one operation; a panic inside it becomes `Err(Panicked)` and the worker lives on.
    fn guarded<R>(&mut self, op: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        self.stats.operations += 1;
        if self.loading {
            return Err(Unavailable::ShardRestarting { shard: self.shard }.into());
        }
        match catch_unwind(AssertUnwindSafe(|| op(self))) {
            Ok(result) => result,
            Err(payload) => {
                self.stats.panics += 1;
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                log::error!("shard {}: operation panicked and was contained: {msg}", self.shard);
                Err(SessionError::Panicked(msg))
            }
        }
    }

    /// The live session `id`, its expiry slid to now when `touch`. An expired session is
    /// dropped on the spot; a rotated or destroyed one is simply absent.
    fn live(&mut self, id: &SessionId, touch: bool) -> Result<&mut Slot> {
        let now = self.now();
        let lifetimes = self.shared.lifetimes;
        let index = self.sessions.get_index_of(id.random()).ok_or(SessionError::SessionGone)?;
        if self.sessions[index].state.is_expired(&lifetimes, now) {
            self.remove_index(index, false);
            self.stats.expired += 1;
            return Err(SessionError::SessionGone);
        }
        let slot = &mut self.sessions[index];
        if touch {
            slot.state.last_access_ms = slot.state.last_access_ms.max(now);
            // The sliding expiry is persisted state too.
            if slot.written {
                self.snap.changes += 1;
            }
        }
        Ok(slot)
    }

    /// Marks the session written (so it is persisted from now on) and the shard changed.
    fn wrote(&mut self, id: &SessionId) {
        if let Some(slot) = self.sessions.get_mut(id.random()) {
            slot.written = true;
        }
        self.snap.changes += 1;
    }

    /// Removes a session; `ended` when it was destroyed (a change snapshots must record), not
    /// merely expired (a snapshot holding it drops it on load anyway).
    fn remove_index(&mut self, index: usize, ended: bool) -> Slot {
        let (random, slot) = self.swap_out(index);
        self.unindex_user(slot.state.userid, &random);
        self.shared.live[self.shard].fetch_sub(1, Ordering::Relaxed);
        if ended && slot.written {
            self.snap.changes += 1;
        }
        slot
    }

    /// Takes the session at `index` out of the map; the last one takes its place. A snapshot
    /// run that already walked past `index` takes the moved session now (see [`Run`]).
    fn swap_out(&mut self, index: usize) -> (Random, Slot) {
        let out = self.sessions.swap_remove_index(index).expect("index in range");
        if let Some(run) = self.snap.run.as_mut()
            && index < run.pos
            && let Some((_, moved)) = self.sessions.get_index_mut(index)
        {
            let now = self.shared.clock.now_ms();
            take(run, moved, self.shard, now, &self.shared.lifetimes);
        }
        out
    }

    fn unindex_user(&mut self, userid: u64, random: &Random) {
        if userid == 0 {
            return;
        }
        if let Some(list) = self.by_user.get_mut(&userid) {
            list.retain(|r| r != random);
            if list.is_empty() {
                self.by_user.remove(&userid);
            }
        }
    }

    /// Moves the session under a fresh id of this shard; the old id is dead at once.
    fn rotate(&mut self, id: &SessionId, new_userid: u64) -> Result<SessionInfo> {
        self.live(id, true)?;
        let index = self.sessions.get_index_of(id.random()).expect("checked live");
        // The slot keeps its snapshot mark under the new id (see `Run`).
        let (old_random, mut slot) = self.swap_out(index);
        self.unindex_user(slot.state.userid, &old_random);
        let new_id = self.shared.keyring.generate_in_shard(self.shard, self.shared.shards);
        slot.id = new_id;
        // Remember-me survives a re-login of the same user only: a different user (or a
        // logout) must not inherit it.
        slot.state.persistent &= new_userid != 0 && new_userid == slot.state.userid;
        slot.state.userid = new_userid;
        if slot.written {
            self.snap.changes += 1;
        }
        if new_userid != 0 {
            self.by_user.entry(new_userid).or_default().push(*new_id.random());
        }
        let info = self.info(&slot);
        self.sessions.insert(*new_id.random(), slot);
        Ok(info)
    }

    /// Drops up to `budget` expired sessions from the cursor on; how many were dropped.
    fn sweep_step(&mut self, budget: usize) -> usize {
        let now = self.now();
        let lifetimes = self.shared.lifetimes;
        let mut dropped = 0;
        let mut examined = 0;
        if self.sweep_cursor >= self.sessions.len() {
            self.sweep_cursor = 0;
        }
        while examined < budget && self.sweep_cursor < self.sessions.len() {
            examined += 1;
            if self.sessions[self.sweep_cursor].state.is_expired(&lifetimes, now) {
                // swap_remove brings the last entry here: examine this index again.
                self.remove_index(self.sweep_cursor, false);
                dropped += 1;
            } else {
                self.sweep_cursor += 1;
            }
        }
        self.stats.expired += dropped as u64;
        dropped
    }

    /// Begins a snapshot when the shard changed since the last durable one and none is
    /// under way; answers the waiters at once when there is nothing to write.
    fn start_snapshot(&mut self, ctx: &mut Context<Self>) {
        if self.shared.snapshots.is_none() || self.loading || self.snap.run.is_some() || self.snap.writing {
            return;
        }
        if self.snap.changes == self.snap.persisted {
            self.answer_waiters(Ok(None));
            return;
        }
        let run = self.new_run();
        self.snap.run = Some(run);
        ctx.notify(SnapshotStep);
    }

    /// A snapshot of the sessions live now, nothing encoded yet.
    fn new_run(&mut self) -> Run {
        let started = Instant::now();
        self.runs += 1;
        Run {
            no: self.runs,
            longest_turn: Duration::ZERO,
            pos: 0,
            chunks: Vec::new(),
            chunk: Vec::new(),
            entries: 0,
            at: self.snap.changes,
            started,
            turns: 1,
        }
    }

    /// Walks up to `budget` sessions of `run`; whether it reached the end.
    fn encode_step(&mut self, run: &mut Run, budget: usize) -> bool {
        let now = self.now();
        let lifetimes = self.shared.lifetimes;
        let end = self.sessions.len().min(run.pos.saturating_add(budget));
        for index in run.pos..end {
            let (_, slot) = self.sessions.get_index_mut(index).expect("index in range");
            take(run, slot, self.shard, now, &lifetimes);
        }
        run.pos = end;
        end == self.sessions.len()
    }

    /// Hands a finished snapshot to the writer thread; `done` hears when it is durable.
    /// False when the writer thread is gone.
    fn send_snapshot(&self, mut run: Run, done: crate::snapshot::WriteDone) -> bool {
        if !run.chunk.is_empty() {
            run.chunks.push(run.chunk);
        }
        log::debug!(
            "shard {}: snapshot of {} sessions encoded in {} actor turns over {:?} (longest turn {:?})",
            self.shard,
            run.entries,
            run.turns,
            run.started.elapsed(),
            run.longest_turn
        );
        match &self.shared.snapshots {
            Some(snapshots) => snapshots.write(self.shard, run.entries, run.chunks, done),
            None => false,
        }
    }

    /// Answers the waiters the last durable snapshot satisfies; every waiter on an error.
    fn answer_waiters(&mut self, result: SnapshotResult) {
        let persisted = self.snap.persisted;
        let mut i = 0;
        while i < self.snap.waiters.len() {
            if result.is_err() || self.snap.waiters[i].0 <= persisted {
                let (_, tx) = self.snap.waiters.swap_remove(i);
                let _ = tx.send(result.clone());
            } else {
                i += 1;
            }
        }
    }
}

/// Adds `slot` to `run` unless the run took it already (its mark); an expired session, or one
/// never written, is marked but left out.
fn take(run: &mut Run, slot: &mut Slot, shard: usize, now: u64, lifetimes: &Lifetimes) {
    if slot.mark == run.no {
        return;
    }
    slot.mark = run.no;
    if !slot.written || slot.state.is_expired(lifetimes, now) {
        return;
    }
    match format::encode_record(&mut run.chunk, &slot.id, &slot.state) {
        Ok(()) => run.entries += 1,
        Err(e) => log::error!("shard {shard}: session left out of the snapshot, cannot encode: {e}"),
    }
    if run.chunk.len() >= CHUNK_BYTES {
        run.chunks.push(std::mem::replace(&mut run.chunk, Vec::with_capacity(CHUNK_BYTES + 4096)));
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Senders wait (backpressure) once this many messages are queued.
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let interval = self.shared.config.session.sweep_interval;
        ctx.run_interval(interval, |worker, _| {
            let dropped = worker.sweep_step(SWEEP_BATCH);
            if dropped > 0 {
                log::debug!("shard {}: {dropped} expired sessions dropped", worker.shard);
            }
        });
        if let Some(snapshots) = &self.shared.snapshots {
            ctx.run_interval(self.shared.config.storage.snapshot_interval, |worker, ctx| worker.start_snapshot(ctx));
            if self.loading {
                let addr = ctx.address();
                if !snapshots.load(self.shard, Box::new(move |records| addr.do_send(Reloaded(records)))) {
                    log::error!("shard {}: snapshot writer is gone; the restarted shard starts empty", self.shard);
                    self.loading = false;
                }
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
        let Some(mut run) = self.snap.run.take() else { return };
        let turn = Instant::now();
        let finished = self.encode_step(&mut run, SNAPSHOT_BATCH);
        run.turns += 1;
        run.longest_turn = run.longest_turn.max(turn.elapsed());
        if !finished {
            self.snap.run = Some(run);
            ctx.notify(SnapshotStep);
            return;
        }
        let (at, entries) = (run.at, run.entries);
        let addr = ctx.address();
        let done = Box::new(move |result: std::io::Result<Written>| {
            addr.do_send(SnapshotWritten { at, result: result.map(|_| entries).map_err(|e| e.to_string()) });
        });
        if self.send_snapshot(run, done) {
            self.snap.writing = true;
        } else {
            self.answer_waiters(Err("the snapshot writer thread is gone".into()));
        }
    }
}

/// The writer thread finished a snapshot of this shard.
#[derive(Message)]
#[rtype(result = "()")]
struct SnapshotWritten {
    at: u64,
    result: std::result::Result<u64, String>,
}

impl Handler<SnapshotWritten> for Worker {
    type Result = ();

    fn handle(&mut self, msg: SnapshotWritten, ctx: &mut Context<Self>) {
        self.snap.writing = false;
        match msg.result {
            Ok(entries) => {
                self.snap.persisted = self.snap.persisted.max(msg.at);
                self.answer_waiters(Ok(Some(entries)));
                // Waiters that need changes made during this snapshot get another one.
                if !self.snap.waiters.is_empty() {
                    self.start_snapshot(ctx);
                }
            }
            // The writer logged the failure; the shard stays dirty, so the next tick retries.
            Err(e) => self.answer_waiters(Err(format!("shard {}: {e}", self.shard))),
        }
    }
}

/// Snapshot now if anything changed; the answer arrives once the snapshot is durable.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<SnapshotResult>")]
pub(crate) struct SnapshotNow;

impl Handler<SnapshotNow> for Worker {
    type Result = actix::MessageResult<SnapshotNow>;

    fn handle(&mut self, _: SnapshotNow, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.shared.snapshots.is_none() || self.snap.changes == self.snap.persisted {
            let _ = tx.send(Ok(None));
        } else {
            self.snap.waiters.push((self.snap.changes, tx));
            self.start_snapshot(ctx);
        }
        actix::MessageResult(rx)
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
        self.snap.run = None;
        if self.shared.snapshots.is_none() || self.loading || self.snap.changes == self.snap.persisted {
            return None;
        }
        let mut run = self.new_run();
        self.encode_step(&mut run, usize::MAX);
        run.longest_turn = run.started.elapsed();
        let entries = run.entries;
        let (tx, rx) = oneshot::channel();
        let done = Box::new(move |result: std::io::Result<Written>| {
            let _ = tx.send(result.map(|_| Some(entries)).map_err(|e| e.to_string()));
        });
        // If the writer is gone the job, and the sender in it, are dropped: the receiver says so.
        self.send_snapshot(run, done);
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
        self.install(msg.0);
        self.loading = false;
        log::info!("shard {}: restarted worker reloaded {n} sessions from its last snapshot", self.shard);
    }
}

impl Handler<Create> for Worker {
    type Result = Result<SessionInfo>;

    fn handle(&mut self, msg: Create, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            if w.sessions.contains_key(msg.id.random()) {
                return Err(SessionError::InvalidId);
            }
            let limit = w.shared.limits.max_sessions;
            if w.shared.live_total() >= limit {
                // Expired sessions not swept yet still count: reclaim this shard's before
                // refusing anyone.
                w.sweep_cursor = 0;
                w.sweep_step(usize::MAX);
                if w.shared.live_total() >= limit {
                    return Err(SessionError::Full { limit });
                }
            }
            w.shared.live[w.shard].fetch_add(1, Ordering::Relaxed);
            let slot = Slot { id: msg.id, state: SessionState::new(w.now()), written: false, mark: 0 };
            let info = w.info(&slot);
            w.sessions.insert(*msg.id.random(), slot);
            w.stats.created += 1;
            Ok(info)
        })
    }
}

impl Handler<Get> for Worker {
    type Result = Result<Option<Vec<u8>>>;

    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| Ok(w.live(&msg.id, true)?.state.get(&msg.scope, &msg.key).map(<[u8]>::to_vec)))
    }
}

impl Handler<Set> for Worker {
    type Result = Result<()>;

    fn handle(&mut self, msg: Set, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            let limits = w.shared.limits.clone();
            w.live(&msg.id, true)?.state.set(&msg.scope, &msg.key, &msg.value, &limits)?;
            w.wrote(&msg.id);
            Ok(())
        })
    }
}

impl Handler<Remove> for Worker {
    type Result = Result<bool>;

    fn handle(&mut self, msg: Remove, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| Ok(w.live(&msg.id, true)?.state.remove(&msg.scope, &msg.key)))
    }
}

impl Handler<Clear> for Worker {
    type Result = Result<()>;

    fn handle(&mut self, msg: Clear, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            w.live(&msg.id, true)?.state.clear(msg.scope.as_deref());
            Ok(())
        })
    }
}

impl Handler<Keys> for Worker {
    type Result = Result<Vec<String>>;

    fn handle(&mut self, msg: Keys, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| Ok(w.live(&msg.id, true)?.state.keys(&msg.scope)))
    }
}

impl Handler<Update> for Worker {
    type Result = Result<Option<Vec<u8>>>;

    fn handle(&mut self, msg: Update, _: &mut Context<Self>) -> Self::Result {
        let Update { id, scope, key, f } = msg;
        self.guarded(move |w| {
            let limits = w.shared.limits.clone();
            let slot = w.live(&id, true)?;
            // The step sees the current value and returns a new one: on error or panic the
            // session is untouched.
            let new = f(slot.state.get(&scope, &key))?;
            match &new {
                Some(value) => slot.state.set(&scope, &key, value, &limits)?,
                None => {
                    slot.state.remove(&scope, &key);
                }
            }
            w.wrote(&id);
            Ok(new)
        })
    }
}

impl Handler<Login> for Worker {
    type Result = Result<SessionInfo>;

    fn handle(&mut self, msg: Login, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            if msg.userid == 0 {
                return Err(SessionError::InvalidUserId);
            }
            let info = w.rotate(&msg.id, msg.userid)?;
            w.wrote(&info.id);
            Ok(info)
        })
    }
}

impl Handler<Logout> for Worker {
    type Result = Result<SessionInfo>;

    fn handle(&mut self, msg: Logout, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| w.rotate(&msg.id, 0))
    }
}

impl Handler<SetPersistent> for Worker {
    type Result = Result<SessionInfo>;

    fn handle(&mut self, msg: SetPersistent, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            let slot = w.live(&msg.id, true)?;
            if msg.persistent && slot.state.userid == 0 {
                return Err(SessionError::NotLoggedIn);
            }
            slot.state.persistent = msg.persistent;
            let slot = w.sessions.get(msg.id.random()).expect("live");
            Ok(w.info(slot))
        })
    }
}

impl Handler<Info> for Worker {
    type Result = Result<SessionInfo>;

    fn handle(&mut self, msg: Info, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            w.live(&msg.id, false)?;
            let slot = w.sessions.get(msg.id.random()).expect("live");
            Ok(w.info(slot))
        })
    }
}

impl Handler<Touch> for Worker {
    type Result = Result<SessionInfo>;

    fn handle(&mut self, msg: Touch, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            w.live(&msg.id, true)?;
            let slot = w.sessions.get(msg.id.random()).expect("live");
            Ok(w.info(slot))
        })
    }
}

impl Handler<Destroy> for Worker {
    type Result = Result<bool>;

    fn handle(&mut self, msg: Destroy, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| match w.sessions.get_index_of(msg.id.random()) {
            // Expired but not swept yet: it no longer exists, as every other operation says.
            Some(index) if w.sessions[index].state.is_expired(&w.shared.lifetimes, w.now()) => {
                w.remove_index(index, false);
                w.stats.expired += 1;
                Ok(false)
            }
            Some(index) => {
                w.remove_index(index, true);
                w.stats.destroyed += 1;
                Ok(true)
            }
            None => Ok(false),
        })
    }
}

impl Handler<LogoutUser> for Worker {
    type Result = Result<usize>;

    fn handle(&mut self, msg: LogoutUser, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            let randoms = w.by_user.get(&msg.userid).cloned().unwrap_or_default();
            let mut ended = 0;
            for random in &randoms {
                if let Some(index) = w.sessions.get_index_of(random) {
                    w.remove_index(index, true);
                    w.stats.destroyed += 1;
                    ended += 1;
                }
            }
            Ok(ended)
        })
    }
}

impl Handler<SessionsOf> for Worker {
    type Result = Result<Vec<SessionInfo>>;

    fn handle(&mut self, msg: SessionsOf, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            let now = w.now();
            let lifetimes = w.shared.lifetimes;
            let randoms = w.by_user.get(&msg.userid).cloned().unwrap_or_default();
            Ok(randoms
                .iter()
                .filter_map(|r| w.sessions.get(r))
                .filter(|slot| !slot.state.is_expired(&lifetimes, now))
                .map(|slot| w.info(slot))
                .collect())
        })
    }
}

impl Handler<Stats> for Worker {
    type Result = Result<EngineStats>;

    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> Self::Result {
        let stats = ShardStats { sessions: self.sessions.len(), ..self.stats };
        Ok(EngineStats { sessions: stats.sessions, shards: vec![stats] })
    }
}

impl Handler<Sweep> for Worker {
    type Result = Result<usize>;

    fn handle(&mut self, _: Sweep, _: &mut Context<Self>) -> Self::Result {
        self.guarded(|w| {
            w.sweep_cursor = 0;
            Ok(w.sweep_step(usize::MAX))
        })
    }
}

/// The actix system stopped (actix-server does that on SIGTERM/SIGINT) before the engine's
/// `shutdown()` could ask for a final snapshot: the worker is being dropped with its arbiter
/// thread, so it writes the final snapshot here and waits until it is durable. `shutdown()`
/// joins the arbiter threads, so it still returns only after these writes.
impl Drop for Worker {
    fn drop(&mut self) {
        if self.finished || self.loading || self.shared.snapshots.is_none() || self.snap.changes == self.snap.persisted
        {
            return;
        }
        let mut run = self.new_run();
        self.encode_step(&mut run, usize::MAX);
        let entries = run.entries;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let done = Box::new(move |result: std::io::Result<Written>| {
            let _ = tx.send(result);
        });
        if !self.send_snapshot(run, done) {
            log::error!("shard {}: stopped with unsaved changes and the snapshot writer is gone", self.shard);
            return;
        }
        match rx.recv() {
            Ok(Ok(_)) => log::info!(
                "shard {}: stopped by the actix system; final snapshot of {entries} sessions durable",
                self.shard
            ),
            Ok(Err(e)) => log::error!("shard {}: stopped by the actix system; final snapshot failed: {e}", self.shard),
            Err(_) => log::error!("shard {}: stopped by the actix system; the snapshot writer went away", self.shard),
        }
    }
}
