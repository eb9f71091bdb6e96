//! Apps sharing one Redis (`storage.redis_prefix`): two engines with prefixes of their own on
//! one server (or one Redis Cluster, whose only database is 0) see nothing of each other's
//! sessions, users or events, though they share the secret and the user ids. Redis only: each
//! memory engine has its own store anyway.

#![cfg(feature = "redis")]

use std::collections::HashSet;
use std::time::Duration;

use draco_session::events::Delivery;
use draco_session::{SessionEngine, SessionError};

use crate::support::*;

/// An engine of app `prefix` on the store `like` uses.
async fn app(like: &SessionEngine, prefix: &str) -> SessionEngine {
    let mut c = config(2);
    c.storage.redis_prefix = prefix.into();
    c.storage.backend = like.config().storage.backend;
    c.storage.redis_url = like.config().storage.redis_url.clone();
    c.storage.redis_cluster = like.config().storage.redis_cluster;
    SessionEngine::start_async(c).await.unwrap()
}

async fn apps_with_their_own_redis_prefix_see_nothing_of_each_other(b: Backend) {
    let mut c = config(2);
    c.storage.redis_prefix = "appa".into();
    let a = b.start(c, None).await;
    let other = app(&a, "appb").await;
    let user = b.user(7);
    let mut theirs = other.subscribe().await.unwrap();

    let sa = a.login(&a.create().await.unwrap().id, user).await.unwrap().id;
    let anonymous = other.create().await.unwrap().id;
    let sb = other.login(&anonymous, user).await.unwrap().id;
    a.insert(&sa, "cart", "n", &1).await.unwrap();
    // Same secret, same user id: still each app's own.
    assert_eq!(other.info(&sa).await, Err(SessionError::SessionGone));
    assert_eq!(a.get::<i32>(&sb, "cart", "n").await, Err(SessionError::SessionGone));
    let handles =
        |list: Vec<draco_session::message::UserSession>| list.into_iter().map(|s| s.handle).collect::<Vec<_>>();
    assert_eq!(handles(a.sessions_of(user).await.unwrap()), [a.handle_of(&sa)]);
    assert_eq!(handles(other.sessions_of(user).await.unwrap()), [other.handle_of(&sb)]);
    if b.isolated() {
        // One server: `stats` counts each app's own sessions.
        assert_eq!((a.stats().await.unwrap().sessions, other.stats().await.unwrap().sessions), (1, 1));
    }
    assert!(!other.revoke(user, &other.handle_of(&sa)).await.unwrap());
    assert_eq!(other.logout_others(&sb).await.unwrap(), 0);
    assert_eq!(a.logout_user(user).await.unwrap(), 1, "app a's own session only");
    assert_eq!(a.info(&sa).await, Err(SessionError::SessionGone));
    assert_eq!(other.info(&sb).await.unwrap().userid, user);
    assert_eq!(handles(other.sessions_of(user).await.unwrap()), [other.handle_of(&sb)]);

    // App b's subscriber saw its own events, none of app a's: `marker` comes after them all.
    let marker = other.create().await.unwrap().id;
    let (mine, marker) = (HashSet::from([other.handle_of(&anonymous), other.handle_of(&sb)]), other.handle_of(&marker));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, theirs.recv()).await.expect("app b's events arrive") {
            Some(Delivery::Event(ev)) if ev.session == marker => break,
            Some(Delivery::Event(ev)) => seen.push(ev),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!seen.is_empty() && seen.iter().all(|ev| mine.contains(&ev.session)), "{seen:#?}");
    assert!(seen.iter().all(|ev| ev.session != a.handle_of(&sa)));
}

mod redis {
    #[actix_rt::test]
    async fn apps_with_their_own_redis_prefix_see_nothing_of_each_other() {
        super::apps_with_their_own_redis_prefix_see_nothing_of_each_other(super::Backend::Redis).await
    }
}

mod redis_cluster {
    #[actix_rt::test]
    async fn apps_with_their_own_redis_prefix_see_nothing_of_each_other() {
        super::apps_with_their_own_redis_prefix_see_nothing_of_each_other(super::Backend::cluster()).await
    }
}
