//! The engine with its shard workers on the caller's thread (`Placement::CurrentThread`).

use std::collections::HashSet;

use draco_session::{Config, Placement, SessionEngine, SessionError};
use futures_util::future::join_all;

fn config(dir: &std::path::Path, persist: bool) -> Config {
    let mut c = Config::default();
    c.session.secret = Some("placement test secret, at least 32 bytes".into());
    c.session.shards = 3;
    c.storage.persist = persist;
    c.storage.dir = dir.to_owned();
    c
}

fn start(c: Config) -> SessionEngine {
    SessionEngine::builder(c).placement(Placement::CurrentThread).start().expect("engine starts")
}

#[actix_rt::test]
async fn current_thread_engine_keeps_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(config(dir.path(), false));
    let s = e.create().await.unwrap().id;
    e.insert(&s, "cart", "k", &"book").await.unwrap();
    let seen: HashSet<i64> =
        join_all((0..500).map(|_| e.increment(&s, "c", "n", 1))).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(seen.len(), 500, "no increment lost");
    let logged = e.login(&s, 5).await.unwrap();
    assert_eq!(e.info(&s).await, Err(SessionError::SessionGone));
    assert_eq!(e.get::<String>(&logged.id, "cart", "k").await.unwrap().as_deref(), Some("book"));
    assert_eq!(e.logout_user(5).await.unwrap(), 1);
    assert_eq!(e.stats().await.unwrap().shards.len(), 3);
}

#[actix_rt::test]
async fn current_thread_engine_is_usable_from_other_threads() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(config(dir.path(), false));
    let s = e.create().await.unwrap().id;
    let other = e.clone();
    let thread = std::thread::spawn(move || {
        actix_rt::Runtime::new().unwrap().block_on(async move {
            for _ in 0..100 {
                other.increment(&s, "c", "n", 1).await.unwrap();
            }
        })
    });
    // Keep this thread's arbiter free to run the workers while the other thread waits on them.
    while !thread.is_finished() {
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    thread.join().unwrap();
    assert_eq!(e.get::<i64>(&s, "c", "n").await.unwrap(), Some(100));
}

#[actix_rt::test]
async fn current_thread_engine_shuts_down_with_a_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(config(dir.path(), true));
    let s = e.login(&e.create().await.unwrap().id, 9).await.unwrap().id;
    e.insert(&s, "a", "k", &1).await.unwrap();
    e.shutdown().await;
    assert!(matches!(e.info(&s).await, Err(SessionError::Unavailable(_))));
    let again = start(config(dir.path(), true));
    assert_eq!(again.info(&s).await.unwrap().userid, 9);
    assert_eq!(again.get::<i32>(&s, "a", "k").await.unwrap(), Some(1));
    again.shutdown().await;
}

#[actix_rt::test]
async fn a_full_engine_reclaims_expired_sessions_before_refusing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), false);
    c.session.shards = 1;
    c.limits.max_sessions = 10;
    let clock = draco_session::ManualClock::new(1_000_000);
    let e = SessionEngine::builder(c).clock(clock.clone()).placement(Placement::CurrentThread).start().unwrap();
    for _ in 0..10 {
        e.create().await.unwrap();
    }
    assert_eq!(e.create().await, Err(SessionError::Full { limit: 10 }));
    clock.advance(std::time::Duration::from_secs(3 * 3600));
    // Nobody swept yet, but every session has expired: creating one must succeed.
    e.create().await.expect("expired sessions are reclaimed");
    assert_eq!(e.stats().await.unwrap().sessions, 1);
}
