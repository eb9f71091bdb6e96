//! The web layer over HTTP, through the remember-me demo's own routes (`examples/remember_me/
//! app.rs` is included below) plus a few test-only handlers.

#[path = "../examples/remember_me/app.rs"]
mod app;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::SET_COOKIE;
use actix_web::test::{self, TestRequest};
use actix_web::{App, HttpResponse, web};
use draco_session::{Config, ManualClock, MaybeSession, Session, SessionEngine, SessionMiddleware, WebError};
use futures_util::future::join_all;
use serde_json::{Value, json};

const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const SECRET: &str = "http test secret, at least 32 bytes long";
const PERSISTENT_TTL_SECS: u64 = 100 * 86_400;

/// The backend a test runs against: every test below runs on both (the `both!` list at the
/// end), Redis on a database of its own on one redis-server started for this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    #[cfg(feature = "redis")]
    Redis,
}

impl Backend {
    fn apply(self, config: &mut Config) {
        match self {
            Backend::Memory => {}
            #[cfg(feature = "redis")]
            Backend::Redis => {
                config.storage.backend = draco_session::StorageBackend::Redis;
                config.storage.redis_url = redis_server::shared().fresh_db_url();
            }
        }
    }
}

struct Fixture {
    engine: SessionEngine,
    _dir: tempfile::TempDir,
}

fn config(edit: impl FnOnce(&mut Config)) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.session.secret = Some(SECRET.into());
    config.session.shards = 2;
    config.storage.persist = false;
    config.storage.dir = dir.path().to_owned();
    edit(&mut config);
    (config, dir)
}

async fn fixture_with(b: Backend, edit: impl FnOnce(&mut Config), clock: Option<ManualClock>) -> Fixture {
    let (mut config, dir) = config(edit);
    b.apply(&mut config);
    let mut builder = SessionEngine::builder(config);
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    Fixture { engine: builder.start_async().await.unwrap(), _dir: dir }
}

async fn fixture(b: Backend) -> Fixture {
    fixture_with(b, |_| {}, None).await
}

// ----- test-only handlers -----

async fn boom_codec(session: Session) -> Result<HttpResponse, WebError> {
    session.insert("n", "not a number").await?;
    let n: Option<i64> = session.get("n").await?;
    Ok(HttpResponse::Ok().body(format!("{n:?}")))
}

async fn boom_panic(session: Session) -> Result<HttpResponse, WebError> {
    session.update("n", |_: Option<i64>| -> i64 { panic!("SECRET-INTERNAL-DETAIL") }).await?;
    Ok(HttpResponse::Ok().finish())
}

async fn destroy(session: Session) -> Result<HttpResponse, WebError> {
    let existed = session.destroy().await?;
    Ok(HttpResponse::Ok().body(existed.to_string()))
}

async fn untouched(_session: Session) -> HttpResponse {
    HttpResponse::Ok().body("not looked at")
}

async fn maybe(session: MaybeSession) -> HttpResponse {
    HttpResponse::Ok().body(if session.0.is_some() { "some" } else { "none" })
}

async fn write_default_scope(session: Session) -> Result<HttpResponse, WebError> {
    session.insert("k", &1).await?;
    let ns = session.namespace("cart");
    ns.insert("k", &2).await?;
    let a: Option<i64> = session.get("k").await?;
    let b: Option<i64> = ns.get("k").await?;
    let keys = session.keys().await?;
    session.remove("k").await?;
    let after: Option<i64> = session.get("k").await?;
    Ok(HttpResponse::Ok().json(json!({ "a": a, "b": b, "keys": keys, "after": after, "cart": ns.keys().await? })))
}

macro_rules! app {
    ($engine:expr) => {
        test::init_service(
            App::new()
                .wrap(SessionMiddleware::new($engine.clone()))
                .configure(|cfg| app::configure(cfg, $engine.config().limits.max_value_bytes))
                .route("/test/boom/codec", web::post().to(boom_codec))
                .route("/test/boom/panic", web::post().to(boom_panic))
                .route("/test/destroy", web::post().to(destroy))
                .route("/test/maybe", web::get().to(maybe))
                .route("/test/untouched", web::get().to(untouched))
                .route("/test/scopes", web::post().to(write_default_scope)),
        )
        .await
    };
}

// ----- request and response helpers -----

fn get(uri: &str) -> TestRequest {
    TestRequest::get().uri(uri).insert_header(("user-agent", BROWSER))
}

fn post(uri: &str) -> TestRequest {
    TestRequest::post().uri(uri).insert_header(("user-agent", BROWSER))
}

fn with_sid(req: TestRequest, sid: &str) -> TestRequest {
    req.insert_header(("cookie", format!("sid={sid}")))
}

struct Reply {
    status: StatusCode,
    set_cookies: Vec<String>,
    location: Option<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The one `Set-Cookie` of this response, or none.
    fn cookie(&self) -> Option<&str> {
        assert!(self.set_cookies.len() <= 1, "several Set-Cookie: {:?}", self.set_cookies);
        self.set_cookies.first().map(String::as_str)
    }

    /// The session id the response's cookie sets.
    fn sid(&self) -> String {
        let cookie = self.cookie().expect("a Set-Cookie");
        let value = cookie.strip_prefix("sid=").expect("our cookie").split(';').next().unwrap();
        assert_eq!(value.len(), 32, "{cookie}");
        value.to_owned()
    }
}

async fn call<S, B>(app: &S, req: TestRequest) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = test::read_body(res).await;
    Reply {
        status,
        set_cookies: headers.get_all(SET_COOKIE).map(|v| v.to_str().unwrap().to_owned()).collect(),
        location: headers.get("location").map(|v| v.to_str().unwrap().to_owned()),
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A fresh session (via `GET /api/session`) and its id.
async fn new_session<S, B>(app: &S) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = call(app, get("/api/session")).await;
    assert_eq!(r.status, 200);
    r.sid()
}

async fn login<S, B>(app: &S, sid: Option<&str>, remember: bool) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut req =
        post("/api/login").set_json(json!({"username": "alice", "password": "wonderland", "remember": remember}));
    if let Some(sid) = sid {
        req = with_sid(req, sid);
    }
    call(app, req).await
}

async fn live_sessions(engine: &SessionEngine) -> usize {
    engine.stats().await.unwrap().sessions
}

// ----- lazy creation and cookie attributes -----

async fn read_only_visits_create_no_session_and_no_cookie(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    for req in [
        get("/api/ns/cart/items"),
        post("/api/logout"),
        TestRequest::delete().uri("/api/ns/a/b").insert_header(("user-agent", BROWSER)),
    ] {
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
            c.cookie.same_site = draco_session::SameSite::Strict;
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

async fn a_returning_visit_is_one_engine_trip_remembered_or_not(b: Backend) {
    // The cookie lookup rides with the increment; a remember-me cookie is not refreshed (and
    // needs no extra trip) within the day of its last refresh.
    let clock = ManualClock::new(1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 + 3_600_000); // 01:00 UTC
    let f = fixture_with(b, |_| {}, Some(clock.clone())).await;
    let app = app!(f.engine);
    let operations = async || f.engine.stats().await.unwrap().shards.iter().map(|s| s.operations).sum::<u64>();
    // Memory: the lookup and the increment are two messages sent together; Redis: one script.
    let per_visit = if b == Backend::Memory { 2 } else { 1 };
    let plain = new_session(&app).await;
    let remembered = login(&app, None, true).await.sid();
    for sid in [&plain, &remembered] {
        for _ in 0..3 {
            clock.advance(Duration::from_secs(60));
            let before = operations().await;
            let r = call(&app, with_sid(post("/api/incr/n"), sid)).await;
            assert_eq!((r.status.as_u16(), r.cookie()), (200, None));
            assert_eq!(operations().await - before, per_visit, "{sid}");
        }
    }
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

// ----- login, logout, persistence -----

async fn login_rotates_the_id_keeps_the_data_and_kills_the_old_cookie(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let old = new_session(&app).await;
    let r = call(
        &app,
        with_sid(post("/api/ns/cart/items").method(actix_web::http::Method::PUT), &old).set_json(json!(["book"])),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = login(&app, Some(&old), false).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["userid"].as_u64(), v["persistent"].as_bool(), v["visits"].as_i64()),
        (Some(1), Some(false), Some(1))
    );
    let new = r.sid();
    assert_ne!(new, old);
    assert_eq!(v["session_id"], new);
    assert!(!r.cookie().unwrap().contains("Max-Age"));
    // The data moved with the session.
    let r = call(&app, with_sid(get("/api/ns/cart/items"), &new)).await;
    assert_eq!(r.json()["value"], json!(["book"]));
    // The old id is dead: treated as no session.
    let r = call(&app, with_sid(get("/api/ns/cart/items"), &old)).await;
    assert_eq!(r.status, 404);
    assert!(r.set_cookies.is_empty());
    let r = call(&app, with_sid(get("/api/session"), &old)).await;
    assert_eq!(r.json()["userid"], 0);
    assert_ne!(r.sid(), old);
}

async fn login_without_a_session_creates_one_and_remember_me_sets_max_age(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = login(&app, None, true).await;
    let v = r.json();
    assert_eq!((v["userid"].as_u64(), v["persistent"].as_bool()), (Some(1), Some(true)));
    let cookie = r.cookie().unwrap();
    assert!(cookie.contains(&format!("Max-Age={PERSISTENT_TTL_SECS}")), "{cookie}");
    assert_eq!(live_sessions(&f.engine).await, 1, "the pre-login id is not left behind");
    let sid = r.sid();
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!(r.json()["persistent"], true);
    assert!(r.set_cookies.is_empty());
}

async fn logout_rotates_forgets_the_user_and_ends_remember_me(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = login(&app, None, true).await.sid();
    call(&app, with_sid(post("/api/incr/clicks"), &sid)).await;
    let r = call(&app, with_sid(post("/api/logout"), &sid)).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!((v["userid"].as_u64(), v["persistent"].as_bool()), (Some(0), Some(false)));
    let new = r.sid();
    assert_ne!(new, sid);
    assert!(!r.cookie().unwrap().contains("Max-Age"), "volatile again");
    // Non-auth data stays; the old id is dead.
    assert_eq!(call(&app, with_sid(post("/api/incr/clicks"), &new)).await.json()["value"], 2);
    assert_eq!(call(&app, with_sid(get("/api/ns/counters/clicks"), &sid)).await.status, 404);
}

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

// ----- the JSON value routes -----

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
    let del = || with_sid(TestRequest::delete().uri("/api/ns/cart/items").insert_header(("user-agent", BROWSER)), &sid);
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

// ----- robots -----

const ROBOTS: [Option<&str>; 5] = [
    Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    Some("curl/8.5.0"),
    Some(""),
    Some(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36",
    ),
    None,
];

fn as_robot(req: TestRequest, ua: Option<&str>) -> TestRequest {
    // Every helper sets a browser UA; a robot request is built from scratch.
    let req = req.to_request();
    let mut out = TestRequest::default().method(req.method().clone()).uri(&req.uri().to_string());
    if let Some(ua) = ua {
        out = out.insert_header(("user-agent", ua));
    }
    out
}

async fn robots_are_served_but_get_no_session_and_no_cookie(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    for ua in ROBOTS {
        for (req, body) in [
            (get("/api/session"), None),
            (post("/api/incr/x"), None),
            (get("/api/ns/a/b"), None),
            (post("/api/logout"), None),
            (post("/api/login"), Some(json!({"username": "bob", "password": "builder", "remember": true}))),
            (post("/api/persistent"), Some(json!({"persistent": true}))),
            (TestRequest::put().uri("/api/ns/a/b"), Some(json!(1))),
        ] {
            let mut req = as_robot(req, ua);
            if let Some(body) = body {
                req = req.set_json(body);
            }
            let r = call(&app, req).await;
            assert_eq!(r.status, 200, "{ua:?}: {}", r.body);
            assert_eq!(r.json()["available"], false, "{ua:?}: {}", r.body);
            assert!(r.set_cookies.is_empty(), "{ua:?}: {:?}", r.set_cookies);
        }
        let r = call(&app, as_robot(get("/"), ua)).await;
        assert_eq!(r.status, 200);
        assert!(r.set_cookies.is_empty());
        let r = call(&app, as_robot(post("/login"), ua).set_form([("username", "alice"), ("password", "wonderland")]))
            .await;
        assert_eq!(r.status, 303);
        assert!(r.set_cookies.is_empty());
        assert_eq!(call(&app, as_robot(get("/test/maybe"), ua)).await.body, "none");
        // A plain write from a handler is a 403, never a 5xx.
        assert_eq!(call(&app, as_robot(post("/test/boom/codec"), ua)).await.status, 403);
    }
    assert_eq!(call(&app, get("/test/maybe")).await.body, "some");
    assert_eq!(live_sessions(&f.engine).await, 0);
}

async fn a_valid_session_is_kept_whatever_the_user_agent(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    for ua in ROBOTS {
        let r = call(&app, with_sid(as_robot(get("/api/session"), ua), &sid)).await;
        let v = r.json();
        assert_eq!(v["available"], true, "{ua:?}");
        assert_eq!(v["session_id"], sid.as_str());
        assert!(r.set_cookies.is_empty());
        assert_eq!(call(&app, with_sid(as_robot(get("/test/maybe"), ua), &sid)).await.body, "some");
    }
    assert_eq!(
        call(&app, with_sid(get("/api/session"), &sid)).await.json()["visits"],
        2 + i64::try_from(ROBOTS.len()).unwrap()
    );
}

// ----- the raw Cookie header -----

async fn a_non_utf8_cookie_next_to_ours_does_not_lose_the_session(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let header = [&b"theme=\xff\xfe\x80dark; "[..], b"sid=", sid.as_bytes(), b"; lang=\xc3\x28"].concat();
    let req = get("/api/session").insert_header((
        actix_web::http::header::COOKIE,
        actix_web::http::header::HeaderValue::from_bytes(&header).unwrap(),
    ));
    let r = call(&app, req).await;
    assert_eq!(r.json()["visits"], 2);
    assert!(r.set_cookies.is_empty());
}

async fn with_duplicate_sid_cookies_the_first_valid_one_wins(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let a = new_session(&app).await;
    let b = new_session(&app).await;
    let dead = new_session(&app).await;
    let _ = login(&app, Some(&dead), false).await; // rotates `dead` away
    let forged = "A".repeat(32);
    let cookie = |value: String| get("/api/session").insert_header(("cookie", value));
    let visit = |r: Reply| r.json()["session_id"].as_str().unwrap().to_owned();
    // Several pairs in one header.
    assert_eq!(visit(call(&app, cookie(format!("sid={a}; sid={b}"))).await), a);
    assert_eq!(visit(call(&app, cookie(format!("sid={b}; sid={a}"))).await), b);
    assert_eq!(visit(call(&app, cookie(format!("sid=garbage; sid={forged}; sid={a}"))).await), a);
    assert_eq!(
        visit(call(&app, cookie(format!("sid={dead}; sid={b}"))).await),
        b,
        "a dead id does not shadow a live one"
    );
    // Several Cookie headers.
    let req = get("/api/session")
        .append_header(("cookie", format!("x=1; sid={forged}")))
        .append_header(("cookie", format!("sid={b}")));
    let r = call(&app, req).await;
    assert_eq!(visit(r), b);
}

async fn a_write_behind_a_dead_cookie_lands_on_the_next_live_one(b: Backend) {
    // The first cookie's lookup and the write leave together; the dead id must neither take
    // the write nor make a new session while a later cookie names a live one.
    let f = fixture(b).await;
    let app = app!(f.engine);
    let live = new_session(&app).await; // visits = 1
    let dead = new_session(&app).await;
    let r = call(&app, with_sid(post("/test/destroy"), &dead)).await;
    assert_eq!(r.body, "true");
    let before = live_sessions(&f.engine).await;
    let r = call(&app, get("/api/session").insert_header(("cookie", format!("sid={dead}; sid={live}")))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["session_id"], live.as_str());
    assert_eq!(r.json()["visits"], 2, "the increment reached the live session");
    assert_eq!(r.cookie(), None, "the cookie still names the live session");
    assert_eq!(live_sessions(&f.engine).await, before, "no session was created");
    let id = f.engine.parse_id(live.as_bytes()).unwrap();
    assert_eq!(f.engine.get::<i64>(&id, "stats", "visits").await.unwrap(), Some(2));
}

async fn a_session_that_is_extracted_but_not_used_costs_no_engine_operation(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let operations = |s: draco_session::EngineStats| s.shards.iter().map(|s| s.operations).sum::<u64>();
    let before = operations(f.engine.stats().await.unwrap());
    for _ in 0..5 {
        let r = call(&app, with_sid(get("/test/untouched"), &sid)).await;
        assert_eq!((r.status.as_u16(), r.cookie()), (200, None));
    }
    assert_eq!(operations(f.engine.stats().await.unwrap()), before);
    // A robot with a cookie is looked up at once: whether it has a session decides MaybeSession.
    let robot = get("/test/maybe")
        .insert_header(("user-agent", "Googlebot/2.1"))
        .insert_header(("cookie", format!("sid={sid}")));
    assert_eq!(call(&app, robot).await.body, "some");
    assert!(operations(f.engine.stats().await.unwrap()) > before);
}

async fn forged_tampered_or_unknown_ids_are_no_session_and_never_a_5xx(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let good = new_session(&app).await;
    let mut tampered = good.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other_key = {
        let (mut config, _dir) = config(|_| {});
        config.session.secret = Some("another secret, also at least 32 bytes".into());
        let other = SessionEngine::start(config).unwrap();
        let id = other.create().await.unwrap().id.to_string();
        other.shutdown().await;
        id
    };
    for bad in ["", "x", "not-a-session-id", &"A".repeat(32), &tampered, &other_key, &format!("{good}A"), "\"quoted\""]
    {
        let r = call(&app, with_sid(get("/api/ns/stats/visits"), bad)).await;
        assert_eq!(r.status, 404, "{bad:?}");
        assert!(r.set_cookies.is_empty());
        let r = call(&app, with_sid(get("/api/session"), bad)).await;
        assert_eq!(r.status, 200, "{bad:?}");
        assert_eq!(r.json()["visits"], 1);
        assert_ne!(r.sid(), bad);
    }
}

// ----- errors -----

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

// ----- the HTML page and forms -----

async fn html_page_and_forms_work_without_javascript(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = call(&app, get("/")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"visits\">1<") && r.body.contains("action=\"/login\""), "{}", r.body);
    let sid = r.sid();
    let form = |pw: &str, remember: bool| {
        let mut fields = vec![("username", "alice"), ("password", pw)];
        if remember {
            fields.push(("remember", "on"));
        }
        with_sid(post("/login"), &sid).set_form(fields)
    };
    let r = call(&app, form("wrong", true)).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/?login=failed")));
    assert!(r.set_cookies.is_empty());
    assert!(call(&app, with_sid(get("/?login=failed"), &sid)).await.body.contains("Wrong user name or password"));
    let r = call(&app, form("wonderland", true)).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/")));
    assert!(r.cookie().unwrap().contains("Max-Age="));
    let sid = r.sid();
    let page = call(&app, with_sid(get("/"), &sid)).await.body;
    assert!(page.contains("alice (user id 1)") && page.contains("id=\"visits\">3<"), "{page}");
    assert!(page.contains(&sid) && page.contains("action=\"/logout\""));
    let r = call(&app, with_sid(post("/logout"), &sid)).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/")));
    let new = r.sid();
    assert_ne!(new, sid);
    let page = call(&app, with_sid(get("/"), &new)).await.body;
    assert!(page.contains("nobody (user id 0)") && page.contains("id=\"visits\">4<"), "{page}");
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

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(super::Backend::Memory).await
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(super::Backend::Redis).await
                }
            )*
        }
    };
}

both!(
    a_returning_visit_is_one_engine_trip_remembered_or_not,
    read_only_visits_create_no_session_and_no_cookie,
    first_write_sets_a_volatile_cookie_with_every_attribute,
    cookie_attributes_follow_the_config,
    set_cookie_only_when_the_cookie_changes,
    persistent_cookie_is_refreshed_at_most_once_a_day,
    expired_session_is_no_session,
    login_rotates_the_id_keeps_the_data_and_kills_the_old_cookie,
    login_without_a_session_creates_one_and_remember_me_sets_max_age,
    logout_rotates_forgets_the_user_and_ends_remember_me,
    statuses_401_409_413_400,
    namespace_routes_put_get_delete,
    default_scope_and_namespaces_are_independent,
    two_hundred_concurrent_increments_lose_nothing,
    robots_are_served_but_get_no_session_and_no_cookie,
    a_valid_session_is_kept_whatever_the_user_agent,
    a_non_utf8_cookie_next_to_ours_does_not_lose_the_session,
    with_duplicate_sid_cookies_the_first_valid_one_wins,
    a_write_behind_a_dead_cookie_lands_on_the_next_live_one,
    a_session_that_is_extracted_but_not_used_costs_no_engine_operation,
    forged_tampered_or_unknown_ids_are_no_session_and_never_a_5xx,
    internal_error_text_never_reaches_the_body,
    stopped_engine_is_a_503_not_a_500,
    missing_middleware_is_an_opaque_500,
    destroy_sends_a_removal_cookie_and_the_id_is_dead,
    html_page_and_forms_work_without_javascript,
    the_handle_and_its_futures_are_send,
    a_full_engine_is_a_503_for_new_visitors_only,
);
