//! The write-ahead log (`storage.log`): every change a reader could observe is recorded before
//! it is acknowledged, so a crash loses nothing a snapshot has not caught yet.
//!
//! - [`mod@format`]: the record and segment codec (checksummed, versioned).
//! - [`io`]: segment names, and the file-system steps behind traits for fault injection.
//! - [`append`]: a shard's writer — records of an operation, one `write` before its reply.
//! - [`sync`]: the syncer thread — fsync on a schedule, or group commit for `"always"`.
//! - [`replay`]: start-up — the records after a snapshot, applied on top of it.
//!
//! Each shard logs into its own segments, numbered by a per-shard sequence. A snapshot run
//! begins a new segment and records in its header the first sequence number it may lack;
//! start-up loads the newest good snapshot and replays only what follows. Once a snapshot is
//! durable, the segments before the older of the two snapshot generations kept are deleted.

pub(crate) mod append;
pub(crate) mod format;
pub(crate) mod io;
pub(crate) mod replay;
pub(crate) mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::config::{LogMode, StorageConfig};
use crate::error::StartError;
use crate::outage::Outage;
use crate::seal::Sealer;
use io::LogIo;
use sync::{SyncJob, SyncStats, Syncer};

/// What every shard's log shares: where segments go, how they are synced.
pub(crate) struct Wal {
    pub dir: PathBuf,
    pub shards: usize,
    pub mode: LogMode,
    pub io: Arc<dyn LogIo>,
    pub jobs: Sender<SyncJob>,
    /// Bytes a shard's current segment may reach before the shard snapshots early.
    pub budget: u64,
    /// Zeros a segment keeps written past its records (see [`io`]): a quarter of the budget,
    /// at most 4 MiB.
    pub ahead: u64,
    pub stats: Arc<SyncStats>,
    /// Seals records (`storage.encrypt`).
    pub sealer: Arc<Sealer>,
    /// The disk's outages, reported in a few lines (shared with the snapshot writer).
    pub outage: Arc<Outage>,
    /// The syncer thread, joined by [`stop`](Self::stop).
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Wal {
    /// Fsyncs taken so far.
    pub fn fsyncs(&self) -> u64 {
        self.stats.fsyncs.load(Ordering::Relaxed)
    }

    /// Ends the syncer thread once it has fsynced everything written so far, and waits for it
    /// (a last fsync: milliseconds).
    pub fn stop(&self) {
        let _ = self.jobs.send(SyncJob::Stop);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            log::error!("the log syncer thread panicked");
        }
    }
}

/// The log directory of a data directory.
pub(crate) fn dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join(io::SUBDIR)
}

/// Starts the log for `shards` shards (`storage.log` must not be `"off"`): creates the
/// directory and the syncer thread.
///
/// # Errors
/// [`StartError::Storage`] when the directory cannot be created or the thread started.
pub(crate) fn start(
    storage: &StorageConfig,
    shards: usize,
    io: Arc<dyn LogIo>,
    sealer: Arc<Sealer>,
    outage: Arc<Outage>,
) -> Result<Arc<Wal>, StartError> {
    let dir = dir_of(&storage.dir);
    let fail = |message: String| StartError::Storage { path: dir.clone(), message };
    crate::fsutil::private_dir(&dir).map_err(|e| {
        fail(format!("cannot create the write-ahead log directory: {e}; fix its permissions or change storage.dir"))
    })?;
    let interval = match storage.log {
        LogMode::Every(d) => d,
        // Every change is fsynced on demand; the schedule only catches stragglers.
        LogMode::Always | LogMode::Off => Duration::from_secs(1),
    };
    let stats = Arc::new(SyncStats { metrics: crate::telemetry::Io::log(), ..SyncStats::default() });
    let (jobs, queue) = crossbeam_channel::unbounded();
    let syncer = Syncer::new(io.clone(), dir.clone(), interval, stats.clone(), outage.clone());
    let thread = std::thread::Builder::new()
        .name("draco-log-sync".into())
        .spawn(move || syncer.run(queue))
        .map_err(|e| fail(format!("cannot start the log syncer thread: {e}")))?;
    // Two generations of snapshots keep the log back to the older one: a segment may grow to
    // a quarter of the shard's share before the shard snapshots early.
    let budget = (storage.log_max / shards.max(1) as u64 / 4).max(64 << 10);
    Ok(Arc::new(Wal {
        dir,
        shards,
        mode: storage.log,
        io,
        jobs,
        budget,
        ahead: (budget / 4).min(4 << 20),
        stats,
        sealer,
        outage,
        thread: std::sync::Mutex::new(Some(thread)),
    }))
}

#[cfg(test)]
mod tests;
