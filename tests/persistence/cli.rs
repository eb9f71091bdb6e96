//! The `draco-session` command (cargo feature `cli`) run as a real process on data directories
//! an engine wrote: `inspect --json` counts exactly what the engine holds, and writes nothing;
//! `verify` exits 0 on good files, 1 naming a damaged snapshot or log segment (and offset), 2
//! when it has no secret. (The engine's lock on its directory is tested in restart.rs.)

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
