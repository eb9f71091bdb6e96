//! Shard worker actor: the only owner of its sessions' state. Every operation on a session
//! runs here, one message at a time, so concurrent requests never lose each other's writes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Actor, AsyncContext, Context, Handler};
use indexmap::IndexMap;

use crate::clock::{Clock, to_system_time};
use crate::config::{Config, LimitsConfig};
use crate::error::{Result, SessionError};
use crate::id::{Keyring, SessionId};
use crate::message::*;
use crate::state::{Lifetimes, SessionState};

/// Sessions examined per periodic sweep step: bounds how long one step holds the worker.
const SWEEP_BATCH: usize = 4096;
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
}

/// Owns the sessions of one shard.
pub struct Worker {
    shard: usize,
    shared: Arc<Shared>,
    sessions: IndexMap<Random, Slot, BuildHasherDefault<IdHasher>>,
    by_user: HashMap<u64, Vec<Random>>,
    sweep_cursor: usize,
    stats: ShardStats,
}

impl Worker {
    pub(crate) fn new(shard: usize, shared: Arc<Shared>, restarts: u64) -> Self {
        shared.live[shard].store(0, Ordering::Relaxed);
        Self {
            shard,
            shared,
            sessions: IndexMap::default(),
            by_user: HashMap::new(),
            sweep_cursor: 0,
            stats: ShardStats { restarts, ..ShardStats::default() },
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
            self.remove_index(index);
            self.stats.expired += 1;
            return Err(SessionError::SessionGone);
        }
        let slot = &mut self.sessions[index];
        if touch {
            slot.state.last_access_ms = slot.state.last_access_ms.max(now);
        }
        Ok(slot)
    }

    fn remove_index(&mut self, index: usize) -> Slot {
        let (random, slot) = self.sessions.swap_remove_index(index).expect("index in range");
        self.unindex_user(slot.state.userid, &random);
        self.shared.live[self.shard].fetch_sub(1, Ordering::Relaxed);
        slot
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
        let (old_random, mut slot) =
            self.sessions.swap_remove(id.random()).map(|s| (*id.random(), s)).expect("checked live");
        self.unindex_user(slot.state.userid, &old_random);
        let new_id = self.shared.keyring.generate_in_shard(self.shard, self.shared.shards);
        slot.id = new_id;
        // Remember-me survives a re-login of the same user only: a different user (or a
        // logout) must not inherit it.
        slot.state.persistent &= new_userid != 0 && new_userid == slot.state.userid;
        slot.state.userid = new_userid;
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
                self.remove_index(self.sweep_cursor);
                dropped += 1;
            } else {
                self.sweep_cursor += 1;
            }
        }
        self.stats.expired += dropped as u64;
        dropped
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
                return Err(SessionError::Full { limit });
            }
            w.shared.live[w.shard].fetch_add(1, Ordering::Relaxed);
            let slot = Slot { id: msg.id, state: SessionState::new(w.now()) };
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
            w.live(&msg.id, true)?.state.set(&msg.scope, &msg.key, msg.value, &limits)
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
                Some(value) => slot.state.set(&scope, &key, value.clone(), &limits)?,
                None => {
                    slot.state.remove(&scope, &key);
                }
            }
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
            w.rotate(&msg.id, msg.userid)
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
            Some(index) => {
                w.remove_index(index);
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
                    w.remove_index(index);
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
