//! Robots over HTTP: crawlers, command-line clients, headless browsers and requests without a
//! user agent are served every route but get no session and no cookie (a plain write is a
//! 403), while a valid session is kept whatever the user agent. Every test runs on the memory
//! backend and on Redis.

use actix_web::test::TestRequest;
use serde_json::json;

use crate::support::*;

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
    if let Some(content_type) = req.head().headers().get("content-type") {
        out = out.insert_header(("content-type", content_type.clone()));
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

both!(robots_are_served_but_get_no_session_and_no_cookie, a_valid_session_is_kept_whatever_the_user_agent);
