//! A shard's side of the log: records encoded during an operation, written with one `write`
//! when it ends (before its reply), on the thread hosting the shard. Moves with the shard.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::format::{self, Change};
use super::io::SegmentName;
use super::sync::{Segment, SyncAnswer, SyncJob};
use super::{Wal, files_u32};
use crate::config::LogMode;
use crate::error::{Result, SessionError, Unavailable};

/// A change's record is being fsynced (`storage.log = "always"`): the reply waits for this.
#[must_use]
pub(crate) struct Durable(oneshot::Receiver<SyncAnswer>);

impl Durable {
    /// Resolves once the record is durable; an error (503 over HTTP) when it cannot be.
    pub async fn wait(self) -> Result<()> {
        match self.0.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(storage(format!("{message}; the change is not durable"))),
            Err(_) => Err(storage("the log syncer thread is gone; the change is not durable".into())),
        }
    }
}

fn storage(message: String) -> SessionError {
    Unavailable::Storage { message: format!("write-ahead log: {message}") }.into()
}

/// The first pause between snapshots asked for by a broken log.
const FIRST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest.
const LAST_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// One shard's log writer.
pub(crate) struct ShardLog {
    /// `None`: no log (it is off, or this is an empty stand-in for a shard that moved).
    wal: Option<Arc<Wal>>,
    shard: usize,
    /// The sequence number of the next record.
    lsn: u64,
    /// The segment being appended to; `None` after a failure, until the next snapshot begins.
    segment: Option<Arc<Segment>>,
    /// `"always"` after a failure: changes are refused until the snapshot that began at this
    /// sequence number is durable, since the records before it may be lost.
    resuming_from: Option<u64>,
    /// Records of the operation under way.
    buf: Vec<u8>,
    /// Bytes appended to the current segment.
    since_rotation: u64,
    /// A failure was logged and not yet followed by a success.
    failing: bool,
    /// While the log is broken: when to ask for the next snapshot, and the pause after that
    /// (doubling up to 10 s, so a disk that stays broken is not hammered with snapshots).
    retry_at: Option<std::time::Instant>,
    retry_every: std::time::Duration,
    /// Records and bytes appended (stats).
    pub records: u64,
    pub bytes: u64,
}

impl ShardLog {
    /// No log.
    pub fn disabled(shard: usize, lsn: u64) -> Self {
        Self {
            wal: None,
            shard,
            lsn,
            segment: None,
            resuming_from: None,
            buf: Vec::new(),
            since_rotation: 0,
            failing: false,
            retry_at: None,
            retry_every: FIRST_RETRY,
            records: 0,
            bytes: 0,
        }
    }

    /// The log of shard `shard`, whose next record is `lsn`: opens a new segment there.
    pub fn open(wal: Option<Arc<Wal>>, shard: usize, lsn: u64) -> Self {
        let mut log = Self::disabled(shard, lsn);
        log.wal = wal;
        log.new_segment();
        log
    }

    fn always(&self) -> bool {
        self.wal.as_ref().is_some_and(|w| w.mode == LogMode::Always)
    }

    /// Whether a change may be made now: with `"always"`, not while the log cannot take it.
    pub fn accepting(&self) -> Result<()> {
        if !self.always() {
            return Ok(());
        }
        if self.segment.as_ref().is_none_or(|s| s.failed.load(Ordering::Acquire)) || self.resuming_from.is_some() {
            return Err(storage(
                "the log cannot be written (see the error log); changes are refused until the shard's next \
                 snapshot succeeds"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Adds the record of one change to the operation under way.
    pub fn record(&mut self, time_ms: u64, change: &Change<'_>) {
        if self.wal.is_none() {
            return;
        }
        let lsn = self.lsn;
        self.lsn += 1;
        if self.segment.is_none() {
            // Not written: the hole in the sequence tells replay that records are missing here.
            return;
        }
        match format::encode(&mut self.buf, lsn, time_ms, change) {
            Ok(()) => self.records += 1,
            Err(e) => log::error!("shard {}: a change cannot be logged ({e}); it is kept in memory", self.shard),
        }
    }

    /// Writes the operation's records (one `write`). With `"always"`, answers what the reply
    /// must wait for, or an error when they cannot be written.
    pub fn commit(&mut self) -> Result<Option<Durable>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some(segment) = self.segment.clone() else {
            self.buf.clear();
            return if self.always() { self.accepting().map(|()| None) } else { Ok(None) };
        };
        let written = if segment.failed.load(Ordering::Acquire) {
            Err(std::io::Error::other("an earlier write or fsync of this segment failed"))
        } else {
            segment.file.append(&self.buf)
        };
        let len = self.buf.len() as u64;
        self.buf.clear();
        if let Err(e) = written {
            self.fail(&segment, &e.to_string());
            return if self.always() {
                Err(storage(format!("{} cannot be written: {e}", segment.path.display())))
            } else {
                Ok(None)
            };
        }
        if self.failing {
            self.failing = false;
            log::info!("shard {}: the write-ahead log works again", self.shard);
        }
        segment.dirty.store(true, Ordering::Release);
        self.since_rotation += len;
        self.bytes += len;
        let Some(wal) = self.wal.as_ref().filter(|w| w.mode == LogMode::Always) else { return Ok(None) };
        let (tx, rx) = oneshot::channel();
        if wal.jobs.send(SyncJob::Wait(segment, tx)).is_err() {
            return Err(storage("the log syncer thread is gone; the change is not durable".into()));
        }
        Ok(Some(Durable(rx)))
    }

    /// Leaves a segment that failed: no log until the next snapshot begins a new one.
    fn fail(&mut self, segment: &Segment, why: &str) {
        segment.failed.store(true, Ordering::Release);
        self.segment = None;
        // Records written to the segment after the failure may be lost: a hole says so.
        self.lsn += 1;
        if !self.failing {
            self.failing = true;
            log::error!(
                "shard {}: write-ahead log {} failed ({why}); changes are kept in memory{}, and the log resumes \
                 with the shard's next snapshot (retried every second)",
                self.shard,
                segment.path.display(),
                if self.always() { " but refused (storage.log = \"always\")" } else { "" },
            );
        }
    }

    /// A snapshot run begins: its records go to a new segment, so the old ones can be deleted
    /// once it is durable. Answers the sequence number the snapshot covers up to (exclusive).
    pub fn rotate(&mut self) -> u64 {
        let from = self.lsn;
        if self.wal.is_none() {
            return from;
        }
        let broken = match &self.segment {
            Some(s) if s.failed.load(Ordering::Acquire) => {
                let s = s.clone();
                self.fail(&s, "an fsync failed");
                true
            }
            Some(_) if self.since_rotation == 0 => return from,
            Some(_) => false,
            None => true,
        };
        let from = self.lsn;
        self.new_segment();
        if broken && self.segment.is_some() && self.always() {
            self.resuming_from = Some(from);
        }
        from
    }

    fn new_segment(&mut self) {
        let Some(wal) = &self.wal else { return };
        let name = SegmentName { shards: files_u32(wal.shards), shard: files_u32(self.shard), base: self.lsn };
        let path = name.path(&wal.dir);
        let header = format::SegmentHeader { shard: name.shard, shards: name.shards, base: self.lsn }.to_bytes();
        match wal.io.create(&path, &header) {
            Ok(file) => {
                let segment = Arc::new(Segment {
                    path,
                    file,
                    dirty: std::sync::atomic::AtomicBool::new(true),
                    failed: std::sync::atomic::AtomicBool::new(false),
                    fresh: std::sync::atomic::AtomicBool::new(true),
                });
                let _ = wal.jobs.send(SyncJob::Opened(segment.clone()));
                self.segment = Some(segment);
                self.since_rotation = 0;
            }
            Err(e) => {
                self.segment = None;
                if !self.failing {
                    self.failing = true;
                    log::error!(
                        "shard {}: cannot create write-ahead log segment {}: {e}; changes are kept in memory and \
                         the log resumes with the shard's next snapshot",
                        self.shard,
                        path.display()
                    );
                }
            }
        }
    }

    /// The snapshot covering every record before `log_from` is durable.
    pub fn snapshot_durable(&mut self, log_from: u64) {
        if self.resuming_from.is_some_and(|from| log_from >= from) {
            self.resuming_from = None;
            log::info!("shard {}: snapshot durable; the write-ahead log takes changes again", self.shard);
        }
    }

    /// The shard should snapshot now: its segment grew past its share of `storage.log_max`,
    /// or its log is broken (a snapshot is how it resumes: asked for after 1 s, then after
    /// pauses doubling up to 10 s while the disk stays broken).
    pub fn wants_snapshot(&mut self, now: std::time::Instant) -> bool {
        let Some(wal) = &self.wal else { return false };
        let broken =
            self.segment.as_ref().is_none_or(|s| s.failed.load(Ordering::Acquire)) || self.resuming_from.is_some();
        if !broken {
            (self.retry_at, self.retry_every) = (None, FIRST_RETRY);
            return self.since_rotation > wal.budget;
        }
        if self.retry_at.is_some_and(|at| now < at) {
            return false;
        }
        self.retry_at = Some(now + self.retry_every);
        self.retry_every = (self.retry_every * 2).min(LAST_RETRY);
        true
    }
}
