//! Values through the engine API, without HTTP: namespaces independent of each other and of
//! the default scope, typed round trips (and a clear error for the wrong type or a bad name),
//! the engine's messages sent directly, and `increment`'s edge cases alike on both backends.
//! Each test runs on memory, Redis and Redis Cluster (see `support/engine.rs`).

use draco_session::SessionError;

use crate::support::*;

async fn namespaces_are_independent_and_default_scope_is_system(b: Backend) {
    let e = b.engine(2).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "__system__", "k", &1).await.unwrap();
    e.insert(&s, "cart", "k", &"book").await.unwrap();
    e.insert(&s, "cart", "n", &2).await.unwrap();
    assert_eq!(e.get::<i32>(&s, "__system__", "k").await.unwrap(), Some(1));
    assert_eq!(e.get::<String>(&s, "cart", "k").await.unwrap().as_deref(), Some("book"));
    assert_eq!(e.keys(&s, "cart").await.unwrap(), ["k", "n"]);
    assert!(e.remove(&s, "cart", "k").await.unwrap());
    assert!(!e.remove(&s, "cart", "k").await.unwrap());
    assert_eq!(e.get::<i32>(&s, "__system__", "k").await.unwrap(), Some(1));
    e.clear(&s, Some("cart")).await.unwrap();
    assert!(e.keys(&s, "cart").await.unwrap().is_empty());
    assert_eq!(e.keys(&s, "__system__").await.unwrap(), ["k"]);
    e.clear(&s, None).await.unwrap();
    assert!(e.keys(&s, "__system__").await.unwrap().is_empty());
    assert_eq!(draco_session::limits::DEFAULT_SCOPE, "__system__");
}

async fn values_round_trip_as_typed_and_reject_the_wrong_type(b: Backend) {
    let e = b.engine(1).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "a", "v", &vec![1u8, 2, 3]).await.unwrap();
    assert_eq!(e.get::<Vec<u8>>(&s, "a", "v").await.unwrap(), Some(vec![1, 2, 3]));
    assert!(matches!(e.get::<String>(&s, "a", "v").await, Err(SessionError::WrongType(_))));
    assert_eq!(e.get::<i32>(&s, "a", "absent").await.unwrap(), None);
    assert!(matches!(e.insert(&s, "", "k", &1).await, Err(SessionError::InvalidName { what: "scope", .. })));
    assert!(matches!(e.insert(&s, "a", &"k".repeat(300), &1).await, Err(SessionError::InvalidName { .. })));
}

async fn messages_can_be_sent_directly(b: Backend) {
    let e = b.engine(2).await;
    let (user, nobody) = (b.user(5), b.user(1));
    let s = e.create().await.unwrap().id;
    e.send(draco_session::message::Set { id: s, scope: "m".into(), key: "k".into(), value: b"[1,2]".to_vec() })
        .await
        .unwrap();
    let raw = e.send(draco_session::message::Get { id: s, scope: "m".into(), key: "k".into() }).await.unwrap();
    assert_eq!(raw.as_deref(), Some(&b"[1,2]"[..]));
    let logged = e.send(draco_session::message::Login { id: s, userid: user }).await.unwrap();
    assert_eq!(e.send(draco_session::message::Info { id: s }).await, Err(SessionError::SessionGone));
    assert_eq!(e.send(draco_session::message::Info { id: logged.id }).await.unwrap().userid, user);
    let second =
        e.send(draco_session::message::Login { id: e.create().await.unwrap().id, userid: user }).await.unwrap();
    assert_eq!(e.send(draco_session::message::LogoutOthers { id: second.id }).await.unwrap(), 1);
    assert_eq!(e.send(draco_session::message::Info { id: logged.id }).await, Err(SessionError::SessionGone));
    let logged =
        e.send(draco_session::message::Login { id: e.create().await.unwrap().id, userid: user }).await.unwrap();
    assert!(e.send(draco_session::message::Destroy { id: second.id }).await.unwrap());
    // Engine-wide messages too, on either backend.
    let n = e.send(draco_session::message::LogoutUser { userid: nobody }).await.unwrap();
    assert_eq!(n, 0);
    assert_eq!(e.send(draco_session::message::LogoutUser { userid: user }).await.unwrap(), 1);
    assert_eq!(e.send(draco_session::message::Info { id: logged.id }).await, Err(SessionError::SessionGone));
}

both!(
    namespaces_are_independent_and_default_scope_is_system,
    values_round_trip_as_typed_and_reject_the_wrong_type,
    messages_can_be_sent_directly
);

cluster!(
    namespaces_are_independent_and_default_scope_is_system,
    values_round_trip_as_typed_and_reject_the_wrong_type,
    messages_can_be_sent_directly
);

/// Redis only: what the memory backend has no counterpart for.
#[cfg(feature = "redis")]
mod redis_only {
    use super::*;

    /// Values that are not plain integers take the general update path, with the same errors.
    #[actix_rt::test]
    async fn increment_edge_cases_match_the_memory_backend() {
        for backend in [Backend::Memory, Backend::Redis] {
            let e = backend.engine(1).await;
            let s = e.create().await.unwrap().id;
            e.insert(&s, "c", "text", &"x").await.unwrap();
            assert!(matches!(e.increment(&s, "c", "text", 1).await, Err(SessionError::WrongType(_))), "{backend:?}");
            e.insert(&s, "c", "big", &(i64::MAX - 1)).await.unwrap();
            assert_eq!(e.increment(&s, "c", "big", 5).await.unwrap(), i64::MAX, "{backend:?}");
            assert_eq!(e.increment(&s, "c", "neg", -7).await.unwrap(), -7, "{backend:?}");
            assert_eq!(e.increment(&s, "c", "neg", i64::MIN).await.unwrap(), i64::MIN, "{backend:?}");
            assert_eq!(e.get::<i64>(&s, "c", "neg").await.unwrap(), Some(i64::MIN), "{backend:?}");
        }
    }
}
