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
    anonymous: usize,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::error::Result;
    use crate::id::{Keyring, SessionId};
    use crate::memory::ops::OnShard;
    use crate::message::{Create, Destroy, Get, Login, Logout, Remove, Set};

    /// Shard 0 of a one-shard engine on a manual clock, with `edit` made to its config.
    fn shard(edit: impl FnOnce(&mut Config)) -> (Shard, Arc<ManualClock>) {
        let mut config = Config::default();
        config.session.shards = 1;
        edit(&mut config);
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let keyring = Keyring::from_secrets(b"budget unit test secret, 32 bytes or more", &[]).unwrap();
        let listeners = crate::events::EventHub::new(config.events.capacity).listeners();
        (Shard::new(0, Arc::new(Env::new(&config, keyring, clock.clone(), listeners))), clock)
    }

    fn create(s: &mut Shard) -> Result<SessionId> {
        let id = s.env().id_in(0);
        Create { id }.apply(s).map(|info| info.id)
    }

    fn set(s: &mut Shard, id: &SessionId, key: &str, value: &[u8]) -> Result<()> {
        Set { id: *id, scope: "a".into(), key: key.into(), value: value.to_vec() }.apply(s)
    }

    fn get(s: &mut Shard, id: &SessionId, key: &str) -> Result<Option<Vec<u8>>> {
        Get { id: *id, scope: "a".into(), key: key.into() }.apply(s)
    }

    /// A logged-in session (user `userid`) holding `value` under "a"/"k".
    fn logged_in(s: &mut Shard, userid: u64, value: &[u8]) -> SessionId {
        let id = create(s).unwrap();
        let id = Login { id, userid }.apply(s).unwrap().id;
        set(s, &id, "k", value).unwrap();
        id
    }

    /// The estimate kept up to date equals the one counted afresh.
    fn assert_accounted(s: &Shard) {
        let counted: usize = s.sessions.values().map(|slot| slot.state.footprint()).sum();
        assert_eq!(s.budget.used, counted, "the kept estimate drifted");
        let anonymous = s.sessions.values().filter(|slot| slot.state.userid == 0).count();
        assert_eq!(s.budget.anonymous, anonymous);
    }

    const MIB: usize = 1 << 20;

    /// A flood of anonymous sessions writing big values stays within the budget (past it by one
    /// write at most): the least recently used anonymous ones are evicted, each counted, and a
    /// session logged in before the flood, or one used all along, keeps its data.
    #[test]
    fn a_flood_of_anonymous_sessions_evicts_the_least_recently_used_ones_and_keeps_a_logged_in_one() {
        let (mut s, clock) = shard(|c| c.limits.max_memory = MIB);
        let value = vec![b'7'; 20_000];
        let user = logged_in(&mut s, 7, &value);
        let old = create(&mut s).unwrap();
        set(&mut s, &old, "k", b"1").unwrap();
        let used = create(&mut s).unwrap();
        set(&mut s, &used, "k", b"2").unwrap();
        let mut flood = Vec::new();
        for _ in 0..300 {
            clock.advance(std::time::Duration::from_millis(10));
            let id = create(&mut s).unwrap();
            set(&mut s, &id, "k", &value).unwrap();
            assert!(s.budget.used <= MIB + 21_000, "past the budget by more than a write: {}", s.budget.used);
            get(&mut s, &used, "k").unwrap();
            flood.push(id);
        }
        let evicted = s.stats().evicted;
        assert!(evicted >= 240, "{evicted}");
        assert_eq!(s.stats().sessions as u64, 303 - evicted);
        assert_eq!(s.stats().destroyed + s.stats().expired, 0, "evictions are counted as such");
        assert_eq!(get(&mut s, &user, "k").unwrap().as_deref(), Some(&value[..]), "the logged-in session is intact");
        assert_eq!(get(&mut s, &used, "k").unwrap().as_deref(), Some(&b"2"[..]), "a session in use stays");
        assert_eq!(get(&mut s, &old, "k"), Err(SessionError::SessionGone), "the least recently used one went");
        assert!(get(&mut s, flood.last().unwrap(), "k").unwrap().is_some());
        let (early, late) = flood.split_at(150);
        let alive = |s: &mut Shard, ids: &[SessionId]| ids.iter().filter(|id| get(s, id, "k").is_ok()).count();
        assert!(alive(&mut s, early) < alive(&mut s, late));
        assert_accounted(&s);
    }

    /// Logged-in sessions are never evicted: once they fill the budget, a creation and a write
    /// growing a session are refused with `MemoryFull` and change nothing; writes that do not
    /// grow one still work; a session ended makes room again.
    #[test]
    fn with_only_logged_in_sessions_the_budget_refuses_creations_and_growing_writes_and_loses_nothing() {
        let (mut s, _) = shard(|c| c.limits.max_memory = MIB);
        let full = SessionError::Unavailable(Unavailable::MemoryFull { limit: MIB });
        let value = vec![b'x'; 60_000];
        let mut users = Vec::new();
        loop {
            let id = match create(&mut s) {
                Ok(id) => id,
                Err(e) => {
                    assert_eq!(e, full);
                    break;
                }
            };
            let id = Login { id, userid: users.len() as u64 + 1 }.apply(&mut s).unwrap().id;
            if let Err(e) = set(&mut s, &id, "k", &value) {
                assert_eq!(e, full);
                assert_eq!(get(&mut s, &id, "k"), Ok(None), "the refused write changed nothing");
                break;
            }
            users.push(id);
            assert!(users.len() < 100, "never refused");
        }
        // Short of the budget by less than a creation, one more write may pass it (by one
        // write at most); then growth is refused.
        let _ = set(&mut s, &users[0], "fill", &value);
        assert_eq!(create(&mut s), Err(full.clone()));
        assert_eq!(set(&mut s, &users[0], "more", b"1"), Err(full.clone()));
        // Not growing: an overwrite of the same size, a smaller value, a removal.
        set(&mut s, &users[0], "k", &vec![b'y'; 60_000]).unwrap();
        set(&mut s, &users[1], "k", b"small").unwrap();
        assert!(Remove { id: users[2], scope: "a".into(), key: "k".into() }.apply(&mut s).unwrap());
        assert_eq!(s.stats().evicted, 0);
        for (i, id) in users.iter().enumerate().skip(3) {
            assert_eq!(get(&mut s, id, "k").unwrap().as_deref(), Some(&value[..]), "session {i}");
        }
        assert_accounted(&s);
        // Room made by the removal and the smaller value: a creation works again.
        create(&mut s).unwrap();
        assert!(Destroy { id: users[3] }.apply(&mut s).unwrap());
        set(&mut s, &users[4], "more", &value).unwrap();
        assert_accounted(&s);
    }

    /// A growing write of the only anonymous session left is refused rather than evict the
    /// writer itself; a creation evicts it (anonymous traffic makes room among anonymous
    /// sessions only).
    #[test]
    fn the_writer_is_never_its_own_victim() {
        let (mut s, _) = shard(|c| c.limits.max_memory = MIB);
        let value = vec![b'x'; 60_000];
        let mut users = Vec::new();
        while let Ok(id) = create(&mut s) {
            let id = Login { id, userid: users.len() as u64 + 1 }.apply(&mut s).unwrap().id;
            if set(&mut s, &id, "k", &value).is_err() {
                break;
            }
            users.push(id);
        }
        // A logout leaves the data (by default): the only anonymous session, over the budget.
        let anonymous = Logout { id: users[0] }.apply(&mut s).unwrap().id;
        let full = SessionError::Unavailable(Unavailable::MemoryFull { limit: MIB });
        assert_eq!(set(&mut s, &anonymous, "more", b"1"), Err(full));
        assert_eq!(get(&mut s, &anonymous, "k").unwrap().as_deref(), Some(&value[..]));
        assert_eq!(s.stats().evicted, 0);
        let new = create(&mut s).expect("the anonymous session evicted for it");
        assert_eq!(s.stats().evicted, 1);
        assert_eq!(get(&mut s, &anonymous, "k"), Err(SessionError::SessionGone));
        assert_eq!(get(&mut s, &new, "k"), Ok(None));
        for id in &users[1..] {
            assert_eq!(get(&mut s, id, "k").unwrap().as_deref(), Some(&value[..]));
        }
        assert_accounted(&s);
    }

    /// `limits.max_anonymous_session_bytes` holds a session nobody is logged into to less than
    /// a logged-in one may hold; a logout leaves what it holds but lets it grow no further.
    #[test]
    fn an_anonymous_session_is_held_to_max_anonymous_session_bytes_a_logged_in_one_is_not() {
        let (mut s, _) = shard(|c| c.limits.max_anonymous_session_bytes = 1000);
        let id = create(&mut s).unwrap();
        let big = vec![b'x'; 2000];
        assert_eq!(set(&mut s, &id, "k", &big), Err(SessionError::SessionTooLarge { size: 2002, limit: 1000 }));
        assert_eq!(get(&mut s, &id, "k"), Ok(None));
        set(&mut s, &id, "k", &big[..998]).unwrap();
        let id = Login { id, userid: 1 }.apply(&mut s).unwrap().id;
        set(&mut s, &id, "k", &big).unwrap();
        let id = Logout { id }.apply(&mut s).unwrap().id;
        assert_eq!(get(&mut s, &id, "k").unwrap().map(|v| v.len()), Some(2000), "a logout keeps the data");
        assert_eq!(set(&mut s, &id, "j", b"1"), Err(SessionError::SessionTooLarge { size: 2005, limit: 1000 }));
        set(&mut s, &id, "k", b"shrinks").unwrap();
        assert_accounted(&s);
    }
}
