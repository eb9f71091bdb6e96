//! Error statuses of the web layer: 401, 409, 413 and 400 from the demo's routes (413 also for
//! one key too many); internal errors an opaque 500 whose text never reaches the body (also
//! without the middleware); a stopped or full engine a 503 (full: for new visitors only). Every
//! test runs on the memory backend and on Redis; the full engine also on a Redis Cluster of its
//! own (`max_sessions` has its own code path there).

use actix_web::test::{self, TestRequest};
use actix_web::{App, web};
use serde_json::{Value, json};

use crate::support::*;
use draco_session::ManualClock;

async fn statuses_401_409_413_400(b: Backend) {
    let f = fixture_with(b, |c| c.limits.max_value_bytes = 1024, None).await;
    let app = app!(f.engine);
    // 401: bad credentials, and no session is made for them.
    let r = call(&app, post("/api/login").set_json(json!({"username": "alice", "password": "nope"}))).await;
    assert_eq!(r.status, 401);
    assert!(r.set_cookies.is_empty());
    assert_eq!(live_sessions(&f.engine).await, 0);
    // 409: remember-me while anonymous, with and without a session.
    let r = call(&app, post("/api/persistent").set_json(json!({"persistent": true}))).await;
    assert_eq!(r.status, 409);
    let sid = new_session(&app).await;
    let r = call(&app, with_sid(post("/api/persistent"), &sid).set_json(json!({"persistent": true}))).await;
    assert_eq!(r.status, 409);
    assert!(r.set_cookies.is_empty());
    // 413: a value over limits.max_value_bytes (engine), and a body far over it (reader).
    let put = |body: Value| {
        with_sid(TestRequest::put().uri("/api/ns/a/big").insert_header(("user-agent", BROWSER)), &sid).set_json(body)
    };
    assert_eq!(call(&app, put(json!("x".repeat(2000)))).await.status, 413);
    assert_eq!(call(&app, put(json!("x".repeat(100_000)))).await.status, 413);
    // 400: malformed JSON, wrong shapes.
    let raw = |uri: &str, body: &'static str| {
        with_sid(post(uri), &sid).insert_header(("content-type", "application/json")).set_payload(body)
    };
    assert_eq!(call(&app, raw("/api/login", "{\"username\": ")).await.status, 400);
    assert_eq!(call(&app, raw("/api/persistent", "{\"persistent\": \"yes\"}")).await.status, 400);
    let r = call(
        &app,
        with_sid(TestRequest::put().uri("/api/ns/a/b").insert_header(("user-agent", BROWSER)), &sid)
            .insert_header(("content-type", "application/json"))
            .set_payload("{nope"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].is_string());
    // 400: an over-long scope name.
    let long = "s".repeat(300);
    assert_eq!(call(&app, with_sid(get(&format!("/api/ns/{long}/k")), &sid)).await.status, 400);
}

async fn internal_error_text_never_reaches_the_body(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    // A stored value of the wrong type is the data's doing: a 409 with a fixed text, never
    // the decoder's message (which quotes the data).
    let r = call(&app, post("/test/boom/codec")).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body, "the stored value is not of the type this request expects: nothing was changed");
    let sid = r.sid(); // the session was created before the failure, so its cookie is sent
    let r = call(&app, with_sid(post("/test/boom/panic"), &sid)).await;
    assert_eq!(r.status, 500);
    assert!(!r.body.contains("SECRET") && !r.body.contains("panick"), "{}", r.body);
    assert_eq!(r.body, "internal server error");
}

async fn stopped_engine_is_a_503_not_a_500(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    f.engine.shutdown().await;
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!(r.status, 503);
    assert!(!r.body.contains("stopped"), "{}", r.body);
    let r = call(&app, get("/api/session")).await;
    assert_eq!(r.status, 503);
}

async fn missing_middleware_is_an_opaque_500(_: Backend) {
    let app =
        test::init_service(App::new().route("/test/maybe", web::get().to(maybe)).route("/x", web::post().to(destroy)))
            .await;
    let r = call(&app, post("/x")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "internal server error");
}

async fn a_full_engine_is_a_503_for_new_visitors_only(b: Backend) {
    let f = fixture_with(b, |c| c.limits.max_sessions = 1, None).await;
    full_engine_is_a_503_for_new_visitors_only(&f.engine).await;
}

/// The checks of [`a_full_engine_is_a_503_for_new_visitors_only`] on `engine`, started with
/// `limits.max_sessions = 1` on an empty store.
async fn full_engine_is_a_503_for_new_visitors_only(engine: &draco_session::SessionEngine) {
    let app = app!(engine);
    let sid = new_session(&app).await;
    let r = call(&app, get("/api/session")).await;
    assert_eq!(r.status, 503);
    assert!(r.set_cookies.is_empty());
    assert!(!r.body.contains("max_sessions"), "{}", r.body);
    assert_eq!(call(&app, with_sid(get("/api/session"), &sid)).await.json()["visits"], 2);
}

/// One key more than `limits.max_keys` (over all scopes, the demo's own visit counter
/// included) is a 413 that names no limit and changes nothing; replacing a key adds none, and
/// a removed key makes room.
async fn a_key_past_max_keys_is_a_413_and_changes_nothing(b: Backend) {
    const MAX_KEYS: usize = 4;
    let f = fixture_with(b, |c| c.limits.max_keys = MAX_KEYS, None).await;
    let app = app!(f.engine);
    let put = |sid: &str, key: &str, body: Value| {
        with_sid(TestRequest::put().uri(&format!("/api/ns/a/{key}")).insert_header(("user-agent", BROWSER)), sid)
            .set_json(body)
    };
    let sid = new_session(&app).await;
    // The visit counter is the session's first key: three more fit.
    for k in 1..MAX_KEYS {
        let r = call(&app, put(&sid, &format!("k{k}"), json!(k))).await;
        assert_eq!(r.status, 200, "key {k} of {MAX_KEYS}: {}", r.body);
    }
    let r = call(&app, put(&sid, "k4", json!(4))).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.set_cookies.is_empty(), "{:?}", r.set_cookies);
    assert!(!r.body.contains("max_keys"), "{}", r.body);
    assert_eq!(call(&app, with_sid(get("/api/ns/a/k4"), &sid)).await.status, 404, "nothing written");
    for k in 1..MAX_KEYS {
        assert_eq!(call(&app, with_sid(get(&format!("/api/ns/a/k{k}")), &sid)).await.json()["value"], json!(k));
    }
    // A key of another scope counts as well.
    let other = with_sid(TestRequest::put().uri("/api/ns/b/k").insert_header(("user-agent", BROWSER)), &sid);
    assert_eq!(call(&app, other.set_json(json!(1))).await.status, 413);
    // Replacing a key adds none; removing one makes room.
    assert_eq!(call(&app, put(&sid, "k1", json!("again"))).await.status, 200);
    let delete = with_sid(
        TestRequest::delete()
            .uri("/api/ns/a/k1")
            .insert_header(("user-agent", BROWSER))
            .insert_header(("content-type", "application/json")),
        &sid,
    );
    assert_eq!(call(&app, delete).await.status, 200);
    assert_eq!(call(&app, put(&sid, "k4", json!(4))).await.status, 200);
    assert_eq!(call(&app, with_sid(get("/api/ns/a/k4"), &sid)).await.json()["value"], json!(4));
}

async fn a_session_over_max_session_bytes_is_a_413_and_keeps_its_values(b: Backend) {
    let f = fixture_with(
        b,
        |c| {
            c.limits.max_value_bytes = 1024;
            c.limits.max_session_bytes = 2048;
        },
        None,
    )
    .await;
    let app = app!(f.engine);
    let put = |sid: &str, key: &str, body: Value| {
        with_sid(TestRequest::put().uri(&format!("/api/ns/a/{key}")).insert_header(("user-agent", BROWSER)), sid)
            .set_json(body)
    };
    let sid = new_session(&app).await;
    let (v1, v2) = ("x".repeat(900), "y".repeat(900));
    assert_eq!(call(&app, put(&sid, "v1", json!(v1))).await.status, 200);
    assert_eq!(call(&app, put(&sid, "v2", json!(v2))).await.status, 200);
    // Each value is under max_value_bytes; the third would take the session past 2048 bytes.
    let r = call(&app, put(&sid, "v3", json!("z".repeat(900)))).await;
    assert_eq!(r.status, 413);
    assert!(!r.body.contains("max_session_bytes"), "{}", r.body);
    assert_eq!(call(&app, with_sid(get("/api/ns/a/v1"), &sid)).await.json()["value"], json!(v1));
    assert_eq!(call(&app, with_sid(get("/api/ns/a/v2"), &sid)).await.json()["value"], json!(v2));
    assert_eq!(call(&app, with_sid(get("/api/ns/a/v3"), &sid)).await.status, 404);
    // A smaller value frees room.
    assert_eq!(call(&app, put(&sid, "v1", json!("x"))).await.status, 200);
    assert_eq!(call(&app, put(&sid, "v3", json!("z".repeat(900)))).await.status, 200);
}

/// `limits.create_rate`: the burst of new sessions from one address, then 429 with
/// `Retry-After` and no cookie; returning sessions, requests that create none and other
/// addresses are not limited; after the refill, creation works again.
async fn new_sessions_past_create_rate_are_a_429(b: Backend) {
    let clock = ManualClock::new(1_700_000_000_000);
    let f = fixture_with(b, |c| c.limits.create_rate = Some("3/m".parse().unwrap()), Some(clock.clone())).await;
    let app = app!(f.engine);
    let from = |req: TestRequest, ip: &str| req.peer_addr(format!("{ip}:40000").parse().unwrap());
    let mut sids = Vec::new();
    for _ in 0..3 {
        let r = call(&app, from(post("/api/incr/n"), "198.51.100.7")).await;
        assert_eq!(r.status, 200);
        sids.push(r.sid());
    }
    let res = test::call_service(&app, from(post("/api/incr/n"), "198.51.100.7").to_request()).await;
    assert_eq!(res.status(), 429);
    // One token every 20 s.
    assert_eq!(res.headers().get("retry-after").unwrap(), "20");
    assert!(res.headers().get("set-cookie").is_none());
    let r = call(&app, from(get("/api/session"), "198.51.100.7")).await;
    assert_eq!(r.status, 429);
    assert!(r.set_cookies.is_empty());
    assert_eq!(live_sessions(&f.engine).await, 3);
    // Returning sessions go on; a request that creates nothing is never limited.
    for sid in &sids {
        for _ in 0..5 {
            assert_eq!(call(&app, with_sid(from(post("/api/incr/n"), "198.51.100.7"), sid)).await.status, 200);
        }
    }
    assert_eq!(call(&app, from(get("/api/ns/a/k"), "198.51.100.7")).await.status, 404);
    // Another address has its own budget.
    assert_eq!(call(&app, from(post("/api/incr/n"), "203.0.113.9")).await.status, 200);
    // After the refill: one more, then limited again.
    clock.advance(std::time::Duration::from_secs(20));
    assert_eq!(call(&app, from(post("/api/incr/n"), "198.51.100.7")).await.status, 200);
    assert_eq!(call(&app, from(post("/api/incr/n"), "198.51.100.7")).await.status, 429);
    assert_eq!(live_sessions(&f.engine).await, 5);
}

both!(
    a_key_past_max_keys_is_a_413_and_changes_nothing,
    a_session_over_max_session_bytes_is_a_413_and_keeps_its_values,
    new_sessions_past_create_rate_are_a_429,
    statuses_401_409_413_400,
    internal_error_text_never_reaches_the_body,
    stopped_engine_is_a_503_not_a_500,
    missing_middleware_is_an_opaque_500,
    a_full_engine_is_a_503_for_new_visitors_only
);

/// The engine-wide cap on a Redis Cluster: there the engine sums `DBSIZE` over the primaries
/// before a creating script runs (on one server the script checks it), so it has a test of its
/// own. On a cluster of its own: the shared one's keyspace holds every other test's sessions.
#[cfg(feature = "redis")]
mod redis_cluster {
    #[actix_web::test]
    async fn a_full_engine_is_a_503_for_new_visitors_only() {
        let cluster = crate::support::redis_server::RedisCluster::start();
        let (mut config, _dir) = crate::support::config(|c| c.limits.max_sessions = 1);
        config.storage.backend = draco_session::config::StorageBackend::Redis;
        config.storage.redis_cluster = true;
        config.storage.redis_url = cluster.urls();
        let engine = draco_session::SessionEngine::start_async(config).await.unwrap();
        super::full_engine_is_a_503_for_new_visitors_only(&engine).await;
        engine.shutdown().await;
    }
}
