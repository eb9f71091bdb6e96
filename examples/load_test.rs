//! Load test for the remember-me demo's JSON API: N concurrent visitors, each logging in
//! (some with remember-me), incrementing a counter, reading the session and logging out.
//!
//! ```sh
//! # Every visitor logs in as alice: lift the per-user cap (default 10), or logins end each other.
//! printf '[cookie]\nsecure = false\n[limits]\nmax_sessions_per_user = 0\n' > /tmp/load.toml
//! cargo run --release --example remember_me -- --bind 127.0.0.1:8080 --config /tmp/load.toml &
//! cargo run --release --example load_test -- --sessions 10000 --concurrency 64
//! ```
//!
//! Options (all optional):
//! `--url URL` (default `http://127.0.0.1:8080`; loopback only), `--sessions N` (10000),
//! `--concurrency N` (64 visitors in flight), `--increments N` (5 per visitor),
//! `--remember PERCENT` (30), `--duration SECS` (120: stop starting visitors after this),
//! `--cookie NAME` (`sid`), `--no-progress`.
//!
//! Every answer is checked (status, user id, persistence, exact counter values); the run exits
//! non-zero when any request failed or answered wrongly.

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[path = "support/demo_client.rs"]
mod demo_client;

use awc::Client;
use awc::http::StatusCode;
use demo_client::{Browser, check_loopback, percentile};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Options {
    url: String,
    sessions: usize,
    concurrency: usize,
    increments: usize,
    remember_percent: usize,
    duration: Duration,
    cookie: String,
    progress: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        url: "http://127.0.0.1:8080".into(),
        sessions: 10_000,
        concurrency: 64,
        increments: 5,
        remember_percent: 30,
        duration: Duration::from_secs(120),
        cookie: "sid".into(),
        progress: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--no-progress" {
            o.progress = false;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag} {value:?}: {e}"));
        match flag.as_str() {
            "--url" => o.url = value.trim_end_matches('/').to_owned(),
            "--sessions" => o.sessions = number()?,
            "--concurrency" => o.concurrency = number()?.max(1),
            "--increments" => o.increments = number()?,
            "--remember" => o.remember_percent = number()?.min(100),
            "--duration" => o.duration = Duration::from_secs(number()? as u64),
            "--cookie" => o.cookie = value,
            other => return Err(format!("unknown option {other}; see the header of examples/load_test.rs")),
        }
    }
    check_loopback(&o.url)?;
    Ok(o)
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    requests: u64,
    errors: u64,
    first_errors: Vec<String>,
    visitors_done: u64,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < 10 {
            self.first_errors.push(what);
        }
    }
}

struct Visitor {
    client: Client,
    url: String,
    cookie_name: String,
    cookie: Option<String>,
    tally: Rc<RefCell<Tally>>,
}

impl Visitor {
    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Result<(StatusCode, Value), String> {
        let browser = Browser { client: &self.client, url: &self.url, cookie_name: &self.cookie_name };
        let (status, json, elapsed) = browser.call(&mut self.cookie, method, path, body).await?;
        let mut t = self.tally.borrow_mut();
        t.latencies_us.push(elapsed);
        t.requests += 1;
        Ok((status, json))
    }

    /// One visitor's whole story; any surprise is an error.
    async fn run(&mut self, n: usize, o: &Options) -> Result<(), String> {
        let remember = n % 100 < o.remember_percent;
        let expect = |cond: bool, what: &str, got: &Value| {
            if cond { Ok(()) } else { Err(format!("visitor {n}: {what}; got {got}")) }
        };
        let (status, v) = self.call("GET", "/api/session", None).await?;
        expect(status == StatusCode::OK && v["available"] == true, "first visit available", &v)?;
        let login = json!({"username": "alice", "password": "wonderland", "remember": remember});
        let (status, v) = self.call("POST", "/api/login", Some(login)).await?;
        expect(status == StatusCode::OK && v["userid"] == 1, "login as alice", &v)?;
        expect(v["persistent"] == remember, "persistence after login", &v)?;
        expect(self.cookie.is_some(), "a session cookie after login", &v)?;
        for i in 1..=o.increments {
            let (status, v) = self.call("POST", "/api/incr/hits", None).await?;
            expect(status == StatusCode::OK && v["value"] == i as u64, "exact counter value", &v)?;
        }
        let (status, v) = self.call("GET", "/api/session", None).await?;
        expect(status == StatusCode::OK && v["userid"] == 1 && v["visits"] == 2, "session after login", &v)?;
        if n.is_multiple_of(2) {
            let (status, v) = self.call("POST", "/api/logout", None).await?;
            expect(status == StatusCode::OK && v["userid"] == 0 && v["persistent"] == false, "logout", &v)?;
        }
        Ok(())
    }
}

async fn drive(o: Options) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let next = Rc::new(RefCell::new(0usize));
    let deadline = Instant::now() + o.duration;
    let bar = if o.progress { ProgressBar::new(o.sessions as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} visitors {per_sec} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let connector = awc::Connector::new().limit(o.concurrency);
    let client = Client::builder().timeout(Duration::from_secs(10)).connector(connector).finish();
    let workers = (0..o.concurrency).map(|_| {
        let (tally, next, bar, o) = (tally.clone(), next.clone(), bar.clone(), o.clone());
        let client = client.clone();
        async move {
            loop {
                let n = {
                    let mut next = next.borrow_mut();
                    if *next >= o.sessions || Instant::now() >= deadline {
                        break;
                    }
                    *next += 1;
                    *next - 1
                };
                let mut visitor = Visitor {
                    client: client.clone(),
                    url: o.url.clone(),
                    cookie_name: o.cookie.clone(),
                    cookie: None,
                    tally: tally.clone(),
                };
                if let Err(e) = visitor.run(n, &o).await {
                    tally.borrow_mut().error(e);
                    bar.set_message(format!("{} errors", tally.borrow().errors));
                }
                tally.borrow_mut().visitors_done += 1;
                bar.inc(1);
            }
        }
    });
    futures_util::future::join_all(workers).await;
    bar.finish();
    Rc::try_unwrap(tally).map(RefCell::into_inner).unwrap_or_default()
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load_test: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "load test: {} visitors, {} concurrent, {} increments each, {}% remember-me, against {}",
        o.sessions, o.concurrency, o.increments, o.remember_percent, o.url
    );
    let start = Instant::now();
    let mut t = actix_rt::System::new().block_on(drive(o.clone()));
    let elapsed = start.elapsed().as_secs_f64();
    t.latencies_us.sort_unstable();
    let l = &t.latencies_us;
    println!("visitors: {} of {} in {elapsed:.2} s", t.visitors_done, o.sessions);
    println!("requests: {} ({:.0} req/s)", t.requests, t.requests as f64 / elapsed);
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        percentile(l, 50.0),
        percentile(l, 90.0),
        percentile(l, 99.0),
        percentile(l, 100.0)
    );
    println!("errors: {}", t.errors);
    for e in &t.first_errors {
        println!("  {e}");
    }
    if t.errors > 0 || t.visitors_done == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
