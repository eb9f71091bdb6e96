//! The log's syncer thread: fsyncs segments on a schedule (`storage.log = "1s"`) or on demand
//! with group commit (`"always"`: every request queued while one fsync runs is answered by the
//! next one). Shard threads only `write`; they never wait for the disk.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::sync::oneshot;

use super::io::{LogIo, SegmentFile};

/// An open segment, shared by its shard (which appends) and the syncer (which fsyncs).
pub(crate) struct Segment {
    pub path: std::path::PathBuf,
    pub file: Box<dyn SegmentFile>,
    /// Appended to since its last fsync began.
    pub dirty: AtomicBool,
    /// A write or fsync failed: its tail cannot be trusted, the shard must leave it.
    pub failed: AtomicBool,
    /// Its directory entry is not known to be durable yet.
    pub fresh: AtomicBool,
}

/// What an `"always"` change waits for: `Err` names what failed.
pub(crate) type SyncAnswer = std::result::Result<(), String>;

/// Work for the syncer thread.
pub(crate) enum SyncJob {
    /// A new segment: fsync it on the schedule from now on.
    Opened(Arc<Segment>),
    /// Fsync this segment as soon as possible and answer each waiter.
    Wait(Arc<Segment>, Vec<oneshot::Sender<SyncAnswer>>),
    /// Fsync everything written so far, then end.
    Stop,
}

/// Counters of the syncer, read by `stats()`.
#[derive(Debug, Default)]
pub(crate) struct SyncStats {
    pub fsyncs: AtomicU64,
    pub failures: AtomicU64,
    /// Fsync time and bytes appended (`src/telemetry.rs`).
    pub metrics: crate::telemetry::Io,
}

/// The syncer thread's state.
pub(crate) struct Syncer {
    pub io: Arc<dyn LogIo>,
    pub dir: std::path::PathBuf,
    /// Fsync every dirty segment at least this often.
    pub interval: Duration,
    pub stats: Arc<SyncStats>,
    /// Open segments (the syncer drops one once its shard left it and it is clean).
    pub open: Vec<Arc<Segment>>,
    /// The disk's outages: a failing disk logs a few lines, not one per round.
    outage: Arc<crate::outage::Outage>,
}

impl Syncer {
    pub fn new(
        io: Arc<dyn LogIo>,
        dir: std::path::PathBuf,
        interval: Duration,
        stats: Arc<SyncStats>,
        outage: Arc<crate::outage::Outage>,
    ) -> Self {
        Self { io, dir, interval, stats, open: Vec::new(), outage }
    }

    /// Serves jobs until [`SyncJob::Stop`] or until every sender is gone.
    pub fn run(mut self, jobs: Receiver<SyncJob>) {
        let mut tick = Instant::now() + self.interval;
        loop {
            let mut waits: Vec<(Arc<Segment>, Vec<oneshot::Sender<SyncAnswer>>)> = Vec::new();
            let mut jobs_now = Vec::new();
            let mut stop = false;
            match jobs.recv_deadline(tick) {
                Ok(job) => jobs_now.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            // Group commit: everything queued meanwhile rides on this round.
            jobs_now.extend(jobs.try_iter());
            for job in jobs_now {
                match job {
                    SyncJob::Opened(segment) => self.open.push(segment),
                    SyncJob::Wait(segment, tx) => waits.push((segment, tx)),
                    SyncJob::Stop => stop = true,
                }
            }
            let scheduled = stop || Instant::now() >= tick;
            self.round(waits, scheduled);
            if scheduled {
                tick = Instant::now() + self.interval;
                // A segment its shard left (only this list holds it) and that is clean is done.
                self.open.retain(|s| Arc::strong_count(s) > 1 || s.dirty.load(Ordering::Acquire));
            }
            if stop {
                break;
            }
        }
        log::debug!("log syncer for {} stopped", self.dir.display());
    }

    /// One fsync per segment that needs one: those waited on, and (`scheduled`) every dirty one.
    pub fn round(&mut self, waits: Vec<(Arc<Segment>, Vec<oneshot::Sender<SyncAnswer>>)>, scheduled: bool) {
        let mut targets: Vec<Arc<Segment>> = Vec::new();
        let mut add = |s: &Arc<Segment>| {
            if !targets.iter().any(|t| Arc::ptr_eq(t, s)) {
                targets.push(s.clone());
            }
        };
        for (s, _) in &waits {
            add(s);
        }
        if scheduled {
            for s in self.open.iter().filter(|s| s.dirty.load(Ordering::Acquire)) {
                add(s);
            }
        }
        if targets.is_empty() {
            return;
        }
        // A new segment's records are durable only once its name is.
        let mut dir_error = None;
        if targets.iter().any(|s| s.fresh.load(Ordering::Acquire)) {
            match self.io.sync_dir(&self.dir) {
                Ok(()) => targets.iter().for_each(|s| s.fresh.store(false, Ordering::Release)),
                Err(e) => {
                    self.stats.metrics.failures.increment(1);
                    dir_error = Some(format!("fsync of the log directory {} failed: {e}", self.dir.display()));
                }
            }
        }
        let stats = &self.stats;
        let fsync = |s: &Arc<Segment>| -> SyncAnswer {
            if s.failed.load(Ordering::Acquire) {
                Err(format!("an earlier write or fsync of {} failed", s.path.display()))
            } else if let (Some(e), true) = (&dir_error, s.fresh.load(Ordering::Acquire)) {
                Err(e.clone())
            } else {
                // Cleared first: an append racing with this fsync marks it dirty again.
                s.dirty.store(false, Ordering::Release);
                stats.fsyncs.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let synced = s.file.sync().map_err(|e| format!("fsync of {} failed: {e}", s.path.display()));
                stats.metrics.duration.record(started.elapsed());
                if synced.is_err() {
                    stats.metrics.failures.increment(1);
                }
                synced
            }
        };
        // Segments of several shards are fsynced side by side: a round takes one fsync's time.
        let answers: Vec<SyncAnswer> = if targets.len() == 1 {
            vec![fsync(&targets[0])]
        } else {
            std::thread::scope(|scope| {
                let running: Vec<_> = targets.iter().map(|s| scope.spawn(|| fsync(s))).collect();
                running
                    .into_iter()
                    .map(|t| t.join().unwrap_or_else(|_| Err("the fsync thread panicked".into())))
                    .collect()
            })
        };
        let mut results: Vec<(Arc<Segment>, SyncAnswer)> = Vec::with_capacity(targets.len());
        for (s, result) in targets.into_iter().zip(answers) {
            if let Err(e) = &result {
                s.failed.store(true, Ordering::Release);
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                log::debug!("write-ahead log: {e}; the shard leaves this segment until its next snapshot");
                // Its end is told by the snapshot writer: a shard's log resumes with a snapshot.
                let _ = self.outage.failed(format_args!("write-ahead log: {e}"));
            }
            results.push((s, result));
        }
        for (segment, txs) in waits {
            let answer = results.iter().find(|(s, _)| Arc::ptr_eq(s, &segment)).map_or(Ok(()), |(_, r)| r.clone());
            if answer.is_err() {
                // Each waiter's change is answered as not durable: refused.
                txs.iter().for_each(|_| {
                    let _ = self.outage.refused();
                });
            }
            for tx in txs {
                let _ = tx.send(answer.clone());
            }
        }
    }
}
