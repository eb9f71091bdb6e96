//! Durable sessions through the engine API: snapshots, graceful shutdown, restart in the same
//! process, shard-count changes, damaged files and the v1 fixture.

use std::path::{Path, PathBuf};
use std::time::Duration;

use draco_session::{Clock as _, Config, ManualClock, SessionEngine, SessionError, SessionId, StartError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const SECRET: &str = "persistence test secret, at least 32 bytes";
const T0: u64 = 1_700_000_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn config(dir: &Path, shards: usize) -> Config {
    let mut c = Config::default();
    c.session.secret = Some(SECRET.into());
    c.session.shards = shards;
    c.storage.dir = dir.to_owned();
    // Snapshots in these tests come from snapshot() and shutdown(), never from the timer.
    c.storage.snapshot_interval = HOUR;
    c
}

fn start(dir: &Path, shards: usize, clock: &ManualClock) -> SessionEngine {
    SessionEngine::builder(config(dir, shards)).clock(clock.clone()).start().expect("engine starts")
}

fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

/// Names in the snapshot directory, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(snapshot_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn snap_files(dir: &Path) -> Vec<String> {
    files(dir).into_iter().filter(|n| n.ends_with(".snap")).collect()
}

/// One session's expected content, as the first engine left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Expected {
    id: String,
    userid: u64,
    persistent: bool,
    values: Vec<(String, String, Value)>,
}

async fn check(engine: &SessionEngine, expected: &[Expected]) {
    for e in expected {
        let id: SessionId = e.id.parse().unwrap();
        let info = engine.info(&id).await.unwrap_or_else(|err| panic!("{}: {err}", e.id));
        assert_eq!((info.userid, info.persistent), (e.userid, e.persistent), "{}", e.id);
        for (scope, key, value) in &e.values {
            assert_eq!(engine.get::<Value>(&id, scope, key).await.unwrap().as_ref(), Some(value), "{scope}/{key}");
        }
        let scopes: std::collections::BTreeSet<&str> = e.values.iter().map(|(s, _, _)| s.as_str()).collect();
        let total: usize = {
            let mut n = 0;
            for scope in scopes {
                n += engine.keys(&id, scope).await.unwrap().len();
            }
            n
        };
        assert_eq!(total, e.values.len(), "{}: no extra keys", e.id);
    }
}

/// Writes a mix of sessions: anonymous with several namespaces, logged in, remembered.
async fn populate(engine: &SessionEngine, n: usize) -> Vec<Expected> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut id = engine.create().await.unwrap().id;
        engine.insert(&id, "__system__", "name", &format!("visitor {i}")).await.unwrap();
        engine.insert(&id, "cart", "items", &vec![i, i + 1]).await.unwrap();
        engine.increment(&id, "stats", "visits", i64::try_from(i).unwrap() + 1).await.unwrap();
        let (mut userid, mut persistent) = (0, false);
        if i % 3 != 0 {
            userid = 1 + (i as u64 % 5);
            id = engine.login(&id, userid).await.unwrap().id;
            if i % 3 == 2 {
                engine.set_persistent(&id, true).await.unwrap();
                persistent = true;
            }
        }
        out.push(Expected {
            id: id.to_string(),
            userid,
            persistent,
            values: vec![
                ("__system__".into(), "name".into(), Value::from(format!("visitor {i}"))),
                ("cart".into(), "items".into(), serde_json::json!([i, i + 1])),
                ("stats".into(), "visits".into(), Value::from(i64::try_from(i).unwrap() + 1)),
            ],
        });
    }
    out
}

#[actix_rt::test]
async fn everything_comes_back_after_shutdown_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 3, &clock);
    let expected = populate(&a, 60).await;
    // Dead ids must stay dead after a restart.
    let rotated = a.create().await.unwrap().id;
    a.insert(&rotated, "x", "y", &1).await.unwrap();
    let rotated_to = a.login(&rotated, 9).await.unwrap().id;
    let destroyed = a.create().await.unwrap().id;
    a.insert(&destroyed, "x", "y", &1).await.unwrap();
    assert!(a.destroy(&destroyed).await.unwrap());
    // Never written: never persisted.
    let unwritten = a.create().await.unwrap().id;
    let before = a.info(&expected[1].id.parse().unwrap()).await.unwrap();
    a.shutdown().await;
    assert!(matches!(a.info(&rotated_to).await, Err(SessionError::Unavailable(_))));

    let b = start(dir.path(), 3, &clock);
    assert_eq!(b.stats().await.unwrap().sessions, expected.len() + 1);
    check(&b, &expected).await;
    let after = b.info(&expected[1].id.parse().unwrap()).await.unwrap();
    assert_eq!((after.created, after.last_access, after.expires), (before.created, before.last_access, before.expires));
    for dead in [rotated, destroyed, unwritten] {
        assert_eq!(b.info(&dead).await, Err(SessionError::SessionGone));
    }
    assert_eq!(b.info(&rotated_to).await.unwrap().userid, 9);
    // The per-user index is rebuilt: list and "log out everywhere" work on loaded sessions.
    let of_user_1 = expected.iter().filter(|e| e.userid == 1).count();
    assert!(of_user_1 > 0);
    assert_eq!(b.sessions_of(1).await.unwrap().len(), of_user_1);
    assert_eq!(b.logout_user(1).await.unwrap(), of_user_1);
    // Loaded sessions keep working, and a second restart sees the new state.
    let id: SessionId = expected[0].id.parse().unwrap();
    assert_eq!(b.increment(&id, "stats", "visits", 10).await.unwrap(), 11);
    b.shutdown().await;

    let c = start(dir.path(), 3, &clock);
    assert_eq!(c.get::<i64>(&id, "stats", "visits").await.unwrap(), Some(11));
    assert!(c.sessions_of(1).await.unwrap().is_empty());
    assert_eq!(c.stats().await.unwrap().sessions, expected.len() + 1 - of_user_1);
    c.shutdown().await;
}

#[actix_rt::test]
async fn a_different_shard_count_loses_nothing_and_old_files_never_resurrect_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 4, &clock);
    let mut expected = populate(&a, 80).await;
    a.shutdown().await;
    assert!(snap_files(dir.path()).iter().all(|n| n.contains("-of-0004.")));

    let b = start(dir.path(), 2, &clock);
    check(&b, &expected).await;
    // The old layout is gone from disk as soon as the new one is written.
    let names = snap_files(dir.path());
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.contains("-of-0002.")), "{names:?}");
    // Sessions ended now must stay ended whatever layout comes next.
    for e in expected.drain(..20) {
        assert!(b.destroy(&e.id.parse().unwrap()).await.unwrap());
    }
    let id: SessionId = expected[0].id.parse().unwrap();
    b.insert(&id, "cart", "items", &"changed").await.unwrap();
    expected[0].values[1].2 = Value::from("changed");
    b.shutdown().await;

    for shards in [4, 3, 1] {
        let c = start(dir.path(), shards, &clock);
        assert_eq!(c.stats().await.unwrap().sessions, expected.len(), "{shards} shards");
        check(&c, &expected).await;
        c.shutdown().await;
        let names = snap_files(dir.path());
        let layout = format!("-of-{shards:04}.");
        assert!(names.iter().all(|n| n.contains(&layout)), "{names:?}");
    }
}

#[actix_rt::test]
async fn unchanged_shards_are_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let e = start(dir.path(), 2, &clock);
    let expected = populate(&e, 20).await;
    assert_eq!(e.snapshot().await.unwrap(), 20);
    let first = files(dir.path());
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(e.snapshot().await.unwrap(), 0, "nothing changed");
    // Reading metadata is not a use; creating without writing is not a change either.
    e.info(&expected[0].id.parse().unwrap()).await.unwrap();
    e.create().await.unwrap();
    assert_eq!(e.snapshot().await.unwrap(), 0);
    assert_eq!(files(dir.path()), first);
    // One change rewrites that one shard only.
    let id: SessionId = expected[0].id.parse().unwrap();
    e.insert(&id, "cart", "items", &0).await.unwrap();
    let in_shard = expected.iter().filter(|x| x.id.parse::<SessionId>().unwrap().shard(2) == id.shard(2)).count();
    assert_eq!(e.snapshot().await.unwrap(), in_shard);
    let second = files(dir.path());
    assert_eq!(second.len(), 3, "two generations of the changed shard: {second:?}");
    e.shutdown().await;
    assert_eq!(files(dir.path()), second, "shutdown with nothing changed writes nothing");
}

#[actix_rt::test]
async fn the_timer_snapshots_changed_shards() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 2);
    c.storage.snapshot_interval = Duration::from_millis(100);
    let e = SessionEngine::start(c).unwrap();
    let id = e.create().await.unwrap().id;
    e.insert(&id, "a", "b", &1).await.unwrap();
    let mut waited = Duration::ZERO;
    while snap_files(dir.path()).is_empty() {
        assert!(waited < Duration::from_secs(10), "no periodic snapshot");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    e.shutdown().await;
}

/// actix-server stops the whole actix system on SIGTERM/SIGINT before the application can call
/// `shutdown()`: the workers die with their threads, and must still leave a final snapshot.
#[test]
fn a_stopping_actix_system_still_gets_a_final_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let system = actix_rt::System::new();
    let (kept, late) = system.block_on(async {
        let e = start(dir.path(), 2, &clock);
        let kept = populate(&e, 10).await;
        e.snapshot().await.unwrap();
        let late = e.create().await.unwrap().id;
        e.insert(&late, "a", "b", &1).await.unwrap();
        actix_rt::System::current().stop();
        // What the demo does once the HTTP server returns: waits for durability.
        e.shutdown().await;
        (kept, late)
    });
    drop(system);
    actix_rt::System::new().block_on(async {
        let e = start(dir.path(), 2, &clock);
        check(&e, &kept).await;
        assert_eq!(e.get::<i32>(&late, "a", "b").await.unwrap(), Some(1));
        e.shutdown().await;
    });
}

#[actix_rt::test]
async fn expired_sessions_are_dropped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 2, &clock);
    let volatile = a.create().await.unwrap().id;
    a.insert(&volatile, "a", "b", &1).await.unwrap();
    let remembered = a.login(&a.create().await.unwrap().id, 7).await.unwrap().id;
    a.set_persistent(&remembered, true).await.unwrap();
    a.shutdown().await;

    // Down for three hours: past the 2 h volatile lifetime, well within the 100 days.
    clock.advance(3 * HOUR);
    let b = start(dir.path(), 2, &clock);
    assert_eq!(b.stats().await.unwrap().sessions, 1);
    assert_eq!(b.info(&volatile).await, Err(SessionError::SessionGone));
    assert!(b.info(&remembered).await.unwrap().persistent);
    b.shutdown().await;
}

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
    for (kind, damage) in kinds {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let a = start(dir.path(), 2, &clock);
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

        let b = start(dir.path(), 2, &clock);
        check(&b, &first).await;
        assert_eq!(b.info(&added).await, Err(SessionError::SessionGone), "{kind}");
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
        let c = start(dir.path(), 2, &clock);
        check(&c, &first).await;
        c.shutdown().await;
    }
}

#[actix_rt::test]
async fn only_damaged_generations_start_empty_and_say_so() {
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
async fn a_snapshot_from_a_newer_version_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 1, &clock);
    populate(&a, 2).await;
    a.shutdown().await;
    let name = snap_files(dir.path()).pop().unwrap();
    let path = snapshot_dir(dir.path()).join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let check = xxhash_rust::xxh3::xxh3_64(&bytes[..64]);
    bytes[64..72].copy_from_slice(&check.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = SessionEngine::builder(config(dir.path(), 1)).clock(clock.clone()).start().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StartError::Storage { .. }), "{text}");
    assert!(text.contains("version 2") && text.contains("upgrade") && text.contains(&name), "{text}");
    // Nothing was set aside or deleted: the newer build can still read it.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
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

#[actix_rt::test]
async fn without_persistence_nothing_touches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 2);
    c.storage.persist = false;
    let e = SessionEngine::start(c).unwrap();
    let id = e.create().await.unwrap().id;
    e.insert(&id, "a", "b", &1).await.unwrap();
    assert_eq!(e.snapshot().await.unwrap(), 0);
    e.shutdown().await;
    assert!(!snapshot_dir(dir.path()).exists());
}

// --- The v1 fixture: every later version must read it. -------------------------------------

const FIXTURE_NOW: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Debug, Serialize, Deserialize)]
struct FixtureContent {
    /// How the fixture was made; not read.
    note: String,
    now_ms: u64,
    sessions: Vec<FixtureSession>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FixtureSession {
    #[serde(flatten)]
    expected: Expected,
    created_ms: u64,
    last_access_ms: u64,
}

fn ms(t: std::time::SystemTime) -> u64 {
    u64::try_from(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// (Re)creates `tests/fixtures/snapshot-v1.snap` and its expected content. Run only when
/// deliberately replacing the fixture:
/// `cargo test --test persistence -- --ignored generate_v1_fixture`.
#[actix_rt::test]
#[ignore = "writes tests/fixtures; run by hand"]
async fn generate_v1_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(FIXTURE_NOW);
    let e = start(dir.path(), 1, &clock);
    let mut sessions = Vec::new();
    let ids: Vec<(SessionId, u64, bool)> = {
        let mut out = Vec::new();
        let anonymous = e.create().await.unwrap().id;
        e.insert(&anonymous, "__system__", "theme", &"dark").await.unwrap();
        e.insert(&anonymous, "cart", "items", &serde_json::json!([{"sku": "B-1", "qty": 2}])).await.unwrap();
        out.push((anonymous, 0, false));
        clock.advance(Duration::from_secs(60));
        let alice = e.login(&e.create().await.unwrap().id, 1).await.unwrap().id;
        e.set_persistent(&alice, true).await.unwrap();
        e.increment(&alice, "stats", "visits", 3).await.unwrap();
        e.insert(&alice, "prefs", "lang", &"fr").await.unwrap();
        e.insert(&alice, "prefs", "unicode", &"ünï ✓").await.unwrap();
        out.push((alice, 1, true));
        clock.advance(Duration::from_secs(60));
        let bob = e.login(&e.create().await.unwrap().id, 2).await.unwrap().id;
        e.insert(&bob, "counters", "big", &i64::MAX).await.unwrap();
        e.insert(&bob, "counters", "neg", &-17).await.unwrap();
        e.insert(&bob, "__system__", "nothing", &Value::Null).await.unwrap();
        out.push((bob, 2, false));
        out
    };
    let values: [Vec<(&str, &str, Value)>; 3] = [
        vec![
            ("__system__", "theme", Value::from("dark")),
            ("cart", "items", serde_json::json!([{"sku": "B-1", "qty": 2}])),
        ],
        vec![
            ("stats", "visits", Value::from(3)),
            ("prefs", "lang", Value::from("fr")),
            ("prefs", "unicode", Value::from("ünï ✓")),
        ],
        vec![
            ("counters", "big", Value::from(i64::MAX)),
            ("counters", "neg", Value::from(-17)),
            ("__system__", "nothing", Value::Null),
        ],
    ];
    for ((id, userid, persistent), values) in ids.into_iter().zip(values) {
        let info = e.info(&id).await.unwrap();
        sessions.push(FixtureSession {
            expected: Expected {
                id: id.to_string(),
                userid,
                persistent,
                values: values.into_iter().map(|(s, k, v)| (s.into(), k.into(), v)).collect(),
            },
            created_ms: ms(info.created),
            last_access_ms: ms(info.last_access),
        });
    }
    e.shutdown().await;
    let name = snap_files(dir.path()).pop().unwrap();
    std::fs::create_dir_all(fixture_dir()).unwrap();
    std::fs::copy(snapshot_dir(dir.path()).join(name), fixture_dir().join("snapshot-v1.snap")).unwrap();
    let content = FixtureContent {
        note: format!(
            "Snapshot format v1, one shard, written by tests/persistence.rs generate_v1_fixture with secret {SECRET:?}"
        ),
        now_ms: clock.now_ms(),
        sessions,
    };
    std::fs::write(fixture_dir().join("snapshot-v1.json"), serde_json::to_string_pretty(&content).unwrap() + "\n")
        .unwrap();
}

#[actix_rt::test]
async fn the_v1_fixture_still_loads_with_its_exact_content() {
    let content: FixtureContent =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("snapshot-v1.json")).unwrap()).unwrap();
    let bytes = std::fs::read(fixture_dir().join("snapshot-v1.snap")).unwrap();
    assert_eq!(&bytes[..8], b"DRACOSNP");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1, "the fixture is format v1");
    let generation = u64::from_le_bytes(bytes[24..32].try_into().unwrap());
    // Loaded as written (1 shard) and re-hashed into another layout.
    for shards in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(snapshot_dir(dir.path())).unwrap();
        let name = format!("shard-0000-of-0001.{generation:012}.snap");
        std::fs::write(snapshot_dir(dir.path()).join(name), &bytes).unwrap();
        let clock = ManualClock::new(content.now_ms);
        let e = start(dir.path(), shards, &clock);
        assert_eq!(e.stats().await.unwrap().sessions, content.sessions.len());
        for s in &content.sessions {
            let info = e.info(&s.expected.id.parse().unwrap()).await.unwrap();
            assert_eq!((ms(info.created), ms(info.last_access)), (s.created_ms, s.last_access_ms));
        }
        let expected: Vec<Expected> = content.sessions.iter().map(|s| s.expected.clone()).collect();
        check(&e, &expected).await;
        assert_eq!(e.sessions_of(1).await.unwrap().len(), 1);
        e.shutdown().await;
    }
}

/// A copy of the snapshot directory as it is now: what a crash at this moment would leave.
fn crash_copy(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(snapshot_dir(copy.path())).unwrap();
    for name in snap_files(dir) {
        std::fs::copy(snapshot_dir(dir).join(&name), snapshot_dir(copy.path()).join(&name)).unwrap();
    }
    copy
}

#[actix_rt::test]
async fn a_session_rotated_while_a_snapshot_is_encoded_is_in_that_snapshot() {
    // A snapshot of a big shard takes many actor turns, and operations run between them. A
    // session written before the snapshot began and logged in (rotated to a new id) while it is
    // encoded must be in it under one of its ids: a crash right after must not lose it.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let e = start(dir.path(), 1, &clock);
    let mut ids = Vec::new();
    for i in 0..20_000 {
        let id = e.create().await.unwrap().id;
        e.insert(&id, "a", "n", &i).await.unwrap();
        ids.push(id);
    }
    // Early, late and in the middle of the walk.
    let targets = [ids[0], ids[10_000], ids[19_999]];
    // The snapshot reaches the worker through the supervisor within microseconds and takes
    // tens of milliseconds (79 turns of 256 sessions, unoptimised); the logins go out 2 ms in.
    let logins = async {
        actix_rt::time::sleep(Duration::from_millis(2)).await;
        futures_util::future::join_all(targets.iter().map(|id| e.login(id, 7))).await
    };
    let (written, rotated) = futures_util::future::join(e.snapshot(), logins).await;
    assert!(written.unwrap() >= 19_997);
    let copy = crash_copy(dir.path());
    let after = start(copy.path(), 1, &clock);
    for (old, new) in targets.iter().zip(rotated) {
        let new = new.unwrap().id;
        let found = match after.get::<i64>(&new, "a", "n").await {
            Ok(v) => v,
            Err(SessionError::SessionGone) => after.get::<i64>(old, "a", "n").await.unwrap_or(None),
            Err(other) => panic!("{other}"),
        };
        let i = i64::try_from(ids.iter().position(|x| x == old).unwrap()).unwrap();
        assert_eq!(found, Some(i), "session {i} lost by a snapshot taken while it rotated");
    }
    after.shutdown().await;
    e.shutdown().await;
}
