//! Error statuses of the web layer: 401, 409, 413 and 400 from the demo's routes; internal
//! errors an opaque 500 whose text never reaches the body (also without the middleware); a
//! stopped or full engine a 503 (full: for new visitors only). Every test runs on the memory
//! backend and on Redis.

#[macro_use]
#[path = "support/http.rs"]
mod support;

use actix_web::test::{self, TestRequest};
use actix_web::{App, web};
use serde_json::{Value, json};

use support::*;

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
    let r = call(&app, post("/test/boom/codec")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "internal server error");
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
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let r = call(&app, get("/api/session")).await;
    assert_eq!(r.status, 503);
    assert!(r.set_cookies.is_empty());
    assert!(!r.body.contains("max_sessions"), "{}", r.body);
    assert_eq!(call(&app, with_sid(get("/api/session"), &sid)).await.json()["visits"], 2);
}

both!(
    statuses_401_409_413_400,
    internal_error_text_never_reaches_the_body,
    stopped_engine_is_a_503_not_a_500,
    missing_middleware_is_an_opaque_500,
    a_full_engine_is_a_503_for_new_visitors_only
);
