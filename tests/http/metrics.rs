//! Metrics recorded through the `metrics` facade (`src/telemetry.rs`), read back from a
//! `DebuggingRecorder` installed as the test thread's local recorder before the engine starts:
//! lifecycle counters (created, logins, logouts, destroyed, revoked, expired), operations and
//! errors by kind, robots refused a session, the per-shard gauges, snapshot and log writes.
//! Every test runs on the memory backend and, where the concept exists, on Redis.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use draco_session::{ManualClock, SessionError};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::support::*;

/// Runs `test` in a fresh actix system with a recorder of its own, installed before the test
/// starts its engine.
fn recorded<F: Future<Output = ()>>(b: Backend, test: impl FnOnce(Backend, Recorded) -> F) {
    let recorder = DebuggingRecorder::new();
    let seen = Recorded(recorder.snapshotter(), RefCell::default());
    metrics::with_local_recorder(&recorder, || actix_rt::System::new().block_on(test(b, seen)));
}

/// Declares each test once per backend, as `both!` does, with its recorder.
macro_rules! recorded {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $name() { super::recorded(super::Backend::Memory, super::$name) })*
        }
        #[cfg(feature = "redis")]
        mod redis {
            $(#[test] fn $name() { super::recorded(super::Backend::Redis, super::$name) })*
        }
    };
}

recorded!(
    lifecycle_counters_move_by_one_per_event,
    operations_and_errors_are_counted_by_kind,
    robots_refused_a_session_are_counted
);

mod memory_only {
    #[test]
    fn expired_sessions_are_counted_by_the_sweep_and_on_access() {
        super::recorded(super::Backend::Memory, super::expired_sessions_are_counted);
    }

    #[test]
    fn live_sessions_and_mailbox_depth_are_gauges_per_shard() {
        super::recorded(super::Backend::Memory, super::gauges_per_shard);
    }

    #[test]
    fn snapshot_and_log_writes_are_timed_and_their_bytes_counted() {
        super::recorded(super::Backend::Memory, super::snapshot_and_log_writes);
    }
}

/// What the recorder saw. Its snapshots consume (counters restart at 0, histograms empty),
/// so counters and histogram sample counts are added up here across looks.
struct Recorded(Snapshotter, RefCell<Seen>);

/// Each metric's name and labels, and its value so far.
type Seen = HashMap<(String, Vec<(String, String)>), f64>;

impl Recorded {
    /// Each metric matching `name` and `labels`, with its total so far (counters, histogram
    /// sample counts) or its last value (gauges).
    fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let mut seen = self.1.borrow_mut();
        for (k, _, _, v) in self.0.snapshot().into_vec() {
            let key = k.key();
            let id =
                (key.name().to_owned(), key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect());
            let total = seen.entry(id).or_insert(0.0);
            match v {
                DebugValue::Counter(n) => *total += n as f64,
                DebugValue::Histogram(h) => *total += h.len() as f64,
                DebugValue::Gauge(g) => *total = g.into_inner(),
            }
        }
        seen.iter()
            .filter(|((n, ls), _)| {
                n == name && labels.iter().all(|(lk, lv)| ls.iter().any(|(k, v)| k == lk && v == lv))
            })
            .map(|(_, v)| *v)
            .collect()
    }

    /// The counter's value, summed over every label set matching `labels`; 0 when absent.
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "counts, exact as f64 here")]
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.values(name, labels).into_iter().sum::<f64>() as u64
    }

    fn op(&self, op: &str) -> u64 {
        self.counter("draco_session_operations_total", &[("op", op)])
    }

    fn error(&self, op: &str, error: &str) -> u64 {
        self.counter("draco_session_errors_total", &[("op", op), ("error", error)])
    }

    fn gauges(&self, name: &str) -> Vec<f64> {
        self.values(name, &[])
    }

    /// Samples recorded in the histogram so far.
    fn samples(&self, name: &str) -> u64 {
        self.counter(name, &[])
    }
}

const CREATED: &str = "draco_session_sessions_created_total";
const DESTROYED: &str = "draco_session_sessions_destroyed_total";
const REVOKED: &str = "draco_session_sessions_revoked_total";
const EXPIRED: &str = "draco_session_sessions_expired_total";
const LOGINS: &str = "draco_session_logins_total";
const LOGOUTS: &str = "draco_session_logouts_total";
const ROBOTS: &str = "draco_session_robot_requests_total";

async fn lifecycle_counters_move_by_one_per_event(b: Backend, m: Recorded) {
    let f = fixture(b).await;
    let e = &f.engine;
    assert_eq!(m.counter(CREATED, &[]), 0);
    let ids = [e.create().await.unwrap().id, e.create().await.unwrap().id, e.create().await.unwrap().id];
    assert_eq!(m.counter(CREATED, &[]), 3);
    assert_eq!(m.op("create"), 3);

    e.login(&ids[0], 7).await.unwrap();
    let alice2 = e.login(&ids[1], 7).await.unwrap().id;
    assert_eq!((m.counter(LOGINS, &[]), m.op("login")), (2, 2));

    let anonymous = e.logout(&alice2).await.unwrap().id;
    assert_eq!((m.counter(LOGOUTS, &[]), m.op("logout")), (1, 1));

    assert!(e.destroy(&anonymous).await.unwrap());
    assert!(!e.destroy(&anonymous).await.unwrap(), "gone already: not counted again");
    assert_eq!((m.counter(DESTROYED, &[]), m.op("destroy")), (1, 2));

    // Revoked: one by its handle, then the rest of the user's by logout_user.
    let bob = [e.login(&ids[2], 9).await.unwrap().id, e.login(&e.create().await.unwrap().id, 9).await.unwrap().id];
    assert!(e.revoke(9, &e.handle_of(&bob[0])).await.unwrap());
    assert!(!e.revoke(9, &e.handle_of(&bob[0])).await.unwrap());
    assert_eq!(m.counter(REVOKED, &[]), 1);
    assert_eq!(e.logout_user(7).await.unwrap(), 1);
    assert_eq!(e.logout_user(9).await.unwrap(), 1);
    assert_eq!(m.counter(REVOKED, &[]), 3);
    assert_eq!(m.counter(CREATED, &[]), 4);
    assert_eq!(m.counter(LOGINS, &[]), 4);
    assert_eq!(m.counter(DESTROYED, &[]), 1, "revoked sessions are not counted as destroyed");
}

async fn operations_and_errors_are_counted_by_kind(b: Backend, m: Recorded) {
    let f = fixture(b).await;
    let e = &f.engine;
    let id = e.create().await.unwrap().id;
    e.insert(&id, "a", "k", &1).await.unwrap();
    assert_eq!(e.get::<i32>(&id, "a", "k").await.unwrap(), Some(1));
    e.increment(&id, "a", "n", 2).await.unwrap();
    assert_eq!((m.op("set"), m.op("get"), m.op("increment")), (1, 1, 1));
    assert_eq!(m.counter("draco_session_errors_total", &[]), 0);

    assert_eq!(e.set_persistent(&id, true).await, Err(SessionError::NotLoggedIn));
    assert_eq!(m.error("set_persistent", "not_logged_in"), 1);
    assert!(e.destroy(&id).await.unwrap());
    for _ in 0..2 {
        assert_eq!(e.get::<i32>(&id, "a", "k").await, Err(SessionError::SessionGone));
    }
    assert_eq!(m.error("get", "session_gone"), 2);
    assert_eq!(m.op("get"), 3, "failed operations are operations too");
    assert_eq!(m.counter("draco_session_errors_total", &[]), 3);
    // Names are checked before the backend is asked: no operation, no error.
    let live = e.create().await.unwrap().id;
    assert!(matches!(e.get::<i32>(&live, "", "k").await, Err(SessionError::InvalidName { .. })));
    assert_eq!(m.op("get"), 3);
    assert_eq!(m.counter("draco_session_errors_total", &[]), 3);
    // The latency histogram samples the first operation of each thread.
    assert!(m.samples("draco_session_operation_duration_seconds") >= 1);
}

async fn robots_refused_a_session_are_counted(b: Backend, m: Recorded) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let robot = |req: actix_web::test::TestRequest| req.insert_header(("user-agent", "curl/8.5.0"));
    for _ in 0..3 {
        let r = call(&app, robot(post("/api/incr/x"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["available"], false);
    }
    assert_eq!(m.counter(ROBOTS, &[]), 3);
    assert_eq!(m.counter(CREATED, &[]), 0);
    // A person gets a session; nothing more is counted as a robot.
    let r = call(&app, post("/api/incr/x")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((m.counter(ROBOTS, &[]), m.counter(CREATED, &[])), (3, 1));
    // A robot keeps a session it has: nothing refused.
    let cookie = r.set_cookies[0].split(';').next().unwrap().to_owned();
    let r = call(&app, robot(post("/api/incr/x")).insert_header(("cookie", cookie))).await;
    assert_eq!(r.json()["available"], true, "{}", r.body);
    assert_eq!(m.counter(ROBOTS, &[]), 3);
}

async fn expired_sessions_are_counted(b: Backend, m: Recorded) {
    let clock = ManualClock::new(1_000_000);
    let f = fixture_with(b, |_| {}, Some(clock.clone())).await;
    let e = &f.engine;
    let ids: Vec<_> = futures_util::future::join_all((0..4).map(|_| e.create())).await;
    let ids: Vec<_> = ids.into_iter().map(|r| r.unwrap().id).collect();
    clock.advance(Duration::from_secs(3 * 3600));
    // One found expired on access, the other three by the sweep.
    assert_eq!(e.get::<i32>(&ids[0], "a", "k").await, Err(SessionError::SessionGone));
    assert_eq!(m.counter(EXPIRED, &[]), 1);
    assert_eq!(e.sweep().await.unwrap(), 3);
    assert_eq!(m.counter(EXPIRED, &[]), 4);
    assert_eq!(e.sweep().await.unwrap(), 0);
    assert_eq!(m.counter(EXPIRED, &[]), 4);
    assert_eq!(m.counter(DESTROYED, &[]) + m.counter(REVOKED, &[]), 0);
}

async fn gauges_per_shard(b: Backend, m: Recorded) {
    let f = fixture(b).await;
    let e = &f.engine;
    for _ in 0..5 {
        e.create().await.unwrap();
    }
    let stats = e.stats().await.unwrap();
    let live = m.gauges("draco_session_sessions_live");
    assert_eq!(live.len(), e.shards(), "one per shard");
    assert_eq!(live.iter().sum::<f64>(), 5.0);
    let mut by_shard: Vec<f64> = stats.shards.iter().map(|s| s.sessions as f64).collect();
    let mut seen = live.clone();
    by_shard.sort_by(f64::total_cmp);
    seen.sort_by(f64::total_cmp);
    assert_eq!(seen, by_shard);
    let depth = m.gauges("draco_session_mailbox_depth");
    assert_eq!(depth.len(), e.shards());
    assert!(depth.iter().all(|d| *d == 0.0), "nothing queued once stats answered: {depth:?}");
}

async fn snapshot_and_log_writes(b: Backend, m: Recorded) {
    let data = tempfile::tempdir().unwrap();
    let f = fixture_with(
        b,
        |c| {
            c.storage.dir = data.path().to_owned();
            c.storage.persist = true;
            c.storage.log = draco_session::config::LogMode::Always;
        },
        None,
    )
    .await;
    let e = &f.engine;
    let id = e.create().await.unwrap().id;
    e.insert(&id, "a", "k", &"some value").await.unwrap();
    assert!(m.counter("draco_session_log_bytes_total", &[]) > 0);
    assert!(m.samples("draco_session_log_fsync_duration_seconds") >= 1);
    assert_eq!(m.counter("draco_session_snapshot_bytes_total", &[]), 0);
    assert_eq!(e.snapshot().await.unwrap(), 1);
    assert!(m.counter("draco_session_snapshot_bytes_total", &[]) > 0);
    assert!(m.samples("draco_session_snapshot_duration_seconds") >= 1);
    assert_eq!(m.counter("draco_session_snapshot_failures_total", &[]), 0);
    // A snapshot directory gone: the write fails, and is counted.
    e.insert(&id, "a", "k", &"changed").await.unwrap();
    std::fs::remove_dir_all(data.path().join("snapshots")).unwrap();
    assert!(e.snapshot().await.is_err());
    assert_eq!(m.counter("draco_session_snapshot_failures_total", &[]), 1);
    e.shutdown().await;
}
