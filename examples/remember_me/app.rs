//! The remember-me demo's routes: the HTML page and forms, and the JSON API.
//!
//! Shared by `main.rs` and the HTTP tests (`tests/support/http.rs` includes this file), so the tests
//! exercise exactly what the demo serves.

#[path = "throttle.rs"]
pub mod throttle;

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER,
    X_CONTENT_TYPE_OPTIONS,
};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, error, web};
use draco_session::{Device, Flash, FlashLevel, Session, SessionError, SessionHandle, WebError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use throttle::{LoginThrottle, client_of};

/// Demo users: name, password, user id.
const USERS: [(&str, &str, u64); 2] = [("alice", "wonderland", 1), ("bob", "builder", 2)];

/// The scopes the demo keeps its own data in (the visit counter, `POST /api/incr`'s
/// counters). The generic `/api/ns` routes read them but never write them: a value of
/// another type there would break every page that counts a visit.
const OWN_SCOPES: [&str; 2] = ["stats", "counters"];

/// Devices the "Your devices" card lists (the most recently used); the rest are counted.
pub const DEVICES_PER_PAGE: usize = 20;

/// Registers every route, with a login throttle of its own (see [`configure_with`]).
#[allow(dead_code, reason = "for the HTTP tests' apps; the demo shares one throttle between its workers")]
pub fn configure(cfg: &mut web::ServiceConfig, max_value_bytes: usize) {
    configure_with(cfg, max_value_bytes, web::Data::new(LoginThrottle::default()));
}

/// Registers every route. `max_value_bytes` is the engine's `limits.max_value_bytes`: JSON
/// bodies somewhat larger still reach the engine (and get its 413), much larger ones are cut
/// off by the JSON reader (also a 413). `throttle` counts failed logins: create it once and
/// give every worker the same (actix-web calls the app factory once per worker).
///
/// Against cross-site request forgery (besides the session middleware's origin guard): the
/// HTML forms carry the session's CSRF token, checked before they act (403 otherwise), and
/// every POST, PUT and DELETE of the JSON API must say `Content-Type: application/json`
/// (415 otherwise), which no other site's form or no-cors `fetch` can send. Wrap the whole
/// app (outside the session middleware) in `from_fn(hardening)`.
pub fn configure_with(cfg: &mut web::ServiceConfig, max_value_bytes: usize, throttle: web::Data<LoginThrottle>) {
    cfg.app_data(throttle);
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_value_bytes.saturating_add(4096))
            .content_type_required(false)
            .error_handler(|e, _| json_error(&e)),
    )
    .app_data(web::FormConfig::default().limit(4096).error_handler(|e, _| {
        log::debug!("bad form: {e}");
        error::InternalError::from_response(e, problem(StatusCode::BAD_REQUEST, "malformed form")).into()
    }))
    .route("/", web::get().to(page))
    .route("/login", web::post().to(form_login))
    .route("/logout", web::post().to(form_logout))
    .route("/devices/logout-others", web::post().to(form_logout_others))
    .route("/devices/{handle}/logout", web::post().to(form_revoke))
    .route("/reauth", web::post().to(form_reauth))
    .service(
        web::scope("/api")
            .wrap(from_fn(json_only))
            .route("/session", web::get().to(api_session))
            .route("/login", web::post().to(api_login))
            .route("/logout", web::post().to(api_logout))
            .route("/persistent", web::post().to(api_persistent))
            .route("/devices", web::get().to(api_devices))
            .route("/devices/{handle}", web::delete().to(api_revoke))
            .route("/logout-others", web::post().to(api_logout_others))
            .route("/reauth", web::post().to(api_reauth))
            .route("/erase-me", web::post().to(api_erase_me))
            .route("/incr/{name}", web::post().to(api_incr))
            .route("/ns/{scope}/{key}", web::put().to(ns_put))
            .route("/ns/{scope}/{key}", web::get().to(ns_get))
            .route("/ns/{scope}/{key}", web::delete().to(ns_delete)),
    );
}

/// Wraps the whole app, outside the session middleware (so it sees the middleware's own
/// refusals too): `X-Content-Type-Options: nosniff` on every response, and under `/api/`
/// every error as JSON, `{"error": "..."}` (the library's errors are plain text), its status
/// and headers (`Retry-After`) kept.
pub async fn hardening(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, error::Error> {
    let api = req.path().starts_with("/api/");
    match next.call(req).await {
        Ok(res) => {
            let (req, res) = res.map_into_boxed_body().into_parts();
            Ok(ServiceResponse::new(req, harden(res, api).await))
        }
        // A refusal of the session middleware (another site's POST): still an error, so that
        // actix-web logs it as one, but with the response hardened.
        Err(e) => {
            let res = harden(e.error_response(), api).await;
            Err(error::InternalError::from_response(e.to_string(), res).into())
        }
    }
}

/// `res` with `nosniff`, and, for an error of the API, its text (or, when it has none, its
/// status's reason) as `{"error": text}`.
async fn harden(mut res: HttpResponse, api: bool) -> HttpResponse {
    let status = res.status();
    if api && (status.is_client_error() || status.is_server_error()) && !says_json(res.headers()) {
        let (mut head, body) = res.into_parts();
        let bytes = actix_web::body::to_bytes_limited(body, 4096).await.ok().and_then(Result::ok).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let message = if text.is_empty() { status.canonical_reason().unwrap_or("error") } else { text };
        let json = serde_json::to_string(&json!({ "error": message })).unwrap_or_default();
        head.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res = head.set_body(BoxBody::new(json));
    }
    res.headers_mut().insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

/// Whether the request says its body is JSON (`application/json`, or `application/*+json`).
fn says_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The API's unsafe methods take JSON only, even without a body: a cross-site form or no-cors
/// `fetch` can send `text/plain` (whose body may well parse as JSON) but never
/// `application/json` without the CORS preflight this demo does not answer.
async fn json_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, error::Error> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !says_json(req.headers()) {
        let refusal = problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json");
        return Ok(req.into_response(refusal).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

fn json_error(e: &error::JsonPayloadError) -> error::Error {
    let status = match e {
        error::JsonPayloadError::Overflow { .. } | error::JsonPayloadError::OverflowKnownLength { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        _ => StatusCode::BAD_REQUEST,
    };
    log::debug!("bad JSON body: {e}");
    let message = if status == StatusCode::BAD_REQUEST { "malformed JSON body" } else { "body too large" };
    error::InternalError::from_response(e.to_string(), problem(status, message)).into()
}

fn problem(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": message }))
}

/// The user id for these credentials. Every user is compared, and by BLAKE3 digest with
/// `blake3::Hash`'s constant-time equality, so timing tells nothing about names or passwords.
fn authenticate(username: &str, password: &str) -> Option<u64> {
    let name = blake3::hash(username.as_bytes());
    let pass = blake3::hash(password.as_bytes());
    let mut found = 0;
    for (user, secret, id) in USERS {
        let ok = (blake3::hash(user.as_bytes()) == name) & (blake3::hash(secret.as_bytes()) == pass);
        found |= id * u64::from(ok);
    }
    (found != 0).then_some(found)
}

fn user_name(userid: u64) -> Option<&'static str> {
    USERS.iter().find(|u| u.2 == userid).map(|u| u.0)
}

/// The object most API routes answer.
#[derive(Serialize)]
struct SessionView {
    available: bool,
    session_id: Option<String>,
    userid: u64,
    persistent: bool,
    visits: i64,
}

impl SessionView {
    async fn of(session: &Session, visits: i64) -> Result<Self, WebError> {
        Ok(Self {
            available: session.is_available(),
            session_id: session.id().await?.map(|id| id.to_string()),
            userid: session.userid().await?,
            persistent: session.persistent().await?,
            visits,
        })
    }
}

async fn visits(session: &Session) -> Result<i64, WebError> {
    Ok(session.namespace("stats").get::<i64>("visits").await?.unwrap_or(0))
}

/// Counts this visit; a robot has no session to count in.
async fn count_visit(session: &Session) -> Result<i64, WebError> {
    if !session.is_available() {
        return Ok(0);
    }
    session.namespace("stats").increment("visits", 1).await
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((LOCATION, to)).finish()
}

// ----- the JSON API -----

async fn api_session(session: Session) -> Result<HttpResponse, WebError> {
    let visits = count_visit(&session).await?;
    Ok(HttpResponse::Ok().json(SessionView::of(&session, visits).await?))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    #[serde(default)]
    remember: bool,
}

/// The 429 of a throttled login: `Retry-After` in whole seconds, rounded up.
fn too_many_failures(wait: Duration, body: HttpResponse) -> HttpResponse {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut res = body;
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
    res
}

const THROTTLED: &str = "too many failed logins for this account or from this address: try again later";

/// The user id for these credentials, through the throttle: `Err(wait)` while the account or
/// the client is locked (the password is not even looked at), `Ok(None)` for a wrong password
/// (counted), `Ok(Some(userid))` for a right one.
fn attempt_login(
    throttle: &LoginThrottle,
    req: &HttpRequest,
    session: &Session,
    username: &str,
    password: &str,
) -> Result<Option<u64>, Duration> {
    let client = client_of(req, session.config().limits.trust_forwarded_for);
    throttle.check(username, client)?;
    match authenticate(username, password) {
        Some(userid) => Ok(Some(userid)),
        None => {
            log::debug!("failed login for {username:?} from {client}");
            throttle.failed(username, client).map(|()| None)
        }
    }
}

async fn api_login(
    session: Session,
    req: HttpRequest,
    throttle: web::Data<LoginThrottle>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, WebError> {
    let userid = match attempt_login(&throttle, &req, &session, &body.username, &body.password) {
        Err(wait) => return Ok(too_many_failures(wait, problem(StatusCode::TOO_MANY_REQUESTS, THROTTLED))),
        Ok(None) => return Ok(problem(StatusCode::UNAUTHORIZED, "wrong user name or password")),
        Ok(Some(userid)) => userid,
    };
    if session.is_available() {
        session.login(userid).await?;
        session.set_persistent(body.remember).await?;
    }
    let visits = visits(&session).await?;
    Ok(HttpResponse::Ok().json(SessionView::of(&session, visits).await?))
}

async fn api_logout(session: Session) -> Result<HttpResponse, WebError> {
    session.logout().await?;
    let visits = visits(&session).await?;
    Ok(HttpResponse::Ok().json(SessionView::of(&session, visits).await?))
}

/// Unix seconds.
fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The user's devices; `None` when nobody is logged in (or a robot asks).
async fn devices_of(session: &Session) -> Result<Option<Vec<Device>>, WebError> {
    if !session.is_available() || session.userid().await? == 0 {
        return Ok(None);
    }
    match session.devices().await {
        Err(e) if e.engine() == Some(&SessionError::NotLoggedIn) => Ok(None),
        other => other.map(Some),
    }
}

fn not_logged_in() -> HttpResponse {
    problem(StatusCode::UNAUTHORIZED, "not logged in")
}

async fn api_devices(session: Session) -> Result<HttpResponse, WebError> {
    let Some(devices) = devices_of(&session).await? else { return Ok(not_logged_in()) };
    let list: Vec<Value> = devices
        .iter()
        .map(|d| {
            json!({
                "handle": d.handle.to_string(),
                "label": d.label,
                "created": unix(d.created),
                "last_used": unix(d.last_used),
                "persistent": d.persistent,
                "current": d.current,
                "ip": d.ip.map(|ip| ip.to_string()),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "devices": list })))
}

/// Whether the session proved who its user is lately, in this browser session (see
/// `Session::require_fresh_auth`): ending other sessions asks for that.
async fn fresh(session: &Session) -> Result<bool, WebError> {
    match session.require_fresh_auth().await {
        Ok(()) => Ok(true),
        Err(WebError::Reauthenticate) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The API's answer to a sensitive action without a fresh login: the client asks for the
/// password, posts it to `/api/reauth`, and retries.
fn reauthenticate() -> HttpResponse {
    problem(StatusCode::FORBIDDEN, "reauthenticate")
}

async fn api_revoke(session: Session, handle: web::Path<String>) -> Result<HttpResponse, WebError> {
    if devices_of(&session).await?.is_none() {
        return Ok(not_logged_in());
    }
    if !fresh(&session).await? {
        return Ok(reauthenticate());
    }
    let revoked = match handle.parse::<SessionHandle>() {
        Ok(handle) => session.revoke(&handle).await?,
        Err(_) => false,
    };
    if !revoked {
        return Ok(problem(StatusCode::NOT_FOUND, "no other session of yours has that handle"));
    }
    log::info!("user {}: a session was logged out from another device", session.userid().await?);
    Ok(HttpResponse::Ok().json(json!({ "revoked": true })))
}

async fn api_logout_others(session: Session) -> Result<HttpResponse, WebError> {
    if devices_of(&session).await?.is_none() {
        return Ok(not_logged_in());
    }
    if !fresh(&session).await? {
        return Ok(reauthenticate());
    }
    let revoked = session.logout_others().await?;
    Ok(HttpResponse::Ok().json(json!({ "revoked": revoked })))
}

/// Erases the logged-in user: every session of theirs ends, this one too (its cookie removed),
/// and the engine keeps no copy of their sessions' data (`SessionEngine::erase_user`).
async fn api_erase_me(session: Session) -> Result<HttpResponse, WebError> {
    if devices_of(&session).await?.is_none() {
        return Ok(not_logged_in());
    }
    let userid = session.userid().await?;
    let erased = session.erase_user().await?;
    log::info!("user {userid} erased: {erased} sessions ended");
    Ok(HttpResponse::Ok().json(json!({ "erased": erased })))
}

#[derive(Deserialize)]
struct Password {
    password: String,
}

/// What a password confirmation came to.
enum Confirmed {
    /// Nobody is logged in (or a robot asks).
    NotLoggedIn,
    /// The throttle refuses for this long (see [`attempt_login`]).
    Throttled(Duration),
    /// A wrong password (counted by the throttle).
    Wrong,
    /// The right one: the session is fresh again.
    Yes,
}

/// Checks the logged-in user's password as a login does, through the same throttle, and on
/// success records the proof (`Session::reauthenticated`).
async fn confirm_password(
    session: &Session,
    req: &HttpRequest,
    throttle: &LoginThrottle,
    password: &str,
) -> Result<Confirmed, WebError> {
    let userid = if session.is_available() { session.userid().await? } else { 0 };
    let Some(name) = user_name(userid) else { return Ok(Confirmed::NotLoggedIn) };
    Ok(match attempt_login(throttle, req, session, name, password) {
        Err(wait) => Confirmed::Throttled(wait),
        Ok(Some(proved)) if proved == userid => {
            session.reauthenticated().await?;
            Confirmed::Yes
        }
        Ok(_) => Confirmed::Wrong,
    })
}

async fn api_reauth(
    session: Session,
    req: HttpRequest,
    throttle: web::Data<LoginThrottle>,
    body: web::Json<Password>,
) -> Result<HttpResponse, WebError> {
    Ok(match confirm_password(&session, &req, &throttle, &body.password).await? {
        Confirmed::NotLoggedIn => not_logged_in(),
        Confirmed::Throttled(wait) => too_many_failures(wait, problem(StatusCode::TOO_MANY_REQUESTS, THROTTLED)),
        Confirmed::Wrong => problem(StatusCode::UNAUTHORIZED, "wrong password"),
        Confirmed::Yes => HttpResponse::Ok().json(json!({ "reauthenticated": true })),
    })
}

#[derive(Deserialize)]
struct Persistence {
    persistent: bool,
}

async fn api_persistent(session: Session, body: web::Json<Persistence>) -> Result<HttpResponse, WebError> {
    if session.is_available() {
        match session.set_persistent(body.persistent).await {
            Err(e) if e.engine() == Some(&SessionError::NotLoggedIn) => {
                return Ok(problem(StatusCode::CONFLICT, "not logged in: only a logged-in session can be persistent"));
            }
            other => other?,
        }
    }
    let visits = visits(&session).await?;
    Ok(HttpResponse::Ok().json(SessionView::of(&session, visits).await?))
}

async fn api_incr(session: Session, name: web::Path<String>) -> Result<HttpResponse, WebError> {
    if !session.is_available() {
        return Ok(HttpResponse::Ok().json(json!({ "available": false, "value": null })));
    }
    let value = session.namespace("counters").increment(&name, 1).await?;
    Ok(HttpResponse::Ok().json(json!({ "available": true, "value": value })))
}

/// A write to one of [`OWN_SCOPES`] through the generic API.
fn own_scope() -> HttpResponse {
    problem(StatusCode::FORBIDDEN, "this scope holds the demo's own counters: read-only through /api/ns")
}

fn robot_answer() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "available": false }))
}

async fn ns_put(
    session: Session,
    path: web::Path<(String, String)>,
    value: web::Json<Value>,
) -> Result<HttpResponse, WebError> {
    if !session.is_available() {
        return Ok(robot_answer());
    }
    let (scope, key) = path.into_inner();
    if OWN_SCOPES.contains(&scope.as_str()) {
        return Ok(own_scope());
    }
    session.namespace(&scope).insert(&key, &*value).await?;
    Ok(HttpResponse::Ok().json(json!({ "available": true, "value": value.into_inner() })))
}

async fn ns_get(session: Session, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    if !session.is_available() {
        return Ok(robot_answer());
    }
    let (scope, key) = path.into_inner();
    Ok(match session.namespace(&scope).get::<Value>(&key).await? {
        Some(value) => HttpResponse::Ok().json(json!({ "available": true, "value": value })),
        None => problem(StatusCode::NOT_FOUND, "no such key"),
    })
}

async fn ns_delete(session: Session, path: web::Path<(String, String)>) -> Result<HttpResponse, WebError> {
    if !session.is_available() {
        return Ok(robot_answer());
    }
    let (scope, key) = path.into_inner();
    if OWN_SCOPES.contains(&scope.as_str()) {
        return Ok(own_scope());
    }
    Ok(if session.namespace(&scope).remove(&key).await? {
        HttpResponse::Ok().json(json!({ "available": true, "removed": true }))
    } else {
        problem(StatusCode::NOT_FOUND, "no such key")
    })
}

// ----- the HTML page and its forms (no JavaScript needed) -----

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    /// Present (as "on") only when the box is ticked.
    remember: Option<String>,
    /// The page's CSRF token (a missing one is a wrong one).
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// The answer to a form whose CSRF token is not this session's: forged by another site, or
/// from a page older than the session's last login, logout or expiry.
fn forged_form() -> HttpResponse {
    HttpResponse::Forbidden()
        .content_type("text/plain; charset=utf-8")
        .body("this form is out of date or was not sent from this site: reload the page and try again")
}

async fn form_login(
    session: Session,
    req: HttpRequest,
    throttle: web::Data<LoginThrottle>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, WebError> {
    // A robot gets no session, so nothing happens and there is nothing to protect.
    if session.is_available() && !session.verify_csrf(&form.csrf).await? {
        return Ok(forged_form());
    }
    let userid = match attempt_login(&throttle, &req, &session, &form.username, &form.password) {
        Err(wait) => {
            let text = HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(THROTTLED);
            return Ok(too_many_failures(wait, text));
        }
        Ok(None) => return Ok(see_other("/?login=failed")),
        Ok(Some(userid)) => userid,
    };
    if session.is_available() {
        session.login(userid).await?;
        session.set_persistent(form.remember.is_some()).await?;
        let name = user_name(userid).unwrap_or("you");
        session.flash(FlashLevel::Success, format!("Welcome back, {name}")).await?;
    }
    Ok(see_other("/"))
}

async fn form_logout(session: Session, form: web::Form<LogoutForm>) -> Result<HttpResponse, WebError> {
    if !session.verify_csrf(&form.csrf).await? {
        return Ok(forged_form());
    }
    session.logout().await?;
    // After the logout, so that `logout_clears_data` does not clear it.
    session.flash(FlashLevel::Info, "You are logged out").await?;
    Ok(see_other("/"))
}

async fn form_revoke(
    session: Session,
    handle: web::Path<String>,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, WebError> {
    if !session.verify_csrf(&form.csrf).await? {
        return Ok(forged_form());
    }
    if devices_of(&session).await?.is_some() {
        if !fresh(&session).await? {
            return confirm_first(&session).await;
        }
        if let Ok(handle) = handle.parse::<SessionHandle>() {
            session.revoke(&handle).await?;
        }
    }
    Ok(see_other("/"))
}

/// A devices form without a fresh login: back to the page, whose devices card then asks for
/// the password.
async fn confirm_first(session: &Session) -> Result<HttpResponse, WebError> {
    session.flash(FlashLevel::Warning, "Confirm your password first: nothing was logged out").await?;
    Ok(see_other("/"))
}

#[derive(Deserialize)]
struct ReauthForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn form_reauth(
    session: Session,
    req: HttpRequest,
    throttle: web::Data<LoginThrottle>,
    form: web::Form<ReauthForm>,
) -> Result<HttpResponse, WebError> {
    if !session.verify_csrf(&form.csrf).await? {
        return Ok(forged_form());
    }
    let (level, text) = match confirm_password(&session, &req, &throttle, &form.password).await? {
        Confirmed::NotLoggedIn => return Ok(see_other("/")),
        Confirmed::Throttled(wait) => {
            let text = HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(THROTTLED);
            return Ok(too_many_failures(wait, text));
        }
        Confirmed::Wrong => (FlashLevel::Error, "Wrong password"),
        Confirmed::Yes => (FlashLevel::Success, "Password confirmed: you can log other devices out"),
    };
    session.flash(level, text).await?;
    Ok(see_other("/"))
}

async fn form_logout_others(session: Session, form: web::Form<LogoutForm>) -> Result<HttpResponse, WebError> {
    if !session.verify_csrf(&form.csrf).await? {
        return Ok(forged_form());
    }
    if devices_of(&session).await?.is_some() {
        if !fresh(&session).await? {
            return confirm_first(&session).await;
        }
        session.logout_others().await?;
    }
    Ok(see_other("/"))
}

/// The "Your devices" card: this session and the user's [`DEVICES_PER_PAGE`] - 1 most recently
/// used others, forms to end them, and a count of the rest ("log out everywhere else" ends
/// those too). Ending a session needs a fresh login: without one (`fresh` false) the card asks
/// for the password instead of showing those forms.
fn devices_card(devices: &mut [Device], now: std::time::SystemTime, fresh: bool) -> String {
    devices.sort_by(|a, b| b.current.cmp(&a.current).then(b.last_used.cmp(&a.last_used)));
    let (shown, rest) = devices.split_at(devices.len().min(DEVICES_PER_PAGE));
    let ago = |t: std::time::SystemTime| {
        let secs = now.duration_since(t).map_or(0, |d| d.as_secs());
        match secs {
            0..60 => "just now".to_owned(),
            60..3600 => format!("{} min ago", secs / 60),
            3600..86_400 => format!("{} h ago", secs / 3600),
            _ => format!("{} days ago", secs / 86_400),
        }
    };
    let mut rows = String::new();
    for d in shown {
        let label = escape(d.label.as_deref().unwrap_or("Unknown device"));
        let remembered = if d.persistent { "remembered" } else { "until the browser closes" };
        let from = d.ip.map(|ip| format!(" from {ip}")).unwrap_or_default();
        let end = if d.current {
            r#"<b class="this">this device</b>"#.to_owned()
        } else if !fresh {
            String::new()
        } else {
            format!(
                r#"<form method="post" action="/devices/{h}/logout"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit" class="revoke" data-handle="{h}">Log out</button></form>"#,
                h = d.handle
            )
        };
        rows.push_str(&format!(
            r#"<tr class="device" data-handle="{h}"><td><b>{label}</b><br><span class="hint">signed in {created}{from}, last used {used}, {remembered}</span></td><td>{end}</td></tr>"#,
            h = d.handle,
            created = ago(d.created),
            used = ago(d.last_used),
        ));
    }
    let more = match rest.len() {
        0 => String::new(),
        n => format!(
            r#"<p class="hint" id="more-devices">and {n} more, used less recently ({total} in all)</p>"#,
            total = devices.len()
        ),
    };
    let others = if devices.len() > 1 && !fresh {
        r#"<form method="post" action="/reauth" id="reauth-form"><input type="hidden" name="csrf" value="{csrf}"><p class="hint">To log other devices out, confirm it is you.</p><label>Password <input name="password" type="password" autocomplete="current-password" required></label><button type="submit" id="reauth">Confirm</button></form>"#
    } else if devices.len() > 1 {
        r#"<form method="post" action="/devices/logout-others"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" id="logout-others">Log out everywhere else</button></form>"#
    } else {
        ""
    };
    format!(
        r#"<section class="card" id="devices">
  <h2>Your devices</h2>
  <table>{rows}</table>
  {more}
  {others}
</section>"#
    )
}

#[derive(Deserialize)]
struct PageQuery {
    login: Option<String>,
}

async fn page(session: Session, query: web::Query<PageQuery>) -> Result<HttpResponse, WebError> {
    let visits = count_visit(&session).await?;
    let failed = query.login.as_deref() == Some("failed");
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        // No other site may frame the page (clickjacking of its forms).
        .insert_header((CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"))
        .body(render(&session, visits, failed).await?))
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The flash messages queued for this page (shown once), or nothing.
fn flash_notes(flashes: &[Flash]) -> String {
    flashes
        .iter()
        .map(|f| format!("<p class=\"flash {}\" role=\"status\">{}</p>\n", f.level, escape(&f.text)))
        .collect()
}

/// The log-in form for a visitor, the log-out form for a user (its `{csrf}` filled in later).
fn action_card(userid: u64, logout_clears_data: bool) -> String {
    let logout_does = if logout_clears_data {
        "Logging out clears everything this browser's session holds (your visit counter too), \
         forgets who you are and rotates the session id."
    } else {
        "Logging out keeps this browser's other session data (your visit counter) but forgets \
         who you are and rotates the session id."
    };
    if userid == 0 {
        r#"<form method="post" action="/login" class="card">
  <input type="hidden" name="csrf" value="{csrf}">
  <h2>Log in</h2>
  <label>User name <input name="username" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <label class="check"><input type="checkbox" name="remember" id="remember"> Remember me</label>
  <button type="submit" id="login">Log in</button>
  <p class="hint">Try <b>alice</b> / <b>wonderland</b> or <b>bob</b> / <b>builder</b>.</p>
</form>"#
            .to_owned()
    } else {
        format!(
            r#"<form method="post" action="/logout" class="card">
  <input type="hidden" name="csrf" value="{{csrf}}">
  <h2>Log out</h2>
  <p id="logout-does">{logout_does}</p>
  <button type="submit" id="logout">Log out</button>
</form>"#
        )
    }
}

async fn render(session: &Session, visits: i64, failed: bool) -> Result<String, WebError> {
    let available = session.is_available();
    let userid = session.userid().await?;
    let id = session.id().await?.map_or_else(|| "(none yet)".to_owned(), |id| id.to_string());
    let who = match user_name(userid) {
        Some(name) => format!("{} (user id {userid})", escape(name)),
        None => format!("nobody (user id {userid})"),
    };
    let remembered = if session.persistent().await? {
        "yes: the cookie outlives the browser (Max-Age)"
    } else {
        "no: the cookie ends with the browser"
    };
    // A robot has no session and so no token; its forms do nothing anyway.
    let csrf = if available { session.csrf_token().await? } else { String::new() };
    let notice = if !available {
        "<p class=\"warn\">Your browser was taken for a robot (its User-Agent is a crawler, a \
         script or missing), so it gets no session and no cookie.</p>"
    } else if failed {
        "<p class=\"warn\" role=\"alert\">Wrong user name or password.</p>"
    } else {
        ""
    };
    let devices = match devices_of(session).await? {
        Some(mut devices) => {
            let fresh = devices.len() > 1 && fresh(session).await?;
            devices_card(&mut devices, std::time::SystemTime::now(), fresh)
        }
        None => String::new(),
    };
    let action = action_card(userid, session.config().session.logout_clears_data);
    let flashes = flash_notes(&session.take_flashes().await?);
    Ok(format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>draco-session: remember me</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; background: #f6f6f8; }}
  h1 {{ font-size: 1.6rem; margin-bottom: .2rem; }}
  .sub {{ color: #555; margin-top: 0; }}
  .card {{ background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; }}
  h2 {{ font-size: 1.15rem; margin: 0 0 .6rem; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th {{ text-align: left; font-weight: 600; padding: .3rem 1rem .3rem 0; white-space: nowrap; vertical-align: top; }}
  td {{ padding: .3rem 0; word-break: break-all; }}
  code {{ font-size: .9rem; background: #eef; padding: .1rem .3rem; border-radius: 4px; }}
  label {{ display: block; margin: .5rem 0; }}
  input[name] {{ display: block; width: 100%; max-width: 20rem; padding: .4rem; font: inherit; }}
  label.check input {{ display: inline; width: auto; }}
  button {{ font: inherit; padding: .45rem 1.2rem; border-radius: 6px; border: 1px solid #345; background: #2b5797; color: #fff; cursor: pointer; }}
  .hint {{ color: #555; font-size: .9rem; }}
  .warn {{ background: #fff4e5; border: 1px solid #f0b46c; border-radius: 6px; padding: .6rem .9rem; }}
  .flash {{ border-radius: 6px; padding: .6rem .9rem; background: #eef3fb; border: 1px solid #9bb4dc; }}
  .flash.success {{ background: #eaf6ec; border-color: #86c493; }}
</style>
</head>
<body>
<h1>Remember me</h1>
<p class="sub">A demo of <b>draco-session</b>: Draco's session API on actix-web.</p>
{notice}
{flashes}<section class="card">
  <h2>Your session</h2>
  <table>
    <tr><th>Visits</th><td id="visits">{visits}</td></tr>
    <tr><th>Logged in as</th><td id="user">{who}</td></tr>
    <tr><th>Remembered</th><td id="persistent">{remembered}</td></tr>
    <tr><th>Session id</th><td><code id="session-id">{id}</code></td></tr>
  </table>
</section>
{action}
{devices}
<p class="hint">The same data as JSON: <a href="/api/session">/api/session</a> (it counts a visit too).</p>
</body>
</html>
"#,
        id = escape(&id),
        action = action.replace("{csrf}", &escape(&csrf)),
        devices = devices.replace("{csrf}", &escape(&csrf)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn demo_users() {
        assert_eq!(authenticate("alice", "wonderland"), Some(1));
        assert_eq!(authenticate("bob", "builder"), Some(2));
        assert_eq!(authenticate("alice", "builder"), None);
        assert_eq!(authenticate("", ""), None);
    }
}
