//! Limits and containment in the engine: value size, keys per session and `max_sessions` are
//! clear errors and nothing is ever evicted; a panicking update is contained to its call; the
//! stats count sessions per shard. Each test runs on memory and Redis (see
//! `support/engine.rs`); the panic test on Redis Cluster too (the others count every session of
//! the store, which the cluster's tests share).

#[macro_use]
#[path = "support/engine.rs"]
mod support;

use draco_session::{SessionError, SessionId};
use futures_util::future::join_all;

use support::*;

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
        assert_eq!(s.sessions, ids.iter().filter(|id| id.shard(3) == shard).count());
        assert_eq!(s.created, s.sessions as u64);
    }
}

both!(limits_are_clear_errors_and_nothing_is_evicted, a_panicking_update_is_contained, stats_count_sessions_per_shard);

cluster!(a_panicking_update_is_contained);
