//! When and what the engine writes to disk: only changed shards are rewritten, the timer
//! snapshots them on its own, nothing touches the disk without persistence, and a session
//! rotated while its shard's snapshot is being encoded is in that snapshot (a crash right
//! after loses nothing).

use std::path::Path;
use std::time::Duration;

use draco_session::{ManualClock, SessionEngine, SessionError, SessionId};

use crate::support::*;

#[actix_rt::test]
async fn unchanged_shards_are_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let e = start(dir.path(), 2, &clock);
    let expected = populate(&e, 20).await;
    assert_eq!(e.snapshot().await.unwrap(), 20);
    let first = files(dir.path());
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(e.snapshot().await.unwrap(), 0, "nothing changed");
    // Reading metadata is not a use; creating without writing is not a change either.
    e.info(&expected[0].id.parse().unwrap()).await.unwrap();
    e.create().await.unwrap();
    assert_eq!(e.snapshot().await.unwrap(), 0);
    assert_eq!(files(dir.path()), first);
    // One change rewrites that one shard only.
    let id: SessionId = expected[0].id.parse().unwrap();
    e.insert(&id, "cart", "items", &0).await.unwrap();
    let in_shard = expected
        .iter()
        .filter(|x| routing::shard_of(&x.id.parse::<SessionId>().unwrap(), 2) == routing::shard_of(&id, 2))
        .count();
    assert_eq!(e.snapshot().await.unwrap(), in_shard);
    let second = files(dir.path());
    assert_eq!(second.len(), 3, "two generations of the changed shard: {second:?}");
    e.shutdown().await;
    assert_eq!(files(dir.path()), second, "shutdown with nothing changed writes nothing");
}

#[actix_rt::test]
async fn the_timer_snapshots_changed_shards() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 2);
    c.storage.snapshot_interval = Duration::from_millis(100);
    let e = SessionEngine::start(c).unwrap();
    let id = e.create().await.unwrap().id;
    e.insert(&id, "a", "b", &1).await.unwrap();
    let mut waited = Duration::ZERO;
    while snap_files(dir.path()).is_empty() {
        assert!(waited < Duration::from_secs(10), "no periodic snapshot");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    e.shutdown().await;
}

#[actix_rt::test]
async fn without_persistence_nothing_touches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 2);
    c.storage.persist = false;
    let e = SessionEngine::start(c).unwrap();
    let id = e.create().await.unwrap().id;
    e.insert(&id, "a", "b", &1).await.unwrap();
    assert_eq!(e.snapshot().await.unwrap(), 0);
    e.shutdown().await;
    assert!(!snapshot_dir(dir.path()).exists());
}

/// A copy of the snapshot directory as it is now: what a crash at this moment would leave.
fn crash_copy(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(snapshot_dir(copy.path())).unwrap();
    for name in snap_files(dir) {
        std::fs::copy(snapshot_dir(dir).join(&name), snapshot_dir(copy.path()).join(&name)).unwrap();
    }
    copy
}

#[actix_rt::test]
async fn a_session_rotated_while_a_snapshot_is_encoded_is_in_that_snapshot() {
    // A snapshot of a big shard takes many actor turns, and operations run between them. A
    // session written before the snapshot began and logged in (rotated to a new id) while it is
    // encoded must be in it under one of its ids: a crash right after must not lose it.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let e = start(dir.path(), 1, &clock);
    let mut ids = Vec::new();
    for i in 0..20_000 {
        let id = e.create().await.unwrap().id;
        e.insert(&id, "a", "n", &i).await.unwrap();
        ids.push(id);
    }
    // Early, late and in the middle of the walk.
    let targets = [ids[0], ids[10_000], ids[19_999]];
    // The snapshot reaches the worker through the supervisor within microseconds and takes
    // tens of milliseconds (79 turns of 256 sessions, unoptimised); the logins go out 2 ms in.
    let logins = async {
        actix_rt::time::sleep(Duration::from_millis(2)).await;
        futures_util::future::join_all(targets.iter().map(|id| e.login(id, 7))).await
    };
    let (written, rotated) = futures_util::future::join(e.snapshot(), logins).await;
    assert!(written.unwrap() >= 19_997);
    let copy = crash_copy(dir.path());
    let after = start(copy.path(), 1, &clock);
    for (old, new) in targets.iter().zip(rotated) {
        let new = new.unwrap().id;
        let found = match after.get::<i64>(&new, "a", "n").await {
            Ok(v) => v,
            Err(SessionError::SessionGone) => after.get::<i64>(old, "a", "n").await.unwrap_or(None),
            Err(other) => panic!("{other}"),
        };
        let i = i64::try_from(ids.iter().position(|x| x == old).unwrap()).unwrap();
        assert_eq!(found, Some(i), "session {i} lost by a snapshot taken while it rotated");
    }
    after.shutdown().await;
    e.shutdown().await;
}
