//! Session data sealed at rest (`storage.encrypt`, on by default): a canary written through the
//! API is in no file of the data directory — as text, hex or base64; the log alone (what a
//! `kill -9` leaves), after a snapshot, after a clean stop — and reads back after a restart.
//! Data written unsealed still loads and is rewritten sealed; previous secrets still open it; a
//! secret that cannot open it stops the start and leaves the files alone; a tampered snapshot
//! is damage (the previous generation loads), never other data.

use std::path::Path;

use draco_session::config::LogMode;
use draco_session::{Config, ManualClock, SessionEngine, SessionId};
use serde_json::Value;

use crate::support::canary::{file_count, files_holding, forms};
use crate::support::*;

/// The value, the scope and key names, and the user id the tests look for.
const VALUE: &str = "canary-value-5be1d7c29a";
const SCOPE: &str = "canaryscope8f3e";
const KEY: &str = "canarykey41aa";
/// A user id with no byte or digit run common in other data.
const USER: u64 = 0x5C0F_FEE1_D00D_B0A7;

fn needles() -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for text in [VALUE, SCOPE, KEY, &USER.to_string()] {
        all.extend(forms(text.as_bytes()));
    }
    all.push(USER.to_le_bytes().to_vec());
    all.push(USER.to_be_bytes().to_vec());
    all
}

fn engine(dir: &Path, clock: &ManualClock, edit: impl FnOnce(&mut Config)) -> SessionEngine {
    let mut c = config(dir, 2);
    edit(&mut c);
    SessionEngine::builder(c).clock(clock.clone()).start().expect("engine starts")
}

/// A logged-in, remembered session holding the canary; its id.
async fn write_canary(e: &SessionEngine) -> SessionId {
    let id = e.create().await.unwrap().id;
    e.insert(&id, SCOPE, KEY, &VALUE).await.unwrap();
    let id = e.login(&id, USER).await.unwrap().id;
    e.set_persistent(&id, true).await.unwrap();
    e.insert(&id, "__system__", "note", &format!("{VALUE} again, after the login")).await.unwrap();
    id
}

async fn reads_back(e: &SessionEngine, id: &SessionId) {
    assert_eq!(e.get::<Value>(id, SCOPE, KEY).await.unwrap(), Some(Value::from(VALUE)));
    let info = e.info(id).await.unwrap();
    assert_eq!((info.userid, info.persistent), (USER, true));
    assert_eq!(e.keys(id, SCOPE).await.unwrap(), vec![KEY.to_owned()]);
}

fn assert_sealed(dir: &Path, when: &str) {
    assert!(file_count(dir) > 1, "{when}: the data directory holds files");
    let found = files_holding(dir, &needles());
    assert!(found.is_empty(), "{when}: plain session data on disk: {found:?}");
}

#[actix_rt::test]
async fn a_canary_is_in_no_file_and_reads_back_after_a_crash_and_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let e = engine(dir.path(), &clock, |_| {});
    let id = write_canary(&e).await;
    // Only the log holds it so far: what a kill -9 now would leave.
    let crashed = crash_image(dir.path());
    assert!(!log_files(crashed.path()).is_empty(), "the log was written");
    assert_sealed(crashed.path(), "log only (a crash image)");
    e.snapshot().await.unwrap();
    assert_sealed(crash_image(dir.path()).path(), "after a snapshot");
    e.shutdown().await;
    assert_sealed(dir.path(), "after a clean stop");

    // The crash image starts and has every acknowledged change.
    let e = engine(crashed.path(), &clock, |_| {});
    reads_back(&e, &id).await;
    e.shutdown().await;
    let e = engine(dir.path(), &clock, |_| {});
    reads_back(&e, &id).await;
    e.shutdown().await;
    assert_sealed(dir.path(), "after a restart");
}

#[actix_rt::test]
async fn data_written_unsealed_still_loads_and_is_rewritten_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let e = engine(dir.path(), &clock, |c| c.storage.encrypt = false);
    let id = write_canary(&e).await;
    e.snapshot().await.unwrap();
    // After the snapshot, more in the log only.
    e.insert(&id, "later", "k", &"written after the snapshot").await.unwrap();
    let image = crash_image(dir.path());
    e.shutdown().await;
    // The scan sees plain data when there is some.
    assert!(!files_holding(image.path(), &needles()).is_empty(), "unsealed data is plain on disk");

    let e = engine(image.path(), &clock, |_| {});
    reads_back(&e, &id).await;
    assert_eq!(e.get::<String>(&id, "later", "k").await.unwrap().as_deref(), Some("written after the snapshot"));
    // Rewritten at start: no plain file is left, before any new write.
    assert_sealed(image.path(), "after starting with encrypt on");
    e.shutdown().await;
    let e = engine(image.path(), &clock, |_| {});
    reads_back(&e, &id).await;
    e.shutdown().await;
}

#[actix_rt::test]
async fn previous_secrets_open_sealed_data_and_a_secret_that_cannot_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let e = engine(dir.path(), &clock, |_| {});
    let id = write_canary(&e).await;
    e.snapshot().await.unwrap();
    e.insert(&id, "later", "k", &1).await.unwrap();
    e.shutdown().await;
    let before: Vec<(String, Vec<u8>)> = snapshot_and_log_bytes(dir.path());

    const NEW: &str = "a new secret after a rotation, long enough";
    let err = SessionEngine::builder({
        let mut c = config(dir.path(), 2);
        c.session.secret = Some(NEW.into());
        c
    })
    .clock(clock.clone())
    .start()
    .unwrap_err()
    .to_string();
    assert!(err.contains("previous_secrets") && err.contains("key this engine does not hold"), "{err}");
    assert_eq!(snapshot_and_log_bytes(dir.path()), before, "nothing set aside, removed or rewritten");

    let e = engine(dir.path(), &clock, |c| {
        c.session.secret = Some(NEW.into());
        c.session.previous_secrets = vec![SECRET.into()];
    });
    reads_back(&e, &id).await;
    assert_eq!(e.get::<i64>(&id, "later", "k").await.unwrap(), Some(1));
    e.shutdown().await;
}

/// Every file of the snapshot and log directories, by name, with its bytes.
fn snapshot_and_log_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = files(dir)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read(snapshot_dir(dir).join(&n)).unwrap()))
        .chain(log_files(dir).into_iter().map(|n| (n.clone(), std::fs::read(log_dir(dir).join(&n)).unwrap())))
        .collect();
    out.sort();
    out
}

#[actix_rt::test]
async fn a_tampered_snapshot_is_damage_and_the_previous_generation_loads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    // Snapshots only: the log would bring the newer value back over the older generation.
    let e = engine(dir.path(), &clock, |c| c.storage.log = LogMode::Off);
    let id = write_canary(&e).await;
    e.insert(&id, "gen", "n", &1).await.unwrap();
    e.snapshot().await.unwrap();
    e.insert(&id, "gen", "n", &2).await.unwrap();
    e.snapshot().await.unwrap();
    e.shutdown().await;
    // The newest generation of the session's shard: flip the last byte (its block's tag) and
    // forge both checksums to match, as someone editing the file would.
    let newest = snap_files(dir.path())
        .into_iter()
        .filter(|n| {
            let bytes = std::fs::read(snapshot_dir(dir.path()).join(n)).unwrap();
            u64::from_le_bytes(bytes[40..48].try_into().unwrap()) > 0
        })
        .max_by_key(|n| n.rsplit('-').next().map(str::to_owned))
        .unwrap();
    let path = snapshot_dir(dir.path()).join(&newest);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let body = xxhash_rust::xxh3::xxh3_64(&bytes[80..]);
    bytes[56..64].copy_from_slice(&body.to_le_bytes());
    let head = xxhash_rust::xxh3::xxh3_64(&bytes[..72]);
    bytes[72..80].copy_from_slice(&head.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let e = engine(dir.path(), &clock, |c| c.storage.log = LogMode::Off);
    assert_eq!(e.get::<i64>(&id, "gen", "n").await.unwrap(), Some(1), "the previous generation, not forged data");
    reads_back(&e, &id).await;
    e.shutdown().await;
    assert!(
        files(dir.path()).iter().any(|n| n.ends_with(".corrupt")),
        "the tampered file is set aside: {:?}",
        files(dir.path())
    );
}
