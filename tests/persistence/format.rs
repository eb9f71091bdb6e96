//! The snapshot format across versions: the committed v1 fixture
//! (`tests/fixtures/snapshot-v1.snap`) still loads with its exact content, in its own layout
//! and re-hashed into another; a snapshot from a newer format version stops the start with a
//! clear error and is left untouched. Also the (ignored) generator of that fixture.

use std::path::{Path, PathBuf};
use std::time::Duration;

use draco_session::{Clock as _, ManualClock, SessionEngine, SessionId, error::StartError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::support::*;

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
    // A version 5 header (from the future), with a checksum valid where versions 2 to 4 keep it.
    bytes[8..12].copy_from_slice(&5u32.to_le_bytes());
    let check = xxhash_rust::xxh3::xxh3_64(&bytes[..72]);
    bytes[72..80].copy_from_slice(&check.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = SessionEngine::builder(config(dir.path(), 1)).clock(clock.clone()).start().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StartError::Storage { .. }), "{text}");
    assert!(text.contains("version 5") && text.contains("upgrade") && text.contains(&name), "{text}");
    // Nothing was set aside or deleted: the newer build can still read it.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
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
/// `cargo test --test persistence -- --ignored format::generate_v1_fixture`.
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
            "Snapshot format v1, one shard, written by tests/persistence/format.rs generate_v1_fixture with secret {SECRET:?}"
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
        // Written before devices had labels: listed, with no label (the page says "unknown").
        let alice = e.sessions_of(1).await.unwrap();
        assert_eq!(alice.len(), 1);
        assert_eq!((alice[0].label.as_deref(), alice[0].ip.as_deref(), alice[0].persistent), (None, None, true));
        e.shutdown().await;
    }
}
