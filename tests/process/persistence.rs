//! Durable sessions across real process deaths of the remember-me demo: SIGTERM (graceful, final
//! snapshot) and `kill -9` (only the last periodic snapshot survives).
//!
//! Needs the demo binary, which a plain `cargo test` builds; with a test filter, run
//! `cargo build --example remember_me` first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::demo;

use demo::Demo;

fn write_config(dir: &Path, snapshot_interval: &str) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"process test secret, at least 32 bytes long\"\nshards = 2\n\
             [cookie]\nsecure = false\n[storage]\ndir = {:?}\nsnapshot_interval = {snapshot_interval:?}\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    config
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

#[test]
fn after_kill_9_the_last_periodic_snapshot_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "200ms");
    let mut demo = Demo::start(&config);
    let cookie = log_in_and_visit(&demo, 2);
    // Several snapshot intervals pass with no request: the last snapshot holds visits = 2.
    std::thread::sleep(Duration::from_millis(1500));
    demo.child.kill().unwrap(); // SIGKILL: no final snapshot
    demo.wait_for_exit(Duration::from_secs(10));
    drop(demo);
    assert!(
        std::fs::read_dir(dir.path().join("data/snapshots")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".snap")),
        "a periodic snapshot was written before the kill"
    );

    let demo = Demo::start(&config);
    let (status, _, after) = demo.request("GET", "/api/session", Some(&cookie), None);
    assert_eq!(status, 200);
    assert_eq!(after["userid"], 1);
    assert_eq!(after["persistent"], true);
    assert_eq!(after["visits"], 3);
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
