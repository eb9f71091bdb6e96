//! The remember-me demo's `GET /metrics` (Prometheus text format), scraped over HTTP from the
//! real demo process: before and after some traffic the counters and gauges move by exactly
//! what the traffic did, a scrape creates no session, and the README's metrics table names
//! every `draco_session_` metric the scrape shows, with its type, and nothing else.
//!
//! Needs the demo binary, which a plain `cargo test` builds; with a test filter, run
//! `cargo build --example remember_me` first.

use crate::demo;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use demo::{Demo, request};

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"metrics test secret, at least 32 bytes\"\nshards = 2\n\
             [cookie]\nsecure = false\n\
             [storage]\ndir = {:?}\nsnapshot_interval = \"1s\"\nlog = \"always\"\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// A scrape: each sample line's `name{labels}` and value, and each metric's `# TYPE`.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// The sum of `name`'s samples whose labels include every one of `labels` (`k="v"`).
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| {
                let (n, rest) = k.split_once('{').unwrap_or((k, ""));
                n == name && labels.iter().all(|l| rest.contains(l))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// Raw `GET path` with `user_agent`: the status line, the headers and the body.
fn get_raw(port: u16, path: &str, user_agent: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn scrape(port: u16) -> Scrape {
    let (head, body) = get_raw(port, "/metrics", "Prometheus/2.53.0");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("set-cookie"), "a scrape gets no session: {head}");
    let (mut samples, mut types) = (BTreeMap::new(), BTreeMap::new());
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (key, value) = line.rsplit_once(' ').unwrap();
            samples.insert(key.to_owned(), value.parse().unwrap_or_else(|_| panic!("{line}")));
        }
    }
    Scrape { samples, types }
}

fn login(port: u16, cookie: Option<&str>) -> String {
    let body = r#"{"username":"alice","password":"wonderland","remember":false}"#;
    let (status, set, json) = request(port, "POST", "/api/login", cookie, Some(body));
    assert_eq!(status, 200, "{json}");
    set.expect("login rotates the id")
}

#[test]
fn metrics_move_by_exactly_what_the_traffic_did() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(&write_config(dir.path()));
    let before = scrape(demo.port);
    // A scrape creates no session and counts only its own `stats`.
    let again = scrape(demo.port);
    assert_eq!(
        again.sum("draco_session_sessions_created_total", &[]),
        before.sum("draco_session_sessions_created_total", &[])
    );
    assert_eq!(
        again.sum("draco_session_operations_total", &[]) - before.sum("draco_session_operations_total", &[]),
        1.0
    );
    let before = again;

    // 5 new visitors, 2 of whom log in later; 2 logins without a session before; one logout;
    // a robot; one request with a cookie its login rotated away.
    let (visitors, fresh_logins) = (5, 2);
    let mut cookies = Vec::new();
    for _ in 0..visitors {
        let (status, set, json) = request(demo.port, "GET", "/api/session", None, None);
        assert_eq!((status, json["visits"].as_i64()), (200, Some(1)), "{json}");
        cookies.push(set.expect("a new visitor gets a cookie"));
    }
    for _ in 0..fresh_logins {
        login(demo.port, None);
    }
    let rotated = login(demo.port, Some(&cookies[0]));
    login(demo.port, Some(&cookies[1]));
    let (status, _, json) = request(demo.port, "POST", "/api/logout", Some(&rotated), Some("{}"));
    assert_eq!(status, 200, "{json}");
    let (head, _) = get_raw(demo.port, "/api/session", "curl/8.5.0");
    assert!(head.starts_with("HTTP/1.1 200") && !head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    let (status, set, json) = request(demo.port, "GET", "/api/session", Some(&cookies[0]), None);
    assert_eq!((status, json["visits"].as_i64()), (200, Some(1)), "a dead cookie: a new session {json}");
    assert!(set.is_some());

    let after = scrape(demo.port);
    let moved = |name: &str, labels: &[&str]| after.sum(name, labels) - before.sum(name, labels);
    let created = f64::from(visitors + fresh_logins + 1);
    assert_eq!(moved("draco_session_sessions_created_total", &[]), created);
    assert_eq!(moved("draco_session_sessions_live", &[]), created, "a login or logout rotates: no new session");
    assert_eq!(after.samples.keys().filter(|k| k.starts_with("draco_session_sessions_live{")).count(), 2, "per shard");
    assert_eq!(moved("draco_session_robot_requests_total", &[]), 1.0);
    assert_eq!(moved("draco_session_logins_total", &[]), 4.0);
    assert_eq!(moved("draco_session_logouts_total", &[]), 1.0);
    assert_eq!(moved("draco_session_operations_total", &["op=\"create\""]), created);
    assert_eq!(moved("draco_session_operations_total", &["op=\"login\""]), 4.0);
    assert_eq!(moved("draco_session_operations_total", &["op=\"logout\""]), 1.0);
    // Each visitor's visit, and the dead cookie's twice: with the lookup riding along (it finds
    // nothing, so does the increment), then on the new session.
    assert_eq!(moved("draco_session_operations_total", &["op=\"increment\""]), f64::from(visitors + 2));
    assert_eq!(moved("draco_session_operations_total", &["op=\"stats\""]), 1.0, "this scrape's");
    // The dead cookie's lookup and the increment riding with it are the only errors.
    assert_eq!(moved("draco_session_errors_total", &[]), 2.0);
    assert_eq!(moved("draco_session_errors_total", &["op=\"lookup\"", "error=\"session_gone\""]), 1.0);
    assert_eq!(moved("draco_session_errors_total", &["op=\"increment\"", "error=\"session_gone\""]), 1.0);
    assert_eq!(moved("draco_session_sessions_destroyed_total", &[]), 0.0);
    assert_eq!(after.sum("draco_session_mailbox_depth", &[]), 0.0, "nothing queued between requests");
    // Every change was logged (and fsynced: `log = "always"`).
    assert!(moved("draco_session_log_bytes_total", &[]) > 0.0);
    assert!(moved("draco_session_log_fsync_duration_seconds_count", &[]) > 0.0);
}

/// The README's "Metrics" table: each documented name and its type.
fn documented() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Metrics\n").nth(1).expect("README has a \"## Metrics\" section");
    let section = section.split("\n## ").next().unwrap();
    let mut out = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `draco_session_")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        assert!(out.insert(name.clone(), cells[2].to_owned()).is_none(), "{name} twice in the README");
    }
    assert!(out.len() >= 10, "the table was not found: {out:?}");
    out
}

#[test]
fn the_readme_table_names_every_exported_metric_and_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(&write_config(dir.path()));
    // Traffic that makes every metric appear: sessions, a login and logout, a robot, an error,
    // writes to the log, then a snapshot (every second) and an expiry-free sweep.
    let (_, cookie, _) = request(demo.port, "GET", "/api/session", None, None);
    let rotated = login(demo.port, cookie.as_deref());
    request(demo.port, "POST", "/api/logout", Some(&rotated), Some("{}"));
    request(demo.port, "GET", "/api/session", cookie.as_deref(), None);
    get_raw(demo.port, "/api/session", "curl/8.5.0");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exported = loop {
        let s = scrape(demo.port);
        if s.types.contains_key("draco_session_snapshot_duration_seconds") || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let exported: BTreeMap<String, String> =
        exported.types.into_iter().filter(|(name, _)| name.starts_with("draco_session_")).collect();
    let documented = documented();
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<BTreeSet<_>>();
    let undocumented: Vec<_> = names(&exported).difference(&names(&documented)).cloned().collect();
    let missing: Vec<_> = names(&documented).difference(&names(&exported)).cloned().collect();
    assert!(undocumented.is_empty(), "exported but not in the README's table: {undocumented:?}");
    assert!(missing.is_empty(), "in the README's table but not exported: {missing:?}");
    for (name, kind) in &exported {
        assert_eq!(&documented[name], kind, "{name}: the README says {}, /metrics says {kind}", documented[name]);
    }
}
