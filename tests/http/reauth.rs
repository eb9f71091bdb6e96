//! Fresh login for sensitive actions: a login (or `Session::reauthenticated`) records when the
//! user proved who they are and at which level; `require_fresh_auth` passes for
//! `session.reauth_after`, in the browser session that proved (its marker cookie); the demo's
//! device actions answer 403 `{"error":"reauthenticate"}` without it and `POST /api/reauth`
//! makes the session fresh. Time moves on a manual clock, never by sleeping. Every test runs on
//! the memory backend and on Redis.

use std::time::Duration;

use draco_session::{ManualClock, SessionEngine};
use serde_json::{Value, json};

use crate::support::*;

const START_MS: u64 = 1_800_000_000_000;
const TEN_MINUTES: Duration = Duration::from_secs(600);

/// `GET /test/auth` (at `level`) with `cookies`: `(age_ms, level, fresh)`.
async fn auth<S, B>(app: &S, cookies: &str, level: u8) -> (Option<u64>, u64, bool)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let r = call(app, with_cookies(get(&format!("/test/auth?level={level}")), cookies)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    (j["age_ms"].as_u64(), j["level"].as_u64().unwrap(), j["fresh"].as_bool().unwrap())
}

/// `r` is the demo's refusal of a sensitive action without a fresh login.
fn refused(r: &Reply, what: &str) {
    assert_eq!((r.status.as_u16(), r.json()), (403, json!({"error": "reauthenticate"})), "{what}");
}

fn alice(remember: bool) -> Value {
    json!({"username": "alice", "password": "wonderland", "remember": remember})
}

async fn a_login_is_fresh_for_reauth_after_then_api_reauth_makes_it_fresh_again(b: Backend) {
    let clock = ManualClock::new(START_MS);
    let f = fixture_with(b, |_| {}, Some(clock.clone())).await;
    let app = app!(f.engine);
    let r = call(&app, post("/api/login").set_json(alice(false))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let marker = r.marker().expect("a login sets the marker");
    assert_eq!(marker.len(), 22, "{:?}", r.set_cookies);
    let mc = r.marker_cookie().unwrap();
    assert!(mc.contains("HttpOnly") && mc.contains("SameSite=Lax") && mc.contains("Secure"), "{mc}");
    assert!(!mc.contains("Max-Age") && !mc.contains("Expires"), "a browser-session cookie: {mc}");
    let jar = r.jar();
    assert_eq!(auth(&app, &jar, 1).await, (Some(0), 1, true));

    clock.advance(TEN_MINUTES - Duration::from_secs(1));
    assert_eq!(auth(&app, &jar, 1).await, (Some(599_000), 1, true));
    clock.advance(Duration::from_secs(1));
    assert_eq!(auth(&app, &jar, 1).await, (Some(600_000), 1, false), "stale after reauth_after");
    refused(&call(&app, with_cookies(post("/api/logout-others"), &jar)).await, "logout-others");
    let r = call(&app, with_cookies(post("/test/sudo"), &jar)).await;
    assert_eq!(r.status, 403);
    assert!(r.body.starts_with("reauthenticate"), "the library's own answer: {}", r.body);

    // A wrong password: 401, still stale, and no marker.
    let r = call(&app, with_cookies(post("/api/reauth"), &jar).set_json(json!({"password": "builder"}))).await;
    assert_eq!((r.status.as_u16(), r.json()["error"].as_str()), (401, Some("wrong password")), "{}", r.body);
    assert_eq!(r.marker(), None);
    assert!(!auth(&app, &jar, 1).await.2);
    refused(&call(&app, with_cookies(post("/api/logout-others"), &jar)).await, "after a wrong password");

    // The right one: fresh again, with a new marker; the old one belongs to the old proof.
    clock.advance(Duration::from_secs(5));
    let r = call(&app, with_cookies(post("/api/reauth"), &jar).set_json(json!({"password": "wonderland"}))).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"reauthenticated": true})), "{}", r.body);
    assert_eq!(r.cookie(), None, "the id does not change");
    let fresh_marker = r.marker().expect("a new marker");
    assert_ne!(fresh_marker, marker);
    let sid = jar.split(';').next().unwrap().strip_prefix("sid=").unwrap().to_owned();
    let new_jar = format!("sid={sid}; sid_auth={fresh_marker}");
    assert_eq!(auth(&app, &new_jar, 1).await, (Some(0), 1, true));
    assert_eq!(auth(&app, &jar, 1).await, (None, 1, false), "the old proof's marker");
    let r = call(&app, with_cookies(post("/api/logout-others"), &new_jar)).await;
    assert_eq!((r.status.as_u16(), r.json()["revoked"].as_u64()), (200, Some(0)), "{}", r.body);
}

async fn login_with_records_the_level_and_the_last_proof_sets_it(b: Backend) {
    let f = fixture_with(b, |_| {}, Some(ManualClock::new(START_MS))).await;
    let app = app!(f.engine);
    let r = call(&app, post("/test/login-with/2")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let jar = r.jar();
    assert_eq!(auth(&app, &jar, 2).await, (Some(0), 2, true));
    assert!(!auth(&app, &jar, 3).await.2, "level 3 asked, 2 proved");
    let r = call(&app, with_cookies(post("/test/reauth/1"), &jar)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // No new id: the old id, with the new proof's marker.
    let jar = format!("{}; sid_auth={}", jar.split(';').next().unwrap(), r.marker().unwrap());
    assert_eq!(auth(&app, &jar, 1).await, (Some(0), 1, true));
    assert!(!auth(&app, &jar, 2).await.2, "a password alone after a second factor: level 1");
    // Level 0 counts as 1.
    let r = call(&app, with_cookies(post("/test/reauth/0"), &jar)).await;
    let jar = format!("{}; sid_auth={}", jar.split(';').next().unwrap(), r.marker().unwrap());
    assert_eq!(auth(&app, &jar, 1).await.1, 1);
}

async fn a_browser_restart_is_never_fresh(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let r = call(&app, post("/api/login").set_json(alice(true))).await;
    let (sid, jar) = (r.sid(), r.jar());
    assert!(r.cookie().unwrap().contains("Max-Age="), "remembered");
    let other = call(&app, post("/api/login").set_json(alice(false))).await.sid();
    // The browser restarted: the remember-me cookie is back, the session-only marker is not.
    let restarted = format!("sid={sid}");
    assert_eq!(auth(&app, &restarted, 1).await, (None, 1, false));
    assert_eq!(call(&app, with_sid(get("/api/session"), &sid)).await.json()["userid"], 1, "still logged in");
    refused(&call(&app, with_sid(post("/api/logout-others"), &sid)).await, "logout-others");
    let list = call(&app, with_sid(get("/api/devices"), &sid)).await.json();
    let handle = list["devices"].as_array().unwrap().iter().find(|d| d["current"] == false).unwrap()["handle"]
        .as_str()
        .unwrap()
        .to_owned();
    refused(&call(&app, with_sid(delete(&format!("/api/devices/{handle}")), &sid)).await, "revoke");
    assert_eq!(call(&app, with_sid(get("/api/session"), &other)).await.json()["userid"], 1, "nothing ended");
    // Turning remember-me off does not make it fresh.
    let r = call(&app, with_sid(post("/api/persistent"), &sid).set_json(json!({"persistent": false}))).await;
    assert_eq!(r.status, 200);
    assert!(!auth(&app, &restarted, 1).await.2);
    // The page asks for the password instead of showing the buttons; its forms refuse too.
    let page = call(&app, with_sid(get("/"), &sid)).await.body;
    assert!(page.contains(r#"id="reauth-form""#) && !page.contains(r#"id="logout-others""#), "{page}");
    assert!(!page.contains(r#"class="revoke""#));
    let csrf = csrf_of(&page);
    let r = call(&app, with_sid(post("/devices/logout-others"), &sid).set_form([("csrf", csrf.as_str())])).await;
    assert_eq!(r.status, 303);
    assert_eq!(call(&app, with_sid(get("/api/session"), &other)).await.json()["userid"], 1, "nothing ended");
    // The page's confirm form: a wrong password, then the right one.
    let r = call(&app, with_sid(post("/reauth"), &sid).set_form([("csrf", csrf.as_str()), ("password", "nope")])).await;
    assert_eq!((r.status.as_u16(), r.marker()), (303, None));
    let r = call(&app, with_sid(post("/reauth"), &sid).set_form([("csrf", csrf.as_str()), ("password", "wonderland")]))
        .await;
    assert_eq!(r.status, 303);
    let jar_after = format!("sid={sid}; sid_auth={}", r.marker().expect("the confirm form sets the marker"));
    let page = call(&app, with_cookies(get("/"), &jar_after)).await.body;
    assert!(page.contains(r#"id="logout-others""#) && !page.contains(r#"id="reauth-form""#), "{page}");
    let r = call(&app, with_cookies(post("/api/logout-others"), &jar_after)).await;
    assert_eq!((r.status.as_u16(), r.json()["revoked"].as_u64()), (200, Some(1)), "{}", r.body);
    assert_eq!(call(&app, with_sid(get("/api/session"), &other)).await.json()["userid"], 0);
    // The jar from before the restart named the first proof: no longer this session's.
    assert!(!auth(&app, &jar, 1).await.2);
}

async fn a_marker_counts_only_for_its_own_session(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let one = call(&app, post("/api/login").set_json(alice(true))).await;
    let two = call(&app, post("/api/login").set_json(alice(true))).await;
    let (sid_one, marker_two) = (one.sid(), two.marker().unwrap());
    assert_eq!(auth(&app, &format!("sid={sid_one}; sid_auth={marker_two}"), 1).await, (None, 1, false));
    for forged in ["AAAAAAAAAAAAAAAAAAAAAA", "short", "", "!!!!!!!!!!!!!!!!!!!!!!"] {
        assert!(!auth(&app, &format!("sid={sid_one}; sid_auth={forged}"), 1).await.2, "{forged}");
    }
    // Its own marker among others counts.
    let m1 = one.marker().unwrap();
    let jar = format!("sid={sid_one}; sid_auth={marker_two}; sid_auth={m1}");
    assert!(auth(&app, &jar, 1).await.2);
}

async fn a_session_from_before_has_no_proof_and_is_not_fresh(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    // Logged in through the engine, as before this feature: no proof in the session.
    let info = f.engine.create().await.unwrap();
    let info = f.engine.login(&info.id, 1).await.unwrap();
    let sid = info.id.to_string();
    assert_eq!(call(&app, with_sid(get("/api/session"), &sid)).await.json()["userid"], 1);
    assert_eq!(auth(&app, &format!("sid={sid}"), 1).await, (None, 0, false));
    refused(&call(&app, with_sid(post("/api/logout-others"), &sid)).await, "logout-others");
    // An anonymous session: nothing to be fresh about, and nobody to reauthenticate.
    let anon = new_session(&app).await;
    assert_eq!(auth(&app, &format!("sid={anon}"), 1).await, (None, 0, false));
    assert_eq!(call(&app, with_sid(post("/test/reauth/1"), &anon)).await.status, 409);
    let r = call(&app, with_sid(post("/api/reauth"), &anon).set_json(json!({"password": "wonderland"}))).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

async fn logout_removes_the_proof_and_drops_the_marker(b: Backend) {
    for clears in [false, true] {
        let f = fixture_with(b, |c| c.session.logout_clears_data = clears, None).await;
        let app = app!(f.engine);
        let r = call(&app, post("/api/login").set_json(alice(true))).await;
        let (old_sid, jar) = (r.sid(), r.jar());
        assert!(auth(&app, &jar, 1).await.2);
        let r = call(&app, with_cookies(post("/api/logout"), &jar)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let removal = r.marker_cookie().expect("the marker is dropped");
        assert!(removal.starts_with("sid_auth=;") && removal.contains("Max-Age=0"), "{removal}");
        let sid = r.sid();
        assert_ne!(sid, old_sid);
        let id = f.engine.parse_id(sid.as_bytes()).unwrap();
        let proof: Option<Value> = f.engine.get(&id, "__draco.auth", "proof").await.unwrap();
        assert_eq!(proof, None, "logout_clears_data = {clears}");
        assert_eq!(
            auth(&app, &format!("sid={sid}; {}", &jar[jar.find("sid_auth").unwrap()..]), 1).await,
            (None, 0, false)
        );
        // Logged in again through the engine (which writes no proof): the old proof is gone.
        let info = f.engine.login(&id, 1).await.unwrap();
        assert_eq!(auth(&app, &format!("sid={}", info.id), 1).await, (None, 0, false), "{clears}");
    }
}

async fn with_cookies_off_the_age_alone_decides(b: Backend) {
    let clock = ManualClock::new(START_MS);
    let f = fixture_with(
        b,
        |c| {
            c.cookie.enabled = false;
            c.header.name = "x-session-id".into();
        },
        Some(clock.clone()),
    )
    .await;
    let app = app!(f.engine);
    let r = call(&app, post("/api/login").insert_header(("x-session-id", "")).set_json(alice(true))).await;
    assert_eq!((r.status.as_u16(), r.set_cookies.len()), (200, 0), "{:?}", r.set_cookies);
    let id = r.headers.get("x-session-id").unwrap().to_str().unwrap().to_owned();
    let ask = || get("/test/auth").insert_header(("x-session-id", id.clone()));
    assert_eq!(call(&app, ask()).await.json()["fresh"], true);
    clock.advance(TEN_MINUTES);
    assert_eq!(call(&app, ask()).await.json()["fresh"], false);
}

/// Freshness is in the session: it survives a restart of the engine (memory: snapshot and log
/// replayed; Redis: the server keeps it).
async fn freshness_survives_a_restart(b: Backend) {
    let clock = ManualClock::new(START_MS);
    let (mut config, _dir) = config(|c| c.storage.persist = true);
    b.apply(&mut config);
    let start = || SessionEngine::builder(config.clone()).clock(clock.clone()).start_async();
    let engine = start().await.unwrap();
    let jar = {
        let app = app!(engine);
        call(&app, post("/api/login").set_json(alice(true))).await.jar()
    };
    engine.shutdown().await;
    let engine = start().await.unwrap();
    let app = app!(engine);
    clock.advance(Duration::from_secs(60));
    assert_eq!(auth(&app, &jar, 1).await, (Some(60_000), 1, true));
    engine.shutdown().await;
}

both!(
    a_login_is_fresh_for_reauth_after_then_api_reauth_makes_it_fresh_again,
    login_with_records_the_level_and_the_last_proof_sets_it,
    a_browser_restart_is_never_fresh,
    a_marker_counts_only_for_its_own_session,
    a_session_from_before_has_no_proof_and_is_not_fresh,
    logout_removes_the_proof_and_drops_the_marker,
    with_cookies_off_the_age_alone_decides,
    freshness_survives_a_restart
);
