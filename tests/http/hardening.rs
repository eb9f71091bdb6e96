//! What a client's data and requests can no longer do (issue 24): a value of the wrong type is
//! a 409, never a 500, and a rotation before the failing step still reaches the client; a
//! refused write creates no session; the header transport answers only its own clients; a
//! response that used the session says `Vary: Cookie`.

use actix_web::test::TestRequest;

use crate::support::*;

fn put(uri: &str, body: &str) -> TestRequest {
    post(uri).method(actix_web::http::Method::PUT).set_payload(body.to_owned())
}

const WRONG_TYPE: &str = "the stored value is not of the type this request expects: nothing was changed";

/// A string where a counter is expected: `increment`, a typed `get` and `update` answer 409
/// with a fixed text, the value stays, the session goes on working.
async fn a_value_of_the_wrong_type_is_a_409_and_changes_nothing(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = call(&app, put("/test/text/n", "x")).await.sid();
    for req in [post("/test/incr/n"), get("/test/int/n"), post("/test/update/n")] {
        let r = call(&app, with_sid(req, &sid)).await;
        assert_eq!((r.status.as_u16(), r.body.as_str()), (409, WRONG_TYPE));
        assert_eq!(r.cookie(), None);
    }
    let r = call(&app, with_sid(post("/test/incr/m"), &sid)).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, "1"), "the session still works");
    // The string is still there: a later write of the right type replaces it.
    let r = call(&app, with_sid(put("/test/text/n", "y"), &sid)).await;
    assert_eq!(r.status, 200);
}

/// A login, then a step that fails on the data: the answer is the step's 409, and it carries
/// the rotated id, so the client follows its logged-in session instead of a dead one.
async fn a_rotation_before_a_failing_step_still_reaches_the_client(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = call(&app, put("/test/text/n", "x")).await.sid();
    let r = call(&app, with_sid(post("/test/login-then-incr/n"), &sid)).await;
    assert_eq!(r.status, 409);
    let rotated = r.sid();
    assert_ne!(rotated, sid);
    let r = call(&app, with_sid(get("/api/session"), &rotated)).await;
    assert_eq!(r.json()["userid"], 7);
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!(r.json()["userid"], 0, "the pre-login id is dead");
}

/// Without a cookie, a write refused for its names or its size answers 400/413 and creates
/// nothing: no session, no `Set-Cookie`. Also when only the shard can tell (the session
/// would outgrow `limits.max_session_bytes`).
async fn a_refused_write_creates_nothing(b: Backend) {
    let f = fixture_with(
        b,
        |c| {
            c.limits.max_value_bytes = 1000;
            c.limits.max_session_bytes = 1000;
        },
        None,
    )
    .await;
    let app = app!(f.engine);
    let long = "k".repeat(300);
    let cases = [
        (put(&format!("/test/text/{long}"), "1"), 400),
        (post(&format!("/test/incr/{long}")), 400),
        (post(&format!("/test/update/{long}")), 400),
        (put("/test/text/big", &"v".repeat(1200)), 413),
        // Under max_value_bytes, but the session would outgrow max_session_bytes.
        (put("/test/text/almost", &"v".repeat(990)), 413),
    ];
    for (req, status) in cases {
        let r = call(&app, req).await;
        assert_eq!(r.status.as_u16(), status, "{}", r.body);
        assert_eq!(r.cookie(), None);
    }
    assert_eq!(live_sessions(&f.engine).await, 0);
    let r = call(&app, put("/test/text/ok", "1")).await;
    assert_eq!((r.status.as_u16(), live_sessions(&f.engine).await), (200, 1));
    assert!(r.cookie().is_some());
}

const HEADER: &str = "x-session-id";

/// Both transports on: a browser living on its cookie never gets its id in the header
/// (which a page's script could read); a client that sends the header does.
async fn the_header_answers_only_a_client_that_sent_it(b: Backend) {
    let f = fixture_with(b, |c| c.header.name = HEADER.into(), None).await;
    let app = app!(f.engine);
    let r = call(&app, get("/api/session")).await;
    assert!(r.headers.get(HEADER).is_none(), "{:?}", r.headers);
    let sid = r.sid();
    let r = call(&app, with_sid(post("/test/login-then-incr/c"), &sid)).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get(HEADER).is_none(), "a cookie-only login: {:?}", r.headers);
    let rotated = r.sid();
    let r = call(&app, with_sid(post("/test/destroy"), &rotated)).await;
    assert!(r.headers.get(HEADER).is_none());
    // A header client, starting with an empty header.
    let r = call(&app, get("/api/session").insert_header((HEADER, ""))).await;
    let id = r.headers.get(HEADER).expect("the id in the header").to_str().unwrap().to_owned();
    assert_eq!(r.sid(), id, "both transports name the same id");
    let r = call(&app, post("/test/login-then-incr/c").insert_header((HEADER, id.as_str()))).await;
    assert_ne!(r.headers.get(HEADER).expect("the rotated id").to_str().unwrap(), id);
}

/// A response whose handler used the session varies on the cookie (and on the header
/// transport's header when it is on); one whose handler did not, does not.
async fn a_response_that_used_the_session_varies_on_the_cookie(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = call(&app, get("/api/session")).await;
    assert_eq!(r.vary, ["Cookie"]);
    let sid = r.sid();
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!((r.vary.as_slice(), r.cookie()), (["Cookie".to_owned()].as_slice(), None));
    let r = call(&app, with_sid(get("/test/untouched"), &sid)).await;
    assert!(r.vary.is_empty(), "{:?}", r.vary);
    let g = fixture_with(b, |c| c.header.name = HEADER.into(), None).await;
    let app = app!(g.engine);
    assert_eq!(call(&app, get("/api/session")).await.vary, [format!("Cookie, {HEADER}")]);
}

both!(
    a_value_of_the_wrong_type_is_a_409_and_changes_nothing,
    a_rotation_before_a_failing_step_still_reaches_the_client,
    a_refused_write_creates_nothing,
    the_header_answers_only_a_client_that_sent_it,
    a_response_that_used_the_session_varies_on_the_cookie
);
