//! The log's schedules and failures, through a file system that records every append and
//! fsync and fails them on demand. (A test that drops the page cache cannot run here, so the
//! fsync schedule is checked from the calls the engine makes.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::io::{Disk, LogIo, SegmentFile};
use crate::config::{Config, LogMode};
use crate::error::{SessionError, Unavailable};
use crate::{SessionEngine, SessionId};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// An append of this many bytes to the file, which then held `total` appended bytes.
    Append { path: PathBuf, total: u64 },
    /// An fsync of the file, covering `total` appended bytes.
    Sync { path: PathBuf, total: u64 },
}

#[derive(Default)]
struct Faults {
    fail_appends: AtomicBool,
    fail_syncs: AtomicBool,
    calls: Mutex<Vec<(Instant, Call)>>,
}

struct Faulty(Arc<Faults>);

struct FaultySegment {
    path: PathBuf,
    inner: Box<dyn SegmentFile>,
    faults: Arc<Faults>,
    appended: Mutex<u64>,
}

impl LogIo for Faulty {
    fn create(&self, path: &Path, header: &[u8], ahead: u64) -> std::io::Result<Box<dyn SegmentFile>> {
        let inner = Disk.create(path, header, ahead)?;
        Ok(Box::new(FaultySegment { path: path.into(), inner, faults: self.0.clone(), appended: Mutex::new(0) }))
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        Disk.sync_dir(dir)
    }
}

impl SegmentFile for FaultySegment {
    fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        if self.faults.fail_appends.load(Ordering::SeqCst) {
            // A disk that fills up mid-write: half the record lands, then the error.
            self.inner.append(&bytes[..bytes.len() / 2])?;
            return Err(std::io::Error::other("injected: no space left on device"));
        }
        self.inner.append(bytes)?;
        let mut total = self.appended.lock().unwrap();
        *total += bytes.len() as u64;
        self.faults
            .calls
            .lock()
            .unwrap()
            .push((Instant::now(), Call::Append { path: self.path.clone(), total: *total }));
        Ok(())
    }

    fn sync(&self) -> std::io::Result<()> {
        let total = *self.appended.lock().unwrap();
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected: fsync failed (EIO)"));
        }
        self.inner.sync()?;
        self.faults.calls.lock().unwrap().push((Instant::now(), Call::Sync { path: self.path.clone(), total }));
        Ok(())
    }
}

fn engine(dir: &Path, log: LogMode, faults: &Arc<Faults>) -> SessionEngine {
    builder(dir, log, faults, 2).start().unwrap()
}

/// As [`engine`], one shard, hosted on the calling thread: its operations run as they are
/// first polled.
fn engine_here(dir: &Path, log: LogMode, faults: &Arc<Faults>) -> SessionEngine {
    builder(dir, log, faults, 1).placement(crate::Placement::CurrentThread).start().unwrap()
}

/// An engine of `shards` shards logging to `dir` through `faults`, no snapshot timer.
fn builder(dir: &Path, log: LogMode, faults: &Arc<Faults>, shards: usize) -> crate::engine::EngineBuilder {
    let mut c = Config::default();
    c.session.secret = Some("log fault test secret, at least 32 bytes".into());
    c.session.shards = shards;
    c.storage.dir = dir.into();
    c.storage.log = log;
    c.storage.snapshot_interval = Duration::from_secs(3600);
    SessionEngine::builder(c).log_io(Arc::new(Faulty(faults.clone())))
}

fn is_storage_error<T: std::fmt::Debug>(r: &crate::Result<T>) -> bool {
    matches!(r, Err(SessionError::Unavailable(Unavailable::Storage { .. })))
}

/// Waits (up to 10 s) until `ok` answers true.
async fn eventually(mut ok: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..100 {
        if ok().await {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `"1s"` (here 200 ms): no fsync per change, and every append is covered by an fsync of its
/// file that the schedule makes by itself (no later write, no waiter asks for it). No verdict by
/// the clock's upper side: a busy machine delays fsyncs, so the test waits for them (up to
/// 30 s) and prints the lag. What no delay can break is asserted: two fsyncs of one file are
/// never closer than the interval (the next tick is set an interval after a round ends).
#[actix_rt::test]
async fn a_scheduled_log_fsyncs_every_write_by_itself_and_never_sooner_than_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let interval = Duration::from_millis(200);
    let e = engine(dir.path(), LogMode::Every(interval), &faults);
    let id = e.create().await.unwrap().id;
    for _ in 0..20 {
        for _ in 0..25 {
            e.increment(&id, "c", "n", 1).await.unwrap();
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let covered = |calls: &[(Instant, Call)], path: &PathBuf, total: u64| {
        calls
            .iter()
            .find(|(_, s)| matches!(s, Call::Sync { path: p, total: t } if p == path && *t >= total))
            .map(|c| c.0)
    };
    let all_covered = || {
        let calls = faults.calls.lock().unwrap().clone();
        calls.iter().all(|(_, c)| match c {
            Call::Append { path, total } => covered(&calls, path, *total).is_some(),
            Call::Sync { .. } => true,
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !all_covered() {
        assert!(Instant::now() < deadline, "appends still not fsynced 30 s after the last write");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = faults.calls.lock().unwrap().clone();
    let appends: Vec<_> = calls.iter().filter(|(_, c)| matches!(c, Call::Append { .. })).collect();
    let syncs: Vec<_> = calls.iter().filter(|(_, c)| matches!(c, Call::Sync { .. })).collect();
    assert_eq!(appends.len(), 500);
    assert!(syncs.len() < 50, "{} fsyncs for 500 appends: not one per write", syncs.len());
    let mut worst = Duration::ZERO;
    for (at, call) in &appends {
        let Call::Append { path, total } = call else { unreachable!() };
        let synced_at = covered(&calls, path, *total).expect("covered, waited for above");
        worst = worst.max(synced_at.duration_since(*at));
    }
    for pair in syncs.windows(2) {
        let ((first, Call::Sync { path: a, .. }), (second, Call::Sync { path: b, .. })) = (pair[0], pair[1]) else {
            unreachable!()
        };
        if a == b {
            let gap = second.duration_since(*first);
            assert!(gap >= interval, "two scheduled fsyncs of {} only {gap:?} apart", a.display());
        }
    }
    eprintln!("{} fsyncs for 500 appends; an append waited at most {worst:?} for its fsync", syncs.len());
    e.shutdown().await;
}

/// `"always"`: an acknowledgement waits for an fsync covering its record, and concurrent
/// changes share fsyncs (group commit).
#[actix_rt::test]
async fn always_acknowledges_after_the_fsync_and_groups_concurrent_changes() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let e = engine(dir.path(), LogMode::Always, &faults);
    let mut ids: Vec<SessionId> = Vec::new();
    for _ in 0..16 {
        ids.push(e.create().await.unwrap().id);
    }
    for round in 0..10 {
        let writes = ids.iter().map(|id| e.increment(id, "c", "n", 1));
        for result in futures_util::future::join_all(writes).await {
            assert_eq!(result, Ok(round + 1));
        }
        // Each answered change is covered by an fsync that already happened.
        let calls = faults.calls.lock().unwrap().clone();
        for (_, call) in calls.iter().filter(|(_, c)| matches!(c, Call::Append { .. })) {
            let Call::Append { path, total } = call else { unreachable!() };
            assert!(
                calls.iter().any(|(_, s)| matches!(s, Call::Sync { path: p, total: t } if p == path && t >= total)),
                "an acknowledged change was not fsynced yet"
            );
        }
    }
    let stats = e.stats().await.unwrap();
    let records: u64 = stats.shards.iter().map(|s| s.log_records).sum();
    assert_eq!(records, 160);
    assert!(stats.log_fsyncs < records / 2, "{} fsyncs for {records} records: no group commit", stats.log_fsyncs);
    e.shutdown().await;
}

/// `"always"`: a failed fsync answers the change with a storage error (503 over HTTP), later
/// changes are refused without being made, and once the disk works again the shard's next
/// snapshot (asked for by the log within a second) lets the log take changes again.
#[actix_rt::test]
async fn always_never_acknowledges_a_change_whose_fsync_failed_and_resumes_with_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let e = engine(dir.path(), LogMode::Always, &faults);
    let id = e.create().await.unwrap().id;
    e.insert(&id, "c", "v", &1).await.unwrap();
    faults.fail_syncs.store(true, Ordering::SeqCst);
    assert!(is_storage_error(&e.insert(&id, "c", "v", &2).await), "the failed fsync is the change's answer");
    let refused = e.insert(&id, "c", "v", &3).await;
    assert!(is_storage_error(&refused), "{refused:?}");
    assert_eq!(e.get::<i32>(&id, "c", "v").await, Ok(Some(2)), "a refused change is not made");
    assert!(is_storage_error(&e.destroy(&id).await), "revocations too: never acknowledged unless durable");
    faults.fail_syncs.store(false, Ordering::SeqCst);
    assert!(eventually(async || e.insert(&id, "c", "v", &4).await.is_ok()).await, "the log resumes");
    let image = crash_image(dir.path());
    e.shutdown().await;
    let b = engine(image.path(), LogMode::Always, &Arc::new(Faults::default()));
    assert_eq!(b.get::<i32>(&id, "c", "v").await, Ok(Some(4)));
    b.shutdown().await;
}

/// An operation that panics leaves nothing half-recorded: a panicking update's step runs
/// before anything is described, so the log gets no record of it, and the log goes on.
#[actix_rt::test]
async fn a_panicking_update_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let e = engine(dir.path(), LogMode::Every(Duration::from_secs(1)), &faults);
    let id = e.create().await.unwrap().id;
    e.insert(&id, "c", "v", &1).await.unwrap();
    let shard = id.shard(2);
    let before = e.stats().await.unwrap().shards[shard].log_records;
    let panicked = e.update(&id, "c", "v", |_: Option<i32>| -> i32 { panic!("boom") }).await;
    assert!(matches!(panicked, Err(SessionError::Panicked(_))), "{panicked:?}");
    assert_eq!(e.stats().await.unwrap().shards[shard].log_records, before, "nothing recorded");
    e.insert(&id, "c", "w", &2).await.unwrap();
    assert_eq!(e.stats().await.unwrap().shards[shard].log_records, before + 1);
    let image = crash_image(dir.path());
    e.shutdown().await;
    let b = engine(image.path(), LogMode::Every(Duration::from_secs(1)), &Arc::new(Faults::default()));
    assert_eq!(b.get::<i32>(&id, "c", "v").await, Ok(Some(1)));
    assert_eq!(b.get::<i32>(&id, "c", "w").await, Ok(Some(2)));
    b.shutdown().await;
}

/// `"1s"`: a failed write does not stop the service (changes are kept in memory, as when a
/// snapshot fails); the next snapshot resumes the log, and a crash after that loses nothing.
#[actix_rt::test]
async fn a_failed_write_in_scheduled_mode_keeps_serving_and_the_next_snapshot_resumes_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let e = engine(dir.path(), LogMode::Every(Duration::from_secs(1)), &faults);
    let id = e.create().await.unwrap().id;
    e.insert(&id, "c", "v", &1).await.unwrap();
    faults.fail_appends.store(true, Ordering::SeqCst);
    e.insert(&id, "c", "v", &2).await.unwrap();
    assert_eq!(e.get::<i32>(&id, "c", "v").await, Ok(Some(2)));
    faults.fail_appends.store(false, Ordering::SeqCst);
    let shard = id.shard(2);
    let snapshots = |dir: &Path| {
        let names = std::fs::read_dir(dir.join("snapshots")).unwrap();
        names.filter(|n| n.as_ref().unwrap().file_name().to_string_lossy().contains(".snap")).count()
    };
    assert!(eventually(async || snapshots(dir.path()) > 0).await, "the failure asks for a snapshot");
    let before = e.stats().await.unwrap().shards[shard].log_records;
    e.insert(&id, "c", "v", &3).await.unwrap();
    assert_eq!(e.stats().await.unwrap().shards[shard].log_records, before + 1, "logged again");
    let image = crash_image(dir.path());
    e.shutdown().await;
    let b = engine(image.path(), LogMode::Every(Duration::from_secs(1)), &Arc::new(Faults::default()));
    assert_eq!(b.get::<i32>(&id, "c", "v").await, Ok(Some(3)));
    b.shutdown().await;
}

/// Failed log writes and fsyncs are counted (`draco_session_log_failures_total`), once per
/// failed I/O: the changes refused afterwards are not failures of the disk. Every change
/// refused is counted in `draco_session_refused_total{cause="disk"}`, whether its own write or
/// fsync failed or the log refused it before it was made.
#[test]
fn failed_writes_and_fsyncs_are_counted_once_each() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let seen = recorder.snapshotter();
    // A snapshot consumes what it reports: add up.
    let totals = std::cell::Cell::new((0, 0));
    let counts = || {
        for (k, _, _, v) in seen.snapshot().into_vec() {
            let DebugValue::Counter(n) = v else { continue };
            let (mut failed, mut refused) = totals.get();
            match k.key().name() {
                "draco_session_log_failures_total" => failed += n,
                "draco_session_refused_total"
                    if k.key().labels().any(|l| (l.key(), l.value()) == ("cause", "disk")) =>
                {
                    refused += n;
                }
                _ => {}
            }
            totals.set((failed, refused));
        }
        totals.get()
    };
    let failures = || counts().0;
    let refused = || counts().1;
    metrics::with_local_recorder(&recorder, || {
        actix_rt::System::new().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let faults = Arc::new(Faults::default());
            let e = engine(dir.path(), LogMode::Always, &faults);
            let id = e.create().await.unwrap().id;
            e.insert(&id, "c", "v", &1).await.unwrap();
            assert_eq!(failures(), 0);
            faults.fail_syncs.store(true, Ordering::SeqCst);
            assert_eq!(refused(), 0);
            assert!(is_storage_error(&e.insert(&id, "c", "v", &2).await));
            assert_eq!(failures(), 1, "the failed fsync");
            assert_eq!(refused(), 1, "the change whose fsync failed");
            assert!(is_storage_error(&e.insert(&id, "c", "v", &3).await));
            assert_eq!(failures(), 1, "a refused change is no failure of the disk");
            assert_eq!(refused(), 2, "a change refused before it is made");
            faults.fail_syncs.store(false, Ordering::SeqCst);
            assert!(eventually(async || e.insert(&id, "c", "v", &4).await.is_ok()).await, "the log resumes");
            assert_eq!(failures(), 1);
            let before = refused();
            faults.fail_appends.store(true, Ordering::SeqCst);
            assert!(is_storage_error(&e.insert(&id, "c", "v", &5).await));
            assert_eq!(failures(), 2, "the failed write");
            assert_eq!(refused(), before + 1, "the change whose write failed");
            faults.fail_appends.store(false, Ordering::SeqCst);
            e.shutdown().await;
        });
    });
}

/// A copy of the data directory taken while the engine runs: what a `kill -9` leaves.
pub(super) fn crash_image(dir: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    let image = tempfile::tempdir().unwrap();
    copy(dir, image.path());
    image
}

/// Under `"1s"`, an operation on a quiet shard writes its own record before it answers, so it
/// answers on its first poll (nothing waits for a batch that no other operation would share);
/// once operations come together the log's probe finds them and they share one `write` per
/// turn; quiet again, it writes through again.
#[actix_rt::test]
async fn a_quiet_shard_writes_through_and_a_busy_one_shares_its_writes() {
    use futures_util::FutureExt as _;
    use futures_util::future::join_all;

    use super::append::{LONE_BATCHES, PROBE_EVERY};
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let e = engine_here(dir.path(), LogMode::Every(Duration::from_secs(1)), &faults);
    let appends = || faults.calls.lock().unwrap().iter().filter(|(_, c)| matches!(c, Call::Append { .. })).count();
    let id = e.create().await.unwrap().id;
    let before = appends();
    for n in 1..=10_usize {
        let answered = e.increment(&id, "c", "n", 1).now_or_never();
        assert_eq!(answered, Some(Ok(i64::try_from(n).unwrap())), "answered on its first poll");
        assert_eq!(appends(), before + n, "its record written before the answer");
    }
    let busy = PROBE_EVERY as usize + 300;
    let mut expected = 10_i64;
    for round in 0..2 {
        let before = appends();
        for result in join_all((0..busy).map(|_| e.increment(&id, "c", "n", 1))).await {
            assert!(result.is_ok(), "{result:?}");
        }
        expected += i64::try_from(busy).unwrap();
        let writes = appends() - before;
        // The first round writes through until the probe, then batches; the second batches.
        let most = if round == 0 { PROBE_EVERY as usize } else { 1 };
        assert!(writes <= most, "round {round}: {writes} writes for {busy} operations");
    }
    for _ in 0..LONE_BATCHES {
        expected += 1;
        assert_eq!(e.increment(&id, "c", "n", 1).await, Ok(expected));
    }
    expected += 1;
    assert_eq!(e.increment(&id, "c", "n", 1).now_or_never(), Some(Ok(expected)), "written through again");
    e.shutdown().await;
}
