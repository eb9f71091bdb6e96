//! [`Shard`]: the sessions of one shard as a plain struct — their map, the per-user index,
//! expiry, rotation and the sweep — with no actors in it.
//!
//! Whoever owns a `Shard` owns its sessions: every operation takes `&mut self`, so one owner
//! at a time is the compiler's to check, not a lock's. The worker actor ([`super::worker`]) is
//! that owner today; it only turns messages into calls of this API. Snapshot runs walk the
//! shard by index ([`super::snapshot_run`]); the one place they meet the shard's own logic is
//! [`Shard::swap_out`], which keeps a run's marks exact while sessions move.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use indexmap::IndexMap;

use super::Shared;
use super::snapshot_run::Run;
use crate::clock::to_system_time;
use crate::error::{Result, SessionError};
use crate::events::{EventKind, SessionEvent, at_ms};
use crate::id::{Locator, SessionId};
use crate::message::{SessionInfo, ShardStats};
use crate::snapshot::Recovered;
use crate::state::{Lifetimes, SessionState};
use crate::wal::append::{Committed, ShardLog};
use crate::wal::format::Change;
use crate::wire::Record;

/// Locators are BLAKE3 output (of CSPRNG output), so their first eight bytes are already a
/// uniform hash: no need to hash them again.
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

type IdBuild = BuildHasherDefault<IdHasher>;

/// One session as the shard keeps it. The map's key is the id's [`Locator`], a one-way digest:
/// the shard never holds the id itself, so neither do its snapshots and log.
pub(crate) struct Slot {
    pub state: SessionState,
    /// Written at least once (value, login); a session never written is never persisted.
    pub written: bool,
    /// The snapshot run that last took this session (see [`Run`]); 0: none yet.
    pub mark: u64,
}

/// The sessions of one shard.
pub(crate) struct Shard {
    index: usize,
    shared: Arc<Shared>,
    /// By the id's locator; an index map so a snapshot run and the sweep can walk it by
    /// position while operations change it between their steps.
    pub(super) sessions: IndexMap<Locator, Slot, IdBuild>,
    /// Logged-in users' sessions, for "log out everywhere" and listing.
    pub(super) by_user: HashMap<u64, HashSet<Locator, IdBuild>>,
    pub(super) sweep_cursor: usize,
    pub(super) stats: ShardStats,
    /// Changes to persisted state so far (a counter, so a snapshot knows what it covers).
    pub(super) changes: u64,
    /// The snapshot run being encoded, if any; see [`Run`].
    pub(super) run: Option<Run>,
    /// The number of the last snapshot run begun.
    pub(super) runs: u64,
    /// The write-ahead log: every change to persisted state is recorded here before the
    /// operation answers.
    pub(super) log: ShardLog,
}

impl Shard {
    /// Shard `index` of the engine `shared` describes, holding what start-up recovered (its
    /// snapshot and the log records after it); its log goes on from there.
    pub fn new(index: usize, shared: Arc<Shared>, recovered: Recovered) -> Self {
        shared.live[index].store(0, Ordering::Relaxed);
        let mut shard = Self::vacant(index, shared);
        shard.resume(recovered);
        shard
    }

    /// Installs recovered sessions and opens the log after them. Sessions that came from the
    /// log are in no snapshot yet: the shard is dirty until one holds them.
    pub fn resume(&mut self, recovered: Recovered) {
        self.install(recovered.records);
        self.log = ShardLog::open(self.shared.wal.clone(), self.index, recovered.next_lsn);
        if recovered.replayed > 0 {
            self.changes += 1;
        }
    }

    /// An empty stand-in for shard `index`, left behind by a host whose shard moved: unlike
    /// [`new`](Self::new), it leaves the live count alone (the shard's sessions still exist).
    pub fn vacant(index: usize, shared: Arc<Shared>) -> Self {
        Self {
            index,
            shared,
            sessions: IndexMap::default(),
            by_user: HashMap::new(),
            sweep_cursor: 0,
            stats: ShardStats::default(),
            changes: 0,
            run: None,
            runs: 0,
            log: ShardLog::disabled(index, 0),
        }
    }

    /// Counts an operation that came from the hosting thread without a message.
    pub fn count_local(&mut self) {
        self.stats.local_operations += 1;
    }

    /// This shard's number.
    pub fn index(&self) -> usize {
        self.index
    }

    /// What this shard shares with the rest of the engine.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Adds sessions read from a snapshot. They are already on disk, so nothing is dirty. Of
    /// two records of one id (a reload over live state), the more recently used wins.
    pub fn install(&mut self, records: Vec<Record>) {
        self.sessions.reserve(records.len());
        for (locator, state) in records {
            if let Some(index) = self.sessions.get_index_of(&locator) {
                if self.sessions[index].state.last_access_ms >= state.last_access_ms {
                    continue;
                }
                self.remove_index(index, false);
            }
            self.index_user(state.userid, locator);
            self.sessions.insert(locator, Slot { state, written: true, mark: 0 });
            self.shared.live[self.index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Live sessions (expired ones not yet swept included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Counters, with the live session count.
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            sessions: self.sessions.len(),
            log_records: self.log.records,
            log_bytes: self.log.bytes,
            ..self.stats
        }
    }

    /// Runs one operation; a panic inside it (a user's `update` closure, say) becomes
    /// `Err(Panicked)` and the shard lives on, every other session untouched.
    pub fn guarded<R>(&mut self, op: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        self.stats.operations += 1;
        match catch_unwind(AssertUnwindSafe(|| op(self))) {
            Ok(result) => result,
            Err(payload) => {
                self.stats.panics += 1;
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                log::error!("shard {}: operation panicked and was contained: {msg}", self.index);
                Err(SessionError::Panicked(msg))
            }
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    pub(super) fn info(&self, id: &SessionId, slot: &Slot) -> SessionInfo {
        info(id, slot, &self.shared.lifetimes)
    }

    /// Publishes an event of the session under `locator` (user `userid`), built by `kind`
    /// only while someone subscribes.
    pub(super) fn emit(&self, userid: u64, locator: &Locator, kind: impl FnOnce() -> EventKind) {
        let hub = &self.shared.events;
        if hub.wanted() {
            let session = self.shared.keyring.handle(locator);
            hub.publish(SessionEvent { kind: kind(), userid, session, at: at_ms(self.now()) });
        }
    }

    /// The live session `id`, its expiry slid to now when `touch`. An expired session is
    /// dropped on the spot; a rotated or destroyed one is simply absent.
    pub(super) fn live(&mut self, id: &SessionId, touch: bool) -> Result<&mut Slot> {
        let now = self.now();
        let index = self.sessions.get_index_of(id.locator()).ok_or(SessionError::SessionGone)?;
        if self.sessions[index].state.is_expired(&self.shared.lifetimes, now) {
            self.expire(index);
            return Err(SessionError::SessionGone);
        }
        let slot = &mut self.sessions[index];
        if touch {
            slot.state.last_access_ms = slot.state.last_access_ms.max(now);
            // The sliding expiry is persisted state too.
            if slot.written {
                self.changes += 1;
            }
        }
        Ok(slot)
    }

    /// Marks the session written (so it is persisted from now on) and the shard changed.
    pub(super) fn wrote(&mut self, id: &SessionId) {
        if let Some(slot) = self.sessions.get_mut(id.locator()) {
            slot.written = true;
        }
        self.changes += 1;
    }

    /// Records a change in the log (see [`ShardLog`]).
    pub(super) fn record(&mut self, change: &Change<'_>) {
        let now = self.now();
        self.log.record(now, change);
    }

    /// Records the value now under `scope`/`key` of session `id` (after a write to it); a
    /// session's first write records it whole, as it is persisted from then on.
    pub(super) fn record_value(&mut self, id: &SessionId, scope: &str, key: &str) {
        let now = self.now();
        let Some(slot) = self.sessions.get(id.locator()) else { return };
        let change = if !slot.written {
            Change::Put { id: id.locator(), state: &slot.state }
        } else {
            match slot.state.get(scope, key) {
                Some(value) => Change::Set { id: id.locator(), scope, key, value },
                None => Change::Remove { id: id.locator(), scope, key },
            }
        };
        self.log.record(now, &change);
    }

    /// Adds the records of the operation that just ran to the log's batch (see
    /// [`ShardLog::commit`]).
    pub fn commit_log(&mut self) -> Result<Option<Committed>> {
        self.log.commit()
    }

    /// Writes the log's batch (see [`ShardLog::flush`]).
    pub fn flush_log(&mut self) {
        self.log.flush();
    }

    /// The log is broken or large: a snapshot now would resume or shorten it.
    pub fn log_wants_snapshot(&mut self) -> bool {
        self.log.wants_snapshot(std::time::Instant::now())
    }

    /// Makes the next snapshot run happen even without a change (the log asks for one).
    pub fn force_dirty(&mut self) {
        self.changes += 1;
    }

    /// A snapshot covering the records before `log_from` is durable.
    pub fn snapshot_durable(&mut self, log_from: u64) {
        self.log.snapshot_durable(log_from);
    }

    /// Removes a session; `ended` when it was destroyed (a change snapshots must record), not
    /// merely expired (a snapshot holding it drops it on load anyway).
    pub(super) fn remove_index(&mut self, index: usize, ended: bool) -> Slot {
        let (locator, slot) = self.swap_out(index);
        self.unindex_user(slot.state.userid, &locator);
        self.shared.live[self.index].fetch_sub(1, Ordering::Relaxed);
        if ended && slot.written {
            self.changes += 1;
        }
        slot
    }

    /// Drops the expired session at `index`.
    pub(super) fn expire(&mut self, index: usize) {
        let (locator, userid) =
            (*self.sessions.get_index(index).expect("index in range").0, self.sessions[index].state.userid);
        self.remove_index(index, false);
        self.stats.expired += 1;
        self.shared.metrics.expired.increment(1);
        self.emit(userid, &locator, || EventKind::Expired);
    }

    /// Takes the session at `index` out of the map; the last one takes its place. A snapshot
    /// run that already walked past `index` takes the moved session now (see [`Run`]).
    fn swap_out(&mut self, index: usize) -> (Locator, Slot) {
        let out = self.sessions.swap_remove_index(index).expect("index in range");
        if let Some(run) = self.run.as_mut()
            && index < run.pos
            && let Some((key, moved)) = self.sessions.get_index_mut(index)
        {
            let now = self.shared.clock.now_ms();
            run.take(key, moved, self.index, now, &self.shared.lifetimes);
        }
        out
    }

    pub(super) fn index_user(&mut self, userid: u64, locator: Locator) {
        if userid != 0 {
            self.by_user.entry(userid).or_default().insert(locator);
        }
    }

    pub(super) fn unindex_user(&mut self, userid: u64, locator: &Locator) {
        if userid == 0 {
            return;
        }
        if let Some(set) = self.by_user.get_mut(&userid) {
            set.remove(locator);
            if set.is_empty() {
                self.by_user.remove(&userid);
            }
        }
    }

    /// Moves the session under a fresh id of this shard; the old id is dead at once.
    pub(super) fn rotate(&mut self, id: &SessionId, new_userid: u64) -> Result<SessionInfo> {
        self.live(id, true)?;
        let index = self.sessions.get_index_of(id.locator()).ok_or(SessionError::SessionGone)?;
        // The slot keeps its snapshot mark under the new id (see `Run`).
        let (old_locator, mut slot) = self.swap_out(index);
        let old_userid = slot.state.userid;
        self.unindex_user(old_userid, &old_locator);
        let new_id = self.shared.keyring.generate_in_shard(self.index, self.shared.shards);
        // Remember-me survives a re-login of the same user only: a different user (or a
        // logout) must not inherit it.
        slot.state.persistent &= new_userid != 0 && new_userid == slot.state.userid;
        slot.state.userid = new_userid;
        if slot.written {
            self.changes += 1;
            let (userid, persistent) = (slot.state.userid, slot.state.persistent);
            self.record(&Change::Rotate { old: id.locator(), new: new_id.locator(), userid, persistent });
        }
        self.index_user(new_userid, *new_id.locator());
        let info = self.info(&new_id, &slot);
        let previous = || self.shared.keyring.handle(&old_locator);
        if new_userid != 0 {
            let label = || crate::state::device_value(&slot.state, crate::names::LABEL_KEY);
            self.emit(new_userid, new_id.locator(), || EventKind::LoggedIn { label: label(), previous: previous() });
        } else {
            self.emit(old_userid, new_id.locator(), || EventKind::LoggedOut { previous: previous() });
        }
        self.sessions.insert(*new_id.locator(), slot);
        Ok(info)
    }

    /// Drops up to `budget` expired sessions from the cursor on; how many were dropped.
    pub fn sweep_step(&mut self, budget: usize) -> usize {
        let now = self.now();
        let mut dropped = 0;
        let mut examined = 0;
        if self.sweep_cursor >= self.sessions.len() {
            self.sweep_cursor = 0;
        }
        while examined < budget && self.sweep_cursor < self.sessions.len() {
            examined += 1;
            if self.sessions[self.sweep_cursor].state.is_expired(&self.shared.lifetimes, now) {
                // swap_remove brings the last entry here: examine this index again.
                self.expire(self.sweep_cursor);
                dropped += 1;
            } else {
                self.sweep_cursor += 1;
            }
        }
        dropped
    }

    /// Drops every expired session; how many.
    pub fn sweep_all(&mut self) -> usize {
        self.sweep_cursor = 0;
        self.sweep_step(usize::MAX)
    }

    /// Sessions a creation refused for a full engine examines for expiry first.
    pub(super) const CREATE_SWEEP_BUDGET: usize = 64;
}

/// What the engine answers about a session besides its data.
pub(super) fn info(id: &SessionId, slot: &Slot, lifetimes: &Lifetimes) -> SessionInfo {
    let s = &slot.state;
    SessionInfo {
        id: *id,
        userid: s.userid,
        persistent: s.persistent,
        created: to_system_time(s.created_ms),
        last_access: to_system_time(s.last_access_ms),
        expires: to_system_time(s.expires_ms(lifetimes)),
    }
}
