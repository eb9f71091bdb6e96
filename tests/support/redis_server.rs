//! A real `redis-server` for tests: on a free 127.0.0.1 port, in a temp dir, no persistence.
//! Stopped when the guard drops; a watchdog also stops it when the test process ends (a
//! server kept in a `static` is never dropped).
//!
//! "Ready" means our own child is listening: its log file (one per start) says it is ready to
//! accept connections, and (plain TCP) the port answers `PING` with `PONG` and `INFO` names our
//! child's process id. A port found free can be taken before the server binds it: a start
//! whose server cannot bind picks another port and tries again; a restart on the same port
//! ([`RedisServer::resume`]) waits for the port to come free (and fails, loudly, if it does not).
#![allow(dead_code, reason = "three test binaries (engine, http, process) each use their own part")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Databases the test server offers: one per test, so tests never see each other's keys.
pub const DATABASES: usize = 1000;

/// Starts on fresh ports before giving up.
const PORT_ATTEMPTS: usize = 20;

/// A running (or stopped, for fault tests) redis-server.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    next_db: AtomicUsize,
    /// How many times a server was spawned here (names each start's log file).
    starts: usize,
    /// Whether the server speaks plain TCP on `port` (not TLS only): readiness asks it `PING`.
    plain: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Why a start failed.
#[derive(Debug)]
enum StartFailure {
    /// The port (or the cluster bus port) is in use by someone else.
    PortTaken(String),
    /// Anything else: the test cannot go on.
    Other(String),
}

/// One RESP command over a new connection; answers the raw reply (up to its first line, or the
/// whole bulk string).
fn ask(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command += &format!("${}\r\n{arg}\r\n", arg.len());
    }
    stream.write_all(command.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let Some(length) = first.strip_prefix('$') else { return Ok(first) };
    let length: usize = length.trim().parse().map_err(std::io::Error::other)?;
    let mut bulk = vec![0; length + 2];
    std::io::Read::read_exact(&mut reader, &mut bulk)?;
    Ok(String::from_utf8_lossy(&bulk).into_owned())
}

impl RedisServer {
    fn unstarted(port: u16, plain: bool) -> Self {
        Self { port, dir: tempfile::tempdir().unwrap(), child: None, next_db: AtomicUsize::new(1), starts: 0, plain }
    }

    /// Starts a server on a free port; panics with a clear message when redis-server is missing.
    pub fn start() -> Self {
        Self::start_on_a_free_port(true, |_| vec!["--databases".into(), DATABASES.to_string()])
    }

    /// Starts with `args(port)` on a free port, another one each time the last was taken.
    fn start_on_a_free_port(plain: bool, args: impl Fn(u16) -> Vec<String>) -> Self {
        let mut taken = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Self::unstarted(free_port(), plain);
            let extra = args(server.port);
            match server.try_resume_with(&extra) {
                Ok(()) => return server,
                Err(StartFailure::PortTaken(why)) => taken.push(why),
                Err(StartFailure::Other(why)) => panic!("{why}"),
            }
        }
        panic!("redis-server found every one of {PORT_ATTEMPTS} free ports taken:\n{}", taken.join("\n"));
    }

    /// Starts a server that speaks TLS only, on its port (`rediss://127.0.0.1:port`), with the
    /// certificate and key given; clients need no certificate of their own.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> Self {
        let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_owned();
        let (cert, key, ca) = (path(cert), path(key), path(ca));
        Self::start_on_a_free_port(false, |port| {
            // A later `--port` wins over the earlier one: the plain port is off.
            [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
            ]
            .map(str::to_owned)
            .to_vec()
        })
    }

    /// (Re)starts the server on the same port (its clients know no other). If another process
    /// took the port meanwhile, waits up to 30 s for it to come free, then panics: a test must
    /// not go on against a server that is not ours.
    pub fn resume(&mut self) {
        let extra = ["--databases".to_owned(), DATABASES.to_string()];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_resume_with(&extra) {
                Ok(()) => return,
                Err(StartFailure::PortTaken(why)) if Instant::now() < deadline => {
                    eprintln!("redis-server cannot bind its port again yet: {why}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(StartFailure::PortTaken(why) | StartFailure::Other(why)) => panic!("{why}"),
            }
        }
    }

    /// Spawns redis-server on `self.port` with `extra` arguments and waits until it is ready
    /// (see the module's documentation); a server that exits first is a failure.
    fn try_resume_with(&mut self, extra: &[String]) -> Result<(), StartFailure> {
        assert!(self.child.is_none(), "redis-server already running");
        self.starts += 1;
        let log = self.dir.path().join(format!("redis-{}.log", self.starts));
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): the Redis backend tests need it on PATH \
                     (apt-get install redis-server; .ci/test installs it)"
                )
            });
        // Watchdog: stop the server when this test process is gone. Best effort: without it
        // the server still stops when the guard drops.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {redis} 2>/dev/null; do sleep 0.5; done; kill {redis} 2>/dev/null",
                me = std::process::id(),
                redis = child.id()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = watchdog {
            eprintln!("no watchdog for redis-server {} ({e})", child.id());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = child.try_wait().unwrap() {
                let why = format!("redis-server on port {} exited ({status}):\n{logged}", self.port);
                return Err(if logged.contains("in use") {
                    StartFailure::PortTaken(why)
                } else {
                    StartFailure::Other(why)
                });
            }
            if logged.contains("Ready to accept connections") && (!self.plain || self.answers_as(child.id())) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure::Other(format!(
                    "redis-server on port {} was not ready within 30 s:\n{logged}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server on our port answers `PING` with `PONG` and is process `pid`.
    fn answers_as(&self, pid: u32) -> bool {
        let pong = ask(self.port, &["PING"]).is_ok_and(|r| r.trim_end() == "+PONG");
        pong && ask(self.port, &["INFO", "server"])
            .is_ok_and(|info| info.lines().any(|l| l.trim_end() == format!("process_id:{pid}")))
    }

    /// Kills the server (as a crash or network loss would look to clients).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL of a database no other test of this process uses.
    pub fn fresh_db_url(&self) -> String {
        let db = self.next_db.fetch_add(1, Ordering::Relaxed);
        assert!(db < DATABASES, "more tests than test databases; raise DATABASES");
        format!("{}/{db}", self.url())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server shared by every test of this binary.
pub fn shared() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A three-primary Redis Cluster on 127.0.0.1, built with `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// A port whose cluster bus port (+10000) is free too (when looked at: a start that finds
/// either taken picks another).
fn free_cluster_port() -> u16 {
    loop {
        let port = 20_000 + (u16::try_from(std::process::id() % 65_536).unwrap() ^ rand_u16()) % 10_000;
        let ok = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if ok(port) && ok(port + 10_000) {
            return port;
        }
    }
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    u16::try_from(h.finish() % 65_536).unwrap()
}

impl RedisCluster {
    pub fn start() -> Self {
        let mut nodes: Vec<RedisServer> = Vec::new();
        let mut taken = Vec::new();
        while nodes.len() < 3 {
            assert!(
                taken.len() < PORT_ATTEMPTS,
                "cluster nodes found {PORT_ATTEMPTS} free ports taken:\n{}",
                taken.join("\n")
            );
            let port = free_cluster_port();
            if nodes.iter().any(|n| n.port == port || n.port.abs_diff(port) == 10_000) {
                continue;
            }
            let mut node = RedisServer::unstarted(port, true);
            node.next_db = AtomicUsize::new(0);
            let extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"].map(str::to_owned);
            match node.try_resume_with(&extra) {
                Ok(()) => nodes.push(node),
                Err(StartFailure::PortTaken(why)) => taken.push(why),
                Err(StartFailure::Other(why)) => panic!("{why}"),
            }
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): the Redis Cluster test needs it"));
        assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ready: {info}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Self { nodes }
    }

    /// Every node's URL, comma-separated: `storage.redis_url` with `redis_cluster = true`.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }
}

/// One cluster shared by every test of this binary.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}
