//! Durable sessions across a restart in the same process: everything written comes back after
//! shutdown and restart (metadata, values, the per-user index; dead ids stay dead), under a
//! different shard count too (old files never resurrect sessions), even when the actix system
//! stops before `shutdown()` is called; sessions that expired while down are dropped on load. A second engine on a directory in use
//! does not start.

use draco_session::{ManualClock, SessionError, SessionId};
use serde_json::Value;

use crate::support::*;

#[actix_rt::test]
async fn everything_comes_back_after_shutdown_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 3, &clock);
    let expected = populate(&a, 60).await;
    // Dead ids must stay dead after a restart.
    let rotated = a.create().await.unwrap().id;
    a.insert(&rotated, "x", "y", &1).await.unwrap();
    let rotated_to = a.login(&rotated, 9).await.unwrap().id;
    let destroyed = a.create().await.unwrap().id;
    a.insert(&destroyed, "x", "y", &1).await.unwrap();
    assert!(a.destroy(&destroyed).await.unwrap());
    // Never written: never persisted.
    let unwritten = a.create().await.unwrap().id;
    let before = a.info(&expected[1].id.parse().unwrap()).await.unwrap();
    a.shutdown().await;
    assert!(matches!(a.info(&rotated_to).await, Err(SessionError::Unavailable(_))));

    let b = start(dir.path(), 3, &clock);
    assert_eq!(b.stats().await.unwrap().sessions, expected.len() + 1);
    check(&b, &expected).await;
    let after = b.info(&expected[1].id.parse().unwrap()).await.unwrap();
    assert_eq!((after.created, after.last_access, after.expires), (before.created, before.last_access, before.expires));
    for dead in [rotated, destroyed, unwritten] {
        assert_eq!(b.info(&dead).await, Err(SessionError::SessionGone));
    }
    assert_eq!(b.info(&rotated_to).await.unwrap().userid, 9);
    // The per-user index is rebuilt: list and "log out everywhere" work on loaded sessions.
    let of_user_1 = expected.iter().filter(|e| e.userid == 1).count();
    assert!(of_user_1 > 0);
    assert_eq!(b.sessions_of(1).await.unwrap().len(), of_user_1);
    assert_eq!(b.logout_user(1).await.unwrap(), of_user_1);
    // Loaded sessions keep working, and a second restart sees the new state.
    let id: SessionId = expected[0].id.parse().unwrap();
    assert_eq!(b.increment(&id, "stats", "visits", 10).await.unwrap(), 11);
    b.shutdown().await;

    let c = start(dir.path(), 3, &clock);
    assert_eq!(c.get::<i64>(&id, "stats", "visits").await.unwrap(), Some(11));
    assert!(c.sessions_of(1).await.unwrap().is_empty());
    assert_eq!(c.stats().await.unwrap().sessions, expected.len() + 1 - of_user_1);
    c.shutdown().await;
}

#[actix_rt::test]
async fn a_different_shard_count_loses_nothing_and_old_files_never_resurrect_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 4, &clock);
    let mut expected = populate(&a, 80).await;
    a.shutdown().await;
    assert!(snap_files(dir.path()).iter().all(|n| n.contains("-of-0004.")));

    let b = start(dir.path(), 2, &clock);
    check(&b, &expected).await;
    // The old layout is gone from disk as soon as the new one is written.
    let names = snap_files(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.contains("-of-0002.")), "{names:?}");
    // Sessions ended now must stay ended whatever layout comes next.
    for e in expected.drain(..20) {
        assert!(b.destroy(&e.id.parse().unwrap()).await.unwrap());
    }
    let id: SessionId = expected[0].id.parse().unwrap();
    b.insert(&id, "cart", "items", &"changed").await.unwrap();
    expected[0].values[1].2 = Value::from("changed");
    b.shutdown().await;

    for shards in [4, 3, 1] {
        let c = start(dir.path(), shards, &clock);
        assert_eq!(c.stats().await.unwrap().sessions, expected.len(), "{shards} shards");
        check(&c, &expected).await;
        c.shutdown().await;
        let names = snap_files(dir.path());
        let layout = format!("-of-{shards:04}.");
        assert!(names.iter().all(|n| n.contains(&layout)), "{names:?}");
    }
}

/// actix-server stops the whole actix system on SIGTERM/SIGINT before the application can call
/// `shutdown()`: the workers die with their threads, and must still leave a final snapshot.
#[test]
fn a_stopping_actix_system_still_gets_a_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let system = actix_rt::System::new();
    let (kept, late) = system.block_on(async {
        let e = start(dir.path(), 2, &clock);
        let kept = populate(&e, 10).await;
        e.snapshot().await.unwrap();
        let late = e.create().await.unwrap().id;
        e.insert(&late, "a", "b", &1).await.unwrap();
        actix_rt::System::current().stop();
        // What the demo does once the HTTP server returns: waits for durability.
        e.shutdown().await;
        (kept, late)
    });
    drop(system);
    actix_rt::System::new().block_on(async {
        let e = start(dir.path(), 2, &clock);
        check(&e, &kept).await;
        assert_eq!(e.get::<i32>(&late, "a", "b").await.unwrap(), Some(1));
        e.shutdown().await;
    });
}

#[actix_rt::test]
async fn expired_sessions_are_dropped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 2, &clock);
    let volatile = a.create().await.unwrap().id;
    a.insert(&volatile, "a", "b", &1).await.unwrap();
    let remembered = a.login(&a.create().await.unwrap().id, 7).await.unwrap().id;
    a.set_persistent(&remembered, true).await.unwrap();
    a.shutdown().await;

    // Down for three hours: past the 2 h volatile lifetime, well within the 100 days.
    clock.advance(3 * HOUR);
    let b = start(dir.path(), 2, &clock);
    assert_eq!(b.stats().await.unwrap().sessions, 1);
    assert_eq!(b.info(&volatile).await, Err(SessionError::SessionGone));
    assert!(b.info(&remembered).await.unwrap().persistent);
    b.shutdown().await;
}

/// The engine locks `<storage.dir>/lock` from start to shutdown: a second engine (or, later, a
/// `draco-session` command that writes) cannot work on the same files meanwhile.
#[actix_rt::test]
async fn a_second_engine_on_a_directory_in_use_does_not_start_until_the_first_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let first = start(dir.path(), 2, &clock);
    let second = draco_session::SessionEngine::builder(config(dir.path(), 2)).clock(clock.clone()).start();
    match second {
        Err(e @ draco_session::error::StartError::Storage { .. }) => {
            let text = e.to_string();
            assert!(text.contains("is in use by another draco-session engine"), "{text}");
            assert!(text.contains(&dir.path().join("lock").display().to_string()), "{text}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a second engine started on a directory in use"),
    }
    first.shutdown().await;
    let third = start(dir.path(), 2, &clock);
    third.shutdown().await;
}
