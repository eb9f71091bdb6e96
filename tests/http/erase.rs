//! The demo's `POST /api/erase-me`: 401 (JSON) without a logged-in user; for a user, every
//! session of theirs ends — the asking one's cookie removed, every other cookie of theirs dead
//! — and the answer counts them, `{"erased": N}`; another user's session and an anonymous one
//! are untouched; another site's request is refused before the handler. Every test runs on the
//! memory backend and on Redis.

use serde_json::json;

use crate::support::*;

async fn erase_me_ends_every_session_of_the_user_and_no_one_elses(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    // alice in three browsers, each with data of its own, one remembered.
    let mut alice = Vec::new();
    for remember in [true, false, false] {
        let sid = login(&app, None, remember).await.sid();
        let r = call(&app, with_sid(post("/api/incr/clicks"), &sid)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        alice.push(sid);
    }
    let bob = call(&app, post("/api/login").set_json(json!({"username": "bob", "password": "builder"}))).await.sid();
    call(&app, with_sid(post("/api/incr/clicks"), &bob)).await;
    let anonymous = new_session(&app).await;

    let r = call(&app, with_sid(post("/api/erase-me"), &alice[1])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"erased": 3}));
    let removal = r.cookie().expect("the asking session's cookie is removed");
    assert!(removal.starts_with("sid=;") && removal.contains("Max-Age=0"), "{removal}");
    for sid in &alice {
        // A dead cookie: the request gets a new, anonymous session with nothing in it.
        let r = call(&app, with_sid(get("/api/session"), sid)).await;
        assert_eq!(r.json()["userid"], 0, "{}", r.body);
        assert_ne!(r.sid(), *sid, "a dead cookie is replaced");
    }
    assert!(f.engine.sessions_of(1).await.unwrap().is_empty());
    let r = call(&app, with_sid(get("/api/session"), &bob)).await;
    assert_eq!((r.json()["userid"].clone(), r.cookie()), (json!(2), None), "{}", r.body);
    assert_eq!(f.engine.sessions_of(2).await.unwrap().len(), 1);
    let r = call(&app, with_sid(get("/api/session"), &anonymous)).await;
    assert_eq!(r.cookie(), None, "the anonymous session lives on");
    // A dead cookie cannot erase anything any more.
    let r = call(&app, with_sid(post("/api/erase-me"), &alice[0])).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

async fn erase_me_needs_a_logged_in_user_and_a_same_site_json_request(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = call(&app, post("/api/erase-me")).await;
    assert_eq!((r.status.as_u16(), r.json()), (401, json!({"error": "not logged in"})));
    let anonymous = new_session(&app).await;
    let r = call(&app, with_sid(post("/api/erase-me"), &anonymous)).await;
    assert_eq!((r.status.as_u16(), r.json()), (401, json!({"error": "not logged in"})));
    let alice = login(&app, None, false).await.sid();
    // Another site's request, or a body a cross-site form could send: refused, nothing erased.
    let cross = with_sid(post("/api/erase-me"), &alice).insert_header(("sec-fetch-site", "cross-site"));
    assert_eq!(call(&app, cross).await.status, 403);
    let plain = with_sid(post("/api/erase-me"), &alice).insert_header(("content-type", "text/plain"));
    assert_eq!(call(&app, plain).await.status, 415);
    assert_eq!(call(&app, with_sid(get("/api/session"), &alice)).await.json()["userid"], 1);
    assert_eq!(f.engine.sessions_of(1).await.unwrap().len(), 1);
}

both!(
    erase_me_ends_every_session_of_the_user_and_no_one_elses,
    erase_me_needs_a_logged_in_user_and_a_same_site_json_request
);
