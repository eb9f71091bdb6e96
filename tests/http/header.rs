//! The header transport (`[header] name`) over HTTP, as a client without cookies uses it: the
//! id of a new session comes back in the header, a login or logout rotates it there, `destroy()`
//! answers an empty value, a forged id logs nobody in, a header wins over a cookie (the
//! documented precedence; a dead header id too), `[cookie] enabled = false` never sends a `Set-Cookie`, and robots
//! and `limits.create_rate` apply as with cookies. Every test runs on the memory backend and on
//! Redis.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::test::TestRequest;
use serde_json::{Value, json};

use crate::support::*;

const HEADER: &str = "x-session-id";

/// What a response says, with every header kept.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The value of our header, if the response has it (once at most).
    fn header(&self) -> Option<String> {
        let all: Vec<_> = self.headers.get_all(HEADER).collect();
        assert!(all.len() <= 1, "several {HEADER}: {all:?}");
        all.first().map(|v| v.to_str().unwrap().to_owned())
    }

    /// The session id the header sends.
    fn id(&self) -> String {
        let id = self.header().unwrap_or_else(|| panic!("no {HEADER} header: {:?}", self.headers));
        assert_eq!(id.len(), 32, "{id:?}");
        id
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    fn cache_control(&self) -> Option<&str> {
        self.headers.get("cache-control").map(|v| v.to_str().unwrap())
    }
}

async fn send<S, B>(app: &S, req: TestRequest) -> Answer
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let (status, headers, body) = respond(app, req).await;
    Answer { status: status.as_u16(), headers, body }
}

fn with_id(req: TestRequest, id: &str) -> TestRequest {
    req.insert_header((HEADER, id))
}

fn credentials() -> Value {
    json!({"username": "alice", "password": "wonderland", "remember": false})
}

/// The whole life of a session through the header only: created, used, logged in (rotated),
/// logged out (rotated), destroyed (empty value); each old id dead; `Cache-Control: no-store`
/// on every response carrying an id.
async fn create_login_logout_destroy_through_the_header(b: Backend) {
    let f = fixture_with(b, |c| c.header.name = HEADER.into(), None).await;
    let app = app!(f.engine);

    // A client on the header sends it empty until it has an id.
    let r = send(&app, with_id(get("/api/session"), "")).await;
    assert_eq!(r.status, 200);
    let first = r.id();
    assert_eq!(r.json()["session_id"], first);
    assert_eq!(r.cache_control(), Some("no-store"));
    // The cookie is on too (the default), and names the same session.
    assert_eq!(r.set_cookies().len(), 1);
    assert!(r.set_cookies()[0].starts_with(&format!("sid={first};")), "{:?}", r.set_cookies());

    // Sending the id back finds the session; nothing new to say, so no header and no cookie.
    let r = send(&app, with_id(get("/api/session"), &first)).await;
    assert_eq!((r.status, r.json()["visits"].as_i64(), r.header()), (200, Some(2), None));
    assert!(r.set_cookies().is_empty());

    let r = send(&app, with_id(post("/api/login"), &first).set_json(credentials())).await;
    assert_eq!(r.status, 200);
    let logged_in = r.id();
    assert_ne!(logged_in, first, "login rotates the id");
    assert_eq!((r.json()["userid"].as_u64(), r.json()["session_id"].as_str()), (Some(1), Some(logged_in.as_str())));
    assert_eq!(r.cache_control(), Some("no-store"));
    let r = send(&app, with_id(get("/api/session"), &logged_in)).await;
    assert_eq!((r.json()["userid"].as_u64(), r.json()["visits"].as_i64()), (Some(1), Some(3)));
    // The pre-login id is dead: a new anonymous session, not alice's.
    let r = send(&app, with_id(get("/api/session"), &first)).await;
    assert_eq!((r.json()["userid"].as_u64(), r.json()["visits"].as_i64()), (Some(0), Some(1)));
    assert!(r.id() != first && r.id() != logged_in);

    let r = send(&app, with_id(post("/api/logout"), &logged_in)).await;
    let logged_out = r.id();
    assert_ne!(logged_out, logged_in, "logout rotates the id");
    assert_eq!(r.json()["userid"], 0);
    assert_eq!(send(&app, with_id(get("/api/ns/stats/visits"), &logged_in)).await.status, 404);
    assert_eq!(send(&app, with_id(get("/api/ns/stats/visits"), &logged_out)).await.json()["value"], 3);

    let r = send(&app, with_id(post("/test/destroy"), &logged_out)).await;
    assert_eq!((r.status, r.body.as_str()), (200, "true"));
    assert_eq!(r.header().as_deref(), Some(""), "destroy answers an empty value");
    assert_eq!(r.cache_control(), Some("no-store"));
    assert_eq!(send(&app, with_id(get("/api/ns/stats/visits"), &logged_out)).await.status, 404);
    // An empty header is no id: the request is a stranger (here, without a cookie either).
    let r = send(&app, with_id(get("/api/session"), "")).await;
    assert_eq!(r.json()["visits"], 1);
    assert!(r.id() != logged_out);
}

/// `[cookie] enabled = false`: the same life through the header, and never a `Set-Cookie`;
/// a cookie the client sends anyway names nothing.
async fn with_cookies_off_no_set_cookie_is_ever_sent(b: Backend) {
    let f = fixture_with(
        b,
        |c| {
            c.header.name = HEADER.into();
            c.cookie.enabled = false;
        },
        None,
    )
    .await;
    let app = app!(f.engine);
    let r = send(&app, get("/api/session")).await;
    let id = r.id();
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    assert_eq!(r.cache_control(), Some("no-store"));
    let r = send(
        &app,
        with_id(post("/api/login"), &id)
            .set_json(json!({"username": "alice", "password": "wonderland", "remember": true})),
    )
    .await;
    let id = r.id();
    assert_eq!((r.json()["userid"].as_u64(), r.json()["persistent"].as_bool()), (Some(1), Some(true)));
    assert!(r.set_cookies().is_empty());
    // The id as a cookie is ignored: a new session, not alice's.
    let r = send(&app, with_sid(get("/api/session"), &id)).await;
    assert_eq!(r.json()["userid"], 0);
    assert_ne!(r.id(), id);
    assert!(r.set_cookies().is_empty());
    let r = send(&app, with_id(post("/api/logout"), &id)).await;
    let id = r.id();
    assert!(r.set_cookies().is_empty());
    let r = send(&app, with_id(post("/test/destroy"), &id)).await;
    assert_eq!((r.body.as_str(), r.header().as_deref()), ("true", Some("")));
    assert!(r.set_cookies().is_empty());
    // The HTML page and its forms too.
    let r = send(&app, get("/")).await;
    assert!(r.set_cookies().is_empty() && r.header().is_some());
}

/// A forged, tampered, dead or garbage header logs nobody in and is never a 5xx: it reads as
/// no session, and a write makes a new anonymous one.
async fn a_forged_header_hijacks_nothing(b: Backend) {
    let f = fixture_with(b, |c| c.header.name = HEADER.into(), None).await;
    let app = app!(f.engine);
    let alice = send(&app, with_id(post("/api/login"), "").set_json(credentials())).await.id();
    let dead = {
        let old = send(&app, with_id(get("/api/session"), "")).await.id();
        send(&app, with_id(post("/test/destroy"), &old)).await;
        old
    };
    let mut tampered = alice.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let long = "A".repeat(5000);
    for forged in
        [tampered.as_str(), &dead, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "../../etc/passwd", "x", &long, "sid=abc; x"]
    {
        // A read: no session, nothing created, nothing sent.
        let r = send(&app, with_id(get("/api/ns/stats/visits"), forged)).await;
        assert_eq!(r.status, 404, "{forged}");
        assert!(r.header().is_none() && r.set_cookies().is_empty(), "{forged}");
        // A write: a new anonymous session, never alice's.
        let r = send(&app, with_id(get("/api/session"), forged)).await;
        assert_eq!(r.status, 200, "{forged}: {}", r.body);
        assert_eq!(r.json()["userid"], 0, "{forged}");
        assert!(r.id() != alice && r.id() != forged, "{forged}");
    }
    // Non-UTF-8 bytes are a header value too.
    let raw = actix_web::http::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap();
    let r = send(&app, get("/api/session").insert_header((HEADER, raw))).await;
    assert_eq!((r.status, r.json()["userid"].as_u64()), (200, Some(0)));
    // Alice's session is untouched.
    assert_eq!(send(&app, with_id(get("/api/session"), &alice)).await.json()["userid"], 1);
}

/// Both present: the header (when non-empty) alone names the session, even when the cookie
/// names a live one and the header's is forged; an empty header leaves the cookie in charge.
/// The response then sets the cookie to the header's new id, so both transports agree.
async fn the_header_wins_over_the_cookie(b: Backend) {
    let f = fixture_with(b, |c| c.header.name = HEADER.into(), None).await;
    let app = app!(f.engine);
    let alice = send(&app, with_id(post("/api/login"), "").set_json(credentials())).await.id();
    let anon = send(&app, with_id(get("/api/session"), "")).await.id();

    let r = send(&app, with_sid(with_id(get("/api/session"), &anon), &alice)).await;
    assert_eq!((r.json()["userid"].as_u64(), r.json()["session_id"].as_str()), (Some(0), Some(anon.as_str())));
    let r = send(&app, with_sid(with_id(get("/api/session"), &alice), &anon)).await;
    assert_eq!((r.json()["userid"].as_u64(), r.json()["session_id"].as_str()), (Some(1), Some(alice.as_str())));
    // A forged header does not fall back to the cookie's session.
    let r = send(&app, with_sid(with_id(get("/api/session"), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), &alice)).await;
    assert_eq!(r.json()["userid"], 0);
    let fresh = r.id();
    assert!(fresh != alice && fresh != anon);
    assert!(r.set_cookies()[0].starts_with(&format!("sid={fresh};")), "both transports name the new id");
    // An empty header is no header: the cookie decides.
    let r = send(&app, with_sid(with_id(get("/api/session"), ""), &alice)).await;
    assert_eq!((r.json()["userid"].as_u64(), r.json()["session_id"].as_str()), (Some(1), Some(alice.as_str())));
    // Without the header transport the header is just another header.
    let g = fixture(b).await;
    let plain = app!(g.engine);
    let alice = call(&plain, login_request()).await.sid();
    let r = send(&plain, with_sid(with_id(get("/api/session"), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), &alice)).await;
    assert_eq!((r.json()["userid"].as_u64(), r.header()), (Some(1), None));
}

/// A genuine id of a session that is gone (destroyed, or rotated away by a login) in the
/// header, beside a cookie naming a live session: the header still decides, so there is no
/// session (a read finds nothing; a write makes a new anonymous one), never the cookie's.
async fn a_dead_header_id_beside_a_live_cookie_is_no_session(b: Backend) {
    let f = fixture_with(b, |c| c.header.name = HEADER.into(), None).await;
    let app = app!(f.engine);
    let alice = send(&app, with_id(post("/api/login"), "").set_json(credentials())).await.id();
    let destroyed = send(&app, with_id(get("/api/session"), "")).await.id();
    let r = send(&app, with_id(post("/test/destroy"), &destroyed)).await;
    assert_eq!(r.body, "true");
    let rotated = send(&app, with_id(get("/api/session"), "")).await.id();
    let r = send(&app, with_id(login_request(), &rotated)).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.id(), rotated, "the login rotated the id away");
    for dead in [&destroyed, &rotated] {
        let r = send(&app, with_sid(with_id(get("/api/ns/stats/visits"), dead), &alice)).await;
        assert_eq!(r.status, 404, "a read through a dead header id finds no session: {}", r.body);
        assert!(r.header().is_none() && r.set_cookies().is_empty(), "{:?}", r.headers);
        let r = send(&app, with_sid(with_id(get("/api/session"), dead), &alice)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["userid"], 0, "not the cookie's session");
        let fresh = r.id();
        assert!(fresh != alice && &fresh != dead, "a new anonymous session");
    }
    // The cookie's session is untouched.
    let r = send(&app, with_id(get("/api/session"), &alice)).await;
    assert_eq!((r.json()["userid"].as_u64(), r.json()["session_id"].as_str()), (Some(1), Some(alice.as_str())));
}

fn login_request() -> TestRequest {
    post("/api/login").set_json(credentials())
}

/// Robots get no session through the header either, and `limits.create_rate` counts sessions
/// created for header clients as for cookie ones (returning ids are never limited).
async fn robots_and_the_create_rate_apply_to_the_header(b: Backend) {
    let f = fixture_with(
        b,
        |c| {
            c.header.name = HEADER.into();
            c.limits.create_rate = Some("2/h".parse().unwrap());
        },
        None,
    )
    .await;
    let app = app!(f.engine);
    let bot = |req: TestRequest| req.insert_header(("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1)"));
    let r = send(&app, bot(get("/api/session"))).await;
    assert_eq!((r.status, r.json()["available"].as_bool()), (200, Some(false)));
    assert!(r.header().is_none() && r.set_cookies().is_empty());
    let r = send(
        &app,
        bot(with_id(post("/api/ns/a/k").method(actix_web::http::Method::PUT), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
            .set_json(1),
    )
    .await;
    assert_eq!(r.json()["available"], false);
    assert!(r.header().is_none());
    assert_eq!(live_sessions(&f.engine).await, 0);

    let ids = [
        send(&app, with_id(get("/api/session"), "")).await.id(),
        send(&app, with_id(get("/api/session"), "")).await.id(),
    ];
    let r = send(&app, get("/api/session")).await;
    assert_eq!(r.status, 429);
    assert!(r.header().is_none() && r.set_cookies().is_empty());
    let r = send(&app, with_id(get("/api/session"), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).await;
    assert_eq!(r.status, 429, "a forged header is a new client's session, and pays");
    for id in &ids {
        assert_eq!(send(&app, with_id(get("/api/session"), id)).await.status, 200);
    }
    // As with a cookie, a valid session is kept whatever the User-Agent.
    let r = send(&app, bot(with_id(get("/api/session"), &ids[1]))).await;
    assert_eq!((r.json()["available"].as_bool(), r.json()["session_id"].as_str()), (Some(true), Some(ids[1].as_str())));
    // A login rotates without creating: not limited.
    let r = send(&app, with_id(login_request(), &ids[0])).await;
    assert_eq!(r.status, 200);
    assert_ne!(r.id(), ids[0]);
    assert_eq!(live_sessions(&f.engine).await, 2);
}

both!(
    create_login_logout_destroy_through_the_header,
    with_cookies_off_no_set_cookie_is_ever_sent,
    a_forged_header_hijacks_nothing,
    the_header_wins_over_the_cookie,
    a_dead_header_id_beside_a_live_cookie_is_no_session,
    robots_and_the_create_rate_apply_to_the_header
);
