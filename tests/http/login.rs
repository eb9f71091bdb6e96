//! Login, logout and remember-me over HTTP, through the JSON API and through the HTML page's
//! forms (no JavaScript): id rotation, the old cookie dead, data kept, `Max-Age` for
//! remember-me and its end at logout. Every test runs on the memory backend and on Redis.

use serde_json::json;

use crate::support::*;

async fn login_rotates_the_id_keeps_the_data_and_kills_the_old_cookie(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let old = new_session(&app).await;
    let r = call(
        &app,
        with_sid(post("/api/ns/cart/items").method(actix_web::http::Method::PUT), &old).set_json(json!(["book"])),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = login(&app, Some(&old), false).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (v["userid"].as_u64(), v["persistent"].as_bool(), v["visits"].as_i64()),
        (Some(1), Some(false), Some(1))
    );
    let new = r.sid();
    assert_ne!(new, old);
    assert_eq!(v["session_id"], new);
    assert!(!r.cookie().unwrap().contains("Max-Age"));
    // The data moved with the session.
    let r = call(&app, with_sid(get("/api/ns/cart/items"), &new)).await;
    assert_eq!(r.json()["value"], json!(["book"]));
    // The old id is dead: treated as no session.
    let r = call(&app, with_sid(get("/api/ns/cart/items"), &old)).await;
    assert_eq!(r.status, 404);
    assert!(r.set_cookies.is_empty());
    let r = call(&app, with_sid(get("/api/session"), &old)).await;
    assert_eq!(r.json()["userid"], 0);
    assert_ne!(r.sid(), old);
}

async fn login_without_a_session_creates_one_and_remember_me_sets_max_age(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = login(&app, None, true).await;
    let v = r.json();
    assert_eq!((v["userid"].as_u64(), v["persistent"].as_bool()), (Some(1), Some(true)));
    let cookie = r.cookie().unwrap();
    assert!(cookie.contains(&format!("Max-Age={PERSISTENT_TTL_SECS}")), "{cookie}");
    assert_eq!(live_sessions(&f.engine).await, 1, "the pre-login id is not left behind");
    let sid = r.sid();
    let r = call(&app, with_sid(get("/api/session"), &sid)).await;
    assert_eq!(r.json()["persistent"], true);
    assert!(r.set_cookies.is_empty());
}

async fn logout_rotates_forgets_the_user_and_ends_remember_me(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = login(&app, None, true).await.sid();
    call(&app, with_sid(post("/api/incr/clicks"), &sid)).await;
    let r = call(&app, with_sid(post("/api/logout"), &sid)).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!((v["userid"].as_u64(), v["persistent"].as_bool()), (Some(0), Some(false)));
    let new = r.sid();
    assert_ne!(new, sid);
    assert!(!r.cookie().unwrap().contains("Max-Age"), "volatile again");
    // Non-auth data stays; the old id is dead.
    assert_eq!(call(&app, with_sid(post("/api/incr/clicks"), &new)).await.json()["value"], 2);
    assert_eq!(call(&app, with_sid(get("/api/ns/counters/clicks"), &sid)).await.status, 404);
}

async fn html_page_and_forms_work_without_javascript(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = call(&app, get("/")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("id=\"visits\">1<") && r.body.contains("action=\"/login\""), "{}", r.body);
    let sid = r.sid();
    let token = csrf_of(&r.body);
    let form = |pw: &str, remember: bool| {
        let mut fields = vec![("username", "alice"), ("password", pw), ("csrf", &token)];
        if remember {
            fields.push(("remember", "on"));
        }
        with_sid(post("/login"), &sid).set_form(fields)
    };
    let r = call(&app, form("wrong", true)).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/?login=failed")));
    assert!(r.set_cookies.is_empty());
    assert!(call(&app, with_sid(get("/?login=failed"), &sid)).await.body.contains("Wrong user name or password"));
    let r = call(&app, form("wonderland", true)).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/")));
    assert!(r.cookie().unwrap().contains("Max-Age="));
    let sid = r.sid();
    let page = call(&app, with_sid(get("/"), &sid)).await.body;
    assert!(page.contains("alice (user id 1)") && page.contains("id=\"visits\">3<"), "{page}");
    assert!(page.contains(&sid) && page.contains("action=\"/logout\""));
    let r = call(&app, with_sid(post("/logout"), &sid).set_form([("csrf", csrf_of(&page))])).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/")));
    let new = r.sid();
    assert_ne!(new, sid);
    let page = call(&app, with_sid(get("/"), &new)).await.body;
    assert!(page.contains("nobody (user id 0)") && page.contains("id=\"visits\">4<"), "{page}");
}

/// The page says what its logout button does, and it does it: keep the visit counter
/// (default), or with `session.logout_clears_data` start it anew.
async fn the_page_says_what_logout_does_and_logout_does_it(b: Backend) {
    for clears in [false, true] {
        let f = fixture_with(b, |c| c.session.logout_clears_data = clears, None).await;
        let app = app!(f.engine);
        let sid = login(&app, None, false).await.sid();
        let page = call(&app, with_sid(get("/"), &sid)).await.body;
        let says = if clears { "Logging out clears everything" } else { "Logging out keeps this browser's other" };
        assert!(page.contains(says) && page.contains("id=\"visits\">1<"), "{page}");
        let new = call(&app, with_sid(post("/logout"), &sid).set_form([("csrf", csrf_of(&page))])).await.sid();
        let page = call(&app, with_sid(get("/"), &new)).await.body;
        let visits = if clears { "id=\"visits\">1<" } else { "id=\"visits\">2<" };
        assert!(page.contains("nobody (user id 0)") && page.contains(visits), "clears = {clears}: {page}");
    }
}

both!(
    the_page_says_what_logout_does_and_logout_does_it,
    login_rotates_the_id_keeps_the_data_and_kills_the_old_cookie,
    login_without_a_session_creates_one_and_remember_me_sets_max_age,
    logout_rotates_forgets_the_user_and_ends_remember_me,
    html_page_and_forms_work_without_javascript
);
