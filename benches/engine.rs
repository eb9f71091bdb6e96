//! Engine throughput through the public API: Get / Set / Update with 1, 64 and 1,024
//! concurrent clients, for 1, 2 and 4 shards with a thread per shard
//! (`Placement::DedicatedThreads`: every operation crosses threads), for 2 shards with
//! `Placement::CurrentThread` (every worker on the benchmark's thread), and for 2 shards with
//! the default `Placement::ServerThreads` where the benchmark's thread hosts one shard
//! (`host_here`, as each actix-web worker does) and creates its sessions there, so its
//! operations run on its own shard without a message. Each client works on its own session.
//!
//! Also `features/`: what session events and metrics add to a new visitor's engine work (see
//! [`bench_features`]); and `id/`: what reading a session id costs (parse and verify, which includes the locator
//! digest the engine keys sessions by) beside the digest alone, in one run.
//!
//! `cargo bench --bench engine` (add `-- --warm-up-time 1 --measurement-time 3` for a short run;
//! `cargo bench --bench engine -- id/` for the id group only, `-- features/` for that one).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use draco_session::{Config, Placement, SessionEngine, SessionId};
use futures_util::future::join_all;

/// Operations per measured iteration, split evenly over the clients.
const OPS: usize = 4096;

fn engine(shards: usize, placement: Placement) -> SessionEngine {
    let mut c = Config::default();
    c.session.secret = Some("benchmark secret, at least 32 bytes long!".into());
    c.session.shards = shards;
    c.storage.persist = false;
    SessionEngine::builder(c).placement(placement).start().expect("engine starts")
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Set,
    Update,
}

async fn run(engine: &SessionEngine, sessions: &[SessionId], op: Op) {
    let per_client = OPS / sessions.len();
    join_all(sessions.iter().map(|id| async move {
        for i in 0..per_client {
            match op {
                Op::Get => {
                    engine.get_raw(id, "bench", "a").await.unwrap();
                }
                Op::Set => engine.insert(id, "bench", "a", &i).await.unwrap(),
                Op::Update => {
                    engine.increment(id, "bench", "n", 1).await.unwrap();
                }
            }
        }
    }))
    .await;
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(OPS as u64));
    // A thread per shard for every shard count; then the workers on the caller's thread; then
    // the caller's thread hosting its own shard.
    let runs = [1, 2, 4]
        .map(|s| (s, Placement::DedicatedThreads, ""))
        .into_iter()
        .chain([(2, Placement::CurrentThread, "/same-thread"), (2, Placement::ServerThreads, "/server-thread")]);
    for (shards, placement, suffix) in runs {
        let system = actix_rt::System::new();
        let engine = system.block_on(async { engine(shards, placement) });
        if placement == Placement::ServerThreads {
            assert!(system.block_on(engine.host_here()).is_some(), "this thread hosts a shard");
        }
        for clients in [1, 64, 1024] {
            let sessions: Vec<SessionId> = system.block_on(async {
                let mut ids = Vec::with_capacity(clients);
                for _ in 0..clients {
                    let id = engine.create().await.unwrap().id;
                    engine.insert(&id, "bench", "a", &0).await.unwrap();
                    ids.push(id);
                }
                ids
            });
            for (name, op) in [("get", Op::Get), ("set", Op::Set), ("update", Op::Update)] {
                let id = BenchmarkId::new(name, format!("shards={shards}/clients={clients}{suffix}"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        system.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                run(&engine, &sessions, op).await;
                            }
                            start.elapsed()
                        })
                    })
                });
            }
        }
        system.block_on(engine.shutdown());
    }
    group.finish();
}

/// Reading an id: `parse_id` (format, tag check and the locator digest, as every request with
/// a cookie does) and, beside it, one BLAKE3 keyed hash of 16 bytes, which is what the locator
/// adds to it.
fn bench_id(c: &mut Criterion) {
    let system = actix_rt::System::new();
    let engine = system.block_on(async { engine(1, Placement::CurrentThread) });
    let text = system.block_on(engine.create()).unwrap().id.to_string();
    let mut group = c.benchmark_group("id");
    group.bench_function("parse_and_verify", |b| {
        b.iter(|| engine.parse_id(std::hint::black_box(text.as_bytes())).unwrap())
    });
    let key = [7u8; 32];
    let random = [9u8; 16];
    group.bench_function("locator_digest", |b| b.iter(|| blake3::keyed_hash(&key, std::hint::black_box(&random))));
    group.finish();
    system.block_on(engine.shutdown());
}

/// What events and metrics add to a new visitor's engine work (`create` + `increment`, as the
/// HTTP bench's handler does for a request without a cookie), on a shard hosted by the
/// benchmark's thread (as on an actix-web worker), in one run: `plain`; with an event
/// subscriber draining every event on another thread (`subscriber_reading`); with one that
/// never reads (`subscriber_stalled`); and, last (a recorder cannot be uninstalled), on an
/// engine started after a Prometheus recorder was installed (`metrics_recorder`). Sessions are
/// destroyed between measurements, untimed.
fn bench_features(c: &mut Criterion) {
    let mut group = c.benchmark_group("features");
    let system = actix_rt::System::new();
    let start = || {
        let engine = system.block_on(async { engine(2, Placement::ServerThreads) });
        assert!(system.block_on(engine.host_here()).is_some(), "this thread hosts a shard");
        engine
    };
    let measure = |group: &mut criterion::BenchmarkGroup<'_, _>, name: &str, engine: &SessionEngine| {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let mut made = Vec::new();
                    let start = Instant::now();
                    for _ in 0..iters {
                        let id = engine.create().await.unwrap().id;
                        engine.increment(&id, "__system__", "counter", 1).await.unwrap();
                        made.push(id);
                    }
                    let took = start.elapsed();
                    for id in &made {
                        engine.destroy(id).await.unwrap();
                    }
                    took
                })
            })
        });
    };
    let plain = start();
    measure(&mut group, "plain", &plain);
    let mut reading = system.block_on(plain.subscribe()).unwrap();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            while stopped.try_recv().is_err() {
                if tokio::time::timeout(Duration::from_millis(50), reading.recv()).await.is_ok_and(|d| d.is_none()) {
                    break;
                }
            }
        })
    });
    measure(&mut group, "subscriber_reading", &plain);
    stop.send(()).unwrap();
    reader.join().unwrap();
    let stalled = system.block_on(plain.subscribe()).unwrap();
    measure(&mut group, "subscriber_stalled", &plain);
    drop(stalled);
    system.block_on(plain.shutdown());
    metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().expect("a recorder");
    let measured = start();
    measure(&mut group, "metrics_recorder", &measured);
    system.block_on(measured.shutdown());
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_id, bench_features, bench
}
criterion_main!(benches);
