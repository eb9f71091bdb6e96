//! The demo's defaults a user would copy (issue 24): failed logins throttled per account and
//! per client (429 with `Retry-After`, a right password too, on governor's fake clock), every
//! `/api` error as JSON, `nosniff` on every response and `frame-ancestors 'none'` on the page,
//! its own counters out of the generic API's reach, and a devices card of one page under the
//! default `limits.max_sessions_per_user`. Every test runs on the memory backend and on Redis.

use std::time::Duration;

use actix_web::test::TestRequest;
use actix_web::web;
use governor::clock::FakeRelativeClock;
use serde_json::{Value, json};

use crate::support::app::throttle::{ACCOUNT_BUDGET, CLIENT_BUDGET, LoginThrottle, ThrottleClock};
use crate::support::*;

/// The demo app with a login throttle on `clock` (the demo's budgets).
macro_rules! throttled_app {
    ($engine:expr, $clock:expr) => {{
        let throttle = web::Data::new(LoginThrottle::new(ACCOUNT_BUDGET, CLIENT_BUDGET, ThrottleClock::fake($clock)));
        ::actix_web::test::init_service(
            ::actix_web::App::new()
                .wrap(::draco_session::SessionMiddleware::new($engine.clone()))
                .wrap(::actix_web::middleware::from_fn(app::hardening))
                .configure(|cfg| app::configure_with(cfg, $engine.config().limits.max_value_bytes, throttle)),
        )
        .await
    }};
}

use crate::support::app;

fn from(req: TestRequest, ip: [u8; 4]) -> TestRequest {
    req.peer_addr(std::net::SocketAddr::from((ip, 40000)))
}

fn credentials(user: &str, password: &str) -> Value {
    json!({"username": user, "password": password})
}

/// The demo's budgets, which the tests below count on.
#[test]
fn the_budgets() {
    assert_eq!((ACCOUNT_BUDGET.failures.get(), ACCOUNT_BUDGET.window), (5, Duration::from_secs(900)));
    assert_eq!((CLIENT_BUDGET.failures.get(), CLIENT_BUDGET.window), (20, Duration::from_secs(900)));
}

/// 300 wrong passwords for alice, each from another address: 5 are answered 401, the rest
/// 429; then her right password, from yet another address, is a 429 too, until one failure
/// has refilled (15 min / 5); bob is not locked.
async fn failed_logins_lock_the_account_even_for_the_right_password(b: Backend) {
    let f = fixture(b).await;
    let clock = FakeRelativeClock::default();
    let app = throttled_app!(f.engine, clock.clone());
    let mut statuses = Vec::new();
    for i in 0..300u16 {
        let [hi, lo] = i.to_be_bytes();
        let ip = [10, 1, hi, lo];
        let r = call(&app, from(post("/api/login"), ip).set_json(credentials("alice", "guess"))).await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let right = || from(post("/api/login"), [10, 9, 9, 9]).set_json(credentials("alice", "wonderland"));
    let (status, headers, body) = respond(&app, right()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "180");
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert!(headers.get("set-cookie").is_none(), "no login happened");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].as_str().unwrap().contains("too many"));
    let bob = call(&app, from(post("/api/login"), [10, 9, 9, 9]).set_json(credentials("bob", "builder"))).await;
    assert_eq!(bob.status, 200, "{}", bob.body);
    // Still locked a second before the refill; then one try, not a new burst.
    clock.advance(Duration::from_secs(179));
    assert_eq!(respond(&app, right()).await.1.get("retry-after").unwrap(), "1");
    clock.advance(Duration::from_secs(1));
    let r = call(&app, right()).await;
    assert_eq!((r.status.as_u16(), r.json()["userid"].as_u64()), (200, Some(1)), "{}", r.body);
}

/// 20 wrong passwords from one address (any user names) lock that address: even bob's right
/// password is a 429 from it, through the API and the HTML form; another address logs in.
async fn failed_logins_lock_the_client_for_every_account(b: Backend) {
    let f = fixture(b).await;
    let app = throttled_app!(f.engine, FakeRelativeClock::default());
    let ip = [192, 0, 2, 7];
    for i in 0..20 {
        let r = call(&app, from(post("/api/login"), ip).set_json(credentials(&format!("user{i}"), "guess"))).await;
        assert_eq!(r.status, 401, "failure {i}: {}", r.body);
    }
    let (status, headers, _) =
        respond(&app, from(post("/api/login"), ip).set_json(credentials("bob", "builder"))).await;
    assert_eq!(status, 429);
    assert_eq!(headers.get("retry-after").unwrap(), "45");
    // The form: its CSRF token first (a page from that address), then the right password.
    let page = call(&app, from(get("/"), ip)).await;
    let csrf = csrf_of(&page.body);
    let form = from(with_sid(TestRequest::post().uri("/login"), &page.sid()), ip)
        .insert_header(("user-agent", BROWSER))
        .set_form([("username", "bob"), ("password", "builder"), ("csrf", csrf.as_str())]);
    let (status, headers, _) = respond(&app, form).await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_some());
    let other = call(&app, from(post("/api/login"), [192, 0, 2, 8]).set_json(credentials("bob", "builder"))).await;
    assert_eq!(other.status, 200);
}

/// Right passwords cost nothing: a load generator logging in again and again from one
/// address is never throttled.
async fn successful_logins_are_never_throttled(b: Backend) {
    let f = fixture(b).await;
    let app = throttled_app!(f.engine, FakeRelativeClock::default());
    for i in 0..60 {
        let r = call(&app, from(post("/api/login"), [192, 0, 2, 9]).set_json(credentials("alice", "wonderland"))).await;
        assert_eq!(r.status, 200, "login {i}");
    }
}

/// `X-Content-Type-Options: nosniff` on every response: the page, the API, a form's
/// redirect, a 404, and the session middleware's own refusal; `frame-ancestors 'none'` on
/// the page.
async fn every_response_says_nosniff_and_the_page_may_not_be_framed(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let page = respond(&app, get("/")).await;
    assert_eq!(page.0, 200);
    assert_eq!(page.1.get("content-security-policy").unwrap(), "frame-ancestors 'none'");
    let sid = new_session(&app).await;
    let requests = [
        get("/"),
        get("/api/session"),
        with_sid(TestRequest::post().uri("/logout").insert_header(("user-agent", BROWSER)), &sid)
            .set_form([("csrf", "wrong")]),
        with_sid(TestRequest::post().uri("/login").insert_header(("user-agent", BROWSER)), &sid).set_form([
            ("username", "alice"),
            ("password", "nope"),
            ("csrf", "wrong"),
        ]),
        get("/no/such/page"),
        get("/api/no/such/route"),
        post("/api/logout").insert_header(("sec-fetch-site", "cross-site")),
    ];
    for req in requests {
        let (status, headers, body) = respond(&app, req).await;
        assert_eq!(
            headers.get("x-content-type-options").map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{status} {body}"
        );
    }
}

/// Every error of the JSON API is JSON, `{"error": "..."}`, with its status and headers: the
/// reserved scope's 400, the origin guard's 403, the engine's 413, the 415, the new-session
/// pace's 429 (with `Retry-After`), an unknown route's 404, a 401.
async fn every_api_error_is_json(b: Backend) {
    let f = fixture_with(
        b,
        |c| {
            c.limits.max_value_bytes = 1024;
            c.limits.create_rate = Some("2/m".parse().unwrap());
        },
        None,
    )
    .await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let put = |uri: &str| with_sid(TestRequest::put().uri(uri).insert_header(("user-agent", BROWSER)), &sid);
    let cases: Vec<(TestRequest, u16)> = vec![
        (with_sid(get("/api/ns/__draco.csrf/secret"), &sid), 400),
        (put("/api/ns/__draco.flash/k").set_json(json!(1)), 400),
        (with_sid(post("/api/logout"), &sid).insert_header(("sec-fetch-site", "cross-site")), 403),
        (put("/api/ns/a/big").set_json(json!("x".repeat(2000))), 413),
        (with_sid(TestRequest::post().uri("/api/logout").insert_header(("user-agent", BROWSER)), &sid), 415),
        (get("/api/no/such/route"), 404),
        (post("/api/login").set_json(credentials("alice", "nope")), 401),
    ];
    for (req, want) in cases {
        let (status, headers, body) = respond(&app, req).await;
        assert_eq!(status.as_u16(), want, "{body}");
        assert_eq!(headers.get("content-type").unwrap(), "application/json", "{want}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{want}: not JSON ({e}): {body}"));
        assert!(!json["error"].as_str().unwrap().is_empty(), "{want}: {body}");
    }
    // The pace of new sessions: two per address, then a 429.
    assert_eq!(call(&app, from(post("/api/incr/n"), [198, 51, 100, 7])).await.status, 200);
    assert_eq!(call(&app, from(post("/api/incr/n"), [198, 51, 100, 7])).await.status, 200);
    let (status, headers, body) = respond(&app, from(post("/api/incr/n"), [198, 51, 100, 7])).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.get("retry-after").is_some());
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].as_str().unwrap().contains("too many new sessions"));
    // Outside /api, errors stay as they were: the page's forms answer text.
    let (status, headers, _) = respond(&app, get("/no/such/page")).await;
    assert_eq!(status, 404);
    assert_ne!(headers.get("content-type").map(|v| v.to_str().unwrap()), Some("application/json"));
}

/// `PUT /api/ns/stats/visits` with `"x"` made every page a 500: the demo's own scopes are
/// read-only through the generic API, and the pages and counters go on.
async fn the_demo_s_counters_cannot_be_broken_through_the_generic_api(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    assert_eq!(call(&app, with_sid(post("/api/incr/n"), &sid)).await.json()["value"], 1);
    let put = |uri: &str| with_sid(TestRequest::put().uri(uri).insert_header(("user-agent", BROWSER)), &sid);
    for uri in ["/api/ns/stats/visits", "/api/ns/counters/n"] {
        let r = call(&app, put(uri).set_json("x")).await;
        assert_eq!(r.status, 403, "{uri}: {}", r.body);
        assert!(r.json()["error"].is_string());
        assert_eq!(call(&app, with_sid(delete(uri), &sid)).await.status, 403, "{uri}");
    }
    // Reading them is fine.
    assert_eq!(call(&app, with_sid(get("/api/ns/stats/visits"), &sid)).await.json()["value"], 1);
    let page = call(&app, with_sid(get("/"), &sid)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(r#"<td id="visits">2</td>"#), "{}", page.body);
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!((r.status.as_u16(), r.json()["visits"].as_i64()), (200, Some(3)));
    assert_eq!(call(&app, with_sid(post("/api/incr/n"), &sid)).await.json()["value"], 2);
    let r = call(&app, with_sid(post("/api/login"), &sid).set_json(credentials("alice", "wonderland"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Other scopes take any value.
    assert_eq!(call(&app, with_sid(put("/api/ns/stats2/visits"), &r.sid()).set_json("x")).await.status, 200);
}

fn device_rows(page: &str) -> usize {
    page.matches(r#"<tr class="device""#).count()
}

/// Under the default `limits.max_sessions_per_user`, twelve logins leave alice ten sessions,
/// and her page lists ten.
async fn the_default_keeps_ten_sessions_per_user(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let mut last = String::new();
    for _ in 0..12 {
        last = login(&app, None, false).await.sid();
    }
    assert_eq!(f.engine.sessions_of(1).await.unwrap().len(), 10);
    let page = call(&app, with_sid(get("/"), &last)).await;
    assert_eq!(device_rows(&page.body), 10, "{}", page.body);
    assert!(!page.body.contains(r#"id="more-devices""#));
}

/// Without a per-user cap, the devices card still shows one page: this session and the most
/// recently used others, and a count of the rest.
async fn the_devices_card_shows_one_page(b: Backend) {
    let f = fixture_with(b, |c| c.limits.max_sessions_per_user = 0, None).await;
    let app = app!(f.engine);
    let mut sids = Vec::new();
    for _ in 0..25 {
        sids.push(login(&app, None, false).await.sid());
    }
    // The first session is used last: the page is its own and lists it first.
    let page = call(&app, with_sid(get("/"), &sids[0])).await;
    assert_eq!(page.status, 200);
    assert_eq!(device_rows(&page.body), app::DEVICES_PER_PAGE, "{}", page.body);
    assert!(page.body.contains("and 5 more, used less recently (25 in all)"), "{}", page.body);
    let first_row = page.body.find(r#"<tr class="device""#).unwrap();
    assert!(page.body[first_row..].split("</tr>").next().unwrap().contains("this device"));
    // The API lists them all.
    let r = call(&app, with_sid(get("/api/devices"), &sids[0])).await;
    assert_eq!(r.json()["devices"].as_array().unwrap().len(), 25);
}

both!(
    failed_logins_lock_the_account_even_for_the_right_password,
    failed_logins_lock_the_client_for_every_account,
    successful_logins_are_never_throttled,
    every_response_says_nosniff_and_the_page_may_not_be_framed,
    every_api_error_is_json,
    the_demo_s_counters_cannot_be_broken_through_the_generic_api,
    the_default_keeps_ten_sessions_per_user,
    the_devices_card_shows_one_page,
);
