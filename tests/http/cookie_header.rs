//! The raw `Cookie` header: which session id a request is taken to carry. A non-UTF-8 cookie
//! next to ours, duplicate `sid` cookies (first valid one wins; a dead id does not shadow a
//! live one, not even for a write), and forged, tampered or unknown ids (no session, never a
//! 5xx). Every test runs on the memory backend and on Redis.

use draco_session::SessionEngine;

use crate::support::*;

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
    let rotated = login(&app, Some(&dead), false).await; // rotates `dead` away
    assert_eq!(rotated.status, 200);
    assert_ne!(rotated.sid(), dead, "the login rotated the id");
    let r = call(&app, with_sid(get("/api/session"), &dead)).await;
    assert_ne!(r.json()["session_id"], dead.as_str(), "the old id is dead");
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

both!(
    a_non_utf8_cookie_next_to_ours_does_not_lose_the_session,
    with_duplicate_sid_cookies_the_first_valid_one_wins,
    a_write_behind_a_dead_cookie_lands_on_the_next_live_one,
    forged_tampered_or_unknown_ids_are_no_session_and_never_a_5xx
);
