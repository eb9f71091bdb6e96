//! # The remember-me demo
//!
//! ```text
//! cargo run --release --example remember_me [-- --bind 127.0.0.1:8080] [--config config.toml]
//! ```
//!
//! Then open <http://127.0.0.1:8080/>: a page with a login form (user name, password and a
//! "remember me" box), a visit counter, the session id, user id and persistence, and a logout
//! button. It works with JavaScript off: plain HTML forms post to `/login` and `/logout` and
//! are sent back to `/` with a 303. Demo users: `alice`/`wonderland` (user id 1) and
//! `bob`/`builder` (user id 2). Log in with "remember me", quit the browser, come back: still
//! logged in. Without it, quitting the browser logs you out.
//!
//! A small JSON API mirrors the page, for tests and load generators:
//!
//! | route | does |
//! |---|---|
//! | `GET /api/session` | counts a visit in scope `stats`; `{"available","session_id","userid","persistent","visits"}` |
//! | `POST /api/login` `{"username","password","remember"}` | login, then `set_persistent(remember)`; 401 on bad credentials |
//! | `POST /api/logout` | logout |
//! | `POST /api/persistent` `{"persistent": bool}` | `set_persistent`; 409 when not logged in |
//! | `POST /api/incr/{name}` | atomic increment in scope `counters`; `{"value": n}` |
//! | `PUT/GET/DELETE /api/ns/{scope}/{key}` | a JSON value in that scope; 200, or 404 when absent; the demo's own scopes `stats` and `counters` are read-only here (403) |
//! | `GET /api/devices`, `DELETE /api/devices/{handle}`, `POST /api/logout-others` | the user's sessions; end one, or all others (these two need a fresh login: 403 `{"error":"reauthenticate"}` otherwise) |
//! | `POST /api/reauth` `{"password"}` | confirms the logged-in user's password (through the login throttle) and makes the session fresh; 401 when wrong |
//! | `GET /api/devices`, `DELETE /api/devices/{handle}`, `POST /api/logout-others` | the user's sessions; end one, or all others |
//! | `POST /api/erase-me` | ends every session of the user, this one too (cookie removed), and the engine keeps no copy of their data; `{"erased": n}`; 401 when not logged in |
//! | `GET /metrics` | the engine's metrics in Prometheus text format (no session is created) |
//!
//! Every error of the API is JSON, `{"error": "..."}` (the library's own errors are plain
//! text: `app::hardening` rewrites them under `/api/`, keeping status and headers). Every
//! response says `X-Content-Type-Options: nosniff`; the page says
//! `Content-Security-Policy: frame-ancestors 'none'` (no other site may frame its forms).
//!
//! Against cross-site request forgery the forms carry the session's CSRF token (a form without
//! it gets a 403), every POST/PUT/DELETE of the API must say `Content-Type: application/json`
//! (else 415), and the session middleware refuses other sites' unsafe requests (403).
//!
//! ## Fresh login for sensitive actions
//!
//! Ending other sessions (one, or all) needs a login less than `session.reauth_after` (10
//! minutes) old, made in this browser session: a remember-me session brought back after the
//! browser restarted is never fresh. The page's devices card then asks for the password (a
//! plain form posting to `/reauth`) instead of showing its buttons; the API answers 403
//! `{"error":"reauthenticate"}`, and `POST /api/reauth` makes the session fresh again.
//! Wrong passwords count in the login throttle below.
//!
//! ## Login throttle (the pattern to copy)
//!
//! Failed logins are counted per account (5 per 15 minutes) and per client address (20 per 15
//! minutes) with `governor` (`throttle.rs`). The failure that spends either budget locks that
//! account or address: every login attempt from then on, **the right password too**, is
//! answered 429 with `Retry-After` (the form too) until one failure has refilled (3 minutes for
//! an account, 45 s for an address), then one more try, not a new burst. Right passwords cost
//! nothing. One throttle serves every worker (`app::configure_with`); several instances each
//! count their own.
//!
//! ## Defaults worth copying
//!
//! `limits.max_sessions_per_user` is 10 by default: the 11th login of a user ends their least
//! recently used session. The "Your devices" card lists this session and the most recently used
//! others, 20 at most (`app::DEVICES_PER_PAGE`), and counts the rest. The audit log writes
//! users' events at info level and anonymous sessions' creation and expiry at debug
//! (`RUST_LOG=audit=debug`), so a flood of new visitors does not flood the log.
//!
//! A robot (a crawler, a script such as curl, or no User-Agent) gets every answer with
//! `"available": false` and never a cookie.
//!
//! ## Configuration
//!
//! `--config PATH`, else the file named by `$DRACO_SESSION_CONFIG`, else the defaults (see
//! `config.toml`). `--bind ADDR` defaults to `127.0.0.1:8080`.
//!
//! `cookie.secure` defaults to `true`, but this demo serves plain `http://`, where browsers
//! refuse or drop `Secure` cookies (some make an exception for `localhost` only). So **when no
//! config file is given, the demo turns `cookie.secure` off** and logs a warning saying so;
//! with a config file the file decides (and a warning reminds you when it says `secure = true`).
//! In production, serve HTTPS (or a TLS proxy) and keep `secure = true`.
//!
//! Without a config file, sessions and the id key live in `./data` (`storage.dir`).
//! With `[storage] backend = "redis"` (build with `--features redis`), sessions live in the
//! Redis server at `storage.redis_url`: run several instances on different `--bind` ports
//! against one server and they share sessions (give them the same `session.secret`).
//!
//! ## Metrics
//!
//! The demo installs a Prometheus recorder (`metrics-exporter-prometheus`) **before** it
//! starts the engine (the engine takes its metric handles from the recorder installed when it
//! starts) and serves it at `GET /metrics`, on the same address as the pages. A scrape first
//! asks the engine for its statistics, which brings the per-shard gauges up to date (and
//! counts one `stats` operation). In production, bind `/metrics` where only Prometheus can
//! reach it (another port, or a proxy rule).
//!
//! Stop with Ctrl-C or SIGTERM: the server drains, then the engine shuts down (writing its
//! final snapshot when persistence is on).

mod app;

use std::net::SocketAddr;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use draco_session::events::{Delivery, EventKind, SessionEvent};
use draco_session::{CONFIG_ENV, Config, SessionEngine, SessionMiddleware};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

struct Args {
    config: Option<String>,
    bind: SocketAddr,
}

const USAGE: &str = "usage: remember_me [--config PATH] [--bind ADDR]   (ADDR defaults to 127.0.0.1:8080)";

fn fail(message: &str) -> ! {
    eprintln!("remember_me: {message}");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args { config: None, bind: SocketAddr::from(([127, 0, 0, 1], 8080)) };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value =
            || inline.clone().or_else(|| it.next()).unwrap_or_else(|| fail(&format!("{flag} needs a value\n{USAGE}")));
        match flag.as_str() {
            "--config" => args.config = Some(value()),
            "--bind" => {
                let text = value();
                args.bind = text.parse().unwrap_or_else(|e| fail(&format!("--bind {text:?}: {e}")));
            }
            "-h" | "--help" => {
                println!(
                    "{USAGE}\nconfig also from ${CONFIG_ENV}; without one the defaults are used, with cookie.secure off"
                );
                std::process::exit(0);
            }
            other => fail(&format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    args
}

fn load_config(args: &Args) -> Config {
    let path = args.config.clone().or_else(|| std::env::var(CONFIG_ENV).ok().filter(|p| !p.is_empty()));
    match path {
        Some(path) => {
            let config = Config::from_file(&path).unwrap_or_else(|e| fail(&e.to_string()));
            if config.cookie.secure {
                log::warn!(
                    "{path} sets cookie.secure = true but this demo serves plain HTTP: browsers may drop the cookie"
                );
            }
            config
        }
        None => {
            let mut config = Config::default();
            config.cookie.secure = false;
            log::warn!(
                "no config file (--config or ${CONFIG_ENV}): using the defaults with cookie.secure = false, \
                 because this demo serves plain HTTP; never do that in production"
            );
            config
        }
    }
}

/// The level of an event's audit line: info for what users do (login, logout, remember-me,
/// revoked, destroyed, the expiry of a user's session), debug for the sessions anonymous
/// visitors come and go with (`created`, an anonymous `expired`): a flood of new visitors
/// must not flood the log (`RUST_LOG=audit=debug` shows them).
fn audit_level(event: &SessionEvent) -> log::Level {
    match event.kind {
        EventKind::Created => log::Level::Debug,
        EventKind::Expired if event.userid == 0 => log::Level::Debug,
        _ => log::Level::Info,
    }
}

/// The audit log: one line (target `audit`) for each session event, of this instance and,
/// with Redis, of every instance sharing it, at the level [`audit_level`] gives it.
async fn audit_log(engine: &SessionEngine) {
    let mut events =
        engine.subscribe().await.unwrap_or_else(|e| fail(&format!("cannot subscribe to session events: {e}")));
    actix_web::rt::spawn(async move {
        while let Some(delivery) = events.recv().await {
            match delivery {
                Delivery::Event(event) => log::log!(target: "audit", audit_level(&event), "{event}"),
                Delivery::Missed(n) => log::warn!(target: "audit", "{n} session events missed (the log fell behind)"),
            }
        }
    });
}

/// Latency buckets in seconds: engine operations take microseconds, fsyncs and snapshots
/// milliseconds to seconds.
const BUCKETS: [f64; 14] =
    [0.000_002, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Installs the Prometheus recorder; must run before the engine starts.
fn install_metrics() -> PrometheusHandle {
    PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .unwrap_or_else(|e| fail(&format!("cannot install the metrics recorder: {e}")))
}

/// `GET /metrics`: Prometheus text format. Takes no `Session`, so a scrape creates none.
async fn metrics(handle: web::Data<PrometheusHandle>, engine: web::Data<SessionEngine>) -> HttpResponse {
    // Brings the per-shard gauges up to date; a failure shows in the counters themselves.
    let _ = engine.stats().await;
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(handle.render())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = parse_args();
    let config = load_config(&args);
    let max_value_bytes = config.limits.max_value_bytes;
    let prometheus = web::Data::new(install_metrics());

    // `start_async` starts either backend (`storage.backend = "memory"` or `"redis"`).
    let engine = SessionEngine::start_async(config)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot start the session engine: {e}")));
    let middleware = SessionMiddleware::new(engine.clone());
    audit_log(&engine).await;
    let engine_data = web::Data::new(engine.clone());
    // One login throttle for the process, shared by every worker.
    let throttle = web::Data::new(app::throttle::LoginThrottle::default());

    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware.clone())
            // Outermost: sees the session middleware's refusals too.
            .wrap(from_fn(app::hardening))
            .app_data(prometheus.clone())
            .app_data(engine_data.clone())
            .route("/metrics", web::get().to(metrics))
            .configure(|cfg| app::configure_with(cfg, max_value_bytes, throttle.clone()))
    })
    .bind(args.bind)
    .unwrap_or_else(|e| fail(&format!("cannot listen on {}: {e}", args.bind)));
    for addr in server.addrs() {
        log::info!("remember-me demo on http://{addr}/ (Ctrl-C to stop)");
        // On stdout for scripts and tests, which may bind port 0 and need the real port.
        println!("listening on http://{addr}/");
    }
    // Returns after SIGINT/SIGTERM, once in-flight requests are done (or 5 s have passed).
    server.shutdown_timeout(5).run().await?;
    engine.shutdown().await;
    log::info!("session engine stopped");
    Ok(())
}
