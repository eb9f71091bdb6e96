//! Metrics through the [`metrics`] facade: every name in one place, and the handles the engine
//! records with. The library records; the application installs the recorder (an exporter).
//!
//! Handles are resolved once, from the recorder current when the engine starts (the global
//! one, or a thread's local one), and kept: an operation increments an atomic, it never looks
//! a name up. So **install the recorder before starting the engine**; one installed later
//! sees none of this engine's metrics except the error counters, which are looked up when an
//! error happens (they are rare, and their labels many).
//!
//! What recording costs per operation: one counter increment, and for one operation in
//! [`SAMPLE`] per thread a pair of clock reads and a histogram record (the latency histogram
//! is sampled; its `_count` is not the number of operations — `operations_total` is). Gauges
//! (live sessions, mailbox depth) are copied from the shards' own atomics on each shard's sweep
//! tick (`session.sweep_interval`) and whenever [`stats`](crate::SessionEngine::stats) runs,
//! never per operation.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};

use crate::error::{SessionError, Unavailable};

/// Live sessions, per shard (memory backend). Gauge, label `shard`.
pub(crate) const SESSIONS_LIVE: &str = "draco_session_sessions_live";
/// Sessions created. Counter.
pub(crate) const SESSIONS_CREATED: &str = "draco_session_sessions_created_total";
/// Sessions dropped by expiry (memory backend; Redis expires keys on its own, unseen).
pub(crate) const SESSIONS_EXPIRED: &str = "draco_session_sessions_expired_total";
/// Anonymous sessions evicted to keep the memory backend within `limits.max_memory`.
pub(crate) const SESSIONS_EVICTED: &str = "draco_session_sessions_evicted_total";
/// Sessions ended by another one: `revoke`, `logout_user`, `limits.max_sessions_per_user`.
pub(crate) const SESSIONS_REVOKED: &str = "draco_session_sessions_revoked_total";
/// Sessions ended by `destroy`.
pub(crate) const SESSIONS_DESTROYED: &str = "draco_session_sessions_destroyed_total";
/// Successful logins.
pub(crate) const LOGINS: &str = "draco_session_logins_total";
/// Successful logouts.
pub(crate) const LOGOUTS: &str = "draco_session_logouts_total";
/// Requests of robots refused a new session.
pub(crate) const ROBOT_REQUESTS: &str = "draco_session_robot_requests_total";
/// Engine operations, label `op`.
pub(crate) const OPERATIONS: &str = "draco_session_operations_total";
/// Engine operations that failed, labels `op` and `error`.
pub(crate) const ERRORS: &str = "draco_session_errors_total";
/// Latency of engine operations in seconds (sampled), label `op`. Histogram.
pub(crate) const OPERATION_DURATION: &str = "draco_session_operation_duration_seconds";
/// Time to write one shard's snapshot file (write, fsync, rename, directory fsync). Histogram.
pub(crate) const SNAPSHOT_DURATION: &str = "draco_session_snapshot_duration_seconds";
/// Bytes of snapshot files written. Counter.
pub(crate) const SNAPSHOT_BYTES: &str = "draco_session_snapshot_bytes_total";
/// Time of one fsync of a write-ahead log segment. Histogram.
pub(crate) const LOG_FSYNC_DURATION: &str = "draco_session_log_fsync_duration_seconds";
/// Bytes appended to the write-ahead log. Counter.
pub(crate) const LOG_BYTES: &str = "draco_session_log_bytes_total";
/// Snapshot files that could not be written (the previous generation stays). Counter.
pub(crate) const SNAPSHOT_FAILURES: &str = "draco_session_snapshot_failures_total";
/// Write-ahead log writes or fsyncs that failed. Counter.
pub(crate) const LOG_FAILURES: &str = "draco_session_log_failures_total";
/// Operations refused during an outage of what they need, label `cause`: `"redis"` (the
/// server cannot be reached or did not answer), `"disk"` (with `storage.log = "always"`, a
/// change while the log cannot be written). Counter.
pub(crate) const REFUSED: &str = "draco_session_refused_total";
/// Messages sent to a shard's worker and not answered yet, per shard. Gauge, label `shard`.
pub(crate) const MAILBOX_DEPTH: &str = "draco_session_mailbox_depth";

/// One operation in this many per thread is timed for [`OPERATION_DURATION`] (the first one
/// of each thread included).
pub(crate) const SAMPLE: u32 = 8;

/// A session lifecycle counter an operation's success adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Created,
    Login,
    Logout,
    Destroyed,
    Revoked,
}

/// The `error` label of an error.
pub(crate) fn error_kind(e: &SessionError) -> &'static str {
    match e {
        SessionError::InvalidId => "invalid_id",
        SessionError::SessionGone => "session_gone",
        SessionError::NotLoggedIn => "not_logged_in",
        SessionError::InvalidUserId => "invalid_user_id",
        SessionError::InvalidName { .. } => "invalid_name",
        SessionError::ValueTooLarge { .. } => "value_too_large",
        SessionError::TooManyKeys { .. } => "too_many_keys",
        SessionError::SessionTooLarge { .. } => "session_too_large",
        SessionError::Full { .. } => "full",
        SessionError::Codec(_) => "codec",
        SessionError::WrongType(_) => "wrong_type",
        SessionError::Panicked(_) => "panicked",
        SessionError::Damaged(_) => "damaged",
        SessionError::Unavailable(Unavailable::Busy { .. }) => "busy",
        SessionError::Unavailable(Unavailable::MemoryFull { .. }) => "memory_full",
        SessionError::Unavailable(_) => "unavailable",
        SessionError::Internal => "internal",
    }
}

thread_local! {
    /// Operations of this thread so far, for sampling.
    static TICKS: Cell<u32> = const { Cell::new(0) };
}

/// Whether this operation is one of the sampled ones.
fn sampled() -> bool {
    TICKS.with(|t| {
        let n = t.get();
        t.set(n.wrapping_add(1));
        n % SAMPLE == 0
    })
}

/// The engine's handles: operations and session lifecycle, on either backend.
pub(crate) struct Metrics {
    operations: Vec<Counter>,
    latency: Vec<Histogram>,
    pub created: Counter,
    pub revoked: Counter,
    pub destroyed: Counter,
    pub logins: Counter,
    pub logouts: Counter,
    pub robots: Counter,
}

impl Metrics {
    /// The handles of the recorder current now, for operations labelled `ops` (an operation
    /// is then known by its index in `ops`).
    pub fn resolve(ops: &[&'static str]) -> Self {
        Self {
            operations: ops.iter().map(|&op| metrics::counter!(OPERATIONS, "op" => op)).collect(),
            latency: ops.iter().map(|&op| metrics::histogram!(OPERATION_DURATION, "op" => op)).collect(),
            created: metrics::counter!(SESSIONS_CREATED),
            revoked: metrics::counter!(SESSIONS_REVOKED),
            destroyed: metrics::counter!(SESSIONS_DESTROYED),
            logins: metrics::counter!(LOGINS),
            logouts: metrics::counter!(LOGOUTS),
            robots: metrics::counter!(ROBOT_REQUESTS),
        }
    }

    /// When an operation starts: the time, if this one is timed.
    pub fn start(&self) -> Option<Instant> {
        if sampled() { Some(Instant::now()) } else { None }
    }

    /// When operation `op` (its index and label), started at `start`, ended with `error` (if
    /// any).
    pub fn finish(&self, (i, op): (usize, &'static str), start: Option<Instant>, error: Option<&SessionError>) {
        if let Some(c) = self.operations.get(i) {
            c.increment(1);
        }
        if let (Some(start), Some(h)) = (start, self.latency.get(i)) {
            h.record(start.elapsed());
        }
        if let Some(e) = error {
            metrics::counter!(ERRORS, "op" => op, "error" => error_kind(e)).increment(1);
        }
    }

    /// The counter of `lifecycle`.
    pub fn lifecycle(&self, lifecycle: Lifecycle) -> &Counter {
        match lifecycle {
            Lifecycle::Created => &self.created,
            Lifecycle::Login => &self.logins,
            Lifecycle::Logout => &self.logouts,
            Lifecycle::Destroyed => &self.destroyed,
            Lifecycle::Revoked => &self.revoked,
        }
    }
}

/// The memory backend's per-shard handles.
pub(crate) struct ShardMetrics {
    live: Vec<Gauge>,
    mailbox: Vec<Gauge>,
    /// Messages sent to each shard's host and not answered yet.
    queued: Vec<Padded>,
    pub expired: Counter,
    pub evicted: Counter,
}

impl std::fmt::Debug for ShardMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMetrics").field("queued", &self.queued).finish_non_exhaustive()
    }
}

impl ShardMetrics {
    /// The handles of the recorder current now, for `shards` shards.
    pub fn resolve(shards: usize) -> Self {
        let label = |i: usize| i.to_string();
        Self {
            live: (0..shards).map(|i| metrics::gauge!(SESSIONS_LIVE, "shard" => label(i))).collect(),
            mailbox: (0..shards).map(|i| metrics::gauge!(MAILBOX_DEPTH, "shard" => label(i))).collect(),
            queued: (0..shards).map(|_| Padded(AtomicUsize::new(0))).collect(),
            expired: metrics::counter!(SESSIONS_EXPIRED),
            evicted: metrics::counter!(SESSIONS_EVICTED),
        }
    }

    /// Sets shard `shard`'s gauges: `live` sessions, and its mailbox depth.
    #[expect(clippy::cast_precision_loss, reason = "a gauge is an f64; counts this large are not exact anyway")]
    pub fn refresh(&self, shard: usize, live: usize) {
        if let (Some(l), Some(m), Some(q)) = (self.live.get(shard), self.mailbox.get(shard), self.queued.get(shard)) {
            l.set(live as f64);
            m.set(q.0.load(Ordering::Relaxed) as f64);
        }
    }

    /// Counts a message to `shard` as queued until the guard is dropped (answered or given up).
    pub fn queued(&self, shard: usize) -> Queued<'_> {
        let slot = self.queued.get(shard).map(|p| &p.0);
        if let Some(q) = slot {
            q.fetch_add(1, Ordering::Relaxed);
        }
        Queued(slot)
    }
}

/// A shard's count on a cache line of its own: senders to one shard do not slow the others'.
#[derive(Debug)]
#[repr(align(64))]
struct Padded(AtomicUsize);

/// A message counted in its shard's mailbox depth.
pub(crate) struct Queued<'a>(Option<&'a AtomicUsize>);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(q) = self.0 {
            q.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A writer thread's handles: how long a write takes, its bytes, and failures.
pub(crate) struct Io {
    pub duration: Histogram,
    pub bytes: Counter,
    pub failures: Counter,
}

impl Io {
    /// The snapshot writer's, from the recorder current now.
    pub fn snapshot() -> Self {
        Self {
            duration: metrics::histogram!(SNAPSHOT_DURATION),
            bytes: metrics::counter!(SNAPSHOT_BYTES),
            failures: metrics::counter!(SNAPSHOT_FAILURES),
        }
    }

    /// The write-ahead log's (fsync time, bytes appended), from the recorder current now.
    pub fn log() -> Self {
        Self {
            duration: metrics::histogram!(LOG_FSYNC_DURATION),
            bytes: metrics::counter!(LOG_BYTES),
            failures: metrics::counter!(LOG_FAILURES),
        }
    }

    /// Handles that record nothing.
    pub fn noop() -> Self {
        Self { duration: Histogram::noop(), bytes: Counter::noop(), failures: Counter::noop() }
    }
}

impl Default for Io {
    fn default() -> Self {
        Self::noop()
    }
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Io")
    }
}
