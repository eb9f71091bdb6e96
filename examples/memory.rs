//! Memory per live session: fills the engine with N sessions of three small keys each and
//! reports the resident-set growth per session, minus the bytes of the data itself.
//!
//! ```sh
//! cargo run --release --example memory -- --sessions 1000000
//! ```

use std::time::Instant;

use draco_session::{Config, SessionEngine};
use futures_util::future::join_all;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sessions: usize = args
        .iter()
        .position(|a| a == "--sessions")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    actix_rt::System::new().block_on(async move {
        let mut config = Config::default();
        config.session.secret = Some("memory example secret, 32 bytes or more".into());
        config.storage.persist = false;
        let engine = SessionEngine::start(config).expect("engine starts");
        // Warm the runtime and allocator before the baseline.
        let warm = engine.create().await.unwrap().id;
        engine.destroy(&warm).await.unwrap();
        let before = rss_bytes();
        let start = Instant::now();
        // Data per session: scope "app" + keys "k1".."k3" + values like 1234567 (JSON).
        let mut data_bytes = 0u64;
        for chunk in (0..sessions).collect::<Vec<_>>().chunks(1024) {
            let created = join_all(chunk.iter().map(|_| engine.create())).await;
            let writes = created.iter().enumerate().map(|(i, s)| {
                let id = s.as_ref().expect("created").id;
                let e = &engine;
                async move {
                    e.insert(&id, "app", "k1", &(i as u64 + 1_000_000)).await.unwrap();
                    e.insert(&id, "app", "k2", &"abcdefgh").await.unwrap();
                    e.insert(&id, "app", "k3", &true).await.unwrap();
                }
            });
            join_all(writes).await;
            data_bytes += chunk.len() as u64 * (3 * ("app".len() + 2) as u64 + 7 + 10 + 4);
        }
        let after = rss_bytes();
        let stats = engine.stats().await.unwrap();
        let per_session = (after - before) as f64 / sessions as f64;
        let data = data_bytes as f64 / sessions as f64;
        println!("sessions: {} (engine reports {})", sessions, stats.sessions);
        println!("filled in {:.2} s", start.elapsed().as_secs_f64());
        println!("RSS growth: {:.1} MiB", (after - before) as f64 / (1 << 20) as f64);
        println!(
            "per session: {per_session:.0} bytes, of which data {data:.0} bytes, overhead {:.0} bytes",
            per_session - data
        );
        engine.shutdown().await;
    });
}
