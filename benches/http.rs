//! HTTP benchmark: the same handler (read a counter from the session, add one, write it back)
//! behind each way of keeping sessions in actix-web, measured side by side in one run.
//!
//! ```sh
//! cargo bench --bench http --features redis   # 3 interleaved rounds of 5 s per variant and mode
//! cargo bench --bench http -- --secs 2 --rounds 1 --variants a,b,e
//! # some modes only (default: all four)
//! cargo bench --bench http --features redis -- --modes returning-2w,spread-2w --variants b,e,e1
//! # the draco variants of another build (e.g. the previous commit) beside this one's, same run:
//! cargo bench --bench http --features redis -- --variants b,e,e1,e2,f --baseline /path/to/old/http-binary
//! ```
//!
//! Variants: (a) no session (the ceiling); (b) hand-rolled: a random-id cookie and a `DashMap`
//! (the in-memory limit); (c) actix-session `CookieSessionStore`; (d) actix-session
//! `RedisSessionStore` on a redis-server this bench starts on a free loopback port;
//! (e) draco-session, memory engine as a user writes it: started once in the server's main with
//! the default config (one shard per CPU) and the default placement,
//! `Placement::ServerThreads` (each actix-web worker hosts a shard; sessions are born on the
//! serving worker's shard); (e1) the same with `Placement::DedicatedThreads` (the old default:
//! every shard on a thread of its own, every operation crosses threads); (e2) draco-session,
//! memory engine with one shard started in the single actix-web worker's app factory with
//! `Placement::CurrentThread` (one-worker modes only); (f) draco-session with the Redis backend
//! on the same redis-server as (d) (needs `--features redis`), and (f0) the same with no events
//! written to Redis (`events.redis_stream_len = 0`). (e), (e1), (e2) and (f) keep no
//! data directory (`storage.persist = false`); (g0), (g1), (g2) are (e) persisted as in
//! production — snapshots in a temporary data directory — with the write-ahead log off, `"1s"`
//! (the default) and `"always"`: the log's cost, same run; (ev) and (es) are (e) with a session
//! event subscriber (`SessionEngine::subscribe`) that takes every event as it comes (a task on
//! the server's main thread counting them) and one that never reads: what publishing events
//! costs (`--variants b,e,ev,es --modes returning,new`; every new visitor is one event)
//! (`--variants b,g0,g1,g2 --modes returning,returning-2w`). For those, fsyncs/s and
//! records/fsync (the group commit's batch size) are columns of the table. (em) is (e) with a
//! Prometheus recorder (`metrics-exporter-prometheus`) installed before the engine starts and
//! scraped every 5 s by a thread of the server: the cost of recording metrics, same run
//! (`--variants b,e,em`; (e) records into the `metrics` facade's no-op recorder).
//!
//! Each server runs in a process of its own (this binary, `--serve <variant>`). Modes
//! (`--modes`, comma-separated):
//! - `returning`: one actix-web worker, server pinned to CPU 0, wrk `-t1 -c64` pinned to CPU 1.
//!   64 sessions are created first and wrk's requests carry their cookies round-robin.
//! - `new`: as `returning`, but no cookie: every request is a new visitor whose first write
//!   creates a session.
//! - `returning-2w`: two actix-web workers; wrk `-t32 -c32`, one connection per wrk thread:
//!   each connection's first request has no cookie, and every later one sends the cookie its
//!   first answer set, so each session is born on the worker serving its connection.
//! - `spread-2w`: two workers; 64 sessions are created first, each over a connection of its
//!   own (the accept loop deals connections to the workers in turn), then wrk `-t32 -c32`
//!   sends the 64 cookies round-robin on every connection, so about half the requests reach
//!   a worker that is not their session's home.
//!
//! In the two-worker modes the server and wrk both run on CPUs 0 and 1, so wrk competes with
//! the server for CPU and req/s says little: compare the server's CPU time per request. Needs
//! `wrk`, `taskset` and, for (d) and (f), `redis-server` on the PATH.
//!
//! Beside req/s (which wrk, itself near its limit, can hide), each row gives the server's CPU
//! time per request: user + system time of the server process (all its threads) during the
//! wrk run, from /proc/<pid>/stat, divided by the requests wrk counted; and the ratio
//! "CPU per request of (b) / CPU per request of X", the primary comparison (1.00 = as cheap
//! as the hand-rolled `DashMap`). Allocations per request come from a counting global
//! allocator in this binary (allocations + reallocations of the server process over the wrk
//! run, read from the server's `GET /__bench_stats` before and after). The counter
//! (`stats_alloc`: the crate forbids unsafe code, so no allocator of its own) is in every
//! variant's CPU time: a few atomic increments per allocation, about 3 ns per allocation and
//! free on this 2-CPU machine, 8 ns with both CPUs allocating, so under 1-3% of a request.
//! Locality, for the draco variants, is the share of shard operations served on the thread
//! hosting the shard without a message (`ShardStats::local_operations / operations` over the
//! run; the Redis backend (f) has no local path and shows 0). Switches per request are the
//! server threads' context switches (voluntary + involuntary, `/proc/<pid>/task/*/status`)
//! over the run per request: a request that wakes another thread, which then sleeps again,
//! shows up here.
//!
//! `--baseline <binary>` also runs the draco variants (e, e1, e2, f, g0, g1, g2) served by another build of
//! this bench, interleaved with this build's, as rows `e@base`, `e1@base`, ... (each what that
//! build's variant is). A build older than the two-worker modes ignores `--workers` (it serves
//! one worker) and has no `/__bench_stats` (allocs/req and locality show `-`); a variant it
//! does not have shows `n/a`.

use std::alloc::System;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

/// Counts every allocation of this binary, so of the server child too (`/__bench_stats`).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";
const SECRET: &str = "benchmark secret, at least 32 bytes long!";
/// The route every variant's server answers with its counters.
const STATS_PATH: &str = "/__bench_stats";

mod servers {
    use actix_web::cookie::{Cookie, Key};
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    use dashmap::DashMap;
    use draco_session::{Placement, SessionEngine};
    use rand::Rng as _;

    type Addr = (&'static str, u16);

    /// Allocations + reallocations of this process so far.
    fn allocations() -> u64 {
        let s = super::GLOBAL.stats();
        (s.allocations + s.reallocations) as u64
    }

    async fn plain_stats() -> HttpResponse {
        HttpResponse::Ok().body(format!("allocs={} local=0 ops=0", allocations()))
    }

    async fn draco_stats(engine: web::Data<SessionEngine>) -> HttpResponse {
        let allocs = allocations();
        let (mut local, mut ops, mut records, mut fsyncs) = (0, 0, 0, 0);
        if let Ok(stats) = engine.stats().await {
            fsyncs = stats.log_fsyncs;
            for s in &stats.shards {
                local += s.local_operations;
                ops += s.operations;
                records += s.log_records;
            }
        }
        HttpResponse::Ok().body(format!("allocs={allocs} local={local} ops={ops} records={records} fsyncs={fsyncs}"))
    }

    async fn no_session() -> HttpResponse {
        HttpResponse::Ok().body("1")
    }

    async fn hand_rolled(req: HttpRequest, store: web::Data<DashMap<u128, i64>>) -> HttpResponse {
        let known = req
            .cookie("sid")
            .and_then(|c| u128::from_str_radix(c.value(), 16).ok())
            .filter(|id| store.contains_key(id));
        let (id, fresh) = match known {
            Some(id) => (id, false),
            None => (rand::rng().next_u64() as u128 | ((rand::rng().next_u64() as u128) << 64), true),
        };
        let n = {
            let mut entry = store.entry(id).or_insert(0);
            *entry += 1;
            *entry
        };
        let mut resp = HttpResponse::Ok();
        if fresh {
            resp.cookie(Cookie::build("sid", format!("{id:032x}")).http_only(true).path("/").finish());
        }
        resp.body(n.to_string())
    }

    async fn actix_session(session: actix_session::Session) -> HttpResponse {
        let n = session.get::<i64>("counter").ok().flatten().unwrap_or(0) + 1;
        match session.insert("counter", n) {
            Ok(()) => HttpResponse::Ok().body(n.to_string()),
            Err(_) => HttpResponse::InternalServerError().finish(),
        }
    }

    async fn draco(session: draco_session::Session) -> HttpResponse {
        match session.increment("counter", 1).await {
            Ok(n) => HttpResponse::Ok().body(n.to_string()),
            Err(_) => HttpResponse::InternalServerError().finish(),
        }
    }

    /// The default config (one shard per CPU), with what a loopback benchmark needs.
    fn draco_config() -> draco_session::Config {
        let mut config = draco_session::Config::default();
        config.session.secret = Some(super::SECRET.into());
        config.cookie.secure = false;
        config.storage.persist = false;
        config
    }

    /// The name of the session cookie `variant` sets ("" when it sets none).
    pub fn cookie_name(variant: &str) -> String {
        match variant {
            "a" => String::new(),
            "b" => "sid".into(),
            "c" | "d" => "id".into(), // actix-session's default
            _ => draco_session::Config::default().cookie.name,
        }
    }

    /// Serves `engine` (started once, in main) on `workers` actix-web workers.
    async fn draco_server(engine: SessionEngine, addr: Addr, workers: usize) -> std::io::Result<()> {
        let mw = draco_session::SessionMiddleware::new(engine.clone());
        let data = web::Data::new(engine.clone());
        let result = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap(mw.clone())
                .route(super::STATS_PATH, web::get().to(draco_stats))
                .route("/", web::get().to(draco))
        })
        .workers(workers)
        .bind(addr)?
        .run()
        .await;
        engine.shutdown().await;
        result
    }

    /// (e2): each worker starts an engine with one shard on its own thread in its app factory.
    async fn draco_current_thread(addr: Addr, workers: usize) -> std::io::Result<()> {
        HttpServer::new(move || {
            let mut config = draco_config();
            config.session.shards = 1;
            let engine =
                SessionEngine::builder(config).placement(Placement::CurrentThread).start().expect("engine starts");
            App::new()
                .app_data(web::Data::new(engine.clone()))
                .wrap(draco_session::SessionMiddleware::new(engine))
                .route(super::STATS_PATH, web::get().to(draco_stats))
                .route("/", web::get().to(draco))
        })
        .workers(workers)
        .bind(addr)?
        .run()
        .await
    }

    async fn actix_session_server(variant: &str, addr: Addr, redis_url: &str, workers: usize) -> std::io::Result<()> {
        let key = Key::from(&[7u8; 64]);
        if variant == "c" {
            return HttpServer::new(move || {
                let store = actix_session::storage::CookieSessionStore::default();
                App::new()
                    .wrap(actix_session::SessionMiddleware::builder(store, key.clone()).cookie_secure(false).build())
                    .route(super::STATS_PATH, web::get().to(plain_stats))
                    .route("/", web::get().to(actix_session))
            })
            .workers(workers)
            .bind(addr)?
            .run()
            .await;
        }
        let store = actix_session::storage::RedisSessionStore::new(redis_url)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        HttpServer::new(move || {
            App::new()
                .wrap(
                    actix_session::SessionMiddleware::builder(store.clone(), key.clone()).cookie_secure(false).build(),
                )
                .route(super::STATS_PATH, web::get().to(plain_stats))
                .route("/", web::get().to(actix_session))
        })
        .workers(workers)
        .bind(addr)?
        .run()
        .await
    }

    /// Installs a Prometheus recorder (histograms with buckets, as the demo's `/metrics`) and a
    /// thread scraping it every 5 s, as Prometheus would: rendering drains the histograms.
    fn install_prometheus() -> std::io::Result<()> {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
            .and_then(|b| b.install_recorder())
            .map_err(std::io::Error::other)?;
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                drop(handle.render());
            }
        });
        Ok(())
    }

    pub fn serve(variant: &str, port: u16, redis_url: &str, workers: usize) -> std::io::Result<()> {
        let addr = ("127.0.0.1", port);
        actix_web::rt::System::new().block_on(async move {
            match variant {
                "a" => {
                    HttpServer::new(|| {
                        App::new()
                            .route(super::STATS_PATH, web::get().to(plain_stats))
                            .route("/", web::get().to(no_session))
                    })
                    .workers(workers)
                    .bind(addr)?
                    .run()
                    .await
                }
                "b" => {
                    let store = web::Data::new(DashMap::<u128, i64>::new());
                    HttpServer::new(move || {
                        App::new()
                            .app_data(store.clone())
                            .route(super::STATS_PATH, web::get().to(plain_stats))
                            .route("/", web::get().to(hand_rolled))
                    })
                    .workers(workers)
                    .bind(addr)?
                    .run()
                    .await
                }
                "c" | "d" => actix_session_server(variant, addr, redis_url, workers).await,
                "e" => {
                    // As a user writes it: the default config and placement.
                    let engine = SessionEngine::start(draco_config()).map_err(std::io::Error::other)?;
                    draco_server(engine, addr, workers).await
                }
                "ev" | "es" => {
                    // (e) with an event subscriber: one that takes every event as it comes
                    // (counting them, on the main thread), or one that never reads.
                    let engine = SessionEngine::start(draco_config()).map_err(std::io::Error::other)?;
                    let mut events = engine.subscribe().await.map_err(std::io::Error::other)?;
                    if variant == "ev" {
                        actix_web::rt::spawn(async move {
                            let mut seen = 0u64;
                            while let Some(delivery) = events.recv().await {
                                seen += match delivery {
                                    draco_session::events::Delivery::Event(_) => 1,
                                    draco_session::events::Delivery::Missed(n) => n,
                                };
                            }
                            std::hint::black_box(seen);
                        });
                        draco_server(engine, addr, workers).await
                    } else {
                        let result = draco_server(engine, addr, workers).await;
                        drop(events);
                        result
                    }
                }
                "em" => {
                    install_prometheus()?;
                    let engine = SessionEngine::start(draco_config()).map_err(std::io::Error::other)?;
                    draco_server(engine, addr, workers).await
                }
                "e1" => {
                    let engine = SessionEngine::builder(draco_config())
                        .placement(Placement::DedicatedThreads)
                        .start()
                        .map_err(std::io::Error::other)?;
                    draco_server(engine, addr, workers).await
                }
                #[cfg(feature = "redis")]
                "f" | "f0" | "fp" => {
                    let mut config = draco_config();
                    if variant == "f0" {
                        config.events.redis_stream_len = 0; // no events written to Redis
                    }
                    if variant == "fp" {
                        config.storage.encrypt = false; // the plain layout, as before sealing
                    }
                    config.storage.backend = draco_session::config::StorageBackend::Redis;
                    config.storage.redis_url = redis_url.to_owned();
                    let engine = SessionEngine::start_async(config).await.map_err(std::io::Error::other)?;
                    draco_server(engine, addr, workers).await
                }
                "e2" => draco_current_thread(addr, workers).await,
                "g0" | "g1" | "g2" => {
                    // Persisted as in production: snapshots in a data directory, and the log
                    // off (g0), "1s" (g1, the default) or "always" (g2).
                    let dir = tempfile::tempdir()?;
                    let mut config = draco_config();
                    config.storage.persist = true;
                    config.storage.dir = dir.path().to_owned();
                    config.storage.log = match variant {
                        "g0" => draco_session::config::LogMode::Off,
                        "g1" => draco_session::Config::default().storage.log,
                        _ => draco_session::config::LogMode::Always,
                    };
                    let engine = SessionEngine::start(config).map_err(std::io::Error::other)?;
                    draco_server(engine, addr, workers).await
                }
                other => Err(std::io::Error::other(format!("unknown variant {other}"))),
            }
        })
    }
}

const VARIANTS: [(&str, &str); 16] = [
    ("a", "no session (ceiling)"),
    ("b", "hand-rolled DashMap"),
    ("c", "actix-session cookie"),
    ("d", "actix-session redis"),
    ("e", "draco-session memory, shard per server thread (default)"),
    ("ev", "draco-session memory (e) with an event subscriber reading every event"),
    ("es", "draco-session memory (e) with an event subscriber that never reads"),
    ("em", "draco-session memory, (e) with a Prometheus recorder installed"),
    ("e1", "draco-session memory, thread per shard (old default)"),
    ("e2", "draco-session memory, one shard on the worker (CurrentThread)"),
    ("f", "draco-session redis"),
    ("f0", "draco-session redis, events off (events.redis_stream_len = 0)"),
    ("fp", "draco-session redis, unsealed (storage.encrypt = false)"),
    ("g0", "draco-session memory, snapshots, log off"),
    ("g1", "draco-session memory, snapshots, log \"1s\" (default)"),
    ("g2", "draco-session memory, snapshots, log \"always\""),
];

/// Where wrk's cookies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cookies {
    /// No cookie: every request is a new visitor.
    None,
    /// 64 sessions created first, over a connection each; every wrk connection sends their
    /// cookies round-robin.
    Shared,
    /// Each wrk connection (one per wrk thread) keeps the cookie its first answer set.
    PerConnection,
}

#[derive(Debug, Clone, Copy)]
struct Mode {
    name: &'static str,
    title: &'static str,
    workers: usize,
    cookies: Cookies,
    wrk_threads: u32,
    wrk_connections: u32,
}

impl Mode {
    /// CPUs of the server, and of wrk.
    fn cpus(&self) -> (&'static str, &'static str) {
        if self.workers == 1 { ("0", "1") } else { ("0,1", "0,1") }
    }
}

const MODES: [Mode; 4] = [
    Mode {
        name: "returning",
        title: "returning visitors (64 sessions), 1 worker",
        workers: 1,
        cookies: Cookies::Shared,
        wrk_threads: 1,
        wrk_connections: 64,
    },
    Mode {
        name: "new",
        title: "new visitor on every request, 1 worker",
        workers: 1,
        cookies: Cookies::None,
        wrk_threads: 1,
        wrk_connections: 64,
    },
    Mode {
        name: "returning-2w",
        title: "returning visitors, a session per connection born on its worker, 2 workers",
        workers: 2,
        cookies: Cookies::PerConnection,
        wrk_threads: 32,
        wrk_connections: 32,
    },
    Mode {
        name: "spread-2w",
        title: "returning visitors (64 sessions spread over the workers) on every connection, 2 workers",
        workers: 2,
        cookies: Cookies::Shared,
        wrk_threads: 32,
        wrk_connections: 32,
    },
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Waits until `port` accepts; an error when `child` exits first or it takes too long.
fn wait_for_port(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("server exited early: {status}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("server on port {port} did not start"))
}

/// One GET over a connection of its own; answers the response's head and body.
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_owned(), body.to_owned()))
}

/// One request with no cookie; answers the `name=value` of the Set-Cookie, if any.
fn fetch_cookie(port: u16) -> Option<String> {
    let (head, _) = get(port, "/")?;
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .map(|l| l["set-cookie:".len()..].trim().split(';').next().unwrap_or_default().to_owned())
}

/// The server's counters (`GET /__bench_stats`): allocations, local operations, operations.
#[derive(Debug, Clone, Copy)]
struct Counters {
    allocs: u64,
    local: u64,
    ops: u64,
    /// Log records and fsyncs (0 for a server without a log, or an older build).
    records: u64,
    fsyncs: u64,
}

fn server_counters(port: u16) -> Option<Counters> {
    let (head, body) = get(port, STATS_PATH)?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let field = |name: &str| {
        body.split_whitespace().find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('='))?.parse().ok())
    };
    Some(Counters {
        allocs: field("allocs")?,
        local: field("local")?,
        ops: field("ops")?,
        records: field("records").unwrap_or(0),
        fsyncs: field("fsyncs").unwrap_or(0),
    })
}

/// wrk's script: `cookies` round-robin (each wrk thread starting elsewhere in the list), or,
/// with `per_connection`, the cookie named `cookie_name` the connection's first answer set.
fn lua_script(path: &Path, cookies: &[String], per_connection: bool, cookie_name: &str, stride: usize) {
    let list: Vec<String> = cookies.iter().map(|c| format!("{c:?}")).collect();
    let script = if per_connection {
        format!(
            r#"-- One connection per wrk thread: the thread's cookie is its connection's.
local cookie = nil
local prefix = "{cookie_name}="
request = function()
  local headers = {{["User-Agent"] = "{UA}"}}
  if cookie then
    headers["Cookie"] = cookie
  end
  return wrk.format("GET", "/", headers)
end
response = function(status, headers, body)
  local set = headers["set-cookie"] or headers["Set-Cookie"]
  if set then
    local pair = string.match(set, "^[^;]*")
    if pair and string.sub(pair, 1, #prefix) == prefix then
      cookie = pair
    end
  end
end
"#
        )
    } else {
        format!(
            r#"local cookies = {{{}}}
local threads = 0
setup = function(thread)
  thread:set("first", threads * {stride})
  threads = threads + 1
end
local i = nil
request = function()
  local headers = {{["User-Agent"] = "{UA}"}}
  if #cookies > 0 then
    i = (i or first or 0) + 1
    headers["Cookie"] = cookies[(i % #cookies) + 1]
  end
  return wrk.format("GET", "/", headers)
end
"#,
            list.join(", ")
        )
    };
    std::fs::write(path, script).expect("write lua script");
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    rps: f64,
    /// Server CPU time per request, microseconds.
    cpu_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_kib: u64,
    non_2xx: u64,
    /// Server allocations (+ reallocations) per request; NaN when the server has no counters.
    allocs: f64,
    /// Local operations / operations over the run, percent; NaN without shard operations.
    locality: f64,
    /// Context switches of the server's threads (voluntary + involuntary) per request.
    switches: f64,
    /// Log fsyncs per second, and log records per fsync; NaN without a log.
    fsyncs_per_s: f64,
    records_per_fsync: f64,
}

fn parse_ms(text: &str) -> f64 {
    let t = text.trim();
    let (num, factor) = if let Some(v) = t.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = t.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1000.0)
    } else {
        (t, 1.0)
    };
    num.parse::<f64>().unwrap_or(f64::NAN) * factor
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_owned()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// User + system CPU time of process `pid` so far, in clock ticks (fields 14 and 15 of stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // After the name: state (not a number, skipped) then ppid = field 4; utime/stime = 14/15.
    fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0)
}

/// Context switches so far, voluntary and involuntary, summed over the threads of `pid`
/// (`/proc/<pid>/task/*/status`): a thread waking another and going to sleep shows here.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The binary serving `label`, and the variant name it serves it under: `e@base` is variant
/// `e` of the `--baseline` binary.
fn server_of(label: &str, baseline: Option<&str>) -> (PathBuf, String) {
    match (label.split_once('@'), baseline) {
        (Some((v, "base")), Some(exe)) => (exe.into(), v.to_owned()),
        _ => (std::env::current_exe().expect("own path"), label.to_owned()),
    }
}

/// Reads wrk's report into `sample`; answers the number of requests it counted.
fn parse_wrk(text: &str, sample: &mut Sample) -> u64 {
    let mut requests = 0u64;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [n, "requests", "in", ..] => requests = n.parse().unwrap_or(0),
            ["Requests/sec:", v] => sample.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => sample.p50_ms = parse_ms(v),
            ["99%", v] => sample.p99_ms = parse_ms(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => sample.non_2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    requests
}

/// What every run shares.
struct Run<'a> {
    baseline: Option<&'a str>,
    secs: u64,
    redis_url: &'a str,
    dir: &'a Path,
}

/// One wrk run of `label` in `mode`; `None` when its server does not start.
#[allow(clippy::cast_precision_loss, reason = "tick, allocation and request counts far below 2^52")]
fn run_one(label: &str, mode: &Mode, run: &Run<'_>) -> Option<Sample> {
    let port = free_port();
    let (exe, variant) = server_of(label, run.baseline);
    let variant = variant.as_str();
    let (server_cpus, wrk_cpus) = mode.cpus();
    let mut server = Command::new("taskset")
        .args(["-c", server_cpus])
        .arg(&exe)
        .args(["--serve", variant, "--port", &port.to_string(), "--redis", run.redis_url])
        .args(["--workers", &mode.workers.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start server");
    if let Err(e) = wait_for_port(port, &mut server) {
        eprintln!("({label}) in mode {}: {e}", mode.name);
        let _ = server.kill();
        let _ = server.wait();
        return None;
    }
    let name = servers::cookie_name(variant);
    let cookies: Vec<String> = if mode.cookies == Cookies::Shared && !name.is_empty() {
        let cookies: Vec<String> = (0..64).filter_map(|_| fetch_cookie(port)).collect();
        assert_eq!(cookies.len(), 64, "variant {variant}: every warm-up request must set a cookie");
        let prefix = format!("{name}=");
        assert!(cookies.iter().all(|c| c.starts_with(&prefix)), "variant {variant} sets cookie {}", cookies[0]);
        cookies
    } else {
        Vec::new()
    };
    let script = run.dir.join(format!("{}-{label}.lua", mode.name));
    let threads = mode.wrk_threads as usize;
    lua_script(&script, &cookies, mode.cookies == Cookies::PerConnection, &name, (cookies.len() / threads).max(1));
    let before = server_counters(port);
    if before.is_none() && mode.workers > 1 {
        eprintln!("({label}): no {STATS_PATH}, an older build: it may serve one worker only");
    }
    let cpu_before = cpu_ticks(server.id());
    let switches_before = context_switches(server.id());
    let out = Command::new("taskset")
        .args(["-c", wrk_cpus, "wrk"])
        .args([format!("-t{}", mode.wrk_threads), format!("-c{}", mode.wrk_connections), format!("-d{}s", run.secs)])
        .args(["--latency", "-s"])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("run wrk (install it with apt-get install wrk)");
    let cpu = cpu_ticks(server.id()).saturating_sub(cpu_before);
    let switches = context_switches(server.id()).saturating_sub(switches_before);
    let after = server_counters(port);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sample = Sample {
        rss_kib: peak_rss_kib(server.id()),
        allocs: f64::NAN,
        locality: f64::NAN,
        fsyncs_per_s: f64::NAN,
        records_per_fsync: f64::NAN,
        ..Sample::default()
    };
    let requests = parse_wrk(&text, &mut sample);
    if requests > 0 {
        sample.cpu_us = cpu as f64 * 1e6 / ticks_per_second() / requests as f64;
        sample.switches = switches as f64 / requests as f64;
        if let (Some(b), Some(a)) = (before, after) {
            sample.allocs = a.allocs.saturating_sub(b.allocs) as f64 / requests as f64;
            let ops = a.ops.saturating_sub(b.ops);
            if ops > 0 {
                sample.locality = a.local.saturating_sub(b.local) as f64 * 100.0 / ops as f64;
            }
            let fsyncs = a.fsyncs.saturating_sub(b.fsyncs);
            if fsyncs > 0 {
                sample.fsyncs_per_s = fsyncs as f64 / run.secs as f64;
                sample.records_per_fsync = a.records.saturating_sub(b.records) as f64 / fsyncs as f64;
            }
        }
    }
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    if sample.rps == 0.0 {
        eprintln!("wrk output for {variant}:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Some(sample)
}

struct Redis {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

fn start_redis() -> Option<Redis> {
    let port = free_port();
    let dir = tempfile::tempdir().ok()?;
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    wait_for_port(port, &mut child).ok()?;
    Some(Redis { child, url: format!("redis://127.0.0.1:{port}"), _dir: dir })
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// `x` with `decimals`, or `-` when it is not a number.
fn fmt(x: f64, decimals: usize) -> String {
    if x.is_finite() { format!("{x:.decimals$}") } else { "-".into() }
}

/// The variants `mode` runs: (e2) needs the single worker it starts its engine on.
fn runs_in(label: &str, mode: &Mode) -> bool {
    mode.workers == 1 || label.split('@').next() != Some("e2")
}

/// Prints `mode`'s table (medians over the rounds) and the CPU ratios against (b).
#[allow(clippy::cast_precision_loss, reason = "RSS in KiB far below 2^52")]
fn print_table(mode: &Mode, variants: &[(String, String)], samples: &BTreeMap<String, Vec<Sample>>) {
    let med = |v: &str, f: fn(&Sample) -> f64| samples.get(v).map_or(f64::NAN, |s| median(s.iter().map(f).collect()));
    let (a, b, b_cpu) = (med("a", |x| x.rps), med("b", |x| x.rps), med("b", |x| x.cpu_us));
    let (server_cpus, wrk_cpus) = mode.cpus();
    println!(
        "\nmode {}: {} (server on CPU {server_cpus}, wrk -t{} -c{} on CPU {wrk_cpus})",
        mode.name, mode.title, mode.wrk_threads, mode.wrk_connections
    );
    println!(
        "| variant | req/s median (min-max) | p50 ms | p99 ms | server CPU us/req | allocs/req | locality % | switches/req | fsyncs/s | records/fsync | peak RSS MiB | non-2xx | req/s x (a) | req/s x (b) | CPU (b)/X |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (v, name) in variants.iter().filter(|(v, _)| runs_in(v, mode)) {
        let Some(s) = samples.get(v.as_str()).filter(|s| !s.is_empty()) else {
            println!("| ({v}) {name} | n/a | | | | | | | | | | | | | |");
            continue;
        };
        let rps: Vec<f64> = s.iter().map(|x| x.rps).collect();
        let min = rps.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rps.iter().copied().fold(0.0, f64::max);
        let (m, cpu) = (med(v, |x| x.rps), med(v, |x| x.cpu_us));
        ratios.push(format!("({v}) {}", fmt(b_cpu / cpu, 2)));
        println!(
            "| ({v}) {name} | {m:.0} ({min:.0}-{max:.0}) | {:.3} | {:.3} | {cpu:.2} | {} | {} | {:.2} | {} | {} | {:.1} | {} | {} | {} | {} |",
            med(v, |x| x.p50_ms),
            med(v, |x| x.p99_ms),
            fmt(med(v, |x| x.allocs), 1),
            fmt(med(v, |x| x.locality), 1),
            med(v, |x| x.switches),
            fmt(med(v, |x| x.fsyncs_per_s), 0),
            fmt(med(v, |x| x.records_per_fsync), 1),
            s.iter().map(|x| x.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
            s.iter().map(|x| x.non_2xx).sum::<u64>(),
            fmt(m / a, 2),
            fmt(m / b, 2),
            fmt(b_cpu / cpu, 2),
        );
    }
    println!("CPU per request of (b) / of X, mode {} (1.00 = as cheap as (b)): {}", mode.name, ratios.join(", "));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if let Some(variant) = arg("--serve") {
        let port: u16 = arg("--port").and_then(|p| p.parse().ok()).expect("--port");
        let workers: usize = arg("--workers").and_then(|w| w.parse().ok()).unwrap_or(1);
        if let Err(e) = servers::serve(&variant, port, &arg("--redis").unwrap_or_default(), workers) {
            eprintln!("server {variant}: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to run here.
    }
    let secs: u64 = arg("--secs").and_then(|s| s.parse().ok()).unwrap_or(5);
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(3);
    let default = if cfg!(feature = "redis") { "a,b,c,d,e,e1,e2,f" } else { "a,b,c,d,e,e1,e2" };
    let wanted = arg("--variants").unwrap_or_else(|| default.into());
    let wanted_modes = arg("--modes").unwrap_or_else(|| "returning,new,returning-2w,spread-2w".into());
    let modes: Vec<Mode> = wanted_modes
        .split(',')
        .map(|w| {
            MODES.iter().find(|m| m.name == w).copied().unwrap_or_else(|| {
                let names: Vec<&str> = MODES.iter().map(|m| m.name).collect();
                panic!("unknown mode {w:?}; modes: {}", names.join(","))
            })
        })
        .collect();
    let mut variants: Vec<(String, String)> = VARIANTS
        .iter()
        .filter(|(v, _)| wanted.split(',').any(|w| w == *v))
        .map(|(v, n)| ((*v).to_owned(), (*n).to_owned()))
        .collect();
    let baseline = arg("--baseline");
    if let Some(exe) = &baseline {
        let draco: Vec<(String, String)> = variants
            .iter()
            .filter(|(v, _)| v.starts_with('e') || v.starts_with('g') || v == "f")
            .map(|(v, _)| (format!("{v}@base"), format!("variant {v} of {exe}")))
            .collect();
        variants.extend(draco);
    }
    let needs_redis = |v: &str| v.starts_with('d') || v.starts_with('f');
    let redis = if variants.iter().any(|(v, _)| needs_redis(v)) { start_redis() } else { None };
    if redis.is_none() && variants.iter().any(|(v, _)| needs_redis(v)) {
        eprintln!("redis-server not found: skipping variants d and f");
        variants.retain(|(v, _)| !needs_redis(v));
    }
    let redis_url = redis.as_ref().map(|r| r.url.clone()).unwrap_or_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let run = Run { baseline: baseline.as_deref(), secs, redis_url: &redis_url, dir: dir.path() };
    println!("HTTP benchmark: {rounds} interleaved rounds x {secs} s per variant and mode");
    for mode in &modes {
        let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
        for round in 0..rounds {
            for (v, name) in variants.iter().filter(|(v, _)| runs_in(v, mode)) {
                let Some(s) = run_one(v, mode, &run) else { continue };
                eprintln!(
                    "round {} {}: ({v}) {name}: {:.0} req/s, {:.2} us CPU/req, {} allocs/req, locality {}%, {:.2} switches/req",
                    round + 1,
                    mode.name,
                    s.rps,
                    s.cpu_us,
                    fmt(s.allocs, 1),
                    fmt(s.locality, 1),
                    s.switches
                );
                samples.entry(v.clone()).or_default().push(s);
            }
        }
        print_table(mode, &variants, &samples);
    }
}
