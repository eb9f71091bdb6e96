//! Starting and stopping the engine, and losing its store: calls after `shutdown` fail
//! cleanly, the synchronous start needs an actix System (and names `start_async` for Redis), an
//! invalid config is a start error, and a lost Redis answers `Unavailable` quickly and recovers
//! by itself. The shutdown test runs on memory, Redis and Redis Cluster (see
//! `support/engine.rs`).

use std::time::Duration;

use draco_session::{SessionEngine, SessionError};

use crate::support::*;

async fn after_shutdown_calls_fail_cleanly(b: Backend) {
    let e = b.engine(2).await;
    let s = e.create().await.unwrap().id;
    e.shutdown().await;
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(e.get::<i32>(&s, "a", "k").await, Err(SessionError::Unavailable(_))));
    assert!(matches!(e.stats().await, Err(SessionError::Unavailable(_))));
}

/// Memory-only: the synchronous start needs an actix System (Redis needs `start_async`).
#[test]
fn starting_outside_an_actix_system_is_a_clear_error() {
    let err = SessionEngine::start(config(1)).unwrap_err();
    assert!(err.to_string().contains("actix System"), "{err}");
}

#[test]
fn an_invalid_config_is_a_start_error() {
    let mut c = config(1);
    c.session.persistent_ttl = Duration::from_secs(1);
    let err = actix_rt::System::new().block_on(async { SessionEngine::start(c).map(|_| ()) }).unwrap_err();
    assert!(err.to_string().contains("session.persistent_ttl"), "{err}");
}

both!(after_shutdown_calls_fail_cleanly);

cluster!(after_shutdown_calls_fail_cleanly);

/// Redis only: what the memory backend has no counterpart for.
#[cfg(feature = "redis")]
mod redis_only {
    use super::*;

    #[test]
    fn the_sync_start_names_start_async() {
        let mut c = config(1);
        c.storage.backend = draco_session::config::StorageBackend::Redis;
        let err = actix_rt::System::new().block_on(async { SessionEngine::start(c).map(|_| ()) }).unwrap_err();
        assert!(err.to_string().contains("start_async"), "{err}");
    }

    /// Redis lost: operations answer `Unavailable` (bounded by the command timeouts), never
    /// hang; once Redis is back on the same port the engine reconnects by itself.
    #[actix_rt::test]
    async fn redis_lost_is_unavailable_not_a_hang_and_recovery_is_automatic() {
        let mut server = redis_server::RedisServer::start();
        let mut c = config(1);
        c.storage.backend = draco_session::config::StorageBackend::Redis;
        c.storage.redis_url = server.url();
        let e = SessionEngine::start_async(c).await.unwrap();
        let s = e.create().await.unwrap().id;
        server.stop();
        // Each answer is `Unavailable`; a hang (no answer within a minute, far beyond the
        // command timeouts) fails. How long an answer takes is measured, not judged: a busy
        // machine must not fail this.
        let hang = Duration::from_secs(60);
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let read = actix_rt::time::timeout(hang, e.get::<i32>(&s, "a", "k")).await.expect("a read hung");
            assert!(matches!(read, Err(SessionError::Unavailable(_))), "{read:?}");
            let created = actix_rt::time::timeout(hang, e.create()).await.expect("a create hung");
            assert!(matches!(created, Err(SessionError::Unavailable(_))), "{created:?}");
            eprintln!("Redis lost: a read and a create answered Unavailable in {:?}", started.elapsed());
        }
        server.resume();
        let started = std::time::Instant::now();
        let fresh = loop {
            match e.create().await {
                Ok(info) => break info.id,
                Err(SessionError::Unavailable(_)) if started.elapsed() < Duration::from_secs(60) => {
                    actix_rt::time::sleep(Duration::from_millis(100)).await
                }
                Err(other) => panic!("no recovery within 60 s: {other:?}"),
            }
        };
        e.insert(&fresh, "a", "k", &1).await.unwrap();
        // The restarted server kept nothing (no persistence): the old session is gone, cleanly.
        assert_eq!(e.get::<i32>(&s, "a", "k").await, Err(SessionError::SessionGone));
    }
}
