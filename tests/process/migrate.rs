//! Moving live sessions between one machine and Redis with `draco-session migrate`, on real
//! processes: 100 sessions (logged in with and without remember-me, anonymous with data) made
//! on the memory demo → demo stopped → `migrate` to a real redis-server → the demo on Redis with
//! the same secret: every cookie has the same user, data and remember-me flag; then back to a
//! new data directory and the memory demo, the same. Run again after it finished, `migrate`
//! gives the same result (it can be rerun after an interruption; an interrupted one into a
//! directory keeps the engine from starting there until it is); it refuses a directory a
//! running engine holds and one that already holds sessions; `inspect` counts the sessions on
//! Redis.
//!
//! Needs the demo and the command, built by `cargo test --all-features` (with a test filter,
//! run `cargo build --all-features --example remember_me` first).
#![cfg(all(feature = "redis", feature = "cli"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::demo::{Demo, request};
use crate::redis_server::RedisServer;

const SECRET: &str = "migration test secret, at least 32 bytes";

/// A demo config on the memory backend (`data`) or on Redis (`redis_url`).
fn write_config(dir: &Path, name: &str, data: &Path, redis_url: Option<&str>) -> PathBuf {
    let config = dir.join(name);
    let backend = match redis_url {
        Some(url) => format!("backend = \"redis\"\nredis_url = {url:?}\n"),
        None => "backend = \"memory\"\n".to_owned(),
    };
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = {SECRET:?}\n[cookie]\nsecure = false\n[limits]\nmax_sessions_per_user = 0\n\
             [storage]\ndir = {:?}\n{backend}",
            data.display().to_string()
        ),
    )
    .unwrap();
    config
}

fn migrate(config: &Path, from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_draco-session"))
        .args(["--config", config.to_str().unwrap(), "migrate", "--from", from, "--to", to])
        .env_remove(draco_session::SECRET_ENV)
        .output()
        .expect("draco-session runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One session as a test knows it: its cookie, user, remember-me flag, the demo's visit count
/// (`/api/session` counts one more on each look) and its own counter `hits`.
struct Known {
    cookie: String,
    userid: u64,
    persistent: bool,
    visits: i64,
    hits: i64,
}

fn login(port: u16, cookie: &str, user: (&str, &str), remember: bool) -> String {
    let body = format!(r#"{{"username":"{}","password":"{}","remember":{remember}}}"#, user.0, user.1);
    let (status, new, json) = request(port, "POST", "/api/login", Some(cookie), Some(&body));
    assert_eq!(status, 200, "{json}");
    new.expect("a login rotates the id")
}

/// 100 sessions on the demo at `port`: 40 logged in with remember-me, 30 without (alice and
/// bob), 30 anonymous; each with its own count of `hits`.
fn make_sessions(port: u16) -> Vec<Known> {
    let mut out = Vec::new();
    for i in 0..100 {
        let (status, cookie, json) = request(port, "GET", "/api/session", None, None);
        assert_eq!(status, 200, "{json}");
        let mut cookie = cookie.expect("a first visit gets a session");
        let (user, userid) = if i % 2 == 0 { (("alice", "wonderland"), 1) } else { (("bob", "builder"), 2) };
        let (userid, persistent) = match i {
            0..40 => {
                cookie = login(port, &cookie, user, true);
                (userid, true)
            }
            40..70 => {
                cookie = login(port, &cookie, user, false);
                (userid, false)
            }
            _ => (0, false),
        };
        let hits = i % 7 + 1;
        for n in 1..=hits {
            let (status, _, json) = request(port, "POST", "/api/incr/hits", Some(&cookie), None);
            assert_eq!((status, json["value"].as_i64()), (200, Some(n)), "{json}");
        }
        out.push(Known { cookie, userid, persistent, visits: 1, hits });
    }
    out
}

/// Every session answers, on the demo at `port`, with its user, flag and data (and counts one
/// more visit and hit).
fn check_sessions(port: u16, known: &mut [Known], place: &str) {
    for k in known.iter_mut() {
        let (status, cookie, json) = request(port, "GET", "/api/session", Some(&k.cookie), None);
        assert_eq!(status, 200, "{place}: {json}");
        assert_eq!(json["session_id"].as_str(), Some(k.cookie.as_str()), "{place}: the same session, not a new one");
        assert!(cookie.as_ref().is_none_or(|c| c == &k.cookie), "{place}: no new id");
        assert_eq!(json["userid"].as_u64(), Some(k.userid), "{place}: {json}");
        assert_eq!(json["persistent"].as_bool(), Some(k.persistent), "{place}: {json}");
        k.visits += 1;
        assert_eq!(json["visits"].as_i64(), Some(k.visits), "{place}: {json}");
        let (status, _, json) = request(port, "POST", "/api/incr/hits", Some(&k.cookie), None);
        k.hits += 1;
        assert_eq!((status, json["value"].as_i64()), (200, Some(k.hits)), "{place}: {json}");
    }
}

fn stop(mut demo: Demo) {
    demo.terminate();
    assert!(demo.wait_for_exit(Duration::from_secs(60)).success(), "{}", demo.stderr());
}

fn inspect_json(config: &Path, target: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_draco-session"))
        .args(["--config", config.to_str().unwrap(), "inspect", target, "--json"])
        .env_remove(draco_session::SECRET_ENV)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_hundred_sessions_move_to_redis_and_back_and_every_cookie_keeps_working() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let memory = write_config(dir.path(), "memory.toml", &first, None);
    let on_redis = write_config(dir.path(), "redis.toml", &dir.path().join("unused"), Some(&url));
    let back = write_config(dir.path(), "back.toml", &second, None);

    let demo = Demo::start(&memory);
    let mut known = make_sessions(demo.port);
    // The command refuses to read a directory a running engine holds.
    let refused = migrate(&memory, first.to_str().unwrap(), &url);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("running engine"), "{}", text(&refused));
    stop(demo);

    // To Redis. Run twice: the second run writes the same sessions again.
    for _ in 0..2 {
        let out = migrate(&memory, first.to_str().unwrap(), &url);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("migrated 100 sessions"), "{}", text(&out));
    }
    let counts = inspect_json(&on_redis, &url);
    assert_eq!(
        (&counts["sessions"], &counts["logged_in"], &counts["persistent"], &counts["users"]),
        (&Value::from(100), &Value::from(70), &Value::from(40), &Value::from(2)),
        "{counts}"
    );
    let demo = Demo::start(&on_redis);
    check_sessions(demo.port, &mut known, "on Redis");
    // The devices list finds each user's migrated sessions through the index.
    let (_, _, devices) = request(demo.port, "GET", "/api/devices", Some(&known[0].cookie), None);
    let listed = devices["devices"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, known.iter().filter(|k| k.userid == 1).count(), "{devices}");
    stop(demo);

    // Back to a new directory, then the memory demo on it.
    let out = migrate(&back, &url, second.to_str().unwrap());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("migrated 100 sessions"), "{}", text(&out));
    // An interrupted run (its mark left, half its files written) keeps the engine from
    // starting on the directory, and is finished by running it again.
    std::fs::write(second.join("migrating"), b"").unwrap();
    let mut refused = crate::demo::spawn(&back);
    let status = refused.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success() && err.contains("unfinished `draco-session migrate`"), "{err}");
    let out = migrate(&back, &url, second.to_str().unwrap());
    assert!(out.status.success() && !second.join("migrating").exists(), "{}", text(&out));
    // A directory that holds sessions now is not written into again.
    let again = migrate(&back, &url, second.to_str().unwrap());
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already holds sessions"), "{}", text(&again));
    let demo = Demo::start(&back);
    check_sessions(demo.port, &mut known, "back on a data directory");
    stop(demo);
}
