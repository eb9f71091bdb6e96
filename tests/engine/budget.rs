//! The memory budget (`limits.max_memory`, memory backend) and the anonymous session size
//! (`limits.max_anonymous_session_bytes`) through the engine's API: a flood of anonymous
//! sessions evicts the least recently used ones and nothing logged in; logged-in sessions
//! filling the budget make new sessions and growing writes `Unavailable(MemoryFull)`, nothing
//! lost; an anonymous session cannot hold what a logged-in one may.
//!
//! The budget is the memory backend's: the Redis backend leaves memory to Redis (`maxmemory`,
//! see SECURITY.md). The anonymous size runs on every backend (`redis::`, `redis_cluster::`).

use std::time::Duration;

use draco_session::error::Unavailable;
use draco_session::events::{Delivery, EventKind};
use draco_session::{SessionError, SessionId};

use crate::support::*;

const MIB: usize = 1 << 20;

/// 600 anonymous sessions writing 60 KB each (36 MB) into an engine of 2 MiB: the engine
/// stays within its budget (past it by a write per shard at most), every eviction is counted
/// and reported as an expiry, and the sessions logged in (and used) before the flood keep
/// their data.
async fn a_flood_of_anonymous_sessions_stays_within_max_memory_and_keeps_logged_in_sessions(b: Backend) {
    let mut c = config(2);
    c.limits.max_memory = 2 * MIB;
    // Room for every event of the flood (creations, expiries): none missed.
    c.events.capacity = 8192;
    let e = b.start(c, None).await;
    let mut events = e.subscribe().await.unwrap();
    let big = "x".repeat(60_000);
    let mut users = Vec::new();
    for user in 1..=4 {
        let id = e.login(&e.create().await.unwrap().id, b.user(user)).await.unwrap().id;
        e.insert(&id, "cart", "items", &big).await.unwrap();
        users.push(id);
    }
    for _ in 0..600 {
        let id = e.create().await.unwrap().id;
        e.insert(&id, "a", "blob", &big).await.unwrap();
    }
    let stats = e.stats().await.unwrap();
    let used: usize = stats.shards.iter().map(|s| s.memory_bytes).sum();
    let evicted: u64 = stats.shards.iter().map(|s| s.evicted).sum();
    assert!(used <= 2 * MIB + 2 * 61_000, "{used} bytes");
    assert!(evicted > 540, "{evicted}");
    assert_eq!(stats.sessions as u64, 604 - evicted);
    for id in &users {
        assert_eq!(e.get::<String>(id, "cart", "items").await.unwrap().as_deref(), Some(&*big), "logged in");
    }
    let mut expired = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while expired < evicted {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Delivery::Event(ev))) if ev.kind == EventKind::Expired => {
                assert_eq!(ev.userid, 0, "only anonymous sessions are evicted");
                expired += 1;
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert_eq!(expired, evicted, "each eviction is reported as an expiry");
}

/// Logged-in sessions are never evicted to make room: once they fill the budget, a new session
/// and a write growing one are refused (503 in the web layer), and every session keeps its data;
/// a session ended makes room again.
async fn logged_in_sessions_filling_max_memory_refuse_new_ones_and_lose_nothing(b: Backend) {
    let mut c = config(1);
    c.limits.max_memory = 2 * MIB;
    let e = b.start(c, None).await;
    let full = SessionError::Unavailable(Unavailable::MemoryFull { limit: 2 * MIB });
    let big = "y".repeat(60_000);
    let mut users: Vec<SessionId> = Vec::new();
    let refused = loop {
        let id = match e.create().await {
            Ok(info) => info.id,
            Err(error) => break error,
        };
        let id = e.login(&id, b.user(users.len() as u64 + 1)).await.unwrap().id;
        users.push(id);
        if let Err(error) = e.insert(&id, "a", "k", &big).await {
            break error;
        }
        assert!(users.len() < 100, "never refused");
    };
    assert_eq!(refused, full);
    assert!(refused.to_string().contains("limits.max_memory"), "{refused}");
    let _ = e.insert(&users[0], "a", "fill", &big).await;
    assert_eq!(e.create().await.map(|i| i.id), Err(full.clone()));
    assert_eq!(e.insert(&users[0], "a", "more", &big).await, Err(full.clone()));
    assert_eq!(e.increment(&users[0], "a", "n", 1).await, Err(full));
    // A write that does not grow a session works.
    e.insert(&users[1], "a", "k", &"z".repeat(60_000)).await.unwrap();
    let stats = e.stats().await.unwrap();
    assert_eq!(stats.shards[0].evicted, 0);
    for id in &users[2..users.len() - 1] {
        assert_eq!(e.get::<String>(id, "a", "k").await.unwrap().as_deref(), Some(&*big));
    }
    assert!(e.destroy(&users[2]).await.unwrap());
    e.create().await.expect("room again once a session ended");
}

/// `limits.max_anonymous_session_bytes`: an anonymous session is refused a write that a
/// logged-in one may make (413 `SessionTooLarge` in the web layer), and nothing is written.
async fn an_anonymous_session_is_held_to_max_anonymous_session_bytes(b: Backend) {
    let mut c = config(2);
    c.limits.max_anonymous_session_bytes = 4096;
    let e = b.start(c, None).await;
    let id = e.create().await.unwrap().id;
    let big = "b".repeat(5000);
    // "a" + "k" + the JSON string (5,002 bytes).
    assert_eq!(e.insert(&id, "a", "k", &big).await, Err(SessionError::SessionTooLarge { size: 5004, limit: 4096 }));
    assert_eq!(e.get::<String>(&id, "a", "k").await, Ok(None));
    e.insert(&id, "a", "k", &"s".repeat(4000)).await.unwrap();
    let id = e.login(&id, b.user(1)).await.unwrap().id;
    e.insert(&id, "a", "k", &big).await.unwrap();
    e.insert(&id, "a", "j", &big).await.unwrap();
    assert_eq!(e.get::<String>(&id, "a", "k").await.unwrap().as_deref(), Some(&*big));
}

mod memory {
    #[actix_rt::test]
    async fn a_flood_of_anonymous_sessions_stays_within_max_memory_and_keeps_logged_in_sessions() {
        super::a_flood_of_anonymous_sessions_stays_within_max_memory_and_keeps_logged_in_sessions(
            super::Backend::Memory,
        )
        .await
    }

    #[actix_rt::test]
    async fn logged_in_sessions_filling_max_memory_refuse_new_ones_and_lose_nothing() {
        super::logged_in_sessions_filling_max_memory_refuse_new_ones_and_lose_nothing(super::Backend::Memory).await
    }

    #[actix_rt::test]
    async fn an_anonymous_session_is_held_to_max_anonymous_session_bytes() {
        super::an_anonymous_session_is_held_to_max_anonymous_session_bytes(super::Backend::Memory).await
    }
}

// As `both!` and `cluster!` would declare it (`memory` above holds the memory-only tests too).
#[cfg(feature = "redis")]
mod redis {
    #[actix_rt::test]
    async fn an_anonymous_session_is_held_to_max_anonymous_session_bytes() {
        super::an_anonymous_session_is_held_to_max_anonymous_session_bytes(super::Backend::Redis).await
    }
}

cluster!(an_anonymous_session_is_held_to_max_anonymous_session_bytes);
