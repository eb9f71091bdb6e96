//! Model-based property test: random sequences of engine operations, applied both to a real
//! engine (with snapshots on disk, restarts and a manual clock) and to a plain in-memory model,
//! must give the same observable state: every answer, and for every id ever issued whether it
//! is live, and if so its user id, persistence, timestamps and values in every scope.
//!
//! On failure proptest shrinks the operation list to a short sequence that still diverges.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use draco_session::{Config, ManualClock, Placement, SessionEngine, SessionError, SessionId};
use proptest::prelude::*;

const SECRET: &str = "model test secret, at least 32 bytes long";
const START_MS: u64 = 1_700_000_000_000;
const VOLATILE_MS: u64 = 3_600_000; // "1h"
const PERSISTENT_MS: u64 = 86_400_000; // "1d"
const SCOPES: [&str; 2] = ["a", "b"];
const KEYS: [&str; 3] = ["k0", "k1", "k2"];

#[derive(Debug, Clone)]
enum Op {
    Create,
    Set {
        s: usize,
        scope: usize,
        key: usize,
        value: i64,
    },
    Remove {
        s: usize,
        scope: usize,
        key: usize,
    },
    Increment {
        s: usize,
        scope: usize,
        key: usize,
        by: i64,
    },
    Login {
        s: usize,
        userid: u64,
    },
    Logout {
        s: usize,
    },
    SetPersistent {
        s: usize,
        persistent: bool,
    },
    Destroy {
        s: usize,
    },
    /// Moves the clock forward; the steps straddle both lifetimes.
    Advance {
        ms: u64,
    },
    /// Snapshot, graceful shutdown, and a new engine on the same directory (maybe another
    /// shard count: sessions re-hash on load; workers on their own threads or on this one).
    Restart {
        shards: usize,
        current_thread: bool,
    },
    /// Compares the whole observable state.
    Check,
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..64usize;
    prop_oneof![
        3 => Just(Op::Create),
        4 => (s.clone(), 0..2usize, 0..3usize, -5..5i64).prop_map(|(s, scope, key, value)| Op::Set { s, scope, key, value }),
        2 => (s.clone(), 0..2usize, 0..3usize).prop_map(|(s, scope, key)| Op::Remove { s, scope, key }),
        3 => (s.clone(), 0..2usize, 0..3usize, -3..4i64).prop_map(|(s, scope, key, by)| Op::Increment { s, scope, key, by }),
        2 => (s.clone(), 1..4u64).prop_map(|(s, userid)| Op::Login { s, userid }),
        1 => s.clone().prop_map(|s| Op::Logout { s }),
        2 => (s.clone(), any::<bool>()).prop_map(|(s, persistent)| Op::SetPersistent { s, persistent }),
        1 => s.prop_map(|s| Op::Destroy { s }),
        2 => prop_oneof![
            Just(60_000u64),
            Just(VOLATILE_MS - 1),
            Just(VOLATILE_MS),
            Just(VOLATILE_MS + 1),
            Just(PERSISTENT_MS),
        ]
        .prop_map(|ms| Op::Advance { ms }),
        1 => (1..4usize, any::<bool>()).prop_map(|(shards, current_thread)| Op::Restart { shards, current_thread }),
        2 => Just(Op::Check),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Model {
    userid: u64,
    persistent: bool,
    /// Written at least once (a value or a login): only such sessions are persisted.
    written: bool,
    created: u64,
    last_access: u64,
    values: BTreeMap<(usize, usize), i64>,
}

/// The model of the whole engine.
#[derive(Default)]
struct World {
    now: u64,
    /// Every id ever issued, in order; ops pick one by index.
    ids: Vec<SessionId>,
    live: HashMap<SessionId, Model>,
}

impl World {
    fn expired(&self, m: &Model) -> bool {
        let ttl = if m.persistent { PERSISTENT_MS } else { VOLATILE_MS };
        m.last_access + ttl <= self.now
    }

    /// The live session `id`, expiry slid to now when `touch`; an expired one is dropped.
    fn get(&mut self, id: &SessionId, touch: bool) -> Result<&mut Model, SessionError> {
        if self.live.get(id).is_some_and(|m| self.expired(m)) {
            self.live.remove(id);
        }
        let now = self.now;
        let m = self.live.get_mut(id).ok_or(SessionError::SessionGone)?;
        if touch {
            m.last_access = m.last_access.max(now);
        }
        Ok(m)
    }

    fn pick(&self, s: usize) -> Option<SessionId> {
        (!self.ids.is_empty()).then(|| self.ids[s % self.ids.len()])
    }
}

fn config(dir: &std::path::Path, shards: usize) -> Config {
    Config::from_toml(
        &format!(
            "[session]\nsecret = {SECRET:?}\nshards = {shards}\nvolatile_ttl = \"1h\"\npersistent_ttl = \"1d\"\n\
             sweep_interval = \"1h\"\n[storage]\ndir = {:?}\nsnapshot_interval = \"1h\"\n",
            dir.display().to_string()
        ),
        "model",
    )
    .unwrap()
}

fn start(dir: &std::path::Path, shards: usize, current_thread: bool, clock: &ManualClock) -> SessionEngine {
    let placement = if current_thread { Placement::CurrentThread } else { Placement::DedicatedThreads };
    SessionEngine::builder(config(dir, shards))
        .clock(clock.clone())
        .placement(placement)
        .start()
        .expect("engine starts")
}

fn ms(t: std::time::SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Compares every id ever issued. Reading the values counts as a use in the engine, so the
/// model touches every live session too.
async fn check(engine: &SessionEngine, world: &mut World, step: usize) -> Result<(), TestCaseError> {
    for id in world.ids.clone() {
        let expected = world.get(&id, false).ok().cloned();
        let got = engine.info(&id).await;
        match (&expected, &got) {
            (None, Err(SessionError::SessionGone)) => continue,
            (Some(m), Ok(info)) => {
                prop_assert_eq!(info.id, id);
                prop_assert_eq!(
                    (info.userid, info.persistent, ms(info.created), ms(info.last_access)),
                    (m.userid, m.persistent, m.created, m.last_access),
                    "step {}: metadata of {:?}",
                    step,
                    id
                );
            }
            _ => prop_assert!(false, "step {step}: {id:?} model {expected:?}, engine {got:?}"),
        }
        let m = world.get(&id, true).expect("live").clone();
        for (si, scope) in SCOPES.iter().enumerate() {
            let keys = engine.keys(&id, scope).await.unwrap();
            let expected_keys: Vec<String> =
                m.values.keys().filter(|(s, _)| *s == si).map(|(_, k)| KEYS[*k].to_owned()).collect();
            prop_assert_eq!(&keys, &expected_keys, "step {}: keys of {:?} in {}", step, id, scope);
            for (ki, key) in KEYS.iter().enumerate() {
                let value = engine.get::<i64>(&id, scope, key).await.unwrap();
                prop_assert_eq!(value, m.values.get(&(si, ki)).copied(), "step {}: {:?} {}/{}", step, id, scope, key);
            }
        }
    }
    let stats = engine.stats().await.unwrap();
    prop_assert_eq!(stats.sessions, world.live.len(), "step {}: live session count", step);
    Ok(())
}

#[allow(clippy::too_many_lines, reason = "one match arm per operation of the model: the model reads best whole")]
async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let mut engine = start(dir.path(), 2, false, &clock);
    let mut world = World { now: START_MS, ..World::default() };
    for (step, op) in ops.into_iter().enumerate() {
        let ctx = format!("step {step}: {op:?}");
        match op {
            Op::Create => {
                let info = engine.create().await.unwrap();
                world.ids.push(info.id);
                let now = world.now;
                let m = Model {
                    userid: 0,
                    persistent: false,
                    written: false,
                    created: now,
                    last_access: now,
                    values: BTreeMap::new(),
                };
                world.live.insert(info.id, m);
            }
            Op::Set { s, scope, key, value } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.insert(&id, SCOPES[scope], KEYS[key], &value).await;
                let expected = world.get(&id, true).map(|m| {
                    m.values.insert((scope, key), value);
                    m.written = true;
                });
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Remove { s, scope, key } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.remove(&id, SCOPES[scope], KEYS[key]).await;
                let expected = world.get(&id, true).map(|m| m.values.remove(&(scope, key)).is_some());
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Increment { s, scope, key, by } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.increment(&id, SCOPES[scope], KEYS[key], by).await;
                let expected = world.get(&id, true).map(|m| {
                    let v = m.values.entry((scope, key)).or_insert(0);
                    *v = v.saturating_add(by);
                    m.written = true;
                    *v
                });
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Login { s, userid } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.login(&id, userid).await;
                match world.get(&id, true) {
                    Ok(_) => {
                        let info = got.map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                        prop_assert_ne!(info.id, id);
                        let mut m = world.live.remove(&id).unwrap();
                        m.persistent &= m.userid == userid;
                        m.userid = userid;
                        m.written = true;
                        prop_assert_eq!((info.userid, info.persistent), (m.userid, m.persistent), "{}", ctx);
                        world.ids.push(info.id);
                        world.live.insert(info.id, m);
                    }
                    Err(e) => prop_assert_eq!(got.map(|_| ()), Err(e), "{}", ctx),
                }
            }
            Op::Logout { s } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.logout(&id).await;
                match world.get(&id, true) {
                    Ok(_) => {
                        let info = got.map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                        prop_assert_ne!(info.id, id);
                        let mut m = world.live.remove(&id).unwrap();
                        m.persistent = false;
                        m.userid = 0;
                        prop_assert_eq!((info.userid, info.persistent), (0, false), "{}", ctx);
                        world.ids.push(info.id);
                        world.live.insert(info.id, m);
                    }
                    Err(e) => prop_assert_eq!(got.map(|_| ()), Err(e), "{}", ctx),
                }
            }
            Op::SetPersistent { s, persistent } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.set_persistent(&id, persistent).await.map(|i| i.persistent);
                let expected = world.get(&id, true).and_then(|m| {
                    if persistent && m.userid == 0 {
                        return Err(SessionError::NotLoggedIn);
                    }
                    m.persistent = persistent;
                    Ok(persistent)
                });
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Destroy { s } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.destroy(&id).await;
                // An expired session no longer exists: destroying it answers false.
                let expected = Ok(world.get(&id, false).is_ok());
                world.live.remove(&id);
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Advance { ms } => {
                clock.advance(Duration::from_millis(ms));
                world.now += ms;
            }
            Op::Restart { shards, current_thread } => {
                engine.snapshot().await.map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                engine.shutdown().await;
                engine = start(dir.path(), shards, current_thread, &clock);
                // Only written sessions are persisted; expired ones are dropped on load.
                let now = world.now;
                world.live.retain(|_, m| {
                    let ttl = if m.persistent { PERSISTENT_MS } else { VOLATILE_MS };
                    m.written && m.last_access + ttl > now
                });
            }
            Op::Check => check(&engine, &mut world, step).await?,
        }
    }
    check(&engine, &mut world, usize::MAX).await?;
    engine.shutdown().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 2048, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_model(ops in prop::collection::vec(op(), 1..48)) {
        actix_rt::System::new().block_on(run(ops))?;
    }
}

/// Cases the property test once shrank to, kept as plain tests.
#[test]
fn destroying_an_expired_unswept_session_answers_false() {
    let ops = vec![Op::Create, Op::Advance { ms: VOLATILE_MS }, Op::Destroy { s: 0 }];
    actix_rt::System::new().block_on(run(ops)).unwrap();
}
