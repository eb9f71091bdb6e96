//! Erasing a user on the memory backend (`SessionEngine::erase_user`): the intent file that
//! makes an erasure survive a crash, and what start-up does when it finds one.
//!
//! # The design: rewrite, not crypto-shredding
//! An erasure ends the user's sessions, then rewrites the files that held them: every shard
//! writes a fresh snapshot without them, twice (two clean generations, so a shard still has a
//! fallback if its newest file is damaged), and the writer thread then deletes every other
//! file of the shard — older generations, unfinished writes, files set aside as damaged — and
//! every log segment before the fresh snapshot's log position, damaged segments too. The run
//! that writes that snapshot began a new log segment after the sessions ended, so the records
//! kept (other sessions' changes since) hold nothing of the erased ones.
//!
//! Crypto-shredding (a key per user, destroyed on erasure) would make erasure cheap but every
//! read and write of a logged-in session would pay for a cipher and a key lookup, sessions
//! change user at login and logout (re-encryption then), and the keys themselves need a
//! durable, erasable home. An erasure is rare; a rewrite of each shard (what a snapshot
//! costs, twice) is paid only then.
//!
//! # The intent file
//! Before anything is ended, `<storage.dir>/erasing/user-<id>.<n>.erase` is written durably
//! (temp file, fsync, rename, directory fsync); it is removed once every shard's rewrite is
//! durable. Start-up that finds one finishes the erasure before the engine serves: the user's
//! sessions are dropped as the snapshots and log are loaded, every shard is written twice
//! without them, every other snapshot file and every log segment of the layout is deleted,
//! and only then are the intent files removed. A temp file left by a crash while the intent
//! was being written is removed: that erasure had not begun.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::files::{Fs, SnapshotIo};
use super::format;
use super::loader::Loaded;
use super::writer::Writer;
use crate::error::StartError;
use crate::fsutil;

/// Name of the intent directory inside `storage.dir`.
pub(crate) const SUBDIR: &str = "erasing";

/// Numbers the intents of this process, so two erasures of one user never share a file.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// An erasure recorded on disk, in progress until [`done`](Self::done).
#[derive(Debug)]
pub(crate) struct Intent {
    path: PathBuf,
    pub userid: u64,
}

/// The user an intent file's name names: `user-<id>.<n>.erase`.
fn parse(name: &str) -> Option<u64> {
    let rest = name.strip_suffix(".erase")?.strip_prefix("user-")?;
    let (id, n) = rest.split_once('.')?;
    fsutil::number::<u64>(n)?;
    fsutil::number(id)
}

impl Intent {
    /// Records, durably, that `userid` is being erased from the data directory `data_dir`.
    ///
    /// # Errors
    /// The directory or file cannot be created, written or synced.
    pub fn record(data_dir: &Path, userid: u64) -> io::Result<Self> {
        let dir = data_dir.join(SUBDIR);
        fsutil::private_dir(&dir)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("user-{userid}.{}{n:06}.erase", std::process::id());
        let (path, tmp) = (dir.join(&name), dir.join(format!("{name}.tmp")));
        let text = format!("draco-session: erasure of user {userid} in progress\n");
        let mut fs = Fs;
        fs.write_synced(&tmp, &[text.as_bytes()])?;
        fs.rename(&tmp, &path)?;
        fsutil::sync_dir(&dir)?;
        fsutil::sync_dir(data_dir)?;
        Ok(Self { path, userid })
    }

    /// The erasure is durable: the intent goes.
    ///
    /// # Errors
    /// The file cannot be removed, or the removal made durable.
    pub fn done(self) -> io::Result<()> {
        remove(&self.path)?;
        self.path.parent().map_or(Ok(()), fsutil::sync_dir)
    }
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The erasures a crash left unfinished in `data_dir`; unfinished intent writes are removed.
///
/// # Errors
/// The intent directory exists but cannot be read.
pub(crate) fn pending(data_dir: &Path) -> io::Result<Vec<Intent>> {
    let dir = data_dir.join(SUBDIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.ends_with(".erase.tmp") {
            remove(&path)?;
        } else if let Some(userid) = parse(name) {
            out.push(Intent { path, userid });
        } else {
            log::warn!("{}: not an erasure intent file; left alone", path.display());
        }
    }
    Ok(out)
}

fn storage(path: &Path, message: String) -> StartError {
    StartError::Storage { path: path.to_owned(), message }
}

/// Start-up found unfinished erasures: drops the users' sessions from what was loaded.
pub(crate) fn drop_users(loaded: &mut Loaded, intents: &[Intent]) {
    let users: HashSet<u64> = intents.iter().map(|i| i.userid).collect();
    let mut dropped = 0;
    for records in &mut loaded.shards {
        let before = records.len();
        records.retain(|(_, state)| !users.contains(&state.userid));
        dropped += before - records.len();
    }
    log::warn!(
        "an erasure of {} user(s) was interrupted; finishing it before serving: {dropped} sessions dropped",
        users.len()
    );
}

/// Finishes the erasures start-up found: every shard written twice without the users' sessions,
/// every other snapshot file and every log segment of the shard deleted, then the intents
/// removed.
pub(crate) fn finish<I: SnapshotIo>(
    writer: &mut Writer<I>,
    loaded: &Loaded,
    intents: Vec<Intent>,
) -> Result<(), StartError> {
    let dir = writer.dir().to_owned();
    for (shard, records) in loaded.shards.iter().enumerate() {
        let mut chunk = Vec::new();
        for (id, state) in records {
            format::encode_record(&mut chunk, id, state).map_err(|e| storage(&dir, format!("cannot encode: {e}")))?;
        }
        let body = writer.body(shard, &[chunk]);
        writer
            .erase(shard, records.len() as u64, loaded.next_lsn[shard], u64::MAX, &body)
            .map_err(|e| storage(&dir, format!("cannot finish an interrupted erasure in shard {shard}: {e}")))?;
    }
    for intent in intents {
        let path = intent.path.clone();
        intent.done().map_err(|e| storage(&path, format!("cannot remove the finished erasure's intent file: {e}")))?;
    }
    log::info!("interrupted erasure finished: every shard rewritten, older snapshots and log segments deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_names_round_trip_and_strangers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Intent::record(dir.path(), 42).unwrap();
        let b = Intent::record(dir.path(), 42).unwrap();
        assert_ne!(a.path, b.path, "two erasures of one user have files of their own");
        std::fs::write(dir.path().join(SUBDIR).join("user-7.1.erase.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join(SUBDIR).join("notes.txt"), b"x").unwrap();
        let mut found: Vec<u64> = pending(dir.path()).unwrap().iter().map(|i| i.userid).collect();
        found.sort_unstable();
        assert_eq!(found, [42, 42]);
        assert!(!dir.path().join(SUBDIR).join("user-7.1.erase.tmp").exists(), "an unfinished intent goes");
        a.done().unwrap();
        b.done().unwrap();
        assert!(pending(dir.path()).unwrap().is_empty());
        for bad in ["user-.1.erase", "user-x.1.erase", "user-1.erase", "user-1.a.erase", "user-+1.1.erase"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse("user-18446744073709551615.77.erase"), Some(u64::MAX));
    }
}
