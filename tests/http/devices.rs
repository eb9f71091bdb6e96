//! "Your devices" over HTTP, through the demo's JSON API and its page's forms (no
//! JavaScript): every session of the logged-in user with its device label, the current one
//! marked; ending one other session or all others; 401 when anonymous, 404 for a handle that
//! names no other session of the user. Every test runs on the memory backend and on Redis.

use serde_json::Value;

use crate::support::*;

const FIREFOX: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";

/// alice logged in from two browsers: the default test browser and Firefox on Windows; the
/// first one's id, the second one's cookies (its id and the fresh-login marker).
async fn two_devices<S, B>(app: &S) -> (String, String)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: actix_web::body::MessageBody,
{
    let first = login(app, None, true).await.sid();
    let req = post("/api/login")
        .insert_header(("user-agent", FIREFOX))
        .set_json(serde_json::json!({"username": "alice", "password": "wonderland"}));
    let second = call(app, req).await.jar();
    (first, second)
}

fn devices(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["devices"].as_array().unwrap().clone()
}

async fn the_devices_api_lists_ends_one_and_ends_the_others(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let (first, second) = two_devices(&app).await;
    let bob = call(&app, post("/api/login").set_json(serde_json::json!({"username": "bob", "password": "builder"})))
        .await
        .jar();
    let list = devices(&call(&app, with_cookies(get("/api/devices"), &second)).await);
    assert_eq!(list.len(), 2, "alice's two sessions, not bob's: {list:?}");
    let current: Vec<&Value> = list.iter().filter(|d| d["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["label"], "Firefox 133 on Windows 10");
    assert_eq!(current[0]["persistent"], false);
    let other = list.iter().find(|d| d["current"] == false).unwrap();
    assert_eq!(other["persistent"], true);
    assert!(other["label"].as_str().is_some_and(|l| !l.is_empty()));
    for d in &list {
        let handle = d["handle"].as_str().unwrap();
        assert!(
            !handle.contains(&first[..8]) && !handle.contains(&second["sid=".len().."sid=".len() + 8]),
            "a handle is not an id"
        );
        assert!(d["created"].as_u64().unwrap() > 1_600_000_000 && d["last_used"].as_u64().is_some());
    }

    // The current session's own handle and garbage end nothing.
    let own = current[0]["handle"].as_str().unwrap();
    for bad in [own, "AAAAAAAAAAAAAAAAAAAAAA", "not-a-handle"] {
        let r = call(&app, with_cookies(delete(&format!("/api/devices/{bad}")), &second)).await;
        assert_eq!(r.status, 404, "{bad}: {}", r.body);
    }
    // Bob cannot end alice's session with her handle.
    let handle = other["handle"].as_str().unwrap();
    let r = call(&app, with_cookies(delete(&format!("/api/devices/{handle}")), &bob)).await;
    assert_eq!(r.status, 404);
    assert_eq!(call(&app, with_sid(get("/api/session"), &first)).await.json()["userid"], 1);

    let r = call(&app, with_cookies(delete(&format!("/api/devices/{handle}")), &second)).await;
    assert_eq!((r.status.as_u16(), r.json()["revoked"].clone()), (200, Value::Bool(true)), "{}", r.body);
    let gone = call(&app, with_sid(get("/api/session"), &first)).await;
    assert_eq!(gone.json()["userid"], 0, "the other device is logged out");
    assert_eq!(devices(&call(&app, with_cookies(get("/api/devices"), &second)).await).len(), 1);

    // Log out everywhere else: two more sessions of alice end, this one and bob's stay.
    let (third, fourth) = two_devices(&app).await;
    let r = call(&app, with_cookies(post("/api/logout-others"), &second)).await;
    assert_eq!(r.json()["revoked"], 2, "{}", r.body);
    for ended in [&third, &fourth] {
        assert_eq!(call(&app, with_sid(get("/api/session"), ended)).await.json()["userid"], 0);
    }
    assert_eq!(call(&app, with_cookies(get("/api/session"), &second)).await.json()["userid"], 1);
    assert_eq!(call(&app, with_cookies(get("/api/session"), &bob)).await.json()["userid"], 2);
}

async fn anonymous_visitors_have_no_devices(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    assert_eq!(call(&app, with_sid(get("/api/devices"), &sid)).await.status, 401);
    assert_eq!(call(&app, get("/api/devices")).await.status, 401);
    assert_eq!(call(&app, with_sid(post("/api/logout-others"), &sid)).await.status, 401);
    assert_eq!(call(&app, with_sid(delete("/api/devices/AAAAAAAAAAAAAAAAAAAAAA"), &sid)).await.status, 401);
}

async fn the_page_shows_the_devices_card_and_its_forms_work(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let (first, second) = two_devices(&app).await;
    let page = call(&app, with_cookies(get("/"), &second)).await.body;
    assert!(page.contains("Your devices") && page.contains("Firefox 133 on Windows 10"), "{page}");
    assert_eq!(page.matches(r#"class="device""#).count(), 2);
    assert!(page.contains("this device") && page.contains(r#"id="logout-others""#));
    let at = page.find(r#"action="/devices/"#).unwrap() + r#"action=""#.len();
    let action = &page[at..at + page[at..].find('"').unwrap()];
    assert!(action.ends_with("/logout") && action != "/devices/logout-others", "{action}");
    // Without the form's token: refused, nothing ended.
    let r = call(&app, with_cookies(post(action), &second).set_form([("csrf", "forged")])).await;
    assert_eq!(r.status, 403);
    assert_eq!(call(&app, with_sid(get("/api/session"), &first)).await.json()["userid"], 1);
    let r = call(&app, with_cookies(post(action), &second).set_form([("csrf", csrf_of(&page))])).await;
    assert_eq!((r.status.as_u16(), r.location.as_deref()), (303, Some("/")));
    assert_eq!(call(&app, with_sid(get("/api/session"), &first)).await.json()["userid"], 0);
    // Log out everywhere else, as a form.
    let (third, _) = two_devices(&app).await;
    let page = call(&app, with_cookies(get("/"), &second)).await.body;
    let r =
        call(&app, with_cookies(post("/devices/logout-others"), &second).set_form([("csrf", csrf_of(&page))])).await;
    assert_eq!(r.status, 303);
    assert_eq!(call(&app, with_sid(get("/api/session"), &third)).await.json()["userid"], 0);
    let page = call(&app, with_cookies(get("/"), &second)).await.body;
    assert_eq!(page.matches(r#"class="device""#).count(), 1, "{page}");
    // Anonymous: no card.
    let page = call(&app, get("/")).await.body;
    assert!(!page.contains("Your devices"));
}

async fn the_client_address_is_recorded_only_when_configured(b: Backend) {
    for record in [false, true] {
        let f = fixture_with(b, |c| c.session.record_ip = record, None).await;
        let app = app!(f.engine);
        let req = post("/api/login")
            .peer_addr("10.1.2.3:5555".parse().unwrap())
            .set_json(serde_json::json!({"username": "alice", "password": "wonderland"}));
        let sid = call(&app, req).await.sid();
        let list = devices(&call(&app, with_sid(get("/api/devices"), &sid)).await);
        let expected = if record { Value::from("10.1.2.3") } else { Value::Null };
        assert_eq!(list[0]["ip"], expected, "record_ip = {record}");
        let page = call(&app, with_sid(get("/"), &sid)).await.body;
        assert_eq!(page.contains("from 10.1.2.3"), record);
    }
}

both!(
    the_client_address_is_recorded_only_when_configured,
    the_devices_api_lists_ends_one_and_ends_the_others,
    anonymous_visitors_have_no_devices,
    the_page_shows_the_devices_card_and_its_forms_work
);
