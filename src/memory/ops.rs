//! Each typed message as one operation on a [`Shard`] ([`OnShard`]): the memory backend's
//! half of every operation's definition (the message is in `crate::message`, the Redis half
//! in `redis/ops.rs`). The shard's own structure (map, user index, expiry, rotation) is in
//! `shard.rs`; an operation describes what it changed in the shard's outbox (`outbox.rs`),
//! which the shard's host turns into log records and events. The worker and
//! [`MemoryBackend`] run these generically.

use std::future::Future;

use super::MemoryBackend;
use super::outbox::{Event, NO_NAMES, Names};
use super::shard::{Shard, Slot, info};
use crate::clock::to_system_time;
use crate::error::{Result, SessionError};
use crate::id::Locator;
use crate::message::op::Op;
use crate::message::*;
use crate::state::{SESSION_OVERHEAD, SessionState};

/// An operation on the shard of its session, or on every shard (an engine-wide one).
pub trait OnShard: Op {
    /// Runs it on `shard`: the shard of its session, or each shard in turn. By reference: once
    /// it ran, its host still reads its [`names`](Self::names).
    fn apply(&mut self, shard: &mut Shard) -> Result<Self::Reply>;

    /// The scope and key of the values it writes, removes or (the scope) clears, which the
    /// log records of its changes name; none for the others.
    fn names(&self) -> Names<'_> {
        NO_NAMES
    }

    /// Runs it where it belongs: by default on its session's shard.
    fn route(self, backend: &MemoryBackend) -> impl Future<Output = Result<Self::Reply>> + Send
    where
        Self: ShardOp,
    {
        backend.on_session(self)
    }
}

/// An operation on a shard whose owned form (to cross threads) is one too.
pub trait ShardOp: OnShard + Op<Owned: OnShard, Reply: Unpin> + Unpin {}
impl<T: OnShard + Op<Owned: OnShard, Reply: Unpin> + Unpin> ShardOp for T {}

/// An engine-wide operation: run on every shard, the answers merged.
pub trait EveryShard: OnShard + Op<Owned = Self> + Clone + 'static {
    /// Counted as an operation of each shard (all but `Stats`, which only reads counters).
    const COUNTED: bool = true;

    /// The engine's answer from every shard's, in shard order; `restarts` per shard.
    fn merge(parts: Vec<Self::Reply>, restarts: &[u64], log_fsyncs: u64) -> Self::Reply;
}

impl OnShard for Create {
    /// Creates an empty anonymous session under `id` (which routes here).
    fn apply(&mut self, s: &mut Shard) -> Result<SessionInfo> {
        let id = self.id;
        if s.sessions.contains_key(id.locator()) {
            return Err(SessionError::InvalidId);
        }
        let limit = s.env.limits.max_sessions;
        if s.env.live_total() >= limit {
            // Expired sessions not swept yet still count: reclaim some of this shard's before
            // refusing. A bounded step from the sweep's cursor, not the whole shard: a flood
            // of refused creations costs each one this much, and successive attempts (and the
            // periodic sweep) still walk the whole shard.
            s.sweep_step(Shard::CREATE_SWEEP_BUDGET);
            if s.env.live_total() >= limit {
                return Err(SessionError::Full { limit });
            }
        }
        // Within the memory budget, evicting the least recently used anonymous sessions if
        // need be; refused when only logged-in ones are left.
        if !s.make_room(SESSION_OVERHEAD, None) {
            return Err(s.memory_full());
        }
        let slot = Slot { state: SessionState::new(s.now()), written: false, mark: 0 };
        let info = s.info(&id, &slot);
        s.admit(*id.locator(), slot);
        s.stats.created += 1;
        s.emit(0, id.locator(), Event::Created);
        Ok(info)
    }
}

impl OnShard for Get<'_> {
    fn apply(&mut self, s: &mut Shard) -> Result<Option<Vec<u8>>> {
        Ok(s.live(&self.id, true)?.state.get(&self.scope, &self.key).map(<[u8]>::to_vec))
    }
}

impl OnShard for Set<'_> {
    fn apply(&mut self, s: &mut Shard) -> Result<()> {
        let (scope, key) = (&*self.scope, &*self.key);
        s.write(&self.id, |state, room| state.set_within(scope, key, &self.value, room))
    }

    fn names(&self) -> Names<'_> {
        (&self.scope, &self.key)
    }
}

impl OnShard for Remove<'_> {
    fn apply(&mut self, s: &mut Shard) -> Result<bool> {
        let (id, scope, key) = (&self.id, &*self.scope, &*self.key);
        s.accepting()?;
        let slot = s.live(id, true)?;
        let before = slot.state.footprint();
        let (removed, written) = (slot.state.remove(scope, key), slot.written);
        let after = slot.state.footprint();
        s.resized(before, after);
        if removed && written {
            s.changes += 1;
            s.outbox.remove(id.locator());
        }
        Ok(removed)
    }

    fn names(&self) -> Names<'_> {
        (&self.scope, &self.key)
    }
}

impl OnShard for Clear<'_> {
    fn apply(&mut self, s: &mut Shard) -> Result<()> {
        let (id, scope) = (&self.id, self.scope.as_deref());
        s.accepting()?;
        let slot = s.live(id, true)?;
        let before = slot.state.footprint();
        slot.state.clear(scope);
        let (after, written) = (slot.state.footprint(), slot.written);
        s.resized(before, after);
        if written {
            s.changes += 1;
            s.outbox.clear(id.locator(), scope.is_none());
        }
        Ok(())
    }

    fn names(&self) -> Names<'_> {
        (self.scope.as_deref().unwrap_or_default(), "")
    }
}

impl OnShard for Keys<'_> {
    fn apply(&mut self, s: &mut Shard) -> Result<Vec<String>> {
        Ok(s.live(&self.id, true)?.state.keys(&self.scope))
    }
}

impl OnShard for Update<'_> {
    /// Runs the step on the current value and stores what it answers (`None` removes the
    /// key). On an error or a panic in the step the session is untouched, and nothing is
    /// described yet.
    fn apply(&mut self, s: &mut Shard) -> Result<Option<Vec<u8>>> {
        // The step runs once: taken out, one that refuses left in its place (a box of nothing,
        // so no allocation).
        let step = std::mem::replace(&mut self.f, Box::new(|_| Err(SessionError::internal("an update ran twice"))));
        let (scope, key) = (&*self.scope, &*self.key);
        s.write(&self.id, |state, room| {
            let new = step(state.get(scope, key))?;
            match &new {
                Some(value) => state.set_within(scope, key, value, room)?,
                None => {
                    state.remove(scope, key);
                }
            }
            Ok(new)
        })
    }

    fn names(&self) -> Names<'_> {
        (&self.scope, &self.key)
    }
}

impl OnShard for Increment<'_> {
    /// In place: no closure to box, no JSON round trip through the caller. Decoding and
    /// limits as a generic update's.
    fn apply(&mut self, s: &mut Shard) -> Result<i64> {
        let (scope, key, by) = (&*self.scope, &*self.key, self.by);
        s.write(&self.id, |state, room| {
            let current = match state.get(scope, key) {
                Some(bytes) => {
                    serde_json::from_slice::<i64>(bytes).map_err(|e| SessionError::WrongType(e.to_string()))?
                }
                None => 0,
            };
            let new = current.saturating_add(by);
            state.set_within(scope, key, itoa::Buffer::new().format(new).as_bytes(), room)?;
            Ok(new)
        })
    }

    fn names(&self) -> Names<'_> {
        (&self.scope, &self.key)
    }
}

impl OnShard for Login {
    fn apply(&mut self, s: &mut Shard) -> Result<SessionInfo> {
        if self.userid == 0 {
            return Err(SessionError::InvalidUserId);
        }
        s.accepting()?;
        let (info, index) = s.rotate(&self.id, self.userid)?;
        // A session never written before is recorded whole (a written one's move was recorded).
        if !std::mem::replace(&mut s.sessions[index].written, true) {
            s.outbox.put(info.id.locator(), index);
        }
        s.changes += 1;
        Ok(info)
    }
}

impl OnShard for Logout {
    fn apply(&mut self, s: &mut Shard) -> Result<SessionInfo> {
        s.accepting()?;
        let (info, index) = s.rotate(&self.id, 0)?;
        if !s.env.logout_clears_data {
            return Ok(info);
        }
        let slot = &mut s.sessions[index];
        let before = slot.state.footprint();
        slot.state.clear(None);
        let (after, written) = (slot.state.footprint(), slot.written);
        s.resized(before, after);
        if written {
            s.changes += 1;
            // After the `Rotate`: a crash between the two records (an unanswered logout)
            // leaves the data only under the new id, which no client has learnt.
            s.outbox.clear(info.id.locator(), true);
        }
        Ok(info)
    }
}

impl OnShard for SetPersistent {
    fn apply(&mut self, s: &mut Shard) -> Result<SessionInfo> {
        let (id, persistent) = (&self.id, self.persistent);
        s.accepting()?;
        let index = s.live_index(id, true)?;
        let slot = &mut s.sessions[index];
        if persistent && slot.state.userid == 0 {
            return Err(SessionError::NotLoggedIn);
        }
        slot.state.persistent = persistent;
        let (info, written) = (info(id, slot, &s.env.lifetimes), slot.written);
        if written {
            s.changes += 1;
            s.outbox.persist(id.locator(), persistent);
        }
        s.emit(info.userid, id.locator(), Event::RememberMe(persistent));
        Ok(info)
    }
}

impl OnShard for Info {
    fn apply(&mut self, s: &mut Shard) -> Result<SessionInfo> {
        let index = s.live_index(&self.id, false)?;
        Ok(s.info(&self.id, &s.sessions[index]))
    }
}

impl<M: OnShard> OnShard for Looked<M> {
    fn apply(&mut self, s: &mut Shard) -> Result<Self::Reply> {
        let Some(id) = self.0.session() else { return Err(SessionError::internal("a lookup without a session")) };
        let info = Info { id: *id }.apply(s);
        Ok((info, self.0.apply(s)))
    }

    fn names(&self) -> Names<'_> {
        self.0.names()
    }
}

impl OnShard for Touch {
    fn apply(&mut self, s: &mut Shard) -> Result<SessionInfo> {
        let index = s.live_index(&self.id, true)?;
        Ok(s.info(&self.id, &s.sessions[index]))
    }
}

impl OnShard for Destroy {
    /// Whether it existed (an expired one no longer does).
    fn apply(&mut self, s: &mut Shard) -> Result<bool> {
        s.accepting()?;
        let Some(index) = s.sessions.get_index_of(self.id.locator()) else { return Ok(false) };
        let now = s.now();
        if s.sessions[index].state.is_expired(&s.env.lifetimes, now) {
            s.expire(index);
            return Ok(false);
        }
        s.end(index, Event::Destroyed);
        Ok(true)
    }
}

impl OnShard for LogoutUser {
    /// Ends every session of the user in this shard; how many.
    fn apply(&mut self, s: &mut Shard) -> Result<usize> {
        s.accepting()?;
        let locators: Vec<Locator> =
            s.by_user.get(&self.userid).map(|set| set.iter().copied().collect()).unwrap_or_default();
        Ok(locators.iter().filter(|locator| revoke(s, locator)).count())
    }

    fn route(self, backend: &MemoryBackend) -> impl Future<Output = Result<usize>> + Send {
        backend.on_every_shard(self)
    }
}

impl OnShard for EraseUser {
    /// Ends every session of the user in this shard, as `LogoutUser` does; how many. Their
    /// files are rewritten afterwards, engine-wide ([`MemoryBackend::erasure`]).
    fn apply(&mut self, s: &mut Shard) -> Result<usize> {
        LogoutUser { userid: self.userid }.apply(s)
    }

    fn route(self, backend: &MemoryBackend) -> impl Future<Output = Result<usize>> + Send {
        backend.erasure(self.userid, self)
    }
}

impl EveryShard for EraseUser {
    fn merge(parts: Vec<usize>, _: &[u64], _: u64) -> usize {
        parts.into_iter().sum()
    }
}

/// Ends the session under `locator` (one of a user's); whether it was there.
fn revoke(s: &mut Shard, locator: &Locator) -> bool {
    let Some(index) = s.sessions.get_index_of(locator) else { return false };
    s.end(index, Event::Revoked);
    true
}

impl EveryShard for LogoutUser {
    fn merge(parts: Vec<usize>, _: &[u64], _: u64) -> usize {
        parts.into_iter().sum()
    }
}

impl OnShard for Revoke {
    /// Ends the session of the user that the handle names, if it is in this shard.
    fn apply(&mut self, s: &mut Shard) -> Result<bool> {
        s.accepting()?;
        let keyring = &s.env.keyring;
        let found = s.by_user.get(&self.userid).and_then(|set| set.iter().find(|l| keyring.handle(l) == self.handle));
        let Some(found) = found.copied() else { return Ok(false) };
        Ok(revoke(s, &found))
    }

    fn route(self, backend: &MemoryBackend) -> impl Future<Output = Result<bool>> + Send {
        backend.on_every_shard(self)
    }
}

impl EveryShard for Revoke {
    fn merge(parts: Vec<bool>, _: &[u64], _: u64) -> bool {
        parts.into_iter().any(|ended| ended)
    }
}

impl OnShard for SessionsOf {
    /// The live sessions of the user in this shard.
    fn apply(&mut self, s: &mut Shard) -> Result<Vec<UserSession>> {
        let (now, userid) = (s.now(), self.userid);
        let Some(locators) = s.by_user.get(&userid) else { return Ok(Vec::new()) };
        let (env, lifetimes) = (s.env(), &s.env().lifetimes);
        Ok(locators
            .iter()
            .filter_map(|l| s.sessions.get(l).map(|slot| (l, &slot.state)))
            .filter(|(_, state)| !state.is_expired(lifetimes, now))
            .map(|(l, state)| UserSession {
                handle: env.keyring.handle(l),
                userid,
                label: crate::state::device_value(state, crate::names::LABEL_KEY),
                ip: crate::state::device_value(state, crate::names::IP_KEY),
                persistent: state.persistent,
                created: to_system_time(state.created_ms),
                last_access: to_system_time(state.last_access_ms),
                expires: to_system_time(state.expires_ms(lifetimes)),
            })
            .collect())
    }

    fn route(self, backend: &MemoryBackend) -> impl Future<Output = Result<Vec<UserSession>>> + Send {
        backend.on_every_shard(self)
    }
}

impl EveryShard for SessionsOf {
    fn merge(parts: Vec<Vec<UserSession>>, _: &[u64], _: u64) -> Vec<UserSession> {
        let mut sessions: Vec<UserSession> = parts.into_iter().flatten().collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.last_access));
        sessions
    }
}

impl OnShard for Sweep {
    fn apply(&mut self, s: &mut Shard) -> Result<usize> {
        Ok(s.sweep_all())
    }

    fn route(self, backend: &MemoryBackend) -> impl Future<Output = Result<usize>> + Send {
        backend.on_every_shard(self)
    }
}

impl EveryShard for Sweep {
    fn merge(parts: Vec<usize>, _: &[u64], _: u64) -> usize {
        parts.into_iter().sum()
    }
}

impl OnShard for Stats {
    fn apply(&mut self, s: &mut Shard) -> Result<EngineStats> {
        let stats = s.stats();
        Ok(EngineStats { sessions: stats.sessions, shards: vec![stats], log_fsyncs: 0 })
    }

    fn route(self, backend: &MemoryBackend) -> impl Future<Output = Result<EngineStats>> + Send {
        backend.refresh_gauges();
        backend.on_every_shard(self)
    }
}

impl EveryShard for Stats {
    const COUNTED: bool = false;

    fn merge(parts: Vec<EngineStats>, restarts: &[u64], log_fsyncs: u64) -> EngineStats {
        let mut stats = EngineStats { log_fsyncs, ..EngineStats::default() };
        for (shard, part) in parts.into_iter().enumerate() {
            for mut s in part.shards {
                s.restarts = restarts.get(shard).copied().unwrap_or(0);
                stats.sessions += s.sessions;
                stats.shards.push(s);
            }
        }
        stats
    }
}

/// The session logic alone, on one shard: no actors, time from a manual clock.
#[cfg(test)]
mod tests {

    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::id::Keyring;
    use crate::id::SessionId;
    use crate::memory::host::Core;
    use crate::memory::{Hosting, Placement};

    /// The operations under the names the tests read best, each through its one definition.
    impl Shard {
        fn create(&mut self, id: SessionId) -> Result<SessionInfo> {
            Create { id }.apply(self)
        }
        fn get(&mut self, id: &SessionId, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
            Get { id: *id, scope: scope.into(), key: key.into() }.apply(self)
        }
        fn set(&mut self, id: &SessionId, scope: &str, key: &str, value: &[u8]) -> Result<()> {
            Set { id: *id, scope: scope.into(), key: key.into(), value: value.to_vec() }.apply(self)
        }
        fn remove(&mut self, id: &SessionId, scope: &str, key: &str) -> Result<bool> {
            Remove { id: *id, scope: scope.into(), key: key.into() }.apply(self)
        }
        fn clear(&mut self, id: &SessionId, scope: Option<&str>) -> Result<()> {
            Clear { id: *id, scope: scope.map(Into::into) }.apply(self)
        }
        fn keys(&mut self, id: &SessionId, scope: &str) -> Result<Vec<String>> {
            Keys { id: *id, scope: scope.into() }.apply(self)
        }
        fn update(&mut self, id: &SessionId, scope: &str, key: &str, f: UpdateFn) -> Result<Option<Vec<u8>>> {
            Update { id: *id, scope: scope.into(), key: key.into(), f }.apply(self)
        }
        fn login(&mut self, id: &SessionId, userid: u64) -> Result<SessionInfo> {
            Login { id: *id, userid }.apply(self)
        }
        fn logout(&mut self, id: &SessionId) -> Result<SessionInfo> {
            Logout { id: *id }.apply(self)
        }
        fn set_persistent(&mut self, id: &SessionId, persistent: bool) -> Result<SessionInfo> {
            SetPersistent { id: *id, persistent }.apply(self)
        }
        fn info_of(&mut self, id: &SessionId, touch: bool) -> Result<SessionInfo> {
            if touch { Touch { id: *id }.apply(self) } else { Info { id: *id }.apply(self) }
        }
        fn destroy(&mut self, id: &SessionId) -> Result<bool> {
            Destroy { id: *id }.apply(self)
        }
        fn logout_user(&mut self, userid: u64) -> Result<usize> {
            LogoutUser { userid }.apply(self)
        }
        fn sessions_of(&mut self, userid: u64) -> Vec<UserSession> {
            SessionsOf { userid }.apply(self).unwrap()
        }
    }

    const T0: u64 = 1_700_000_000_000;

    /// An engine of `shards` shards without actors, on a manual clock, holding at most
    /// `max_sessions` sessions in all.
    fn hosting_with(shards: usize, max_sessions: usize) -> (Arc<Hosting>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(T0));
        let mut config = Config::default();
        config.limits.max_sessions = max_sessions;
        config.session.shards = shards;
        let keyring = Keyring::from_secrets(b"shard unit test secret, 32 bytes or more", &[]).unwrap();
        let sealer = Arc::new(crate::seal::Sealer::new(&keyring, config.storage.encrypt));
        (Arc::new(Hosting::new(config, keyring, sealer, clock.clone(), Placement::default(), None, None)), clock)
    }

    /// Shard 0 of such an engine and what moves with it.
    fn core_with(shards: usize, max_sessions: usize) -> (Core, Arc<ManualClock>) {
        let (hosting, clock) = hosting_with(shards, max_sessions);
        (Core::new(0, hosting, crate::snapshot::Recovered::default()), clock)
    }

    /// The shard alone (its outbox never delivered: no log, no subscriber).
    fn shard_with(shards: usize, max_sessions: usize) -> (Shard, Arc<ManualClock>) {
        let (core, clock) = core_with(shards, max_sessions);
        (core.shard, clock)
    }

    fn shard() -> (Shard, Arc<ManualClock>) {
        shard_with(1, 1_000)
    }

    /// The idle lifetime of a session that is not remember-me.
    fn ttl() -> Duration {
        Config::default().session.volatile_ttl
    }

    fn new_session(s: &mut Shard) -> SessionId {
        let id = s.env().id_in(s.index());
        s.create(id).unwrap().id
    }

    /// A session written once, so snapshots take it.
    fn written(s: &mut Shard) -> SessionId {
        let id = new_session(s);
        s.set(&id, "a", "k", b"1").unwrap();
        id
    }

    #[test]
    fn values_live_in_independent_scopes() {
        let (mut s, _) = shard();
        let id = new_session(&mut s);
        s.set(&id, "cart", "n", b"1").unwrap();
        s.set(&id, "stats", "n", b"2").unwrap();
        assert_eq!(s.get(&id, "cart", "n").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.keys(&id, "stats").unwrap(), ["n"]);
        assert!(s.remove(&id, "cart", "n").unwrap());
        assert_eq!(s.get(&id, "cart", "n").unwrap(), None);
        assert_eq!(s.get(&id, "stats", "n").unwrap().as_deref(), Some(&b"2"[..]));
        s.clear(&id, None).unwrap();
        assert!(s.keys(&id, "stats").unwrap().is_empty());
    }

    #[test]
    fn a_second_create_under_one_id_is_refused() {
        let (mut s, _) = shard();
        let id = new_session(&mut s);
        assert_eq!(s.create(id), Err(SessionError::InvalidId));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn login_rotates_the_id_keeps_the_data_and_indexes_the_user() {
        let (mut s, _) = shard();
        let id = written(&mut s);
        let logged = s.login(&id, 7).unwrap();
        assert_ne!(logged.id, id);
        assert_eq!(s.get(&id, "a", "k"), Err(SessionError::SessionGone));
        assert_eq!(s.get(&logged.id, "a", "k").unwrap().as_deref(), Some(&b"1"[..]));
        let listed = s.sessions_of(7);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].handle, s.env().keyring.handle(logged.id.locator()));
        assert_eq!(s.login(&logged.id, 0), Err(SessionError::InvalidUserId));
    }

    #[test]
    fn remember_me_needs_a_user_and_survives_only_a_relogin_of_that_user() {
        let (mut s, _) = shard();
        let id = new_session(&mut s);
        assert_eq!(s.set_persistent(&id, true), Err(SessionError::NotLoggedIn));
        let id = s.login(&id, 1).unwrap().id;
        assert!(s.set_persistent(&id, true).unwrap().persistent);
        let same = s.login(&id, 1).unwrap();
        assert!(same.persistent);
        let other = s.login(&same.id, 2).unwrap();
        assert!(!other.persistent);
        let out = s.logout(&other.id).unwrap();
        assert_eq!((out.userid, out.persistent), (0, false));
        assert!(s.sessions_of(2).is_empty());
    }

    #[test]
    fn logout_user_ends_every_session_of_that_user_only() {
        let (mut s, _) = shard();
        let a = new_session(&mut s);
        let a = s.login(&a, 5).unwrap().id;
        let b = new_session(&mut s);
        let b = s.login(&b, 5).unwrap().id;
        let c = new_session(&mut s);
        let c = s.login(&c, 6).unwrap().id;
        assert_eq!(s.logout_user(5), Ok(2));
        assert_eq!(s.info_of(&a, false), Err(SessionError::SessionGone));
        assert_eq!(s.info_of(&b, false), Err(SessionError::SessionGone));
        assert_eq!(s.info_of(&c, false).unwrap().userid, 6);
        assert_eq!(s.logout_user(5), Ok(0));
        assert_eq!(s.stats().destroyed, 2);
    }

    #[test]
    fn idle_sessions_expire_and_use_slides_the_expiry() {
        let (mut s, clock) = shard();
        let ttl = ttl();
        let kept = new_session(&mut s);
        let idle = new_session(&mut s);
        clock.advance(ttl - Duration::from_secs(1));
        s.info_of(&kept, true).unwrap();
        clock.advance(Duration::from_secs(2));
        assert!(s.info_of(&kept, false).is_ok());
        assert_eq!(s.get(&idle, "a", "k"), Err(SessionError::SessionGone));
        assert_eq!(s.stats().expired, 1);
    }

    #[test]
    fn the_sweep_drops_only_expired_sessions_in_bounded_steps() {
        let (mut s, clock) = shard();
        let ttl = ttl();
        for _ in 0..10 {
            new_session(&mut s);
        }
        clock.advance(ttl + Duration::from_secs(1));
        let fresh = new_session(&mut s);
        // A step examines at most its budget (the fresh session moves into the examined part).
        let first = s.sweep_step(4);
        assert!((1..=4).contains(&first), "{first}");
        assert_eq!(first + s.sweep_all(), 10);
        assert_eq!(s.len(), 1);
        assert!(s.info_of(&fresh, false).is_ok());
    }

    #[test]
    fn a_full_engine_reclaims_expired_sessions_then_refuses_without_evicting() {
        let (mut s, clock) = shard_with(1, 2);
        let old = new_session(&mut s);
        clock.advance(ttl() + Duration::from_secs(1));
        let a = new_session(&mut s);
        let _b = new_session(&mut s);
        assert_eq!(s.info_of(&old, false), Err(SessionError::SessionGone));
        let id = s.env().keyring.generate();
        assert_eq!(s.create(id), Err(SessionError::Full { limit: 2 }));
        assert!(s.info_of(&a, false).is_ok());
    }

    #[test]
    fn destroy_answers_whether_a_live_session_ended() {
        let (mut s, clock) = shard();
        let id = new_session(&mut s);
        assert_eq!(s.destroy(&id), Ok(true));
        assert_eq!(s.destroy(&id), Ok(false));
        let expired = new_session(&mut s);
        clock.advance(ttl() + Duration::from_secs(1));
        assert_eq!(s.destroy(&expired), Ok(false));
    }

    #[test]
    fn a_panicking_or_failing_update_leaves_the_session_unchanged() {
        let (mut s, _) = shard();
        let id = written(&mut s);
        let panicked = s.guarded(|s| s.update(&id, "a", "k", Box::new(|_| panic!("boom"))));
        assert_eq!(panicked, Err(SessionError::Panicked("boom".into())));
        let failed = s.update(&id, "a", "k", Box::new(|_| Err(SessionError::Codec("no".into()))));
        assert_eq!(failed, Err(SessionError::Codec("no".into())));
        assert_eq!(s.get(&id, "a", "k").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.stats().panics, 1);
    }

    #[test]
    fn only_written_sessions_count_as_changes() {
        let (mut s, _) = shard();
        let id = new_session(&mut s);
        s.get(&id, "a", "k").unwrap();
        assert_eq!(s.changes(), 0, "an unwritten session is not persisted state");
        s.set(&id, "a", "k", b"1").unwrap();
        let after_write = s.changes();
        assert!(after_write > 0);
        s.get(&id, "a", "k").unwrap();
        assert!(s.changes() > after_write, "the slid expiry of a written session is persisted state");
    }

    /// The shard describes events only while someone subscribes; its host publishes them once
    /// the operation ran (a login's device label read then), and a contained panic publishes
    /// nothing it did not do.
    #[test]
    fn the_host_publishes_an_operations_events_after_it_and_only_while_someone_subscribes() {
        use crate::events::{Delivery, EventKind};
        let (hosting, _) = hosting_with(1, 1_000);
        let mut c = Core::new(0, hosting.clone(), crate::snapshot::Recovered::default());
        let id = new_session(&mut c.shard);
        let mut events = hosting.events.subscribe();
        // What the web layer records for `Session::devices`, as JSON.
        let label = br#""Firefox on Linux""#.to_vec();
        let mut record = Set { id, scope: "__draco.device".into(), key: "label".into(), value: label };
        c.apply(false, &mut record).0.unwrap();
        let logged = c.apply(false, &mut Login { id, userid: 7 }).0.unwrap();
        let Some(Delivery::Event(login)) = events.try_recv() else { panic!("no login event") };
        let handle = |id: &SessionId| hosting.env.keyring.handle(id.locator());
        let label = Some("Firefox on Linux".to_owned());
        assert_eq!(login.kind, EventKind::LoggedIn { label, previous: handle(&id) });
        assert_eq!((login.userid, login.session), (7, handle(&logged.id)));
        let mut boom = Update { id: logged.id, scope: "a".into(), key: "k".into(), f: Box::new(|_| panic!("boom")) };
        let boom = c.apply(false, &mut boom);
        assert_eq!(boom.0, Err(SessionError::Panicked("boom".into())));
        assert_eq!(events.try_recv(), None);
        // Run without its host: described, not delivered.
        new_session(&mut c.shard);
        assert_eq!(c.shard.outbox.events(), 1);
        c.apply(false, &mut Info { id: logged.id }).0.unwrap();
        assert!(matches!(events.try_recv(), Some(Delivery::Event(e)) if e.kind == EventKind::Created));
        drop(events);
        assert_eq!(c.shard.destroy(&logged.id), Ok(true));
        assert_eq!(c.shard.outbox.events(), 0, "nobody listens: nothing described");
    }

    /// Steps the run under way to its end, four sessions a step.
    fn finish_run(c: &mut Core) -> crate::memory::snapshot_run::Run {
        loop {
            if let Some(run) = c.run_step(4) {
                return run;
            }
        }
    }

    #[test]
    fn a_run_takes_every_written_session_once() {
        let (mut c, _) = core_with(1, 1_000);
        let ids: Vec<_> = (0..10).map(|_| written(&mut c.shard)).collect();
        new_session(&mut c.shard); // never written: left out
        c.begin_run();
        assert!(c.run_step(4).is_none());
        let run = finish_run(&mut c);
        let mut taken = run.ids();
        taken.sort_unstable();
        let mut expected: Vec<_> = ids.iter().map(|id| *id.locator()).collect();
        expected.sort_unstable();
        assert_eq!(taken, expected);
    }

    #[test]
    fn a_rotation_during_a_run_is_taken_once_under_one_id() {
        let (mut c, _) = core_with(1, 1_000);
        let ids: Vec<_> = (0..8).map(|_| written(&mut c.shard)).collect();
        c.begin_run();
        assert!(c.run_step(4).is_none());
        // Rotate one session the run already took and one it has not reached.
        let early = *c.shard.login(&ids[0], 1).unwrap().id.locator();
        let late = *c.shard.login(&ids[7], 2).unwrap().id.locator();
        let ids: Vec<_> = ids.iter().map(|id| *id.locator()).collect();
        let run = finish_run(&mut c);
        let taken = run.ids();
        assert_eq!(taken.len(), 8, "{taken:?}");
        assert_eq!(taken.iter().filter(|id| **id == ids[0] || **id == early).count(), 1);
        assert_eq!(taken.iter().filter(|id| **id == ids[7] || **id == late).count(), 1);
    }

    #[test]
    fn a_removal_that_moves_the_last_session_into_the_walked_part_takes_it_at_once() {
        let (mut c, _) = core_with(1, 1_000);
        let ids: Vec<_> = (0..8).map(|_| written(&mut c.shard)).collect();
        c.begin_run();
        assert!(c.run_step(4).is_none());
        // The last session moves to index 0, which the run already walked.
        assert_eq!(c.shard.destroy(&ids[0]), Ok(true));
        let run = finish_run(&mut c);
        let taken = run.ids();
        assert!(taken.contains(ids[7].locator()), "the moved session is in the snapshot");
        assert_eq!(taken.len(), 8, "the destroyed one was taken before it ended: {taken:?}");
    }

    /// A creation refused because the engine is full examines a bounded number of sessions, not
    /// the whole shard; the expired ones are still reclaimed over successive attempts.
    #[test]
    fn a_refused_creation_examines_a_bounded_step_and_attempts_still_reclaim() {
        let (mut s, _) = shard_with(1, 1_000);
        for _ in 0..1_000 {
            new_session(&mut s);
        }
        // Ten sessions far along the sweep's order expired long ago (the periodic sweep has not
        // run): the engine is full of 990 live sessions and 10 dead ones.
        for i in 900..910 {
            s.sessions[i].state.last_access_ms = 0;
        }
        let mut refused = 0;
        let created = loop {
            let id = s.env().keyring.generate_in_shard(0, 1);
            let cursor = s.sweep_cursor;
            match s.create(id) {
                Err(SessionError::Full { limit: 1_000 }) => {
                    refused += 1;
                    // Each refusal walked one step of 64 sessions from where the last one stopped.
                    assert_eq!(s.sweep_cursor, cursor + Shard::CREATE_SWEEP_BUDGET);
                    assert!(refused < 100, "never reclaimed");
                }
                other => break other.unwrap().id,
            }
        };
        assert_eq!(refused, 900 / Shard::CREATE_SWEEP_BUDGET);
        assert_eq!(s.stats().expired, 10);
        assert_eq!(s.len(), 991);
        assert!(s.info_of(&created, false).is_ok());
        for _ in 0..9 {
            new_session(&mut s);
        }
        assert_eq!(s.len(), 1_000);
    }
}

/// The memory budget (`budget.rs`) on one shard: evictions, refusals, the anonymous size cap,
/// and the kept estimate against one counted afresh.
#[cfg(test)]
mod budget_tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::error::Unavailable;
    use crate::id::{Keyring, SessionId};
    use crate::memory::env::Env;

    /// Shard 0 of a one-shard engine on a manual clock, with `edit` made to its config.
    fn shard(edit: impl FnOnce(&mut Config)) -> (Shard, Arc<ManualClock>) {
        let mut config = Config::default();
        config.session.shards = 1;
        edit(&mut config);
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let keyring = Keyring::from_secrets(b"budget unit test secret, 32 bytes or more", &[]).unwrap();
        let listeners = crate::events::EventHub::new(config.events.capacity).listeners();
        let sealer = Arc::new(crate::seal::Sealer::new(&keyring, config.storage.encrypt));
        (Shard::new(0, Arc::new(Env::new(&config, keyring, sealer, clock.clone(), listeners))), clock)
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
