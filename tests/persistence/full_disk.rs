//! A real full disk (issue 27): a 24 MB tmpfs this test mounts (as root; see
//! `support/tmpfs.rs`), filled by a file until no byte is left. Start-up on a full disk serves
//! what is on it; filling up while serving keeps serving from memory (`"off"`, `"1s"`) or
//! refuses changes (`"always"`); once space returns, snapshots and the log resume (a new
//! snapshot generation, a new log segment), and a crash image (what `kill -9` leaves) loses
//! nothing acknowledged. The `kill -9` of a real process is in tests/process/outage.rs.

use std::path::Path;
use std::time::{Duration, Instant};

use draco_session::error::Unavailable;
use draco_session::{ManualClock, SessionEngine, SessionError, SessionId, config::LogMode};
use serde_json::Value;

use crate::support::tmpfs::Tmpfs;
use crate::support::*;

const MODES: [LogMode; 3] = [LogMode::Off, LogMode::Every(Duration::from_secs(1)), LogMode::Always];
/// How long space may take to be used again: the log asks for a snapshot after pauses that
/// double up to 10 s while the disk stays broken.
const RECOVERY: Duration = Duration::from_secs(40);

fn parse(id: &str) -> SessionId {
    id.parse().unwrap()
}

/// Writes `value` as `scope`/`key` of `e`; answers the engine's verdict, and on success keeps
/// the value in the expectation.
async fn put(engine: &SessionEngine, e: &mut Expected, key: &str, value: Value) -> Result<(), SessionError> {
    engine.insert(&parse(&e.id), "disk", key, &value).await?;
    match e.values.iter_mut().find(|v| (v.0.as_str(), v.1.as_str()) == ("disk", key)) {
        Some(v) => v.2 = value,
        None => e.values.push(("disk".into(), key.into(), value)),
    }
    Ok(())
}

fn refused_for_storage(r: &Result<(), SessionError>) -> bool {
    matches!(r, Err(SessionError::Unavailable(Unavailable::Storage { .. })))
}

/// Each shard's newest snapshot generation (`shard-SSSS-of-NNNN.GGGG….snap`).
fn generations(dir: &Path) -> std::collections::BTreeMap<u64, u64> {
    let mut newest = std::collections::BTreeMap::new();
    for name in snap_files(dir) {
        let mut parts = name.trim_start_matches("shard-").split(['-', '.']);
        let shard = parts.next().and_then(|p| p.parse::<u64>().ok());
        let generation = parts.nth(2).and_then(|p| p.parse::<u64>().ok());
        if let (Some(shard), Some(generation)) = (shard, generation) {
            let g = newest.entry(shard).or_insert(generation);
            *g = (*g).max(generation);
        }
    }
    newest
}

/// Every shard of `before` has a newer generation in `now`.
fn all_newer(before: &std::collections::BTreeMap<u64, u64>, now: &std::collections::BTreeMap<u64, u64>) -> bool {
    !before.is_empty() && before.iter().all(|(shard, g)| now.get(shard).is_some_and(|n| n > g))
}

/// Space is back: polls until a change is taken (`"always"` refuses until a snapshot taken
/// after the disk works is durable) and, with a log, until every shard (each had its log fail)
/// wrote a new snapshot by itself and a new log segment is there; with the log off, snapshots
/// are asked for until one is written. Answers how long it took.
async fn recovers(engine: &SessionEngine, dir: &Path, log: LogMode, e: &mut Expected) -> Duration {
    let (snaps, segments) = (generations(dir), log_files(dir));
    let started = Instant::now();
    let deadline = started + RECOVERY;
    let mut n = 0;
    loop {
        n += 1;
        let taken = put(engine, e, "after", Value::from(n)).await;
        let resumed = match log {
            LogMode::Off => engine.snapshot().await.is_ok() && generations(dir) != snaps,
            _ => taken.is_ok() && all_newer(&snaps, &generations(dir)) && log_files(dir) != segments,
        };
        if resumed && taken.is_ok() {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "{log:?}: not resumed {RECOVERY:?} after space returned: {taken:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Changes of 16 KiB each on fresh sessions while the disk is full: with `"always"` until
/// each shard refused one (the zeros its log wrote ahead take a few first), else `n`, every
/// one taken (enough to outgrow what each shard's log has room for: both logs fail). Answers
/// the changes taken and the shards that refused one.
async fn fill_up(
    engine: &SessionEngine,
    log: LogMode,
    kept: &mut Vec<Expected>,
    n: usize,
) -> (usize, std::collections::BTreeSet<usize>) {
    let (mut acknowledged, mut refused) = (0, std::collections::BTreeSet::new());
    let big = Value::from("x".repeat(16 << 10));
    let tries = if log == LogMode::Always { 400 } else { n };
    for i in 0..tries {
        let id = engine.create().await.unwrap().id;
        let shard = routing::shard_of(&id, 2);
        let mut e = Expected { id: id.to_string(), userid: 0, persistent: false, values: vec![] };
        let written = put(engine, &mut e, "big", big.clone()).await;
        if written.is_ok() {
            acknowledged += 1;
            kept.push(e);
            continue;
        }
        assert!(refused_for_storage(&written), "{log:?}: change {i} while full: {written:?}");
        assert_eq!(log, LogMode::Always, "{log:?}: change {i} refused while full: {written:?}");
        refused.insert(shard);
        if refused.len() == 2 {
            break;
        }
    }
    if log == LogMode::Always {
        assert_eq!(refused.len(), 2, "with \"always\", changes are refused once the disk is full");
        // And as long as it stays full.
        let again = put(engine, &mut kept[0], "while-full", Value::from(2)).await;
        assert!(refused_for_storage(&again), "{again:?}");
    } else {
        assert!(engine.snapshot().await.is_err(), "{log:?}: no snapshot fits on a full disk");
    }
    // Reads are served.
    check(engine, kept).await;
    (acknowledged, refused)
}

/// What a `kill -9` now would leave is started on: every acknowledged change is there.
async fn crash_keeps(engine: &SessionEngine, dir: &Path, log: LogMode, kept: &[Expected]) {
    if log == LogMode::Off {
        // Without a log, what a snapshot holds survives: take one.
        engine.snapshot().await.expect("a snapshot once space is back");
    }
    let image = crash_image(dir);
    let again = start_logging(image.path(), 2, &ManualClock::new(T0), log);
    check(&again, kept).await;
    again.shutdown().await;
}

#[actix_rt::test]
async fn the_engine_starts_on_a_full_disk_and_serves_what_is_there() {
    let Some(fs) = Tmpfs::mount("24m") else { return };
    for (i, log) in MODES.into_iter().enumerate() {
        let dir = fs.path().join(format!("start-{i}"));
        let clock = ManualClock::new(T0);
        let a = start_logging(&dir, 2, &clock, log);
        let mut kept = populate(&a, 12).await;
        a.shutdown().await;

        fs.fill();
        let started = Instant::now();
        let b = SessionEngine::builder({
            let mut c = config(&dir, 2);
            c.storage.log = log;
            c
        })
        .clock(clock.clone())
        .start()
        .unwrap_or_else(|e| panic!("{log:?}: the engine starts on a full disk: {e}"));
        let start_ms = started.elapsed().as_millis();
        check(&b, &kept).await;
        // A log segment a shard opens again under the same name is truncated, which frees the
        // zeros its last run wrote ahead: full again, then changes.
        fs.fill();
        let (acknowledged, refused) = fill_up(&b, log, &mut kept, 40).await;

        fs.unfill();
        let took = recovers(&b, &dir, log, &mut kept[1]).await;
        eprintln!(
            "full disk at start-up, log {log:?}: started in {start_ms} ms; {acknowledged} changes taken, refused on \
             {} shards; resumed {took:?} after space returned",
            refused.len()
        );
        crash_keeps(&b, &dir, log, &kept).await;
        b.shutdown().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[actix_rt::test]
async fn a_disk_filling_up_while_serving_keeps_or_refuses_changes_by_log_mode_and_recovers() {
    let Some(fs) = Tmpfs::mount("24m") else { return };
    for (i, log) in MODES.into_iter().enumerate() {
        let dir = fs.path().join(format!("serve-{i}"));
        let clock = ManualClock::new(T0);
        let a = start_logging(&dir, 2, &clock, log);
        let mut kept = populate(&a, 12).await;
        assert_eq!(a.snapshot().await.unwrap(), 12);

        fs.fill();
        let (acknowledged, refused) = fill_up(&a, log, &mut kept, 400).await;

        fs.unfill();
        let took = recovers(&a, &dir, log, &mut kept[2]).await;
        eprintln!(
            "disk full while serving, log {log:?}: {acknowledged} changes taken while full, refused on {} shards; \
             resumed {took:?} after space returned",
            refused.len()
        );
        // Changes after recovery are durable too.
        for (n, e) in kept.iter_mut().enumerate().take(6) {
            put(&a, e, "recovered", Value::from(n)).await.expect("a change once space is back");
        }
        crash_keeps(&a, &dir, log, &kept).await;
        a.shutdown().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
