//! [`RedisStore`]: every session operation as one atomic Lua script on one session's keys.
//!
//! All Redis I/O runs on a small runtime owned by the store, so the engine handle works from
//! any thread or runtime (as with the memory backend), and the connection's driver task never
//! depends on a caller's runtime staying alive. Every command is bounded by
//! [`COMMAND_TIMEOUT`]; the `ConnectionManager` reconnects by itself after Redis comes back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rand::RngExt as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::keys::{self, SessionKeys};
use super::scripts;
use crate::clock::{Clock, to_system_time};
use crate::config::LimitsConfig;
use crate::error::{Result, SessionError, StartError, Unavailable};
use crate::id::{Keyring, SessionId};
use crate::message::{EngineStats, SessionInfo, ShardStats, UpdateFn};
use crate::state::Lifetimes;

/// Bound on connecting at start-up and on each reconnection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on each command: past it the caller gets `Unavailable` (HTTP 503), never a hang.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on a whole operation (some take two or three commands, or wait for a lock).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);
/// Where the items of a script's reply that follow the metadata begin.
const EXTRA: usize = 7;

tokio::task_local! {
    /// Set around an operation by [`RedisStore::looked_up`]: the first "ok" reply of a script
    /// run while it is polled (its metadata items only).
    static LOOKUP: RefCell<Option<Reply>>;
}
/// How long an `update` may hold its session's lock (the closure runs between read and write).
const LOCK_MS: u64 = 2000;
/// How long a write waits for another caller's `update` to finish with the session.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The Redis backend of one engine.
pub(crate) struct RedisStore {
    core: Arc<Core>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// One server (reconnecting by itself) or a Redis Cluster (following its slot map).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A caller runtime's own connection (see [`Local`]).
    Local(MultiplexedConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Local(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Local(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Local(c) => c.get_db(),
        }
    }
}

/// Connections owned by callers' current-thread runtimes (actix-web's workers), one per
/// runtime: the connection's driver task runs on that runtime, so a command goes out and its
/// answer comes back on the caller's own thread, with no hop to the store's threads and back.
///
/// Made lazily (one server over TCP only): the first operation on a runtime spawns the
/// connecting task there and itself uses the shared connection, as does every operation
/// while it connects, or for good on that runtime if connecting fails (a runtime without
/// I/O, say). An entry whose connection fails is dropped (the operation gets `Unavailable`,
/// as with the shared connection) and made again by a later operation. A runtime that ends
/// takes its driver task along; its entry stays, unused, until the table is full
/// ([`LOCAL_MAX`] runtimes), when it is emptied.
struct Local {
    /// Where and how to connect (host and port; database, credentials).
    addr: (String, u16),
    info: redis::RedisConnectionInfo,
    table: Mutex<HashMap<tokio::runtime::Id, LocalState>>,
}

#[derive(Clone)]
enum LocalState {
    Connecting,
    Failed,
    Ready(MultiplexedConnection),
}

const LOCAL_MAX: usize = 256;

/// An operation's use of a caller runtime's own connection: the store (its `Core`'s
/// address), the runtime, the connection.
type LocalUse = (usize, tokio::runtime::Id, MultiplexedConnection);

thread_local! {
    /// The connection the operation being polled on this thread uses instead of the shared
    /// one.
    static OVERRIDE: RefCell<Option<LocalUse>> = const { RefCell::new(None) };
}

struct Core {
    conn: Conn,
    local: Option<Local>,
    /// The server's URL with any password hidden, for messages.
    url: String,
    keyring: Keyring,
    clock: Arc<dyn Clock>,
    lifetimes: Lifetimes,
    limits: LimitsConfig,
    stopped: AtomicBool,
    /// Whether the last command reached Redis: outage and recovery are logged once each.
    healthy: AtomicBool,
    created: AtomicU64,
    destroyed: AtomicU64,
    operations: AtomicU64,
    panics: AtomicU64,
}

/// A future polled inside the store runtime's context (see [`RedisStore::run_here`]).
struct InStore<F> {
    handle: tokio::runtime::Handle,
    /// The caller runtime's own connection, set as [`OVERRIDE`] while polling.
    local: Option<LocalUse>,
    fut: std::pin::Pin<Box<F>>,
}

impl<F: Future> Future for InStore<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let _context = self.handle.enter();
        if self.local.is_none() {
            return self.fut.as_mut().poll(cx);
        }
        let previous = OVERRIDE.with(|o| o.replace(self.local.clone()));
        let result = self.fut.as_mut().poll(cx);
        OVERRIDE.with(|o| *o.borrow_mut() = previous);
        result
    }
}

/// A script's answer: its status, then the session's metadata and the op's result.
struct Reply(Vec<Value>);

/// `url` (or a comma-separated list of them) with any password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(|u| redact(u.trim())).collect::<Vec<_>>().join(",");
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

impl RedisStore {
    /// Connects to `url` (bounded by [`CONNECT_TIMEOUT`]) and checks the server answers;
    /// with `cluster`, `url` lists seed nodes, comma-separated.
    pub(crate) async fn connect(
        url: &str,
        cluster: bool,
        keyring: Keyring,
        clock: Arc<dyn Clock>,
        lifetimes: Lifetimes,
        limits: LimitsConfig,
    ) -> std::result::Result<Self, StartError> {
        let shown = redact(url);
        let fail = |message: String| StartError::Backend { url: shown.clone(), message };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("draco-redis")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start the Redis I/O threads: {e}")))?;
        let connect = if cluster {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            let client = ClusterClientBuilder::new(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(COMMAND_TIMEOUT)
                .retries(2)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            futures_util::future::Either::Left(async move { client.get_async_connection().await.map(Conn::Cluster) })
        } else {
            let client = redis::Client::open(url).map_err(|e| fail(e.to_string()))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(COMMAND_TIMEOUT)
                .set_number_of_retries(1)
                .set_max_delay(500);
            futures_util::future::Either::Right(async move {
                ConnectionManager::new_with_config(client, config).await.map(Conn::Single)
            })
        };
        let connecting = runtime.spawn(async move {
            let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))?
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(COMMAND_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn))
                .await
                .map_err(|_| format!("PING not answered within {COMMAND_TIMEOUT:?}"))?
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        });
        let conn = match connecting.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(message)) => {
                runtime.shutdown_background();
                return Err(fail(message));
            }
            Err(e) => {
                runtime.shutdown_background();
                return Err(fail(e.to_string()));
            }
        };
        let local = match (&conn, redis::IntoConnectionInfo::into_connection_info(url)) {
            (Conn::Single(_), Ok(info)) => match info.addr {
                redis::ConnectionAddr::Tcp(host, port) => {
                    Some(Local { addr: (host, port), info: info.redis, table: Mutex::new(HashMap::new()) })
                }
                _ => None,
            },
            _ => None,
        };
        let kind = if cluster { "Redis Cluster" } else { "Redis" };
        log::info!("session engine: sessions live in {kind} at {shown}");
        let core = Core {
            conn,
            local,
            url: shown,
            keyring,
            clock,
            lifetimes,
            limits,
            stopped: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            created: AtomicU64::new(0),
            destroyed: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            panics: AtomicU64::new(0),
        };
        Ok(Self { core: Arc::new(core), runtime: Some(runtime) })
    }

    /// `Unavailable` once the engine is shut down.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.core.stopped.load(Ordering::Relaxed) {
            return Err(Unavailable::EngineStopped.into());
        }
        Ok(())
    }

    /// Runs `op` on the store's runtime and waits for it from whatever runtime the caller is on.
    async fn run<T, F>(&self, counts: bool, op: impl FnOnce(Arc<Core>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.check_open()?;
        if counts {
            self.core.operations.fetch_add(1, Ordering::Relaxed);
        }
        let runtime = self.runtime.as_ref().expect("runtime lives as long as the store");
        let op = op(self.core.clone());
        let bounded = async move {
            tokio::time::timeout(OPERATION_TIMEOUT, op)
                .await
                .unwrap_or_else(|_| Err(Unavailable::BackendTimeout { after: OPERATION_TIMEOUT }.into()))
        };
        match runtime.spawn(bounded).await {
            Ok(result) => result,
            Err(e) => Err(SessionError::internal(format_args!("Redis task failed: {e}"))),
        }
    }

    /// As [`run`](Self::run) for an operation of one script (or a read and one script), but
    /// polled by the caller's own task, inside the store runtime's context (its timers; its
    /// threads for any task the connection spawns): no hop to another thread and back. The
    /// commands go to the connection's driver task on the store's runtime through channels,
    /// which work from any thread or runtime. Only for operations where being cancelled with
    /// the caller (a dropped request) leaves nothing behind: one atomic script either ran or
    /// did not.
    async fn run_here<T, F>(&self, op: impl FnOnce(Arc<Core>) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        self.check_open()?;
        self.core.operations.fetch_add(1, Ordering::Relaxed);
        let handle = self.runtime.as_ref().expect("runtime lives as long as the store").handle().clone();
        let local = self.core.local_conn().map(|(id, c)| (Arc::as_ptr(&self.core) as usize, id, c));
        let op = op(self.core.clone());
        let bounded = InStore {
            handle,
            local,
            fut: Box::pin(async move {
                tokio::time::timeout(OPERATION_TIMEOUT, op)
                    .await
                    .unwrap_or_else(|_| Err(Unavailable::BackendTimeout { after: OPERATION_TIMEOUT }.into()))
            }),
        };
        bounded.await
    }

    /// Runs `op`, an operation on `id`, and answers `id`'s metadata as it was before `op` used
    /// it. When `op` is one script that answered "ok", its own reply carries that metadata, so
    /// the lookup costs nothing more; else (`id` gone, a limit refused the operation, an
    /// operation of several steps) `id` is looked up on its own after `op`. So `op` must change
    /// nothing but data and the last access, and after a successful `op` of several steps the
    /// last access answered is `op`'s own.
    pub(crate) async fn looked_up<R>(
        &self,
        id: SessionId,
        op: impl Future<Output = Result<R>>,
    ) -> (Result<SessionInfo>, Result<R>) {
        let (first, result) = LOOKUP
            .scope(RefCell::new(None), async {
                let result = op.await;
                (LOOKUP.with(|first| first.borrow_mut().take()), result)
            })
            .await;
        let info = match (first, &result) {
            (Some(reply), _) => reply.info_before(id),
            (None, Err(SessionError::SessionGone | SessionError::InvalidId)) => Err(SessionError::SessionGone),
            (None, _) => self.info(id, false).await,
        };
        (info, result)
    }

    /// See [`SessionEngine::create`](crate::SessionEngine::create); `id` for a direct `Create`.
    pub(crate) async fn create(&self, id: Option<SessionId>) -> Result<SessionInfo> {
        self.run_here(move |c| async move { c.create(id).await }).await
    }

    /// A new session whose counter `scope`/`key` is incremented once by `by`, in one step;
    /// `Ok(None)`: not done, use `create` and `increment`.
    pub(crate) async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        if by.unsigned_abs() >= 1 << 52 {
            return Ok(None);
        }
        let field = keys::field(scope, key);
        self.run_here(move |c| async move { c.create_counter(field, by).await }).await
    }

    pub(crate) async fn get(&self, id: SessionId, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let field = keys::field(scope, key);
        self.run_here(move |c| async move {
            let r = c.exec(&scripts::GET, &keys::session(&id), "", &[&field]).await?;
            Ok(r.bytes(EXTRA))
        })
        .await
    }

    pub(crate) async fn set(&self, id: SessionId, scope: &str, key: &str, value: Vec<u8>) -> Result<()> {
        let field = keys::field(scope, key);
        self.run_here(move |c| async move {
            c.check_size(&value)?;
            let max_keys = c.limits.max_keys.to_string();
            c.exec(&scripts::SET, &keys::session(&id), "", &[&field, &value, max_keys.as_bytes()]).await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn remove(&self, id: SessionId, scope: &str, key: &str) -> Result<bool> {
        let field = keys::field(scope, key);
        self.run_here(move |c| async move {
            let r = c.exec(&scripts::REMOVE, &keys::session(&id), "", &[&field]).await?;
            Ok(matches!(r.0.get(EXTRA), Some(Value::Int(1))))
        })
        .await
    }

    pub(crate) async fn clear(&self, id: SessionId, scope: Option<&str>) -> Result<()> {
        let prefix = scope.map_or_else(|| keys::ALL_SCOPES.to_vec(), keys::scope_prefix);
        self.run_here(move |c| async move {
            c.exec(&scripts::CLEAR, &keys::session(&id), "", &[&prefix]).await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn keys(&self, id: SessionId, scope: &str) -> Result<Vec<String>> {
        let prefix = keys::scope_prefix(scope);
        self.run_here(move |c| async move {
            let r = c.exec(&scripts::KEYS, &keys::session(&id), "", &[&prefix]).await?;
            let mut names: Vec<String> = match r.0.get(EXTRA) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| match v {
                        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            names.sort_unstable();
            Ok(names)
        })
        .await
    }

    /// Read-modify-write under the session's update lock: `step` runs exactly once, between a
    /// read that takes the lock and a write that releases it. Writes by others wait for it.
    pub(crate) async fn update(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        step: UpdateFn,
    ) -> Result<Option<Vec<u8>>> {
        let field = keys::field(scope, key);
        self.run(true, move |c| async move { c.update(id, field, step).await }).await
    }

    /// Atomic integer increment in one script. `Ok(None)`: the stored value or the sum is
    /// beyond what the script handles exactly; use `update` instead.
    pub(crate) async fn increment(&self, id: SessionId, scope: &str, key: &str, by: i64) -> Result<Option<i64>> {
        if by.unsigned_abs() >= 1 << 52 {
            return Ok(None);
        }
        let field = keys::field(scope, key);
        self.run_here(move |c| async move {
            let args = [
                field,
                by.to_string().into_bytes(),
                c.limits.max_keys.to_string().into_bytes(),
                c.limits.max_value_bytes.to_string().into_bytes(),
            ];
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let r = c.exec(&scripts::INCREMENT, &keys::session(&id), "", &args).await?;
            if r.status() == "fallback" {
                return Ok(None);
            }
            let text = r.bytes(EXTRA).unwrap_or_default();
            std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| SessionError::internal("unexpected increment reply from Redis"))
        })
        .await
    }

    /// Login (`userid` > 0) or logout (0): rotation to a fresh id of the same slot group.
    pub(crate) async fn rotate(&self, id: SessionId, userid: u64) -> Result<SessionInfo> {
        self.run(true, move |c| async move { c.rotate(id, userid).await }).await
    }

    pub(crate) async fn set_persistent(&self, id: SessionId, persistent: bool) -> Result<SessionInfo> {
        self.run_here(move |c| async move {
            let flag: &[u8] = if persistent { b"1" } else { b"0" };
            let r = c.exec(&scripts::SET_PERSISTENT, &keys::session(&id), "", &[flag]).await?;
            r.info(id)
        })
        .await
    }

    /// Metadata, sliding the expiry when `touch`.
    pub(crate) async fn info(&self, id: SessionId, touch: bool) -> Result<SessionInfo> {
        self.run_here(move |c| async move {
            let script = if touch { &scripts::TOUCH } else { &scripts::INFO };
            c.exec(script, &keys::session(&id), "", &[]).await?.info(id)
        })
        .await
    }

    pub(crate) async fn destroy(&self, id: SessionId) -> Result<bool> {
        self.run(true, move |c| async move { c.destroy(&keys::session(&id), None).await }).await
    }

    pub(crate) async fn logout_user(&self, userid: u64) -> Result<usize> {
        self.run(false, move |c| async move { c.logout_user(userid).await }).await
    }

    pub(crate) async fn sessions_of(&self, userid: u64) -> Result<Vec<SessionInfo>> {
        self.run(false, move |c| async move { c.sessions_of(userid).await }).await
    }

    /// One pseudo-shard: the session hashes found by `SCAN` (O(keys in the database)) and
    /// this instance's own counters.
    pub(crate) async fn stats(&self) -> Result<EngineStats> {
        self.run(false, move |c| async move {
            let sessions = c.count_sessions().await?;
            let shard = ShardStats {
                sessions,
                created: c.created.load(Ordering::Relaxed),
                expired: 0,
                destroyed: c.destroyed.load(Ordering::Relaxed),
                operations: c.operations.load(Ordering::Relaxed),
                panics: c.panics.load(Ordering::Relaxed),
                restarts: 0,
            };
            Ok(EngineStats { sessions, shards: vec![shard] })
        })
        .await
    }

    /// Later calls answer `Unavailable`; the connection closes when the last handle drops.
    pub(crate) fn close(&self) {
        if !self.core.stopped.swap(true, Ordering::Relaxed) {
            log::info!("session engine stopped (Redis at {})", self.core.url);
        }
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside the async code that usually
        // drops the last engine handle.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Core {
    /// The calling runtime's own connection when it has one (see [`Local`]); starts making
    /// it when not yet tried.
    fn local_conn(self: &Arc<Self>) -> Option<(tokio::runtime::Id, MultiplexedConnection)> {
        let local = self.local.as_ref()?;
        let caller = tokio::runtime::Handle::try_current().ok()?;
        if caller.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        let id = caller.id();
        let mut table = local.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get(&id) {
            Some(LocalState::Ready(conn)) => return Some((id, conn.clone())),
            Some(_) => return None,
            None => {}
        }
        if table.len() >= LOCAL_MAX {
            table.clear();
        }
        table.insert(id, LocalState::Connecting);
        drop(table);
        let core: Weak<Core> = Arc::downgrade(self);
        let (addr, info) = (local.addr.clone(), local.info.clone());
        // Runs on the caller's runtime: the socket and the driver task belong to it.
        caller.spawn(async move {
            let connected = async {
                let stream = tokio::net::TcpStream::connect((addr.0.as_str(), addr.1)).await?;
                stream.set_nodelay(true)?;
                let (conn, driver) =
                    MultiplexedConnection::new_with_config(&info, stream, redis::AsyncConnectionConfig::new()).await?;
                tokio::spawn(driver);
                Ok::<_, redis::RedisError>(conn)
            };
            let state = match connected.await {
                Ok(conn) => LocalState::Ready(conn),
                Err(e) => {
                    log::debug!("session engine: no runtime-local Redis connection: {e}");
                    LocalState::Failed
                }
            };
            if let Some(core) = core.upgrade()
                && let Some(local) = &core.local
            {
                local.table.lock().unwrap_or_else(|p| p.into_inner()).insert(id, state);
            }
        });
        None
    }

    /// The connection for this operation: the caller runtime's own, else the shared one.
    fn conn(&self) -> Conn {
        let me = self as *const Core as usize;
        OVERRIDE
            .with(|o| match &*o.borrow() {
                Some((core, _, conn)) if *core == me => Some(Conn::Local(conn.clone())),
                _ => None,
            })
            .unwrap_or_else(|| self.conn.clone())
    }

    /// A command on the caller runtime's own connection failed: forget that connection, so
    /// a later operation makes a new one.
    fn drop_local(&self, conn: &Conn) {
        let (Conn::Local(_), Some(local)) = (conn, &self.local) else { return };
        let me = self as *const Core as usize;
        if let Some(id) = OVERRIDE.with(|o| o.borrow().as_ref().filter(|l| l.0 == me).map(|l| l.1)) {
            local.table.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> SessionError {
        if self.healthy.swap(false, Ordering::Relaxed) {
            log::warn!("session engine: Redis at {} unavailable: {what}", self.url);
        }
        Unavailable::BackendUnreachable { message: what.to_string() }.into()
    }

    fn timed_out(&self) -> SessionError {
        if self.healthy.swap(false, Ordering::Relaxed) {
            log::warn!("session engine: Redis at {} gave no answer within {COMMAND_TIMEOUT:?}", self.url);
        }
        Unavailable::BackendTimeout { after: COMMAND_TIMEOUT }.into()
    }

    fn reached(&self) {
        if !self.healthy.load(Ordering::Relaxed) && !self.healthy.swap(true, Ordering::Relaxed) {
            log::info!("session engine: Redis at {} reachable again", self.url);
        }
    }

    /// One command, bounded by [`COMMAND_TIMEOUT`].
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn();
        match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async(&mut conn)).await {
            Ok(Ok(value)) => {
                self.reached();
                Ok(value)
            }
            Ok(Err(e)) => {
                self.drop_local(&conn);
                Err(self.unavailable(e))
            }
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Index maintenance that may fail without harm: readers tolerate stale entries.
    async fn best_effort(&self, cmd: &redis::Cmd) {
        if let Err(e) = self.query::<Value>(cmd).await {
            log::debug!("session index update skipped: {e}");
        }
    }

    fn common_args(&self, token: &str) -> [Vec<u8>; 5] {
        let l = &self.lifetimes;
        [
            self.clock.now_ms().to_string().into_bytes(),
            l.volatile_ms.to_string().into_bytes(),
            l.persistent_ms.to_string().into_bytes(),
            l.absolute_ms.to_string().into_bytes(),
            token.as_bytes().to_vec(),
        ]
    }

    /// Runs `script` on one session; waits out another caller's update lock; maps the
    /// statuses every script shares to errors.
    async fn exec(&self, script: &Script, k: &SessionKeys, token: &str, args: &[&[u8]]) -> Result<Reply> {
        self.exec_keys(script, &[&k.session, &k.lock], token, args).await
    }

    async fn exec_keys(&self, script: &Script, keys: &[&str], token: &str, args: &[&[u8]]) -> Result<Reply> {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = 1;
        loop {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(*key);
            }
            for arg in self.common_args(token) {
                invocation.arg(arg);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            let mut conn = self.conn();
            let value = match tokio::time::timeout(COMMAND_TIMEOUT, invocation.invoke_async::<Value>(&mut conn)).await {
                Ok(Ok(value)) => value,
                Ok(Err(e)) => {
                    self.drop_local(&conn);
                    return Err(self.unavailable(e));
                }
                Err(_) => return Err(self.timed_out()),
            };
            self.reached();
            let Value::Array(items) = value else {
                return Err(SessionError::internal("unexpected reply from Redis (not an array)"));
            };
            let reply = Reply(items);
            match reply.status() {
                "ok" => {
                    let _ = LOOKUP.try_with(|first| {
                        first.borrow_mut().get_or_insert_with(|| Reply(reply.0[..EXTRA.min(reply.0.len())].to_vec()));
                    });
                    return Ok(reply);
                }
                "done" | "exists" | "fallback" => return Ok(reply),
                "gone" => return Err(SessionError::SessionGone),
                "notloggedin" => return Err(SessionError::NotLoggedIn),
                "full" => return Err(SessionError::Full { limit: self.limits.max_sessions }),
                "toomany" => return Err(SessionError::TooManyKeys { limit: self.limits.max_keys }),
                "toolarge" => {
                    let size = reply.int(1).unwrap_or(0) as usize;
                    return Err(SessionError::ValueTooLarge { size, limit: self.limits.max_value_bytes });
                }
                "lost" => {
                    log::warn!("update took longer than its {LOCK_MS} ms lock on the session; nothing was written");
                    return Err(Unavailable::Busy { what: "the update outlived its lock on the session" }.into());
                }
                "locked" if Instant::now() < deadline => {
                    let jitter = rand::rng().random_range(0..=pause);
                    tokio::time::sleep(Duration::from_millis(pause + jitter)).await;
                    pause = (pause * 2).min(8);
                }
                "locked" => {
                    return Err(Unavailable::Busy { what: "another update holds the session" }.into());
                }
                other => return Err(SessionError::internal(format_args!("unexpected Redis script status {other:?}"))),
            }
        }
    }

    fn check_size(&self, value: &[u8]) -> Result<()> {
        let limit = self.limits.max_value_bytes;
        if value.len() > limit {
            return Err(SessionError::ValueTooLarge { size: value.len(), limit });
        }
        Ok(())
    }

    /// The live-sessions cap for a creating script to check. One server: the script checks
    /// `DBSIZE` itself (no extra round trip). A cluster: `DBSIZE` summed over the primaries
    /// here, and the script checks nothing (`""`).
    async fn cap_arg(&self) -> Result<String> {
        let limit = self.limits.max_sessions;
        match self.conn {
            Conn::Single(_) | Conn::Local(_) => Ok(limit.to_string()),
            Conn::Cluster(_) => {
                let size: usize = self.query(&redis::cmd("DBSIZE")).await?;
                if size >= limit {
                    return Err(SessionError::Full { limit });
                }
                Ok(String::new())
            }
        }
    }

    /// `create` then `increment` by `by` of `field`, as one script; `None` when the script
    /// leaves it to those two steps (a limit refuses the value).
    async fn create_counter(&self, field: Vec<u8>, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        loop {
            let cap = self.cap_arg().await?;
            let new = self.keyring.generate();
            let args = [
                cap.into_bytes(),
                field.clone(),
                by.to_string().into_bytes(),
                self.limits.max_keys.to_string().into_bytes(),
                self.limits.max_value_bytes.to_string().into_bytes(),
            ];
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let r = self.exec(&scripts::CREATE_COUNTER, &keys::session(&new), "", &args).await?;
            match r.status() {
                "exists" => continue,
                "fallback" => return Ok(None),
                _ => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    // Counted as the two operations it stands for.
                    self.operations.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some((r.info(new)?, by)));
                }
            }
        }
    }

    async fn create(&self, id: Option<SessionId>) -> Result<SessionInfo> {
        loop {
            // The live-sessions cap counts every key of the database: see the module guide.
            let in_script = self.cap_arg().await?;
            let new = id.unwrap_or_else(|| self.keyring.generate());
            let r = self.exec(&scripts::CREATE, &keys::session(&new), "", &[in_script.as_bytes()]).await?;
            match r.status() {
                "exists" if id.is_some() => return Err(SessionError::InvalidId),
                "exists" => continue,
                _ => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    return r.info(new);
                }
            }
        }
    }

    async fn update(&self, id: SessionId, field: Vec<u8>, step: UpdateFn) -> Result<Option<Vec<u8>>> {
        let k = keys::session(&id);
        let token = format!("{:016x}", rand::rng().random::<u64>());
        let lock_ms = LOCK_MS.to_string();
        let r = self.exec(&scripts::LOCK_READ, &k, &token, &[&field, lock_ms.as_bytes()]).await?;
        let current = r.bytes(EXTRA);
        let outcome = match catch_unwind(AssertUnwindSafe(|| step(current.as_deref()))) {
            Ok(Ok(new)) => match &new {
                Some(value) => self.check_size(value).map(|()| new),
                None => Ok(new),
            },
            Ok(Err(e)) => Err(e),
            Err(payload) => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                log::error!("session update panicked and was contained: {msg}");
                Err(SessionError::Panicked(msg))
            }
        };
        let new = match outcome {
            Ok(new) => new,
            Err(e) => {
                if let Err(unlock) = self.exec(&scripts::UNLOCK, &k, &token, &[]).await {
                    log::debug!("update lock left to expire: {unlock}");
                }
                return Err(e);
            }
        };
        let max_keys = self.limits.max_keys.to_string();
        let (present, value): (&[u8], &[u8]) = match &new {
            Some(v) => (b"1", v),
            None => (b"0", b""),
        };
        self.exec(&scripts::COMMIT, &k, &token, &[&field, present, value, max_keys.as_bytes()]).await?;
        Ok(new)
    }

    /// The index entry is added before the rotation and the old one removed after it, each
    /// in its own command (the user key is in another Cluster slot): a failure in between
    /// leaves a stale entry, which readers skip and clean, never a session missing from it.
    async fn rotate(&self, id: SessionId, userid: u64) -> Result<SessionInfo> {
        let old = keys::session(&id);
        loop {
            let new_id = self.keyring.generate_sibling(&id);
            let new = keys::session(&new_id);
            if userid != 0 {
                let user = keys::user(userid);
                let mut pipe = redis::pipe();
                pipe.sadd(&user, &new.member).ignore().pexpire(&user, self.index_ttl_ms() as i64).ignore();
                let mut conn = self.conn.clone();
                match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(&mut conn)).await {
                    Ok(Ok(())) => self.reached(),
                    Ok(Err(e)) => return Err(self.unavailable(e)),
                    Err(_) => return Err(self.timed_out()),
                }
            }
            let uid = userid.to_string();
            let result =
                self.exec_keys(&scripts::ROTATE, &[&old.session, &old.lock, &new.session], "", &[uid.as_bytes()]).await;
            let reply = match result {
                Ok(r) if r.status() == "ok" => r,
                other => {
                    if userid != 0 {
                        self.best_effort(redis::cmd("SREM").arg(keys::user(userid)).arg(&new.member)).await;
                    }
                    match other {
                        Ok(_) => continue, // the new id is taken (never in practice): draw another
                        Err(e) => return Err(e),
                    }
                }
            };
            let previous = reply.text(EXTRA).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
            if previous != 0 {
                self.best_effort(redis::cmd("SREM").arg(keys::user(previous)).arg(&old.member)).await;
            }
            return reply.info(new_id);
        }
    }

    /// Index keys outlive every session they list.
    fn index_ttl_ms(&self) -> u64 {
        self.lifetimes.persistent_ms.max(self.lifetimes.volatile_ms).saturating_add(60_000)
    }

    /// Deletes a session (only if it belongs to `only_user`, when given); whether it did.
    async fn destroy(&self, k: &SessionKeys, only_user: Option<u64>) -> Result<bool> {
        let only = only_user.map(|u| u.to_string()).unwrap_or_default();
        let r = self.exec(&scripts::DESTROY, k, "", &[only.as_bytes()]).await?;
        let Some(userid) = r.text(1) else { return Ok(false) };
        self.destroyed.fetch_add(1, Ordering::Relaxed);
        if only_user.is_none()
            && let Ok(u @ 1..) = userid.parse::<u64>()
        {
            self.best_effort(redis::cmd("SREM").arg(keys::user(u)).arg(&k.member)).await;
        }
        Ok(true)
    }

    async fn members(&self, userid: u64) -> Result<Vec<String>> {
        self.query(redis::cmd("SMEMBERS").arg(keys::user(userid))).await
    }

    async fn logout_user(&self, userid: u64) -> Result<usize> {
        let members = self.members(userid).await?;
        let mut ended = 0;
        for member in &members {
            if let Some(id) = keys::of_member(member)
                && self.destroy(&keys::session(&id), Some(userid)).await?
            {
                ended += 1;
            }
        }
        if !members.is_empty() {
            self.best_effort(redis::cmd("SREM").arg(keys::user(userid)).arg(&members)).await;
        }
        Ok(ended)
    }

    async fn sessions_of(&self, userid: u64) -> Result<Vec<SessionInfo>> {
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for member in self.members(userid).await? {
            let Some(id) = keys::of_member(&member) else {
                stale.push(member);
                continue;
            };
            match self.exec(&scripts::INFO, &keys::session(&id), "", &[]).await {
                Ok(r) => match r.info(id) {
                    Ok(info) if info.userid == userid => live.push(info),
                    _ => stale.push(member),
                },
                Err(SessionError::SessionGone) => stale.push(member),
                Err(e) => return Err(e),
            }
        }
        if !stale.is_empty() {
            self.best_effort(redis::cmd("SREM").arg(keys::user(userid)).arg(&stale)).await;
        }
        live.sort_by_key(|s| std::cmp::Reverse(s.last_access));
        Ok(live)
    }

    async fn count_sessions(&self) -> Result<usize> {
        if let Conn::Cluster(_) = self.conn {
            // SCAN walks one node: in a cluster, count every key of every primary instead.
            return self.query(&redis::cmd("DBSIZE")).await;
        }
        let mut cursor: u64 = 0;
        let mut count = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .query(redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(keys::SESSION_PATTERN).arg("COUNT").arg(1000))
                .await?;
            count += batch.len();
            if next == 0 {
                return Ok(count);
            }
            cursor = next;
        }
    }
}

impl Reply {
    fn status(&self) -> &str {
        match self.0.first() {
            Some(Value::BulkString(b)) => std::str::from_utf8(b).unwrap_or("?"),
            Some(Value::SimpleString(s)) => s,
            _ => "?",
        }
    }

    fn bytes(&self, i: usize) -> Option<Vec<u8>> {
        match self.0.get(i) {
            Some(Value::BulkString(b)) => Some(b.clone()),
            Some(Value::SimpleString(s)) => Some(s.clone().into_bytes()),
            _ => None,
        }
    }

    fn text(&self, i: usize) -> Option<String> {
        self.bytes(i).and_then(|b| String::from_utf8(b).ok())
    }

    fn int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }
    }

    /// The metadata (items 1..=5) as the info of session `id`.
    fn info(&self, id: SessionId) -> Result<SessionInfo> {
        self.info_at(id, 4)
    }

    /// As [`info`](Self::info), but as it was before the script's use of the session: the
    /// previous last access (item 6) in place of the new one.
    fn info_before(&self, id: SessionId) -> Result<SessionInfo> {
        self.info_at(id, 6)
    }

    fn info_at(&self, id: SessionId, access: usize) -> Result<SessionInfo> {
        let bad = || SessionError::internal("malformed session metadata in Redis");
        let userid = self.text(1).and_then(|t| t.parse().ok()).ok_or_else(bad)?;
        let persistent = self.text(2).ok_or_else(bad)? == "1";
        let ms = |i| self.int(i).map(|n| n.max(0) as u64).ok_or_else(bad);
        Ok(SessionInfo {
            id,
            userid,
            persistent,
            created: to_system_time(ms(3)?),
            last_access: to_system_time(ms(access)?),
            expires: to_system_time(ms(5)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("redis://:hunter2@db:6379/1"), "redis://***@db:6379/1");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://:a@h:1, redis://:b@h:2"), "redis://***@h:1,redis://***@h:2");
    }
}
