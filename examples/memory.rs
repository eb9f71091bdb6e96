//! Memory per live session: fills a store with N new sessions and reports the resident-set
//! growth per session. Run each mode in its own process (RSS growth never shrinks back, so two
//! stores measured in one process would blur into each other).
//!
//! ```sh
//! # Three small keys each (scope "app"), minus the bytes of the data itself:
//! cargo run --release --example memory -- --sessions 1000000
//! # One small counter each, as a new visitor's first `session.increment("counter", 1)` leaves
//! # it (the memory backend creates the session, then increments under the default scope):
//! cargo run --release --example memory -- --sessions 300000 --counter
//! # The same counter in a hand-rolled `DashMap<u128, i64>` session store (benches/http.rs (b)):
//! cargo run --release --example memory -- --sessions 300000 --dashmap
//! ```
//!
//! Every mode uses the default config but `storage.persist = false` (memory only).

use std::time::Instant;

use draco_session::limits::DEFAULT_SCOPE;
use draco_session::{Config, SessionEngine};
use futures_util::future::join_all;

#[path = "support/rss.rs"]
mod rss;
use rss::rss_bytes;

/// What each session holds.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Three small keys in scope "app" (the original measurement).
    ThreeKeys,
    /// One counter, `increment(DEFAULT_SCOPE, "counter", 1)` on a fresh session.
    Counter,
    /// The hand-rolled baseline: `DashMap<u128, i64>`, one entry per visitor.
    DashMap,
}

/// Sessions filled per batch of concurrent operations.
const BATCH: usize = 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sessions: usize = args
        .iter()
        .position(|a| a == "--sessions")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mode = if args.iter().any(|a| a == "--dashmap") {
        Mode::DashMap
    } else if args.iter().any(|a| a == "--counter") {
        Mode::Counter
    } else {
        Mode::ThreeKeys
    };
    if mode == Mode::DashMap {
        dashmap_baseline(sessions);
        return;
    }
    actix_rt::System::new().block_on(fill_engine(sessions, mode));
}

/// Prints the growth from `before` to now, per session, with the data's own bytes set apart.
fn report(what: &str, sessions: usize, before: u64, data_bytes: u64, start: Instant) {
    let after = rss_bytes();
    let per_session = after.saturating_sub(before) as f64 / sessions as f64;
    let data = data_bytes as f64 / sessions as f64;
    println!("{what}: {sessions} sessions, filled in {:.2} s", start.elapsed().as_secs_f64());
    println!("RSS growth: {:.1} MiB", after.saturating_sub(before) as f64 / (1 << 20) as f64);
    println!(
        "per session: {per_session:.0} bytes, of which data {data:.0} bytes, overhead {:.0} bytes",
        per_session - data
    );
}

async fn fill_engine(sessions: usize, mode: Mode) {
    let mut config = Config::default();
    config.session.secret = Some("memory example secret, 32 bytes or more".into());
    config.storage.persist = false;
    let engine = SessionEngine::start(config).expect("engine starts");
    // Warm the runtime and allocator before the baseline.
    let warm = engine.create().await.unwrap().id;
    engine.increment(&warm, DEFAULT_SCOPE, "counter", 1).await.unwrap();
    engine.destroy(&warm).await.unwrap();
    let before = rss_bytes();
    let start = Instant::now();
    let mut data_bytes = 0u64;
    let mut done = 0;
    while done < sessions {
        let n = BATCH.min(sessions - done);
        let created = join_all((0..n).map(|_| engine.create())).await;
        let writes = created.iter().enumerate().map(|(i, s)| {
            let id = s.as_ref().expect("created").id;
            let e = &engine;
            async move {
                if mode == Mode::Counter {
                    e.increment(&id, DEFAULT_SCOPE, "counter", 1).await.unwrap();
                } else {
                    e.insert(&id, "app", "k1", &((done + i) as u64 + 1_000_000)).await.unwrap();
                    e.insert(&id, "app", "k2", &"abcdefgh").await.unwrap();
                    e.insert(&id, "app", "k3", &true).await.unwrap();
                }
            }
        });
        join_all(writes).await;
        data_bytes += n as u64
            * match mode {
                // Scope "__system__", key "counter", value "1".
                Mode::Counter => (DEFAULT_SCOPE.len() + "counter".len() + 1) as u64,
                // Scope "app" + keys "k1".."k3" + values like 1234567 (JSON).
                _ => 3 * ("app".len() + 2) as u64 + 7 + 10 + 4,
            };
        done += n;
    }
    let stats = engine.stats().await.unwrap();
    let what = if mode == Mode::Counter { "draco-session, one counter" } else { "draco-session, three keys" };
    report(what, sessions, before, data_bytes, start);
    println!("engine reports {} sessions on {} shards", stats.sessions, engine.shards());
    engine.shutdown().await;
}

/// The hand-rolled store of benches/http.rs (b): a random `u128` id per new visitor, its
/// counter set by `entry(id).or_insert(0) += 1`.
fn dashmap_baseline(sessions: usize) {
    use rand::Rng as _;
    let store = dashmap::DashMap::<u128, i64>::new();
    // Warm the allocator as the engine run does.
    store.insert(0, 0);
    store.remove(&0);
    let before = rss_bytes();
    let start = Instant::now();
    let mut rng = rand::rng();
    for _ in 0..sessions {
        let id = u128::from(rng.next_u64()) | (u128::from(rng.next_u64()) << 64);
        *store.entry(id).or_insert(0) += 1;
    }
    report("DashMap<u128, i64>, one counter", sessions, before, sessions as u64 * 16, start);
    assert_eq!(store.len(), sessions);
}
