//! The write-ahead log (`storage.log`), from outside the engine: crash images (the data
//! directory copied while the engine runs, which is what a `kill -9` leaves), replay over
//! snapshots, revocations that stay revoked, a log cut at every byte offset of its last
//! records, damage in the middle, bounded disk use. The real-process crash loop is in
//! tests/process/crash_loop.rs; fsync schedules and disk faults are unit tests in src/wal/tests.rs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use draco_session::{ManualClock, SessionEngine, SessionError, SessionId, config::LogMode};
use serde_json::Value;

use crate::support::*;

const EVERY: LogMode = LogMode::Every(Duration::from_secs(1));

fn parse(id: &str) -> SessionId {
    id.parse().unwrap()
}

/// Sets `scope`/`key` of `e` in the engine and in the expectation.
async fn put(engine: &SessionEngine, e: &mut Expected, scope: &str, key: &str, value: Value) {
    engine.insert(&parse(&e.id), scope, key, &value).await.unwrap();
    match e.values.iter_mut().find(|v| (v.0.as_str(), v.1.as_str()) == (scope, key)) {
        Some(v) => v.2 = value,
        None => e.values.push((scope.into(), key.into(), value)),
    }
}

#[actix_rt::test]
async fn a_crash_loses_no_acknowledged_change_and_revives_no_revoked_id() {
    for log in [EVERY, LogMode::Always] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let a = start_logging(dir.path(), 2, &clock, log);
        // Half the history in a snapshot, half only in the log.
        let mut kept = populate(&a, 12).await;
        assert_eq!(a.snapshot().await.unwrap(), 12);
        kept.extend(populate(&a, 12).await);
        let mut revoked: Vec<SessionId> = Vec::new();

        // Every kind of change, on sessions from both halves.
        for (i, e) in kept.iter_mut().enumerate().step_by(5) {
            put(&a, e, "cart", "items", Value::from(format!("changed {i}"))).await;
            let n = a.update(&parse(&e.id), "stats", "visits", |v: Option<i64>| v.unwrap_or(0) * 10).await.unwrap();
            e.values.iter_mut().find(|v| v.1 == "visits").unwrap().2 = Value::from(n);
        }
        assert!(a.remove(&parse(&kept[1].id), "__system__", "name").await.unwrap());
        kept[1].values.retain(|v| v.1 != "name");
        a.clear(&parse(&kept[2].id), Some("cart")).await.unwrap();
        kept[2].values.retain(|v| v.0 != "cart");
        let remembered = kept.iter().position(|e| e.persistent).unwrap();
        a.set_persistent(&parse(&kept[remembered].id), false).await.unwrap();
        kept[remembered].persistent = false;
        // Logout: the session lives on under a new id, anonymous; the old id is dead.
        let out = kept.iter().rposition(|e| e.userid != 0).unwrap();
        let old = parse(&kept[out].id);
        kept[out].id = a.logout(&old).await.unwrap().id.to_string();
        (kept[out].userid, kept[out].persistent) = (0, false);
        revoked.push(old);
        // Destroy, and log out everywhere.
        revoked.push(parse(&kept.remove(3).id));
        assert!(a.destroy(revoked.last().unwrap()).await.unwrap());
        let user = kept.iter().find(|e| e.userid != 0).unwrap().userid;
        let ended: Vec<Expected> = kept.iter().filter(|e| e.userid == user).cloned().collect();
        assert_eq!(a.logout_user(user).await.unwrap(), ended.len());
        kept.retain(|e| e.userid != user);
        revoked.extend(ended.iter().map(|e| parse(&e.id)));
        // A login as a session's first write records it whole.
        let fresh = a.create().await.unwrap().id;
        let fresh = a.login(&fresh, 77).await.unwrap().id;
        kept.push(Expected { id: fresh.to_string(), userid: 77, persistent: false, values: vec![] });
        // Never written: never persisted, by design (robots and one-page visits cost nothing).
        let unwritten = a.create().await.unwrap().id;

        let image = crash_image(dir.path());
        a.shutdown().await;
        let b = start_logging(image.path(), 2, &clock, log);
        check(&b, &kept).await;
        for id in &revoked {
            assert_eq!(b.info(id).await, Err(SessionError::SessionGone), "{log:?}: {id} came back");
        }
        assert_eq!(b.info(&unwritten).await, Err(SessionError::SessionGone));
        assert_eq!(b.sessions_of(user).await.unwrap(), vec![], "{log:?}");
        // The replayed changes are in no snapshot yet: the shutdown snapshot takes them, and a
        // restart without any log still has them.
        b.shutdown().await;
        let c = start_logging(image.path(), 2, &clock, LogMode::Off);
        check(&c, &kept).await;
        c.shutdown().await;
    }
}

/// With `session.logout_clears_data`, a logout is logged as its rotation and a clear of every
/// scope on the new id: a crash image replays to the same empty, anonymous session, whether
/// the data was in a snapshot or only in the log, and whatever the setting at restart.
#[actix_rt::test]
async fn a_logout_that_cleared_the_data_replays_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = config(dir.path(), 2);
    c.storage.log = EVERY;
    c.session.logout_clears_data = true;
    let a = SessionEngine::builder(c).clock(clock.clone()).start().unwrap();
    let in_snapshot = a.create().await.unwrap().id;
    a.insert(&in_snapshot, "cart", "items", &["book"]).await.unwrap();
    a.snapshot().await.unwrap();
    let in_log = a.create().await.unwrap().id;
    a.insert(&in_log, "prefs", "theme", &"dark").await.unwrap();
    let mut out = Vec::new();
    for id in [in_snapshot, in_log] {
        let id = a.login(&id, 5).await.unwrap().id;
        a.insert(&id, "__system__", "name", &"Ann").await.unwrap();
        out.push((id, a.logout(&id).await.unwrap().id));
    }
    let image = crash_image(dir.path());
    a.shutdown().await;
    let b = start_logging(image.path(), 2, &clock, EVERY);
    for (old, new) in out {
        assert_eq!(b.info(&old).await, Err(SessionError::SessionGone));
        assert_eq!(b.info(&new).await.unwrap().userid, 0);
        for scope in ["cart", "prefs", "__system__"] {
            assert_eq!(b.keys(&new, scope).await.unwrap(), Vec::<String>::new(), "{scope} came back");
        }
    }
    b.shutdown().await;
}

/// Shard 0's newest segment (the engines here have one shard).
fn newest_segment(dir: &Path) -> PathBuf {
    let name = log_files(dir).into_iter().filter(|n| n.ends_with(".log")).max().expect("a segment");
    log_dir(dir).join(name)
}

/// A crash can cut the log at any byte: cut it at every offset within its last records, and
/// each start-up keeps exactly the records before the cut (the torn one is truncated away) and
/// takes new changes on top.
#[actix_rt::test]
async fn a_log_cut_at_any_byte_of_its_last_records_starts_with_the_records_before_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start_logging(dir.path(), 1, &clock, EVERY);
    let id = a.create().await.unwrap().id;
    a.increment(&id, "c", "n", 1).await.unwrap();
    a.snapshot().await.unwrap();
    // After each record: the segment's length, and what the session is then.
    let mut after: Vec<(u64, SessionId, i64)> = Vec::new();
    let segment = newest_segment(dir.path());
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    after.push((len(&segment), id, 1));
    for n in 2..=3 {
        a.increment(&id, "c", "n", 1).await.unwrap();
        after.push((len(&segment), id, n));
    }
    // The last record is a login: cut inside it, the old id must still work.
    let logged_in = a.login(&id, 9).await.unwrap().id;
    after.push((len(&segment), logged_in, 3));
    assert_eq!(newest_segment(dir.path()), segment, "one segment");
    let image = crash_image(dir.path());
    a.shutdown().await;
    let name = segment.file_name().unwrap().to_owned();

    let (start, end) = (after[0].0, after.last().unwrap().0);
    for cut in start..=end {
        let copy = crash_image(image.path());
        let path = log_dir(copy.path()).join(&name);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        let b = start_logging(copy.path(), 1, &clock, EVERY);
        // The last state whose record ended at or before the cut.
        let (_, live, n) = *after.iter().rev().find(|(l, _, _)| *l <= cut).unwrap();
        assert_eq!(b.get::<i64>(&live, "c", "n").await, Ok(Some(n)), "cut at {cut}");
        let dead = if live == id { logged_in } else { id };
        assert_eq!(b.info(&dead).await, Err(SessionError::SessionGone), "cut at {cut}");
        // The torn tail is gone from the file, and the log goes on after it.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), after.iter().rev().find(|(l, _, _)| *l <= cut).unwrap().0);
        assert!(log_files(copy.path()).iter().all(|n| !n.ends_with(".corrupt")), "cut at {cut}");
        // Record boundaries, and a sample of the cuts inside records: a change after the
        // cut is logged and replayed on top (a start takes a while: not at every offset).
        if !after.iter().any(|(l, _, _)| *l == cut) && cut % 16 != 0 {
            b.shutdown().await;
            continue;
        }
        b.increment(&live, "c", "n", 100).await.unwrap();
        let again = crash_image(copy.path());
        b.shutdown().await;
        let c = start_logging(again.path(), 1, &clock, EVERY);
        assert_eq!(c.get::<i64>(&live, "c", "n").await, Ok(Some(n + 100)), "cut at {cut}, then a change");
        c.shutdown().await;
    }
}

/// A damaged record with records after it is not a torn tail: replay stops there, keeps what
/// came before, sets the segment aside, and the engine goes on.
#[actix_rt::test]
async fn damage_in_the_middle_of_the_log_stops_replay_there_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start_logging(dir.path(), 1, &clock, EVERY);
    let id = a.create().await.unwrap().id;
    let segment = newest_segment(dir.path());
    let mut ends = Vec::new();
    for _ in 0..5 {
        a.increment(&id, "c", "n", 1).await.unwrap();
        ends.push(std::fs::metadata(&segment).unwrap().len());
    }
    let image = crash_image(dir.path());
    a.shutdown().await;
    // Flip a byte inside the third record's payload.
    let path = log_dir(image.path()).join(segment.file_name().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let inside = usize::try_from(ends[1]).unwrap() + 20;
    bytes[inside] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let b = start_logging(image.path(), 1, &clock, EVERY);
    assert_eq!(b.get::<i64>(&id, "c", "n").await, Ok(Some(2)), "the two records before the damage");
    let names = log_files(image.path());
    assert!(names.iter().any(|n| n.ends_with(".log.corrupt")), "{names:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[1], "the segment is cut back to its good records");
    b.increment(&id, "c", "n", 10).await.unwrap();
    let again = crash_image(image.path());
    b.shutdown().await;
    let c = start_logging(again.path(), 1, &clock, EVERY);
    assert_eq!(c.get::<i64>(&id, "c", "n").await, Ok(Some(12)), "the log goes on after the damage");
    c.shutdown().await;
}

/// Disk use is bounded: a durable snapshot lets the segments before the older of the two kept
/// generations go, and a log past its share of `storage.log_max` makes the shard snapshot early
/// (here the snapshot interval is an hour: only the log's size can trigger one).
#[actix_rt::test]
async fn old_segments_are_deleted_and_a_large_log_triggers_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let mut c = config(dir.path(), 1);
    c.storage.log_max = 1 << 20;
    let a = SessionEngine::builder(c).clock(clock.clone()).start().unwrap();
    let id = a.create().await.unwrap().id;
    a.insert(&id, "c", "v", &0).await.unwrap();
    for round in 1..=4 {
        a.insert(&id, "c", "v", &round).await.unwrap();
        a.snapshot().await.unwrap();
    }
    let segments = log_files(dir.path()).into_iter().filter(|n| n.ends_with(".log")).count();
    assert!(segments <= 3, "segments before the older kept snapshot are deleted: {:?}", log_files(dir.path()));

    let snaps_before = snap_files(dir.path());
    // 1 MiB over 1 shard: a segment may grow to 256 KiB before the shard snapshots early.
    let big = "x".repeat(16 << 10);
    for i in 0..64 {
        a.insert(&id, "c", "big", &format!("{i}{big}")).await.unwrap();
    }
    // Waits for the events themselves, with generous deadlines (the shard checks its log's
    // size once a second, on its own clock): an early snapshot (the interval is an hour: only
    // the log's size can trigger one), then, after each burst of 512 KiB, the log settled back
    // within its bound: the newest segment within its 256 KiB share (no early snapshot still
    // due) and all of them within log_max (the ones before the older kept snapshot deleted;
    // the unpaced first 1 MiB sits in one segment until the next snapshot lets it go).
    let deadline = Instant::now() + Duration::from_secs(60);
    while snap_files(dir.path()) == snaps_before {
        assert!(Instant::now() < deadline, "no early snapshot within 60 s of 1 MiB of writes");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let segments = || -> Vec<(String, u64)> {
        log_files(dir.path())
            .into_iter()
            .filter(|n| n.ends_with(".log"))
            .filter_map(|n| Some((n.clone(), std::fs::metadata(log_dir(dir.path()).join(&n)).ok()?.len())))
            .collect()
    };
    let settled = async |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = segments();
            let newest = now.last().map_or(0, |(_, len)| *len);
            let total: u64 = now.iter().map(|(_, len)| len).sum();
            if newest <= 256 << 10 && total <= 1 << 20 {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: the log did not settle within 60 s: {now:?}");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    };
    for i in 64..256 {
        a.insert(&id, "c", "big", &format!("{i}{big}")).await.unwrap();
        if (i - 64) % 32 == 31 {
            settled(&format!("after write {i}")).await;
        }
    }
    // 4 MiB written; what stays is within log_max.
    let total: u64 = segments().iter().map(|(_, len)| len).sum();
    assert!(total <= 1 << 20, "{total} bytes of log kept: {:?}", log_files(dir.path()));
    let image = crash_image(dir.path());
    a.shutdown().await;
    let b = start_logging(image.path(), 1, &clock, EVERY);
    assert_eq!(b.get::<String>(&id, "c", "big").await.unwrap(), Some(format!("255{big}")));
    b.shutdown().await;
}

#[actix_rt::test]
async fn with_the_log_off_no_segment_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start_logging(dir.path(), 2, &clock, LogMode::Off);
    populate(&a, 4).await;
    a.shutdown().await;
    assert_eq!(log_files(dir.path()), Vec::<String>::new());
}

/// A copy of the whole data directory holds no session id nor any part of one: snapshots and
/// log records name sessions by a one-way digest, so whoever copies the files cannot present
/// an id that opens a session, even knowing the engine's secret (as this test does). The engine on the copy still serves every
/// session to its holder.
#[actix_rt::test]
async fn a_copied_data_directory_holds_no_usable_session_id() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start_logging(dir.path(), 2, &clock, EVERY);
    let mut expected = populate(&a, 12).await;
    a.snapshot().await.unwrap();
    // And changes after the snapshot, in the log only.
    expected.extend(populate(&a, 12).await);
    let copy = crash_image(dir.path());
    a.shutdown().await;
    let mut contents = Vec::new();
    let mut stack = vec![copy.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                contents.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    assert!(contents.iter().any(|(p, _)| p.extension().is_some_and(|e| e == "log")));
    for e in &expected {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&e.id).unwrap();
        let (random, tag) = raw.split_at(16);
        for (path, bytes) in &contents {
            for part in [e.id.as_bytes(), random, tag, &random[..8], &random[8..]] {
                assert!(!bytes.windows(part.len()).any(|w| w == part), "{} holds part of id {}", path.display(), e.id);
            }
        }
    }
    let b = start_logging(copy.path(), 2, &clock, EVERY);
    check(&b, &expected).await;
    b.shutdown().await;
}

/// Snapshots and log segments hold session data: only the engine's user may read them.
#[cfg(unix)]
#[actix_rt::test]
async fn session_files_are_private_to_the_engine_user() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let clock = ManualClock::new(T0);
    let a = start_logging(&dir, 2, &clock, EVERY);
    populate(&a, 3).await;
    a.snapshot().await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [dir.clone(), snapshot_dir(&dir), log_dir(&dir)] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let files: Vec<PathBuf> = [snapshot_dir(&dir), log_dir(&dir)]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .collect();
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "snap")));
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "log")));
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    a.shutdown().await;
}
