//! Cross-site request forgery, over HTTP: the session's CSRF tokens (a new masking each time,
//! each verifying; tampered, foreign and stale ones refused; the secret out of the application's
//! scopes), the demo's forms (403 without their token), its JSON API (415 unless the request
//! says JSON), and the middleware's origin guard (403 for another site's unsafe request).
//! Every test runs on the memory backend and on Redis.

use actix_web::test::TestRequest;
use serde_json::json;

use crate::support::*;

/// A test app: what `call` takes.
trait App<B>:
    actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>
{
}

impl<S, B> App<B> for S where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >
{
}

async fn token_of<B: actix_web::body::MessageBody>(app: &impl App<B>, sid: &str) -> String {
    let r = call(app, with_sid(get("/test/csrf/token"), sid)).await;
    assert_eq!((r.status.as_u16(), r.set_cookies.len()), (200, 0), "{}", r.body);
    r.body
}

async fn verifies<B: actix_web::body::MessageBody>(app: &impl App<B>, sid: Option<&str>, token: &str) -> bool {
    let mut req = post("/test/csrf/verify").set_payload(token.to_owned());
    if let Some(sid) = sid {
        req = with_sid(req, sid);
    }
    let r = call(app, req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.parse().unwrap()
}

async fn every_token_differs_and_every_one_verifies(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let tokens = [token_of(&app, &sid).await, token_of(&app, &sid).await, token_of(&app, &sid).await];
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2] && tokens[0] != tokens[2], "{tokens:?}");
    for t in &tokens {
        assert_eq!(t.len(), 86, "{t}");
        assert!(t.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{t}");
        assert!(verifies(&app, Some(&sid), t).await, "{t}");
    }
}

async fn tampered_garbage_and_foreign_tokens_fail(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let token = token_of(&app, &sid).await;
    let mut flipped = token.clone().into_bytes();
    flipped[60] = if flipped[60] == b'x' { b'y' } else { b'x' };
    let flipped = String::from_utf8(flipped).unwrap();
    let long = "A".repeat(100_000);
    for bad in
        ["", "garbage", &token[..85], &format!("{token}A"), &flipped, &"!".repeat(86), "é".repeat(43).as_str(), &long]
    {
        assert!(!verifies(&app, Some(&sid), bad).await, "{bad:.90}");
    }
    // Another session's token, and a token with no session at all.
    let other = new_session(&app).await;
    assert!(!verifies(&app, Some(&other), &token).await);
    assert!(verifies(&app, Some(&other), &token_of(&app, &other).await).await);
    let before = live_sessions(&f.engine).await;
    assert!(!verifies(&app, None, &token).await);
    assert_eq!(live_sessions(&f.engine).await, before, "verifying creates no session");
}

async fn a_login_or_logout_voids_earlier_tokens(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let anonymous = token_of(&app, &sid).await;
    let sid = login(&app, Some(&sid), false).await.sid();
    assert!(!verifies(&app, Some(&sid), &anonymous).await, "a token from before the login");
    let alice = token_of(&app, &sid).await;
    assert!(verifies(&app, Some(&sid), &alice).await);
    let sid = call(&app, with_sid(post("/api/logout"), &sid)).await.sid();
    assert!(!verifies(&app, Some(&sid), &alice).await, "a token from before the logout");
    assert!(verifies(&app, Some(&sid), &token_of(&app, &sid).await).await);
}

async fn a_robot_has_no_token_and_the_secret_is_out_of_reach(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let robot = TestRequest::get().uri("/test/csrf/token").insert_header(("user-agent", "curl/8.0"));
    let r = call(&app, robot).await;
    assert_eq!((r.status.as_u16(), r.set_cookies.len()), (403, 0), "{}", r.body);
    // The first token of a new visitor creates its session.
    let r = call(&app, get("/test/csrf/token")).await;
    let sid = r.sid();
    assert!(verifies(&app, Some(&sid), &r.body).await);
    let v = call(&app, with_sid(get("/test/csrf/reserved"), &sid)).await.json();
    assert_eq!(v["keys"], json!([]), "the secret is in no scope of the application's");
    for op in ["read", "write"] {
        assert!(v[op]["Err"].as_str().unwrap().contains("reserved"), "{v}");
    }
    assert!(verifies(&app, Some(&sid), &r.body).await, "the refused write changed nothing");
}

async fn demo_forms_need_their_token(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let page = call(&app, get("/")).await;
    let sid = page.sid();
    let token = csrf_of(&page.body);
    let creds = [("username", "alice"), ("password", "wonderland")];
    for forged in [vec![], vec![("csrf", "")], vec![("csrf", "x".repeat(86).leak() as &str)]] {
        let fields: Vec<_> = creds.iter().copied().chain(forged).collect();
        let r = call(&app, with_sid(post("/login"), &sid).set_form(fields)).await;
        assert_eq!((r.status.as_u16(), r.set_cookies.len()), (403, 0), "{}", r.body);
        assert!(r.body.contains("reload the page"), "{}", r.body);
    }
    // Without a cookie (another site's form, as SameSite=Lax withholds it): refused too.
    let fields: Vec<_> = creds.iter().copied().chain([("csrf", token.as_str())]).collect();
    let r = call(&app, post("/login").set_form(fields.clone())).await;
    assert_eq!((r.status.as_u16(), r.set_cookies.len()), (403, 0));
    assert_eq!(call(&app, with_sid(get("/api/session"), &sid)).await.json()["userid"], 0);
    // With the page's token: logged in.
    let r = call(&app, with_sid(post("/login"), &sid).set_form(fields)).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/")));
    let sid = r.sid();
    // Logout: refused without the new page's token, done with it.
    for forged in [vec![], vec![("csrf", token.as_str())]] {
        let r = call(&app, with_sid(post("/logout"), &sid).set_form(forged)).await;
        assert_eq!((r.status.as_u16(), r.set_cookies.len()), (403, 0), "{}", r.body);
    }
    assert_eq!(call(&app, with_sid(get("/api/session"), &sid)).await.json()["userid"], 1);
    let page = call(&app, with_sid(get("/"), &sid)).await.body;
    let r = call(&app, with_sid(post("/logout"), &sid).set_form([("csrf", csrf_of(&page))])).await;
    assert_eq!(r.status, 303);
    assert_eq!(call(&app, with_sid(get("/api/session"), &r.sid())).await.json()["userid"], 0);
}

async fn the_json_api_takes_json_only(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let body = r#"{"username":"alice","password":"wonderland","remember":true}"#;
    // What a cross-site form (enctype="text/plain") or a no-cors fetch can send: refused, no
    // session made.
    for content_type in
        [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data"), None]
    {
        let mut req = TestRequest::post().uri("/api/login").insert_header(("user-agent", BROWSER));
        if let Some(ct) = content_type {
            req = req.insert_header(("content-type", ct));
        }
        let r = call(&app, req.set_payload(body)).await;
        assert_eq!((r.status.as_u16(), r.set_cookies.len()), (415, 0), "{content_type:?}: {}", r.body);
    }
    assert_eq!(live_sessions(&f.engine).await, 0);
    let sid = login(&app, None, false).await.sid();
    let r = call(&app, with_sid(post("/api/logout"), &sid).insert_header(("content-type", "text/plain"))).await;
    assert_eq!((r.status.as_u16(), r.set_cookies.len()), (415, 0));
    let r =
        call(&app, with_sid(TestRequest::post().uri("/api/incr/n").insert_header(("user-agent", BROWSER)), &sid)).await;
    assert_eq!(r.status, 415, "a bodyless POST must say JSON too");
    assert_eq!(call(&app, with_sid(get("/api/session"), &sid)).await.json()["userid"], 1);
    // JSON with parameters, or a +json type, is JSON.
    for ct in ["application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"] {
        let r = call(&app, with_sid(post("/api/incr/n").insert_header(("content-type", ct)), &sid)).await;
        assert_eq!(r.status, 200, "{ct}: {}", r.body);
    }
}

async fn the_origin_guard_refuses_other_sites(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let login_as = |h: &[(&'static str, &'static str)]| {
        let mut req = post("/api/login").insert_header(("host", "demo.test"));
        for &pair in h {
            req = req.insert_header(pair);
        }
        req.set_json(json!({"username": "alice", "password": "wonderland"}))
    };
    for refused in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site"), ("origin", "http://other.demo.test")],
        &[("origin", "http://evil.test")],
        &[("origin", "null")],
        &[("origin", "https://demo.test")],
    ] {
        let r = call(&app, login_as(refused)).await;
        assert_eq!((r.status.as_u16(), r.set_cookies.len()), (403, 0), "{refused:?}: {}", r.body);
        // The demo's API answers its errors as JSON.
        assert!(r.json()["error"].as_str().unwrap().starts_with("cross-site request refused"), "{}", r.body);
    }
    // The same with a form: refused before the handler looks at the token.
    let r = call(&app, post("/logout").insert_header(("sec-fetch-site", "cross-site")).set_form([("csrf", "x")])).await;
    assert!(r.status == 403 && r.body.starts_with("cross-site request refused"), "{}", r.body);
    assert_eq!(live_sessions(&f.engine).await, 0);
    for allowed in [
        &[("sec-fetch-site", "same-origin")][..],
        &[("sec-fetch-site", "none")],
        &[("origin", "http://demo.test")],
        &[("origin", "http://demo.test:80")],
        &[],
    ] {
        let r = call(&app, login_as(allowed)).await;
        assert_eq!(r.status, 200, "{allowed:?}: {}", r.body);
    }
    // Reads are never refused.
    let r = call(&app, get("/api/session").insert_header(("sec-fetch-site", "cross-site"))).await;
    assert_eq!(r.status, 200);
}

async fn the_origin_guard_follows_its_config(b: Backend) {
    let cross = [("sec-fetch-site", "cross-site"), ("origin", "https://pay.example.com")];
    let request = || {
        let mut req = post("/api/incr/n");
        for pair in cross {
            req = req.insert_header(pair);
        }
        req
    };
    let f = fixture_with(b, |c| c.csrf.trusted_origins = vec!["https://pay.example.com".into()], None).await;
    let app = app!(f.engine);
    assert_eq!(call(&app, request()).await.status, 200, "a trusted origin");
    let f = fixture_with(b, |c| c.csrf.origin_guard = false, None).await;
    let app = app!(f.engine);
    assert_eq!(call(&app, request()).await.status, 200, "the guard off");
    let f = fixture(b).await;
    let app = app!(f.engine);
    assert_eq!(call(&app, request()).await.status, 403, "the default");
}

both!(
    every_token_differs_and_every_one_verifies,
    tampered_garbage_and_foreign_tokens_fail,
    a_login_or_logout_voids_earlier_tokens,
    a_robot_has_no_token_and_the_secret_is_out_of_reach,
    demo_forms_need_their_token,
    the_json_api_takes_json_only,
    the_origin_guard_refuses_other_sites,
    the_origin_guard_follows_its_config
);
