//! Durable sessions: each worker snapshots its shard with bincode into
//! `<storage.dir>/snapshots/`, through one writer thread, and start-up loads them back.
//!
//! - [`format`]: the file format (header with magic, version, count, xxh3; bincode body).
//! - [`files`]: file names, and the file-system steps behind a trait for fault injection.
//! - [`writer`]: the writer thread (temp file, fsync, rename, directory fsync, two generations).
//! - [`loader`]: start-up recovery (fallback to the previous generation, re-hash, expiry).

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
use crate::state::Lifetimes;
use files::{Fs, SnapshotIo};
pub(crate) use format::Record;
pub(crate) use loader::Recovered;
pub(crate) use writer::{Job, LoadDone, WriteDone, Written};

/// The engine's link to its snapshot writer thread.
#[derive(Debug)]
pub(crate) struct Snapshots {
    jobs: Sender<Job>,
}

impl Snapshots {
    /// Queues a write; false when the writer thread is gone (then `done` is never called).
    pub fn write(&self, shard: usize, entries: u64, log_from: u64, chunks: Vec<Vec<u8>>, done: WriteDone) -> bool {
        self.jobs.send(Job::Write { shard, entries, log_from, chunks, done }).is_ok()
    }

    /// Queues a reload of one shard; false when the writer thread is gone.
    pub fn load(&self, shard: usize, done: LoadDone) -> bool {
        self.jobs.send(Job::Load { shard, done }).is_ok()
    }

    /// Lets the writer thread end once the jobs queued so far are done.
    pub fn stop(&self) {
        let _ = self.jobs.send(Job::Stop);
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
) -> Result<(Snapshots, Vec<Recovered>), StartError> {
    let started = Instant::now();
    let dir = data_dir.join(files::SUBDIR);
    let log_dir = crate::wal::dir_of(data_dir);
    files::private_dir(data_dir).and_then(|()| files::private_dir(&dir)).map_err(|e| {
        storage(&dir, format!("cannot create the snapshot directory: {e}; fix its permissions or change storage.dir"))
    })?;
    // Find out now, not at the first snapshot 30 seconds in, that the directory is unusable.
    let probe = dir.join(".write-probe");
    Fs.write_synced(&probe, &[b"draco-session"])
        .and_then(|()| Fs.remove(&probe))
        .and_then(|()| files::sync_dir(&dir))
        .and_then(|()| files::sync_dir(data_dir))
        .map_err(|e| {
            storage(
                &dir,
                format!("the snapshot directory is not writable: {e}; fix its permissions or change storage.dir"),
            )
        })?;

    let loaded = loader::load_all(&dir, &log_dir, shards, clock.now_ms(), &lifetimes)?;
    let mut writer = writer::Writer::new(
        dir.clone(),
        log_dir,
        shards,
        loaded.next_generation,
        loaded.generations.clone(),
        Fs,
        clock.clone(),
        lifetimes,
    );
    let sessions: usize = loaded.shards.iter().map(Vec::len).sum();
    let rewritten = !loaded.stale.is_empty() || !loaded.stale_logs.is_empty();
    if rewritten {
        rewrite_layout(&mut writer, &loaded)?;
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
    std::thread::Builder::new()
        .name("draco-snapshot-writer".into())
        .spawn(move || writer.run(queue))
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
    Ok((Snapshots { jobs }, recovered))
}

/// The shard count changed: writes the current layout in full, then deletes the files of the
/// old one, so they can never bring back sessions that later end.
fn rewrite_layout(writer: &mut writer::Writer<Fs>, loaded: &loader::Loaded) -> Result<(), StartError> {
    let (shards, stale) = (&loaded.shards, &loaded.stale);
    let dir = writer.dir().to_owned();
    for (shard, records) in shards.iter().enumerate() {
        let mut chunk = Vec::new();
        for (id, state) in records {
            format::encode_record(&mut chunk, id, state).map_err(|e| storage(&dir, format!("cannot encode: {e}")))?;
        }
        writer
            .write(shard, records.len() as u64, loaded.next_lsn[shard], &[chunk])
            .map_err(|e| storage(&dir, format!("cannot write snapshot of shard {shard}: {e}")))?;
    }
    for name in stale {
        let path = name.path(&dir);
        std::fs::remove_file(&path)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|e| storage(&path, format!("cannot remove a snapshot of the old shard layout: {e}")))?;
    }
    files::sync_dir(&dir).map_err(|e| storage(&dir, format!("cannot sync: {e}")))?;
    let log_dir = crate::wal::dir_of(dir.parent().unwrap_or(&dir));
    for name in &loaded.stale_logs {
        let path = name.path(&log_dir);
        std::fs::remove_file(&path)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|e| storage(&path, format!("cannot remove a log segment of the old shard layout: {e}")))?;
    }
    let old: std::collections::BTreeSet<u32> =
        stale.iter().map(|n| n.shards).chain(loaded.stale_logs.iter().map(|n| n.shards)).collect();
    log::info!(
        "snapshots: shard count changed from {old:?} to {}; sessions re-hashed, rewritten, old files removed",
        shards.len()
    );
    Ok(())
}
