//! Durable sessions across real process deaths of the remember-me demo: SIGTERM (graceful, final
//! snapshot) and `kill -9` (only the last periodic snapshot survives).
//!
//! Needs the demo binary, which a plain `cargo test` builds; with a test filter, run
//! `cargo build --example remember_me` first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use draco_session::SessionId;

use crate::{demo, routing};

use demo::Demo;

const SHARDS: usize = 2;

fn write_config(dir: &Path, snapshot_interval: &str) -> PathBuf {
    write_config_with_log(dir, snapshot_interval, "1s") // the default log
}

fn write_config_with_log(dir: &Path, snapshot_interval: &str, log: &str) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"process test secret, at least 32 bytes long\"\nshards = {SHARDS}\n\
             [cookie]\nsecure = false\n[storage]\ndir = {:?}\nsnapshot_interval = {snapshot_interval:?}\n\
             log = {log:?}\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    config
}

/// Generations of shard `shard`'s `.snap` files in `snapshots`.
fn generations(snapshots: &Path, shard: usize) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(snapshots) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            // shard-SSSS-of-NNNN.GGGGGGGGGGGG.snap
            let name = entry.file_name().to_string_lossy().into_owned();
            let rest = name.strip_suffix(".snap")?.strip_prefix("shard-")?;
            let (s, rest) = rest.split_once("-of-")?;
            let (_, generation) = rest.split_once('.')?;
            (s.parse::<usize>().ok()? == shard).then_some(generation.parse().ok()?)
        })
        .collect()
}

/// Waits until a snapshot of `session`'s shard begun after this call is on disk: two new
/// generations of that shard (one begun before this call may still be being written). Only
/// a dirty shard is snapshotted, so a filler session of the same shard is changed meanwhile.
fn wait_for_a_later_snapshot(demo: &Demo, snapshots: &Path, session: &str) {
    let shard = routing::shard_of(&session.parse::<SessionId>().expect("a session id"), SHARDS);
    let filler = loop {
        let (status, set, _) = demo.request("POST", "/api/incr/filler", None, None);
        assert_eq!(status, 200);
        let sid = set.expect("a new session sets its cookie");
        if routing::shard_of(&sid.parse::<SessionId>().expect("a session id"), SHARDS) == shard {
            break sid;
        }
    };
    let before = generations(snapshots, shard).into_iter().max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while generations(snapshots, shard).into_iter().filter(|g| *g > before).count() < 2 {
        assert!(Instant::now() < deadline, "no two snapshots of shard {shard} within 60 s");
        let (status, _, _) = demo.request("POST", "/api/incr/filler", Some(&filler), None);
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Logs alice in with remember-me and visits `visits` times; answers the session cookie.
fn log_in_and_visit(demo: &Demo, visits: u64) -> String {
    let (status, cookie, _) = demo.request(
        "POST",
        "/api/login",
        None,
        Some(r#"{"username":"alice","password":"wonderland","remember":true}"#),
    );
    assert_eq!(status, 200);
    let mut cookie = cookie.expect("login sets the session cookie");
    for n in 1..=visits {
        let (status, set, body) = demo.request("GET", "/api/session", Some(&cookie), None);
        assert_eq!(status, 200);
        assert_eq!(body["visits"], n);
        if let Some(set) = set {
            cookie = set;
        }
    }
    cookie
}

#[test]
fn sigterm_writes_a_final_snapshot_and_a_restart_keeps_every_session() {
    let dir = tempfile::tempdir().unwrap();
    // No periodic snapshot in this test's time: only the final one can save the visits.
    let config = write_config(dir.path(), "1h");
    let mut demo = Demo::start(&config);
    let cookie = log_in_and_visit(&demo, 3);
    let (_, _, before) = demo.request("GET", "/api/session", Some(&cookie), None);
    assert_eq!(before["visits"], 4);

    demo.terminate();
    let status = demo.wait_for_exit(Duration::from_secs(20));
    assert!(status.success(), "the demo exited with {status} on SIGTERM");
    drop(demo);

    let demo = Demo::start(&config);
    let (status, _, after) = demo.request("GET", "/api/session", Some(&cookie), None);
    assert_eq!(status, 200);
    assert_eq!(after["session_id"], before["session_id"]);
    assert_eq!(after["userid"], 1);
    assert_eq!(after["persistent"], true);
    assert_eq!(after["visits"], 5);
}

/// `kill -9` after a periodic snapshot: the restart finds alice's session as that snapshot
/// has it. With `log = "off"`, so that only the snapshot can bring it back.
fn after_kill_9_the_last_periodic_snapshot_is_loaded(log: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with_log(dir.path(), "200ms", log);
    let mut demo = Demo::start(&config);
    let cookie = log_in_and_visit(&demo, 2);
    let (status, _, body) = demo.request("GET", "/api/session", Some(&cookie), None);
    assert_eq!((status, &body["visits"]), (200, &3.into()));
    let session = body["session_id"].as_str().expect("the session's id").to_owned();
    wait_for_a_later_snapshot(&demo, &dir.path().join("data/snapshots"), &session);
    demo.child.kill().unwrap(); // SIGKILL: no final snapshot
    demo.wait_for_exit(Duration::from_secs(10));
    drop(demo);
    if log == "off" {
        let logged = std::fs::read_dir(dir.path().join("data/log")).map_or(0, Iterator::count);
        assert_eq!(logged, 0, "no log files with log = \"off\"");
    }

    let demo = Demo::start(&config);
    let (status, _, after) = demo.request("GET", "/api/session", Some(&cookie), None);
    assert_eq!(status, 200);
    assert_eq!(after["session_id"], session.as_str());
    assert_eq!(after["userid"], 1);
    assert_eq!(after["persistent"], true);
    assert_eq!(after["visits"], 4);
}

#[test]
fn after_kill_9_the_last_periodic_snapshot_is_loaded_without_a_log() {
    after_kill_9_the_last_periodic_snapshot_is_loaded("off");
}

#[test]
fn after_kill_9_the_last_periodic_snapshot_is_loaded_with_the_log() {
    after_kill_9_the_last_periodic_snapshot_is_loaded("1s");
}

/// A damaged snapshot, its shard's only generation: the demo starts without its sessions,
/// keeps the file aside as `.corrupt`, and says so in its log (an ERROR naming the file, what
/// happens next). The `persistence` binary's `damage::only_damaged_generations_start_empty`
/// checks the engine's side in process, where no logger may be installed.
#[test]
fn a_damaged_only_generation_is_set_aside_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with_log(dir.path(), "1h", "off");
    let mut demo = Demo::start(&config);
    let cookie = log_in_and_visit(&demo, 1);
    demo.terminate();
    assert!(demo.wait_for_exit(Duration::from_secs(20)).success());
    drop(demo);
    let snapshots = dir.path().join("data/snapshots");
    let mut damaged = Vec::new();
    for entry in std::fs::read_dir(&snapshots).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snap") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 1;
            std::fs::write(&path, bytes).unwrap();
            damaged.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(!damaged.is_empty(), "the final snapshot wrote no file");

    let demo = Demo::start_logging(&config, "warn");
    let (status, _, body) = demo.request("GET", "/api/session", Some(&cookie), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["userid"].as_u64(), body["visits"].as_u64()), (Some(0), Some(1)), "a new session: {body}");
    assert_ne!(body["session_id"].as_str(), Some(cookie.as_str()), "alice's session was only in a damaged snapshot");
    let log = demo.stderr();
    for name in &damaged {
        let said = log.lines().any(|l| {
            l.contains("ERROR") && l.contains(name.as_str()) && l.contains("is corrupt") && l.contains("renamed aside")
        });
        assert!(said, "no ERROR line says that {name} is corrupt and set aside:\n{log}");
        assert!(snapshots.join(format!("{name}.corrupt")).is_file(), "{name} kept aside");
    }
    assert!(log.contains("this shard's sessions are lost"), "the log says what it means:\n{log}");
}

/// `storage.encrypt` (the default) on the real demo: a canary put through the JSON API is in
/// no file of the data directory — after `kill -9` (the log alone holds it) and after SIGTERM
/// (the final snapshot) — and reads back after each restart.
#[test]
fn session_data_is_sealed_on_disk_across_kill_9_and_sigterm() {
    use crate::canary::{file_count, files_holding, forms};
    const CANARY: &str = "process-canary-0e6b93d1f7";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "1h");
    let mut demo = Demo::start(&config);
    let cookie = log_in_and_visit(&demo, 1);
    let (status, _, _) = demo.request("PUT", "/api/ns/notes/canarykey", Some(&cookie), Some(&format!("{CANARY:?}")));
    assert_eq!(status, 200);
    let read = |demo: &Demo| {
        let (status, _, body) = demo.request("GET", "/api/ns/notes/canarykey", Some(&cookie), None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["value"], CANARY);
    };
    read(&demo);
    let needles = forms(CANARY.as_bytes());
    demo.child.kill().unwrap();
    demo.wait_for_exit(Duration::from_secs(10));
    drop(demo);
    assert!(file_count(&data.join("log")) > 0, "the log holds the change");
    assert_eq!(files_holding(&data, &needles), vec![], "after kill -9");

    let mut demo = Demo::start(&config);
    read(&demo);
    demo.terminate();
    assert!(demo.wait_for_exit(Duration::from_secs(20)).success());
    drop(demo);
    assert!(file_count(&data.join("snapshots")) > 0, "the final snapshot was written");
    assert_eq!(files_holding(&data, &needles), vec![], "after SIGTERM");
    let demo = Demo::start(&config);
    read(&demo);
}
