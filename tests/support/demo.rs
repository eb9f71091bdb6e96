//! The remember-me demo as a real process, for tests that need one: started on a port the
//! kernel picks (the demo prints it), killed when the test ends, spoken to over raw HTTP/1.1.
//!
//! Needs the demo binary, which a plain `cargo test` builds; with a test filter, run
//! `cargo build --example remember_me` first. A module of the `process` test binary
//! (`tests/process/main.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A person's browser: robots get no session.
pub const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";

/// target/<profile>/examples/remember_me, next to this test's binary in target/<profile>/deps.
pub fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let demo = profile_dir.join("examples").join(format!("remember_me{}", std::env::consts::EXE_SUFFIX));
    assert!(
        demo.is_file(),
        "{} is missing: a plain `cargo test` builds the examples; with a filter run \
         `cargo build --example remember_me` first",
        demo.display()
    );
    demo
}

/// A running demo, killed (SIGKILL) when dropped.
pub struct Demo {
    pub child: Child,
    pub port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo binary with `--config config --bind 127.0.0.1:0`, without waiting.
pub fn spawn(config: &Path) -> Child {
    spawn_logging(config, "warn")
}

/// As [`spawn`], with `RUST_LOG=rust_log`.
pub fn spawn_logging(config: &Path, rust_log: &str) -> Child {
    spawn_with_env(config, rust_log, &[])
}

/// As [`spawn_logging`], with more environment variables.
pub fn spawn_with_env(config: &Path, rust_log: &str, env: &[(&str, &Path)]) -> Child {
    Command::new(demo_binary())
        .args(["--bind", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", rust_log)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the remember_me demo")
}

/// Reads `pipe` to its end on a thread of its own, into `sink`, so the child never blocks on it.
fn drain(pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
            text.push_str(&line);
            text.push('\n');
        }
    });
}

impl Demo {
    /// Starts the demo and waits until it listens (at most 30 s).
    pub fn start(config: &Path) -> Demo {
        Self::start_logging(config, "warn")
    }

    /// As [`start`](Self::start), with `RUST_LOG=rust_log`.
    pub fn start_logging(config: &Path, rust_log: &str) -> Demo {
        Self::start_with_env(config, rust_log, &[])
    }

    /// As [`start_logging`](Self::start_logging), with more environment variables.
    pub fn start_with_env(config: &Path, rust_log: &str, env: &[(&str, &Path)]) -> Demo {
        let mut child = spawn_with_env(config, rust_log, env);
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(child.stderr.take().expect("piped stderr"), stderr.clone());
        let (found, port) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines.by_ref() {
                let port = line
                    .strip_prefix("listening on http://")
                    .and_then(|rest| rest.trim_end_matches('/').rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok());
                if let Some(port) = port {
                    let _ = found.send(port);
                    break;
                }
            }
            lines.for_each(drop);
        });
        let mut demo = Demo { child, port: 0, stderr };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(port) = port.recv_timeout(Duration::from_millis(50)) {
                demo.port = port;
                return demo;
            }
            if let Ok(Some(status)) = demo.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100)); // let the drain thread finish
                panic!("the demo exited before listening: {status}\n{}", demo.stderr());
            }
            assert!(Instant::now() < deadline, "the demo did not listen within 30 s\n{}", demo.stderr());
        }
    }

    /// What the demo logged to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Waits for the process to end, at most `within`.
    pub fn wait_for_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the demo did not exit within {within:?}\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One request to this demo; see [`request`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Option<String>, Value) {
        request(self.port, method, path, cookie, body)
    }
}

/// One HTTP/1.1 request with a browser's User-Agent; answers the status, the `sid` cookie it
/// set (if any) and the JSON body (`Null` when not JSON). Panics when there is no answer.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> (u16, Option<String>, Value) {
    try_request(port, method, path, cookie, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// As [`request`], with an error instead of a panic when the connection fails or the answer is
/// cut short (as when the demo is killed meanwhile).
pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<(u16, Option<String>, Value)> {
    let malformed = |what: &str| std::io::Error::other(format!("{what} response"));
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    // Generous: a hang fails, a slow answer on a busy machine does not.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        head += &format!("Cookie: sid={c}\r\n");
    }
    let body = body.unwrap_or("");
    head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).map_err(|_| malformed("a non-UTF-8"))?;
    let (headers, payload) =
        text.split_once("\r\n\r\n").ok_or_else(|| std::io::Error::other(format!("incomplete response {text:?}")))?;
    let status = headers.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| malformed("a status-less"))?;
    let mut chunked = false;
    let mut set_cookie = None;
    for line in headers.lines().skip(1) {
        let (name, value) = line.split_once(':').ok_or_else(|| malformed("a malformed"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
        if name.eq_ignore_ascii_case("set-cookie")
            && let Some(v) = value.strip_prefix("sid=")
        {
            set_cookie = v.split(';').next().map(str::to_owned);
        }
    }
    let payload =
        if chunked { unchunk(payload).ok_or_else(|| malformed("a cut chunked"))? } else { payload.to_owned() };
    Ok((status, set_cookie, serde_json::from_str(&payload).unwrap_or(Value::Null)))
}

/// The body of a chunked payload; `None` when it is cut short or malformed.
fn unchunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out += after.get(..size)?;
        rest = after.get(size + 2..)?;
    }
    None
}
