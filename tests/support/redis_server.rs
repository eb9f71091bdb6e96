//! A real `redis-server` for tests: on a free 127.0.0.1 port, in a temp dir, no persistence.
//! Stopped when the guard drops; a watchdog also stops it when the test process ends (a
//! server kept in a `static` is never dropped).
#![allow(dead_code, reason = "three test binaries (engine, http, process) each use their own part")]

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Databases the test server offers: one per test, so tests never see each other's keys.
pub const DATABASES: usize = 1000;

/// A running (or stopped, for fault tests) redis-server.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    next_db: AtomicUsize,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a server on a free port; panics with a clear message when redis-server is missing.
    pub fn start() -> Self {
        let mut server =
            Self { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None, next_db: AtomicUsize::new(1) };
        server.resume();
        server
    }

    /// Starts a server that speaks TLS only, on its port (`rediss://127.0.0.1:port`), with the
    /// certificate and key given; clients need no certificate of their own.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> Self {
        let mut server =
            Self { port: free_port(), dir: tempfile::tempdir().unwrap(), child: None, next_db: AtomicUsize::new(1) };
        let port = server.port.to_string();
        let path = |p: &std::path::Path| p.to_str().expect("UTF-8 path").to_owned();
        let (cert, key, ca) = (path(cert), path(key), path(ca));
        // A later `--port` wins over the earlier one: the plain port is off.
        server.resume_with(&[
            "--port",
            "0",
            "--tls-port",
            &port,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ]);
        server
    }

    /// (Re)starts the server on the same port.
    pub fn resume(&mut self) {
        self.resume_with(&["--databases", &DATABASES.to_string()]);
    }

    fn resume_with(&mut self, extra: &[&str]) {
        assert!(self.child.is_none(), "redis-server already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(self.dir.path())
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
        // Watchdog: stop the server when this test process is gone.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {redis} 2>/dev/null; do sleep 0.5; done; kill {redis} 2>/dev/null",
                me = std::process::id(),
                redis = child.id()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start listening on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// A port whose cluster bus port (+10000) is free too.
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
        let mut nodes = Vec::new();
        while nodes.len() < 3 {
            let port = free_cluster_port();
            if nodes.iter().any(|n: &RedisServer| n.port == port) {
                continue;
            }
            let mut node =
                RedisServer { port, dir: tempfile::tempdir().unwrap(), child: None, next_db: AtomicUsize::new(0) };
            node.resume_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]);
            nodes.push(node);
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
