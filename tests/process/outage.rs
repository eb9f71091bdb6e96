//! Outages of what the demo depends on, on real processes (issue 27):
//!
//! - **A full disk** (a 24 MB tmpfs the test mounts, as root: `support/tmpfs.rs`), with
//!   `storage.log = "always"`: the demo stops cleanly, the disk is filled, and the demo starts
//!   anyway and serves every session (changes refused with 503 while full); space returns and
//!   changes are taken again; the disk fills up again while serving, and empties again; a
//!   `kill -9` after that loses nothing acknowledged. The disk outages are logged in a few
//!   lines.
//! - **A Redis outage**: many requests refused with 503 while redis-server is stopped, and the
//!   demo's log tells the outage in a few lines (its start with the cause, its end with its
//!   length and count), not one line per request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::demo::Demo;
use crate::tmpfs::Tmpfs;

/// Lines of `log` at warning or error level.
fn loud(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect()
}

/// The `N` of "N operations refused" in an outage's line.
fn refusals_in(line: &str) -> usize {
    line.split(" operations refused")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {line:?}"))
}

/// Increments `cookie`'s counter; answers the status and, on 200, the new value.
fn incr(demo: &Demo, cookie: &str) -> (u16, Option<i64>) {
    let (status, _, body) = demo.request("POST", "/api/incr/n", Some(cookie), None);
    (status, body["value"].as_i64())
}

/// Clients with their counters: the last acknowledged value and the last attempted one.
#[derive(Default)]
struct Counters {
    acked: HashMap<String, i64>,
    attempted: HashMap<String, i64>,
    /// Increments refused (503) so far.
    refused: usize,
}

impl Counters {
    /// One increment of `cookie`: answers its status.
    fn bump(&mut self, demo: &Demo, cookie: &str) -> u16 {
        *self.attempted.entry(cookie.to_owned()).or_default() += 1;
        let (status, value) = incr(demo, cookie);
        if status == 200 {
            let value = value.expect("a counter value");
            assert!(value <= self.attempted[cookie], "{value} > attempted");
            self.acked.insert(cookie.to_owned(), value);
        } else {
            assert_eq!(status, 503, "a change refused while the disk is full is a 503");
            self.refused += 1;
        }
        status
    }

    /// Every counter holds at least its acknowledged value, at most its attempted one.
    fn verify(&self, demo: &Demo, when: &str) {
        for (cookie, &min) in &self.acked {
            let (status, _, body) = demo.request("GET", "/api/ns/counters/n", Some(cookie), None);
            let got = body["value"].as_i64();
            let max = self.attempted[cookie];
            assert!(
                status == 200 && got.is_some_and(|v| v >= min && v <= max),
                "{when}: a counter in {min}..={max}; got {status} {body}"
            );
        }
    }
}

/// Increments every client until one is refused (the disk is full), within 30 s.
fn until_refused(demo: &Demo, counters: &mut Counters, cookies: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let refused = cookies.iter().filter(|c| counters.bump(demo, c) == 503).count();
        if refused > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no change refused 30 s into a full disk with log = \"always\"");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Increments every client until all are taken again (space returned), within 40 s (the log
/// asks for its resuming snapshot after pauses doubling up to 10 s); answers how long it took.
fn until_taken(demo: &Demo, counters: &mut Counters, cookies: &[String]) -> Duration {
    let started = Instant::now();
    loop {
        if cookies.iter().all(|c| counters.bump(demo, c) == 200) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(40), "changes still refused 40 s after space returned");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Increments every client (each must be taken) until the demo told the end of `n` disk
/// outages: a snapshot written a second after the last failure ends one. Within 30 s.
fn until_end_told(demo: &Demo, counters: &mut Counters, cookies: &[String], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while demo.stderr().matches("writes work again").count() < n {
        for c in cookies {
            assert_eq!(counters.bump(demo, c), 200, "changes are taken once space is back");
        }
        assert!(Instant::now() < deadline, "the disk outage's end is not told:\n{}", demo.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_disk_never_keeps_the_demo_down_and_a_kill_9_after_recovery_loses_nothing() {
    let Some(fs) = Tmpfs::mount("24m") else { return };
    let config = fs.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"full disk test secret, at least 32 bytes\"\nshards = 2\n\
             [cookie]\nsecure = false\n[storage]\ndir = {:?}\nsnapshot_interval = \"1s\"\nlog = \"always\"\n\
             [limits]\nmax_sessions_per_user = 0\n",
            fs.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let mut counters = Counters::default();
    let mut first = Demo::start_logging(&config, "info");
    let cookies: Vec<String> = (0..6)
        .map(|_| {
            let (status, cookie, _) = first.request("POST", "/api/incr/n", None, None);
            assert_eq!(status, 200);
            let cookie = cookie.expect("a new session's cookie");
            counters.acked.insert(cookie.clone(), 1);
            counters.attempted.insert(cookie.clone(), 1);
            cookie
        })
        .collect();
    for c in &cookies {
        assert_eq!(counters.bump(&first, c), 200);
    }
    first.terminate();
    assert!(first.wait_for_exit(Duration::from_secs(20)).success(), "{}", first.stderr());

    // Start-up on a full disk.
    fs.fill();
    let started = Instant::now();
    let demo = Demo::start_logging(&config, "info");
    let start_ms = started.elapsed().as_millis();
    counters.verify(&demo, "started on a full disk");
    assert!(demo.stderr().contains("no space left at start-up"), "the cause is named:\n{}", demo.stderr());
    // The log segments the shards open again under their names are truncated, which frees the
    // zeros the last run wrote ahead of its records: full again.
    fs.fill();
    until_refused(&demo, &mut counters, &cookies);
    fs.unfill();
    let first_recovery = until_taken(&demo, &mut counters, &cookies);
    let refused_at_start = counters.refused;

    until_end_told(&demo, &mut counters, &cookies, 1);

    // Filling up while serving, then space returns again.
    fs.fill();
    until_refused(&demo, &mut counters, &cookies);
    fs.unfill();
    let second_recovery = until_taken(&demo, &mut counters, &cookies);
    let refused_serving = counters.refused - refused_at_start;
    until_end_told(&demo, &mut counters, &cookies, 2);

    let log = demo.stderr();
    let disk_lines: Vec<&str> = loud(&log).into_iter().filter(|l| l.contains("the disk under storage.dir")).collect();
    let ends: Vec<&str> = log.lines().filter(|l| l.contains("writes work again")).collect();
    eprintln!("the disk's outages in the demo's log:\n{}\n{}", disk_lines.join("\n"), ends.join("\n"));
    let per_request = log.lines().filter(|l| l.contains("session operation refused")).count();
    drop(demo); // kill -9
    let after = Demo::start_logging(&config, "info");
    counters.verify(&after, "after kill -9");
    let acked: i64 = counters.acked.values().sum();
    eprintln!(
        "full disk (log \"always\"): started in {start_ms} ms on a full disk; {refused_at_start} refused, resumed \
         {first_recovery:?} after space returned; filled while serving: {refused_serving} refused, resumed \
         {second_recovery:?} after; {} warning/error lines about the disk; {acked} acknowledged increments intact \
         after kill -9",
        disk_lines.len()
    );
    assert_eq!(per_request, 0, "no line per refused request:\n{log}");
    assert!(
        (2..=12).contains(&disk_lines.len()),
        "two outages, a few lines each ({}):\n{}",
        disk_lines.len(),
        disk_lines.join("\n")
    );
    assert!(ends.len() >= 2, "each outage's end is told:\n{log}");
    let counted: usize = ends.iter().map(|l| refusals_in(l)).sum();
    assert!(
        counted >= refused_at_start + refused_serving,
        "the ends count every refusal ({counted} < {refused_at_start} + {refused_serving}):\n{}",
        ends.join("\n")
    );
}

#[cfg(feature = "redis")]
#[test]
fn a_redis_outage_is_told_in_a_few_lines_however_many_requests_it_refuses() {
    use crate::redis_server::RedisServer;
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"redis outage test secret, at least 32 bytes\"\n[cookie]\nsecure = false\n\
             [storage]\nbackend = \"redis\"\nredis_url = {:?}\n",
            server.url()
        ),
    )
    .unwrap();
    let demo = Demo::start_logging(&config, "info");
    let (status, cookie, _) = demo.request("POST", "/api/incr/n", None, None);
    assert_eq!(status, 200);
    let cookie = cookie.expect("a session cookie");

    let before = demo.stderr().len();
    server.stop();
    let stopped = Instant::now();
    // Eight clients for 5 s: each request is refused (503) once the connection attempt fails.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (port, cookie) = (demo.port, cookie.clone());
            std::thread::spawn(move || {
                let mut refused = 0u64;
                while refused == 0 || stopped.elapsed() < Duration::from_secs(5) {
                    let (status, _, _) = crate::demo::request(port, "POST", "/api/incr/n", Some(&cookie), None);
                    assert_eq!(status, 503, "a request that needs the session while Redis is down");
                    refused += 1;
                }
                refused
            })
        })
        .collect();
    let refused: u64 = clients.into_iter().map(|c| c.join().expect("a client")).sum();
    let outage = stopped.elapsed();
    assert!(refused >= 16, "{refused} requests refused in {outage:?}");
    server.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    while crate::demo::request(demo.port, "GET", "/api/session", None, None).0 != 200 {
        assert!(Instant::now() < deadline, "service did not resume within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = loop {
        let log = demo.stderr()[before..].to_owned();
        if log.contains(" answers again after ") {
            break log;
        }
        assert!(Instant::now() < deadline, "the outage's end is not told:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = loud(&log);
    eprintln!("Redis outage of {outage:?}: {refused} requests refused (503), {} warning lines:\n{log}", lines.len());
    assert!(lines.iter().any(|l| l.contains("unavailable")), "the start is told with its cause:\n{log}");
    assert!(lines.len() <= 3, "{} warning lines for {refused} refused requests:\n{log}", lines.len());
    let end = log.lines().find(|l| l.contains(" answers again after ")).unwrap();
    let counted = refusals_in(end) as u64;
    assert!(counted >= refused, "the end line counts the refusals ({counted} < {refused}): {end}");
}
