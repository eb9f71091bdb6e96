//! What the HTTP tests (`tests/http/`) share: the backend switch and the `both!` macro that
//! runs every test on memory and on Redis, engine fixtures, the app under test (the
//! remember-me demo's own routes, `examples/remember_me/app.rs`, plus a few test-only
//! handlers, built by `app!`), and request, response and cookie helpers.
//!
//! Declared once, by `tests/http/main.rs`, as `#[macro_use] #[path = "../support/http.rs"] mod
//! support;`; each module then has `use crate::support::*;`. Redis runs on one redis-server
//! per test binary (started on first use), a database of its own per test.

#[path = "../../examples/remember_me/app.rs"]
pub mod app;
#[cfg(feature = "redis")]
#[path = "redis_server.rs"]
pub mod redis_server;

use actix_web::HttpResponse;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::SET_COOKIE;
use actix_web::test::{self, TestRequest};
use draco_session::{Config, ManualClock, MaybeSession, Session, SessionEngine, WebError};
use serde_json::{Value, json};

pub const BROWSER: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
pub const SECRET: &str = "http test secret, at least 32 bytes long";
pub const PERSISTENT_TTL_SECS: u64 = 100 * 86_400;

/// The backend a test runs against: every test runs on both (the `both!` list of its file),
/// Redis on a database of its own on one redis-server started for the test binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    #[cfg(feature = "redis")]
    Redis,
}

impl Backend {
    #[cfg_attr(not(feature = "redis"), allow(unused_variables, reason = "only the redis backend changes the config"))]
    pub fn apply(self, config: &mut Config) {
        match self {
            Backend::Memory => {}
            #[cfg(feature = "redis")]
            Backend::Redis => {
                config.storage.backend = draco_session::config::StorageBackend::Redis;
                config.storage.redis_url = redis_server::shared().fresh_db_url();
            }
        }
    }
}

/// Declares each test once per backend: `memory::name` and `redis::name`.
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

pub struct Fixture {
    pub engine: SessionEngine,
    _dir: tempfile::TempDir,
}

pub fn config(edit: impl FnOnce(&mut Config)) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.session.secret = Some(SECRET.into());
    config.session.shards = 2;
    config.storage.persist = false;
    config.storage.dir = dir.path().to_owned();
    edit(&mut config);
    (config, dir)
}

pub async fn fixture_with(b: Backend, edit: impl FnOnce(&mut Config), clock: Option<ManualClock>) -> Fixture {
    let (mut config, dir) = config(edit);
    b.apply(&mut config);
    let mut builder = SessionEngine::builder(config);
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    Fixture { engine: builder.start_async().await.unwrap(), _dir: dir }
}

pub async fn fixture(b: Backend) -> Fixture {
    fixture_with(b, |_| {}, None).await
}

// ----- test-only handlers -----

pub async fn boom_codec(session: Session) -> Result<HttpResponse, WebError> {
    session.insert("n", "not a number").await?;
    let n: Option<i64> = session.get("n").await?;
    Ok(HttpResponse::Ok().body(format!("{n:?}")))
}

pub async fn boom_panic(session: Session) -> Result<HttpResponse, WebError> {
    // Its own key: "n" may hold boom_codec's string, which no i64 update gets past.
    session.update("p", |_: Option<i64>| -> i64 { panic!("SECRET-INTERNAL-DETAIL") }).await?;
    Ok(HttpResponse::Ok().finish())
}

/// Stores `body` (any text, even a huge one) as a string under `key` of the default scope.
pub async fn put_text(
    session: Session,
    key: ::actix_web::web::Path<String>,
    body: String,
) -> Result<HttpResponse, WebError> {
    session.insert(&key, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// Increments the counter `key` of the default scope.
pub async fn incr(session: Session, key: ::actix_web::web::Path<String>) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok().body(session.increment(&key, 1).await?.to_string()))
}

/// Reads `key` of the default scope as an integer.
pub async fn get_int(session: Session, key: ::actix_web::web::Path<String>) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok().body(format!("{:?}", session.get::<i64>(&key).await?)))
}

/// Updates `key` of the default scope as an integer.
pub async fn update_int(session: Session, key: ::actix_web::web::Path<String>) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok().body(session.update(&key, |n: Option<i64>| n.unwrap_or(0) + 1).await?.to_string()))
}

/// Logs user 7 in, then increments `key`: a step that can fail after the rotation.
pub async fn login_then_incr(session: Session, key: ::actix_web::web::Path<String>) -> Result<HttpResponse, WebError> {
    session.login(7).await?;
    Ok(HttpResponse::Ok().body(session.increment(&key, 1).await?.to_string()))
}

pub async fn destroy(session: Session) -> Result<HttpResponse, WebError> {
    let existed = session.destroy().await?;
    Ok(HttpResponse::Ok().body(existed.to_string()))
}

/// Writes the session (a first visit gets a cookie) and sets a Cache-Control of its own.
pub async fn own_cache_control(session: Session) -> Result<HttpResponse, WebError> {
    session.insert("k", &1).await?;
    Ok(HttpResponse::Ok().insert_header(("cache-control", "private, max-age=60")).body("cached privately"))
}

pub async fn csrf_token(session: Session) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok().body(session.csrf_token().await?))
}

/// Answers whether the body is a CSRF token of this session.
pub async fn csrf_verify(session: Session, body: actix_web::web::Bytes) -> Result<HttpResponse, WebError> {
    let token = String::from_utf8_lossy(&body);
    Ok(HttpResponse::Ok().body(session.verify_csrf(&token).await?.to_string()))
}

/// The keys an application sees in the default scope, then a read of the reserved scope.
pub async fn csrf_reserved(session: Session) -> Result<HttpResponse, WebError> {
    let keys = session.keys().await?;
    let reserved = format!("{}csrf", draco_session::limits::RESERVED_SCOPE_PREFIX);
    let read = session.namespace(&reserved).keys().await;
    let write = session.namespace(&reserved).insert("secret", "mine").await;
    Ok(HttpResponse::Ok().json(json!({
        "keys": keys,
        "read": read.map_err(|e| e.to_string()),
        "write": write.map_err(|e| e.to_string()),
    })))
}

/// What the session says of its user's last proof of identity: `age_ms` (null when it does not
/// count), `level`, and whether `require_fresh_auth` (at `?level=n`, 1 by default) passes.
pub async fn auth_state(
    session: Session,
    query: ::actix_web::web::Query<std::collections::HashMap<String, u8>>,
) -> Result<HttpResponse, WebError> {
    let age = session.auth_age().await?;
    let level = session.auth_level().await?;
    let wanted = query.get("level").copied().unwrap_or(1);
    let fresh = match session.require_fresh_auth_level(wanted).await {
        Ok(()) => true,
        Err(WebError::Reauthenticate) => false,
        Err(e) => return Err(e),
    };
    let age_ms = age.map(|a| u64::try_from(a.as_millis()).unwrap());
    Ok(HttpResponse::Ok().json(json!({ "age_ms": age_ms, "level": level, "fresh": fresh })))
}

/// Logs user 7 in at the path's level.
pub async fn login_with(session: Session, level: ::actix_web::web::Path<u8>) -> Result<HttpResponse, WebError> {
    session.login_with(7, *level).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `reauthenticated_with` at the path's level.
pub async fn reauth_with(session: Session, level: ::actix_web::web::Path<u8>) -> Result<HttpResponse, WebError> {
    session.reauthenticated_with(*level).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `require_fresh_auth` with the library's own error response.
pub async fn sudo(session: Session) -> Result<HttpResponse, WebError> {
    session.require_fresh_auth().await?;
    Ok(HttpResponse::Ok().body("fresh"))
}

pub async fn untouched(_session: Session) -> HttpResponse {
    HttpResponse::Ok().body("not looked at")
}

pub async fn maybe(session: MaybeSession) -> HttpResponse {
    HttpResponse::Ok().body(if session.0.is_some() { "some" } else { "none" })
}

pub async fn write_default_scope(session: Session) -> Result<HttpResponse, WebError> {
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

/// The app under test on `$engine`: the demo's routes behind the session middleware (and the
/// demo's `hardening` around it, as `main.rs` has it), plus the test-only handlers above.
macro_rules! app {
    ($engine:expr) => {
        ::actix_web::test::init_service(
            ::actix_web::App::new()
                .wrap(::draco_session::SessionMiddleware::new($engine.clone()))
                .wrap(::actix_web::middleware::from_fn($crate::support::app::hardening))
                .configure(|cfg| $crate::support::app::configure(cfg, $engine.config().limits.max_value_bytes))
                .route("/test/boom/codec", ::actix_web::web::post().to($crate::support::boom_codec))
                .route("/test/boom/panic", ::actix_web::web::post().to($crate::support::boom_panic))
                .route("/test/destroy", ::actix_web::web::post().to($crate::support::destroy))
                .route("/test/text/{key}", ::actix_web::web::put().to($crate::support::put_text))
                .route("/test/incr/{key}", ::actix_web::web::post().to($crate::support::incr))
                .route("/test/int/{key}", ::actix_web::web::get().to($crate::support::get_int))
                .route("/test/update/{key}", ::actix_web::web::post().to($crate::support::update_int))
                .route("/test/login-then-incr/{key}", ::actix_web::web::post().to($crate::support::login_then_incr))
                .route("/test/maybe", ::actix_web::web::get().to($crate::support::maybe))
                .route("/test/auth", ::actix_web::web::get().to($crate::support::auth_state))
                .route("/test/login-with/{level}", ::actix_web::web::post().to($crate::support::login_with))
                .route("/test/reauth/{level}", ::actix_web::web::post().to($crate::support::reauth_with))
                .route("/test/sudo", ::actix_web::web::post().to($crate::support::sudo))
                .route("/test/untouched", ::actix_web::web::get().to($crate::support::untouched))
                .route("/test/csrf/token", ::actix_web::web::get().to($crate::support::csrf_token))
                .route("/test/csrf/verify", ::actix_web::web::post().to($crate::support::csrf_verify))
                .route("/test/csrf/reserved", ::actix_web::web::get().to($crate::support::csrf_reserved))
                .route("/test/own-cache-control", ::actix_web::web::get().to($crate::support::own_cache_control))
                .route("/test/scopes", ::actix_web::web::post().to($crate::support::write_default_scope)),
        )
        .await
    };
}

// ----- request and response helpers -----

pub fn get(uri: &str) -> TestRequest {
    TestRequest::get().uri(uri).insert_header(("user-agent", BROWSER))
}

/// A POST as the demo's JSON API wants it (`Content-Type: application/json`, which
/// `set_form` replaces for the HTML forms).
pub fn post(uri: &str) -> TestRequest {
    TestRequest::post()
        .uri(uri)
        .insert_header(("user-agent", BROWSER))
        .insert_header(("content-type", "application/json"))
}

/// A DELETE as the demo's JSON API wants it (see [`post`]).
pub fn delete(uri: &str) -> TestRequest {
    TestRequest::delete()
        .uri(uri)
        .insert_header(("user-agent", BROWSER))
        .insert_header(("content-type", "application/json"))
}

pub fn with_sid(req: TestRequest, sid: &str) -> TestRequest {
    req.insert_header(("cookie", format!("sid={sid}")))
}

/// A request carrying `cookies`, a `Cookie` header's value (see [`Reply::jar`]).
pub fn with_cookies(req: TestRequest, cookies: &str) -> TestRequest {
    req.insert_header(("cookie", cookies.to_owned()))
}

/// Whether a `Set-Cookie` is the fresh-login marker's (`<name>_auth`).
pub fn is_marker(set_cookie: &str) -> bool {
    set_cookie.split('=').next().is_some_and(|name| name.ends_with("_auth"))
}

pub struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub location: Option<String>,
    pub cache_control: Option<String>,
    pub vary: Vec<String>,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The one `Set-Cookie` of the session id in this response, or none (the fresh-login
    /// marker a login also sets is [`marker`](Self::marker)).
    pub fn cookie(&self) -> Option<&str> {
        let ids: Vec<&String> = self.set_cookies.iter().filter(|c| !is_marker(c)).collect();
        assert!(ids.len() <= 1, "several Set-Cookie: {:?}", self.set_cookies);
        ids.first().map(|c| c.as_str())
    }

    /// The fresh-login marker's `Set-Cookie` in this response, if any.
    pub fn marker_cookie(&self) -> Option<&str> {
        let markers: Vec<&String> = self.set_cookies.iter().filter(|c| is_marker(c)).collect();
        assert!(markers.len() <= 1, "several markers: {:?}", self.set_cookies);
        markers.first().map(|c| c.as_str())
    }

    /// The value of the marker this response sets (`None` without one, empty for a removal).
    pub fn marker(&self) -> Option<String> {
        let cookie = self.marker_cookie()?;
        Some(cookie.split_once('=').unwrap().1.split(';').next().unwrap().to_owned())
    }

    /// A browser's cookies after this response: the session id and, when it set one, the
    /// marker, as a `Cookie` header's value.
    pub fn jar(&self) -> String {
        match self.marker().filter(|m| !m.is_empty()) {
            Some(marker) => format!("sid={}; sid_auth={marker}", self.sid()),
            None => format!("sid={}", self.sid()),
        }
    }

    /// The session id the response's cookie sets.
    pub fn sid(&self) -> String {
        let cookie = self.cookie().expect("a Set-Cookie");
        let value = cookie.strip_prefix("sid=").expect("our cookie").split(';').next().unwrap();
        assert_eq!(value.len(), 32, "{cookie}");
        value.to_owned()
    }
}

/// The status, headers and body of `req`'s response; an error the middleware returns is
/// rendered as actix-web's server renders it.
pub async fn respond<S, B>(app: &S, req: TestRequest) -> (StatusCode, actix_web::http::header::HeaderMap, String)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (status, headers, body) = match test::try_call_service(app, req.to_request()).await {
        Ok(res) => (res.status(), res.headers().clone(), test::read_body(res).await),
        Err(e) => {
            let res = e.error_response();
            let (status, headers) = (res.status(), res.headers().clone());
            (status, headers, actix_web::body::to_bytes(res.into_body()).await.unwrap_or_default())
        }
    };
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub async fn call<S, B>(app: &S, req: TestRequest) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (status, headers, body) = respond(app, req).await;
    Reply {
        status,
        set_cookies: headers.get_all(SET_COOKIE).map(|v| v.to_str().unwrap().to_owned()).collect(),
        location: headers.get("location").map(|v| v.to_str().unwrap().to_owned()),
        cache_control: headers.get("cache-control").map(|v| v.to_str().unwrap().to_owned()),
        vary: headers.get_all("vary").map(|v| v.to_str().unwrap().to_owned()).collect(),
        headers,
        body,
    }
}

/// A fresh session (via `GET /api/session`) and its id.
pub async fn new_session<S, B>(app: &S) -> String
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = call(app, get("/api/session")).await;
    assert_eq!(r.status, 200);
    r.sid()
}

pub async fn login<S, B>(app: &S, sid: Option<&str>, remember: bool) -> Reply
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

/// The CSRF token in a demo page's form.
pub fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).unwrap_or_else(|| panic!("no CSRF field in {page}"));
    let rest = &page[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

pub async fn live_sessions(engine: &SessionEngine) -> usize {
    engine.stats().await.unwrap().sessions
}
