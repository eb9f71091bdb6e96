//! The connection to Redis: one server or a Redis Cluster, the store's own I/O runtime, the
//! per-runtime [`Local`] connections, the bounds on every command and operation, and the
//! logging of outage and recovery.
//!
//! All Redis I/O is driven by a small runtime owned by the store ([`IoRuntime`]), so the
//! engine handle works from any thread or runtime (as with the memory backend), and the
//! connection's driver task never depends on a caller's runtime staying alive. Every command is
//! bounded by [`COMMAND_TIMEOUT`]; the `ConnectionManager` reconnects by itself after Redis
//! comes back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Script, Value};
use tokio::time::error::Elapsed;

use super::sentinel::SentinelConn;
use crate::error::{Result, SessionError, Unavailable};
use crate::outage::Outage;

/// Bound on connecting at start-up and on each reconnection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on each command: past it the caller gets `Unavailable` (HTTP 503), never a hang.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on each command to a primary found through Sentinel: below [`COMMAND_TIMEOUT`], so
/// the connection sees the silence itself and asks the sentinels again.
const SENTINEL_RESPONSE: Duration = Duration::from_millis(900);
/// Bound on a whole operation (some take two or three commands, or wait for a lock).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// One server (reconnecting by itself) or a Redis Cluster (following its slot map).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A caller runtime's own connection (see [`Local`]).
    Local(MultiplexedConnection),
    /// The primary Redis Sentinel names, found again after a failover (`sentinel.rs`).
    Sentinel(SentinelConn),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Local(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
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
            Conn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Local(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
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

/// An operation's use of a caller runtime's own connection.
#[derive(Clone)]
pub(super) struct LocalUse {
    /// The [`Link`] it stands in for (its address), as several stores may share a thread.
    link: usize,
    runtime: tokio::runtime::Id,
    conn: MultiplexedConnection,
}

thread_local! {
    /// The connection the operation being polled on this thread uses instead of the shared
    /// one.
    static OVERRIDE: RefCell<Option<LocalUse>> = const { RefCell::new(None) };
}

/// The store's own I/O threads: the shared connection's driver tasks live here.
pub(super) struct IoRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    /// The [`Link`]'s outages: each operation refused for one is counted here.
    outage: Arc<Outage>,
}

impl IoRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("runtime lives as long as the store")
    }

    /// Runs `op` on the store's threads, bounded by [`OPERATION_TIMEOUT`], and waits for it
    /// from whatever runtime the caller is on.
    ///
    /// Not an `async fn`, so `op` moves to its task at once instead of riding in the caller's
    /// future.
    pub(super) fn spawn<T: Send + 'static>(
        &self,
        op: impl Future<Output = Result<T>> + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send {
        let task = self.get().spawn(bounded(op, self.outage.clone()));
        async move {
            match task.await {
                Ok(result) => result,
                Err(e) => Err(SessionError::internal(format_args!("Redis task failed: {e}"))),
            }
        }
    }

    /// As [`spawn`](Self::spawn), but `op` is polled by the caller's own task, inside this
    /// runtime's context (its timers; its threads for any task the connection spawns), with
    /// `local` as the connection when given: no hop to another thread and back. The commands
    /// go to the connection's driver task through channels, which work from any thread or
    /// runtime. Only for operations where being cancelled with the caller (a dropped request)
    /// leaves nothing behind: one atomic script either ran or did not.
    ///
    /// Not an `async fn`: `op` goes straight into its box, so the caller's future holds a
    /// pointer to it, not `op` itself (an `async fn` would keep its argument in its state).
    pub(super) fn here<T>(
        &self,
        local: Option<LocalUse>,
        op: impl Future<Output = Result<T>>,
    ) -> impl Future<Output = Result<T>> {
        InStore { handle: self.get().handle().clone(), local, fut: Box::pin(bounded(op, self.outage.clone())) }
    }
}

impl IoRuntime {
    /// Runs `task` on the store's threads in the background (the event reader).
    pub(super) fn detach(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.get().spawn(task);
    }
}

/// A connection of its own for a command that blocks (`XREAD BLOCK`), which on the shared
/// connection would hold up every command queued behind it. Commands are bounded by
/// `timeout`, which must exceed the blocking time.
pub(super) struct Dedicated(Conn);

impl Dedicated {
    /// Connects to `url` (a server, or with `cluster` the seed nodes), bounded by
    /// [`CONNECT_TIMEOUT`]. Errs with what went wrong.
    pub(super) async fn open(url: &str, cluster: bool, timeout: Duration) -> std::result::Result<Self, String> {
        let connect = async {
            if url.starts_with(super::sentinel::SCHEME) {
                let conn = SentinelConn::open(url, CONNECT_TIMEOUT, timeout).await;
                return conn
                    .map(Conn::Sentinel)
                    .map_err(|e| redis::RedisError::from((redis::ErrorKind::IoError, "", e)));
            }
            if cluster {
                let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
                let client = ClusterClientBuilder::new(nodes)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(timeout)
                    .build()?;
                client.get_async_connection().await.map(Conn::Cluster)
            } else {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(timeout);
                let client = redis::Client::open(url)?;
                client.get_multiplexed_async_connection_with_config(&config).await.map(Conn::Local)
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(conn)) => Ok(Self(conn)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
        }
    }

    pub(super) async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        cmd.query_async(&mut self.0).await
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside the async code that usually
        // drops the last engine handle.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `op`, bounded by [`OPERATION_TIMEOUT`]; an operation refused because Redis cannot be reached
/// or did not answer is counted in the outage.
async fn bounded<T>(op: impl Future<Output = Result<T>>, outage: Arc<Outage>) -> Result<T> {
    let result = tokio::time::timeout(OPERATION_TIMEOUT, op).await.unwrap_or_else(|_| {
        let _ = outage.failed(format_args!("an operation took longer than {OPERATION_TIMEOUT:?}"));
        Err(Unavailable::BackendTimeout { after: OPERATION_TIMEOUT }.into())
    });
    if let Err(SessionError::Unavailable(Unavailable::BackendUnreachable { .. } | Unavailable::BackendTimeout { .. })) =
        &result
    {
        let _ = outage.refused();
    }
    result
}

/// A future polled inside the store runtime's context (see [`IoRuntime::here`]).
struct InStore<F> {
    handle: tokio::runtime::Handle,
    /// The caller runtime's own connection, set as [`OVERRIDE`] while polling.
    local: Option<LocalUse>,
    fut: Pin<Box<F>>,
}

impl<F: Future> Future for InStore<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
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

/// The store's way to Redis: the shared connection, the callers' own ones, and whether Redis
/// answered last time.
pub(super) struct Link {
    shared: Conn,
    local: Option<Arc<Local>>,
    /// The server's URL with any password hidden, for messages.
    url: String,
    /// Outages: logged once as they start, summed up every 10 s, once as they end (each
    /// failed command is a failed attempt; [`IoRuntime`] counts the operations refused).
    outage: Arc<Outage>,
}

impl Link {
    /// Starts the store's runtime and connects to `url` (bounded by [`CONNECT_TIMEOUT`]),
    /// checking the server answers; with `cluster`, `url` lists seed nodes, comma-separated.
    /// `shown` is `url` fit for messages. Errs with what went wrong.
    pub(super) async fn open(
        url: &str,
        cluster: bool,
        shown: String,
    ) -> std::result::Result<(IoRuntime, Self), String> {
        let threads = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("draco-redis")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the Redis I/O threads: {e}"))?;
        let connect = if url.starts_with(super::sentinel::SCHEME) {
            let url = url.to_owned();
            futures_util::future::Either::Left(futures_util::future::Either::Left(async move {
                let conn = SentinelConn::open(&url, CONNECT_TIMEOUT, SENTINEL_RESPONSE).await;
                conn.map(Conn::Sentinel).map_err(|e| redis::RedisError::from((redis::ErrorKind::IoError, "", e)))
            }))
        } else if cluster {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            let client = ClusterClientBuilder::new(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(COMMAND_TIMEOUT)
                .retries(2)
                .build()
                .map_err(|e| e.to_string())?;
            futures_util::future::Either::Left(futures_util::future::Either::Right(async move {
                client.get_async_connection().await.map(Conn::Cluster)
            }))
        } else {
            let client = redis::Client::open(url).map_err(|e| e.to_string())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(COMMAND_TIMEOUT)
                .set_number_of_retries(1)
                .set_max_delay(500);
            futures_util::future::Either::Right(async move {
                ConnectionManager::new_with_config(client, config).await.map(Conn::Single)
            })
        };
        let outage = Arc::new(
            Outage::new(
                format!("session engine: Redis at {shown}"),
                "session operations are refused (503 with Retry-After) meanwhile",
                "redis",
                Arc::new(crate::clock::SystemClock),
            )
            .back("answers again"),
        );
        let runtime = IoRuntime { runtime: Some(threads), outage: outage.clone() };
        let connecting = runtime.get().spawn(async move {
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
        let shared = match connecting.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(message)) => return Err(message),
            Err(e) => return Err(e.to_string()),
        };
        // Plain TCP only: a `Local` connection is a bare socket, so TLS (`rediss://`, addr
        // `TcpTls`) keeps to the shared connection.
        let local = match (&shared, redis::IntoConnectionInfo::into_connection_info(url)) {
            (Conn::Single(_), Ok(info)) => match info.addr {
                redis::ConnectionAddr::Tcp(host, port) => {
                    Some(Arc::new(Local { addr: (host, port), info: info.redis, table: Mutex::new(HashMap::new()) }))
                }
                _ => None,
            },
            _ => None,
        };
        Ok((runtime, Self { shared, local, url: shown, outage }))
    }

    /// The server's URL, password hidden.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// A Redis Cluster, where a command on every key (`DBSIZE`, `SCAN`) must reach every primary.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.shared, Conn::Cluster(_))
    }

    /// The calling runtime's own connection when it has one (see [`Local`]), for
    /// [`IoRuntime::here`]; starts making it when not yet tried.
    pub(super) fn local_use(&self) -> Option<LocalUse> {
        let local = self.local.as_ref()?;
        let caller = tokio::runtime::Handle::try_current().ok()?;
        if caller.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        let id = caller.id();
        let mut table = local.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get(&id) {
            Some(LocalState::Ready(conn)) => {
                return Some(LocalUse { link: self as *const Link as usize, runtime: id, conn: conn.clone() });
            }
            Some(_) => return None,
            None => {}
        }
        if table.len() >= LOCAL_MAX {
            table.clear();
        }
        table.insert(id, LocalState::Connecting);
        drop(table);
        let weak: Weak<Local> = Arc::downgrade(local);
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
            if let Some(local) = weak.upgrade() {
                local.table.lock().unwrap_or_else(|p| p.into_inner()).insert(id, state);
            }
        });
        None
    }

    /// The connection for this operation: the caller runtime's own, else the shared one.
    fn conn(&self) -> Conn {
        let me = self as *const Link as usize;
        OVERRIDE
            .with(|o| match &*o.borrow() {
                Some(l) if l.link == me => Some(Conn::Local(l.conn.clone())),
                _ => None,
            })
            .unwrap_or_else(|| self.shared.clone())
    }

    /// A command on the caller runtime's own connection failed: forget that connection, so
    /// a later operation makes a new one.
    fn drop_local(&self, conn: &Conn) {
        let (Conn::Local(_), Some(local)) = (conn, &self.local) else { return };
        let me = self as *const Link as usize;
        if let Some(id) = OVERRIDE.with(|o| o.borrow().as_ref().filter(|l| l.link == me).map(|l| l.runtime)) {
            local.table.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> SessionError {
        let message = what.to_string();
        self.refuse(&message);
        Unavailable::BackendUnreachable { message }.into()
    }

    fn timed_out(&self) -> SessionError {
        self.refuse(format_args!("no answer within {COMMAND_TIMEOUT:?}"));
        Unavailable::BackendTimeout { after: COMMAND_TIMEOUT }.into()
    }

    /// A command failed: the outage starts or goes on.
    fn refuse(&self, cause: impl std::fmt::Display) {
        let _ = self.outage.failed(cause);
    }

    fn reached(&self) {
        let _ = self.outage.recovered();
    }

    /// The outcome of a request on `conn`: logs an outage or a recovery, maps a failure to
    /// `Unavailable`.
    fn answered<T>(&self, conn: &Conn, answer: std::result::Result<RedisResult<T>, Elapsed>) -> Result<T> {
        match answer {
            Ok(Ok(value)) => {
                self.reached();
                Ok(value)
            }
            Ok(Err(e)) => {
                self.drop_local(conn);
                Err(self.unavailable(e))
            }
            Err(_) => Err(self.timed_out()),
        }
    }

    /// One command, bounded by [`COMMAND_TIMEOUT`].
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut conn = self.conn();
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async(&mut conn)).await;
        self.answered(&conn, answer)
    }

    /// One pipeline, bounded by [`COMMAND_TIMEOUT`].
    pub(super) async fn query_pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T> {
        let mut conn = self.conn();
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async(&mut conn)).await;
        self.answered(&conn, answer)
    }

    /// One script: `evalsha`, an `EVALSHA` of `script`, which is loaded first when Redis does
    /// not have it (a restart, a new node); bounded by [`COMMAND_TIMEOUT`].
    pub(super) async fn invoke(&self, script: &Script, evalsha: &Cmd) -> Result<Value> {
        let mut conn = self.conn();
        let answer = tokio::time::timeout(COMMAND_TIMEOUT, evaluate(script, evalsha, &mut conn)).await;
        self.answered(&conn, answer)
    }
}

async fn evaluate(script: &Script, evalsha: &Cmd, conn: &mut Conn) -> RedisResult<Value> {
    match evalsha.query_async(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
            script.load_async(conn).await?;
            evalsha.query_async(conn).await
        }
        answer => answer,
    }
}
