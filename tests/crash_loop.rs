//! The remember-me demo under repeated `kill -9`, and with its snapshot directory made
//! unwritable mid-run.
//!
//! **Crash loop** (`DRACO_CRASH_CYCLES` cycles, 5 by default; RELIABILITY.md records a run of
//! 20): start the demo (snapshots every 200 ms), run load from several clients (new sessions and
//! counter increments), `kill -9` it at a random moment, restart. Every cycle must start, no
//! snapshot may ever be set aside as corrupt, and every increment acknowledged before a
//! snapshot that provably covers it must be there after the restart.
//!
//! What "provably covers" means, from outside the process: a poller lists the snapshot files
//! every few milliseconds. An acknowledgement at time `t` for a session of shard `s` is covered
//! once two generations of shard `s` newer than the newest one present at the first poll after
//! `t` have appeared: the first of them may have been encoded before `t`, but a shard encodes
//! one snapshot at a time, so the second began after the first was complete, which was after
//! that poll, which was after `t`. Later increments may or may not be on disk: a restored
//! counter must lie between the covered value and the last value the client attempted.
//!
//! **Unwritable directory**: the snapshot directory is made immutable (`chattr +i`; as root,
//! `chmod` stops nothing) while load continues: the log says clearly that snapshots fail,
//! requests keep being served from memory, and once the directory is writable again snapshots
//! resume (new generations appear, and a `kill -9` afterwards loses nothing they cover).
//!
//! Needs the demo binary, which a plain `cargo test` builds; with a test filter, run
//! `cargo build --example remember_me` first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use draco_session::SessionId;

#[path = "support/demo.rs"]
mod demo;
use demo::Demo;

const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0";
const SHARDS: usize = 2;

fn write_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"crash loop secret, at least 32 bytes long\"\nshards = {SHARDS}\n\
             [cookie]\nsecure = false\n[storage]\ndir = {:?}\nsnapshot_interval = \"200ms\"\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// One request; answers the status, the `sid` cookie set (if any) and the body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> std::io::Result<(u16, Option<String>, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    if let Some(c) = cookie {
        head += &format!("Cookie: sid={c}\r\n");
    }
    head += "\r\n";
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((headers, body)) = text.split_once("\r\n\r\n") else {
        return Err(std::io::Error::other(format!("incomplete response: {text:?}")));
    };
    let status = headers.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("no status"))?;
    let set_cookie = headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.eq_ignore_ascii_case("set-cookie") {
            return None;
        }
        Some(value.trim().strip_prefix("sid=")?.split(';').next()?.to_owned())
    });
    Ok((status, set_cookie, body.to_owned()))
}

/// The counter value in a `{"value": n, ...}` body (chunked or not: the number is in the text).
fn value_in(body: &str) -> Option<i64> {
    let at = body.find("\"value\":")? + 8;
    let digits: String = body[at..].chars().skip_while(|c| *c == ' ').take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn shard_of(sid: &str) -> usize {
    sid.parse::<SessionId>().expect("a session id").shard(SHARDS)
}

/// `.snap` files present: (shard, generation); also whether any `.corrupt` file exists.
fn snapshot_files(dir: &Path) -> (BTreeSet<(usize, u64)>, Vec<String>) {
    let mut snaps = BTreeSet::new();
    let mut corrupt = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (snaps, corrupt) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".corrupt") {
            corrupt.push(name.clone());
        }
        // shard-SSSS-of-NNNN.GGGGGGGGGGGG.snap
        let Some(stem) = name.strip_suffix(".snap") else { continue };
        let parsed = (|| {
            let rest = stem.strip_prefix("shard-")?;
            let (shard, rest) = rest.split_once("-of-")?;
            let (_, generation) = rest.split_once('.')?;
            Some((shard.parse().ok()?, generation.parse().ok()?))
        })();
        if let Some(p) = parsed {
            snaps.insert(p);
        }
    }
    (snaps, corrupt)
}

/// The snapshot files present at one poll.
type Poll = (Instant, BTreeSet<(usize, u64)>);

/// A tiny xorshift, seeded per run and printed, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An acknowledged increment.
struct Ack {
    sid: String,
    value: i64,
    at: Instant,
}

#[derive(Default)]
struct Load {
    acks: Vec<Ack>,
    /// Per session: the highest value any request could have produced.
    attempted: HashMap<String, i64>,
    errors_before_kill: Vec<String>,
}

/// Runs `clients` load threads until `stop`; each keeps a few sessions of its own.
fn run_load(
    port: u16,
    clients: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Load>> {
    (0..clients)
        .map(|c| {
            let (stop, killed) = (stop.clone(), killed.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
                let mut load = Load::default();
                let mut mine: Vec<(String, i64)> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let pick = (!mine.is_empty() && rng.below(4) != 0)
                        .then(|| usize::try_from(rng.below(mine.len() as u64)).expect("below len"));
                    let cookie = pick.map(|i| mine[i].0.clone());
                    if let Some(i) = pick {
                        *load.attempted.entry(mine[i].0.clone()).or_default() = mine[i].1 + 1;
                    }
                    match request(port, "POST", "/api/incr/n", cookie.as_deref()) {
                        Ok((200, set, body)) => {
                            let at = Instant::now();
                            let value = value_in(&body).expect("a counter value");
                            let sid = match (pick, set) {
                                (None, Some(sid)) => {
                                    mine.push((sid.clone(), value));
                                    sid
                                }
                                (Some(i), None) => {
                                    mine[i].1 = value;
                                    mine[i].0.clone()
                                }
                                other => panic!("unexpected cookie change {other:?}: {body}"),
                            };
                            load.attempted.entry(sid.clone()).and_modify(|v| *v = (*v).max(value)).or_insert(value);
                            load.acks.push(Ack { sid, value, at });
                        }
                        Ok((status, _, body)) if !killed.load(Ordering::Relaxed) => {
                            load.errors_before_kill.push(format!("{status}: {body}"));
                        }
                        Err(e) if !killed.load(Ordering::Relaxed) => load.errors_before_kill.push(e.to_string()),
                        _ => {}
                    }
                }
                load
            })
        })
        .collect()
}

/// Polls the snapshot directory until `stop`: (time, files present).
fn run_poller(dir: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Poll>> {
    std::thread::spawn(move || {
        let mut polls = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let at = Instant::now();
            polls.push((at, snapshot_files(&dir).0));
            std::thread::sleep(Duration::from_millis(5));
        }
        polls
    })
}

/// The acknowledgements that snapshots written before the last poll provably hold.
fn covered(acks: &[Ack], polls: &[Poll]) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for ack in acks {
        let shard = shard_of(&ack.sid);
        let Some(first) = polls.iter().position(|(t, _)| *t >= ack.at) else { continue };
        let newest_then = polls[first].1.iter().filter(|(s, _)| *s == shard).map(|(_, g)| *g).max().unwrap_or(0);
        let newer: BTreeSet<u64> = polls[first..]
            .iter()
            .flat_map(|(_, files)| files.iter().filter(|(s, g)| *s == shard && *g > newest_then).map(|(_, g)| *g))
            .collect();
        if newer.len() >= 2 {
            let v = out.entry(ack.sid.clone()).or_insert(0);
            *v = (*v).max(ack.value);
        }
    }
    out
}

fn kill_9(demo: &mut Demo) {
    let status = Command::new("kill").args(["-KILL", &demo.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    demo.child.wait().unwrap();
}

/// Every session expected to survive is there, with a counter between the covered value and
/// the last attempted one; answers how many were checked.
fn verify(demo: &Demo, expected: &BTreeMap<String, i64>, attempted: &HashMap<String, i64>, cycle: usize) -> usize {
    for (sid, &min) in expected {
        let (status, _, body) = request(demo.port, "GET", "/api/ns/counters/n", Some(sid)).unwrap();
        let max = attempted[sid];
        let got = value_in(&body);
        assert!(
            status == 200 && got.is_some_and(|v| v >= min && v <= max),
            "cycle {cycle}: session {}… should hold a counter in {min}..={max}; got {status} {body}",
            &sid[..6]
        );
    }
    expected.len()
}

fn assert_no_corrupt(snapshots: &Path, demo: &Demo, cycle: usize) {
    let (_, corrupt) = snapshot_files(snapshots);
    assert!(corrupt.is_empty(), "cycle {cycle}: snapshots set aside as corrupt: {corrupt:?}");
    let log = demo.stderr();
    assert!(!log.contains(" is corrupt"), "cycle {cycle}: the log reports damage:\n{log}");
}

#[test]
fn kill_9_at_random_moments_never_loses_a_covered_session() {
    let cycles: usize = std::env::var("DRACO_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let seed: u64 = std::env::var("DRACO_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        u64::try_from(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                & u128::from(u64::MAX),
        )
        .unwrap()
            | 1
    });
    eprintln!("crash loop: {cycles} cycles, DRACO_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let snapshots = dir.path().join("data/snapshots");
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut attempted: HashMap<String, i64> = HashMap::new();
    let (mut total_acks, mut total_checked) = (0, 0);
    for cycle in 0..cycles {
        let started = Instant::now();
        let mut demo = Demo::start_logging(&config, "info");
        let startup = started.elapsed();
        assert_no_corrupt(&snapshots, &demo, cycle);
        let checked = verify(&demo, &expected, &attempted, cycle);
        total_checked += checked;

        let (stop, killed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let poll_stop = Arc::new(AtomicBool::new(false));
        let poller = run_poller(snapshots.clone(), poll_stop.clone());
        let clients = run_load(demo.port, 4, rng.next(), stop.clone(), killed.clone());
        let kill_after = Duration::from_millis(300 + rng.below(1_200));
        std::thread::sleep(kill_after);
        poll_stop.store(true, Ordering::Relaxed);
        let polls = poller.join().unwrap();
        killed.store(true, Ordering::Relaxed);
        kill_9(&mut demo);
        stop.store(true, Ordering::Relaxed);

        let mut acks = Vec::new();
        for client in clients {
            let load = client.join().unwrap();
            assert!(load.errors_before_kill.is_empty(), "cycle {cycle}: {:?}", load.errors_before_kill);
            acks.extend(load.acks);
            for (sid, v) in load.attempted {
                let e = attempted.entry(sid).or_insert(0);
                *e = (*e).max(v);
            }
        }
        let now_covered = covered(&acks, &polls);
        for (sid, v) in &now_covered {
            let e = expected.entry(sid.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
        eprintln!(
            "cycle {cycle}: started in {startup:?}, verified {checked} sessions, {} acks, killed after {kill_after:?}, \
             {} covered by a snapshot",
            acks.len(),
            now_covered.len()
        );
        total_acks += acks.len();
        drop(demo);
    }
    // One more start: the last cycle's sessions are checked too.
    let demo = Demo::start_logging(&config, "info");
    assert_no_corrupt(&snapshots, &demo, cycles);
    total_checked += verify(&demo, &expected, &attempted, cycles);
    eprintln!(
        "crash loop: {cycles} kills, {total_acks} acknowledged increments, {} sessions expected to survive, \
         {total_checked} session checks passed, no corrupt snapshot",
        expected.len()
    );
    assert!(!expected.is_empty(), "no acknowledgement was ever covered by a snapshot: the check checked nothing");
}

/// Makes a directory unwritable for as long as it lives; writable again when dropped, even
/// when the test fails (else the temporary directory could not be removed).
struct Unwritable {
    dir: PathBuf,
    how: &'static str,
}

impl Unwritable {
    /// `chattr +i` (root ignores permission bits); else, for other users, `chmod 555`.
    /// `None` when neither works here.
    fn new(dir: &Path) -> Option<Self> {
        let chattr = Command::new("chattr").arg("+i").arg(dir).stderr(Stdio::null()).status();
        if chattr.is_ok_and(|s| s.success()) {
            return Some(Self { dir: dir.to_owned(), how: "chattr +i" });
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).ok()?;
        let probe = dir.join(".probe");
        if std::fs::write(&probe, b"x").is_ok() {
            // Root without chattr: permissions stop nothing.
            let _ = std::fs::remove_file(probe);
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).ok()?;
            return None;
        }
        Some(Self { dir: dir.to_owned(), how: "chmod 555" })
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if self.how == "chattr +i" {
            let _ = Command::new("chattr").arg("-i").arg(&self.dir).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[test]
fn an_unwritable_snapshot_directory_is_reported_and_snapshots_resume() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let snapshots = dir.path().join("data/snapshots");
    let mut demo = Demo::start_logging(&config, "info");
    let (stop, killed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let clients = run_load(demo.port, 2, 0x5eed, stop.clone(), killed.clone());
    std::thread::sleep(Duration::from_millis(500));

    let Some(frozen) = Unwritable::new(&snapshots) else {
        stop.store(true, Ordering::Relaxed);
        eprintln!("SKIPPED: cannot make a directory unwritable here (no chattr, running as root)");
        return;
    };
    let frozen_at = snapshot_files(&snapshots).0;
    std::thread::sleep(Duration::from_millis(1_500)); // several snapshot intervals
    let log = demo.stderr();
    let failures = log.lines().filter(|l| l.contains("ERROR") && l.contains("snapshot write to")).count();
    assert!(failures >= 1, "no clear error while {} is unwritable ({}):\n{log}", snapshots.display(), frozen.how);
    assert!(failures <= 2 * SHARDS, "{failures} error lines for one unwritable directory: a flood, not a report");
    assert_eq!(snapshot_files(&snapshots).0, frozen_at, "nothing could be written meanwhile");
    let still_served = request(demo.port, "POST", "/api/incr/n", None).unwrap();
    assert_eq!(still_served.0, 200, "requests are served from memory meanwhile");

    drop(frozen);
    let poll_stop = Arc::new(AtomicBool::new(false));
    let poller = run_poller(snapshots.clone(), poll_stop.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !demo.stderr().contains("work again") {
        assert!(Instant::now() < deadline, "snapshots did not resume within 10 s of the directory being writable");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1_000));
    poll_stop.store(true, Ordering::Relaxed);
    let polls = poller.join().unwrap();
    killed.store(true, Ordering::Relaxed);
    kill_9(&mut demo);
    stop.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    let mut attempted = HashMap::new();
    for client in clients {
        let load = client.join().unwrap();
        assert!(load.errors_before_kill.is_empty(), "requests failed: {:?}", load.errors_before_kill);
        acks.extend(load.acks);
        attempted.extend(load.attempted);
    }
    let expected = covered(&acks, &polls);
    assert!(!expected.is_empty(), "no acknowledgement was covered by a snapshot after the directory came back");
    drop(demo);
    let demo = Demo::start_logging(&config, "info");
    assert_no_corrupt(&snapshots, &demo, 1);
    let checked = verify(&demo, &expected, &attempted, 1);
    eprintln!(
        "unwritable directory: {failures} error line(s) while frozen; {checked} sessions intact after resume + kill -9"
    );
}
