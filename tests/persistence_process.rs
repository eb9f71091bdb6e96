//! Durable sessions across real process deaths of the remember-me demo: SIGTERM (graceful, final
//! snapshot) and `kill -9` (only the last periodic snapshot survives).
//!
//! Needs the demo binary, which a plain `cargo test` builds; with a test filter, run
//! `cargo build --example remember_me` first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";

/// The demo process, killed when the test ends however it ends.
struct Demo {
    child: Child,
    port: u16,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// target/<profile>/examples/remember_me, next to this test's binary in target/<profile>/deps.
fn demo_binary() -> PathBuf {
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

fn write_config(dir: &Path, snapshot_interval: &str) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"process test secret, at least 32 bytes long\"\nshards = 2\n\
             [cookie]\nsecure = false\n[storage]\ndir = {:?}\nsnapshot_interval = {snapshot_interval:?}\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    config
}

fn start(config: &Path) -> Demo {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(demo_binary())
        .args(["--bind", &format!("127.0.0.1:{port}"), "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the remember_me demo");
    let mut demo = Demo { child, port };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = demo.child.try_wait() {
            panic!("the demo exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "the demo did not listen within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    demo
}

/// One HTTP/1.1 request; answers the status, the `sid` cookie it set (if any) and the JSON body.
fn request(
    demo: &Demo,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", demo.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        head += &format!("Cookie: sid={c}\r\n");
    }
    let body = body.unwrap_or("");
    head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
    let text = String::from_utf8(raw).unwrap();
    let (headers, payload) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = headers[9..12].parse().unwrap();
    let mut chunked = false;
    let mut set_cookie = None;
    for line in headers.lines().skip(1) {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
        if name.eq_ignore_ascii_case("set-cookie")
            && let Some(v) = value.strip_prefix("sid=")
        {
            set_cookie = Some(v.split(';').next().unwrap().to_owned());
        }
    }
    let payload = if chunked {
        let mut out = String::new();
        let mut rest = payload;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out += &after[..size];
            rest = &after[size + 2..];
        }
        out
    } else {
        payload.to_owned()
    };
    (status, set_cookie, serde_json::from_str(&payload).unwrap_or(Value::Null))
}

/// Logs alice in with remember-me and visits `visits` times; answers the session cookie.
fn log_in_and_visit(demo: &Demo, visits: u64) -> String {
    let (status, cookie, _) = request(
        demo,
        "POST",
        "/api/login",
        None,
        Some(r#"{"username":"alice","password":"wonderland","remember":true}"#),
    );
    assert_eq!(status, 200);
    let mut cookie = cookie.expect("login sets the session cookie");
    for n in 1..=visits {
        let (status, set, body) = request(demo, "GET", "/api/session", Some(&cookie), None);
        assert_eq!(status, 200);
        assert_eq!(body["visits"], n);
        if let Some(set) = set {
            cookie = set;
        }
    }
    cookie
}

fn wait_for_exit(demo: &mut Demo, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the demo did not stop within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_writes_a_final_snapshot_and_a_restart_keeps_every_session() {
    let dir = tempfile::tempdir().unwrap();
    // No periodic snapshot in this test's time: only the final one can save the visits.
    let config = write_config(dir.path(), "1h");
    let mut demo = start(&config);
    let cookie = log_in_and_visit(&demo, 3);
    let (_, _, before) = request(&demo, "GET", "/api/session", Some(&cookie), None);
    assert_eq!(before["visits"], 4);

    let sent = Command::new("kill").args(["-TERM", &demo.child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = wait_for_exit(&mut demo, Duration::from_secs(20));
    assert!(status.success(), "the demo exited with {status} on SIGTERM");
    drop(demo);

    let demo = start(&config);
    let (status, _, after) = request(&demo, "GET", "/api/session", Some(&cookie), None);
    assert_eq!(status, 200);
    assert_eq!(after["session_id"], before["session_id"]);
    assert_eq!(after["userid"], 1);
    assert_eq!(after["persistent"], true);
    assert_eq!(after["visits"], 5);
}

#[test]
fn after_kill_9_the_last_periodic_snapshot_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "200ms");
    let mut demo = start(&config);
    let cookie = log_in_and_visit(&demo, 2);
    // Several snapshot intervals pass with no request: the last snapshot holds visits = 2.
    std::thread::sleep(Duration::from_millis(1500));
    demo.child.kill().unwrap(); // SIGKILL: no final snapshot
    wait_for_exit(&mut demo, Duration::from_secs(10));
    drop(demo);
    assert!(
        std::fs::read_dir(dir.path().join("data/snapshots")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".snap")),
        "a periodic snapshot was written before the kill"
    );

    let demo = start(&config);
    let (status, _, after) = request(&demo, "GET", "/api/session", Some(&cookie), None);
    assert_eq!(status, 200);
    assert_eq!(after["userid"], 1);
    assert_eq!(after["persistent"], true);
    assert_eq!(after["visits"], 3);
}
