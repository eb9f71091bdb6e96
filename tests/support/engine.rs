//! What the engine tests (`tests/engine/`) share: one behaviour suite for every backend. Each
//! module writes its tests as `async fn name(b: Backend)` and lists them in `both!` (memory
//! and Redis: `memory::name`, `redis::name`) and, unless a test counts every session of the
//! store, in `cluster!` (`redis_cluster::name`, a three-node Redis Cluster whose database 0 is
//! shared by every test of the binary).
//!
//! Redis needs the `redis` cargo feature and a `redis-server` on PATH, started once per test
//! binary with one database per test; the cluster is also started once per test binary, on
//! first use. The `ManualClock` drives expiry for Redis too, because the scripts check expiry
//! by the engine's clock as well as Redis's own.
//!
//! **User ids.** The cluster's one keyspace holds every cluster test's per-user index and
//! event stream, and tests run in parallel: a test names its users `b.user(n)`, never `n`
//! itself, so that on the cluster each test has user ids of its own (on memory and on a Redis
//! database of the test's own, `b.user(n)` is `n`). Otherwise one test's `logout_user(7)` or
//! `sessions_of(7)` sees another's user 7.
//!
//! Declared once, by `tests/engine/main.rs`, as `#[macro_use] #[path = "../support/engine.rs"]
//! mod support;`; each module then has `use crate::support::*;`.

#[path = "canary.rs"]
pub mod canary;
#[cfg(feature = "redis")]
#[path = "redis_server.rs"]
pub mod redis_server;
#[path = "routing.rs"]
pub mod routing;

use std::time::Duration;

use draco_session::{Config, ManualClock, SessionEngine};

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);

pub fn config(shards: usize) -> Config {
    let mut c = Config::default();
    c.session.secret = Some("engine test secret, at least 32 bytes long".into());
    c.session.shards = shards;
    c.storage.persist = false;
    c.storage.dir = std::env::temp_dir().join("draco-session-engine-tests");
    c
}

/// The backend a behaviour test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    #[cfg(feature = "redis")]
    Redis,
    /// A three-node Redis Cluster, database 0 shared by every test of this binary; `users` is
    /// the start of this test's own range of user ids (see [`Backend::user`]).
    #[cfg(feature = "redis")]
    RedisCluster {
        users: u64,
    },
}

/// User ids per test on the shared cluster: `b.user(n)` takes `n` below this.
pub const USERS_PER_TEST: u64 = 1_000;

impl Backend {
    /// The cluster, with a range of user ids no other test of this binary has.
    #[cfg(feature = "redis")]
    pub fn cluster() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let test = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Backend::RedisCluster { users: test * USERS_PER_TEST }
    }

    /// This test's user `n` (1 ≤ `n` < [`USERS_PER_TEST`]): `n` itself where the test has the
    /// store to itself, a user id no other test uses on the shared cluster.
    pub fn user(self, n: u64) -> u64 {
        assert!((1..USERS_PER_TEST).contains(&n), "user {n}: tests name users 1..{USERS_PER_TEST}");
        match self {
            #[cfg(feature = "redis")]
            Backend::RedisCluster { users } => users + n,
            _ => n,
        }
    }

    pub fn is_memory(self) -> bool {
        self == Backend::Memory
    }

    /// Whether the engine alone uses its store, so store-wide counts are its own.
    pub fn isolated(self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Backend::RedisCluster { .. } => false,
            _ => true,
        }
    }

    /// `c` pointed at this backend's store (Redis: a database of its own on the shared server).
    pub fn configure(self, c: Config) -> Config {
        #[cfg(feature = "redis")]
        let c = match self {
            Backend::Memory => c,
            Backend::Redis => {
                let mut c = c;
                c.storage.backend = draco_session::config::StorageBackend::Redis;
                c.storage.redis_url = redis_server::shared().fresh_db_url();
                c
            }
            Backend::RedisCluster { .. } => {
                let mut c = c;
                c.storage.backend = draco_session::config::StorageBackend::Redis;
                c.storage.redis_cluster = true;
                c.storage.redis_url = redis_server::shared_cluster().urls();
                c
            }
        };
        c
    }

    /// Starts an engine on this backend (Redis: a database of its own on the shared server).
    pub async fn start(self, c: Config, clock: Option<ManualClock>) -> SessionEngine {
        start_configured(self.configure(c), clock).await
    }

    pub async fn engine_with_clock(self, c: Config) -> (SessionEngine, ManualClock) {
        let clock = ManualClock::new(1_700_000_000_000);
        (self.start(c, Some(clock.clone())).await, clock)
    }

    pub async fn engine(self, shards: usize) -> SessionEngine {
        self.engine_with_clock(config(shards)).await.0
    }
}

/// Starts an engine on `c` as [`Backend::configure`] made it.
pub async fn start_configured(c: Config, clock: Option<ManualClock>) -> SessionEngine {
    let mut builder = SessionEngine::builder(c);
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.start_async().await.expect("engine starts")
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

/// Declares each test once more, against Redis Cluster: `redis_cluster::name`. Only for tests
/// that do not count every session of the store and name their users `b.user(n)` (the
/// cluster's database 0 is shared by all tests of the binary). Rotation, update locks and the
/// per-user index all run across slots without a CROSSSLOT error.
macro_rules! cluster {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "redis")]
        mod redis_cluster {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name(super::Backend::cluster()).await
                }
            )*
        }
    };
}

/// A connection of the test's own to the engine's Redis or Redis Cluster, to read and write
/// its keys raw (tests add the reads they need in `impl Raw` blocks of their own).
#[cfg(feature = "redis")]
pub enum Raw {
    One(::redis::aio::MultiplexedConnection),
    Cluster(::redis::cluster_async::ClusterConnection),
}

#[cfg(feature = "redis")]
impl Raw {
    /// To the Redis (or Cluster) of engine config `c`.
    pub async fn open(c: &Config) -> Self {
        let url = &c.storage.redis_url;
        if c.storage.redis_cluster {
            let client = ::redis::cluster::ClusterClient::new(url.split(',').collect::<Vec<_>>()).unwrap();
            Raw::Cluster(client.get_async_connection().await.unwrap())
        } else {
            Raw::One(::redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap())
        }
    }

    /// Runs `cmd`; panics on an error.
    pub async fn query<T: ::redis::FromRedisValue>(&mut self, cmd: &::redis::Cmd) -> T {
        match self {
            Raw::One(conn) => cmd.query_async(conn).await.unwrap(),
            Raw::Cluster(conn) => cmd.query_async(conn).await.unwrap(),
        }
    }
}
