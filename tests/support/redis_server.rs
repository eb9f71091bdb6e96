//! A real `redis-server` for tests: on a free 127.0.0.1 port, in a temp dir, no persistence.
//! Stopped when the guard drops; a watchdog also stops it when the test process ends (a
//! server kept in a `static` is never dropped).
#![allow(dead_code)]

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

    /// (Re)starts the server on the same port.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "redis-server already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--databases", &DATABASES.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
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
