//! Who a session belongs to and which id names it, through the engine API: login needs a user
//! and rotates the id keeping the data, logout resets user and remember-me (and keeps the other
//! data, or clears it with `session.logout_clears_data`), only logged-in
//! sessions can be persistent, operations racing a rotation or a destroy get `SessionGone`,
//! and forged or foreign ids are rejected before any shard. Each test runs on memory, Redis and
//! Redis Cluster (see `support/engine.rs`).

use draco_session::{SessionError, SessionId};
use futures_util::future::join_all;

use crate::support::*;

async fn login_needs_a_user_rotates_the_id_and_keeps_the_data(b: Backend) {
    let e = b.engine(4).await;
    let user = b.user(42);
    let s = e.create().await.unwrap();
    assert_eq!(s.userid, 0);
    e.insert(&s.id, "cart", "items", &["a", "b"]).await.unwrap();
    assert_eq!(e.login(&s.id, 0).await, Err(SessionError::InvalidUserId));
    let logged = e.login(&s.id, user).await.unwrap();
    assert_ne!(logged.id, s.id);
    assert_eq!(logged.userid, user);
    assert!(!logged.persistent);
    // The old id is dead at once, for every operation.
    assert_eq!(e.get::<Vec<String>>(&s.id, "cart", "items").await, Err(SessionError::SessionGone));
    assert_eq!(e.insert(&s.id, "cart", "x", &1).await, Err(SessionError::SessionGone));
    assert_eq!(e.info(&s.id).await, Err(SessionError::SessionGone));
    assert_eq!(e.get::<Vec<String>>(&logged.id, "cart", "items").await.unwrap().unwrap(), ["a", "b"]);
    assert_eq!(e.info(&logged.id).await.unwrap().userid, user);
}

async fn logout_resets_user_and_persistence_rotates_and_keeps_other_data(b: Backend) {
    let e = b.engine(2).await;
    let user = b.user(7);
    let s = e.create().await.unwrap().id;
    e.insert(&s, "prefs", "theme", &"dark").await.unwrap();
    let s = e.login(&s, user).await.unwrap().id;
    assert!(e.set_persistent(&s, true).await.unwrap().persistent);
    let out = e.logout(&s).await.unwrap();
    assert_ne!(out.id, s);
    assert_eq!(out.userid, 0);
    assert!(!out.persistent);
    assert_eq!(e.info(&s).await, Err(SessionError::SessionGone));
    assert_eq!(e.get::<String>(&out.id, "prefs", "theme").await.unwrap().as_deref(), Some("dark"));
    assert!(e.sessions_of(user).await.unwrap().is_empty());
}

async fn logout_clears_every_scope_when_configured(b: Backend) {
    let mut c = config(2);
    c.session.logout_clears_data = true;
    c.limits.max_session_bytes = 4096;
    c.limits.max_value_bytes = 4096;
    let e = b.engine_with_clock(c).await.0;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "prefs", "theme", &"dark").await.unwrap();
    e.insert(&s, "big", "blob", &"x".repeat(3000)).await.unwrap();
    e.insert(&s, "__system__", "name", &"Ann").await.unwrap();
    // Login keeps the data whatever the setting.
    let s = e.login(&s, b.user(7)).await.unwrap().id;
    assert_eq!(e.get::<String>(&s, "prefs", "theme").await.unwrap().as_deref(), Some("dark"));
    e.insert(&s, "cart", "items", &["a"]).await.unwrap();
    let out = e.logout(&s).await.unwrap();
    assert_ne!(out.id, s);
    assert_eq!((out.userid, out.persistent), (0, false));
    assert_eq!(e.info(&s).await, Err(SessionError::SessionGone));
    for scope in ["prefs", "__system__", "cart", "big"] {
        assert_eq!(e.keys(&out.id, scope).await.unwrap(), Vec::<String>::new(), "{scope}");
    }
    // Nothing of the cleared data still counts toward max_session_bytes.
    e.insert(&out.id, "big", "blob", &"y".repeat(3500)).await.unwrap();
    // The session lives on, empty, and takes new values.
    e.insert(&out.id, "prefs", "theme", &"light").await.unwrap();
    assert_eq!(e.get::<String>(&out.id, "prefs", "theme").await.unwrap().as_deref(), Some("light"));
}

async fn only_logged_in_sessions_can_be_persistent(b: Backend) {
    let e = b.engine(1).await;
    let (user, other_user) = (b.user(3), b.user(4));
    let s = e.create().await.unwrap().id;
    assert_eq!(e.set_persistent(&s, true).await, Err(SessionError::NotLoggedIn));
    assert!(!e.set_persistent(&s, false).await.unwrap().persistent);
    let s = e.login(&s, user).await.unwrap().id;
    let info = e.set_persistent(&s, true).await.unwrap();
    assert!(info.persistent);
    // Re-login by the same user keeps remember-me; another user does not inherit it.
    let same = e.login(&s, user).await.unwrap();
    assert!(same.persistent);
    let other = e.login(&same.id, other_user).await.unwrap();
    assert!(!other.persistent);
    assert_eq!(other.userid, other_user);
}

async fn operations_in_flight_on_a_rotated_or_destroyed_id_get_session_gone(b: Backend) {
    let e = b.engine(1).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "a", "k", &0).await.unwrap();
    // Queue writes on the old id behind the login (memory: in the same worker's mailbox;
    // Redis: racing it on the wire, so each lands either before the rotation or not at all).
    let login = e.login(&s, b.user(9));
    let values: Vec<i32> = (0..50).collect();
    let writes: Vec<_> = values.iter().map(|i| e.insert(&s, "a", "k", i)).collect();
    let (logged, writes) = futures_util::join!(login, join_all(writes));
    let logged = logged.unwrap();
    let mut landed = vec![0];
    for (i, w) in writes.into_iter().enumerate() {
        match w {
            Err(SessionError::SessionGone) => {}
            Ok(()) if !b.is_memory() => landed.push(i32::try_from(i).unwrap()),
            other => panic!("a write on the rotated id must not resurrect it: {other:?}"),
        }
    }
    let now = e.get::<i32>(&logged.id, "a", "k").await.unwrap().unwrap();
    assert!(landed.contains(&now), "{now} was never written before the rotation");
    assert_eq!(e.info(&s).await, Err(SessionError::SessionGone));
    assert!(e.destroy(&logged.id).await.unwrap());
    assert!(!e.destroy(&logged.id).await.unwrap());
    assert_eq!(e.insert(&logged.id, "a", "k", &1).await, Err(SessionError::SessionGone));
    if b.isolated() {
        assert_eq!(e.stats().await.unwrap().sessions, 0);
    }
}

async fn forged_and_foreign_ids_are_rejected_before_any_shard(b: Backend) {
    let e = b.engine(2).await;
    let real = e.create().await.unwrap().id;
    let mut text = real.to_string().into_bytes();
    text[31] = if text[31] == b'A' { b'B' } else { b'A' };
    let forged: SessionId = std::str::from_utf8(&text).unwrap().parse().unwrap();
    assert_eq!(e.get::<i32>(&forged, "a", "k").await, Err(SessionError::InvalidId));
    assert_eq!(e.parse_id(&text), Err(SessionError::InvalidId));
    assert_eq!(e.parse_id(b"short"), Err(SessionError::InvalidId));
    assert_eq!(e.parse_id(real.to_string().as_bytes()), Ok(real));

    let mut other_config = config(2);
    other_config.session.secret = Some("a different secret, also 32 bytes or more".into());
    let other = b.start(other_config, None).await;
    assert_eq!(other.info(&real).await, Err(SessionError::InvalidId));
    let ops_before = e.stats().await.unwrap().shards.iter().map(|s| s.operations).sum::<u64>();
    assert_eq!(e.destroy(&forged).await, Err(SessionError::InvalidId));
    let ops_after = e.stats().await.unwrap().shards.iter().map(|s| s.operations).sum::<u64>();
    assert_eq!(ops_before, ops_after, "a forged id must not reach a worker");
}

both!(
    login_needs_a_user_rotates_the_id_and_keeps_the_data,
    logout_resets_user_and_persistence_rotates_and_keeps_other_data,
    logout_clears_every_scope_when_configured,
    only_logged_in_sessions_can_be_persistent,
    operations_in_flight_on_a_rotated_or_destroyed_id_get_session_gone,
    forged_and_foreign_ids_are_rejected_before_any_shard
);

cluster!(
    login_needs_a_user_rotates_the_id_and_keeps_the_data,
    logout_resets_user_and_persistence_rotates_and_keeps_other_data,
    logout_clears_every_scope_when_configured,
    only_logged_in_sessions_can_be_persistent,
    operations_in_flight_on_a_rotated_or_destroyed_id_get_session_gone,
    forged_and_foreign_ids_are_rejected_before_any_shard
);
