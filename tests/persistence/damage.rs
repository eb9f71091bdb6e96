//! Damaged or unusable storage at start: a damaged snapshot (header, body, tail or whole file)
//! is set aside and the previous generation loads, only damaged generations start empty and
//! say so, and a data directory that cannot be written is a start error.

use std::path::Path;

use draco_session::{Config, ManualClock, SessionEngine, SessionError, SessionId, config::LogMode, error::StartError};
use serde_json::Value;

use crate::support::*;

/// Damages the newest generation of every shard file with `damage`.
fn damage_newest(dir: &Path, damage: impl Fn(&mut Vec<u8>)) -> Vec<String> {
    let mut newest: std::collections::BTreeMap<String, String> = Default::default();
    for name in snap_files(dir) {
        newest.insert(name[..name.find('.').unwrap()].to_owned(), name);
    }
    for name in newest.values() {
        let path = snapshot_dir(dir).join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
    }
    newest.into_values().collect()
}

#[actix_rt::test]
async fn a_damaged_snapshot_is_set_aside_and_the_previous_generation_loads() {
    type Damage = fn(&mut Vec<u8>);
    let kinds: [(&str, Damage); 4] = [
        ("header", |b| b[20] ^= 0x40),
        ("body", |b| {
            let middle = 72 + (b.len() - 72) / 2;
            b[middle] ^= 0x01;
        }),
        ("tail", |b| b.truncate(b.len() - 7)),
        ("whole file", |b| b.truncate(30)),
    ];
    // Without the log the previous generation is all there is; with it, the log records after
    // that generation (kept until the generation is dropped) bring the lost changes back.
    for ((kind, damage), log) in kinds.into_iter().flat_map(|k| [(k, LogMode::Off), (k, Config::default().storage.log)])
    {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let a = start_logging(dir.path(), 2, &clock, log);
        let mut first = populate(&a, 20).await;
        assert_eq!(a.snapshot().await.unwrap(), 20);
        // The second generation changes every session, and adds one.
        for e in &first {
            a.insert(&e.id.parse().unwrap(), "cart", "items", &"second").await.unwrap();
        }
        let added = a.create().await.unwrap().id;
        a.insert(&added, "a", "b", &1).await.unwrap();
        a.shutdown().await;
        let damaged = damage_newest(dir.path(), damage);

        let b = start_logging(dir.path(), 2, &clock, log);
        if log == LogMode::Off {
            check(&b, &first).await;
            assert_eq!(b.info(&added).await, Err(SessionError::SessionGone), "{kind}");
        } else {
            for e in &mut first {
                e.values.iter_mut().filter(|v| (v.0.as_str(), v.1.as_str()) == ("cart", "items")).for_each(|v| {
                    v.2 = Value::from("second");
                });
            }
            check(&b, &first).await;
            assert_eq!(b.get::<i32>(&added, "a", "b").await, Ok(Some(1)), "{kind}: replayed from the log");
        }
        let names = files(dir.path());
        for name in &damaged {
            assert!(names.contains(&format!("{name}.corrupt")), "{kind}: {names:?}");
            assert!(!names.contains(name), "{kind}: {names:?}");
        }
        // The engine goes on: new changes are written and read back.
        let id: SessionId = first[0].id.parse().unwrap();
        b.insert(&id, "cart", "items", &"third").await.unwrap();
        first[0].values[1].2 = Value::from("third");
        b.shutdown().await;
        let c = start_logging(dir.path(), 2, &clock, log);
        check(&c, &first).await;
        c.shutdown().await;
    }
}

/// The engine's side; that its log says so is checked on the demo, whose log can be read
/// (`process` binary, `persistence::a_damaged_only_generation_is_set_aside_and_the_log_says_so`):
/// no logger may be installed in this test process.
#[actix_rt::test]
async fn only_damaged_generations_start_empty() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 1, &clock);
    populate(&a, 3).await;
    a.shutdown().await;
    damage_newest(dir.path(), |b| b[100] ^= 1);
    // One generation only, damaged: the engine starts (empty), the file is kept aside.
    let b = start(dir.path(), 1, &clock);
    assert_eq!(b.stats().await.unwrap().sessions, 0);
    assert_eq!(files(dir.path()).len(), 1);
    assert!(files(dir.path())[0].ends_with(".snap.corrupt"));
    b.shutdown().await;
}

#[actix_rt::test]
async fn a_data_dir_that_cannot_be_written_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let mut c = config(&file.join("data"), 1);
    c.session.secret = Some(SECRET.into());
    let err = SessionEngine::start(c).unwrap_err();
    assert!(matches!(err, StartError::Storage { .. }), "{err}");
    assert!(err.to_string().contains("storage.dir"), "{err}");
}
