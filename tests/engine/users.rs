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

/// Logins of one user at the same moment — on one engine, and on Redis on two engines sharing
/// the store — leave at most `limits.max_sessions_per_user`: with a limit of 3 neither new
/// session ends the other; with a limit of 1 exactly one of the two is left (never both ended).
async fn logins_at_the_same_moment_keep_the_limit(b: Backend) {
    let (mut c, user, single) = (b.configure(config(4)), b.user(51), b.user(52));
    c.limits.max_sessions_per_user = 3;
    let clock = draco_session::ManualClock::new(1_700_000_000_000);
    // Two engines on one store (Redis), or the same engine twice (memory).
    let two = |c: draco_session::Config| {
        let clock = clock.clone();
        async move {
            let e = start_configured(c.clone(), Some(clock.clone())).await;
            let other = if b.is_memory() { e.clone() } else { start_configured(c, Some(clock)).await };
            (e, other)
        }
    };
    let (e, other) = two(c.clone()).await;
    let mut one = c.clone();
    one.limits.max_sessions_per_user = 1;
    let (e1, other1) = two(one).await;
    let pair = |a: &draco_session::SessionEngine, b: &draco_session::SessionEngine, user| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let (x, y) = (a.create().await.unwrap().id, b.create().await.unwrap().id);
            let (x, y) = futures_util::join!(a.login(&x, user), b.login(&y, user));
            (x.unwrap().id, y.unwrap().id)
        }
    };
    e.login(&e.create().await.unwrap().id, user).await.unwrap();
    for round in 0..15 {
        clock.advance(Duration::from_secs(1));
        let (x, y) = pair(&e, &other, user).await;
        assert_eq!(e.info(&x).await.map(|i| i.userid), Ok(user), "round {round}: the first login ended");
        assert_eq!(e.info(&y).await.map(|i| i.userid), Ok(user), "round {round}: the second login ended");
        let n = e.sessions_of(user).await.unwrap().len();
        assert!(n <= 3, "round {round}: {n} sessions past the limit of 3");
    }
    for round in 0..15 {
        clock.advance(Duration::from_secs(1));
        let (x, y) = pair(&e1, &other1, single).await;
        let alive = [e1.info(&x).await.is_ok(), e1.info(&y).await.is_ok()];
        assert_eq!(alive.iter().filter(|a| **a).count(), 1, "round {round}: {alive:?} with a limit of 1");
        assert_eq!(e1.sessions_of(single).await.unwrap().len(), 1, "round {round}");
    }
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
    logins_at_the_same_moment_keep_the_limit,
    logout_others_ends_every_other_session_of_the_user,
    past_max_sessions_per_user_a_login_ends_the_least_recently_used,
    without_max_sessions_per_user_logins_end_nothing,
    logout_user_ends_the_users_sessions_on_every_shard,
    sessions_of_lists_live_sessions_with_their_info,
    revoke_ends_one_session_of_that_user_only
);

cluster!(
    logins_at_the_same_moment_keep_the_limit,
    past_max_sessions_per_user_a_login_ends_the_least_recently_used,
    without_max_sessions_per_user_logins_end_nothing,
    logout_others_ends_every_other_session_of_the_user,
    logout_user_ends_the_users_sessions_on_every_shard,
    sessions_of_lists_live_sessions_with_their_info,
    revoke_ends_one_session_of_that_user_only
);

/// Redis only: the per-user index, a key with its own expiry, lasts as long as its sessions.
#[cfg(feature = "redis")]
mod redis_index {
    use super::{Backend, DAY, SessionError, config, start_configured};
    use crate::support::Raw;

    impl Raw {
        async fn pttl(&mut self, key: &str) -> i64 {
            self.query(::redis::cmd("PTTL").arg(key)).await
        }

        /// What a day of Redis's own time does to `key`'s expiry (Redis's clock runs in real
        /// time, not the engine's `ManualClock`).
        async fn age_by_a_day(&mut self, key: &str) {
            let left = self.pttl(key).await;
            assert!(left > 0, "the index is gone or has no expiry (PTTL {left}): its sessions are lost to it");
            let day = i64::try_from(DAY.as_millis()).unwrap();
            if left <= day {
                let _: i64 = self.query(::redis::cmd("DEL").arg(key)).await;
            } else {
                let _: i64 = self.query(::redis::cmd("PEXPIRE").arg(key).arg(left - day)).await;
            }
        }
    }

    /// A remembered session used every day for longer than the index's lifetime at login is
    /// still found through the index: the devices page lists it and "log out everywhere" ends
    /// it. The index is extended about once a day per session, never to less than the
    /// session's remaining lifetime, and a later login never shortens it.
    async fn a_session_used_daily_keeps_its_user_index_alive(b: Backend) {
        let mut c = config(2);
        c.session.persistent_ttl = 10 * DAY;
        let user = b.user(7);
        // A prefix of this test's own: its user's index is the one index key under it (named
        // by a keyed digest of the user id, which only the engine knows).
        c.storage.redis_prefix = format!("index-lifetime-{user}");
        let c = b.configure(c);
        let clock = draco_session::ManualClock::new(1_700_000_000_000);
        let e = start_configured(c.clone(), Some(clock.clone())).await;
        let mut raw = Raw::open(&c).await;
        let s = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
        let indexes: Vec<String> = raw.query(::redis::cmd("KEYS").arg(format!("{}:u:*", c.storage.redis_prefix))).await;
        let [index] = &indexes[..] else { panic!("one index for the user: {indexes:?}") };
        let name = &index[index.find(":u:").unwrap()..];
        assert!(!name.contains(&format!("{{{user}}}")), "the index names the user by a digest only: {index}");
        let index = index.clone();
        e.set_persistent(&s, true).await.unwrap();
        let at_login = raw.pttl(&index).await;
        assert!(at_login > 0 && at_login <= i64::try_from((10 * DAY).as_millis()).unwrap() + 60_000);
        let mut extended = 0;
        let days = 25;
        for _ in 0..days {
            clock.advance(DAY);
            raw.age_by_a_day(&index).await;
            let before = raw.pttl(&index).await;
            let info = e.touch(&s).await.unwrap();
            let after = raw.pttl(&index).await;
            let remaining = info.expires.duration_since(info.last_access).unwrap();
            let remaining = i64::try_from(remaining.as_millis()).unwrap();
            if after > before {
                extended += 1;
                assert!(after >= remaining, "an extension covers the session: {after} ms < {remaining} ms");
            }
            // Between extensions, Redis's real time (a few ms here) is all that separates them.
            assert!(after + 5_000 >= remaining, "the index outlives the session: {after} ms < {remaining} ms");
        }
        assert!((1..=days).contains(&extended), "extended {extended} times in {days} days");
        // A login only ever extends the index: it never cuts short what another session needs.
        let long = i64::try_from((20 * DAY).as_millis()).unwrap();
        let _: i64 = raw.query(::redis::cmd("PEXPIRE").arg(&index).arg(long)).await;
        let other = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
        assert!(raw.pttl(&index).await > long - 5_000, "a login shortened the index");
        let listed = e.sessions_of(user).await.unwrap();
        assert_eq!(listed.len(), 2, "the devices page lists both sessions");
        assert_eq!(listed.iter().filter(|l| l.persistent).count(), 1);
        assert_eq!(e.logout_user(user).await.unwrap(), 2, "log out everywhere ends them");
        assert_eq!(e.info(&s).await, Err(SessionError::SessionGone));
        assert_eq!(e.info(&other).await, Err(SessionError::SessionGone));
    }

    #[actix_rt::test]
    async fn on_redis_a_session_used_daily_keeps_its_user_index_alive() {
        a_session_used_daily_keeps_its_user_index_alive(Backend::Redis).await
    }

    #[actix_rt::test]
    async fn on_redis_cluster_a_session_used_daily_keeps_its_user_index_alive() {
        a_session_used_daily_keeps_its_user_index_alive(Backend::cluster()).await
    }
}
