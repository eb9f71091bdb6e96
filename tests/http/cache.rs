//! No cache may keep a session cookie: every response that sets, rotates or removes it says
//! `Cache-Control: no-store`, unless its handler chose a Cache-Control of its own; a response
//! that sets no cookie gets none added. Every test runs on the memory backend and on Redis.

use serde_json::json;

use crate::support::*;

/// `r` sets (or removes) the cookie and forbids caching it.
fn no_store(r: &Reply, what: &str) {
    assert!(r.cookie().is_some(), "{what}: {:?}", r.set_cookies);
    assert_eq!(r.cache_control.as_deref(), Some("no-store"), "{what}");
}

async fn every_cookie_change_is_no_store(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    // A new session.
    let r = call(&app, get("/api/session")).await;
    no_store(&r, "new session");
    let sid = r.sid();
    // Login rotates the id.
    let r = login(&app, Some(&sid), false).await;
    no_store(&r, "login");
    assert_eq!(r.set_cookies.len(), 2, "and the fresh-login marker: {:?}", r.set_cookies);
    let sid = r.sid();
    // A persistence change re-sends the cookie with a Max-Age.
    let r = call(&app, with_sid(post("/api/persistent"), &sid).set_json(json!({"persistent": true}))).await;
    no_store(&r, "set_persistent");
    // Logout rotates again.
    let r = call(&app, with_sid(post("/api/logout"), &sid)).await;
    no_store(&r, "logout");
    let sid = r.sid();
    // Destroy removes the cookie.
    let r = call(&app, with_sid(post("/test/destroy"), &sid)).await;
    assert!(r.cookie().unwrap().contains("Max-Age=0"));
    no_store(&r, "destroy");
}

async fn a_response_without_a_cookie_gets_no_cache_control(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    for req in [get("/api/session"), post("/api/incr/n"), get("/api/ns/stats/visits")] {
        let r = call(&app, with_sid(req, &sid)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
        assert_eq!(r.cache_control, None);
    }
    // Nor a request that never had a session.
    let r = call(&app, get("/api/ns/a/b")).await;
    assert_eq!((r.set_cookies.len(), r.cache_control), (0, None));
}

async fn a_handlers_own_cache_control_is_kept(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = call(&app, get("/test/own-cache-control")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.set_cookies.len(), 1, "the first write sets the cookie");
    assert_eq!(r.cache_control.as_deref(), Some("private, max-age=60"));
}

both!(
    every_cookie_change_is_no_store,
    a_response_without_a_cookie_gets_no_cache_control,
    a_handlers_own_cache_control_is_kept
);
