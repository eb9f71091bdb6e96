//! What the persistence tests (`tests/persistence/`) share: an engine on a data directory with
//! snapshots taken only when a test asks (or at shutdown), the snapshot directory's files, and
//! a mix of sessions written by `populate` and checked, value by value, by `check`.
//!
//! Declared once, by `tests/persistence/main.rs`, as `#[path = "../support/persistence.rs"] mod
//! support;`; each module then has `use crate::support::*;`.

#[path = "routing.rs"]
pub mod routing;

#[path = "canary.rs"]
pub mod canary;

#[path = "tmpfs.rs"]
pub mod tmpfs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use draco_session::{Config, ManualClock, SessionEngine, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const SECRET: &str = "persistence test secret, at least 32 bytes";
pub const T0: u64 = 1_700_000_000_000;
pub const HOUR: Duration = Duration::from_secs(3600);

pub fn config(dir: &Path, shards: usize) -> Config {
    let mut c = Config::default();
    c.session.secret = Some(SECRET.into());
    c.session.shards = shards;
    c.storage.dir = dir.to_owned();
    // Snapshots in these tests come from snapshot() and shutdown(), never from the timer.
    c.storage.snapshot_interval = HOUR;
    // `populate` logs a handful of users into many sessions each: none may end the others.
    c.limits.max_sessions_per_user = 0;
    c
}

pub fn start(dir: &Path, shards: usize, clock: &ManualClock) -> SessionEngine {
    SessionEngine::builder(config(dir, shards)).clock(clock.clone()).start().expect("engine starts")
}

/// As [`start`], with `storage.log` set.
pub fn start_logging(
    dir: &Path,
    shards: usize,
    clock: &ManualClock,
    log: draco_session::config::LogMode,
) -> SessionEngine {
    let mut c = config(dir, shards);
    c.storage.log = log;
    SessionEngine::builder(c).clock(clock.clone()).start().expect("engine starts")
}

pub fn snapshot_dir(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

/// Names in the snapshot directory, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(snapshot_dir(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub fn snap_files(dir: &Path) -> Vec<String> {
    files(dir).into_iter().filter(|n| n.ends_with(".snap")).collect()
}

/// One session's expected content, as the first engine left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    pub id: String,
    pub userid: u64,
    pub persistent: bool,
    pub values: Vec<(String, String, Value)>,
}

pub async fn check(engine: &SessionEngine, expected: &[Expected]) {
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
pub async fn populate(engine: &SessionEngine, n: usize) -> Vec<Expected> {
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

/// What a `kill -9` would leave: a copy of the data directory taken while the engine runs.
/// Every acknowledged change's log record was written (to the kernel) before its answer, so
/// reading the files now sees exactly what a crashed process leaves behind.
pub fn crash_image(dir: &Path) -> tempfile::TempDir {
    let image = tempfile::tempdir().unwrap();
    canary::copy_tree(dir, image.path());
    image
}

pub fn log_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

/// Names in the log directory, sorted.
pub fn log_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(log_dir(dir)) else { return Vec::new() };
    let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}
