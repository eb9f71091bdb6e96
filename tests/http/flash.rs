//! Flash messages over HTTP: queued by one request, read once by a later one (after a
//! redirect, a login), kept in a reserved scope no application scope shows, bounded; none for
//! robots and no session made by reading; and the demo's "Welcome back, alice" and "You are
//! logged out" through its forms. Every test runs on the memory backend and on Redis.

use crate::support;

use actix_web::{HttpResponse, web};
use draco_session::{
    FlashLevel, Session, WebError,
    limits::{MAX_FLASH_TEXT, MAX_FLASHES, RESERVED_SCOPE_PREFIX},
};
use serde::Deserialize;
use serde_json::{Value, json};

use support::*;

#[derive(Deserialize)]
struct ToFlash {
    level: FlashLevel,
    text: String,
    /// Flash this many, numbered.
    times: Option<usize>,
    /// Append this many `x`.
    pad: Option<usize>,
}

/// Queues the message(s), then redirects to the page that takes them, as a form would.
async fn flash(session: Session, q: web::Query<ToFlash>) -> Result<HttpResponse, WebError> {
    let text = format!("{}{}", q.text, "x".repeat(q.pad.unwrap_or(0)));
    match q.times {
        None => session.flash(q.level, text).await?,
        Some(n) => {
            for i in 0..n {
                session.flash(q.level, format!("{text} {i}")).await?;
            }
        }
    }
    Ok(HttpResponse::SeeOther().insert_header(("location", "/t/take")).finish())
}

async fn take(session: Session) -> Result<HttpResponse, WebError> {
    Ok(HttpResponse::Ok().json(session.take_flashes().await?))
}

/// What an application can see of the session's scopes.
async fn scopes(session: Session) -> Result<HttpResponse, WebError> {
    let reserved = format!("{RESERVED_SCOPE_PREFIX}flash");
    let read = session.namespace(&reserved).keys().await;
    Ok(HttpResponse::Ok().json(json!({
        "keys": session.keys().await?,
        "cart": session.namespace("cart").keys().await?,
        "reserved": read.map_err(|e| e.to_string()),
    })))
}

macro_rules! flash_app {
    ($engine:expr) => {
        ::actix_web::test::init_service(
            ::actix_web::App::new()
                .wrap(::draco_session::SessionMiddleware::new($engine.clone()))
                .configure(|cfg| support::app::configure(cfg, $engine.config().limits.max_value_bytes))
                .route("/t/flash", web::post().to(flash))
                .route("/t/take", web::get().to(take))
                .route("/t/scopes", web::get().to(scopes)),
        )
        .await
    };
}

fn texts(r: &Reply) -> Vec<String> {
    r.json().as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap().to_owned()).collect()
}

/// Queued, redirected, read once (oldest first, with their levels), kept through a login
/// (which rotates the id), and reading never makes a session.
async fn flashes_are_read_once_and_survive_a_redirect_and_a_login(b: Backend) {
    let f = fixture(b).await;
    let app = flash_app!(f.engine);
    // Reading without a session: nothing, and no session made for it.
    let r = call(&app, get("/t/take")).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!([])));
    assert!(r.set_cookies.is_empty());
    assert_eq!(live_sessions(&f.engine).await, 0);

    // The first flash makes the session; the redirect's target reads it.
    let r = call(&app, post("/t/flash?level=success&text=Saved")).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/t/take")));
    let sid = r.sid();
    call(&app, with_sid(post("/t/flash?level=warning&text=Careful"), &sid)).await;
    let r = call(&app, with_sid(get("/t/take"), &sid)).await;
    assert_eq!(r.json(), json!([{"level": "success", "text": "Saved"}, {"level": "warning", "text": "Careful"}]));
    assert_eq!(call(&app, with_sid(get("/t/take"), &sid)).await.json(), json!([]), "read once");

    // Kept in the session until taken: through a login and its new id.
    call(&app, with_sid(post("/t/flash?level=info&text=Before%20login"), &sid)).await;
    let sid = login(&app, Some(&sid), false).await.sid();
    assert_eq!(texts(&call(&app, with_sid(get("/t/take"), &sid)).await), ["Before login"]);
    assert_eq!(call(&app, with_sid(get("/t/take"), &sid)).await.json(), json!([]));
    assert_eq!(live_sessions(&f.engine).await, 1);
}

/// The queue lives in a reserved scope: no application scope lists it and no namespace can
/// read it. It keeps the newest MAX_FLASHES and cuts long text.
async fn the_queue_is_reserved_and_bounded(b: Backend) {
    let f = fixture(b).await;
    let app = flash_app!(f.engine);
    let sid = call(&app, post("/t/flash?level=error&text=n&times=40")).await.sid();
    call(&app, with_sid(post("/api/ns/cart/item").method(actix_web::http::Method::PUT), &sid).set_json("book")).await;
    let v = call(&app, with_sid(get("/t/scopes"), &sid)).await.json();
    assert_eq!((v["keys"].clone(), v["cart"].clone()), (json!([]), json!(["item"])));
    assert!(v["reserved"]["Err"].as_str().unwrap().contains("reserved"), "{v}");

    let got = texts(&call(&app, with_sid(get("/t/take"), &sid)).await);
    let want: Vec<String> = (40 - MAX_FLASHES..40).map(|i| format!("n {i}")).collect();
    assert_eq!(got, want, "the newest {MAX_FLASHES}, oldest first");

    let r = call(&app, with_sid(post(&format!("/t/flash?level=info&text=y&pad={}", 3 * MAX_FLASH_TEXT)), &sid)).await;
    assert_eq!(r.status, 303);
    let got = texts(&call(&app, with_sid(get("/t/take"), &sid)).await);
    assert_eq!(got[0].len(), MAX_FLASH_TEXT);
    // The data is still the application's own, unchanged.
    assert_eq!(call(&app, with_sid(get("/api/ns/cart/item"), &sid)).await.json()["value"], "book");
}

/// A robot gets no session for a flash (the flash is dropped, the handler goes on) and reads
/// none.
async fn robots_get_no_flash_and_no_session(b: Backend) {
    let f = fixture(b).await;
    let app = flash_app!(f.engine);
    let bot = |req: actix_web::test::TestRequest| req.insert_header(("user-agent", "Googlebot/2.1"));
    let r = call(&app, bot(post("/t/flash?level=info&text=hi"))).await;
    assert_eq!((r.status.as_u16(), r.set_cookies.len()), (303, 0));
    let r = call(&app, bot(get("/t/take"))).await;
    assert_eq!((r.status.as_u16(), r.json(), r.set_cookies.len()), (200, json!([]), 0));
    assert_eq!(live_sessions(&f.engine).await, 0);
}

/// The demo's page says "Welcome back, alice" once after the login form's redirect, and "You
/// are logged out" after the logout form's, with `logout_clears_data` off or on.
async fn the_demo_page_welcomes_once_and_says_logged_out(b: Backend) {
    for clears in [false, true] {
        let f = fixture_with(b, |c| c.session.logout_clears_data = clears, None).await;
        let app = app!(f.engine);
        let r = call(&app, get("/")).await;
        assert!(!r.body.contains("class=\"flash"), "{}", r.body);
        let sid = r.sid();
        let form = [("username", "alice"), ("password", "wonderland"), ("csrf", &csrf_of(&r.body))];
        let r = call(&app, with_sid(post("/login"), &sid).set_form(form)).await;
        assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/")));
        let sid = r.sid();
        let page = call(&app, with_sid(get("/"), &sid)).await.body;
        assert_eq!(page.matches("Welcome back, alice").count(), 1, "{page}");
        let page = call(&app, with_sid(get("/"), &sid)).await.body;
        assert!(!page.contains("Welcome back"), "shown once: {page}");
        let r = call(&app, with_sid(post("/logout"), &sid).set_form([("csrf", csrf_of(&page))])).await;
        assert_eq!(r.status, 303);
        let sid = r.sid();
        let page = call(&app, with_sid(get("/"), &sid)).await.body;
        assert!(page.contains("You are logged out") && page.contains("nobody (user id 0)"), "{clears}: {page}");
        assert!(!call(&app, with_sid(get("/"), &sid)).await.body.contains("You are logged out"));
        // The JSON API does not flash.
        let r = login(&app, Some(&sid), false).await;
        let v: Value = r.json();
        assert_eq!(v["userid"], 1);
        assert!(!call(&app, with_sid(get("/"), &r.sid())).await.body.contains("Welcome back"));
    }
}

both!(
    flashes_are_read_once_and_survive_a_redirect_and_a_login,
    the_queue_is_reserved_and_bounded,
    robots_get_no_flash_and_no_session,
    the_demo_page_welcomes_once_and_says_logged_out
);
