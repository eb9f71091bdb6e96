//! Durable sessions: each worker snapshots its shard with bincode into
//! `<storage.dir>/snapshots/`, through one writer thread, and start-up loads them back.
//!
//! - [`mod@format`]: the file format (header with magic, version, count, xxh3; a body of
//!   records whose bytes are [`crate::wire`]'s).
//! - [`files`]: file names, and the file-system steps behind a trait for fault injection.
//! - [`writer`]: the writer thread (temp file, fsync, rename, directory fsync, two generations).
//! - [`loader`]: start-up recovery (fallback to the previous generation, re-hash, expiry).
//! - [`erase`]: erasing a user — the intent file, and finishing an interrupted erasure at start.

pub(crate) mod erase;
pub(crate) mod files;
pub(crate) mod format;
pub(crate) mod loader;
pub(crate) mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::clock::Clock;
use crate::error::StartError;
use crate::fsutil;
use crate::outage::Outage;
use crate::seal::Sealer;
use crate::state::Lifetimes;
use files::{Fs, SnapshotIo};
pub(crate) use loader::Recovered;
pub(crate) use writer::{Job, LoadDone, WriteDone, Written};

/// The engine's link to its snapshot writer thread.
#[derive(Debug)]
pub(crate) struct Snapshots {
    jobs: Sender<Job>,
    /// The exclusive lock on `<storage.dir>/lock` ([`lock_dir`]), held until the engine stops.
    lock: std::sync::Mutex<Option<std::fs::File>>,
}

impl Snapshots {
    /// Queues a write; false when the writer thread is gone (then `done` is never called).
    pub fn write(&self, shard: usize, entries: u64, log_from: u64, body: format::Body, done: WriteDone) -> bool {
        self.jobs.send(Job::Write { shard, entries, log_from, body, done }).is_ok()
    }

    /// Queues the write of an erasure's snapshot ([`writer::Writer::erase`]); false when the
    /// writer thread is gone.
    pub fn erase(&self, shard: usize, entries: u64, log_from: u64, body: format::Body, done: WriteDone) -> bool {
        self.jobs.send(Job::Erase { shard, entries, log_from, body, done }).is_ok()
    }

    /// Queues a reload of one shard; false when the writer thread is gone.
    pub fn load(&self, shard: usize, done: LoadDone) -> bool {
        self.jobs.send(Job::Load { shard, done }).is_ok()
    }

    /// Lets the writer thread end once the jobs queued so far are done.
    pub fn stop(&self) {
        let _ = self.jobs.send(Job::Stop);
    }

    /// Lets another engine (or a writing tool) open the data directory: at shutdown, once every
    /// final write is durable.
    pub fn release_lock(&self) {
        drop(self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }
}

/// Name of the lock file inside `storage.dir`.
pub(crate) const LOCK_FILE: &str = "lock";
/// The mark of a `draco-session migrate` into `<storage.dir>` that has not finished: the engine
/// does not start on a directory that has it.
pub(crate) const MIGRATING: &str = "migrating";

/// Takes the exclusive lock on `<data_dir>/lock`, so no second engine (nor a tool that writes)
/// opens a directory this engine writes; the lock ends with the file (or the process).
///
/// # Errors
/// [`StartError::Storage`] when another engine holds it, or the file cannot be opened.
pub(crate) fn lock_dir(data_dir: &Path) -> Result<std::fs::File, StartError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| storage(&path, format!("cannot open the data directory's lock file: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(storage(
            data_dir,
            format!(
                "{} is in use by another draco-session engine (lock {}); stop it or use another storage.dir",
                data_dir.display(),
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(storage(&path, format!("cannot lock the data directory's lock file: {e}")))
        }
    }
}

fn storage(path: &Path, message: String) -> StartError {
    StartError::Storage { path: path.to_owned(), message }
}

/// Opens `<data_dir>/snapshots`, loads every session in it for `shards` shards, replays the
/// write-ahead log (`<data_dir>/log`) over them, and starts the writer thread. Answers the live
/// sessions by shard, and where each shard's log goes on.
///
/// # Errors
/// [`StartError::Storage`] when the directory cannot be created or written, a snapshot cannot
/// be read for a reason other than damage, or a snapshot is of a newer format.
pub(crate) fn open(
    data_dir: &Path,
    shards: usize,
    clock: Arc<dyn Clock>,
    lifetimes: Lifetimes,
    sealer: Arc<Sealer>,
    outage: Arc<Outage>,
) -> Result<(Snapshots, Vec<Recovered>), StartError> {
    let started = Instant::now();
    let dir = data_dir.join(files::SUBDIR);
    let log_dir = crate::wal::dir_of(data_dir);
    fsutil::private_dir(data_dir).and_then(|()| fsutil::private_dir(&dir)).map_err(|e| {
        storage(&dir, format!("cannot create the snapshot directory: {e}; fix its permissions or change storage.dir"))
    })?;
    let lock = lock_dir(data_dir)?;
    if data_dir.join(MIGRATING).exists() {
        return Err(storage(
            data_dir,
            format!(
                "{} holds an unfinished `draco-session migrate` (its mark {MIGRATING:?}): run the migration again, \
                 or delete the mark to start with what it wrote",
                data_dir.display()
            ),
        ));
    }
    // Find out now, not at the first snapshot 30 seconds in, that the directory is unusable.
    let probe = dir.join(".write-probe");
    // A full disk is no reason to stay down: its sessions are served, and the writes resume
    // once space returns, as when it fills up at run time.
    match Fs
        .write_synced(&probe, &[b"draco-session"])
        .and_then(|()| Fs.remove(&probe))
        .and_then(|()| fsutil::sync_dir(&dir))
        .and_then(|()| fsutil::sync_dir(data_dir))
    {
        Ok(()) => {}
        Err(e) if fsutil::out_of_space(&e) => {
            let _ = std::fs::remove_file(&probe);
            let _ = outage.failed(format_args!(
                "no space left at start-up: {} cannot be written ({e}); starting anyway with the sessions on disk",
                dir.display()
            ));
        }
        Err(e) => {
            return Err(storage(
                &dir,
                format!("the snapshot directory is not writable: {e}; fix its permissions or change storage.dir"),
            ));
        }
    }

    let erasing = data_dir.join(erase::SUBDIR);
    let intents = erase::pending(data_dir)
        .map_err(|e| storage(&erasing, format!("cannot read the erasure intent directory: {e}")))?;
    let mut loaded = loader::load_all(&dir, &log_dir, shards, clock.now_ms(), &lifetimes, &sealer)?;
    if !intents.is_empty() {
        erase::drop_users(&mut loaded, &intents);
    }
    let mut writer = writer::Writer::new(
        dir.clone(),
        log_dir,
        shards,
        loaded.next_generation,
        loaded.generations.clone(),
        Fs,
        clock.clone(),
        lifetimes,
        sealer,
    );
    let sessions: usize = loaded.shards.iter().map(Vec::len).sum();
    let relayout = !loaded.stale.is_empty() || !loaded.stale_logs.is_empty() || loaded.legacy || loaded.unsealed;
    if relayout {
        rewrite_layout(&mut writer, &loaded)?;
    }
    let rewritten = relayout || !intents.is_empty();
    if !intents.is_empty() {
        erase::finish(&mut writer, &loaded, intents)?;
    }
    log::info!(
        "snapshots: loaded {sessions} sessions from {} files and {} log records in {} ms ({} expired and dropped, \
         {} corrupt set aside) from {}",
        loaded.files,
        loaded.log_records,
        started.elapsed().as_millis(),
        loaded.expired,
        loaded.corrupt,
        dir.display(),
    );

    let (jobs, queue) = crossbeam_channel::unbounded();
    let metrics = crate::telemetry::Io::snapshot();
    std::thread::Builder::new()
        .name("draco-snapshot-writer".into())
        .spawn(move || writer.run(queue, metrics, &outage))
        .map_err(|e| storage(&dir, format!("cannot start the snapshot writer thread: {e}")))?;
    let recovered = loaded
        .shards
        .into_iter()
        .zip(loaded.next_lsn)
        .zip(loaded.replayed)
        // After a rewrite the snapshots hold the replayed records already.
        .map(|((records, next_lsn), replayed)| Recovered {
            records,
            next_lsn,
            replayed: if rewritten { 0 } else { replayed },
        })
        .collect();
    Ok((Snapshots { jobs, lock: std::sync::Mutex::new(Some(lock)) }, recovered))
}

/// The shard count changed, or plain files must become sealed: writes the current layout in
/// full, then deletes the files of the old one, so they can never bring back sessions that
/// later end. Plain files of the current layout go too: each shard is written twice (both
/// generations kept are sealed) and its other files and log segments, all before the
/// snapshot's position, are removed (no shard appends to them yet), as an erasure does.
fn rewrite_layout(writer: &mut writer::Writer<Fs>, loaded: &loader::Loaded) -> Result<(), StartError> {
    let (shards, stale) = (&loaded.shards, &loaded.stale);
    let dir = writer.dir().to_owned();
    for (shard, records) in shards.iter().enumerate() {
        let mut chunk = Vec::new();
        for (id, state) in records {
            format::encode_record(&mut chunk, id, state).map_err(|e| storage(&dir, format!("cannot encode: {e}")))?;
        }
        let (entries, log_from) = (records.len() as u64, loaded.next_lsn[shard]);
        let written = if loaded.unsealed {
            // As an erasure rewrites a shard: twice, then every other file of the shard and
            // every log segment (all before `log_from`) deleted.
            let body = writer.body(shard, std::slice::from_ref(&chunk));
            writer.erase(shard, entries, log_from, u64::MAX, &body)
        } else {
            writer.write(shard, entries, log_from, std::slice::from_ref(&chunk))
        };
        written.map_err(|e| storage(&dir, format!("cannot write snapshot of shard {shard}: {e}")))?;
    }
    if loaded.unsealed {
        log::info!(
            "snapshots: sessions stored unsealed were rewritten sealed (storage.encrypt); the plain files removed"
        );
    }
    for name in stale {
        let path = name.path(&dir);
        std::fs::remove_file(&path)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|e| storage(&path, format!("cannot remove a snapshot of the old shard layout: {e}")))?;
    }
    fsutil::sync_dir(&dir).map_err(|e| storage(&dir, format!("cannot sync: {e}")))?;
    let log_dir = crate::wal::dir_of(dir.parent().unwrap_or(&dir));
    for name in &loaded.stale_logs {
        let path = name.path(&log_dir);
        std::fs::remove_file(&path)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|e| storage(&path, format!("cannot remove a log segment of the old shard layout: {e}")))?;
    }
    let old: std::collections::BTreeSet<u32> =
        stale.iter().map(|n| n.shards).chain(loaded.stale_logs.iter().map(|n| n.shards)).collect();
    if loaded.legacy {
        log::info!(
            "snapshots: files of an older format (sessions placed by id) rewritten in the current one, \
             sessions placed by locator"
        );
    }
    if old.iter().any(|&n| n as usize != shards.len()) {
        log::info!(
            "snapshots: shard count changed from {old:?} to {}; sessions re-hashed, rewritten, old files removed",
            shards.len()
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "4 shards of 64 sessions")]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::LimitsConfig;
    use crate::id::{Keyring, SessionId, shard_of};
    use crate::state::SessionState;
    use files::{FileName, Kind};

    const SHARDS: usize = 4;

    fn disk() -> Arc<Outage> {
        Arc::new(crate::outage::disk(Path::new("/test"), Arc::new(ManualClock::new(0))))
    }

    fn lifetimes() -> Lifetimes {
        Lifetimes { volatile_ms: 3_600_000, persistent_ms: 3_600_000, absolute_ms: 0 }
    }

    /// Every `.snap` file: its version, shard and locators.
    fn on_disk(dir: &Path) -> Vec<(u32, u32, Vec<crate::id::Locator>)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir.join(files::SUBDIR)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "snap") {
                let (header, records) = format::decode(&std::fs::read(&path).unwrap(), &Sealer::for_tests()).unwrap();
                out.push((header.version, header.shard, records.into_iter().map(|(l, _)| l).collect()));
            }
        }
        out
    }

    /// Snapshots of format 2 placed sessions by their id; format 3 by their locator. Opening a
    /// format 2 directory rewrites it in full, each session in its locator's shard, and removes
    /// the old files: otherwise a shard writing its next snapshot would leave out sessions that
    /// came from its old file but now belong to a shard that has not written yet, and a restart
    /// would lose them.
    #[test]
    fn snapshots_of_the_id_placed_format_are_rewritten_by_locator() {
        let data = tempfile::tempdir().unwrap();
        let ring = Keyring::from_secrets(b"snapshot upgrade test secret, long enough", &[]).unwrap();
        let ids: Vec<SessionId> = (0..64).map(|_| ring.generate()).collect();
        let mut state = SessionState::new(1_000);
        state.set("s", "k", b"1", &LimitsConfig::default()).unwrap();
        let snapshots = data.path().join(files::SUBDIR);
        fsutil::private_dir(data.path()).unwrap();
        fsutil::private_dir(&snapshots).unwrap();
        let mut moved = 0;
        for shard in 0..SHARDS {
            // Where the older version put each session: by the id's random part.
            let mine: Vec<&SessionId> = ids.iter().filter(|id| shard_of(id.random(), SHARDS) == shard).collect();
            moved += mine.iter().filter(|id| id.shard(SHARDS) != shard).count();
            let mut body = Vec::new();
            for id in &mine {
                bincode::serde::encode_into_std_write((id, &state), &mut body, bincode::config::standard()).unwrap();
            }
            let chunks = [body];
            let mut header =
                format::header_for(shard as u32, SHARDS as u32, 1, 1_000, mine.len() as u64, 0, 0, &chunks);
            header.version = 2;
            let mut file = header.to_bytes().to_vec();
            file.extend_from_slice(&chunks[0]);
            let name = FileName { shards: SHARDS as u32, shard: shard as u32, generation: 1, kind: Kind::Snap };
            std::fs::write(name.path(&snapshots), file).unwrap();
        }
        assert!(moved > 16, "most sessions change shard: {moved}");

        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(2_000));
        let (_, recovered) =
            open(data.path(), SHARDS, clock.clone(), lifetimes(), Arc::new(Sealer::for_tests()), disk()).unwrap();
        let mut seen = 0;
        for (shard, r) in recovered.iter().enumerate() {
            assert!(r.records.iter().all(|(l, _)| shard_of(l, SHARDS) == shard));
            seen += r.records.len();
        }
        assert_eq!(seen, ids.len());
        let files = on_disk(data.path());
        // Plain files are rewritten sealed twice (both generations kept are sealed); the old
        // generation is gone.
        assert_eq!(files.len(), 2 * SHARDS, "{files:?}");
        let mut all: Vec<_> = files.iter().flat_map(|(_, _, l)| l.clone()).collect();
        for (version, shard, locators) in &files {
            assert_eq!(*version, format::VERSION);
            assert!(locators.iter().all(|l| shard_of(l, SHARDS) == *shard as usize));
        }
        all.sort_unstable();
        all.dedup();
        let mut expected: Vec<_> = ids.iter().map(|id| *id.locator()).collect();
        expected.sort_unstable();
        assert_eq!(all, expected);

        // The next start finds nothing to rewrite.
        let (_, again) = open(data.path(), SHARDS, clock, lifetimes(), Arc::new(Sealer::for_tests()), disk()).unwrap();
        assert_eq!(again.iter().map(|r| r.records.len()).sum::<usize>(), ids.len());
        assert_eq!(on_disk(data.path()).len(), 2 * SHARDS);
    }
}
