//! Snapshots of a big engine: write and load time for 1 million sessions (three small keys
//! each), bytes per session on disk, and the latency of engine operations while a snapshot is
//! being taken, against the same load without one.
//!
//! `cargo bench --bench snapshot --features fuzzing` (the feature exposes the shard's session
//! type, not part of the API; `SNAPSHOT_BENCH_SESSIONS=100000` for a quicker run;
//! `RUST_LOG=draco_session=debug` also prints each shard's encoding turns).
//!
//! `SNAPSHOT_BENCH_SEALING=3` measures only what sealing (`storage.encrypt`) costs: write and
//! load unsealed against sealed, in interleaved rounds of the same process.
//!
//! Then the write-ahead log: 1 million logged changes (`SNAPSHOT_BENCH_CHANGES`) with no
//! snapshot, the data directory copied while the engine runs (what a `kill -9` leaves), and a
//! start on the copy: replay time, log bytes per record.
//!
//! Not a criterion benchmark: one snapshot of a million sessions is the measurement, and its
//! effect on concurrent operations is what matters, which repeated sampling cannot show.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use draco_session::fuzzing::SessionState;
use draco_session::{Config, SessionEngine, SessionId, config::LimitsConfig};
use futures_util::future::join_all;

const SECRET: &str = "snapshot benchmark secret, at least 32 bytes";
/// Concurrent clients of the latency measurement.
const CLIENTS: usize = 50;

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.session.secret = Some(SECRET.into());
    c.session.shards = 0; // one per CPU
    c.storage.dir = dir.to_owned();
    c.storage.snapshot_interval = Duration::from_secs(3600); // snapshots only when asked
    c
}

/// A small, fast, deterministic generator: the benchmark needs spread, not secrecy.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).expect("below n")
    }
}

async fn fill(engine: &SessionEngine, n: usize) -> Vec<SessionId> {
    let mut ids = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(4096) {
        let count = 4096.min(n - batch * 4096);
        let created = join_all((0..count).map(|i| async move {
            let id = engine.create().await.unwrap().id;
            let n = batch * 4096 + i;
            engine.insert(&id, "__system__", "user", &format!("u{n}")).await.unwrap();
            engine.insert(&id, "cart", "items", &(n % 7)).await.unwrap();
            engine.insert(&id, "stats", "visits", &1).await.unwrap();
            id
        }))
        .await;
        ids.extend(created);
    }
    ids
}

/// Runs `CLIENTS` clients, each doing a get or an increment on a random session once per
/// millisecond (an open loop well below the engine's capacity, so latency shows stalls, not
/// queueing) until `stop`; answers every operation's latency in microseconds.
fn clients(
    engine: &SessionEngine,
    ids: &Arc<Vec<SessionId>>,
    stop: &Arc<AtomicBool>,
) -> Vec<actix_rt::task::JoinHandle<Vec<u32>>> {
    (0..CLIENTS)
        .map(|c| {
            let (engine, ids, stop) = (engine.clone(), ids.clone(), stop.clone());
            actix_rt::spawn(async move {
                let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                let mut next = Instant::now();
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    // One op per millisecond; after a stall, no burst to catch up.
                    next = (next + Duration::from_millis(1)).max(Instant::now());
                    actix_rt::time::sleep_until(next.into()).await;
                    let id = &ids[rng.below(ids.len())];
                    let t = Instant::now();
                    if rng.below(2) == 0 {
                        engine.get_raw(id, "cart", "items").await.unwrap();
                    } else {
                        engine.increment(id, "stats", "visits", 1).await.unwrap();
                    }
                    latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
                latencies
            })
        })
        .collect()
}

struct Summary {
    ops: usize,
    p50: u32,
    p99: u32,
    max: u32,
}

async fn collect(handles: Vec<actix_rt::task::JoinHandle<Vec<u32>>>) -> Summary {
    let mut all: Vec<u32> = join_all(handles).await.into_iter().flat_map(Result::unwrap).collect();
    all.sort_unstable();
    // A rank from a quantile in [0, 1]: never negative, never past the end.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "q is in [0, 1]")]
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Summary { ops: all.len(), p50: at(0.50), p99: at(0.99), max: *all.last().unwrap() }
}

fn dir_bytes(dir: &std::path::Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut files = 0;
    for e in std::fs::read_dir(dir.join("snapshots")).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".snap") {
            bytes += e.metadata().unwrap().len();
            files += 1;
        }
    }
    (bytes, files)
}

fn print_latency(label: &str, s: &Summary, over: Duration) {
    println!(
        "{label:<38} {:>8} ops in {:>6.2} s ({:>7.0} ops/s)  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
        s.ops,
        over.as_secs_f64(),
        s.ops as f64 / over.as_secs_f64(),
        s.p50 as f64 / 1000.0,
        s.p99 as f64 / 1000.0,
        s.max as f64 / 1000.0
    );
}

/// What a "clone the shard in one actor turn, encode elsewhere" design would stall for.
fn clone_cost(per_shard: usize) {
    let limits = LimitsConfig::default();
    let shard: Vec<(u64, SessionState)> = (0..per_shard)
        .map(|n| {
            let mut s = SessionState::new(1_700_000_000_000);
            s.set("__system__", "user", format!("\"u{n}\"").into_bytes(), &limits).unwrap();
            s.set("cart", "items", b"3", &limits).unwrap();
            s.set("stats", "visits", b"1", &limits).unwrap();
            (n as u64, s)
        })
        .collect();
    let t = Instant::now();
    let copy = shard.clone();
    let took = t.elapsed();
    std::hint::black_box(&copy);
    println!(
        "{:<38} {:>8.1} ms for one shard of {per_shard} sessions (one actor turn)",
        "clone-everything alternative",
        took.as_secs_f64() * 1000.0
    );
}

/// 1 in 10 changes a session's first write (a whole-session record), the rest counter
/// increments (a value record each); none of it in a snapshot.
fn replay(changes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let system = actix_rt::System::new();
    let sessions = changes / 10;
    let config = |dir: &std::path::Path| {
        let mut c = config(dir);
        c.storage.log_max = 1 << 30; // no early snapshot: every change stays in the log
        c
    };
    system.block_on(async {
        let engine = SessionEngine::start(config(dir.path())).unwrap();
        let t = Instant::now();
        for batch in 0..sessions.div_ceil(1024) {
            let count = 1024.min(sessions - batch * 1024);
            join_all((0..count).map(|_| async {
                let id = engine.create().await.unwrap().id;
                for _ in 0..10 {
                    engine.increment(&id, "stats", "visits", 1).await.unwrap();
                }
            }))
            .await;
        }
        let took = t.elapsed();
        let stats = engine.stats().await.unwrap();
        let (records, bytes) = stats.shards.iter().fold((0, 0), |(r, b), s| (r + s.log_records, b + s.log_bytes));
        println!(
            "{:<38} {:>8.2} s  ({records} records, {bytes} bytes, {:.1} bytes/record, {:.0} changes/s)",
            "log 1M changes (storage.log = \"1s\")",
            took.as_secs_f64(),
            bytes as f64 / records as f64,
            records as f64 / took.as_secs_f64()
        );
        let copy = |from: &std::path::Path, to: &std::path::Path| {
            for sub in ["snapshots", "log"] {
                std::fs::create_dir_all(to.join(sub)).unwrap();
                for e in std::fs::read_dir(from.join(sub)).unwrap() {
                    let e = e.unwrap();
                    std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
                }
            }
        };
        copy(dir.path(), image.path());
        assert_eq!(dir_bytes(image.path()).1, 0, "no snapshot: everything is in the log");
        engine.shutdown().await;
    });
    system.block_on(async {
        let t = Instant::now();
        let engine = SessionEngine::start(config(image.path())).unwrap();
        let count = engine.stats().await.unwrap().sessions;
        let took = t.elapsed();
        assert_eq!(count, sessions, "every logged session is back");
        println!(
            "{:<38} {:>8.3} s  ({changes} logged changes replayed, no snapshot; {:.0} records/s)",
            "start after a crash (replay until serving)",
            took.as_secs_f64(),
            changes as f64 / took.as_secs_f64()
        );
        engine.shutdown().await;
    });
}

/// What sealing (`storage.encrypt`) costs a snapshot: `rounds` interleaved rounds of an
/// engine with `n` sessions, unsealed then sealed, each written by `snapshot()` and loaded by a
/// new engine (log off, so the snapshot alone is measured). Prints medians and ratios.
fn sealing_cost(n: usize, rounds: usize) {
    let mut times: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, encrypt) in [false, true].into_iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let mut c = config(dir.path());
            c.storage.encrypt = encrypt;
            c.storage.log = draco_session::config::LogMode::Off;
            let write = actix_rt::System::new().block_on(async {
                let engine = SessionEngine::start(c.clone()).unwrap();
                fill(&engine, n).await;
                let t = Instant::now();
                assert_eq!(engine.snapshot().await.unwrap(), n);
                let took = t.elapsed().as_secs_f64();
                engine.shutdown().await;
                took
            });
            let load = actix_rt::System::new().block_on(async {
                let t = Instant::now();
                let engine = SessionEngine::start(c).unwrap();
                assert_eq!(engine.stats().await.unwrap().sessions, n);
                let took = t.elapsed().as_secs_f64();
                engine.shutdown().await;
                took
            });
            #[allow(clippy::cast_precision_loss, reason = "a byte count")]
            let per_session = dir_bytes(dir.path()).0 as f64 / n as f64;
            times[i].push((write, load, per_session));
        }
    }
    let median = |v: &[(f64, f64, f64)], f: fn(&(f64, f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    println!("sealing ({n} sessions, {rounds} interleaved rounds, medians):");
    for (what, f) in [
        ("write, snapshot()", (|t: &(f64, f64, f64)| t.0) as fn(&(f64, f64, f64)) -> f64),
        ("load, start() until stats()", |t| t.1),
    ] {
        let (plain, sealed) = (median(&times[0], f), median(&times[1], f));
        println!("  {what:<30} unsealed {plain:.3} s, sealed {sealed:.3} s: {:.2}x", sealed / plain);
    }
    println!(
        "  bytes per session on disk      unsealed {:.1}, sealed {:.1}",
        median(&times[0], |t| t.2),
        median(&times[1], |t| t.2)
    );
}

fn main() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).try_init();
    let n: usize = std::env::var("SNAPSHOT_BENCH_SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    // `SNAPSHOT_BENCH_SEALING=3`: only the cost of sealing, over that many rounds.
    if let Some(rounds) = std::env::var("SNAPSHOT_BENCH_SEALING").ok().and_then(|v| v.parse().ok()) {
        sealing_cost(n, rounds);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let system = actix_rt::System::new();
    system.block_on(async {
        let engine = SessionEngine::start(config(dir.path())).unwrap();
        println!(
            "snapshot benchmark: {n} sessions, 3 keys each, {} shards, {} CPUs",
            engine.shards(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let t = Instant::now();
        let ids = Arc::new(fill(&engine, n).await);
        println!("{:<38} {:>8.2} s", "fill through the engine API", t.elapsed().as_secs_f64());

        // Write: every shard is dirty; snapshot() returns once the files are durable.
        let t = Instant::now();
        let written = engine.snapshot().await.unwrap();
        let took = t.elapsed();
        assert_eq!(written, n);
        let (bytes, files) = dir_bytes(dir.path());
        println!(
            "{:<38} {:>8.3} s  ({files} files, {bytes} bytes, {:.1} bytes/session)",
            "write (snapshot(), idle engine)",
            took.as_secs_f64(),
            bytes as f64 / n as f64
        );

        // Latency without, then during, a snapshot.
        let stop = Arc::new(AtomicBool::new(false));
        let handles = clients(&engine, &ids, &stop);
        let t = Instant::now();
        actix_rt::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        let base = collect(handles).await;
        print_latency("ops, no snapshot", &base, t.elapsed());

        let stop = Arc::new(AtomicBool::new(false));
        let handles = clients(&engine, &ids, &stop);
        actix_rt::time::sleep(Duration::from_millis(200)).await; // the clients dirty every shard
        let t = Instant::now();
        let written = engine.snapshot().await.unwrap();
        let during = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let busy = collect(handles).await;
        println!("{:<38} {:>8.3} s  ({written} sessions)", "write (snapshot(), under load)", during.as_secs_f64());
        print_latency("ops, during that snapshot", &busy, during + Duration::from_millis(200));

        // Final snapshot on shutdown: the whole shard in one turn, the worker then stops.
        engine.touch(&ids[0]).await.unwrap();
        for id in ids.iter().step_by(ids.len() / engine.shards().max(1) / 64 + 1) {
            engine.touch(id).await.unwrap();
        }
        let t = Instant::now();
        engine.shutdown().await;
        println!("{:<38} {:>8.3} s", "write (shutdown(), final snapshot)", t.elapsed().as_secs_f64());
    });
    system.block_on(async {
        let t = Instant::now();
        let engine = SessionEngine::start(config(dir.path())).unwrap();
        let started = t.elapsed();
        let sessions = engine.stats().await.unwrap().sessions;
        let took = t.elapsed();
        assert_eq!(sessions, n);
        println!(
            "{:<38} {:>8.3} s  (start() returned after {:.3} s; then the workers index their shards)",
            "load (start() until serving)",
            took.as_secs_f64(),
            started.as_secs_f64()
        );
        engine.shutdown().await;
    });
    clone_cost(n / std::thread::available_parallelism().map_or(1, |n| n.get()));
    let changes: usize = std::env::var("SNAPSHOT_BENCH_CHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    replay(changes);
}
