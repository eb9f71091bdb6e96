//! Behaviour of the engine through its public API, without HTTP.
//!
//! One suite for both backends: every `async fn name(b: Backend)` below runs once against the
//! memory backend and once against Redis (the `both!` list at the end; Redis needs the `redis`
//! cargo feature and a `redis-server` on PATH, started once for this binary with one database
//! per test). The `ManualClock` drives expiry for Redis too, because the scripts check expiry
//! by the engine's clock as well as Redis's own. Tests marked memory-only exercise what only
//! the actor backend has: shard workers, their periodic sweep, the supervisor, `start` outside
//! an actix System.

#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use std::collections::HashSet;
use std::time::Duration;

use draco_session::{Config, ManualClock, SessionEngine, SessionError, SessionId};
use futures_util::future::join_all;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn config(shards: usize) -> Config {
    let mut c = Config::default();
    c.session.secret = Some("engine test secret, at least 32 bytes long".into());
    c.session.shards = shards;
    c.storage.persist = false;
    c.storage.dir = std::env::temp_dir().join("draco-session-engine-tests");
    c
}

/// The backend a behaviour test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    #[cfg(feature = "redis")]
    Redis,
    /// A three-node Redis Cluster, database 0 shared by every test of this binary.
    #[cfg(feature = "redis")]
    RedisCluster,
}

impl Backend {
    fn is_memory(self) -> bool {
        self == Backend::Memory
    }

    /// Whether the engine alone uses its store, so store-wide counts are its own.
    fn isolated(self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Backend::RedisCluster => false,
            _ => true,
        }
    }

    /// Starts an engine on this backend (Redis: a database of its own on the shared server).
    async fn start(self, c: Config, clock: Option<ManualClock>) -> SessionEngine {
        #[cfg(feature = "redis")]
        let c = match self {
            Backend::Memory => c,
            Backend::Redis => {
                let mut c = c;
                c.storage.backend = draco_session::StorageBackend::Redis;
                c.storage.redis_url = redis_server::shared().fresh_db_url();
                c
            }
            Backend::RedisCluster => {
                let mut c = c;
                c.storage.backend = draco_session::StorageBackend::Redis;
                c.storage.redis_cluster = true;
                c.storage.redis_url = redis_server::shared_cluster().urls();
                c
            }
        };
        let mut builder = SessionEngine::builder(c);
        if let Some(clock) = clock {
            builder = builder.clock(clock);
        }
        builder.start_async().await.expect("engine starts")
    }

    async fn engine_with_clock(self, c: Config) -> (SessionEngine, ManualClock) {
        let clock = ManualClock::new(1_700_000_000_000);
        (self.start(c, Some(clock.clone())).await, clock)
    }

    async fn engine(self, shards: usize) -> SessionEngine {
        self.engine_with_clock(config(shards)).await.0
    }
}

async fn namespaces_are_independent_and_default_scope_is_system(b: Backend) {
    let e = b.engine(2).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "__system__", "k", &1).await.unwrap();
    e.insert(&s, "cart", "k", &"book").await.unwrap();
    e.insert(&s, "cart", "n", &2).await.unwrap();
    assert_eq!(e.get::<i32>(&s, "__system__", "k").await.unwrap(), Some(1));
    assert_eq!(e.get::<String>(&s, "cart", "k").await.unwrap().as_deref(), Some("book"));
    assert_eq!(e.keys(&s, "cart").await.unwrap(), ["k", "n"]);
    assert!(e.remove(&s, "cart", "k").await.unwrap());
    assert!(!e.remove(&s, "cart", "k").await.unwrap());
    assert_eq!(e.get::<i32>(&s, "__system__", "k").await.unwrap(), Some(1));
    e.clear(&s, Some("cart")).await.unwrap();
    assert!(e.keys(&s, "cart").await.unwrap().is_empty());
    assert_eq!(e.keys(&s, "__system__").await.unwrap(), ["k"]);
    e.clear(&s, None).await.unwrap();
    assert!(e.keys(&s, "__system__").await.unwrap().is_empty());
    assert_eq!(draco_session::DEFAULT_SCOPE, "__system__");
}

async fn values_round_trip_as_typed_and_reject_the_wrong_type(b: Backend) {
    let e = b.engine(1).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "a", "v", &vec![1u8, 2, 3]).await.unwrap();
    assert_eq!(e.get::<Vec<u8>>(&s, "a", "v").await.unwrap(), Some(vec![1, 2, 3]));
    assert!(matches!(e.get::<String>(&s, "a", "v").await, Err(SessionError::Codec(_))));
    assert_eq!(e.get::<i32>(&s, "a", "absent").await.unwrap(), None);
    assert!(matches!(e.insert(&s, "", "k", &1).await, Err(SessionError::InvalidName { what: "scope", .. })));
    assert!(matches!(e.insert(&s, "a", &"k".repeat(300), &1).await, Err(SessionError::InvalidName { .. })));
}

async fn login_needs_a_user_rotates_the_id_and_keeps_the_data(b: Backend) {
    let e = b.engine(4).await;
    let s = e.create().await.unwrap();
    assert_eq!(s.userid, 0);
    e.insert(&s.id, "cart", "items", &["a", "b"]).await.unwrap();
    assert_eq!(e.login(&s.id, 0).await, Err(SessionError::InvalidUserId));
    let logged = e.login(&s.id, 42).await.unwrap();
    assert_ne!(logged.id, s.id);
    assert_eq!(logged.userid, 42);
    assert!(!logged.persistent);
    // The old id is dead at once, for every operation.
    assert_eq!(e.get::<Vec<String>>(&s.id, "cart", "items").await, Err(SessionError::SessionGone));
    assert_eq!(e.insert(&s.id, "cart", "x", &1).await, Err(SessionError::SessionGone));
    assert_eq!(e.info(&s.id).await, Err(SessionError::SessionGone));
    assert_eq!(e.get::<Vec<String>>(&logged.id, "cart", "items").await.unwrap().unwrap(), ["a", "b"]);
    assert_eq!(e.info(&logged.id).await.unwrap().userid, 42);
}

async fn logout_resets_user_and_persistence_rotates_and_keeps_other_data(b: Backend) {
    let e = b.engine(2).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "prefs", "theme", &"dark").await.unwrap();
    let s = e.login(&s, 7).await.unwrap().id;
    assert!(e.set_persistent(&s, true).await.unwrap().persistent);
    let out = e.logout(&s).await.unwrap();
    assert_ne!(out.id, s);
    assert_eq!(out.userid, 0);
    assert!(!out.persistent);
    assert_eq!(e.info(&s).await, Err(SessionError::SessionGone));
    assert_eq!(e.get::<String>(&out.id, "prefs", "theme").await.unwrap().as_deref(), Some("dark"));
    assert!(e.sessions_of(7).await.unwrap().is_empty());
}

async fn only_logged_in_sessions_can_be_persistent(b: Backend) {
    let e = b.engine(1).await;
    let s = e.create().await.unwrap().id;
    assert_eq!(e.set_persistent(&s, true).await, Err(SessionError::NotLoggedIn));
    assert!(!e.set_persistent(&s, false).await.unwrap().persistent);
    let s = e.login(&s, 3).await.unwrap().id;
    let info = e.set_persistent(&s, true).await.unwrap();
    assert!(info.persistent);
    // Re-login by the same user keeps remember-me; another user does not inherit it.
    let same = e.login(&s, 3).await.unwrap();
    assert!(same.persistent);
    let other = e.login(&same.id, 4).await.unwrap();
    assert!(!other.persistent);
    assert_eq!(other.userid, 4);
}

async fn operations_in_flight_on_a_rotated_or_destroyed_id_get_session_gone(b: Backend) {
    let e = b.engine(1).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "a", "k", &0).await.unwrap();
    // Queue writes on the old id behind the login (memory: in the same worker's mailbox;
    // Redis: racing it on the wire, so each lands either before the rotation or not at all).
    let login = e.login(&s, 9);
    let values: Vec<i32> = (0..50).collect();
    let writes: Vec<_> = values.iter().map(|i| e.insert(&s, "a", "k", i)).collect();
    let (logged, writes) = futures_util::join!(login, join_all(writes));
    let logged = logged.unwrap();
    let mut landed = vec![0];
    for (i, w) in writes.into_iter().enumerate() {
        match w {
            Err(SessionError::SessionGone) => {}
            Ok(()) if !b.is_memory() => landed.push(i32::try_from(i).unwrap()),
            other => panic!("a write on the rotated id must not resurrect it: {other:?}"),
        }
    }
    let now = e.get::<i32>(&logged.id, "a", "k").await.unwrap().unwrap();
    assert!(landed.contains(&now), "{now} was never written before the rotation");
    assert_eq!(e.info(&s).await, Err(SessionError::SessionGone));
    assert!(e.destroy(&logged.id).await.unwrap());
    assert!(!e.destroy(&logged.id).await.unwrap());
    assert_eq!(e.insert(&logged.id, "a", "k", &1).await, Err(SessionError::SessionGone));
    if b.isolated() {
        assert_eq!(e.stats().await.unwrap().sessions, 0);
    }
}

async fn forged_and_foreign_ids_are_rejected_before_any_shard(b: Backend) {
    let e = b.engine(2).await;
    let real = e.create().await.unwrap().id;
    let mut text = real.to_string().into_bytes();
    text[31] = if text[31] == b'A' { b'B' } else { b'A' };
    let forged: SessionId = std::str::from_utf8(&text).unwrap().parse().unwrap();
    assert_eq!(e.get::<i32>(&forged, "a", "k").await, Err(SessionError::InvalidId));
    assert_eq!(e.parse_id(&text), Err(SessionError::InvalidId));
    assert_eq!(e.parse_id(b"short"), Err(SessionError::InvalidId));
    assert_eq!(e.parse_id(real.to_string().as_bytes()), Ok(real));

    let mut other_config = config(2);
    other_config.session.secret = Some("a different secret, also 32 bytes or more".into());
    let other = b.start(other_config, None).await;
    assert_eq!(other.info(&real).await, Err(SessionError::InvalidId));
    let ops_before = e.stats().await.unwrap().shards.iter().map(|s| s.operations).sum::<u64>();
    let _ = e.destroy(&forged).await;
    let ops_after = e.stats().await.unwrap().shards.iter().map(|s| s.operations).sum::<u64>();
    assert_eq!(ops_before, ops_after, "a forged id must not reach a worker");
}

async fn volatile_sessions_expire_after_idle_time_and_use_slides_it(b: Backend) {
    let (e, clock) = b.engine_with_clock(config(2)).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "a", "k", &1).await.unwrap();
    clock.advance(HOUR + HOUR / 2);
    // A use slides the expiry by the full idle lifetime.
    assert_eq!(e.get::<i32>(&s, "a", "k").await.unwrap(), Some(1));
    clock.advance(HOUR + HOUR / 2);
    let info = e.touch(&s).await.unwrap();
    assert_eq!(info.expires.duration_since(info.last_access).unwrap(), 2 * HOUR);
    // Info does not count as a use.
    clock.advance(2 * HOUR - Duration::from_secs(1));
    e.info(&s).await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(e.get::<i32>(&s, "a", "k").await, Err(SessionError::SessionGone));
}

async fn persistent_sessions_live_100_days_and_the_sweep_drops_the_expired(b: Backend) {
    let (e, clock) = b.engine_with_clock(config(2)).await;
    let volatile = e.create().await.unwrap().id;
    let remembered = e.login(&e.create().await.unwrap().id, 5).await.unwrap().id;
    let info = e.set_persistent(&remembered, true).await.unwrap();
    assert_eq!(info.expires.duration_since(info.last_access).unwrap(), 100 * DAY);
    clock.advance(3 * HOUR);
    // Redis expires on its own (sweep answers 0); its scripts drop what the clock says expired.
    assert_eq!(e.sweep().await.unwrap(), if b.is_memory() { 1 } else { 0 }, "only the volatile session has expired");
    assert_eq!(e.info(&volatile).await, Err(SessionError::SessionGone));
    assert_eq!(e.info(&remembered).await.unwrap().userid, 5);
    clock.advance(99 * DAY);
    e.touch(&remembered).await.unwrap();
    clock.advance(99 * DAY);
    assert!(e.info(&remembered).await.is_ok(), "use slides a persistent session too");
    clock.advance(2 * DAY);
    assert_eq!(e.sweep().await.unwrap(), if b.is_memory() { 1 } else { 0 });
    assert_eq!(e.info(&remembered).await, Err(SessionError::SessionGone));
    let stats = e.stats().await.unwrap();
    assert!(stats.sessions == 0 || !b.isolated());
    if b.is_memory() {
        assert_eq!(stats.shards.iter().map(|s| s.expired).sum::<u64>(), 2);
    }
}

/// Memory-only: shard workers' periodic sweep (Redis expires keys on its own).
#[actix_rt::test]
async fn workers_sweep_on_their_own() {
    let mut c = config(2);
    c.session.sweep_interval = Duration::from_millis(20);
    let (e, clock) = Backend::Memory.engine_with_clock(c).await;
    for _ in 0..20 {
        e.create().await.unwrap();
    }
    clock.advance(3 * HOUR);
    let mut remaining = usize::MAX;
    for _ in 0..100 {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        remaining = e.stats().await.unwrap().sessions;
        if remaining == 0 {
            break;
        }
    }
    assert_eq!(remaining, 0, "the periodic sweep drops expired sessions without being asked");
}

async fn absolute_ttl_caps_a_session_whatever_its_use(b: Backend) {
    let mut c = config(1);
    c.session.absolute_ttl = 3 * HOUR;
    let (e, clock) = b.engine_with_clock(c).await;
    let s = e.create().await.unwrap().id;
    for _ in 0..5 {
        clock.advance(HOUR / 2);
        e.touch(&s).await.unwrap();
    }
    clock.advance(HOUR / 2);
    assert_eq!(e.touch(&s).await, Err(SessionError::SessionGone));
}

async fn limits_are_clear_errors_and_nothing_is_evicted(b: Backend) {
    let mut c = config(2);
    c.limits.max_value_bytes = 100;
    c.limits.max_keys = 3;
    c.limits.max_sessions = 5;
    let e = b.start(c, None).await;
    let s = e.create().await.unwrap().id;
    let err = e.insert(&s, "a", "big", &"x".repeat(200)).await.unwrap_err();
    assert_eq!(err, SessionError::ValueTooLarge { size: 202, limit: 100 });
    assert!(err.to_string().contains("limits.max_value_bytes"));
    for k in ["1", "2", "3"] {
        e.insert(&s, "a", k, &k).await.unwrap();
    }
    assert_eq!(e.insert(&s, "b", "4", &4).await, Err(SessionError::TooManyKeys { limit: 3 }));
    assert_eq!(e.keys(&s, "a").await.unwrap().len(), 3);
    let mut ids = vec![s];
    for _ in 0..4 {
        ids.push(e.create().await.unwrap().id);
    }
    assert_eq!(e.create().await, Err(SessionError::Full { limit: 5 }));
    for id in &ids {
        e.touch(id).await.expect("nobody was evicted");
    }
    e.destroy(&ids[0]).await.unwrap();
    e.create().await.expect("room again after a destroy");
}

async fn a_panicking_update_is_contained(b: Backend) {
    let e = b.engine(2).await;
    let victim = e.create().await.unwrap().id;
    let bystanders: Vec<SessionId> =
        join_all((0..20).map(|_| e.create())).await.into_iter().map(|r| r.unwrap().id).collect();
    for (i, b) in bystanders.iter().enumerate() {
        e.insert(b, "a", "n", &i).await.unwrap();
    }
    e.insert(&victim, "a", "n", &41).await.unwrap();
    let result = e.update(&victim, "a", "n", |_: Option<i32>| -> i32 { panic!("user code bug") }).await;
    assert!(matches!(&result, Err(SessionError::Panicked(m)) if m.contains("user code bug")), "{result:?}");
    // The session is unchanged and still usable; every other session is intact.
    assert_eq!(e.get::<i32>(&victim, "a", "n").await.unwrap(), Some(41));
    assert_eq!(e.increment(&victim, "a", "n", 1).await.unwrap(), 42);
    for (i, b) in bystanders.iter().enumerate() {
        assert_eq!(e.get::<usize>(b, "a", "n").await.unwrap(), Some(i));
    }
    let stats = e.stats().await.unwrap();
    assert_eq!(stats.shards.iter().map(|s| s.panics).sum::<u64>(), 1);
    assert!(stats.sessions == 21 || !b.isolated());
}

async fn a_thousand_concurrent_updates_on_one_session_lose_nothing(b: Backend) {
    let e = b.engine(4).await;
    let s = e.create().await.unwrap().id;
    let results = join_all((0..1000).map(|_| e.increment(&s, "counters", "hits", 1))).await;
    let seen: HashSet<i64> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(seen.len(), 1000, "every increment saw a distinct value");
    assert_eq!(e.get::<i64>(&s, "counters", "hits").await.unwrap(), Some(1000));
}

async fn concurrent_updates_from_many_threads_lose_nothing(b: Backend) {
    let e = b.engine(2).await;
    let s = e.create().await.unwrap().id;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || {
                futures_executor_block_on(async move {
                    for _ in 0..250 {
                        e.update(&s, "c", "n", |n: Option<u32>| n.unwrap_or(0) + 1).await.unwrap();
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(e.get::<u32>(&s, "c", "n").await.unwrap(), Some(1000));
}

/// Drives a future on a plain thread: the engine handle needs no actix context to be used.
fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    actix_rt::Runtime::new().unwrap().block_on(f)
}

async fn logout_user_ends_the_users_sessions_on_every_shard(b: Backend) {
    let shards = 4;
    let e = b.engine(shards).await;
    let mut mine = Vec::new();
    let mut covered = HashSet::new();
    while covered.len() < shards || mine.len() < 8 {
        let s = e.create().await.unwrap().id;
        let logged = e.login(&s, 77).await.unwrap().id;
        covered.insert(logged.shard(shards));
        mine.push(logged);
    }
    let other = e.login(&e.create().await.unwrap().id, 78).await.unwrap().id;
    let anonymous = e.create().await.unwrap().id;
    assert_eq!(e.sessions_of(77).await.unwrap().len(), mine.len());
    assert_eq!(e.logout_user(77).await.unwrap(), mine.len());
    for s in &mine {
        assert_eq!(e.info(s).await, Err(SessionError::SessionGone));
    }
    assert!(e.sessions_of(77).await.unwrap().is_empty());
    assert_eq!(e.info(&other).await.unwrap().userid, 78);
    assert!(e.info(&anonymous).await.is_ok());
    assert_eq!(e.logout_user(77).await.unwrap(), 0);
}

async fn sessions_of_lists_live_sessions_with_their_info(b: Backend) {
    let (e, clock) = b.engine_with_clock(config(3)).await;
    let a = e.login(&e.create().await.unwrap().id, 11).await.unwrap().id;
    clock.advance(Duration::from_secs(10));
    let b = e.login(&e.create().await.unwrap().id, 11).await.unwrap().id;
    e.set_persistent(&b, true).await.unwrap();
    let list = e.sessions_of(11).await.unwrap();
    assert_eq!(list.iter().map(|s| s.id).collect::<Vec<_>>(), [b, a], "most recently used first");
    assert!(list[0].persistent && !list[1].persistent);
    assert!(list.iter().all(|s| s.userid == 11));
    clock.advance(3 * HOUR);
    assert_eq!(e.sessions_of(11).await.unwrap().iter().map(|s| s.id).collect::<Vec<_>>(), [b]);
}

async fn stats_count_sessions_per_shard(b: Backend) {
    let e = b.engine(3).await;
    let ids: Vec<SessionId> = join_all((0..60).map(|_| e.create())).await.into_iter().map(|r| r.unwrap().id).collect();
    let stats = e.stats().await.unwrap();
    assert_eq!(stats.sessions, 60);
    if !b.is_memory() {
        // Redis: one pseudo-shard.
        assert_eq!(stats.shards.len(), 1);
        assert_eq!(stats.shards[0].created, 60);
        return;
    }
    assert_eq!(stats.shards.len(), 3);
    for (shard, s) in stats.shards.iter().enumerate() {
        assert_eq!(s.sessions, ids.iter().filter(|id| id.shard(3) == shard).count());
        assert_eq!(s.created, s.sessions as u64);
    }
}

async fn messages_can_be_sent_directly(b: Backend) {
    let e = b.engine(2).await;
    let s = e.create().await.unwrap().id;
    e.send(draco_session::Set { id: s, scope: "m".into(), key: "k".into(), value: b"[1,2]".to_vec() }).await.unwrap();
    let raw = e.send(draco_session::Get { id: s, scope: "m".into(), key: "k".into() }).await.unwrap();
    assert_eq!(raw.as_deref(), Some(&b"[1,2]"[..]));
    let logged = e.send(draco_session::Login { id: s, userid: 5 }).await.unwrap();
    assert_eq!(e.send(draco_session::Info { id: s }).await, Err(SessionError::SessionGone));
    assert_eq!(e.send(draco_session::Info { id: logged.id }).await.unwrap().userid, 5);
    // Engine-wide messages too, on either backend.
    let n = e.send(draco_session::LogoutUser { userid: 1 }).await.unwrap();
    assert_eq!(n, 0);
    assert_eq!(e.send(draco_session::LogoutUser { userid: 5 }).await.unwrap(), 1);
    assert_eq!(e.send(draco_session::Info { id: logged.id }).await, Err(SessionError::SessionGone));
}

async fn after_shutdown_calls_fail_cleanly(b: Backend) {
    let e = b.engine(2).await;
    let s = e.create().await.unwrap().id;
    e.shutdown().await;
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(e.get::<i32>(&s, "a", "k").await, Err(SessionError::Unavailable(_))));
    assert!(matches!(e.stats().await, Err(SessionError::Unavailable(_))));
}

/// Memory-only: the synchronous start needs an actix System (Redis needs `start_async`).
#[test]
fn starting_outside_an_actix_system_is_a_clear_error() {
    let err = SessionEngine::start(config(1)).unwrap_err();
    assert!(err.to_string().contains("actix System"), "{err}");
}

#[test]
fn an_invalid_config_is_a_start_error() {
    let mut c = config(1);
    c.session.persistent_ttl = Duration::from_secs(1);
    let err = actix_rt::System::new().block_on(async { SessionEngine::start(c).map(|_| ()) }).unwrap_err();
    assert!(err.to_string().contains("session.persistent_ttl"), "{err}");
}

/// Declares each behaviour test once per backend: `memory::name` and `redis::name`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name(super::Backend::Memory).await
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name(super::Backend::Redis).await
                }
            )*
        }
    };
}

both!(
    namespaces_are_independent_and_default_scope_is_system,
    values_round_trip_as_typed_and_reject_the_wrong_type,
    login_needs_a_user_rotates_the_id_and_keeps_the_data,
    logout_resets_user_and_persistence_rotates_and_keeps_other_data,
    only_logged_in_sessions_can_be_persistent,
    operations_in_flight_on_a_rotated_or_destroyed_id_get_session_gone,
    forged_and_foreign_ids_are_rejected_before_any_shard,
    volatile_sessions_expire_after_idle_time_and_use_slides_it,
    persistent_sessions_live_100_days_and_the_sweep_drops_the_expired,
    absolute_ttl_caps_a_session_whatever_its_use,
    limits_are_clear_errors_and_nothing_is_evicted,
    a_panicking_update_is_contained,
    a_thousand_concurrent_updates_on_one_session_lose_nothing,
    concurrent_updates_from_many_threads_lose_nothing,
    logout_user_ends_the_users_sessions_on_every_shard,
    sessions_of_lists_live_sessions_with_their_info,
    stats_count_sessions_per_shard,
    messages_can_be_sent_directly,
    after_shutdown_calls_fail_cleanly,
);

/// The suite against Redis Cluster, but for the tests that count every session of the store
/// (the cluster's database 0 is shared by all tests here). Rotation, update locks and the
/// per-user index all run across slots without a CROSSSLOT error.
#[cfg(feature = "redis")]
mod redis_cluster {
    macro_rules! cluster {
        ($($name:ident),* $(,)?) => {$(
            #[actix_rt::test]
            async fn $name() {
                super::$name(super::Backend::RedisCluster).await
            }
        )*};
    }

    cluster!(
        namespaces_are_independent_and_default_scope_is_system,
        values_round_trip_as_typed_and_reject_the_wrong_type,
        login_needs_a_user_rotates_the_id_and_keeps_the_data,
        logout_resets_user_and_persistence_rotates_and_keeps_other_data,
        only_logged_in_sessions_can_be_persistent,
        operations_in_flight_on_a_rotated_or_destroyed_id_get_session_gone,
        forged_and_foreign_ids_are_rejected_before_any_shard,
        volatile_sessions_expire_after_idle_time_and_use_slides_it,
        persistent_sessions_live_100_days_and_the_sweep_drops_the_expired,
        absolute_ttl_caps_a_session_whatever_its_use,
        a_panicking_update_is_contained,
        a_thousand_concurrent_updates_on_one_session_lose_nothing,
        concurrent_updates_from_many_threads_lose_nothing,
        logout_user_ends_the_users_sessions_on_every_shard,
        sessions_of_lists_live_sessions_with_their_info,
        messages_can_be_sent_directly,
        after_shutdown_calls_fail_cleanly,
    );
}

/// Redis only: what the memory backend has no counterpart for.
#[cfg(feature = "redis")]
mod redis_only {
    use super::*;

    /// Redis's own expiry, by its clock: the key is gone without anyone asking.
    #[actix_rt::test]
    async fn sessions_expire_by_redis_ttl_and_use_slides_it() {
        let mut c = config(1);
        c.session.volatile_ttl = Duration::from_secs(1);
        c.session.persistent_ttl = Duration::from_secs(1);
        let e = Backend::Redis.start(c, None).await;
        let kept = e.create().await.unwrap().id;
        let dropped = e.create().await.unwrap().id;
        e.insert(&kept, "a", "k", &1).await.unwrap();
        for _ in 0..3 {
            actix_rt::time::sleep(Duration::from_millis(500)).await;
            e.touch(&kept).await.unwrap();
        }
        assert_eq!(e.stats().await.unwrap().sessions, 1, "Redis dropped the idle session by itself");
        assert_eq!(e.info(&dropped).await, Err(SessionError::SessionGone));
        assert_eq!(e.get::<i32>(&kept, "a", "k").await.unwrap(), Some(1));
        actix_rt::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(e.stats().await.unwrap().sessions, 0);
    }

    #[test]
    fn the_sync_start_names_start_async() {
        let mut c = config(1);
        c.storage.backend = draco_session::StorageBackend::Redis;
        let err = actix_rt::System::new().block_on(async { SessionEngine::start(c).map(|_| ()) }).unwrap_err();
        assert!(err.to_string().contains("start_async"), "{err}");
    }

    /// Two engines on one database are two app instances: each sees the other's sessions.
    #[actix_rt::test]
    async fn two_engines_on_one_redis_share_sessions() {
        let mut c = config(1);
        c.storage.backend = draco_session::StorageBackend::Redis;
        c.storage.redis_url = redis_server::shared().fresh_db_url();
        let a = SessionEngine::start_async(c.clone()).await.unwrap();
        let b = SessionEngine::start_async(c).await.unwrap();
        let s = a.create().await.unwrap().id;
        let s = b.login(&s, 3).await.unwrap().id;
        a.insert(&s, "cart", "n", &2).await.unwrap();
        assert_eq!(b.increment(&s, "cart", "n", 1).await.unwrap(), 3);
        assert_eq!(a.sessions_of(3).await.unwrap().len(), 1);
        assert_eq!(b.logout_user(3).await.unwrap(), 1);
        assert_eq!(a.info(&s).await, Err(SessionError::SessionGone));
    }

    /// Redis lost: operations answer `Unavailable` within the command timeouts, never hang;
    /// once Redis is back on the same port the engine reconnects by itself.
    #[actix_rt::test]
    async fn redis_lost_is_unavailable_quickly_and_recovery_is_automatic() {
        let mut server = redis_server::RedisServer::start();
        let mut c = config(1);
        c.storage.backend = draco_session::StorageBackend::Redis;
        c.storage.redis_url = server.url();
        let e = SessionEngine::start_async(c).await.unwrap();
        let s = e.create().await.unwrap().id;
        server.stop();
        for _ in 0..3 {
            let started = std::time::Instant::now();
            assert!(matches!(e.get::<i32>(&s, "a", "k").await, Err(SessionError::Unavailable(_))));
            assert!(matches!(e.create().await, Err(SessionError::Unavailable(_))));
            assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        }
        server.resume();
        let started = std::time::Instant::now();
        let fresh = loop {
            match e.create().await {
                Ok(info) => break info.id,
                Err(SessionError::Unavailable(_)) if started.elapsed() < Duration::from_secs(15) => {
                    actix_rt::time::sleep(Duration::from_millis(100)).await
                }
                Err(other) => panic!("no recovery: {other:?}"),
            }
        };
        e.insert(&fresh, "a", "k", &1).await.unwrap();
        // The restarted server kept nothing (no persistence): the old session is gone, cleanly.
        assert_eq!(e.get::<i32>(&s, "a", "k").await, Err(SessionError::SessionGone));
    }

    /// Values that are not plain integers take the general update path, with the same errors.
    #[actix_rt::test]
    async fn increment_edge_cases_match_the_memory_backend() {
        for backend in [Backend::Memory, Backend::Redis] {
            let e = backend.engine(1).await;
            let s = e.create().await.unwrap().id;
            e.insert(&s, "c", "text", &"x").await.unwrap();
            assert!(matches!(e.increment(&s, "c", "text", 1).await, Err(SessionError::Codec(_))), "{backend:?}");
            e.insert(&s, "c", "big", &(i64::MAX - 1)).await.unwrap();
            assert_eq!(e.increment(&s, "c", "big", 5).await.unwrap(), i64::MAX, "{backend:?}");
            assert_eq!(e.increment(&s, "c", "neg", -7).await.unwrap(), -7, "{backend:?}");
            assert_eq!(e.increment(&s, "c", "neg", i64::MIN).await.unwrap(), i64::MIN, "{backend:?}");
            assert_eq!(e.get::<i64>(&s, "c", "neg").await.unwrap(), Some(i64::MIN), "{backend:?}");
        }
    }
}
