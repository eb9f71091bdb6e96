//! Two remember-me demo processes on two ports sharing one real redis-server: sessions are
//! shared, survive restarting both, and concurrent increments over both lose nothing. Then the
//! faults: Redis unreachable at start, and lost and back mid-run.
//!
//! Needs the demo binary built with the `redis` feature, which `cargo test --all-features`
//! does; with a test filter, run `cargo build --all-features --example remember_me` first.
#![cfg(feature = "redis")]

use crate::redis_server;

use crate::demo;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use demo::{Demo, request};
use redis_server::RedisServer;

fn write_config(dir: &Path, redis_url: &str) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"redis demo test secret, at least 32 bytes\"\n\
             [cookie]\nsecure = false\n[storage]\ndir = {:?}\nbackend = \"redis\"\nredis_url = {redis_url:?}\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    config
}

fn login(port: u16, remember: bool) -> String {
    let body = format!(r#"{{"username":"alice","password":"wonderland","remember":{remember}}}"#);
    let (status, cookie, json) = request(port, "POST", "/api/login", None, Some(&body));
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["userid"], 1);
    cookie.expect("login sets the session cookie")
}

#[test]
fn two_instances_share_sessions_survive_restarts_and_lose_no_increment() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url());
    let (a, b) = (Demo::start(&config), Demo::start(&config));

    // Log in on one instance, be logged in on the other with the same cookie.
    let cookie = login(a.port, true);
    let (status, _, on_b) = request(b.port, "GET", "/api/session", Some(&cookie), None);
    assert_eq!(status, 200);
    assert_eq!(on_b["userid"], 1);
    assert_eq!(on_b["persistent"], true);
    assert_eq!(on_b["session_id"].as_str(), Some(cookie.as_str()));
    let (_, _, on_a) = request(a.port, "GET", "/api/session", Some(&cookie), None);
    assert_eq!(on_a["visits"], 2, "both instances count into one session");

    // 200 concurrent increments spread over both instances lose none.
    let threads: Vec<_> = (0..20)
        .map(|t| {
            let cookie = cookie.clone();
            let ports = [a.port, b.port];
            std::thread::spawn(move || {
                (0..10)
                    .map(|i| {
                        let (status, _, json) =
                            request(ports[(t + i) % 2], "POST", "/api/incr/hits", Some(&cookie), None);
                        assert_eq!(status, 200, "{json}");
                        json["value"].as_i64().unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=200).collect::<Vec<_>>(), "every increment saw a distinct value");

    // Remember-me survives restarting both instances.
    drop((a, b));
    let (a, b) = (Demo::start(&config), Demo::start(&config));
    for port in [b.port, a.port] {
        let (status, _, json) = request(port, "GET", "/api/session", Some(&cookie), None);
        assert_eq!(status, 200);
        assert_eq!(json["userid"], 1, "still logged in after both restarted");
        assert_eq!(json["persistent"], true);
    }
    let (_, _, json) = request(a.port, "POST", "/api/incr/hits", Some(&cookie), None);
    assert_eq!(json["value"], 201);

    // Logging out on one instance logs out on the other (the old id is dead everywhere).
    let (status, new_cookie, json) = request(b.port, "POST", "/api/logout", Some(&cookie), None);
    assert_eq!(status, 200);
    assert_eq!(json["userid"], 0);
    assert!(new_cookie.is_some_and(|c| c != cookie));
    let (_, _, json) = request(a.port, "GET", "/api/session", Some(&cookie), None);
    assert_eq!(json["userid"], 0);
    assert_ne!(json["session_id"].as_str(), Some(cookie.as_str()));
}

/// Start-up gives up with a clear error (no hang: the demo's exit is waited for a minute at
/// most). The port is held by this test, by a listener that closes every connection at once,
/// so no other process can be there.
#[test]
fn redis_unreachable_at_start_is_a_clear_error_naming_the_url() {
    let closer = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closer.local_addr().unwrap().port();
    std::thread::spawn(move || closer.incoming().map_while(Result::ok).for_each(drop));
    let url = format!("redis://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &url);
    let started = Instant::now();
    let mut child = demo::spawn(&config);
    let deadline = started + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("start-up did not give up within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&url) && err.contains("storage.redis_url"), "{err}");
    eprintln!("start-up gave up in {:?}", started.elapsed());
}

/// Redis lost: every request that needs the session answers 503 (no hang: the request helper
/// waits a minute at most; how long it took is printed, not judged), a robot is still served,
/// and service resumes by itself when Redis is back.
#[test]
fn redis_lost_mid_run_answers_503_and_service_resumes_when_it_returns() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &server.url());
    let demo = Demo::start(&config);
    let cookie = login(demo.port, false);
    let (_, _, json) = request(demo.port, "POST", "/api/incr/n", Some(&cookie), None);
    assert_eq!(json["value"], 1);

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _, _) = request(demo.port, "POST", "/api/incr/n", Some(&cookie), None);
        assert_eq!(status, 503, "a request that needs the session while Redis is down");
        eprintln!("Redis down: 503 in {:?}", started.elapsed());
    }
    // A robot needs no session: still served.
    let (status, _, _) = {
        let mut stream = TcpStream::connect(("127.0.0.1", demo.port)).unwrap();
        stream
            .write_all(b"GET /api/session HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        (raw[9..12].parse::<u16>().unwrap(), (), ())
    };
    assert_eq!(status, 200);

    // Redis comes back (empty: no persistence) on the same port; the demo reconnects by itself.
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, json) = request(demo.port, "GET", "/api/session", None, None);
        if status == 200 {
            assert_eq!(json["visits"], 1, "a new session in the restarted Redis");
            break;
        }
        assert!(Instant::now() < deadline, "service did not resume within 60 s: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
