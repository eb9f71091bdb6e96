//! What a request costs the engine: a returning visit is one engine trip (remembered or not),
//! and a session that is extracted but never used costs no engine operation at all. Every test
//! runs on the memory backend and on Redis.

use std::time::Duration;

use draco_session::ManualClock;

use crate::support::*;

async fn a_returning_visit_is_one_engine_trip_remembered_or_not(b: Backend) {
    // The cookie lookup rides with the increment; a remember-me cookie is not refreshed (and
    // needs no extra trip) within the day of its last refresh.
    let clock = ManualClock::new(1_800_000_000_000 - 1_800_000_000_000 % 86_400_000 + 3_600_000); // 01:00 UTC
    let f = fixture_with(b, |_| {}, Some(clock.clone())).await;
    let app = app!(f.engine);
    let operations = async || f.engine.stats().await.unwrap().shards.iter().map(|s| s.operations).sum::<u64>();
    // Memory: the lookup and the increment are one shard call; Redis: one script.
    let per_visit = 1;
    let plain = new_session(&app).await;
    let remembered = login(&app, None, true).await.sid();
    for sid in [&plain, &remembered] {
        for _ in 0..3 {
            clock.advance(Duration::from_secs(60));
            let before = operations().await;
            let r = call(&app, with_sid(post("/api/incr/n"), sid)).await;
            assert_eq!((r.status.as_u16(), r.cookie()), (200, None));
            assert_eq!(operations().await - before, per_visit, "{sid}");
        }
    }
}

async fn a_session_that_is_extracted_but_not_used_costs_no_engine_operation(b: Backend) {
    let f = fixture(b).await;
    let app = app!(f.engine);
    let sid = new_session(&app).await;
    let operations = |s: draco_session::message::EngineStats| s.shards.iter().map(|s| s.operations).sum::<u64>();
    let before = operations(f.engine.stats().await.unwrap());
    for _ in 0..5 {
        let r = call(&app, with_sid(get("/test/untouched"), &sid)).await;
        assert_eq!((r.status.as_u16(), r.cookie()), (200, None));
    }
    assert_eq!(operations(f.engine.stats().await.unwrap()), before);
    // A robot with a cookie is looked up at once: whether it has a session decides MaybeSession.
    let robot = get("/test/maybe")
        .insert_header(("user-agent", "Googlebot/2.1"))
        .insert_header(("cookie", format!("sid={sid}")));
    assert_eq!(call(&app, robot).await.body, "some");
    assert!(operations(f.engine.stats().await.unwrap()) > before);
}

both!(
    a_returning_visit_is_one_engine_trip_remembered_or_not,
    a_session_that_is_extracted_but_not_used_costs_no_engine_operation
);
