//! A memory flood, bounded: 2,000 anonymous clients each open a session and write 60 KB into
//! it over HTTP (as issue 24's review did through the demo's API), against an engine with the
//! default config or a smaller `limits.max_memory`; reports the process's resident set before
//! and after, what the engine holds, its evictions, the data directory's size, and whether a
//! session logged in before the flood kept its data.
//!
//! ```sh
//! cargo run --release --example flood                          # default config (max_memory 1 GiB)
//! cargo run --release --example flood -- --max-memory 32MiB    # the budget of issue 24
//! cargo run --release --example flood -- --clients 5000 --bytes 60000 --max-memory 32MiB
//! ```
//!
//! The server and its clients share the process (the clients' buffers are freed as each
//! answer arrives); persistence is on, in a temporary directory, as in the demo. Run each
//! setting in its own process: RSS does not shrink back.

use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use draco_session::{Config, Session, SessionEngine, SessionMiddleware, WebError};
use futures_util::StreamExt;
use futures_util::stream;

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
/// Requests in flight at once.
const CONCURRENCY: usize = 32;

#[path = "support/rss.rs"]
mod rss;
use rss::rss_bytes;

fn mib(bytes: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "a figure to read")]
    let m = bytes as f64 / f64::from(1 << 20);
    format!("{m:.1} MiB")
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `PUT /blob`: the body, a JSON string, stored in the session (created if need be).
async fn put_blob(session: Session, body: web::Json<String>) -> Result<HttpResponse, WebError> {
    session.namespace("flood").insert("blob", &body.into_inner()).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /blob`: the length of the session's blob.
async fn get_blob(session: Session) -> Result<HttpResponse, WebError> {
    let blob: Option<String> = session.namespace("flood").get("blob").await?;
    Ok(HttpResponse::Ok().body(blob.map_or(0, |b| b.len()).to_string()))
}

/// `POST /login`: logs the session in as user 1.
async fn login(session: Session, _: HttpRequest) -> Result<HttpResponse, WebError> {
    session.login(1).await?;
    Ok(HttpResponse::Ok().finish())
}

/// The `sid` cookie a response set, as a `Cookie` header value.
fn cookie_of(res: &awc::ClientResponse<impl futures_util::Stream>) -> Option<String> {
    res.headers().get_all("set-cookie").filter_map(|v| v.to_str().ok()).find_map(|v| {
        let pair = v.split(';').next()?;
        pair.starts_with("sid=").then(|| pair.to_owned())
    })
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let clients: usize = arg(&args, "--clients").and_then(|n| n.parse().ok()).unwrap_or(2_000);
    let bytes: usize = arg(&args, "--bytes").and_then(|n| n.parse().ok()).unwrap_or(60_000);
    let dir = tempfile::tempdir()?;
    let mut toml = String::from("[session]\nsecret = \"flood example secret, at least 32 bytes long\"\n");
    toml.push_str("[cookie]\nsecure = false\n");
    toml.push_str(&format!("[storage]\ndir = {:?}\n", dir.path().display().to_string()));
    if let Some(budget) = arg(&args, "--max-memory") {
        toml.push_str(&format!("[limits]\nmax_memory = {budget:?}\n"));
    }
    let config = Config::from_toml(&toml, "flood").map_err(std::io::Error::other)?;
    let budget = config.limits.max_memory;
    let engine = SessionEngine::start(config).map_err(std::io::Error::other)?;
    let middleware = SessionMiddleware::new(engine.clone());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware.clone())
            .app_data(web::JsonConfig::default().limit(1 << 20))
            .route("/blob", web::put().to(put_blob))
            .route("/blob", web::get().to(get_blob))
            .route("/login", web::post().to(login))
    })
    .bind(("127.0.0.1", 0))?;
    let addr = server.addrs()[0];
    let handle = server.run();
    let running = handle.handle();
    actix_web::rt::spawn(handle);

    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let url = format!("http://{addr}/blob");
    let blob = "x".repeat(bytes);
    // A user logged in before the flood, holding a blob of the same size.
    let res = client.post(format!("http://{addr}/login")).insert_header(("user-agent", BROWSER)).send().await;
    let cookie = res.ok().as_ref().and_then(cookie_of).expect("a session for the login");
    let res = client.put(&url).insert_header(("user-agent", BROWSER)).insert_header(("cookie", cookie.as_str()));
    let status = res.send_json(&blob).await.map(|r| r.status().as_u16());
    assert_eq!(status.ok(), Some(200), "the logged-in user's write");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(0..clients)
        .map(|_| {
            let request = client.put(&url).insert_header(("user-agent", BROWSER));
            let blob = &blob;
            async move { request.send_json(blob).await.map_or(0, |r| r.status().as_u16()) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let took = started.elapsed();
    let after = rss_bytes();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 503).count();

    let mut res = client.get(&url).insert_header(("user-agent", BROWSER)).insert_header(("cookie", cookie.as_str()));
    res = res.insert_header(("accept", "text/plain"));
    let kept = match res.send().await {
        Ok(mut r) if r.status() == 200 => String::from_utf8_lossy(&r.body().await.unwrap_or_default()).into_owned(),
        Ok(r) => format!("status {}", r.status()),
        Err(e) => format!("error {e}"),
    };
    let stats = engine.stats().await.map_err(std::io::Error::other)?;
    let used: usize = stats.shards.iter().map(|s| s.memory_bytes).sum();
    let evicted: u64 = stats.shards.iter().map(|s| s.evicted).sum();
    // Let a snapshot run see the sessions (every 30 s by default; the log holds them meanwhile).
    let data = dir_bytes(dir.path());

    println!("max_memory:        {} ({budget} bytes)", mib(budget as u64));
    println!("flood:             {clients} clients x {bytes} bytes in {took:.1?}: {ok} answered 200, {refused} 503");
    println!(
        "RSS:               {} before, {} after (+{})",
        mib(before),
        mib(after),
        mib(after.saturating_sub(before))
    );
    println!(
        "engine holds:      {} sessions, ~{} by its estimate, {evicted} evicted",
        stats.sessions,
        mib(used as u64)
    );
    println!("data directory:    {} (log and snapshots)", mib(data));
    println!("logged-in session: blob of {kept} bytes (expected {bytes})");
    running.stop(true).await;
    engine.shutdown().await;
    Ok(())
}
