//! When the web layer makes a session and its cookie, and what the cookie says: read-only
//! visits make neither, the first write sets a volatile cookie with every attribute (or the
//! configured ones), `Set-Cookie` only when the cookie changes, a remember-me cookie refreshed
//! at most once a day, an expired session is no session, and `destroy` sends a removal cookie.
//! Every test runs on the memory backend and on Redis.

use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{App, web};
use draco_session::{ManualClock, SessionEngine, SessionMiddleware};
use serde_json::json;

use crate::support::*;

async fn read_only_visits_create_no_session_and_no_cookie(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    for req in [get("/api/ns/cart/items"), post("/api/logout"), delete("/api/ns/a/b")] {
        let r = call(&app, req).await;
        assert!(r.status == 404 || r.status == 200, "{}", r.status);
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    }
    assert_eq!(live_sessions(&f.engine).await, 0);
}

async fn first_write_sets_a_volatile_cookie_with_every_attribute(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = call(&app, get("/api/session")).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["available"], true);
    assert_eq!(v["visits"], 1);
    assert_eq!(v["userid"], 0);
    assert_eq!(v["persistent"], false);
    let cookie = r.cookie().unwrap();
    assert_eq!(v["session_id"], r.sid());
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Max-Age") && !cookie.contains("Expires"), "{cookie}");
    assert_eq!(live_sessions(&f.engine).await, 1);
}

async fn cookie_attributes_follow_the_config(b: Backend) {
    let f = fixture_with(
        b,
        |c| {
            c.cookie.name = "app_sid".into();
            c.cookie.path = "/app".into();
            c.cookie.domain = Some("example.test".into());
            c.cookie.same_site = draco_session::config::SameSite::Strict;
            c.cookie.secure = false;
        },
        None,
    )
    .await;
    let app = test::init_service(App::new().service(
        web::scope("/app").wrap(SessionMiddleware::new(f.engine.clone())).configure(|cfg| app::configure(cfg, 65536)),
    ))
    .await;
    let r = call(&app, get("/app/api/session")).await;
    let cookie = r.cookie().unwrap().to_owned();
    assert!(cookie.starts_with("app_sid="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/app", "Domain=example.test"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    // The configured name is the one read back; `sid` means nothing here.
    let sid = cookie["app_sid=".len()..].split(';').next().unwrap().to_owned();
    let r = call(&app, get("/app/api/session").insert_header(("cookie", format!("sid=x; app_sid={sid}")))).await;
    assert_eq!(r.json()["visits"], 2);
    assert!(r.set_cookies.is_empty());
}

async fn set_cookie_only_when_the_cookie_changes(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    // Reads and writes on an existing session: no Set-Cookie.
    for req in [get("/api/session"), post("/api/incr/x"), get("/"), get("/api/ns/a/b")] {
        let r = call(&app, with_sid(req, &sid)).await;
        assert!(r.status.is_success() || r.status == 404);
        assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    }
    // Persistence toggles: a cookie each time it really changes, none when it stays.
    let r = login(&app, Some(&sid), false).await;
    let sid = r.sid();
    let set = |p: bool| with_sid(post("/api/persistent"), &sid).set_json(json!({ "persistent": p }));
    let r = call(&app, set(true)).await;
    assert!(r.cookie().unwrap().contains(&format!("Max-Age={PERSISTENT_TTL_SECS}")));
    assert!(call(&app, set(true)).await.set_cookies.is_empty());
    let r = call(&app, set(false)).await;
    assert!(!r.cookie().unwrap().contains("Max-Age"));
    assert!(call(&app, set(false)).await.set_cookies.is_empty());
}

async fn persistent_cookie_is_refreshed_at_most_once_a_day(b: Backend) {
    let clock = ManualClock::new(1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 + 3_600_000); // 01:00 UTC
    let f = fixture_with(b, |_| {}, Some(clock.clone())).await;
    let app = app!(f.engine);
    let sid = login(&app, None, true).await.sid();
    clock.advance(Duration::from_secs(6 * 3600));
    assert!(call(&app, with_sid(get("/api/session"), &sid)).await.set_cookies.is_empty());
    clock.advance(Duration::from_secs(20 * 3600)); // the next day
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!(r.sid(), sid, "a refresh keeps the id");
    assert!(r.cookie().unwrap().contains(&format!("Max-Age={PERSISTENT_TTL_SECS}")));
    // Later that day: nothing again, even from a route that only reads.
    clock.advance(Duration::from_secs(3600));
    assert!(call(&app, with_sid(get("/api/session"), &sid)).await.set_cookies.is_empty());
    assert!(call(&app, with_sid(get("/api/ns/a/b"), &sid)).await.set_cookies.is_empty());
}

async fn expired_session_is_no_session(b: Backend) {
    let clock = ManualClock::new(1_800_000_000_000);
    let f = fixture_with(b, |_| {}, Some(clock.clone())).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    clock.advance(Duration::from_secs(3 * 3600));
    let r = call(&app, with_sid(get("/api/ns/stats/visits"), &sid)).await;
    assert_eq!(r.status, 404);
    assert!(r.set_cookies.is_empty());
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!(r.json()["visits"], 1);
    assert_ne!(r.sid(), sid);
}

async fn destroy_sends_a_removal_cookie_and_the_id_is_dead(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let r = call(&app, with_sid(post("/test/destroy"), &sid)).await;
    assert_eq!(r.body, "true");
    let cookie = r.cookie().unwrap();
    assert!(cookie.starts_with("sid=;") && cookie.contains("Max-Age=0"), "{cookie}");
    assert_eq!(live_sessions(&f.engine).await, 0);
    let r = call(&app, with_sid(post("/test/destroy"), &sid)).await;
    assert_eq!(r.body, "false");
    // Without any cookie there is nothing to remove.
    assert!(call(&app, post("/test/destroy")).await.set_cookies.is_empty());
}

async fn a_host_prefixed_cookie_works_end_to_end(b: Backend) {
    let f = fixture_with(b, |c| c.cookie.name = "__Host-sid".into(), None).await;
    let app = app!(f.engine);
    let r = call(&app, get("/api/session")).await;
    let cookie = r.cookie().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-sid="), "{cookie}");
    // What browsers require of a __Host- cookie, or they drop it.
    for attr in ["; Secure", "; Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    // Sent back as a browser would over HTTPS (the test client keeps no cookies itself).
    let sid = cookie["__Host-sid=".len()..].split(';').next().unwrap().to_owned();
    let back = |req: TestRequest| req.insert_header(("cookie", format!("__Host-sid={sid}")));
    let r = call(&app, back(get("/api/session"))).await;
    assert_eq!((r.json()["visits"].as_i64(), r.set_cookies.len()), (Some(2), 0));
    let r = call(&app, back(post("/api/login")).set_json(json!({"username": "bob", "password": "builder"}))).await;
    assert_eq!(r.json()["userid"], 2);
    let rotated = r.cookie().unwrap();
    assert!(rotated.starts_with("__Host-sid=") && !rotated.starts_with(&format!("__Host-sid={sid}")), "{rotated}");
    let r = call(&app, back(post("/test/destroy"))).await;
    assert!(r.cookie().unwrap().starts_with("__Host-sid=;"), "{:?}", r.set_cookies);
}

/// A control character in `cookie.path` or `cookie.domain` used to pass the checks and then
/// make every `Set-Cookie` panic; now the engine refuses to start, naming the key.
#[actix_web::test]
async fn unsafe_cookie_path_or_domain_stops_start_up() {
    for (edit, key) in [
        (
            Box::new(|c: &mut draco_session::Config| c.cookie.path = "/app\u{1}".into()) as Box<dyn Fn(&mut _)>,
            "cookie.path",
        ),
        (Box::new(|c: &mut draco_session::Config| c.cookie.path = "/a\r\nX: y".into()), "cookie.path"),
        (Box::new(|c: &mut draco_session::Config| c.cookie.domain = Some("example.com\u{7f}".into())), "cookie.domain"),
        (Box::new(|c: &mut draco_session::Config| c.cookie.domain = Some("a b.com".into())), "cookie.domain"),
    ] {
        let (config, _dir) = config(|c| edit(c));
        let e = SessionEngine::start(config).expect_err("an unsafe cookie attribute must stop start-up").to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
}

both!(
    read_only_visits_create_no_session_and_no_cookie,
    first_write_sets_a_volatile_cookie_with_every_attribute,
    cookie_attributes_follow_the_config,
    set_cookie_only_when_the_cookie_changes,
    persistent_cookie_is_refreshed_at_most_once_a_day,
    expired_session_is_no_session,
    destroy_sends_a_removal_cookie_and_the_id_is_dead,
    a_host_prefixed_cookie_works_end_to_end
);
