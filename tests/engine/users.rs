//! The per-user index through the engine API: `logout_user` ends a user's sessions on every
//! shard and nobody else's, and `sessions_of` lists a user's live sessions with their info,
//! most recently used first. Each test runs on memory, Redis and Redis Cluster (see
//! `support/engine.rs`).

use std::collections::HashSet;
use std::time::Duration;

use draco_session::SessionError;

use crate::support::*;

async fn logout_user_ends_the_users_sessions_on_every_shard(b: Backend) {
    let shards = 4;
    let mut c = config(shards);
    c.limits.max_sessions_per_user = 0;
    let e = b.engine_with_clock(c).await.0;
    let (user, other_user) = (b.user(77), b.user(78));
    let mut mine = Vec::new();
    let mut covered = HashSet::new();
    while covered.len() < shards || mine.len() < 8 {
        let s = e.create().await.unwrap().id;
        let logged = e.login(&s, user).await.unwrap().id;
        covered.insert(routing::shard_of(&logged, shards));
        mine.push(logged);
    }
    let other = e.login(&e.create().await.unwrap().id, other_user).await.unwrap().id;
    let anonymous = e.create().await.unwrap().id;
    assert_eq!(e.sessions_of(user).await.unwrap().len(), mine.len());
    assert_eq!(e.logout_user(user).await.unwrap(), mine.len());
    for s in &mine {
        assert_eq!(e.info(s).await, Err(SessionError::SessionGone));
    }
    assert!(e.sessions_of(user).await.unwrap().is_empty());
    assert_eq!(e.info(&other).await.unwrap().userid, other_user);
    assert!(e.info(&anonymous).await.is_ok());
    assert_eq!(e.logout_user(user).await.unwrap(), 0);
}

async fn sessions_of_lists_live_sessions_with_their_info(b: Backend) {
    let (e, clock) = b.engine_with_clock(config(3)).await;
    let user = b.user(11);
    let a = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
    clock.advance(Duration::from_secs(10));
    let b = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
    e.set_persistent(&b, true).await.unwrap();
    let list = e.sessions_of(user).await.unwrap();
    let handles = |list: &[draco_session::message::UserSession]| list.iter().map(|s| s.handle).collect::<Vec<_>>();
    assert_eq!(handles(&list), [e.handle_of(&b), e.handle_of(&a)], "most recently used first");
    assert!(list[0].persistent && !list[1].persistent);
    assert!(list.iter().all(|s| s.userid == user));
    // A handle is not the id, nor any part of its text form.
    for (s, id) in list.iter().zip([b, a]) {
        let (handle, id) = (s.handle.to_string(), id.to_string());
        assert!(!id.contains(&handle) && !handle.contains(&id[..8]) && !handle.contains(&id[8..16]));
    }
    clock.advance(3 * HOUR);
    assert_eq!(handles(&e.sessions_of(user).await.unwrap()), [e.handle_of(&b)]);
}

async fn revoke_ends_one_session_of_that_user_only(b: Backend) {
    let e = b.engine(4).await;
    let (user, other_user) = (b.user(21), b.user(22));
    let mut mine = Vec::new();
    for _ in 0..4 {
        mine.push(e.login(&e.create().await.unwrap().id, user).await.unwrap().id);
    }
    let other = e.login(&e.create().await.unwrap().id, other_user).await.unwrap().id;
    // Another user's handle ends nothing, whoever asks.
    assert!(!e.revoke(user, &e.handle_of(&other)).await.unwrap());
    assert_eq!(e.info(&other).await.unwrap().userid, other_user);
    assert!(e.revoke(user, &e.handle_of(&mine[2])).await.unwrap());
    assert_eq!(e.info(&mine[2]).await, Err(SessionError::SessionGone));
    assert!(!e.revoke(user, &e.handle_of(&mine[2])).await.unwrap(), "already ended");
    for id in [mine[0], mine[1], mine[3]] {
        assert_eq!(e.info(&id).await.unwrap().userid, user);
    }
    assert_eq!(e.sessions_of(user).await.unwrap().len(), 3);
    let garbage = "AAAAAAAAAAAAAAAAAAAAAA".parse().unwrap();
    assert!(!e.revoke(user, &garbage).await.unwrap());
}

async fn past_max_sessions_per_user_a_login_ends_the_least_recently_used(b: Backend) {
    let mut c = config(4);
    c.limits.max_sessions_per_user = 2;
    let (e, clock) = b.engine_with_clock(c).await;
    let (user, other) = (b.user(31), b.user(32));
    let login = |e: &draco_session::SessionEngine, user| {
        let e = e.clone();
        async move { e.login(&e.create().await.unwrap().id, user).await.unwrap().id }
    };
    let first = login(&e, user).await;
    clock.advance(Duration::from_secs(10));
    let second = login(&e, user).await;
    clock.advance(Duration::from_secs(10));
    // The first is used again: the second is now the least recently used.
    e.touch(&first).await.unwrap();
    let other_user = login(&e, other).await;
    let anonymous = e.create().await.unwrap().id;
    clock.advance(Duration::from_secs(10));
    let third = login(&e, user).await;
    assert_eq!(e.info(&second).await, Err(SessionError::SessionGone), "the least recently used one ended");
    for id in [first, third] {
        assert_eq!(e.info(&id).await.unwrap().userid, user);
    }
    assert_eq!(e.sessions_of(user).await.unwrap().len(), 2);
    assert_eq!(e.info(&other_user).await.unwrap().userid, other, "other users untouched");
    assert!(e.info(&anonymous).await.is_ok());
    // A re-login of a session the user already has does not end another one.
    clock.advance(Duration::from_secs(10));
    let again = e.login(&third, user).await.unwrap().id;
    assert_eq!(e.sessions_of(user).await.unwrap().len(), 2);
    assert!(e.info(&first).await.is_ok() && e.info(&again).await.is_ok());
}

async fn without_max_sessions_per_user_logins_end_nothing(b: Backend) {
    let mut c = config(2);
    c.limits.max_sessions_per_user = 0;
    let e = b.engine_with_clock(c).await.0;
    let user = b.user(41);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(e.login(&e.create().await.unwrap().id, user).await.unwrap().id);
    }
    assert_eq!(e.sessions_of(user).await.unwrap().len(), 6);
    for id in &ids {
        assert!(e.info(id).await.is_ok());
    }
}

async fn logout_others_ends_every_other_session_of_the_user(b: Backend) {
    let e = b.engine(4).await;
    let (user, other_user) = (b.user(51), b.user(52));
    let mut mine = Vec::new();
    for _ in 0..5 {
        mine.push(e.login(&e.create().await.unwrap().id, user).await.unwrap().id);
    }
    let other = e.login(&e.create().await.unwrap().id, other_user).await.unwrap().id;
    let anonymous = e.create().await.unwrap().id;
    assert_eq!(e.logout_others(&anonymous).await, Err(SessionError::NotLoggedIn));
    assert_eq!(e.logout_others(&mine[2]).await.unwrap(), 4);
    for (i, id) in mine.iter().enumerate() {
        assert_eq!(e.info(id).await.is_ok(), i == 2, "session {i}");
    }
    assert_eq!(e.info(&other).await.unwrap().userid, other_user);
    assert!(e.info(&anonymous).await.is_ok());
    assert_eq!(e.logout_others(&mine[2]).await.unwrap(), 0);
    assert_eq!(e.logout_others(&mine[0]).await, Err(SessionError::SessionGone));
}

both!(
    logout_others_ends_every_other_session_of_the_user,
    past_max_sessions_per_user_a_login_ends_the_least_recently_used,
    without_max_sessions_per_user_logins_end_nothing,
    logout_user_ends_the_users_sessions_on_every_shard,
    sessions_of_lists_live_sessions_with_their_info,
    revoke_ends_one_session_of_that_user_only
);

cluster!(
    logout_others_ends_every_other_session_of_the_user,
    logout_user_ends_the_users_sessions_on_every_shard,
    sessions_of_lists_live_sessions_with_their_info,
    revoke_ends_one_session_of_that_user_only
);
