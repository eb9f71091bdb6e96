//! `erase_user` on disk: once it answers, no file under the data directory — snapshot
//! generations, log segments, anything else — holds the erased user's data (a canary string,
//! looked for as text, hex and base64), while another user's data is still there and reads
//! back after a restart; and an erasure a crash interrupted is finished at the next start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use draco_session::{ManualClock, SessionEngine, SessionError, SessionId, config::LogMode};

use crate::support::canary::{canary_sessions, files_holding, forms};
use crate::support::*;

const EVERY: LogMode = LogMode::Every(Duration::from_secs(1));
const ERASED: u64 = 101;
const KEPT: u64 = 102;
const CANARY: &str = "canary-of-the-erased-user-3f9a71";
const OTHER: &str = "canary-of-the-kept-user-c40d2e";

/// The files under `dir` holding `text` as text, hex or base64.
fn holding(dir: &Path, text: &str) -> Vec<PathBuf> {
    files_holding(dir, &forms(text.as_bytes())).into_iter().map(|(path, _)| path).collect()
}

/// Session data stored unsealed (`storage.encrypt = false`): sealed, no canary is readable on
/// disk, erased or not; unsealed, these tests see every copy the erasure must remove (the
/// erasure rewrites files the same way either way).
fn start(dir: &Path, shards: usize, clock: &ManualClock) -> SessionEngine {
    start_logging(dir, shards, clock, config(dir, shards).storage.log)
}

fn start_logging(dir: &Path, shards: usize, clock: &ManualClock, log: LogMode) -> SessionEngine {
    let mut c = config(dir, shards);
    c.storage.log = log;
    c.storage.encrypt = false;
    SessionEngine::builder(c).clock(clock.clone()).start().expect("engine starts")
}

/// The erased user's and the kept user's sessions, with the canaries in both snapshot
/// generations and in the log: written, snapshotted, changed, snapshotted again, changed once
/// more (in the log only). Answers the two users' sessions and the others' expectations.
async fn history(e: &SessionEngine) -> (Vec<SessionId>, Vec<SessionId>, Vec<Expected>) {
    let others = populate(e, 12).await;
    let mut erased = canary_sessions(e, ERASED, 3, CANARY).await;
    let kept = canary_sessions(e, KEPT, 3, OTHER).await;
    e.snapshot().await.unwrap();
    erased.extend(canary_sessions(e, ERASED, 2, CANARY).await);
    e.insert(&erased[0], "profile", "again", &format!("{CANARY} in the second generation")).await.unwrap();
    e.snapshot().await.unwrap();
    erased.extend(canary_sessions(e, ERASED, 2, CANARY).await);
    e.insert(&erased[1], "profile", "late", &format!("{CANARY} in the log only")).await.unwrap();
    (erased, kept, others)
}

async fn assert_kept(e: &SessionEngine, kept: &[SessionId], others: &[Expected]) {
    for id in kept {
        assert_eq!(e.info(id).await.unwrap().userid, KEPT);
        assert_eq!(e.get::<Vec<String>>(id, "cart", "items").await.unwrap(), Some(vec![OTHER.to_owned()]));
    }
    check(e, others).await;
}

async fn assert_erased(e: &SessionEngine, erased: &[SessionId]) {
    for id in erased {
        assert_eq!(e.info(id).await, Err(SessionError::SessionGone), "{id}");
    }
    assert!(e.sessions_of(ERASED).await.unwrap().is_empty());
}

/// With the log on (`"1s"`, `"always"`) or off, `erase_user` answers once no file holds the
/// user's data: the canaries from both snapshot generations and the log are gone from every
/// file under the data directory, the other user's canary is there, and a restart finds the
/// erased sessions gone and everyone else's intact.
#[actix_rt::test]
async fn once_erase_user_answers_no_file_holds_the_users_data() {
    for log in [EVERY, LogMode::Always, LogMode::Off] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let a = start_logging(dir.path(), 4, &clock, log);
        let (erased, kept, others) = history(&a).await;
        assert!(holding(dir.path(), CANARY).len() >= 2, "{log:?}: the canary is on disk before: the check sees it");

        assert_eq!(a.erase_user(ERASED).await.unwrap(), erased.len(), "{log:?}");
        assert_eq!(holding(dir.path(), CANARY), Vec::<PathBuf>::new(), "{log:?}: files still holding the canary");
        assert!(!holding(dir.path(), OTHER).is_empty(), "{log:?}: the kept user's data is on disk");
        assert_erased(&a, &erased).await;
        assert_kept(&a, &kept, &others).await;
        // Every shard keeps two generations to fall back on, both clean.
        assert_eq!(snap_files(dir.path()).len(), 2 * 4, "{log:?}: {:?}", files(dir.path()));
        assert_eq!(a.erase_user(ERASED).await.unwrap(), 0);
        assert_eq!(a.erase_user(999).await.unwrap(), 0, "an unknown user");

        // Writes after the erasure go on being logged and kept.
        a.insert(&kept[0], "cart", "after", &"written after the erasure").await.unwrap();
        a.shutdown().await;
        let b = start_logging(dir.path(), 4, &clock, log);
        assert_erased(&b, &erased).await;
        assert_kept(&b, &kept, &others).await;
        assert_eq!(
            b.get::<String>(&kept[0], "cart", "after").await.unwrap().as_deref(),
            Some("written after the erasure")
        );
        b.shutdown().await;
        assert_eq!(holding(dir.path(), CANARY), Vec::<PathBuf>::new(), "{log:?}");
        assert!(!dir.path().join("erasing").read_dir().unwrap().any(|_| true), "no intent file left");
    }
}

/// A crash after the intent was recorded and before the files were rewritten: the data
/// directory as it was then (a copy taken while the engine ran, the intent file added). The
/// next start finishes the erasure before it serves: the user's sessions are gone, no file
/// holds the canary, the intent is removed, and everyone else's sessions are intact.
#[actix_rt::test]
async fn an_erasure_interrupted_by_a_crash_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start_logging(dir.path(), 4, &clock, EVERY);
    let (erased, kept, others) = history(&a).await;
    // Half the user's sessions ended before the crash (their ends are in the log), half not.
    for id in &erased[..3] {
        assert!(a.destroy(id).await.unwrap());
    }
    let image = crash_image(dir.path());
    a.shutdown().await;
    let intents = image.path().join("erasing");
    std::fs::create_dir_all(&intents).unwrap();
    std::fs::write(intents.join(format!("user-{ERASED}.1.erase")), b"erasure in progress\n").unwrap();
    std::fs::write(intents.join(format!("user-{ERASED}.2.erase.tmp")), b"half").unwrap();
    assert!(!holding(image.path(), CANARY).is_empty());

    let b = start(image.path(), 4, &clock);
    assert_eq!(holding(image.path(), CANARY), Vec::<PathBuf>::new(), "rewritten before serving");
    assert!(!intents.read_dir().unwrap().any(|_| true), "the intent is removed once done");
    assert_erased(&b, &erased).await;
    assert_kept(&b, &kept, &others).await;
    b.shutdown().await;
    let c = start(image.path(), 4, &clock);
    assert_erased(&c, &erased).await;
    assert_kept(&c, &kept, &others).await;
    c.shutdown().await;
}

/// A snapshot set aside as damaged may hold the user's data and cannot be read to check: an
/// erasure deletes it (and the shard keeps its two clean generations).
#[actix_rt::test]
async fn an_erasure_deletes_damaged_files_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let a = start(dir.path(), 1, &clock);
    let (erased, kept, others) = history(&a).await;
    a.shutdown().await;
    // Damage the newest generation: the next start sets it aside and loads the previous one.
    let newest = snapshot_dir(dir.path()).join(snap_files(dir.path()).last().unwrap());
    let mut bytes = std::fs::read(&newest).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&newest, bytes).unwrap();
    let b = start(dir.path(), 1, &clock);
    assert!(files(dir.path()).iter().any(|n| n.ends_with(".corrupt")), "{:?}", files(dir.path()));
    b.erase_user(ERASED).await.unwrap();
    assert_eq!(holding(dir.path(), CANARY), Vec::<PathBuf>::new());
    assert!(!files(dir.path()).iter().any(|n| n.ends_with(".corrupt")));
    assert_erased(&b, &erased).await;
    for id in &kept {
        assert_eq!(b.info(id).await.unwrap().userid, KEPT);
    }
    check(&b, &others).await;
    b.shutdown().await;
}

#[test]
fn the_forms_looked_for_include_hex_and_base64() {
    let text = "abcdef";
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("xx{text}yy"));
    let forms = forms(text.as_bytes());
    assert!(forms.iter().any(|f| b64.as_bytes().windows(f.len()).any(|w| w == f.as_slice())), "{b64}");
    assert!(forms.contains(&b"616263646566".to_vec()));
}
