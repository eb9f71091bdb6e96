//! The memory budget over HTTP (memory backend): a flood of new visitors writing 60 KB each
//! into an engine of `limits.max_memory = "1MiB"` is served (the least recently used anonymous
//! sessions evicted) and leaves a logged-in session intact; once logged-in sessions fill the
//! budget, a new visitor and a growing write are answered 503 with `Retry-After`; an anonymous
//! session over `limits.max_anonymous_session_bytes` is a 413 a logged-in one does not get.

use actix_web::test::TestRequest;
use serde_json::{Value, json};

use crate::support::*;

fn put(sid: Option<&str>, key: &str, body: Value) -> TestRequest {
    let req = TestRequest::put().uri(&format!("/api/ns/a/{key}")).insert_header(("user-agent", BROWSER)).set_json(body);
    match sid {
        Some(sid) => with_sid(req, sid),
        None => req,
    }
}

/// One shard of 1 MiB.
fn budget(c: &mut draco_session::Config) {
    c.session.shards = 1;
    c.limits.max_memory = 1 << 20;
    // Every login here is alice's: without this the default ends her oldest sessions.
    c.limits.max_sessions_per_user = 0;
}

async fn a_flood_of_new_visitors_is_served_within_the_budget_and_a_logged_in_session_stays(b: Backend) {
    let f = fixture_with(b, budget, None).await;
    let app = app!(f.engine);
    let user = login(&app, None, false).await.sid();
    let big = "u".repeat(60_000);
    assert_eq!(call(&app, put(Some(&user), "k", json!(big))).await.status, 200);
    let blob = json!("f".repeat(60_000));
    for _ in 0..100 {
        let r = call(&app, put(None, "blob", blob.clone())).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.set_cookies.len(), 1);
    }
    let stats = f.engine.stats().await.unwrap();
    assert!(stats.sessions < 30, "{}", stats.sessions);
    assert!(stats.shards[0].evicted > 70, "{:?}", stats.shards[0]);
    let r = call(&app, with_sid(get("/api/ns/a/k"), &user)).await;
    assert_eq!((r.status.as_u16(), &r.json()["value"]), (200, &json!(big)));
}

async fn a_budget_full_of_logged_in_sessions_is_a_503_with_retry_after(b: Backend) {
    let f = fixture_with(b, budget, None).await;
    let app = app!(f.engine);
    let big = json!("x".repeat(60_000));
    let mut users = Vec::new();
    let refused = loop {
        let r = login(&app, None, false).await;
        if r.status != 200 {
            break r.status;
        }
        let sid = r.sid();
        users.push(sid.clone());
        let r = call(&app, put(Some(&sid), "k", big.clone())).await;
        if r.status != 200 {
            break r.status;
        }
        assert!(users.len() < 100, "never refused");
    };
    assert_eq!(refused, 503);
    let _ = call(&app, put(Some(&users[0]), "fill", big.clone())).await;
    // A new visitor's write, and a logged-in session's growing write: 503, Retry-After, no cookie.
    for (sid, key) in [(None, "k"), (Some(users[0].as_str()), "more")] {
        let (status, headers, body) = respond(&app, put(sid, key, big.clone())).await;
        assert_eq!(status, 503, "{body}");
        assert!(headers.get("retry-after").is_some(), "{headers:?}");
        assert!(headers.get("set-cookie").is_none(), "{headers:?}");
        assert!(!body.contains("max_memory"), "{body}");
    }
    // Nothing was lost.
    for sid in &users[1..users.len() - 1] {
        assert_eq!(call(&app, with_sid(get("/api/ns/a/k"), sid)).await.json()["value"], big);
    }
}

async fn an_anonymous_session_past_max_anonymous_session_bytes_is_a_413(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let half = json!("h".repeat(40_000));
    let r = call(&app, put(None, "one", half.clone())).await;
    assert_eq!(r.status, 200);
    let sid = r.sid();
    // 80 KB in all: over 64 KiB for an anonymous session, well under 1 MiB for a logged-in one.
    assert_eq!(call(&app, put(Some(&sid), "two", half.clone())).await.status, 413);
    assert_eq!(call(&app, with_sid(get("/api/ns/a/two"), &sid)).await.status, 404);
    let sid = login(&app, Some(&sid), false).await.sid();
    assert_eq!(call(&app, put(Some(&sid), "two", half.clone())).await.status, 200);
    assert_eq!(call(&app, with_sid(get("/api/ns/a/one"), &sid)).await.json()["value"], half);
}

/// The budget is memory only: on Redis the server's `maxmemory` is the budget (SECURITY.md).
/// The anonymous size runs on both backends (`redis` below).
mod memory {
    #[actix_web::test]
    async fn a_flood_of_new_visitors_is_served_within_the_budget_and_a_logged_in_session_stays() {
        super::a_flood_of_new_visitors_is_served_within_the_budget_and_a_logged_in_session_stays(super::Backend::Memory)
            .await
    }

    #[actix_web::test]
    async fn a_budget_full_of_logged_in_sessions_is_a_503_with_retry_after() {
        super::a_budget_full_of_logged_in_sessions_is_a_503_with_retry_after(super::Backend::Memory).await
    }

    #[actix_web::test]
    async fn an_anonymous_session_past_max_anonymous_session_bytes_is_a_413() {
        super::an_anonymous_session_past_max_anonymous_session_bytes_is_a_413(super::Backend::Memory).await
    }
}

#[cfg(feature = "redis")]
mod redis {
    #[actix_web::test]
    async fn an_anonymous_session_past_max_anonymous_session_bytes_is_a_413() {
        super::an_anonymous_session_past_max_anonymous_session_bytes_is_a_413(super::Backend::Redis).await
    }
}
