//! [`Shard`]: the sessions of one shard as a plain struct — their map, the per-user index,
//! expiry, rotation and the sweep — with no actors in it and nothing of the engine but its
//! [`Env`] (time, lifetimes, limits, keys, live counts).
//!
//! Whoever owns a `Shard` owns its sessions: every operation takes `&mut self`, so one owner
//! at a time is the compiler's to check, not a lock's. The shard writes no log and publishes
//! no event: it describes each change it makes in its [`Outbox`], which its host
//! ([`Core`](super::host::Core)) delivers once the operation has run. Snapshot runs walk the
//! map by position ([`super::snapshot_run`]); the one place the shard meets one is the hook in
//! [`Shard::swap_out`], which tells the run under way where a session moved.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use indexmap::IndexMap;

use super::budget::Budget;
use super::env::Env;
use super::outbox::{Event, Outbox};
use super::snapshot_run::Run;
use crate::clock::to_system_time;
use crate::error::{Result, SessionError};
use crate::id::{Locator, SessionId};
use crate::message::{SessionInfo, ShardStats};
use crate::state::{Lifetimes, Room, SessionState};
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

/// A shard's sessions by the id's locator; an index map so a snapshot run and the sweep can
/// walk it by position while operations change it between their steps.
pub(crate) type Sessions = IndexMap<Locator, Slot, IdBuild>;

/// One session as the shard keeps it. The map's key is the id's [`Locator`], a one-way digest:
/// the shard never holds the id itself, so neither do its snapshots and log.
pub(crate) struct Slot {
    pub state: SessionState,
    /// Written at least once (value, login); a session never written is never persisted.
    pub written: bool,
    /// The snapshot run that last took this session (see [`Run`]); 0: none yet. Four bytes,
    /// so a slot is 64 (see the test below): a run's mark wraps after 2³² - 1 runs, and
    /// each run marks every session it walks, so no session keeps a mark that long.
    pub mark: u32,
}

/// The sessions of one shard.
pub(crate) struct Shard {
    index: usize,
    pub(super) env: Arc<Env>,
    pub(super) sessions: Sessions,
    /// Logged-in users' sessions, for "log out everywhere" and listing.
    pub(super) by_user: HashMap<u64, HashSet<Locator, IdBuild>>,
    pub(super) sweep_cursor: usize,
    pub(super) stats: ShardStats,
    /// Changes to persisted state so far (a counter, so a snapshot knows what it covers).
    pub(super) changes: u64,
    /// The snapshot run walking the map, if any: a removal tells it where the last session
    /// moved ([`Run::moved`]). The run's logic is its own ([`super::snapshot_run`]).
    pub(super) run: Option<Run>,
    /// What the operation under way changed, for the log and the event hub.
    pub(super) outbox: Outbox,
    /// The memory budget of its sessions (see [`Budget`]).
    pub(super) budget: Budget,
}

impl Shard {
    /// An empty shard `index` of the engine `env` describes, its live count reset.
    pub fn new(index: usize, env: Arc<Env>) -> Self {
        env.live[index].store(0, Ordering::Relaxed);
        Self::vacant(index, env)
    }

    /// An empty stand-in for shard `index`, left behind by a host whose shard moved: unlike
    /// [`new`](Self::new), it leaves the live count alone (the shard's sessions still exist).
    pub fn vacant(index: usize, env: Arc<Env>) -> Self {
        let budget = Budget::new(index, &env);
        Self {
            index,
            env,
            sessions: IndexMap::default(),
            by_user: HashMap::new(),
            sweep_cursor: 0,
            stats: ShardStats::default(),
            changes: 0,
            run: None,
            outbox: Outbox::default(),
            budget,
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

    /// What this shard sees of the engine.
    pub fn env(&self) -> &Env {
        &self.env
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
            self.admit(locator, Slot { state, written: true, mark: 0 });
        }
    }

    /// Adds a session that is not in the map yet: its user's index, the live count, the budget.
    /// Answers its position.
    pub(super) fn admit(&mut self, locator: Locator, slot: Slot) -> usize {
        self.index_user(slot.state.userid, locator);
        self.budget.count(slot.state.userid, slot.state.footprint(), true);
        self.env.live[self.index].fetch_add(1, Ordering::Relaxed);
        self.sessions.insert_full(locator, slot).0
    }

    /// Live sessions (expired ones not yet swept included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Counters, with the live session count and the memory estimate.
    pub fn stats(&self) -> ShardStats {
        ShardStats { sessions: self.sessions.len(), memory_bytes: self.budget.used, ..self.stats }
    }

    /// Runs one operation; a panic inside it (a user's `update` closure, say) becomes
    /// `Err(Panicked)` and the shard lives on, every other session untouched. What the
    /// operation changed before it panicked stays changed, and described in the outbox.
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
        self.env.now()
    }

    pub(super) fn info(&self, id: &SessionId, slot: &Slot) -> SessionInfo {
        info(id, slot, &self.env.lifetimes)
    }

    /// Whether a change may be made now (see [`Outbox::accepting`]).
    pub(super) fn accepting(&self) -> Result<()> {
        self.outbox.accepting()
    }

    /// Describes `event` of the session under `locator` (user `userid`), only while someone
    /// subscribes.
    pub(super) fn emit(&mut self, userid: u64, locator: &Locator, event: Event) {
        if self.env.listeners.any() {
            self.outbox.event(event, userid, locator);
        }
    }

    /// The position of the live session `id`, its expiry slid to now when `touch`. An expired
    /// session is dropped on the spot; a rotated or destroyed one is simply absent.
    #[inline]
    pub(super) fn live_index(&mut self, id: &SessionId, touch: bool) -> Result<usize> {
        let now = self.now();
        let index = self.sessions.get_index_of(id.locator()).ok_or(SessionError::SessionGone)?;
        let slot = &mut self.sessions[index];
        if slot.state.is_expired(&self.env.lifetimes, now) {
            self.expire(index);
            return Err(SessionError::SessionGone);
        }
        if touch {
            slot.state.last_access_ms = slot.state.last_access_ms.max(now);
            // The sliding expiry is persisted state too.
            if slot.written {
                self.changes += 1;
            }
        }
        Ok(index)
    }

    /// The live session `id` (see [`live_index`](Self::live_index)).
    pub(super) fn live(&mut self, id: &SessionId, touch: bool) -> Result<&mut Slot> {
        let index = self.live_index(id, touch)?;
        Ok(&mut self.sessions[index])
    }

    /// Writes the operation's value (its scope and key) of the live session `id` with `write`
    /// (given the limits) and describes the change: the resulting value, or, a session's first
    /// write, the whole session (persisted from then on). When `write` fails, its session is
    /// as it was.
    pub(super) fn write<R>(
        &mut self,
        id: &SessionId,
        write: impl FnOnce(&mut SessionState, Room<'_>) -> Result<R>,
    ) -> Result<R> {
        self.accepting()?;
        let mut index = self.live_index(id, true)?;
        // Over its budget, the shard makes room first; a write that grows the session is
        // refused when it cannot (one that does not grow it still works).
        let memory_full = if self.budget.used < self.budget.limit {
            None
        } else {
            let fits = self.make_room(1, Some(id.locator()));
            // Evictions move sessions: find this one again.
            index =
                self.sessions.get_index_of(id.locator()).ok_or_else(|| SessionError::internal("evicted the writer"))?;
            (!fits).then_some(self.env.limits.max_memory)
        };
        let slot = &mut self.sessions[index];
        let limits = &self.env.limits;
        let room = Room { limits, max_bytes: limits.session_bytes_of(slot.state.userid), memory_full };
        let before = slot.state.footprint();
        let answer = write(&mut slot.state, room);
        let after = slot.state.footprint();
        self.budget.used = (self.budget.used + after).saturating_sub(before);
        let answer = answer?;
        if std::mem::replace(&mut slot.written, true) {
            self.outbox.value(id.locator(), index);
        } else {
            self.outbox.put(id.locator(), index);
        }
        self.changes += 1;
        Ok(answer)
    }

    /// The shard's change count (see [`Schedule`](super::snapshot_run::Schedule)).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Makes the next snapshot run happen even without a change (the log asks for one).
    pub fn force_dirty(&mut self) {
        self.changes += 1;
    }

    /// Removes a session; `ended` when it was destroyed (a change snapshots must record), not
    /// merely expired (a snapshot holding it drops it on load anyway).
    pub(super) fn remove_index(&mut self, index: usize, ended: bool) -> (Locator, Slot) {
        let (locator, slot) = self.swap_out(index);
        self.unindex_user(slot.state.userid, &locator);
        self.budget.count(slot.state.userid, slot.state.footprint(), false);
        self.env.live[self.index].fetch_sub(1, Ordering::Relaxed);
        if ended && slot.written {
            self.changes += 1;
        }
        (locator, slot)
    }

    /// Drops the expired session at `index`.
    pub(super) fn expire(&mut self, index: usize) {
        let (locator, slot) = self.remove_index(index, false);
        self.stats.expired += 1;
        self.outbox.expired();
        self.emit(slot.state.userid, &locator, Event::Expired);
    }

    /// Ends the live session at `index` (destroyed, revoked: `event`).
    pub(super) fn end(&mut self, index: usize, event: Event) {
        let (locator, slot) = self.remove_index(index, true);
        if slot.written {
            self.outbox.destroy(&locator);
        }
        self.stats.destroyed += 1;
        self.emit(slot.state.userid, &locator, event);
    }

    /// Takes the session at `index` out of the map; the last one takes its place, which the
    /// snapshot run under way is told of (it takes the moved session now if it walked past
    /// `index`: see [`Run`]).
    fn swap_out(&mut self, index: usize) -> (Locator, Slot) {
        let out = self.sessions.swap_remove_index(index).expect("index in range");
        if let Some(run) = &mut self.run {
            run.moved(&mut self.sessions, index, &self.env);
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

    /// Moves the live session `id` under a fresh id of this shard, now of `new_userid`; the
    /// old id is dead at once. Answers its info and its new position.
    pub(super) fn rotate(&mut self, id: &SessionId, new_userid: u64) -> Result<(SessionInfo, usize)> {
        let index = self.live_index(id, true)?;
        // The slot keeps its snapshot mark under the new id (see `Run`).
        let (old, mut slot) = self.swap_out(index);
        let old_userid = slot.state.userid;
        self.unindex_user(old_userid, &old);
        let new_id = self.env.id_in(self.index);
        let new = *new_id.locator();
        // Remember-me survives a re-login of the same user only: a different user (or a
        // logout) must not inherit it.
        slot.state.persistent &= new_userid != 0 && new_userid == slot.state.userid;
        let bytes = slot.state.footprint();
        self.budget.count(old_userid, bytes, false);
        self.budget.count(new_userid, bytes, true);
        slot.state.userid = new_userid;
        if slot.written {
            self.changes += 1;
            self.outbox.rotate(&old, &new, new_userid, slot.state.persistent);
        }
        self.index_user(new_userid, new);
        let info = self.info(&new_id, &slot);
        if new_userid != 0 {
            self.emit(new_userid, &new, Event::LoggedIn { previous: old });
        } else {
            self.emit(old_userid, &new, Event::LoggedOut { previous: old });
        }
        let (index, _) = self.sessions.insert_full(new, slot);
        Ok((info, index))
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
            if self.sessions[self.sweep_cursor].state.is_expired(&self.env.lifetimes, now) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a live session costs the shard's map besides its data: a slot of 64 bytes (its
    /// metadata, one small entry inline, the written flag and the run mark), after the
    /// locator and the map's stored hash. BENCHMARKS.md, "Memory per live session", counts on it.
    #[test]
    fn a_slot_is_64_bytes() {
        assert_eq!(size_of::<SessionState>(), 56);
        assert_eq!(size_of::<Slot>(), 64);
    }
}
