//! HTTP benchmark: the same handler (read a counter from the session, add one, write it back)
//! behind each way of keeping sessions in actix-web, measured side by side in one run.
//!
//! ```sh
//! cargo bench --bench http --features redis   # 3 interleaved rounds of 5 s per variant and mode
//! cargo bench --bench http -- --secs 2 --rounds 1 --variants a,b,e
//! # the draco variants of another build (e.g. the previous commit) beside this one's, same run:
//! cargo bench --bench http --features redis -- --variants b,e,e2,f --baseline /path/to/old/http-binary
//! ```
//!
//! Variants: (a) no session (the ceiling); (b) hand-rolled: a random-id cookie and a `DashMap`
//! (the in-memory limit); (c) actix-session `CookieSessionStore`; (d) actix-session
//! `RedisSessionStore` on a redis-server this bench starts on a free loopback port;
//! (e) draco-session, memory engine, shard worker on its own thread (the default placement);
//! (e2) draco-session, memory engine started in the single actix-web worker's app factory with
//! `Placement::CurrentThread`, so operations never cross threads; (f) draco-session with the
//! Redis backend on the same redis-server as (d) (needs `--features redis`).
//!
//! Each server runs in its own process pinned to CPU 0 (one actix-web worker), and wrk is pinned
//! to CPU 1 (64 keep-alive connections). Mode "returning": 64 sessions are created first and
//! wrk's requests carry their cookies round-robin. Mode "new": no cookie, so every request is a
//! new visitor whose first write creates a session. Needs `wrk`, `taskset` and, for (d),
//! `redis-server` on the PATH.
//!
//! Beside req/s (which wrk, itself near its limit, can hide), each row gives the server's CPU
//! time per request: user + system time of the server process (all its threads) during the
//! wrk run, from /proc/<pid>/stat, divided by the requests wrk counted. `--baseline <binary>`
//! also runs the draco variants (e, e2, f) served by another build of this bench, interleaved
//! with this build's, as rows `e@base`, `e2@base`, `f@base`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";
const SECRET: &str = "benchmark secret, at least 32 bytes long!";

mod servers {
    use actix_web::cookie::{Cookie, Key};
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    use dashmap::DashMap;
    use rand::Rng as _;

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

    fn draco_config() -> draco_session::Config {
        let mut config = draco_session::Config::default();
        config.session.secret = Some(super::SECRET.into());
        config.session.shards = 1;
        config.cookie.secure = false;
        config.storage.persist = false;
        config
    }

    pub fn serve(variant: &str, port: u16, redis_url: &str) -> std::io::Result<()> {
        let addr = ("127.0.0.1", port);
        let key = Key::from(&[7u8; 64]);
        actix_web::rt::System::new().block_on(async move {
            match variant {
                "a" => {
                    HttpServer::new(|| App::new().route("/", web::get().to(no_session)))
                        .workers(1)
                        .bind(addr)?
                        .run()
                        .await
                }
                "b" => {
                    let store = web::Data::new(DashMap::<u128, i64>::new());
                    HttpServer::new(move || App::new().app_data(store.clone()).route("/", web::get().to(hand_rolled)))
                        .workers(1)
                        .bind(addr)?
                        .run()
                        .await
                }
                "c" => {
                    HttpServer::new(move || {
                        let store = actix_session::storage::CookieSessionStore::default();
                        App::new()
                            .wrap(
                                actix_session::SessionMiddleware::builder(store, key.clone())
                                    .cookie_secure(false)
                                    .build(),
                            )
                            .route("/", web::get().to(actix_session))
                    })
                    .workers(1)
                    .bind(addr)?
                    .run()
                    .await
                }
                "d" => {
                    let store = actix_session::storage::RedisSessionStore::new(redis_url)
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    HttpServer::new(move || {
                        App::new()
                            .wrap(
                                actix_session::SessionMiddleware::builder(store.clone(), key.clone())
                                    .cookie_secure(false)
                                    .build(),
                            )
                            .route("/", web::get().to(actix_session))
                    })
                    .workers(1)
                    .bind(addr)?
                    .run()
                    .await
                }
                "e" => {
                    let engine = draco_session::SessionEngine::start(draco_config()).map_err(std::io::Error::other)?;
                    let mw = draco_session::SessionMiddleware::new(engine.clone());
                    let result = HttpServer::new(move || App::new().wrap(mw.clone()).route("/", web::get().to(draco)))
                        .workers(1)
                        .bind(addr)?
                        .run()
                        .await;
                    engine.shutdown().await;
                    result
                }
                #[cfg(feature = "redis")]
                "f" => {
                    let mut config = draco_config();
                    config.storage.backend = draco_session::StorageBackend::Redis;
                    config.storage.redis_url = redis_url.to_owned();
                    let engine =
                        draco_session::SessionEngine::start_async(config).await.map_err(std::io::Error::other)?;
                    let mw = draco_session::SessionMiddleware::new(engine.clone());
                    let result = HttpServer::new(move || App::new().wrap(mw.clone()).route("/", web::get().to(draco)))
                        .workers(1)
                        .bind(addr)?
                        .run()
                        .await;
                    engine.shutdown().await;
                    result
                }
                "e2" => {
                    // One actix-web worker that starts the engine in its app factory, with the
                    // shard workers on its own thread: operations never cross threads.
                    HttpServer::new(move || {
                        let engine = draco_session::SessionEngine::builder(draco_config())
                            .placement(draco_session::Placement::CurrentThread)
                            .start()
                            .expect("engine starts");
                        App::new().wrap(draco_session::SessionMiddleware::new(engine)).route("/", web::get().to(draco))
                    })
                    .workers(1)
                    .bind(addr)?
                    .run()
                    .await
                }
                other => Err(std::io::Error::other(format!("unknown variant {other}"))),
            }
        })
    }
}

const VARIANTS: [(&str, &str); 7] = [
    ("a", "no session (ceiling)"),
    ("b", "hand-rolled DashMap"),
    ("c", "actix-session cookie"),
    ("d", "actix-session redis"),
    ("e", "draco-session memory"),
    ("e2", "draco-session memory, same thread"),
    ("f", "draco-session redis"),
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server on port {port} did not start");
}

/// One request with no cookie; answers the `name=value` of the Set-Cookie, if any.
fn fetch_cookie(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {UA}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .map(|l| l["set-cookie:".len()..].trim().split(';').next().unwrap_or_default().to_owned())
}

fn lua_script(dir: &std::path::Path, cookies: &[String]) -> std::path::PathBuf {
    let list: Vec<String> = cookies.iter().map(|c| format!("{c:?}")).collect();
    let script = format!(
        r#"local cookies = {{{}}}
local i = 0
request = function()
  local headers = {{["User-Agent"] = "{UA}"}}
  if #cookies > 0 then
    i = i + 1
    headers["Cookie"] = cookies[(i % #cookies) + 1]
  end
  return wrk.format("GET", "/", headers)
end
"#,
        list.join(", ")
    );
    let path = dir.join(format!("script-{}.lua", cookies.len()));
    std::fs::write(&path, script).expect("write lua script");
    path
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
fn server_of(label: &str, baseline: Option<&str>) -> (std::path::PathBuf, String) {
    match (label.split_once('@'), baseline) {
        (Some((v, "base")), Some(exe)) => (exe.into(), v.to_owned()),
        _ => (std::env::current_exe().expect("own path"), label.to_owned()),
    }
}

fn run_one(
    label: &str,
    baseline: Option<&str>,
    returning: bool,
    secs: u64,
    redis_url: &str,
    dir: &std::path::Path,
) -> Sample {
    let port = free_port();
    let (exe, variant) = server_of(label, baseline);
    let variant = variant.as_str();
    let mut server = Command::new("taskset")
        .args(["-c", "0"])
        .arg(&exe)
        .args(["--serve", variant, "--port", &port.to_string(), "--redis", redis_url])
        .stdout(Stdio::null())
        .spawn()
        .expect("start server");
    wait_for_port(port, &mut server);
    let cookies: Vec<String> =
        if returning && variant != "a" { (0..64).filter_map(|_| fetch_cookie(port)).collect() } else { Vec::new() };
    if returning && variant != "a" {
        assert_eq!(cookies.len(), 64, "variant {variant}: every warm-up request must set a cookie");
    }
    let script = lua_script(dir, &cookies);
    let cpu_before = cpu_ticks(server.id());
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "-c64", &format!("-d{secs}s"), "--latency", "-s"])
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("run wrk (install it with apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let cpu = cpu_ticks(server.id()).saturating_sub(cpu_before);
    let mut sample = Sample { rss_kib: peak_rss_kib(server.id()), ..Sample::default() };
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
    #[allow(clippy::cast_precision_loss, reason = "tick and request counts far below 2^52")]
    if requests > 0 {
        sample.cpu_us = cpu as f64 * 1e6 / ticks_per_second() / requests as f64;
    }
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    if sample.rps == 0.0 {
        eprintln!("wrk output for {variant}:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    sample
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
    wait_for_port(port, &mut child);
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if let Some(variant) = arg("--serve") {
        let port: u16 = arg("--port").and_then(|p| p.parse().ok()).expect("--port");
        if let Err(e) = servers::serve(&variant, port, &arg("--redis").unwrap_or_default()) {
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
    let default = if cfg!(feature = "redis") { "a,b,c,d,e,e2,f" } else { "a,b,c,d,e,e2" };
    let wanted = arg("--variants").unwrap_or_else(|| default.into());
    let mut variants: Vec<(String, String)> = VARIANTS
        .iter()
        .filter(|(v, _)| wanted.split(',').any(|w| w == *v))
        .map(|(v, n)| ((*v).to_owned(), (*n).to_owned()))
        .collect();
    let baseline = arg("--baseline");
    if let Some(exe) = &baseline {
        let draco: Vec<(String, String)> = variants
            .iter()
            .filter(|(v, _)| v.starts_with('e') || v == "f")
            .map(|(v, n)| (format!("{v}@base"), format!("{n} ({exe})")))
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
    println!("HTTP benchmark: {rounds} interleaved rounds x {secs} s, wrk -t1 -c64 on CPU 1, server on CPU 0");
    for (mode, returning) in [("returning visitors (64 sessions)", true), ("new visitor on every request", false)] {
        let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
        for round in 0..rounds {
            for (v, name) in &variants {
                let s = run_one(v, baseline.as_deref(), returning, secs, &redis_url, dir.path());
                eprintln!("round {} {mode}: ({v}) {name}: {:.0} req/s, {:.2} us CPU/req", round + 1, s.rps, s.cpu_us);
                samples.entry(v.as_str()).or_default().push(s);
            }
        }
        let med = |v: &str| samples.get(v).map(|s| median(s.iter().map(|x| x.rps).collect())).unwrap_or(f64::NAN);
        let (a, b) = (med("a"), med("b"));
        println!("\nmode: {mode}");
        println!(
            "| variant | req/s median (min-max) | server CPU us/req | p50 ms | p99 ms | peak RSS MiB | non-2xx | x (a) | x (b) |\n|---|---|---|---|---|---|---|---|---|"
        );
        for (v, name) in &variants {
            let s = &samples[v.as_str()];
            let rps: Vec<f64> = s.iter().map(|x| x.rps).collect();
            let min = rps.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rps.iter().copied().fold(0.0, f64::max);
            let m = med(v);
            println!(
                "| ({v}) {name} | {m:.0} ({min:.0}-{max:.0}) | {:.2} | {:.3} | {:.3} | {:.1} | {} | {:.2} | {:.2} |",
                median(s.iter().map(|x| x.cpu_us).collect()),
                median(s.iter().map(|x| x.p50_ms).collect()),
                median(s.iter().map(|x| x.p99_ms).collect()),
                s.iter().map(|x| x.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
                s.iter().map(|x| x.non_2xx).sum::<u64>(),
                m / a,
                m / b
            );
        }
    }
}
