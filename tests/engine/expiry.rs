//! Session lifetimes through the engine API: volatile sessions expire after their idle time and
//! use slides it, remember-me sessions live 100 days, the sweep (on request, or on its own in
//! the shard workers) drops the expired, the absolute TTL caps every session, and Redis expires
//! keys by its own clock. Backend tests run on memory, Redis and Redis Cluster (see
//! `support/engine.rs`); the periodic sweep is memory-only, Redis's own expiry Redis-only.

use std::time::Duration;
#[cfg(feature = "redis")]
use std::time::Instant;

use draco_session::SessionError;

use crate::support::*;

async fn volatile_sessions_expire_after_idle_time_and_use_slides_it(b: Backend) {
    let (e, clock) = b.engine_with_clock(config(2)).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, "a", "k", &1).await.unwrap();
    clock.advance(HOUR + HOUR / 2);
    // A use slides the expiry by the full idle lifetime.
    assert_eq!(e.get::<i32>(&s, "a", "k").await.unwrap(), Some(1));
    clock.advance(HOUR + HOUR / 2);
    let info = e.touch(&s).await.unwrap();
    assert_eq!(info.expires.duration_since(info.last_access).unwrap(), 2 * HOUR);
    // Info does not count as a use.
    clock.advance(2 * HOUR - Duration::from_secs(1));
    e.info(&s).await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(e.get::<i32>(&s, "a", "k").await, Err(SessionError::SessionGone));
}

async fn persistent_sessions_live_100_days_and_the_sweep_drops_the_expired(b: Backend) {
    let (e, clock) = b.engine_with_clock(config(2)).await;
    let user = b.user(5);
    let volatile = e.create().await.unwrap().id;
    let remembered = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
    let info = e.set_persistent(&remembered, true).await.unwrap();
    assert_eq!(info.expires.duration_since(info.last_access).unwrap(), 100 * DAY);
    clock.advance(3 * HOUR);
    // Redis expires on its own (sweep answers 0); its scripts drop what the clock says expired.
    assert_eq!(e.sweep().await.unwrap(), if b.is_memory() { 1 } else { 0 }, "only the volatile session has expired");
    assert_eq!(e.info(&volatile).await, Err(SessionError::SessionGone));
    assert_eq!(e.info(&remembered).await.unwrap().userid, user);
    clock.advance(99 * DAY);
    e.touch(&remembered).await.unwrap();
    clock.advance(99 * DAY);
    assert!(e.info(&remembered).await.is_ok(), "use slides a persistent session too");
    clock.advance(2 * DAY);
    assert_eq!(e.sweep().await.unwrap(), if b.is_memory() { 1 } else { 0 });
    assert_eq!(e.info(&remembered).await, Err(SessionError::SessionGone));
    let stats = e.stats().await.unwrap();
    assert!(stats.sessions == 0 || !b.isolated());
    if b.is_memory() {
        assert_eq!(stats.shards.iter().map(|s| s.expired).sum::<u64>(), 2);
    }
}

/// Memory-only: shard workers' periodic sweep (Redis expires keys on its own).
#[actix_rt::test]
async fn workers_sweep_on_their_own() {
    let mut c = config(2);
    c.session.sweep_interval = Duration::from_millis(20);
    let (e, clock) = Backend::Memory.engine_with_clock(c).await;
    for _ in 0..20 {
        e.create().await.unwrap();
    }
    clock.advance(3 * HOUR);
    let mut remaining = usize::MAX;
    for _ in 0..100 {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        remaining = e.stats().await.unwrap().sessions;
        if remaining == 0 {
            break;
        }
    }
    assert_eq!(remaining, 0, "the periodic sweep drops expired sessions without being asked");
}

async fn absolute_ttl_caps_a_session_whatever_its_use(b: Backend) {
    let mut c = config(1);
    c.session.absolute_ttl = 3 * HOUR;
    let (e, clock) = b.engine_with_clock(c).await;
    let s = e.create().await.unwrap().id;
    for _ in 0..5 {
        clock.advance(HOUR / 2);
        e.touch(&s).await.unwrap();
    }
    clock.advance(HOUR / 2);
    assert_eq!(e.touch(&s).await, Err(SessionError::SessionGone));
}

both!(
    volatile_sessions_expire_after_idle_time_and_use_slides_it,
    persistent_sessions_live_100_days_and_the_sweep_drops_the_expired,
    absolute_ttl_caps_a_session_whatever_its_use
);

cluster!(
    volatile_sessions_expire_after_idle_time_and_use_slides_it,
    persistent_sessions_live_100_days_and_the_sweep_drops_the_expired,
    absolute_ttl_caps_a_session_whatever_its_use
);

/// Redis only: what the memory backend has no counterpart for.
#[cfg(feature = "redis")]
mod redis_only {
    use super::*;

    /// Redis's own expiry, by its clock: the idle key is gone without anyone asking, while a
    /// session touched more often than its idle lifetime outlives that lifetime many times;
    /// once no longer touched, it is gone too. No verdict by our clock: each step waits for the
    /// event (with a generous deadline), and a touch that finds the session gone is a failure
    /// only if the two touches around the gap were answered within the idle lifetime (else
    /// this machine stalled longer than the lifetime: the run starts over, at most 5 times).
    #[actix_rt::test]
    async fn sessions_expire_by_redis_ttl_and_use_slides_it() {
        const TTL: Duration = Duration::from_secs(2);
        for attempt in 1..=5 {
            if redis_ttl_run(TTL).await {
                return;
            }
            eprintln!("attempt {attempt}: a gap between touches outlasted the {TTL:?} idle lifetime; again");
        }
        panic!("5 runs in a row stalled for longer than {TTL:?} between touches: no verdict possible");
    }

    /// One run; `false` when this machine stalled too long between two touches to tell.
    async fn redis_ttl_run(ttl: Duration) -> bool {
        let mut c = config(1);
        c.session.volatile_ttl = ttl;
        c.session.persistent_ttl = ttl;
        let e = Backend::Redis.start(c, None).await;
        let mut last_sent = Instant::now();
        let kept = e.create().await.unwrap().id;
        let born = Instant::now();
        let dropped = e.create().await.unwrap().id;
        e.insert(&kept, "a", "k", &1).await.unwrap();
        let deadline = born + Duration::from_secs(60);
        // Touches `kept` every 100 ms until `dropped` is gone by Redis's own expiry and `kept`
        // has lived at least three idle lifetimes.
        loop {
            actix_rt::time::sleep(Duration::from_millis(100)).await;
            let sent = Instant::now();
            let touched = e.touch(&kept).await;
            let answered = Instant::now();
            match touched {
                Ok(_) => {}
                Err(SessionError::SessionGone) if answered - last_sent >= ttl => return false,
                Err(other) => panic!("a session touched every {:?} was lost: {other:?}", answered - last_sent),
            }
            last_sent = sent;
            let sessions = e.stats().await.unwrap().sessions;
            if sessions == 1 && born.elapsed() > 3 * ttl {
                break;
            }
            assert!(Instant::now() < deadline, "Redis did not drop the idle session within 60 s ({sessions} left)");
        }
        assert_eq!(e.info(&dropped).await, Err(SessionError::SessionGone));
        match e.get::<i32>(&kept, "a", "k").await {
            Ok(value) => assert_eq!(value, Some(1)),
            Err(SessionError::SessionGone) if last_sent.elapsed() >= ttl => return false,
            Err(other) => panic!("a session touched within its idle lifetime was lost: {other:?}"),
        }
        // No more touches: Redis drops `kept` too.
        while e.stats().await.unwrap().sessions != 0 {
            assert!(Instant::now() < deadline + ttl, "Redis did not drop the session once it was idle");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(e.info(&kept).await, Err(SessionError::SessionGone));
        true
    }
}
