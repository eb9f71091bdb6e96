//! No cache may keep a session cookie: every response that sets, rotates, refreshes (the daily
//! remember-me refresh) or removes it says `Cache-Control: no-store`, unless its handler chose a Cache-Control of its own; a response
//! that sets no cookie gets none added. Every test runs on the memory backend and on Redis.

use std::time::Duration;

use draco_session::ManualClock;
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

/// The once-a-day refresh of a remember-me cookie re-sends the unchanged cookie: that response
/// too says `no-store`, whichever route (one that writes, one that only reads) made it.
async fn the_daily_remember_me_refresh_is_no_store(b: Backend) {
    let clock = ManualClock::new(1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 + 3_600_000); // 01:00 UTC
    let f = fixture_with(b, |_| {}, Some(clock.clone())).await;
    let app = app!(f.engine);
    let sid = login(&app, None, true).await.sid();
    // The next day, a route that writes (the visit counter).
    clock.advance(Duration::from_secs(24 * 3600));
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    no_store(&r, "refresh on a write");
    assert_eq!(r.sid(), sid, "a refresh, not a rotation");
    assert!(r.cookie().unwrap().contains(&format!("Max-Age={PERSISTENT_TTL_SECS}")), "{:?}", r.set_cookies);
    // The day after, a route that only reads.
    clock.advance(Duration::from_secs(24 * 3600));
    let r = call(&app, with_sid(get("/api/ns/a/b"), &sid)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    no_store(&r, "refresh on a read");
    assert_eq!(r.sid(), sid);
    // Later that day: no cookie, so no Cache-Control added.
    clock.advance(Duration::from_secs(3600));
    let r = call(&app, with_sid(get("/api/ns/a/b"), &sid)).await;
    assert_eq!((r.set_cookies.len(), r.cache_control), (0, None));
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
    the_daily_remember_me_refresh_is_no_store,
    a_response_without_a_cookie_gets_no_cache_control,
    a_handlers_own_cache_control_is_kept
);
