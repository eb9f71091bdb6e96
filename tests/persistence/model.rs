//! Model-based property test: random sequences of engine operations, applied both to a real
//! engine (with snapshots on disk, restarts, crashes and a manual clock) and to a plain
//! in-memory model, must give the same observable state: every answer, and for every id ever
//! issued whether it is live, and if so its user id, persistence, timestamps and values in
//! every scope.
//!
//! A crash is a copy of the data directory taken while the engine runs (every acknowledged
//! change is in the kernel by then: what a `kill -9` would leave), and a new engine on the
//! copy: it must hold every written session as the model has it, with its last access as of
//! its last log record or snapshot, and nothing else. Both `storage.log` modes that log
//! (`"1s"` and `"always"`) run the model.
//!
//! On failure proptest shrinks the operation list to a short sequence that still diverges.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use draco_session::{Config, ManualClock, Placement, SessionEngine, SessionError, SessionId, config::LogMode};
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
    /// A read: slides the expiry in memory only (nothing is logged).
    Get {
        s: usize,
        scope: usize,
        key: usize,
    },
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
    /// Clears one scope, or (`None`) every scope.
    Clear {
        s: usize,
        scope: Option<usize>,
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
    /// Ends every session of the user ("log out everywhere").
    LogoutUser {
        userid: u64,
    },
    /// Moves the clock forward; the steps straddle both lifetimes (short ones mostly, so
    /// sessions live long enough to be used again).
    Advance {
        ms: u64,
    },
    /// Snapshot, graceful shutdown, and a new engine on the same directory (maybe another
    /// shard count: sessions re-hash on load; workers on their own threads or on this one).
    Restart {
        shards: usize,
        current_thread: bool,
    },
    /// A snapshot of every changed shard (what a crash then finds holds every session as is).
    Snapshot,
    /// A `kill -9`: a new engine (same configuration) on a copy of the data directory taken
    /// while the engine runs.
    Crash,
    /// Compares the whole observable state.
    Check,
}

fn op() -> impl Strategy<Value = Op> {
    // Which session: counted back from the newest id, mostly one of the last few (live, and
    // with values to remove or log back after a crash), sometimes any (rotated-away ones too).
    let s = prop_oneof![2 => 0..3usize, 1 => 0..64usize];
    prop_oneof![
        4 => Just(Op::Create),
        2 => (s.clone(), 0..2usize, 0..3usize).prop_map(|(s, scope, key)| Op::Get { s, scope, key }),
        4 => (s.clone(), 0..2usize, 0..3usize, -5..5i64).prop_map(|(s, scope, key, value)| Op::Set { s, scope, key, value }),
        3 => (s.clone(), 0..2usize, 0..3usize).prop_map(|(s, scope, key)| Op::Remove { s, scope, key }),
        3 => (s.clone(), 0..2usize, 0..3usize, -3..4i64).prop_map(|(s, scope, key, by)| Op::Increment { s, scope, key, by }),
        1 => (s.clone(), prop::option::of(0..2usize)).prop_map(|(s, scope)| Op::Clear { s, scope }),
        2 => (s.clone(), 1..4u64).prop_map(|(s, userid)| Op::Login { s, userid }),
        1 => s.clone().prop_map(|s| Op::Logout { s }),
        2 => (s.clone(), any::<bool>()).prop_map(|(s, persistent)| Op::SetPersistent { s, persistent }),
        1 => s.prop_map(|s| Op::Destroy { s }),
        1 => (1..4u64).prop_map(|userid| Op::LogoutUser { userid }),
        2 => prop_oneof![
            4 => Just(60_000u64),
            2 => Just(VOLATILE_MS / 2),
            1 => Just(VOLATILE_MS - 1),
            1 => Just(VOLATILE_MS),
            1 => Just(VOLATILE_MS + 1),
            1 => Just(PERSISTENT_MS),
        ]
        .prop_map(|ms| Op::Advance { ms }),
        1 => (1..4usize, any::<bool>()).prop_map(|(shards, current_thread)| Op::Restart { shards, current_thread }),
        1 => Just(Op::Snapshot),
        3 => Just(Op::Crash),
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
    /// The last access a crash keeps: reads slide the expiry in memory only, so a new engine
    /// on a crash image has the time of the session's last log record or snapshot.
    persisted_access: u64,
    values: BTreeMap<(usize, usize), i64>,
}

impl Model {
    fn expired(&self, now: u64) -> bool {
        let ttl = if self.persistent { PERSISTENT_MS } else { VOLATILE_MS };
        self.last_access + ttl <= now
    }

    /// A change to the session was logged (only a written session's are), at its last access.
    fn logged(&mut self) {
        if self.written {
            self.persisted_access = self.last_access;
        }
    }

    /// A value or a login was written: the session is persisted from now on.
    fn wrote(&mut self) {
        self.written = true;
        self.logged();
    }
}

/// The model of the whole engine.
#[derive(Default)]
struct World {
    now: u64,
    /// Every id ever issued, in order; ops pick one by index from the newest.
    ids: Vec<SessionId>,
    live: HashMap<SessionId, Model>,
}

impl World {
    /// The live session `id`, expiry slid to now when `touch`; an expired one is dropped.
    fn get(&mut self, id: &SessionId, touch: bool) -> Result<&mut Model, SessionError> {
        if self.live.get(id).is_some_and(|m| m.expired(self.now)) {
            self.live.remove(id);
        }
        let now = self.now;
        let m = self.live.get_mut(id).ok_or(SessionError::SessionGone)?;
        if touch {
            m.last_access = m.last_access.max(now);
        }
        Ok(m)
    }

    /// The `s`-th newest id (modulo their number).
    fn pick(&self, s: usize) -> Option<SessionId> {
        (!self.ids.is_empty()).then(|| self.ids[self.ids.len() - 1 - s % self.ids.len()])
    }

    /// A snapshot holds every session as it is now (a shard not changed since its last one has
    /// nothing newer: any use of a written session changes its shard).
    fn snapshotted(&mut self) {
        for m in self.live.values_mut() {
            m.persisted_access = m.last_access;
        }
    }

    /// A new engine on the data directory: sessions never written were never persisted; the
    /// others are back with their last persisted access, unless that has them expired (they
    /// are dropped on load).
    fn reloaded(&mut self) {
        let now = self.now;
        self.live.retain(|_, m| {
            m.last_access = m.persisted_access;
            m.written && !m.expired(now)
        });
    }
}

/// Snapshots only when the model says (the interval is far off) and no robot patterns to
/// compile (no requests here): an engine starts quickly.
fn config(dir: &Path, shards: usize, log: LogMode) -> Config {
    let mut config = Config::from_toml(
        &format!(
            "[session]\nsecret = {SECRET:?}\nshards = {shards}\nvolatile_ttl = \"1h\"\npersistent_ttl = \"1d\"\n\
             sweep_interval = \"1h\"\n[storage]\ndir = {:?}\nsnapshot_interval = \"1h\"\n\
             [robots]\ndetect = false\n",
            dir.display().to_string()
        ),
        "model",
    )
    .unwrap();
    config.storage.log = log;
    config
}

/// Copies the directory `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The engine under test, its data directory, and what it was started with.
struct Subject {
    engine: SessionEngine,
    dir: tempfile::TempDir,
    clock: ManualClock,
    log: LogMode,
    shards: usize,
    current_thread: bool,
}

impl Subject {
    fn new(clock: ManualClock, log: LogMode) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let engine = Self::start(dir.path(), &clock, log, 2, false);
        Self { engine, dir, clock, log, shards: 2, current_thread: false }
    }

    fn start(dir: &Path, clock: &ManualClock, log: LogMode, shards: usize, current_thread: bool) -> SessionEngine {
        let placement = if current_thread { Placement::CurrentThread } else { Placement::DedicatedThreads };
        SessionEngine::builder(config(dir, shards, log))
            .clock(clock.clone())
            .placement(placement)
            .start()
            .expect("engine starts")
    }

    /// Snapshot, graceful shutdown, and a new engine on the same directory.
    async fn restart(&mut self, shards: usize, current_thread: bool) -> Result<(), SessionError> {
        self.engine.snapshot().await?;
        self.engine.shutdown().await;
        (self.shards, self.current_thread) = (shards, current_thread);
        self.engine = Self::start(self.dir.path(), &self.clock, self.log, shards, current_thread);
        Ok(())
    }

    /// A crash image of the running engine, and a new engine on it. The old engine is shut
    /// down only after the copy (its final snapshot goes to its own directory, deleted then).
    async fn crash(&mut self) {
        let image = tempfile::tempdir().unwrap();
        copy_dir(self.dir.path(), image.path()).expect("crash image copied");
        self.engine.shutdown().await;
        self.engine = Self::start(image.path(), &self.clock, self.log, self.shards, self.current_thread);
        self.dir = image;
    }
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

/// An error answered at step `ctx` as the test's failure.
fn failed(ctx: &str) -> impl FnOnce(SessionError) -> TestCaseError + '_ {
    move |e| TestCaseError::fail(format!("{ctx}: {e}"))
}

#[allow(clippy::too_many_lines, reason = "one match arm per operation of the model: the model reads best whole")]
async fn play(subject: &mut Subject, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut world = World { now: START_MS, ..World::default() };
    for (step, op) in ops.into_iter().enumerate() {
        let engine = &subject.engine;
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
                    persisted_access: now,
                    values: BTreeMap::new(),
                };
                world.live.insert(info.id, m);
            }
            Op::Get { s, scope, key } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.get::<i64>(&id, SCOPES[scope], KEYS[key]).await;
                let expected = world.get(&id, true).map(|m| m.values.get(&(scope, key)).copied());
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Set { s, scope, key, value } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.insert(&id, SCOPES[scope], KEYS[key], &value).await;
                let expected = world.get(&id, true).map(|m| {
                    m.values.insert((scope, key), value);
                    m.wrote();
                });
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Remove { s, scope, key } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.remove(&id, SCOPES[scope], KEYS[key]).await;
                let expected = world.get(&id, true).map(|m| {
                    let removed = m.values.remove(&(scope, key)).is_some();
                    if removed {
                        m.logged();
                    }
                    removed
                });
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Increment { s, scope, key, by } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.increment(&id, SCOPES[scope], KEYS[key], by).await;
                let expected = world.get(&id, true).map(|m| {
                    let v = m.values.entry((scope, key)).or_insert(0);
                    *v = v.saturating_add(by);
                    let v = *v;
                    m.wrote();
                    v
                });
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Clear { s, scope } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.clear(&id, scope.map(|scope| SCOPES[scope])).await;
                let expected = world.get(&id, true).map(|m| {
                    m.values.retain(|(si, _), _| scope.is_some_and(|scope| scope != *si));
                    m.logged();
                });
                prop_assert_eq!(got, expected, "{}", ctx);
            }
            Op::Login { s, userid } => {
                let Some(id) = world.pick(s) else { continue };
                let got = engine.login(&id, userid).await;
                match world.get(&id, true) {
                    Ok(_) => {
                        let info = got.map_err(failed(&ctx))?;
                        prop_assert_ne!(info.id, id);
                        let mut m = world.live.remove(&id).unwrap();
                        m.persistent &= m.userid == userid;
                        m.userid = userid;
                        m.wrote();
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
                        let info = got.map_err(failed(&ctx))?;
                        prop_assert_ne!(info.id, id);
                        let mut m = world.live.remove(&id).unwrap();
                        m.persistent = false;
                        m.userid = 0;
                        m.logged();
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
                    m.logged();
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
            Op::LogoutUser { userid } => {
                let got = engine.logout_user(userid).await;
                // Expired sessions not dropped yet are ended (and counted) too.
                let before = world.live.len();
                world.live.retain(|_, m| m.userid != userid);
                prop_assert_eq!(got, Ok(before - world.live.len()), "{}", ctx);
            }
            Op::Advance { ms } => {
                subject.clock.advance(Duration::from_millis(ms));
                world.now += ms;
            }
            Op::Restart { shards, current_thread } => {
                subject.restart(shards, current_thread).await.map_err(failed(&ctx))?;
                world.snapshotted();
                world.reloaded();
            }
            Op::Snapshot => {
                engine.snapshot().await.map_err(failed(&ctx))?;
                world.snapshotted();
            }
            Op::Crash => {
                subject.crash().await;
                world.reloaded();
            }
            Op::Check => check(engine, &mut world, step).await?,
        }
    }
    check(&subject.engine, &mut world, usize::MAX).await
}

/// Plays `ops` on a new engine logging as `log`, and shuts the engine down, failed or not.
async fn run(ops: Vec<Op>, log: LogMode) -> Result<(), TestCaseError> {
    let mut subject = Subject::new(ManualClock::new(START_MS), log);
    let result = play(&mut subject, ops).await;
    subject.engine.shutdown().await;
    result
}

/// [`run`] on a new actix system.
fn run_blocking(ops: Vec<Op>, log: LogMode) -> Result<(), TestCaseError> {
    actix_rt::System::new().block_on(run(ops, log))
}

fn every_second() -> LogMode {
    LogMode::Every(Duration::from_secs(1))
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, max_shrink_iters: 2048, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_model(ops in ops()) {
        run_blocking(ops, every_second())?;
    }

    #[test]
    fn engine_matches_the_model_logging_always(ops in ops()) {
        run_blocking(ops, LogMode::Always)?;
    }
}

/// Cases the property test once shrank to, kept as plain tests.
#[test]
fn destroying_an_expired_unswept_session_answers_false() {
    let ops = vec![Op::Create, Op::Advance { ms: VOLATILE_MS }, Op::Destroy { s: 0 }];
    run_blocking(ops, every_second()).unwrap();
}

/// Reads slide the expiry in memory only: after a crash, a session read but not changed since
/// its last log record expires as of that record (the model says so: the session is gone),
/// unless a snapshot took it after the read.
#[test]
fn a_crash_forgets_reads_since_the_last_record_but_not_a_snapshot() {
    let write_then_read = [
        Op::Create,
        Op::Set { s: 0, scope: 0, key: 0, value: 1 },
        Op::Advance { ms: VOLATILE_MS / 2 },
        Op::Get { s: 0, scope: 0, key: 0 },
    ];
    let crash_later = [Op::Advance { ms: VOLATILE_MS / 2 }, Op::Crash, Op::Check];
    for log in [every_second(), LogMode::Always] {
        for snapshot in [false, true] {
            let ops = write_then_read.iter().chain(snapshot.then_some(&Op::Snapshot)).chain(&crash_later);
            run_blocking(ops.cloned().collect(), log).unwrap();
        }
    }
}
