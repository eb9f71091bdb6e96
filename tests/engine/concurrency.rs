//! No lost updates in the engine: a thousand concurrent increments on one session, updates
//! from many plain threads (the handle needs no actix context), and two engines on one Redis
//! database sharing sessions as two app instances would. Backend tests run on memory, Redis
//! and Redis Cluster (see `support/engine.rs`).

use std::collections::HashSet;

// Only the Redis-only test below uses these.
#[cfg(feature = "redis")]
use draco_session::{SessionEngine, SessionError};
use futures_util::future::join_all;

use crate::support::*;

async fn a_thousand_concurrent_updates_on_one_session_lose_nothing(b: Backend) {
    let e = b.engine(4).await;
    let s = e.create().await.unwrap().id;
    let results = join_all((0..1000).map(|_| e.increment(&s, "counters", "hits", 1))).await;
    let seen: HashSet<i64> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(seen.len(), 1000, "every increment saw a distinct value");
    assert_eq!(e.get::<i64>(&s, "counters", "hits").await.unwrap(), Some(1000));
}

async fn concurrent_updates_from_many_threads_lose_nothing(b: Backend) {
    let e = b.engine(2).await;
    let s = e.create().await.unwrap().id;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || {
                futures_executor_block_on(async move {
                    for _ in 0..250 {
                        e.update(&s, "c", "n", |n: Option<u32>| n.unwrap_or(0) + 1).await.unwrap();
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(e.get::<u32>(&s, "c", "n").await.unwrap(), Some(1000));
}

/// Drives a future on a plain thread: the engine handle needs no actix context to be used.
fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    actix_rt::Runtime::new().unwrap().block_on(f)
}

both!(a_thousand_concurrent_updates_on_one_session_lose_nothing, concurrent_updates_from_many_threads_lose_nothing);

cluster!(a_thousand_concurrent_updates_on_one_session_lose_nothing, concurrent_updates_from_many_threads_lose_nothing);

/// Redis only: what the memory backend has no counterpart for.
#[cfg(feature = "redis")]
mod redis_only {
    use super::*;

    /// Two engines on one database are two app instances: each sees the other's sessions.
    #[actix_rt::test]
    async fn two_engines_on_one_redis_share_sessions() {
        let mut c = config(1);
        c.storage.backend = draco_session::config::StorageBackend::Redis;
        c.storage.redis_url = redis_server::shared().fresh_db_url();
        let a = SessionEngine::start_async(c.clone()).await.unwrap();
        let b = SessionEngine::start_async(c).await.unwrap();
        let s = a.create().await.unwrap().id;
        let s = b.login(&s, 3).await.unwrap().id;
        a.insert(&s, "cart", "n", &2).await.unwrap();
        assert_eq!(b.increment(&s, "cart", "n", 1).await.unwrap(), 3);
        assert_eq!(a.sessions_of(3).await.unwrap().len(), 1);
        assert_eq!(b.logout_user(3).await.unwrap(), 1);
        assert_eq!(a.info(&s).await, Err(SessionError::SessionGone));
    }
}
