//! Unit tests of [`Shard`]: the session logic alone, no actors, time from a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::id::Keyring;
use crate::memory::{Placement, Shared};

const T0: u64 = 1_700_000_000_000;

/// One shard of `shards`, on a manual clock, holding at most `max_sessions` in all.
fn shard_with(shards: usize, max_sessions: usize) -> (Shard, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let mut config = Config::default();
    config.limits.max_sessions = max_sessions;
    config.session.shards = shards;
    let keyring = Keyring::from_secrets(b"shard unit test secret, 32 bytes or more", &[]).unwrap();
    let shared = Arc::new(Shared::new(config, keyring, clock.clone(), Placement::default(), None, None));
    (Shard::new(0, shared, crate::snapshot::Recovered::default()), clock)
}

fn shard() -> (Shard, Arc<ManualClock>) {
    shard_with(1, 1_000)
}

fn new_session(s: &mut Shard) -> SessionId {
    let id = s.shared().keyring.generate_in_shard(s.index(), s.shared().shards);
    s.create(id).unwrap().id
}

/// A session written once, so snapshots take it.
fn written(s: &mut Shard) -> SessionId {
    let id = new_session(s);
    s.set(&id, "a", "k", b"1").unwrap();
    id
}

#[test]
fn values_live_in_independent_scopes() {
    let (mut s, _) = shard();
    let id = new_session(&mut s);
    s.set(&id, "cart", "n", b"1").unwrap();
    s.set(&id, "stats", "n", b"2").unwrap();
    assert_eq!(s.get(&id, "cart", "n").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(s.keys(&id, "stats").unwrap(), ["n"]);
    assert!(s.remove(&id, "cart", "n").unwrap());
    assert_eq!(s.get(&id, "cart", "n").unwrap(), None);
    assert_eq!(s.get(&id, "stats", "n").unwrap().as_deref(), Some(&b"2"[..]));
    s.clear(&id, None).unwrap();
    assert!(s.keys(&id, "stats").unwrap().is_empty());
}

#[test]
fn a_second_create_under_one_id_is_refused() {
    let (mut s, _) = shard();
    let id = new_session(&mut s);
    assert_eq!(s.create(id), Err(SessionError::InvalidId));
    assert_eq!(s.len(), 1);
}

#[test]
fn login_rotates_the_id_keeps_the_data_and_indexes_the_user() {
    let (mut s, _) = shard();
    let id = written(&mut s);
    let logged = s.login(&id, 7).unwrap();
    assert_ne!(logged.id, id);
    assert_eq!(s.get(&id, "a", "k"), Err(SessionError::SessionGone));
    assert_eq!(s.get(&logged.id, "a", "k").unwrap().as_deref(), Some(&b"1"[..]));
    let listed = s.sessions_of(7);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, s.shared().keyring.handle(logged.id.locator()));
    assert_eq!(s.login(&logged.id, 0), Err(SessionError::InvalidUserId));
}

#[test]
fn remember_me_needs_a_user_and_survives_only_a_relogin_of_that_user() {
    let (mut s, _) = shard();
    let id = new_session(&mut s);
    assert_eq!(s.set_persistent(&id, true), Err(SessionError::NotLoggedIn));
    let id = s.login(&id, 1).unwrap().id;
    assert!(s.set_persistent(&id, true).unwrap().persistent);
    let same = s.login(&id, 1).unwrap();
    assert!(same.persistent);
    let other = s.login(&same.id, 2).unwrap();
    assert!(!other.persistent);
    let out = s.logout(&other.id).unwrap();
    assert_eq!((out.userid, out.persistent), (0, false));
    assert!(s.sessions_of(2).is_empty());
}

#[test]
fn logout_user_ends_every_session_of_that_user_only() {
    let (mut s, _) = shard();
    let a = new_session(&mut s);
    let a = s.login(&a, 5).unwrap().id;
    let b = new_session(&mut s);
    let b = s.login(&b, 5).unwrap().id;
    let c = new_session(&mut s);
    let c = s.login(&c, 6).unwrap().id;
    assert_eq!(s.logout_user(5), Ok(2));
    assert_eq!(s.info_of(&a, false), Err(SessionError::SessionGone));
    assert_eq!(s.info_of(&b, false), Err(SessionError::SessionGone));
    assert_eq!(s.info_of(&c, false).unwrap().userid, 6);
    assert_eq!(s.logout_user(5), Ok(0));
    assert_eq!(s.stats().destroyed, 2);
}

#[test]
fn idle_sessions_expire_and_use_slides_the_expiry() {
    let (mut s, clock) = shard();
    let ttl = s.shared().config.session.volatile_ttl;
    let kept = new_session(&mut s);
    let idle = new_session(&mut s);
    clock.advance(ttl - Duration::from_secs(1));
    s.info_of(&kept, true).unwrap();
    clock.advance(Duration::from_secs(2));
    assert!(s.info_of(&kept, false).is_ok());
    assert_eq!(s.get(&idle, "a", "k"), Err(SessionError::SessionGone));
    assert_eq!(s.stats().expired, 1);
}

#[test]
fn the_sweep_drops_only_expired_sessions_in_bounded_steps() {
    let (mut s, clock) = shard();
    let ttl = s.shared().config.session.volatile_ttl;
    for _ in 0..10 {
        new_session(&mut s);
    }
    clock.advance(ttl + Duration::from_secs(1));
    let fresh = new_session(&mut s);
    // A step examines at most its budget (the fresh session moves into the examined part).
    let first = s.sweep_step(4);
    assert!((1..=4).contains(&first), "{first}");
    assert_eq!(first + s.sweep_all(), 10);
    assert_eq!(s.len(), 1);
    assert!(s.info_of(&fresh, false).is_ok());
}

#[test]
fn a_full_engine_reclaims_expired_sessions_then_refuses_without_evicting() {
    let (mut s, clock) = shard_with(1, 2);
    let old = new_session(&mut s);
    clock.advance(s.shared().config.session.volatile_ttl + Duration::from_secs(1));
    let a = new_session(&mut s);
    let _b = new_session(&mut s);
    assert_eq!(s.info_of(&old, false), Err(SessionError::SessionGone));
    let id = s.shared().keyring.generate();
    assert_eq!(s.create(id), Err(SessionError::Full { limit: 2 }));
    assert!(s.info_of(&a, false).is_ok());
}

#[test]
fn destroy_answers_whether_a_live_session_ended() {
    let (mut s, clock) = shard();
    let id = new_session(&mut s);
    assert_eq!(s.destroy(&id), Ok(true));
    assert_eq!(s.destroy(&id), Ok(false));
    let expired = new_session(&mut s);
    clock.advance(s.shared().config.session.volatile_ttl + Duration::from_secs(1));
    assert_eq!(s.destroy(&expired), Ok(false));
}

#[test]
fn a_panicking_or_failing_update_leaves_the_session_unchanged() {
    let (mut s, _) = shard();
    let id = written(&mut s);
    let panicked = s.guarded(|s| s.update(&id, "a", "k", Box::new(|_| panic!("boom"))));
    assert_eq!(panicked, Err(SessionError::Panicked("boom".into())));
    let failed = s.update(&id, "a", "k", Box::new(|_| Err(SessionError::Codec("no".into()))));
    assert_eq!(failed, Err(SessionError::Codec("no".into())));
    assert_eq!(s.get(&id, "a", "k").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(s.stats().panics, 1);
}

#[test]
fn only_written_sessions_count_as_changes() {
    let (mut s, _) = shard();
    let id = new_session(&mut s);
    s.get(&id, "a", "k").unwrap();
    assert_eq!(s.changes(), 0, "an unwritten session is not persisted state");
    s.set(&id, "a", "k", b"1").unwrap();
    let after_write = s.changes();
    assert!(after_write > 0);
    s.get(&id, "a", "k").unwrap();
    assert!(s.changes() > after_write, "the slid expiry of a written session is persisted state");
}

/// Steps the run under way to its end, four sessions a step.
fn finish_run(s: &mut Shard) -> super::super::snapshot_run::Run {
    loop {
        if let Some(run) = s.run_step(4) {
            return run;
        }
    }
}

#[test]
fn a_run_takes_every_written_session_once() {
    let (mut s, _) = shard();
    let ids: Vec<_> = (0..10).map(|_| written(&mut s)).collect();
    new_session(&mut s); // never written: left out
    s.begin_run();
    assert!(s.run_step(4).is_none());
    let run = finish_run(&mut s);
    let mut taken = run.ids();
    taken.sort_unstable();
    let mut expected: Vec<_> = ids.iter().map(|id| *id.locator()).collect();
    expected.sort_unstable();
    assert_eq!(taken, expected);
}

#[test]
fn a_rotation_during_a_run_is_taken_once_under_one_id() {
    let (mut s, _) = shard();
    let ids: Vec<_> = (0..8).map(|_| written(&mut s)).collect();
    s.begin_run();
    assert!(s.run_step(4).is_none());
    // Rotate one session the run already took and one it has not reached.
    let early = *s.login(&ids[0], 1).unwrap().id.locator();
    let late = *s.login(&ids[7], 2).unwrap().id.locator();
    let ids: Vec<_> = ids.iter().map(|id| *id.locator()).collect();
    let run = finish_run(&mut s);
    let taken = run.ids();
    assert_eq!(taken.len(), 8, "{taken:?}");
    assert_eq!(taken.iter().filter(|id| **id == ids[0] || **id == early).count(), 1);
    assert_eq!(taken.iter().filter(|id| **id == ids[7] || **id == late).count(), 1);
}

#[test]
fn a_removal_that_moves_the_last_session_into_the_walked_part_takes_it_at_once() {
    let (mut s, _) = shard();
    let ids: Vec<_> = (0..8).map(|_| written(&mut s)).collect();
    s.begin_run();
    assert!(s.run_step(4).is_none());
    // The last session moves to index 0, which the run already walked.
    assert_eq!(s.destroy(&ids[0]), Ok(true));
    let run = finish_run(&mut s);
    let taken = run.ids();
    assert!(taken.contains(ids[7].locator()), "the moved session is in the snapshot");
    assert_eq!(taken.len(), 8, "the destroyed one was taken before it ended: {taken:?}");
}

/// A creation refused because the engine is full examines a bounded number of sessions, not
/// the whole shard; the expired ones are still reclaimed over successive attempts.
#[test]
fn a_refused_creation_examines_a_bounded_step_and_attempts_still_reclaim() {
    let (mut s, _) = shard_with(1, 1_000);
    for _ in 0..1_000 {
        new_session(&mut s);
    }
    // Ten sessions far along the sweep's order expired long ago (the periodic sweep has not
    // run): the engine is full of 990 live sessions and 10 dead ones.
    for i in 900..910 {
        s.sessions[i].state.last_access_ms = 0;
    }
    let mut refused = 0;
    let created = loop {
        let id = s.shared().keyring.generate_in_shard(0, 1);
        let cursor = s.sweep_cursor;
        match s.create(id) {
            Err(SessionError::Full { limit: 1_000 }) => {
                refused += 1;
                // Each refusal walked one step of 64 sessions from where the last one stopped.
                assert_eq!(s.sweep_cursor, cursor + Shard::CREATE_SWEEP_BUDGET);
                assert!(refused < 100, "never reclaimed");
            }
            other => break other.unwrap().id,
        }
    };
    assert_eq!(refused, 900 / Shard::CREATE_SWEEP_BUDGET);
    assert_eq!(s.stats().expired, 10);
    assert_eq!(s.len(), 991);
    assert!(s.info_of(&created, false).is_ok());
    for _ in 0..9 {
        new_session(&mut s);
    }
    assert_eq!(s.len(), 1_000);
}
