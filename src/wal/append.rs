//! A shard's side of the log: the records of an operation, encoded as it ends (from what the
//! shard describes: `memory/outbox.rs`) and written with one `write` before its reply, on the
//! thread hosting the shard. Moves with the shard.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::Wal;
use super::format::{self, Change};
use super::io::SegmentName;
use super::sync::{Segment, SyncAnswer, SyncJob};
use crate::config::LogMode;
use crate::error::{Result, SessionError, Unavailable};
use crate::fsutil::as_u32;

/// A change's record is on its way to the log: the reply waits for this (the write, and with
/// `storage.log = "always"` the fsync).
#[must_use]
pub(crate) struct Durable(oneshot::Receiver<SyncAnswer>);

/// Resolves once the record is durable; an error (503 over HTTP) when it cannot be. Polled in
/// place: a few bytes in the future that waits.
impl std::future::Future for Durable {
    type Output = Result<()>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|answer| match answer {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(storage(format!("{message}; the change is not durable"))),
            Err(_) => Err(storage("the log syncer thread is gone; the change is not durable".into())),
        })
    }
}

fn storage(message: String) -> SessionError {
    Unavailable::Storage { message: format!("write-ahead log: {message}") }.into()
}

/// A batch this large is written at once rather than at the end of the turn.
const BATCH_BYTES: usize = 256 << 10;

/// While writing through, every this many operations one batches instead: a probe of whether
/// other operations would now share its `write` (see [`ShardLog::commit`]).
pub(super) const PROBE_EVERY: u32 = 256;

/// Batches of one operation in a row after which the log writes through again.
pub(super) const LONE_BATCHES: u32 = 4;

/// An operation's records joined the batch (see [`ShardLog::commit`]).
pub(crate) struct Committed {
    /// What the reply waits for.
    pub durable: Durable,
    /// The caller must schedule the batch's flush on the shard's thread.
    pub schedule: bool,
}

/// The first pause between snapshots asked for by a broken log.
const FIRST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest.
const LAST_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// One shard's log writer.
pub(crate) struct ShardLog {
    /// `None`: no log (it is off, or this is an empty stand-in for a shard that moved).
    wal: Option<Arc<Wal>>,
    /// `storage.log = "always"`.
    always: bool,
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
    /// Records of the operations that ended since the last write, and their replies.
    batch: Vec<u8>,
    waiters: Vec<oneshot::Sender<SyncAnswer>>,
    /// A flush of the batch is scheduled on the shard's thread.
    flush_scheduled: bool,
    /// Under `"1s"`: operations wait for the turn's batch (`true`, while several operations
    /// share a `write`) or each writes its own records before it answers (`false`).
    batching: bool,
    /// Operations written through since the last probe.
    through: u32,
    /// Batches of one operation in a row.
    lone: u32,
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
            always: false,
            shard,
            lsn,
            segment: None,
            resuming_from: None,
            buf: Vec::new(),
            batch: Vec::new(),
            waiters: Vec::new(),
            flush_scheduled: false,
            batching: false,
            through: 0,
            lone: 0,
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
        log.always = wal.as_ref().is_some_and(|w| w.mode == LogMode::Always);
        log.wal = wal;
        log.new_segment();
        log
    }

    /// `storage.log = "always"` (and this is a log).
    #[inline]
    pub fn always(&self) -> bool {
        self.always
    }

    /// Whether this is a log (not one that is off, or an empty stand-in's).
    pub fn enabled(&self) -> bool {
        self.wal.is_some()
    }

    /// Whether a change may be made now: with `"always"`, not while the log cannot take it.
    pub fn accepting(&self) -> Result<()> {
        if self.refusing() {
            self.refused(1);
            Err(Self::refusal())
        } else {
            Ok(())
        }
    }

    /// `n` changes were refused because the log cannot take them: counted in the disk's
    /// outage.
    pub fn refused(&self, n: usize) {
        if let Some(wal) = &self.wal {
            (0..n).for_each(|_| {
                let _ = wal.outage.refused();
            });
        }
    }

    /// With `"always"`, the log cannot take a change now (see [`accepting`](Self::accepting)).
    #[inline]
    pub fn refusing(&self) -> bool {
        self.always()
            && (self.segment.as_ref().is_none_or(|s| s.failed.load(Ordering::Acquire)) || self.resuming_from.is_some())
    }

    /// What a change refused by [`accepting`](Self::accepting) answers.
    pub fn refusal() -> SessionError {
        storage(
            "the log cannot be written (see the error log); changes are refused until the shard's next snapshot \
             succeeds"
                .into(),
        )
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
        let sealer = self.wal.as_ref().and_then(|w| w.sealer.sealing());
        match format::encode(&mut self.buf, lsn, time_ms, change, sealer) {
            Ok(()) => self.records += 1,
            Err(e) => log::error!("shard {}: a change cannot be logged ({e}); it is kept in memory", self.shard),
        }
    }

    /// Ends an operation: its records join the batch the shard's thread writes with one
    /// `write` once the operations it is running now are done ([`flush`](Self::flush)). Answers
    /// what the reply waits for — the write, and with `"always"` the fsync after it — and
    /// whether the caller must schedule that flush (the batch's first operation does).
    ///
    /// Under `"1s"` a batch pays off only when several operations share it: an operation that
    /// waits for the end of the turn costs its request a second poll of the whole service
    /// chain. So while batches hold one operation (a quiet shard, one client at a time), each
    /// operation writes its records itself before it answers (written through: nothing to
    /// wait for, `None`); every [`PROBE_EVERY`] operations one batches again to see whether
    /// others now join it, and [`LONE_BATCHES`] batches of one in a row return to writing
    /// through. Either way the records reach the kernel before the reply.
    #[inline]
    pub fn commit(&mut self) -> Result<Option<Committed>> {
        // Most operations record nothing: this much is inlined into every caller.
        if self.buf.is_empty() { Ok(None) } else { self.commit_records() }
    }

    /// [`commit`](Self::commit) of an operation that recorded something.
    fn commit_records(&mut self) -> Result<Option<Committed>> {
        if self.segment.is_none() {
            self.buf.clear();
            return if self.always() { self.accepting().map(|()| None) } else { Ok(None) };
        }
        self.batch.extend_from_slice(&self.buf);
        self.buf.clear();
        if !self.batching && !self.always() {
            self.flush();
            self.through += 1;
            if self.through >= PROBE_EVERY {
                // The next operation is the probe: one batch of one sends it back here.
                (self.through, self.batching, self.lone) = (0, true, LONE_BATCHES - 1);
            }
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        let schedule = !std::mem::replace(&mut self.flush_scheduled, true);
        if self.batch.len() >= BATCH_BYTES {
            self.flush();
        }
        Ok(Some(Committed { durable: Durable(rx), schedule }))
    }

    /// Writes the batch (one `write`) and answers its operations: with `"always"` once an
    /// fsync covers it (the syncer answers), else at once. A failed write is answered with an
    /// error under `"always"`; under `"1s"` the changes stay acknowledged, in memory.
    pub fn flush(&mut self) {
        self.flush_scheduled = false;
        if self.batch.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.waiters);
        if self.batching && !self.always() {
            self.lone = if waiters.len() > 1 { 0 } else { self.lone + 1 };
            if self.lone >= LONE_BATCHES {
                (self.batching, self.lone) = (false, 0);
            }
        }
        let answer = |waiters: Vec<oneshot::Sender<SyncAnswer>>, a: SyncAnswer| {
            for w in waiters {
                let _ = w.send(a.clone());
            }
        };
        let len = self.batch.len() as u64;
        let always = self.always();
        let Some(segment) = self.segment.clone() else {
            self.batch.clear();
            if always {
                self.refused(waiters.len());
            }
            answer(waiters, if always { Err("the log cannot be written (see the error log)".into()) } else { Ok(()) });
            return;
        };
        let written = if segment.failed.load(Ordering::Acquire) {
            Err(std::io::Error::other("an earlier write or fsync of this segment failed"))
        } else {
            segment.file.append(&self.batch)
        };
        self.batch.clear();
        if let Err(e) = written {
            if let Some(wal) = &self.wal {
                wal.stats.metrics.failures.increment(1);
            }
            self.fail(&segment, &e.to_string());
            let failed = format!("{} cannot be written: {e}", segment.path.display());
            if always {
                self.refused(waiters.len());
            }
            answer(waiters, if always { Err(failed) } else { Ok(()) });
            return;
        }
        if self.failing {
            self.failing = false;
            log::debug!("shard {}: the write-ahead log works again", self.shard);
        }
        segment.dirty.store(true, Ordering::Release);
        self.since_rotation += len;
        self.bytes += len;
        if let Some(wal) = &self.wal {
            wal.stats.metrics.bytes.increment(len);
        }
        match self.wal.as_ref().filter(|w| w.mode == LogMode::Always) {
            None => answer(waiters, Ok(())),
            Some(wal) => {
                if let Err(returned) = wal.jobs.send(SyncJob::Wait(segment, waiters))
                    && let SyncJob::Wait(_, waiters) = returned.into_inner()
                {
                    answer(waiters, Err("the log syncer thread is gone".into()));
                }
            }
        }
    }

    /// Leaves a segment that failed: no log until the next snapshot begins a new one.
    fn fail(&mut self, segment: &Segment, why: &str) {
        segment.failed.store(true, Ordering::Release);
        self.segment = None;
        // Records written to the segment after the failure may be lost: a hole says so.
        self.lsn += 1;
        self.failing = true;
        log::debug!(
            "shard {}: write-ahead log {} failed ({why}); changes are kept in memory{}, and the log resumes with \
             the shard's next snapshot",
            self.shard,
            segment.path.display(),
            if self.always() { " but refused (storage.log = \"always\")" } else { "" },
        );
        if let Some(wal) = &self.wal {
            let _ = wal.outage.failed(format_args!("write-ahead log {}: {why}", segment.path.display()));
        }
    }

    /// A snapshot run begins: its records go to a new segment, so the old ones can be deleted
    /// once it is durable. Answers the sequence number the snapshot covers up to (exclusive).
    pub fn rotate(&mut self) -> u64 {
        // The batch's records belong before the new segment's base.
        self.flush();
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
        let name = SegmentName { shards: as_u32(wal.shards), shard: as_u32(self.shard), base: self.lsn };
        let path = name.path(&wal.dir);
        let key_id = wal.sealer.sealing().map_or(0, crate::seal::Sealer::key_id);
        let header =
            format::SegmentHeader { shard: name.shard, shards: name.shards, base: self.lsn, key_id }.to_bytes();
        match wal.io.create(&path, &header, wal.ahead) {
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
                self.failing = true;
                log::debug!("shard {}: cannot create write-ahead log segment {}: {e}", self.shard, path.display());
                let _ =
                    wal.outage.failed(format_args!("cannot create write-ahead log segment {}: {e}", path.display()));
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

impl Drop for ShardLog {
    /// A shard going away (its thread stopping) writes what its operations logged.
    fn drop(&mut self) {
        self.flush();
    }
}
