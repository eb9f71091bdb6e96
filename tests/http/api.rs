//! Session values through HTTP: the demo's JSON value routes (put, get, delete per namespace),
//! the default scope beside namespaces in a handler, concurrent increments on one session, and
//! a `Session` usable from `Send` futures. Every test runs on the memory backend and on Redis.

use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse, web};
use draco_session::{Session, SessionMiddleware, WebError};
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::support::*;

async fn namespace_routes_put_get_delete(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let put = |uri: &str, v: Value| TestRequest::put().uri(uri).insert_header(("user-agent", BROWSER)).set_json(v);
    let r = call(&app, put("/api/ns/cart/items", json!({"n": 2}))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["value"], json!({"n": 2}));
    let sid = r.sid();
    assert_eq!(call(&app, with_sid(get("/api/ns/cart/items"), &sid)).await.json()["value"], json!({"n": 2}));
    assert_eq!(call(&app, with_sid(get("/api/ns/other/items"), &sid)).await.status, 404, "scopes are independent");
    let del = || with_sid(delete("/api/ns/cart/items"), &sid);
    assert_eq!(call(&app, del()).await.status, 200);
    assert_eq!(call(&app, del()).await.status, 404);
    assert_eq!(call(&app, with_sid(get("/api/ns/cart/items"), &sid)).await.status, 404);
}

async fn default_scope_and_namespaces_are_independent(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let v = call(&app, post("/test/scopes")).await.json();
    assert_eq!(v, json!({"a": 1, "b": 2, "keys": ["k"], "after": null, "cart": ["k"]}));
}

async fn two_hundred_concurrent_increments_lose_nothing(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let replies = join_all((0..200).map(|_| call(&app, with_sid(post("/api/incr/hits"), &sid)))).await;
    let mut values: Vec<i64> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200);
            assert!(r.set_cookies.is_empty());
            r.json()["value"].as_i64().unwrap()
        })
        .collect();
    values.sort_unstable();
    assert_eq!(values, (1..=200).collect::<Vec<_>>());
    assert_eq!(call(&app, with_sid(get("/api/ns/counters/hits"), &sid)).await.json()["value"], 200);
}

async fn the_handle_and_its_futures_are_send(b: Backend) {
    fn send<T: Send>(_: &T) {}
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    send_sync_clone::<Session>();
    send_sync_clone::<draco_session::Namespace>();
    async fn handler(session: Session) -> Result<HttpResponse, WebError> {
        let task = {
            let session = session.clone();
            async move { session.namespace("bg").increment("n", 1).await }
        };
        send(&task);
        send(&session.login(7));
        let n = task.await?;
        Ok(HttpResponse::Ok().body(n.to_string()))
    }
    let f = fixture(b).await;
    let app = test::init_service(
        App::new().wrap(SessionMiddleware::new(f.engine.clone())).route("/", web::get().to(handler)),
    )
    .await;
    assert_eq!(call(&app, get("/")).await.body, "1");
}

both!(
    namespace_routes_put_get_delete,
    default_scope_and_namespaces_are_independent,
    two_hundred_concurrent_increments_lose_nothing,
    the_handle_and_its_futures_are_send
);
