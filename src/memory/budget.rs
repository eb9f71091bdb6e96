//! The memory budget of a [`Shard`]: its share of `limits.max_memory`, what its sessions take
//! of it, and how it makes room — expired sessions swept, then the least recently used
//! **anonymous** sessions evicted, found by sampling; logged-in sessions are never evicted.
//! When nothing is left to evict, the shard refuses new sessions and writes that grow one
//! (`Unavailable(MemoryFull)`).
//!
//! What a session costs is estimated by [`SessionState::footprint`](crate::state::SessionState::footprint)
//! and kept up to date by every change, so an operation within the budget pays one comparison;
//! eviction is O(1) per evicted session (a few random probes), a bounded walk when anonymous
//! sessions are rare among logged-in ones.

use super::env::Env;
use super::outbox::Event;
use super::shard::{Shard, Slot};
use crate::error::{SessionError, Unavailable};
use crate::id::Locator;

/// A shard's share of `limits.max_memory` and what its sessions take of it, as
/// [`SessionState::footprint`] estimates each: kept up to date by every change (a write adds
/// what it grew the session by), so checking it costs a comparison. Past it, the least recently
/// used anonymous sessions are evicted, found by sampling (see [`Shard::victim`]).
#[derive(Debug)]
pub(super) struct Budget {
    /// `limits.max_memory / shards`.
    pub limit: usize,
    /// The estimated bytes of the shard's sessions.
    pub used: usize,
    /// Sessions nobody is logged into: whether there is anything to evict, without a scan.
    pub anonymous: usize,
    /// Where the bounded walk looking for an anonymous session resumes (when sampling found
    /// none: they are rare among logged-in ones).
    cursor: usize,
    /// The sampling's random state (xorshift64).
    rng: u64,
    /// When the shard last evicted, and last refused for want of memory: a burst of either is
    /// logged once, when it starts.
    evicted_ms: u64,
    refused_ms: u64,
}

impl Budget {
    /// A burst of evictions (or refusals) is one with no gap longer than this: logged once.
    const BURST_GAP_MS: u64 = 10_000;
    /// Positions drawn at random for one eviction, at most.
    const PROBES: usize = 32;
    /// Of the first this many anonymous sessions the draws find, the least recently used one
    /// is evicted (Redis samples 5 too).
    const SAMPLE: usize = 5;
    /// Sessions the walk examines when sampling found no anonymous one.
    const WALK: usize = 256;

    pub fn new(index: usize, env: &Env) -> Self {
        Self {
            limit: env.limits.max_memory / env.shards.max(1),
            used: 0,
            anonymous: 0,
            cursor: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9),
            evicted_ms: 0,
            refused_ms: 0,
        }
    }

    /// A position below `len` (at least 1), at random.
    fn pick(&mut self, len: usize) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        #[expect(clippy::cast_possible_truncation, reason = "the remainder is below len, a usize")]
        let at = (x % len as u64) as usize;
        at
    }

    /// Counts a session of `userid`, `bytes` its footprint, in (`admitted`) or out.
    pub fn count(&mut self, userid: u64, bytes: usize, admitted: bool) {
        if admitted {
            self.used += bytes;
            self.anonymous += usize::from(userid == 0);
        } else {
            self.used = self.used.saturating_sub(bytes);
            self.anonymous -= usize::from(userid == 0);
        }
    }
}

impl Shard {
    /// A session's footprint changed from `before` to `after` bytes (a write, a removal).
    #[inline]
    pub(super) fn resized(&mut self, before: usize, after: usize) {
        self.budget.used = (self.budget.used + after).saturating_sub(before);
    }

    /// Whether `need` more bytes fit the shard's budget, making room if they do not: expired
    /// sessions swept (a bounded step), then the least recently used anonymous sessions
    /// evicted — never `keep`, never a logged-in one. A creation or a write passes `need`;
    /// `false` when nothing is left to evict (the caller refuses).
    pub(super) fn make_room(&mut self, need: usize, keep: Option<&Locator>) -> bool {
        if self.budget.used + need <= self.budget.limit {
            return true;
        }
        self.make_room_slow(need, keep)
    }

    #[cold]
    fn make_room_slow(&mut self, need: usize, keep: Option<&Locator>) -> bool {
        // Evicting a written session is a change the log must record: not while it refuses.
        if self.accepting().is_err() {
            return false;
        }
        self.sweep_step(Self::CREATE_SWEEP_BUDGET);
        let mut evicted = 0u64;
        while self.budget.used + need > self.budget.limit {
            let Some(index) = self.victim(keep) else { break };
            self.evict(index);
            evicted += 1;
        }
        let now = self.now();
        if evicted > 0 {
            if now.saturating_sub(self.budget.evicted_ms) > Budget::BURST_GAP_MS {
                log::warn!(
                    "shard {}: its sessions reached their share of limits.max_memory ({} bytes): evicting the \
                     least recently used anonymous sessions (logged once per burst; \
                     draco_session_sessions_evicted_total counts them)",
                    self.index(),
                    self.budget.limit
                );
            }
            self.budget.evicted_ms = now;
        }
        let fits = self.budget.used + need <= self.budget.limit;
        if !fits {
            if now.saturating_sub(self.budget.refused_ms) > Budget::BURST_GAP_MS {
                log::warn!(
                    "shard {}: its share of limits.max_memory ({} bytes) is taken by sessions that cannot be \
                     evicted (logged in): refusing new sessions and growing writes (503) until some end \
                     (logged once per burst)",
                    self.index(),
                    self.budget.limit
                );
            }
            self.budget.refused_ms = now;
        }
        fits
    }

    /// The anonymous session to evict, not `keep`: of [`Budget::SAMPLE`] anonymous sessions
    /// sampled at random, the least recently used; when sampling finds none (they are rare),
    /// the first one a bounded walk from where the last stopped finds. `None` when there is
    /// none (known without a scan) or the walk found none this time.
    fn victim(&mut self, keep: Option<&Locator>) -> Option<usize> {
        let len = self.sessions.len();
        let keep_anonymous = keep.and_then(|l| self.sessions.get(l)).is_some_and(|slot| slot.state.userid == 0);
        if self.budget.anonymous <= usize::from(keep_anonymous) {
            return None;
        }
        let evictable = |(locator, slot): (&Locator, &Slot)| slot.state.userid == 0 && Some(locator) != keep;
        let (mut best, mut seen): (Option<(u64, usize)>, usize) = (None, 0);
        for _ in 0..Budget::PROBES {
            let at = self.budget.pick(len);
            let Some(entry) = self.sessions.get_index(at) else { continue };
            if evictable(entry) {
                let last = entry.1.state.last_access_ms;
                if best.is_none_or(|(oldest, _)| last < oldest) {
                    best = Some((last, at));
                }
                seen += 1;
                if seen == Budget::SAMPLE {
                    break;
                }
            }
        }
        if let Some((_, at)) = best {
            return Some(at);
        }
        for _ in 0..Budget::WALK.min(len) {
            if self.budget.cursor >= len {
                self.budget.cursor = 0;
            }
            let at = self.budget.cursor;
            self.budget.cursor += 1;
            if self.sessions.get_index(at).is_some_and(evictable) {
                return Some(at);
            }
        }
        None
    }

    /// Evicts the anonymous session at `index`: it ends as an expired one would (the same
    /// event), with a record in the log so a restart does not bring it back.
    fn evict(&mut self, index: usize) {
        let (locator, slot) = self.remove_index(index, true);
        if slot.written {
            self.outbox.destroy(&locator);
        }
        self.stats.evicted += 1;
        self.outbox.evicted();
        self.emit(slot.state.userid, &locator, Event::Expired);
    }

    /// `MemoryFull`, the refusal of a creation or a growing write.
    pub(super) fn memory_full(&self) -> SessionError {
        Unavailable::MemoryFull { limit: self.env.limits.max_memory }.into()
    }
}
