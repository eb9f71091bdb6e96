//! Soak load for the remember-me demo: a fixed pool of visitors that keep coming back, so the
//! number of live sessions stays constant (login and logout rotate a session's id, they do not
//! add one) while every kind of operation runs for as long as asked.
//!
//! ```sh
//! scripts/soak.sh            # builds, starts the demo, runs this, samples the demo's RSS, checks
//! cargo run --release --example soak -- --url http://127.0.0.1:8080 --pool 2000 --duration 600
//! ```
//!
//! Options: `--url URL` (default `http://127.0.0.1:8080`; loopback only), `--pool N` (2000
//! visitors, one session each), `--concurrency N` (32 requests in flight), `--duration SECS`
//! (600), `--report SECS` (60: one latency line per interval), `--cookie NAME` (`sid`).
//!
//! Each visitor, in turn: increments a counter, reads its session, writes, reads back and deletes
//! a value in a scope, logs in (alice, remember-me every other time) and out. Every answer is
//! checked (status, user id, persistence, exact counter values, the value read back). Output,
//! one line per interval then a summary, for scripts to parse:
//!
//! ```text
//! interval 1 end_s=60 requests=123456 errors=0 rps=2057 p50_ms=0.412 p99_ms=1.930 max_ms=12.100
//! total requests=... errors=... live_sessions=2000
//! ```
//!
//! Exits non-zero when any request failed or answered wrongly.

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[path = "support/demo_client.rs"]
mod demo_client;

use awc::Client;
use awc::http::StatusCode;
use demo_client::{Browser, check_loopback, percentile};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Options {
    url: String,
    pool: usize,
    concurrency: usize,
    duration: Duration,
    report: Duration,
    cookie: String,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        url: "http://127.0.0.1:8080".into(),
        pool: 2000,
        concurrency: 32,
        duration: Duration::from_secs(600),
        report: Duration::from_secs(60),
        cookie: "sid".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag} {value:?}: {e}"));
        match flag.as_str() {
            "--url" => o.url = value.trim_end_matches('/').to_owned(),
            "--pool" => o.pool = usize::try_from(number()?.max(1)).map_err(|e| e.to_string())?,
            "--concurrency" => o.concurrency = usize::try_from(number()?.max(1)).map_err(|e| e.to_string())?,
            "--duration" => o.duration = Duration::from_secs(number()?),
            "--report" => o.report = Duration::from_secs(number()?.max(1)),
            "--cookie" => o.cookie = value,
            other => return Err(format!("unknown option {other}; see the header of examples/soak.rs")),
        }
    }
    o.concurrency = o.concurrency.min(o.pool);
    check_loopback(&o.url)?;
    Ok(o)
}

/// Latencies and errors of the current interval, and totals.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    total_requests: u64,
    total_errors: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.total_errors += 1;
        if self.first_errors.len() < 10 {
            self.first_errors.push(what);
        }
    }
}

/// One returning visitor: its session cookie and what its session must hold.
#[derive(Default)]
struct Visitor {
    cookie: Option<String>,
    hits: i64,
    visits: i64,
    round: u64,
}

struct Driver {
    client: Client,
    o: Options,
    tally: Rc<RefCell<Tally>>,
}

impl Driver {
    async fn call(
        &self,
        v: &mut Visitor,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), String> {
        let browser = Browser { client: &self.client, url: &self.o.url, cookie_name: &self.o.cookie };
        let (status, json, elapsed) = browser.call(&mut v.cookie, method, path, body).await?;
        let mut t = self.tally.borrow_mut();
        t.latencies_us.push(elapsed);
        t.total_requests += 1;
        Ok((status, json))
    }

    /// One round of a visitor; any surprise is an error.
    async fn round(&self, n: usize, v: &mut Visitor) -> Result<(), String> {
        let expect = |cond: bool, what: &str, got: &Value| {
            if cond { Ok(()) } else { Err(format!("visitor {n}: {what}; got {got}")) }
        };
        let new = v.cookie.is_none();
        let (s, r) = self.call(v, "POST", "/api/incr/hits", None).await?;
        v.hits += 1;
        expect(s == StatusCode::OK && r["value"] == v.hits, "exact counter value", &r)?;
        expect(v.cookie.is_some(), "a session cookie", &r)?;
        if new && v.round > 0 {
            return Err(format!("visitor {n}: lost its session cookie"));
        }
        let (s, r) = self.call(v, "GET", "/api/session", None).await?;
        v.visits += 1;
        expect(s == StatusCode::OK && r["userid"] == 0 && r["visits"] == v.visits, "session read", &r)?;
        let item = json!({"round": v.round, "items": ["book", "pen", n]});
        let (s, r) = self.call(v, "PUT", "/api/ns/cart/items", Some(item.clone())).await?;
        expect(s == StatusCode::OK, "scoped write", &r)?;
        let (s, r) = self.call(v, "GET", "/api/ns/cart/items", None).await?;
        expect(s == StatusCode::OK && r["value"] == item, "scoped value read back", &r)?;
        let (s, r) = self.call(v, "DELETE", "/api/ns/cart/items", None).await?;
        expect(s == StatusCode::OK && r["removed"] == true, "scoped delete", &r)?;
        let remember = v.round.is_multiple_of(2);
        let login = json!({"username": "alice", "password": "wonderland", "remember": remember});
        let (s, r) = self.call(v, "POST", "/api/login", Some(login)).await?;
        expect(s == StatusCode::OK && r["userid"] == 1 && r["persistent"] == remember, "login", &r)?;
        let (s, r) = self.call(v, "POST", "/api/logout", None).await?;
        expect(s == StatusCode::OK && r["userid"] == 0 && r["persistent"] == false, "logout", &r)?;
        expect(r["visits"] == v.visits, "data kept across login and logout", &r)?;
        v.round += 1;
        Ok(())
    }
}

async fn drive(o: Options) -> (Tally, usize) {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + o.duration;
    let connector = awc::Connector::new().limit(o.concurrency);
    let client = Client::builder().timeout(Duration::from_secs(10)).connector(connector).finish();
    let driver = Rc::new(Driver { client, o: o.clone(), tally: tally.clone() });

    // Reports one line per interval while the workers run; the last interval ends at the
    // deadline.
    let reporter = {
        let (tally, o) = (tally.clone(), o.clone());
        async move {
            let mut interval = 1u32;
            let mut begin = started;
            while begin < deadline {
                let end = (started + o.report * interval).min(deadline);
                actix_rt::time::sleep_until(end.into()).await;
                let (mut lat, errors) = {
                    let mut t = tally.borrow_mut();
                    (std::mem::take(&mut t.latencies_us), std::mem::take(&mut t.errors))
                };
                lat.sort_unstable();
                println!(
                    "interval {interval} end_s={} requests={} errors={errors} rps={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
                    (end - started).as_secs(),
                    lat.len(),
                    lat.len() as f64 / (end - begin).as_secs_f64(),
                    percentile(&lat, 50.0),
                    percentile(&lat, 99.0),
                    percentile(&lat, 100.0)
                );
                begin = end;
                interval += 1;
            }
        }
    };

    // Worker w owns visitors w, w + C, w + 2C, ...: each visitor is driven by one worker only.
    let workers = (0..o.concurrency).map(|w| {
        let (driver, tally, o) = (driver.clone(), tally.clone(), o.clone());
        async move {
            let mut visitors: Vec<(usize, Visitor)> =
                (w..o.pool).step_by(o.concurrency).map(|n| (n, Visitor::default())).collect();
            let mut live = 0;
            'run: loop {
                for (n, v) in &mut visitors {
                    if Instant::now() >= deadline {
                        break 'run;
                    }
                    if let Err(e) = driver.round(*n, v).await {
                        tally.borrow_mut().error(e);
                        // Start this visitor over with a fresh session.
                        *v = Visitor::default();
                    }
                }
            }
            for (_, v) in &visitors {
                live += usize::from(v.cookie.is_some());
            }
            live
        }
    });
    let (lives, ()) = futures_util::future::join(futures_util::future::join_all(workers), reporter).await;
    let t = std::mem::take(&mut *tally.borrow_mut());
    (t, lives.into_iter().sum())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "soak: {} returning visitors, {} in flight, {} s, report every {} s, against {}",
        o.pool,
        o.concurrency,
        o.duration.as_secs(),
        o.report.as_secs(),
        o.url
    );
    let (t, live) = actix_rt::System::new().block_on(drive(o));
    println!("total requests={} errors={} live_sessions={live}", t.total_requests, t.total_errors);
    for e in &t.first_errors {
        println!("  {e}");
    }
    if t.total_errors > 0 || t.total_requests == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
