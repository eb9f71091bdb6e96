//! The remember-me demo under repeated `kill -9`, and with its snapshot directory made
//! unwritable mid-run.
//!
//! **Crash loops** (`DRACO_CRASH_CYCLES` cycles each, 5 by default; RELIABILITY.md records runs
//! of 20): start the demo (snapshots every 200 ms, so kills land during snapshots and log segment
//! rotations too), run load from several clients, `kill -9` it at a random moment, restart on the
//! same data directory. Every cycle must start, and no snapshot or log segment may ever be set
//! aside as corrupt (no `.corrupt` file, no such error in the log). The seed is printed;
//! `DRACO_CRASH_SEED` replays a run's choices (not its timing). Three loops:
//!
//! - **Snapshots only** (`storage.log = "off"`): new sessions and counter increments. Every
//!   increment acknowledged before a snapshot that provably covers it must be there after the
//!   restart. What "provably covers" means, from outside the process: a poller lists the
//!   snapshot files every few milliseconds. An acknowledgement at time `t` for a session of shard
//!   `s` is covered once two generations of shard `s` newer than the newest one present at the
//!   first poll after `t` have appeared: the first of them may have been encoded before `t`, but
//!   a shard encodes one snapshot at a time, so the second began after the first was complete,
//!   which was after that poll, which was after `t`. Later increments may or may not be on disk:
//!   a restored counter must lie between the covered value and the last value the client
//!   attempted.
//! - **Write-ahead log**, `storage.log = "always"` and `"1s"`: new sessions, counter
//!   increments, logins (with or without remember-me) and logouts, which rotate the id. Clients
//!   keep their sessions from one cycle to the next. Nothing needs to be covered here: after
//!   every restart EVERY acknowledged change must be there. Each session's counter lies between
//!   its last acknowledged value and its last attempted one (a request in flight at the kill may
//!   or may not have landed); its user id and remember-me are the last acknowledged; its id
//!   works; and every id a login or logout acknowledged as rotated away is dead, at every
//!   restart after: a read with it finds no session (404, no `Set-Cookie`; each session has a
//!   counter from its first request, so a live id would show it). A session whose login or
//!   logout was in flight at the kill may have moved to an id the client never learnt: if its
//!   old id is dead, its unchecked changes count as "in doubt", not lost. Each loop prints its
//!   cycles, changes acknowledged, found after restart, lost (must be 0) and in doubt.
//!
//! **Unwritable directory**: the snapshot directory is made unwritable (`chattr +i`; or, as
//! root where the file system has no immutable attribute, a read-only bind mount of it; `chmod`
//! for other users; the test fails if none works) while load continues: the log says clearly that snapshots fail,
//! requests keep being served from memory, and once the directory is writable again snapshots
//! resume (new generations appear, and a `kill -9` afterwards loses nothing they cover).
//!
//! Needs the demo binary, which a plain `cargo test` builds; with a test filter, run
//! `cargo build --example remember_me` first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use draco_session::SessionId;
use serde_json::Value;

use crate::demo;
use crate::routing;
use demo::{Demo, try_request};

const SHARDS: usize = 2;
/// Load threads in each crash loop.
const CLIENTS: usize = 4;

/// Every client logs in as alice: no cap on her sessions (`max_sessions_per_user`), or logins
/// would end sessions the loop checks.
fn write_config(dir: &Path, log: &str) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"crash loop secret, at least 32 bytes long\"\nshards = {SHARDS}\n\
             [cookie]\nsecure = false\n[storage]\ndir = {:?}\nsnapshot_interval = \"200ms\"\nlog = {log:?}\n\
             [limits]\nmax_sessions_per_user = 0\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// The counter value in a `{"value": n, ...}` body.
fn value_in(body: &Value) -> Option<i64> {
    body["value"].as_i64()
}

fn shard_of(sid: &str) -> usize {
    routing::shard_of(&sid.parse::<SessionId>().expect("a session id"), SHARDS)
}

/// `.snap` files present: (shard, generation).
fn snapshot_files(dir: &Path) -> BTreeSet<(usize, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeSet::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            // shard-SSSS-of-NNNN.GGGGGGGGGGGG.snap
            let name = entry.file_name().to_string_lossy().into_owned();
            let rest = name.strip_suffix(".snap")?.strip_prefix("shard-")?;
            let (shard, rest) = rest.split_once("-of-")?;
            let (_, generation) = rest.split_once('.')?;
            Some((shard.parse().ok()?, generation.parse().ok()?))
        })
        .collect()
}

/// The files set aside as corrupt in the snapshot and log directories of a data directory.
fn corrupt_files(data: &Path) -> Vec<String> {
    ["snapshots", "log"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(data.join(sub)).ok())
        .flat_map(|entries| entries.flatten())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".corrupt"))
        .collect()
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
    /// An index into a collection of `len` (> 0) items.
    fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).expect("below len")
    }
    /// The generator of client `c` of a run seeded with `seed`.
    fn for_client(seed: u64, c: usize) -> Self {
        Rng(seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
}

/// What load threads watch: `killed` (from then on a failed request is expected), then `stop`.
#[derive(Clone, Default)]
struct Flags {
    killed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Flags {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
    fn killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    /// `kill -9` the demo (telling the load threads first), then stops them.
    fn kill(&self, demo: &mut Demo) {
        self.killed.store(true, Ordering::Relaxed);
        let status = Command::new("kill").args(["-KILL", &demo.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        demo.child.wait().unwrap();
        self.stop();
    }
}

/// Records a failed request: an error unless the demo is being killed.
fn failed(errors: &mut Vec<String>, flags: &Flags, what: String) {
    if !flags.killed() {
        errors.push(what);
    }
}

/// `f` over `items` from [`CLIENTS`] threads, answers in order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = items.len().div_ceil(CLIENTS).max(1);
    std::thread::scope(|s| {
        let f = &f;
        let threads: Vec<_> =
            items.chunks(chunk).map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<_>>())).collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    })
}

// ----- the crash loop itself, whatever the load -----

/// One kind of crash loop: the load it runs and what it checks after each restart.
trait Scenario {
    /// Checks what the restarted demo must hold; answers what was checked, for the report.
    fn verify(&mut self, demo: &Demo, cycle: usize) -> String;
    /// Starts the load threads.
    fn start(&mut self, port: u16, seed: u64, flags: &Flags);
    /// Just before the kill.
    fn before_kill(&mut self) {}
    /// Joins the load threads after the kill; answers what they did, for the report.
    fn collect(&mut self, cycle: usize) -> String;
}

/// What a crash loop ran.
struct Run {
    cycles: usize,
    /// Log segments whose last record a kill cut (truncated at start-up with a warning).
    torn_tails: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: impl FnOnce() -> T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or_else(default)
}

/// Runs `scenario` on the demo with `storage.log = log` and its data in `dir/data`:
/// `DRACO_CRASH_CYCLES` kills at random moments, each followed by a restart and the scenario's
/// checks.
fn crash_loop(log: &str, dir: &Path, scenario: &mut impl Scenario) -> Run {
    let cycles: usize = env_or("DRACO_CRASH_CYCLES", || 5);
    let seed: u64 = env_or("DRACO_CRASH_SEED", || {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        u64::try_from(nanos & u128::from(u64::MAX)).unwrap() | 1
    });
    eprintln!("crash loop, log {log:?}: {cycles} cycles, DRACO_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let config = write_config(dir, log);
    let data = dir.join("data");
    let mut run = Run { cycles, torn_tails: 0 };
    // The last start only checks what the last cycle left.
    for cycle in 0..=cycles {
        let started = Instant::now();
        let mut demo = Demo::start_logging(&config, "info");
        let startup = started.elapsed();
        assert_no_corrupt(&data, &demo, cycle);
        for torn in demo.stderr().lines().filter(|l| l.contains("cut by a crash") || l.contains("(a crash)")) {
            eprintln!("log {log:?}, start {cycle}: {torn}");
            run.torn_tails += 1;
        }
        let checked = scenario.verify(&demo, cycle);
        if cycle == cycles {
            eprintln!("log {log:?}, last start: started in {startup:?}, {checked}");
            break;
        }
        let flags = Flags::default();
        scenario.start(demo.port, rng.next(), &flags);
        let kill_after = Duration::from_millis(300 + rng.below(1_200));
        std::thread::sleep(kill_after);
        scenario.before_kill();
        flags.kill(&mut demo);
        assert_no_corrupt(&data, &demo, cycle);
        let done = scenario.collect(cycle);
        eprintln!("log {log:?}, cycle {cycle}: started in {startup:?}, {checked}; killed after {kill_after:?}: {done}");
    }
    run
}

/// No file set aside as corrupt, and no damage or error in the demo's log so far.
fn assert_no_corrupt(data: &Path, demo: &Demo, cycle: usize) {
    let corrupt = corrupt_files(data);
    assert!(corrupt.is_empty(), "cycle {cycle}: files set aside as corrupt: {corrupt:?}\n{}", demo.stderr());
    let log = demo.stderr();
    assert!(
        !log.lines().any(|l| l.contains(" ERROR ") || l.contains(" is corrupt") || l.contains(" is damaged")),
        "cycle {cycle}: the log reports damage or an error:\n{log}"
    );
}

// ----- snapshots only: what a snapshot provably covers survives -----

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

/// Runs `clients` load threads until stopped; each keeps a few sessions of its own.
fn run_load(port: u16, clients: usize, seed: u64, flags: &Flags) -> Vec<JoinHandle<Load>> {
    (0..clients)
        .map(|c| {
            let flags = flags.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::for_client(seed, c);
                let mut load = Load::default();
                let mut mine: Vec<(String, i64)> = Vec::new();
                while flags.running() {
                    let pick = (!mine.is_empty() && rng.below(4) != 0).then(|| rng.index(mine.len()));
                    let cookie = pick.map(|i| mine[i].0.clone());
                    if let Some(i) = pick {
                        *load.attempted.entry(mine[i].0.clone()).or_default() = mine[i].1 + 1;
                    }
                    match try_request(port, "POST", "/api/incr/n", cookie.as_deref(), None) {
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
                        Ok((status, _, body)) => {
                            failed(&mut load.errors_before_kill, &flags, format!("{status}: {body}"))
                        }
                        Err(e) => failed(&mut load.errors_before_kill, &flags, e.to_string()),
                    }
                }
                load
            })
        })
        .collect()
}

/// Lists the snapshot directory every few milliseconds until finished.
struct Poller {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Poll>>,
}

impl Poller {
    fn start(dir: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut polls = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                polls.push((Instant::now(), snapshot_files(&dir)));
                std::thread::sleep(Duration::from_millis(5));
            }
            polls
        });
        Self { stop, thread }
    }

    /// Stops polling; answers (time, files present) of every poll.
    fn finish(self) -> Vec<Poll> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
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

/// Every session expected to survive is there, with a counter between the covered value and
/// the last attempted one; answers how many were checked.
fn verify(demo: &Demo, expected: &BTreeMap<String, i64>, attempted: &HashMap<String, i64>, cycle: usize) -> usize {
    for (sid, &min) in expected {
        let (status, _, body) = demo.request("GET", "/api/ns/counters/n", Some(sid), None);
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

/// Folds what load threads did into `attempted`; answers their acknowledgements.
fn join_load(clients: Vec<JoinHandle<Load>>, attempted: &mut HashMap<String, i64>, cycle: usize) -> Vec<Ack> {
    let mut acks = Vec::new();
    for client in clients {
        let load = client.join().unwrap();
        assert!(load.errors_before_kill.is_empty(), "cycle {cycle}: requests failed: {:?}", load.errors_before_kill);
        acks.extend(load.acks);
        for (sid, v) in load.attempted {
            let e = attempted.entry(sid).or_insert(0);
            *e = (*e).max(v);
        }
    }
    acks
}

/// The crash loop with snapshots only.
#[derive(Default)]
struct SnapshotsOnly {
    snapshots: PathBuf,
    /// Per session: the highest counter a snapshot provably holds.
    expected: BTreeMap<String, i64>,
    attempted: HashMap<String, i64>,
    poller: Option<Poller>,
    polls: Vec<Poll>,
    clients: Vec<JoinHandle<Load>>,
    acks: usize,
    checked: usize,
}

impl Scenario for SnapshotsOnly {
    fn verify(&mut self, demo: &Demo, cycle: usize) -> String {
        let checked = verify(demo, &self.expected, &self.attempted, cycle);
        self.checked += checked;
        format!("verified {checked} sessions")
    }

    fn start(&mut self, port: u16, seed: u64, flags: &Flags) {
        self.poller = Some(Poller::start(self.snapshots.clone()));
        self.clients = run_load(port, CLIENTS, seed, flags);
    }

    fn before_kill(&mut self) {
        self.polls = self.poller.take().expect("started").finish();
    }

    fn collect(&mut self, cycle: usize) -> String {
        let acks = join_load(std::mem::take(&mut self.clients), &mut self.attempted, cycle);
        let now_covered = covered(&acks, &self.polls);
        for (sid, v) in &now_covered {
            let e = self.expected.entry(sid.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
        self.acks += acks.len();
        format!("{} acks, {} sessions covered by a snapshot", acks.len(), now_covered.len())
    }
}

#[test]
fn kill_9_at_random_moments_never_loses_a_covered_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = SnapshotsOnly { snapshots: dir.path().join("data/snapshots"), ..SnapshotsOnly::default() };
    let run = crash_loop("off", dir.path(), &mut scenario);
    eprintln!(
        "crash loop, log \"off\": {} kills, {} acknowledged increments, {} sessions expected to survive, \
         {} session checks passed, no corrupt snapshot",
        run.cycles,
        scenario.acks,
        scenario.expected.len(),
        scenario.checked
    );
    assert!(
        !scenario.expected.is_empty(),
        "no acknowledgement was ever covered by a snapshot: the check checked nothing"
    );
}

// ----- with the write-ahead log: every acknowledged change survives -----

/// A change acknowledged to a client and not yet checked after a restart.
#[derive(Debug)]
enum Change {
    /// The counter reached this value (a new session's first increment included).
    Counted(i64),
    /// A login or logout moved the session off this id, which is dead from then on.
    Rotated { from: String },
}

/// A session as its client knows it.
#[derive(Debug)]
struct Tracked {
    sid: String,
    /// The counter, user id and remember-me last acknowledged.
    counter: i64,
    userid: u64,
    persistent: bool,
    /// The highest counter a request may have produced (one in flight at the kill).
    attempted: i64,
    /// A login or logout was in flight at the kill: `sid` may have been rotated away.
    rotating: bool,
    unchecked: Vec<Change>,
}

impl Tracked {
    /// A new session, its counter at `counter` (its first change).
    fn new(sid: String, counter: i64) -> Self {
        let unchecked = vec![Change::Counted(counter)];
        Self { sid, counter, userid: 0, persistent: false, attempted: counter, rotating: false, unchecked }
    }
}

/// What a client asks of one of its sessions (or, for an increment, of a new one).
#[derive(Debug, Clone, Copy)]
enum Op {
    Increment,
    Login { user: usize, remember: bool },
    Logout,
}

/// Demo users: name, password, user id.
const USERS: [(&str, &str, u64); 2] = [("alice", "wonderland", 1), ("bob", "builder", 2)];

impl Op {
    fn pick(rng: &mut Rng, session: &Tracked) -> Self {
        match rng.below(20) {
            0 | 1 => Op::Login { user: rng.index(USERS.len()), remember: rng.below(2) == 0 },
            2 | 3 if session.userid != 0 => Op::Logout,
            _ => Op::Increment,
        }
    }

    /// The request's path and body.
    fn request(self) -> (&'static str, Option<String>) {
        match self {
            Op::Increment => ("/api/incr/n", None),
            Op::Login { user, remember } => {
                let (username, password, _) = USERS[user];
                let body = serde_json::json!({ "username": username, "password": password, "remember": remember });
                ("/api/login", Some(body.to_string()))
            }
            Op::Logout => ("/api/logout", None),
        }
    }
}

/// Notes an acknowledged `op` on session `i` (`None`: a new session).
fn acknowledged(sessions: &mut Vec<Tracked>, i: Option<usize>, op: Op, set: Option<String>, body: &Value) {
    let Some(i) = i else {
        let sid = set.unwrap_or_else(|| panic!("a new session without a cookie: {body}"));
        let v = value_in(body).expect("a counter value");
        sessions.push(Tracked::new(sid, v));
        return;
    };
    let t = &mut sessions[i];
    if let Op::Increment = op {
        assert!(set.is_none(), "an increment changed the cookie: {body}");
        t.counter = value_in(body).expect("a counter value");
        t.attempted = t.counter;
        t.unchecked.push(Change::Counted(t.counter));
        return;
    }
    let new = set.unwrap_or_else(|| panic!("{op:?} did not rotate the id: {body}"));
    assert_eq!(body["session_id"], new.as_str(), "{op:?}: the answer names another id than the cookie");
    if let Op::Login { user, remember } = op {
        assert_eq!((body["userid"].as_u64(), body["persistent"].as_bool()), (Some(USERS[user].2), Some(remember)));
    }
    t.userid = body["userid"].as_u64().expect("a user id");
    t.persistent = body["persistent"].as_bool().expect("remember-me");
    t.rotating = false;
    let from = std::mem::replace(&mut t.sid, new);
    t.unchecked.push(Change::Rotated { from });
}

/// What one client did in one cycle.
#[derive(Default)]
struct ClientRun {
    sessions: Vec<Tracked>,
    acknowledged: usize,
    errors_before_kill: Vec<String>,
}

/// One client until stopped: new sessions, increments, logins and logouts on its `sessions`.
fn run_client(port: u16, mut rng: Rng, flags: &Flags, sessions: Vec<Tracked>) -> ClientRun {
    let mut run = ClientRun { sessions, ..ClientRun::default() };
    while flags.running() {
        let i = (!run.sessions.is_empty() && rng.below(10) != 0).then(|| rng.index(run.sessions.len()));
        let op = i.map_or(Op::Increment, |i| Op::pick(&mut rng, &run.sessions[i]));
        // In flight until answered: the kill may come before the answer, after the change.
        if let Some(t) = i.map(|i| &mut run.sessions[i]) {
            match op {
                Op::Increment => t.attempted = t.counter + 1,
                Op::Login { .. } | Op::Logout => t.rotating = true,
            }
        }
        let cookie = i.map(|i| run.sessions[i].sid.clone());
        let (path, body) = op.request();
        match try_request(port, "POST", path, cookie.as_deref(), body.as_deref()) {
            Ok((200, set, answer)) => {
                run.acknowledged += 1;
                acknowledged(&mut run.sessions, i, op, set, &answer);
            }
            Ok((status, _, answer)) => failed(&mut run.errors_before_kill, flags, format!("{path}: {status} {answer}")),
            Err(e) => failed(&mut run.errors_before_kill, flags, format!("{path}: {e}")),
        }
        if flags.killed() {
            break;
        }
    }
    run
}

/// What a restarted demo holds under one id.
#[derive(Debug, PartialEq)]
enum Seen {
    /// No session: a read finds nothing and sets no cookie.
    Dead,
    Alive {
        counter: i64,
        userid: u64,
        persistent: bool,
    },
}

/// Looks at the session of `sid` without creating one when it is dead.
fn look(port: u16, sid: &str) -> Seen {
    let (status, set, body) = try_request(port, "GET", "/api/ns/counters/n", Some(sid), None).unwrap();
    if status == 404 {
        assert_eq!(set, None, "a read with a dead id set a cookie: {body}");
        return Seen::Dead;
    }
    assert_eq!(status, 200, "reading the counter of {sid}: {body}");
    let counter = value_in(&body).expect("a counter value");
    let (status, _, info) = try_request(port, "GET", "/api/session", Some(sid), None).unwrap();
    assert_eq!((status, info["session_id"].as_str()), (200, Some(sid)), "{info}");
    Seen::Alive {
        counter,
        userid: info["userid"].as_u64().expect("a user id"),
        persistent: info["persistent"].as_bool().expect("remember-me"),
    }
}

/// Acknowledged changes, as checked after the restarts.
#[derive(Default)]
struct Tally {
    acknowledged: usize,
    found: usize,
    lost: usize,
    /// Changes of a session whose login or logout was in flight at the kill and whose old id
    /// is dead: they moved to an id the client never learnt.
    in_doubt: usize,
    revoked_checks: usize,
}

impl Tally {
    /// Checks one session seen after a restart against what its client was told; answers what
    /// is wrong, and brings `t` up to date when it lives on.
    fn check(&mut self, t: &mut Tracked, seen: &Seen, revived: &HashSet<String>) -> Option<String> {
        let changes = t.unchecked.len();
        let Seen::Alive { counter, userid, persistent } = *seen else {
            if t.rotating {
                self.in_doubt += changes;
                return None;
            }
            self.lost += changes.max(1);
            return Some(format!("session {} (counter {}, user {}) is gone", t.sid, t.counter, t.userid));
        };
        let account_ok = (userid, persistent) == (t.userid, t.persistent);
        let found = t
            .unchecked
            .iter()
            .filter(|c| match c {
                Change::Counted(v) => counter >= *v,
                Change::Rotated { from } => account_ok && !revived.contains(from),
            })
            .count();
        self.found += found;
        self.lost += changes - found;
        let wrong = if !(t.counter..=t.attempted).contains(&counter) {
            Some(format!("session {}: counter {counter}, not in {}..={}", t.sid, t.counter, t.attempted))
        } else if !account_ok {
            Some(format!(
                "session {}: user {userid}, remember-me {persistent}; acknowledged: user {}, remember-me {}",
                t.sid, t.userid, t.persistent
            ))
        } else {
            (found < changes).then(|| format!("session {}: {} of {changes} changes lost", t.sid, changes - found))
        };
        (t.counter, t.attempted, t.userid, t.persistent) = (counter, counter, userid, persistent);
        t.rotating = false;
        t.unchecked.clear();
        wrong
    }
}

/// The crash loop with the write-ahead log: its clients' sessions, carried from cycle to cycle.
#[derive(Default)]
struct WithLog {
    sessions: Vec<Tracked>,
    /// Every id a login or logout rotated away, with an acknowledgement.
    revoked: Vec<String>,
    clients: Vec<JoinHandle<ClientRun>>,
    tally: Tally,
}

impl Scenario for WithLog {
    fn verify(&mut self, demo: &Demo, cycle: usize) -> String {
        let mut sessions = std::mem::take(&mut self.sessions);
        for t in &sessions {
            self.revoked.extend(t.unchecked.iter().filter_map(|c| match c {
                Change::Rotated { from } => Some(from.clone()),
                Change::Counted(_) => None,
            }));
        }
        let seen = parallel_map(&sessions, |t| look(demo.port, &t.sid));
        let revoked_seen = parallel_map(&self.revoked, |sid| look(demo.port, sid));
        let revived: HashSet<String> = self
            .revoked
            .iter()
            .zip(&revoked_seen)
            .filter(|(_, s)| **s != Seen::Dead)
            .map(|(sid, _)| sid.clone())
            .collect();
        self.tally.revoked_checks += self.revoked.len();
        let mut wrong: Vec<String> = revived.iter().map(|sid| format!("revoked id {sid} works again")).collect();
        for (t, seen) in sessions.iter_mut().zip(&seen) {
            wrong.extend(self.tally.check(t, seen, &revived));
        }
        assert!(
            wrong.is_empty(),
            "cycle {cycle}: {} acknowledged changes lost so far; {} sessions or ids wrong after the restart, such as:\n\
             {}\n--- the demo's log since the restart:\n{}",
            self.tally.lost,
            wrong.len(),
            wrong[..wrong.len().min(20)].join("\n"),
            demo.stderr()
        );
        let checked = sessions.len();
        // A session whose id died with a login or logout in flight lives on under an unknown id.
        self.sessions = sessions.into_iter().zip(&seen).filter(|(_, s)| **s != Seen::Dead).map(|(t, _)| t).collect();
        format!("checked {checked} sessions and {} revoked ids", self.revoked.len())
    }

    fn start(&mut self, port: u16, seed: u64, flags: &Flags) {
        let mut shares: Vec<Vec<Tracked>> = (0..CLIENTS).map(|_| Vec::new()).collect();
        for (i, t) in std::mem::take(&mut self.sessions).into_iter().enumerate() {
            shares[i % CLIENTS].push(t);
        }
        self.clients = shares
            .into_iter()
            .enumerate()
            .map(|(c, sessions)| {
                let flags = flags.clone();
                std::thread::spawn(move || run_client(port, Rng::for_client(seed, c), &flags, sessions))
            })
            .collect();
    }

    fn collect(&mut self, cycle: usize) -> String {
        let mut acknowledged = 0;
        for client in std::mem::take(&mut self.clients) {
            let run = client.join().unwrap();
            assert!(run.errors_before_kill.is_empty(), "cycle {cycle}: requests failed: {:?}", run.errors_before_kill);
            acknowledged += run.acknowledged;
            self.sessions.extend(run.sessions);
        }
        self.tally.acknowledged += acknowledged;
        format!("{acknowledged} changes acknowledged")
    }
}

/// The crash loop with `storage.log = log`: no acknowledged change is ever lost.
fn every_acknowledged_change_survives(log: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut scenario = WithLog::default();
    let run = crash_loop(log, dir.path(), &mut scenario);
    let t = &scenario.tally;
    eprintln!(
        "crash loop, log {log:?}: {} cycles, {} changes acknowledged, {} found after restart, {} lost, {} in doubt \
         (a login or logout in flight at the kill), {} checks of revoked ids, {} torn log records (cut by a kill), \
         no corrupt file",
        run.cycles, t.acknowledged, t.found, t.lost, t.in_doubt, t.revoked_checks, run.torn_tails
    );
    assert_eq!(t.lost, 0);
    assert_eq!(t.acknowledged, t.found + t.in_doubt, "every acknowledged change is checked once");
    assert!(t.found > 0, "no change was acknowledged: the check checked nothing");
}

#[test]
fn kill_9_with_log_always_loses_no_acknowledged_change() {
    every_acknowledged_change_survives("always");
}

#[test]
fn kill_9_with_log_every_second_loses_no_acknowledged_change() {
    every_acknowledged_change_survives("1s");
}

// ----- an unwritable snapshot directory -----

/// How [`Unwritable`] stops writes to its directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Freeze {
    /// `chattr +i`: the immutable attribute, which stops root too (not every file system has it:
    /// overlayfs, the usual container root, refuses it).
    Immutable,
    /// As root: the directory bind-mounted onto itself, then remounted read-only (needs
    /// `CAP_SYS_ADMIN`, which a root CI container has; any file system).
    ReadOnlyBind,
    /// Not root: `chmod 555` (permission bits stop no one but root).
    Permissions,
}

/// Makes a directory unwritable for as long as it lives; writable again when dropped, even
/// when the test fails (else the temporary directory could not be removed).
struct Unwritable {
    dir: PathBuf,
    how: Freeze,
}

/// Whether a file can be created in `dir` (removed again at once).
fn writable(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    let ok = std::fs::write(&probe, b"x").is_ok();
    if ok {
        std::fs::remove_file(probe).unwrap();
    }
    ok
}

fn run_quietly(program: &str, args: &[&std::ffi::OsStr]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

impl Unwritable {
    /// The first of [`Freeze`]'s ways that works here, checked by a write that must fail.
    /// Panics when none does: a test that cannot make its directory unwritable fails, it does
    /// not pass without testing anything.
    fn new(dir: &Path) -> Self {
        let mut tried = Vec::new();
        for how in [Freeze::Immutable, Freeze::ReadOnlyBind, Freeze::Permissions] {
            let frozen = Self { dir: dir.to_owned(), how };
            if frozen.apply() && !writable(dir) {
                return frozen;
            }
            tried.push(format!("{how:?}"));
            drop(frozen); // undoes whatever part took effect
            assert!(writable(dir), "{} stayed unwritable after undoing {how:?}", dir.display());
        }
        panic!(
            "cannot make {} unwritable here (tried {}): as root, this test needs chattr or \
             CAP_SYS_ADMIN for a read-only bind mount",
            dir.display(),
            tried.join(", ")
        );
    }

    fn apply(&self) -> bool {
        let dir = self.dir.as_os_str();
        match self.how {
            Freeze::Immutable => run_quietly("chattr", &["+i".as_ref(), dir]),
            Freeze::ReadOnlyBind => {
                run_quietly("mount", &["--bind".as_ref(), dir, dir])
                    && run_quietly("mount", &["-o".as_ref(), "remount,bind,ro".as_ref(), dir])
            }
            Freeze::Permissions => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).is_ok()
            }
        }
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        let dir = self.dir.as_os_str();
        match self.how {
            Freeze::Immutable => {
                run_quietly("chattr", &["-i".as_ref(), dir]);
            }
            Freeze::ReadOnlyBind => {
                // Unmounts the bind mount if there is one (the directory itself is no mount
                // point otherwise: `umount` then fails and changes nothing).
                run_quietly("umount", &[dir]);
            }
            Freeze::Permissions => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }
}

/// Waits (up to `within`) until at least `count` snapshot generations newer than its newest in
/// `since` have been seen for every shard (older files are deleted as new ones land, so the
/// directory is watched, and what it showed is kept).
fn wait_for_new_generations(dir: &Path, since: &BTreeSet<(usize, u64)>, count: usize, within: Duration) {
    let newest = |shard: usize| since.iter().filter(|(s, _)| *s == shard).map(|(_, g)| *g).max().unwrap_or(0);
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + within;
    loop {
        seen.extend(snapshot_files(dir).into_iter().filter(|(s, g)| *g > newest(*s)));
        if (0..SHARDS).all(|shard| seen.iter().filter(|(s, _)| *s == shard).count() >= count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not {count} new snapshot generations per shard within {within:?}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_unwritable_snapshot_directory_is_reported_and_snapshots_resume() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "1s"); // the default
    let snapshots = dir.path().join("data/snapshots");
    let mut demo = Demo::start_logging(&config, "info");
    let flags = Flags::default();
    let clients = run_load(demo.port, 2, 0x5eed, &flags);
    std::thread::sleep(Duration::from_millis(500));

    let frozen = Unwritable::new(&snapshots);
    let frozen_at = snapshot_files(&snapshots);
    // Waits for the writer's report itself (several snapshot intervals on an idle machine).
    let failed = |log: &str| log.lines().filter(|l| l.contains("ERROR") && l.contains("snapshot write to")).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while failed(&demo.stderr()) == 0 {
        let log = demo.stderr();
        assert!(
            Instant::now() < deadline,
            "no clear error within 30 s while {} is unwritable ({:?}):\n{log}",
            snapshots.display(),
            frozen.how
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // More snapshot intervals while frozen, to see no flood of reports: a busy machine only
    // makes for fewer attempts, never for a failure of a correct build.
    std::thread::sleep(Duration::from_millis(1_500));
    let still_served = demo.request("POST", "/api/incr/n", None, None);
    assert_eq!(still_served.0, 200, "requests are served from memory meanwhile");
    assert_eq!(snapshot_files(&snapshots), frozen_at, "nothing could be written meanwhile");
    let failures = failed(&demo.stderr());
    assert!(failures <= 2 * SHARDS, "{failures} error lines for one unwritable directory: a flood, not a report");

    let how = frozen.how;
    drop(frozen);
    let poller = Poller::start(snapshots.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !demo.stderr().contains("work again") {
        assert!(Instant::now() < deadline, "snapshots did not resume within 30 s of the directory being writable");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Acknowledgements after the resume, then two generations after them, cover them.
    wait_for_new_generations(&snapshots, &frozen_at, 3, Duration::from_secs(30));
    let polls = poller.finish();
    flags.kill(&mut demo);
    let mut attempted = HashMap::new();
    let acks = join_load(clients, &mut attempted, 0);
    let expected = covered(&acks, &polls);
    assert!(!expected.is_empty(), "no acknowledgement was covered by a snapshot after the directory came back");
    drop(demo);
    let demo = Demo::start_logging(&config, "info");
    assert_no_corrupt(&dir.path().join("data"), &demo, 1);
    let checked = verify(&demo, &expected, &attempted, 1);
    eprintln!(
        "unwritable directory ({how:?}): {failures} error line(s) while frozen; {checked} sessions intact after \
         resume + kill -9"
    );
}
