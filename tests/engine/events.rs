//! Session events through the engine API (`SessionEngine::subscribe`): every kind is reported
//! with the right user and session handle, on memory, Redis and Redis Cluster; a subscriber
//! that never reads holds nothing up and is told what it missed; two engines on one Redis see
//! each other's events.

use std::collections::HashSet;
use std::time::Duration;

use draco_session::{
    SessionHandle,
    events::{Delivery, EventKind, SessionEvent, Subscription},
};

use crate::support::*;

/// Waits (at most 10 s in all) for events until `enough` holds for those of `ours`; answers
/// the events of sessions in `ours` (the cluster's database is shared with other tests).
async fn gather(
    sub: &mut Subscription,
    ours: &HashSet<SessionHandle>,
    enough: impl Fn(&[SessionEvent]) -> bool,
) -> Vec<SessionEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !enough(&seen) {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(Delivery::Event(e))) if ours.contains(&e.session) => seen.push(e),
            Ok(Some(Delivery::Event(_))) => {}
            Ok(other) => panic!("unexpected {other:?} after {seen:#?}"),
            Err(_) => panic!("events missing; got {seen:#?}"),
        }
    }
    seen
}

fn brief(events: &[SessionEvent]) -> Vec<(&'static str, u64)> {
    events.iter().map(|e| (e.kind.name(), e.userid)).collect()
}

async fn every_kind_of_event_is_reported(b: Backend) {
    let (e, clock) = b.engine_with_clock(config(4)).await;
    let (user, late_user) = (b.user(7), b.user(9));
    let mut sub = e.subscribe().await.unwrap();
    let mut ours = HashSet::new();
    let mut handle = |id| {
        let h = e.handle_of(id);
        ours.insert(h);
        h
    };

    let anon = e.create().await.unwrap().id;
    let a = e.login(&anon, user).await.unwrap().id;
    e.set_persistent(&a, true).await.unwrap();
    e.set_persistent(&a, false).await.unwrap();
    let out = e.logout(&a).await.unwrap().id;
    assert!(e.destroy(&out).await.unwrap());
    let c = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
    let d = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
    assert!(e.revoke(user, &e.handle_of(&c)).await.unwrap());
    assert_eq!(e.logout_user(user).await.unwrap(), 1);
    let late = e.login(&e.create().await.unwrap().id, late_user).await.unwrap().id;
    clock.advance(3 * HOUR);
    // The memory backend reports the expiry as its sweep drops the session; Redis, which
    // expires sessions itself, as listing the user's sessions finds it gone.
    e.sweep().await.unwrap();
    assert!(e.sessions_of(late_user).await.unwrap().is_empty());

    let (h_anon, h_a, h_out, h_c, h_d, h_late) =
        (handle(&anon), handle(&a), handle(&out), handle(&c), handle(&d), handle(&late));
    let mut creations = 0;
    let events = gather(&mut sub, &ours, |seen| seen.iter().any(|e| e.kind == EventKind::Expired)).await;
    // The three later sessions' own creations are not among `ours` (their first handles were
    // never asked for): only the logins they rotated into are.
    for ev in &events {
        creations += usize::from(ev.kind == EventKind::Created);
    }
    assert_eq!(creations, 1);
    assert_eq!(
        brief(&events),
        [
            ("created", 0),
            ("login", user),
            ("remember_me", user),
            ("remember_me", user),
            ("logout", user),
            ("destroyed", 0),
            ("login", user),
            ("login", user),
            ("revoked", user),
            ("revoked", user),
            ("login", late_user),
            ("expired", late_user),
        ]
    );
    let sessions: Vec<SessionHandle> = events.iter().map(|e| e.session).collect();
    assert_eq!(sessions, [h_anon, h_a, h_a, h_a, h_out, h_out, h_c, h_d, h_c, h_d, h_late, h_late]);
    assert_eq!(events[1].kind, EventKind::LoggedIn { label: None, previous: h_anon });
    assert_eq!(events[2].kind, EventKind::RememberMe { on: true });
    assert_eq!(events[3].kind, EventKind::RememberMe { on: false });
    assert_eq!(events[4].kind, EventKind::LoggedOut { previous: h_a });
    // Times are the engine's clock's.
    let start = std::time::UNIX_EPOCH + Duration::from_millis(draco_session::Clock::now_ms(&clock)) - 3 * HOUR;
    assert!(events[..11].iter().all(|e| e.at == start), "{:?}", events.iter().map(|e| e.at).collect::<Vec<_>>());
    assert_eq!(events[11].at, start + 3 * HOUR);
    // Nothing more of ours came (no double report of the expiry, say).
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Some(d) = sub.try_recv() {
        if let Delivery::Event(ev) = &d {
            assert!(!ours.contains(&ev.session), "unexpected {ev:?}");
        }
    }
}

async fn a_subscriber_that_never_reads_holds_nothing_up_and_learns_what_it_missed(b: Backend) {
    let mut c = config(2);
    c.events.capacity = 8;
    c.limits.max_sessions_per_user = 0;
    let (e, _clock) = b.engine_with_clock(c).await;
    let user = b.user(5);
    let mut stalled = e.subscribe().await.unwrap();
    let mut last = None;
    for _ in 0..200 {
        last = Some(e.login(&e.create().await.unwrap().id, user).await.unwrap().id);
    }
    // Every operation was answered although nobody took the 400 events.
    assert_eq!(e.sessions_of(user).await.unwrap().len(), 200);
    let last = e.handle_of(&last.unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (mut missed, mut kept) = (0, Vec::new());
    loop {
        match tokio::time::timeout_at(deadline, stalled.recv()).await.expect("the last login's event arrives") {
            Some(Delivery::Missed(n)) => missed += n,
            Some(Delivery::Event(ev)) => {
                let done = ev.session == last;
                kept.push(ev);
                if done {
                    break;
                }
            }
            None => panic!("subscription closed"),
        }
    }
    assert!(missed > 0, "a stalled subscriber is told it missed events");
    assert_eq!(missed + kept.len() as u64, 400, "each event either kept or counted as missed");
    if b.is_memory() {
        // Published before it read anything: the buffer held the newest 8.
        assert_eq!((missed, kept.len()), (392, 8));
    }
}

async fn dropping_a_subscription_unsubscribes(b: Backend) {
    let e = b.engine(2).await;
    let first = e.subscribe().await.unwrap();
    drop(first);
    let mut second = e.subscribe().await.unwrap();
    let id = e.create().await.unwrap().id;
    let ours = HashSet::from([e.handle_of(&id)]);
    let events = gather(&mut second, &ours, |seen| !seen.is_empty()).await;
    assert_eq!(brief(&events), [("created", 0)]);
}

both!(
    every_kind_of_event_is_reported,
    a_subscriber_that_never_reads_holds_nothing_up_and_learns_what_it_missed,
    dropping_a_subscription_unsubscribes
);

cluster!(every_kind_of_event_is_reported);
