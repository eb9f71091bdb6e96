//! Snapshot runs: how a shard's sessions become one snapshot while the shard keeps serving —
//! the walk in batches, the per-session run marks, and the hand-over to the writer thread —
//! and the schedule that decides when a shard needs one ([`Schedule`]).
//!
//! # The run marks
//! A run walks the shard's index map by position, a batch per turn of its owner, with
//! operations running between batches. Each session it takes is marked with the run's number,
//! so it is taken exactly once whatever moves meanwhile:
//! - a session rotated during the walk (login/logout) keeps its mark under its new id, so it
//!   is taken under the old id or the new one, never both, never neither;
//! - when a removal moves the last session into the part already walked, the shard tells the
//!   run ([`Run::moved`], its one hook) and that session is taken on the spot;
//! - sessions created during the walk are taken if the walk reaches them.
//!
//! The run owns its walk and its marks: the shard only holds the run under way, for that
//! hook. Its host begins, steps and hands it over ([`Core`](super::host::Core)). Starting a
//! run costs nothing, whatever the shard's size (no listing of ids up front).
//!
//! An erasure (`SessionEngine::erase_user`) asks each shard for a run that begins after the
//! user's sessions ended ([`Schedule::wait_erasure`]); the writer writes that run twice and
//! deletes every older file of the shard (see `snapshot/erase.rs`).

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::env::Env;
use super::shard::{Sessions, Shard, Slot};
use crate::id::Locator;
use crate::snapshot::{Snapshots, WriteDone, format};
use crate::state::Lifetimes;

/// Sessions encoded per snapshot step: one step holds the shard for well under a millisecond
/// (see BENCHMARKS.md), so operations keep flowing while a big shard is written.
pub(crate) const SNAPSHOT_BATCH: usize = 256;
/// Encoded bytes per chunk handed to the writer; chunks avoid re-growing one huge buffer.
const CHUNK_BYTES: usize = 1 << 20;

/// Sessions written by one shard's snapshot (`None`: unchanged, nothing written), or why not.
pub(crate) type SnapshotResult = std::result::Result<Option<u64>, String>;

/// A snapshot in progress (see the module doc for its marks).
pub(crate) struct Run {
    /// The shard walked.
    shard: usize,
    /// This run's mark: its number, wrapped to 1..=u32::MAX (see [`Slot::mark`]).
    no: u32,
    /// The next index to walk.
    pos: usize,
    chunks: Vec<Vec<u8>>,
    chunk: Vec<u8>,
    entries: u64,
    /// The shard's change count when the run began: every change up to it is in the run.
    at: u64,
    /// The shard's next log record when the run began: replay over this snapshot starts there.
    log_from: u64,
    started: Instant,
    turns: u32,
    longest_turn: Duration,
    /// An erasure's run: written as one (`Snapshots::erase`), older files deleted.
    erase: bool,
    /// With `storage.encrypt`: seals each chunk as it fills, here on the shard's thread (shards
    /// seal in parallel; the writer thread only writes).
    sealing: Option<format::BlockSealer>,
}

/// The mark of run number `no` (counted from 1): never 0, which is a slot's "no run yet".
#[allow(clippy::cast_possible_truncation, reason = "reduced below u32::MAX first")]
fn mark_of(no: u64) -> u32 {
    (no.saturating_sub(1) % u64::from(u32::MAX)) as u32 + 1
}

impl Run {
    /// Run number `no` of shard `shard`, beginning when its change count is `at` and its next
    /// log record `log_from`; nothing is encoded yet.
    pub fn new(shard: usize, no: u64, at: u64, log_from: u64) -> Self {
        Self {
            shard,
            no: mark_of(no),
            pos: 0,
            chunks: Vec::new(),
            chunk: Vec::new(),
            entries: 0,
            at,
            log_from,
            started: Instant::now(),
            turns: 0,
            longest_turn: Duration::ZERO,
            erase: false,
            sealing: None,
        }
    }

    /// Seals what this run encodes, for a file of `shards` shards (`storage.encrypt`).
    pub fn sealed_by(mut self, sealer: Option<&crate::seal::Sealer>, shards: usize) -> Self {
        self.sealing = sealer
            .map(|s| format::BlockSealer::new(s, crate::fsutil::as_u32(self.shard), crate::fsutil::as_u32(shards)));
        self
    }

    /// This run is an erasure's: once encoded, the writer writes it twice and deletes every
    /// older file of the shard (see `snapshot/erase.rs`).
    pub fn for_erasure(mut self, erase: bool) -> Self {
        self.erase = erase;
        self
    }

    /// Encodes the next `budget` sessions of `sessions`; whether the walk reached the end.
    pub fn step(&mut self, sessions: &mut Sessions, budget: usize, env: &Env) -> bool {
        let turn = Instant::now();
        let now = env.now();
        let end = sessions.len().min(self.pos.saturating_add(budget));
        for i in self.pos..end {
            if let Some((locator, slot)) = sessions.get_index_mut(i) {
                self.take(locator, slot, now, &env.lifetimes);
            }
        }
        self.pos = end;
        self.turns += 1;
        self.longest_turn = self.longest_turn.max(turn.elapsed());
        end == sessions.len()
    }

    /// A removal moved the last session of `sessions` to `index`: taken now if the walk is
    /// past `index` already (else the walk reaches it).
    pub fn moved(&mut self, sessions: &mut Sessions, index: usize, env: &Env) {
        if index < self.pos
            && let Some((locator, slot)) = sessions.get_index_mut(index)
        {
            self.take(locator, slot, env.now(), &env.lifetimes);
        }
    }

    /// Adds `slot` unless this run took it already (its mark); an expired session, or one
    /// never written, is marked but left out.
    fn take(&mut self, locator: &Locator, slot: &mut Slot, now: u64, lifetimes: &Lifetimes) {
        if slot.mark == self.no {
            return;
        }
        slot.mark = self.no;
        if !slot.written || slot.state.is_expired(lifetimes, now) {
            return;
        }
        match format::encode_record(&mut self.chunk, locator, &slot.state) {
            Ok(()) => self.entries += 1,
            Err(e) => log::error!("shard {}: session left out of the snapshot, cannot encode: {e}", self.shard),
        }
        if self.chunk.len() >= CHUNK_BYTES {
            match &mut self.sealing {
                Some(blocks) => {
                    blocks.seal(&self.chunk);
                    self.chunk.clear();
                }
                None => self.chunks.push(std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_BYTES + 4096))),
            }
        }
    }

    /// The shard change count this run covers.
    pub fn at(&self) -> u64 {
        self.at
    }

    /// The first log record this snapshot may lack.
    pub fn log_from(&self) -> u64 {
        self.log_from
    }

    /// Sessions encoded.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The locators encoded so far, in order (tests).
    #[cfg(test)]
    pub fn ids(&self) -> Vec<Locator> {
        self.chunks.iter().chain([&self.chunk]).flat_map(|c| format::decode_records(c)).map(|(id, _)| id).collect()
    }

    /// Hands the encoded snapshot to the writer thread; `done` hears when it is durable.
    /// False when the writer thread is gone (then `done` is dropped unanswered).
    pub fn hand_over(mut self, snapshots: &Snapshots, done: WriteDone) -> bool {
        let shard = self.shard;
        let body = match self.sealing.take() {
            Some(mut blocks) => {
                blocks.seal(&self.chunk);
                blocks.finish()
            }
            None => {
                if !self.chunk.is_empty() {
                    self.chunks.push(std::mem::take(&mut self.chunk));
                }
                format::Body::plain(std::mem::take(&mut self.chunks))
            }
        };
        log::debug!(
            "shard {shard}: snapshot of {} sessions encoded in {} turns over {:?} (longest turn {:?})",
            self.entries,
            self.turns,
            self.started.elapsed(),
            self.longest_turn
        );
        if self.erase {
            snapshots.erase(shard, self.entries, self.log_from, body, done)
        } else {
            snapshots.write(shard, self.entries, self.log_from, body, done)
        }
    }
}

/// When a shard needs a snapshot, and who waits for one.
#[derive(Default)]
pub(crate) struct Schedule {
    /// The shard's change count as of the start of its last durable snapshot.
    persisted: u64,
    /// A finished run is at the writer thread.
    writing: bool,
    /// The number of the last run begun (the marks it sets).
    runs: u64,
    /// `snapshot()` callers: the change count they need durable, and their answer.
    waiters: Vec<(u64, oneshot::Sender<SnapshotResult>)>,
    /// Erasures waiting for a run that begins after them (an erasure's run must not have
    /// taken anything before the erased sessions ended).
    erasures: Vec<oneshot::Sender<SnapshotResult>>,
    /// Erasures the run under way (encoding, or at the writer) answers.
    erasing: Vec<oneshot::Sender<SnapshotResult>>,
}

impl Schedule {
    /// The shard changed since its last durable snapshot.
    pub fn dirty(&self, shard: &Shard) -> bool {
        shard.changes() != self.persisted
    }

    /// A new run may begin: the shard is dirty and no run is being encoded or written.
    pub fn may_begin(&self, shard: &Shard) -> bool {
        shard.run.is_none() && !self.writing && self.dirty(shard)
    }

    /// The number of a new run.
    pub fn next_run(&mut self) -> u64 {
        self.runs += 1;
        self.runs
    }

    /// Waits for the change count `at` to be durable.
    pub fn wait(&mut self, at: u64) -> oneshot::Receiver<SnapshotResult> {
        let (tx, rx) = oneshot::channel();
        self.waiters.push((at, tx));
        rx
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// An erasure waits for the next run to begin, and for it to be durable.
    pub fn wait_erasure(&mut self) -> oneshot::Receiver<SnapshotResult> {
        let (tx, rx) = oneshot::channel();
        self.erasures.push(tx);
        rx
    }

    /// An erasure waits for a run to begin.
    pub fn erasure_wanted(&self) -> bool {
        !self.erasures.is_empty()
    }

    /// A run begins: whether it is an erasure's (it then answers every erasure waiting).
    pub fn begin_erasure(&mut self) -> bool {
        let waiting = std::mem::take(&mut self.erasures);
        self.erasing.extend(waiting);
        !self.erasing.is_empty()
    }

    /// The run being encoded was dropped: the erasures it would have answered wait for the next.
    pub fn run_dropped(&mut self) {
        let bound = std::mem::take(&mut self.erasing);
        self.erasures.extend(bound);
    }

    /// A finished run went to the writer.
    pub fn handed_over(&mut self) {
        self.writing = true;
    }

    /// The writer answered for the run that covered change count `at`.
    pub fn written(&mut self, at: u64, result: SnapshotResult) {
        self.writing = false;
        if result.is_ok() {
            self.persisted = self.persisted.max(at);
        }
        for erasure in std::mem::take(&mut self.erasing) {
            let _ = erasure.send(result.clone());
        }
        self.answer(result);
    }

    /// Answers the waiters the last durable snapshot satisfies; every waiter on an error.
    pub fn answer(&mut self, result: SnapshotResult) {
        let persisted = self.persisted;
        let mut i = 0;
        while i < self.waiters.len() {
            if result.is_err() || self.waiters[i].0 <= persisted {
                let (_, tx) = self.waiters.swap_remove(i);
                let _ = tx.send(result.clone());
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Schedule, mark_of};

    /// An erasure is answered by a run that began after it, never by one under way: a run
    /// being encoded when it came is dropped and its erasures wait for the next; a run at the
    /// writer answers only the erasures it began with.
    #[test]
    fn an_erasure_is_answered_only_by_a_run_begun_after_it() {
        let mut s = Schedule::default();
        assert!(!s.begin_erasure(), "a run without an erasure waiting is a plain one");
        let mut first = s.wait_erasure();
        assert!(s.erasure_wanted() && s.begin_erasure() && !s.erasure_wanted());
        // Dropped while encoding (another erasure came): back to waiting, with the new one.
        let mut second = s.wait_erasure();
        s.run_dropped();
        assert!(s.begin_erasure());
        s.handed_over();
        // A third comes while that run is at the writer: it waits for the next run.
        let mut third = s.wait_erasure();
        s.written(7, Ok(Some(3)));
        assert_eq!((first.try_recv(), second.try_recv()), (Ok(Ok(Some(3))), Ok(Ok(Some(3)))));
        assert!(third.try_recv().is_err() && s.erasure_wanted());
        assert!(s.begin_erasure());
        s.written(8, Err("disk full".into()));
        assert_eq!(third.try_recv(), Ok(Err("disk full".into())));
    }

    /// Run marks are never 0 (a slot's "no run yet") and differ between consecutive runs,
    /// across their wrap too.
    #[test]
    fn run_marks_skip_zero_and_wrap() {
        assert_eq!((mark_of(1), mark_of(2)), (1, 2));
        let last = u64::from(u32::MAX);
        assert_eq!((mark_of(last), mark_of(last + 1), mark_of(last + 2)), (u32::MAX, 1, 2));
        assert_ne!(mark_of(0), 0);
    }
}
