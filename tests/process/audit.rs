//! The demo's audit log: one line (target `audit`) per session event, at info level for what
//! users do and at debug for an anonymous session's creation (a flood of new visitors must not
//! flood the log). On the memory backend its own events; two demo processes sharing one
//! redis-server each log the other's events too.
//!
//! Needs the demo binary (`cargo test --all-features` builds it; with a test filter, run
//! `cargo build --all-features --example remember_me` first).

use crate::demo;

#[cfg(feature = "redis")]
use crate::redis_server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use demo::Demo;

const LOG: &str = "warn,audit=info";
const DEBUG_LOG: &str = "warn,audit=debug";

fn write_config(dir: &Path, storage: &str) -> PathBuf {
    let config = dir.join("config.toml");
    let data = dir.join("data").display().to_string();
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"audit log test secret, at least 32 bytes\"\n\
             [cookie]\nsecure = false\n[storage]\ndir = {data:?}\n{storage}"
        ),
    )
    .unwrap();
    config
}

/// The audit lines `demo` logged, once `want` of them containing `needle` are there (10 s).
fn audit_lines(demo: &Demo, needle: &str, want: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = demo.stderr().lines().filter(|l| l.contains(" audit]")).map(str::to_owned).collect();
        if lines.iter().filter(|l| l.contains(needle)).count() >= want {
            return lines;
        }
        assert!(Instant::now() < deadline, "no {want} audit lines with {needle:?} in:\n{}", demo.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// alice logs in with remember-me, then logs out; answers the session ids she was given.
fn login_and_out(demo: &Demo) -> Vec<String> {
    let body = r#"{"username":"alice","password":"wonderland","remember":true}"#;
    let (status, cookie, json) = demo.request("POST", "/api/login", None, Some(body));
    assert_eq!(status, 200, "{json}");
    let cookie = cookie.expect("a session cookie");
    let (status, after, _) = demo.request("POST", "/api/logout", Some(&cookie), Some("{}"));
    assert_eq!(status, 200);
    [Some(cookie), after].into_iter().flatten().collect()
}

/// No line holds any of `ids`, nor either half of one.
fn assert_no_id(lines: &[String], ids: &[String]) {
    for id in ids {
        let (a, b) = id.split_at(id.len() / 2);
        assert!(lines.iter().all(|l| !l.contains(a) && !l.contains(b)), "{id} in {lines:#?}");
    }
}

/// The login story's lines; `created`: whether the anonymous session's creation is among them
/// (at debug level) or not (at info).
fn assert_one_login_story(lines: &[String], created: bool) {
    let find = |prefix: &str| {
        lines.iter().find(|l| l.contains(prefix)).unwrap_or_else(|| panic!("no {prefix:?} line in {lines:#?}"))
    };
    if created {
        let line = find("] created user=0 session=");
        assert!(line.starts_with('[') && line.contains(" DEBUG audit] "), "{line}");
    } else {
        assert!(lines.iter().all(|l| !l.contains("] created ")), "a created line at info: {lines:#?}");
    }
    let login = find("] login user=1 session=");
    // The device label the login recorded, from the test client's User-Agent.
    assert!(login.contains(" device=\""), "{login}");
    assert!(login.contains(" previous="), "{login}");
    assert!(find("] remember_me user=1 ").ends_with(" on=true"));
    assert!(find("] logout user=1 ").contains(" previous="));
}

#[test]
fn the_demo_logs_every_session_event_as_one_audit_line() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_logging(&write_config(dir.path(), "persist = false\n"), LOG);
    let ids = login_and_out(&demo);
    let lines = audit_lines(&demo, "] logout user=1", 1);
    assert_one_login_story(&lines, false);
    assert_no_id(&lines, &ids);
    // The login's session is the remember-me one, and the logout moved it on.
    let session_of = |prefix: &str| {
        let line = lines.iter().find(|l| l.contains(prefix)).unwrap();
        line.split(" session=").nth(1).unwrap().split(' ').next().unwrap().to_owned()
    };
    assert_eq!(session_of("] login user=1"), session_of("] remember_me user=1"));
    let logout = lines.iter().find(|l| l.contains("] logout user=1")).unwrap();
    assert!(logout.contains(&format!(" previous={}", session_of("] login user=1"))));
}

/// A new session is logged at debug level only: at info, a flood of new visitors wrote one line
/// each (22,000 in a review); the users' events stay at info.
#[test]
fn the_demo_logs_new_sessions_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start_logging(&write_config(dir.path(), "persist = false\n"), DEBUG_LOG);
    let ids = login_and_out(&demo);
    let lines = audit_lines(&demo, "] logout user=1", 1);
    assert_one_login_story(&lines, true);
    assert_no_id(&lines, &ids);
    let login = lines.iter().find(|l| l.contains("] login user=1")).unwrap();
    assert!(login.contains(" INFO  audit] "), "{login}");
}

#[cfg(feature = "redis")]
#[test]
fn two_demos_on_one_redis_each_log_the_others_events() {
    let server = redis_server::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("backend = \"redis\"\nredis_url = {:?}\n", server.url());
    let config = write_config(dir.path(), &storage);
    let (a, b) = (Demo::start_logging(&config, LOG), Demo::start_logging(&config, LOG));
    let ids = login_and_out(&a);
    // b did nothing, yet logs a's story; a logs it once, not twice.
    let on_b = audit_lines(&b, "] logout user=1", 1);
    assert_one_login_story(&on_b, false);
    assert_no_id(&on_b, &ids);
    let on_a = audit_lines(&a, "] logout user=1", 1);
    assert_one_login_story(&on_a, false);
    std::thread::sleep(Duration::from_millis(700));
    let on_a = audit_lines(&a, "] logout user=1", 1);
    assert_eq!(on_a.iter().filter(|l| l.contains("] login user=1")).count(), 1, "{on_a:#?}");
    // And the other way round.
    login_and_out(&b);
    assert_eq!(audit_lines(&a, "] logout user=1", 2).iter().filter(|l| l.contains("] login user=1")).count(), 2);
}
