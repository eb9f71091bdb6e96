//! Limits and containment in the engine: value size, keys per session, session size and `max_sessions` are
//! clear errors and nothing is ever evicted; a panicking update is contained to its call; the
//! stats count sessions per shard. Each test runs on memory and Redis (see
//! `support/engine.rs`); the panic test on Redis Cluster too (the others count every session of
//! the store, which the cluster's tests share).

use draco_session::{SessionError, SessionId};
use futures_util::future::join_all;

use crate::support::*;

async fn limits_are_clear_errors_and_nothing_is_evicted(b: Backend) {
    let mut c = config(2);
    c.limits.max_value_bytes = 100;
    c.limits.max_keys = 3;
    c.limits.max_sessions = 5;
    let e = b.start(c, None).await;
    let s = e.create().await.unwrap().id;
    let err = e.insert(&s, "a", "big", &"x".repeat(200)).await.unwrap_err();
    assert_eq!(err, SessionError::ValueTooLarge { size: 202, limit: 100 });
    assert!(err.to_string().contains("limits.max_value_bytes"));
    for k in ["1", "2", "3"] {
        e.insert(&s, "a", k, &k).await.unwrap();
    }
    assert_eq!(e.insert(&s, "b", "4", &4).await, Err(SessionError::TooManyKeys { limit: 3 }));
    assert_eq!(e.keys(&s, "a").await.unwrap().len(), 3);
    let mut ids = vec![s];
    for _ in 0..4 {
        ids.push(e.create().await.unwrap().id);
    }
    assert_eq!(e.create().await, Err(SessionError::Full { limit: 5 }));
    for id in &ids {
        e.touch(id).await.expect("nobody was evicted");
    }
    e.destroy(&ids[0]).await.unwrap();
    e.create().await.expect("room again after a destroy");
}

/// `limits.max_session_bytes` counts scope names, key names and JSON values of all scopes: a
/// write growing the session past it fails, by whichever operation, and changes nothing; a
/// write that does not grow the session always works, even over a limit lowered since.
async fn the_session_size_limit_refuses_growth_and_loses_nothing(b: Backend) {
    let mut c = config(2);
    c.limits.max_value_bytes = 600;
    c.limits.max_session_bytes = 1000;
    let e = b.start(c.clone(), None).await;
    let s = e.create().await.unwrap().id;
    // "a" + "k1" + a JSON string of 498 x's: 503 bytes; k2: 497. 1000 in all, exactly the limit.
    let (k1, k2) = ("x".repeat(498), "y".repeat(492));
    e.insert(&s, "a", "k1", &k1).await.unwrap();
    e.insert(&s, "a", "k2", &k2).await.unwrap();
    fn too_big<T>(size: usize) -> Result<T, SessionError> {
        Err(SessionError::SessionTooLarge { size, limit: 1000 })
    }
    let err = e.insert(&s, "b", "k", &"z").await.unwrap_err();
    assert_eq!(err, SessionError::SessionTooLarge { size: 1005, limit: 1000 });
    assert!(err.to_string().contains("limits.max_session_bytes"), "{err}");
    assert_eq!(e.insert(&s, "a", "k2", &format!("{k2}y")).await, too_big(1001));
    assert_eq!(e.increment(&s, "a", "n", 1).await, too_big(1003));
    assert_eq!(e.update(&s, "a", "k3", |_: Option<String>| "z".into()).await, too_big(1006));
    assert_eq!(e.update(&s, "a", "k1", |v: Option<String>| v.unwrap() + "x").await, too_big(1001));
    // Nothing was lost or added.
    assert_eq!(e.get::<String>(&s, "a", "k1").await.unwrap(), Some(k1.clone()));
    assert_eq!(e.get::<String>(&s, "a", "k2").await.unwrap(), Some(k2.clone()));
    assert_eq!(e.keys(&s, "a").await.unwrap(), ["k1", "k2"]);
    assert!(e.keys(&s, "b").await.unwrap().is_empty());
    // Same size and smaller always work; what they free, and what remove and clear free, can
    // be used again.
    e.insert(&s, "a", "k1", &"w".repeat(498)).await.unwrap();
    e.insert(&s, "a", "k1", &"w".repeat(98)).await.unwrap(); // 400 bytes freed
    e.insert(&s, "b", "k", &"z".repeat(300)).await.unwrap(); // 304
    assert_eq!(e.increment(&s, "b", "n", 7).await.unwrap(), 7); // 3
    assert!(e.remove(&s, "a", "k2").await.unwrap()); // 497 freed
    e.update(&s, "a", "k2", |_: Option<String>| "v".repeat(490)).await.unwrap(); // 495
    assert_eq!(e.insert(&s, "a", "k3", &"u".repeat(91)).await, too_big(1001));
    e.clear(&s, Some("b")).await.unwrap(); // 307 freed
    e.insert(&s, "a", "k3", &"u".repeat(91)).await.unwrap();
    e.clear(&s, None).await.unwrap();
    e.insert(&s, "a", "k1", &k1).await.unwrap();
    e.insert(&s, "a", "k2", &k2).await.unwrap();
    assert_eq!(e.insert(&s, "a", "k3", &1).await, too_big(1004));
    if b.is_memory() {
        return;
    }
    // Redis keeps the session: an engine with a lower limit still lets it shrink, not grow.
    c.limits.max_session_bytes = 600;
    c.storage.backend = e.config().storage.backend;
    c.storage.redis_url = e.config().storage.redis_url.clone();
    c.storage.redis_cluster = e.config().storage.redis_cluster;
    let lower = draco_session::SessionEngine::start_async(c).await.unwrap();
    lower.insert(&s, "a", "k2", &"y".repeat(400)).await.unwrap();
    lower.insert(&s, "a", "k2", &"y".repeat(400)).await.unwrap();
    assert_eq!(
        lower.insert(&s, "a", "k2", &"y".repeat(401)).await,
        Err(SessionError::SessionTooLarge { size: 909, limit: 600 })
    );
    assert_eq!(lower.get::<String>(&s, "a", "k1").await.unwrap(), Some(k1));
}

async fn a_panicking_update_is_contained(b: Backend) {
    let e = b.engine(2).await;
    let victim = e.create().await.unwrap().id;
    let bystanders: Vec<SessionId> =
        join_all((0..20).map(|_| e.create())).await.into_iter().map(|r| r.unwrap().id).collect();
    for (i, b) in bystanders.iter().enumerate() {
        e.insert(b, "a", "n", &i).await.unwrap();
    }
    e.insert(&victim, "a", "n", &41).await.unwrap();
    let result = e.update(&victim, "a", "n", |_: Option<i32>| -> i32 { panic!("user code bug") }).await;
    assert!(matches!(&result, Err(SessionError::Panicked(m)) if m.contains("user code bug")), "{result:?}");
    // The session is unchanged and still usable; every other session is intact.
    assert_eq!(e.get::<i32>(&victim, "a", "n").await.unwrap(), Some(41));
    assert_eq!(e.increment(&victim, "a", "n", 1).await.unwrap(), 42);
    for (i, b) in bystanders.iter().enumerate() {
        assert_eq!(e.get::<usize>(b, "a", "n").await.unwrap(), Some(i));
    }
    let stats = e.stats().await.unwrap();
    assert_eq!(stats.shards.iter().map(|s| s.panics).sum::<u64>(), 1);
    assert!(stats.sessions == 21 || !b.isolated());
}

async fn stats_count_sessions_per_shard(b: Backend) {
    let e = b.engine(3).await;
    let ids: Vec<SessionId> = join_all((0..60).map(|_| e.create())).await.into_iter().map(|r| r.unwrap().id).collect();
    let stats = e.stats().await.unwrap();
    assert_eq!(stats.sessions, 60);
    if !b.is_memory() {
        // Redis: one pseudo-shard.
        assert_eq!(stats.shards.len(), 1);
        assert_eq!(stats.shards[0].created, 60);
        return;
    }
    assert_eq!(stats.shards.len(), 3);
    for (shard, s) in stats.shards.iter().enumerate() {
        assert_eq!(s.sessions, ids.iter().filter(|id| routing::shard_of(id, 3) == shard).count());
        assert_eq!(s.created, s.sessions as u64);
    }
}

both!(
    limits_are_clear_errors_and_nothing_is_evicted,
    the_session_size_limit_refuses_growth_and_loses_nothing,
    a_panicking_update_is_contained,
    stats_count_sessions_per_shard
);

cluster!(a_panicking_update_is_contained);
