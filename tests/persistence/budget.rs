//! Sessions evicted for `limits.max_memory` stay evicted: each eviction leaves its record in
//! the write-ahead log, so neither a crash image replayed over an older snapshot nor a restart
//! brings an evicted session back, and the survivors (a logged-in one among them) keep their
//! data.

use std::time::Duration;

use draco_session::{ManualClock, SessionEngine, SessionError, SessionId, config::LogMode};

use crate::support::*;

#[actix_rt::test]
async fn evicted_sessions_stay_evicted_after_a_crash_and_the_survivors_keep_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let configured = |dir: &std::path::Path| {
        let mut c = config(dir, 1);
        c.storage.log = LogMode::Every(Duration::from_secs(1));
        c.limits.max_memory = 1 << 20;
        c
    };
    let a = SessionEngine::builder(configured(dir.path())).clock(clock.clone()).start().unwrap();
    let big = "e".repeat(60_000);
    let user = a.login(&a.create().await.unwrap().id, 1).await.unwrap().id;
    a.insert(&user, "a", "k", &big).await.unwrap();
    let mut ids: Vec<SessionId> = Vec::new();
    for i in 0..40 {
        clock.advance(Duration::from_secs(1));
        let id = a.create().await.unwrap().id;
        a.insert(&id, "a", "k", &format!("{i}{big}")).await.unwrap();
        ids.push(id);
        if i == 10 {
            // The oldest sessions are in the snapshot: only the log can say they were evicted.
            a.snapshot().await.unwrap();
        }
    }
    let evicted: Vec<bool> = {
        let mut gone = Vec::new();
        for id in &ids {
            gone.push(matches!(a.get::<String>(id, "a", "k").await, Err(SessionError::SessionGone)));
        }
        gone
    };
    assert!(evicted[..10].iter().filter(|&&e| e).count() > 5, "{evicted:?}");
    assert!(evicted.iter().any(|e| !e));
    let image = crash_image(dir.path());
    drop(a);
    let b = SessionEngine::builder(configured(image.path())).clock(clock.clone()).start().unwrap();
    assert_eq!(b.get::<String>(&user, "a", "k").await.unwrap().as_deref(), Some(&*big));
    for (i, (id, gone)) in ids.iter().zip(&evicted).enumerate() {
        let value = b.get::<String>(id, "a", "k").await;
        if *gone {
            assert!(matches!(value, Err(SessionError::SessionGone)), "evicted session {i} came back");
        } else {
            assert!(value.unwrap() == Some(format!("{i}{big}")), "session {i} lost its value");
        }
    }
}
