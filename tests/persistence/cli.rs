//! The `draco-session` command (cargo feature `cli`) run as a real process on data directories
//! an engine wrote: `inspect --json` counts exactly what the engine holds, and writes nothing;
//! `verify` exits 0 on good files, 1 naming a damaged snapshot or log segment (and offset), 2
//! when it has no secret; `erase-user` erases a user's sessions offline (no file holds their
//! data after, another user's sessions read back) and refuses a directory an engine holds.
//! (The engine's lock on its directory is tested in restart.rs.) With the `redis` feature too,
//! `erase-user` on a throwaway redis-server.

use std::path::Path;
use std::process::{Command, Output};

use draco_session::{ManualClock, SessionEngine};
use serde_json::Value;

use crate::support::*;

fn run(args: &[&str], secret: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_draco-session"));
    command.args(args).env_remove(draco_session::SECRET_ENV);
    if let Some(secret) = secret {
        command.env(draco_session::SECRET_ENV, secret);
    }
    command.output().expect("draco-session runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn verify(dir: &Path) -> Output {
    run(&["verify", dir.to_str().unwrap()], Some(SECRET))
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["", "snapshots", "log"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Six sessions in a snapshot (two anonymous, four logged in as users 2, 3, 5 and 1, two of
/// those remembered), then three more only in the log (anonymous; user 2; user 3, remembered).
async fn written(dir: &Path) -> (SessionEngine, tempfile::TempDir) {
    let clock = ManualClock::new(T0);
    let engine = start(dir, 2, &clock);
    populate(&engine, 6).await;
    assert_eq!(engine.snapshot().await.unwrap(), 6);
    populate(&engine, 3).await;
    (engine, crash_image(dir))
}

#[actix_rt::test]
async fn inspect_counts_the_sessions_of_snapshots_and_log_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, image) = written(dir.path()).await;
    let running = run(&["inspect", dir.path().to_str().unwrap(), "--json"], Some(SECRET));
    assert!(running.status.success(), "{running:?}");
    let report: Value = serde_json::from_slice(&running.stdout).unwrap();
    assert_eq!(report["engine_running"], true, "{report}");
    engine.shutdown().await;

    // The crash image: the last six sessions' changes are in the log only.
    let before = contents(image.path());
    let output = run(&["inspect", image.path().to_str().unwrap(), "--json"], Some(SECRET));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(contents(image.path()), before, "inspect writes nothing");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["sessions"], 9, "{report}");
    assert_eq!(report["logged_in"], 6, "{report}");
    assert_eq!(report["persistent"], 3, "{report}");
    assert_eq!(report["users"], 4, "{report}");
    assert_eq!(report["engine_running"], false, "{report}");
    let shards = report["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2, "{report}");
    let sum = |field: &str| shards.iter().map(|s| s[field].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("sessions"), 9);
    assert_eq!(sum("bytes"), report["bytes"].as_u64().unwrap());
    assert!(sum("log_records") > 0, "changes after the snapshot come from the log: {report}");
    let (bytes, largest) = (report["bytes"].as_u64().unwrap(), report["largest"].as_u64().unwrap());
    assert!(largest > 0 && largest * 9 >= bytes && largest < bytes, "{report}");
    let files = report["files"].as_array().unwrap();
    for kind in ["snapshot", "log"] {
        assert!(files.iter().any(|f| f["kind"] == kind && f["size"].as_u64().unwrap() > 0), "{kind}: {report}");
    }
    assert_eq!(report["problems"].as_array().unwrap().len(), 0, "{report}");

    // After a clean shutdown (final snapshot): the same sessions; the table form too.
    let output = run(&["inspect", dir.path().to_str().unwrap(), "--json"], Some(SECRET));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["sessions"].as_u64(), report["logged_in"].as_u64()), (Some(9), Some(6)), "{report}");
    assert_eq!((report["persistent"].as_u64(), report["users"].as_u64()), (Some(3), Some(4)), "{report}");
    let table = run(&["inspect", dir.path().to_str().unwrap()], Some(SECRET));
    assert!(table.status.success() && stdout(&table).contains("sessions 9  logged in 6"), "{table:?}");
}

#[actix_rt::test]
async fn verify_names_a_damaged_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, image) = written(dir.path()).await;
    engine.shutdown().await;
    let output = verify(image.path());
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    // The secret from a config file, as the engine reads it; none at all is a usage error.
    let config = image.path().join("config.toml");
    std::fs::write(&config, format!("[session]\nsecret = {SECRET:?}\n")).unwrap();
    let with_config = run(&["--config", config.to_str().unwrap(), "verify", image.path().to_str().unwrap()], None);
    assert_eq!(with_config.status.code(), Some(0), "{with_config:?}");
    let without = run(&["verify", image.path().to_str().unwrap()], None);
    assert_eq!(without.status.code(), Some(2), "{without:?}");
    assert!(String::from_utf8_lossy(&without.stderr).contains("no secret"), "{without:?}");
    let missing = verify(&image.path().join("nowhere"));
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not a directory"), "{missing:?}");

    let snapshot = snap_files(image.path()).into_iter().next_back().unwrap();
    let path = snapshot_dir(image.path()).join(&snapshot);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() - 10;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let output = verify(image.path());
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = stdout(&output);
    assert!(text.lines().any(|l| l.starts_with("damaged:") && l.contains(&snapshot)), "{text}");

    // Garbage under a snapshot's name is a reported problem, not a panic; inspect goes on.
    std::fs::write(snapshot_dir(image.path()).join("shard-0000-of-0002.000000000999.snap"), b"garbage").unwrap();
    let output = verify(image.path());
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stdout(&output).contains("000000000999.snap at offset 0"), "{output:?}");
    let inspected = run(&["inspect", image.path().to_str().unwrap(), "--json"], Some(SECRET));
    assert!(inspected.status.success(), "{inspected:?}");
}

#[actix_rt::test]
async fn verify_names_a_damaged_log_segment_and_offset_and_notes_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let engine = start(dir.path(), 1, &clock);
    let id = engine.create().await.unwrap().id;
    let names = log_files(dir.path());
    let segment = log_dir(dir.path()).join(names.last().unwrap());
    let mut ends = Vec::new();
    for _ in 0..5 {
        engine.increment(&id, "c", "n", 1).await.unwrap();
        ends.push(std::fs::metadata(&segment).unwrap().len());
    }
    let image = crash_image(dir.path());
    engine.shutdown().await;
    let path = log_dir(image.path()).join(segment.file_name().unwrap());
    let good = std::fs::read(&path).unwrap();
    assert_eq!(verify(image.path()).status.code(), Some(0));

    // The last record cut short: what a crash leaves, a note.
    std::fs::write(&path, &good[..usize::try_from(ends[4]).unwrap() - 3]).unwrap();
    let output = verify(image.path());
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).lines().any(|l| l.starts_with("note:") && l.contains(&format!("offset {}", ends[3]))));

    // A byte flipped inside the third record, good records after it: damage, at that record.
    let mut bytes = good.clone();
    bytes[usize::try_from(ends[1]).unwrap() + 20] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let output = verify(image.path());
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let name = segment.file_name().unwrap().to_str().unwrap().to_owned();
    let text = stdout(&output);
    let expected = format!("offset {}", ends[1]);
    assert!(text.lines().any(|l| l.starts_with("damaged:") && l.contains(&name) && l.contains(&expected)), "{text}");
    let report: Value =
        serde_json::from_slice(&run(&["inspect", image.path().to_str().unwrap(), "--json"], Some(SECRET)).stdout)
            .unwrap();
    assert_eq!(report["shards"][0]["log_records"].as_u64(), Some(2), "the two records before the damage: {report}");
}

const CANARY: &str = "canary-of-the-user-erase-user-erases-7d21c9";

/// A config file with the secret, and session data unsealed (`storage.encrypt = false`) so the
/// canary would be visible in any file still holding it.
fn unsealed_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!("[session]\nsecret = {SECRET:?}\n\n[storage]\nencrypt = false\nsnapshot_interval = \"1h\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

fn engine_config(dir: &Path) -> draco_session::Config {
    let mut c = config(dir, 2);
    c.storage.encrypt = false;
    c
}

/// User 7 with three sessions holding the canary, user 8 with two: the ids, engine shut down.
async fn users_written(dir: &Path) -> (Vec<draco_session::SessionId>, Vec<draco_session::SessionId>) {
    let engine = SessionEngine::start(engine_config(dir)).unwrap();
    let mut ids = (Vec::new(), Vec::new());
    for (user, n) in [(7, 3), (8, 2)] {
        for i in 0..n {
            let id = engine.create().await.unwrap().id;
            let id = engine.login(&id, user).await.unwrap().id;
            let value = if user == 7 { format!("{CANARY} {i}") } else { format!("user 8 session {i}") };
            engine.insert(&id, "profile", "note", &value).await.unwrap();
            if user == 7 { ids.0.push(id) } else { ids.1.push(id) }
        }
    }
    engine.snapshot().await.unwrap();
    engine.shutdown().await;
    ids
}

#[actix_rt::test]
async fn erase_user_erases_offline_and_refuses_a_directory_an_engine_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let config = unsealed_config(dir.path());
    let (erased, kept) = users_written(&data).await;
    assert!(!holding_canary(&data).is_empty(), "the canary is on disk before the erasure");
    let (data_arg, config_arg) = (data.to_str().unwrap(), config.to_str().unwrap());

    // While an engine holds the directory: refused, nothing changed.
    // (The running engine writes its own log meanwhile: the snapshots and the file names are
    // compared.)
    let engine = SessionEngine::start(engine_config(&data)).unwrap();
    let before = stable(&data);
    let refused = run(&["--config", config_arg, "erase-user", data_arg, "7"], None);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("in use by another"), "{refused:?}");
    assert!(stable(&data) == before, "a refused erase-user writes nothing");
    engine.shutdown().await;

    // Bad input: usage errors, exit 2.
    for bad in ["seven", "0", "-1"] {
        let output = run(&["--config", config_arg, "erase-user", data_arg, bad], None);
        assert_eq!(output.status.code(), Some(2), "{bad}: {output:?}");
    }
    let missing = run(&["erase-user", dir.path().join("nowhere").to_str().unwrap(), "7"], Some(SECRET));
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");

    let output = run(&["--config", config_arg, "erase-user", data_arg, "7"], None);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).contains("erased 3 sessions of user 7"), "{output:?}");
    assert!(holding_canary(&data).is_empty(), "no file holds the canary: {:?}", holding_canary(&data));
    assert!(!data.join("secret.key").exists(), "erase-user creates no key file");

    let engine = SessionEngine::start(engine_config(&data)).unwrap();
    for id in &erased {
        assert!(matches!(engine.info(id).await, Err(draco_session::SessionError::SessionGone)), "{id:?}");
    }
    for (i, id) in kept.iter().enumerate() {
        assert_eq!(engine.info(id).await.unwrap().userid, 8);
        let note: Option<String> = engine.get(id, "profile", "note").await.unwrap();
        assert_eq!(note, Some(format!("user 8 session {i}")));
    }
    engine.shutdown().await;

    // The secret from the environment instead; a directory without a key file and no secret: 2.
    let again = run(&["erase-user", data_arg, "7"], Some(SECRET));
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert!(stdout(&again).contains("erased 0 sessions of user 7"), "{again:?}");
    let no_secret = run(&["erase-user", data_arg, "7"], None);
    assert_eq!(no_secret.status.code(), Some(2), "{no_secret:?}");
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("no secret"), "{no_secret:?}");
    assert!(!data.join("secret.key").exists(), "erase-user creates no key file");
}

/// Every file's name under `dir`, with the bytes of the snapshot files.
fn stable(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = contents(dir);
    for (name, bytes) in &mut files {
        if !name.contains("/snapshots/") {
            bytes.clear();
        }
    }
    files
}

fn holding_canary(dir: &Path) -> Vec<(std::path::PathBuf, String)> {
    use crate::support::canary::{files_holding, forms};
    files_holding(dir, &forms(CANARY.as_bytes()))
}

#[cfg(feature = "redis")]
#[actix_rt::test]
async fn erase_user_on_redis() {
    let server = crate::redis_server::RedisServer::start();
    let url = server.fresh_db_url();
    let mut c = draco_session::Config::default();
    c.session.secret = Some(SECRET.into());
    c.storage.backend = draco_session::config::StorageBackend::Redis;
    c.storage.redis_url.clone_from(&url);
    let engine = SessionEngine::start_async(c.clone()).await.unwrap();
    let mut ids = Vec::new();
    for user in [7, 7, 8] {
        let id = engine.create().await.unwrap().id;
        let id = engine.login(&id, user).await.unwrap().id;
        engine.insert(&id, "profile", "note", &format!("user {user}")).await.unwrap();
        ids.push(id);
    }
    engine.shutdown().await;

    let without = run(&["erase-user", &url, "7"], None);
    assert_eq!(without.status.code(), Some(2), "no secret: {without:?}");
    let output = run(&["erase-user", &url, "7"], Some(SECRET));
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).contains("erased 2 sessions of user 7"), "{output:?}");

    let engine = SessionEngine::start_async(c).await.unwrap();
    for id in &ids[..2] {
        assert!(matches!(engine.info(id).await, Err(draco_session::SessionError::SessionGone)), "{id:?}");
    }
    assert_eq!(engine.info(&ids[2]).await.unwrap().userid, 8);
    let note: Option<String> = engine.get(&ids[2], "profile", "note").await.unwrap();
    assert_eq!(note.as_deref(), Some("user 8"));
    engine.shutdown().await;
}
