//! An outage of what the engine depends on (the Redis server, the disk under `storage.dir`),
//! reported in a few lines however many operations it refuses: one when it starts, with its
//! cause; a summary every [`SUMMARY_EVERY`] while it lasts, with counts; one when it ends,
//! with its length and counts. Each refusal is counted in
//! [`REFUSED`](crate::telemetry::REFUSED) (label `cause`).
//!
//! Summaries ride on the outage's own events (a failure or a refusal at least
//! [`SUMMARY_EVERY`] after the last line): an outage nobody runs into says nothing more. The
//! healthy path costs one atomic load ([`Outage::recovered`]).

use std::fmt::{self, Display};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::Counter;

use crate::clock::{Clock, millis};

/// How often an outage that goes on is summed up.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// One outage being reported, or none.
pub(crate) struct Outage {
    /// What is out, as the lines name it ("Redis at redis://…:6379/0").
    what: String,
    /// What the engine does meanwhile, said once in the first line.
    meanwhile: &'static str,
    /// What the last line says of it ("answers again").
    back: &'static str,
    /// The level of the first line and the summaries.
    level: log::Level,
    clock: Arc<dyn Clock>,
    /// A success this soon after a failure does not end the outage (a disk that takes small
    /// writes but not a snapshot is still out).
    settle_ms: u64,
    /// Whether an outage is under way: all a success looks at.
    down: AtomicBool,
    state: Mutex<State>,
    refused: Counter,
}

impl fmt::Debug for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outage").field("what", &self.what).field("down", &self.down).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// When the outage began, and the latest failure.
    since_ms: u64,
    last_failure_ms: u64,
    cause: String,
    /// Counts since the outage began, and at the last line.
    refused: u64,
    failures: u64,
    refused_at_line: u64,
    failures_at_line: u64,
    /// When the last line was written.
    line_ms: u64,
}

impl Outage {
    /// Reports outages of `what` (named so in each line), with `meanwhile` (what the engine
    /// does while it lasts) in the first; refusals are counted under `cause` (`"redis"`,
    /// `"disk"`) from the metrics recorder current now.
    pub fn new(what: String, meanwhile: &'static str, cause: &'static str, clock: Arc<dyn Clock>) -> Self {
        Self {
            what,
            meanwhile,
            back: "works again",
            level: log::Level::Warn,
            settle_ms: 0,
            clock,
            down: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            refused: metrics::counter!(crate::telemetry::REFUSED, "cause" => cause),
        }
    }

    /// The first line and the summaries at `level` (warnings by default).
    pub fn level(mut self, level: log::Level) -> Self {
        self.level = level;
        self
    }

    /// The last line says `what` is back ("works again" by default).
    pub fn back(mut self, back: &'static str) -> Self {
        self.back = back;
        self
    }

    /// A success less than `settle` after a failure does not end the outage (none by default).
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle_ms = millis(settle);
        self
    }

    /// Whether an outage is under way.
    #[cfg(test)]
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Something failed because of `cause`: begins an outage (a warning with the cause) or
    /// counts in the one under way (a summary when one is due). Answers the line written.
    pub fn failed(&self, cause: impl Display) -> Option<String> {
        let now = self.clock.now_ms();
        let mut s = self.state();
        if !self.down.load(Ordering::Acquire) {
            *s = State {
                since_ms: now,
                last_failure_ms: now,
                cause: cause.to_string(),
                failures: 1,
                failures_at_line: 1,
                line_ms: now,
                ..State::default()
            };
            self.down.store(true, Ordering::Release);
            let line = format!(
                "{} unavailable: {}; {}. One line sums it up every {}s while it lasts, one says when it ends",
                self.what,
                s.cause,
                self.meanwhile,
                SUMMARY_EVERY.as_secs()
            );
            log::log!(self.level, "{line}");
            return Some(line);
        }
        s.failures += 1;
        s.last_failure_ms = now;
        s.cause.clear();
        fmt::Write::write_fmt(&mut s.cause, format_args!("{cause}")).ok();
        self.summary(&mut s, now)
    }

    /// An operation was refused because of the outage: counted (metric too), and a summary
    /// when one is due. Answers the line written.
    pub fn refused(&self) -> Option<String> {
        self.refused.increment(1);
        let now = self.clock.now_ms();
        let mut s = self.state();
        s.refused += 1;
        if self.down.load(Ordering::Acquire) { self.summary(&mut s, now) } else { None }
    }

    /// Something worked: ends the outage under way (a line with its length and counts),
    /// unless the last failure was less than the settling time ago. Answers the line written.
    #[inline]
    pub fn recovered(&self) -> Option<String> {
        if self.down.load(Ordering::Acquire) { self.end() } else { None }
    }

    fn end(&self) -> Option<String> {
        let now = self.clock.now_ms();
        let mut s = self.state();
        if !self.down.load(Ordering::Acquire) || now.saturating_sub(s.last_failure_ms) < self.settle_ms {
            return None;
        }
        self.down.store(false, Ordering::Release);
        let line = format!(
            "{} {} after {}: {} (last cause: {})",
            self.what,
            self.back,
            Length(now.saturating_sub(s.since_ms)),
            counts(s.refused, s.failures),
            s.cause
        );
        *s = State::default();
        log::info!("{line}");
        Some(line)
    }

    /// The summary line, when [`SUMMARY_EVERY`] has passed since the last line.
    fn summary(&self, s: &mut State, now: u64) -> Option<String> {
        if now.saturating_sub(s.line_ms) < millis(SUMMARY_EVERY) {
            return None;
        }
        let line = format!(
            "{} still unavailable after {}: {} in the last {}, {} in all (last cause: {})",
            self.what,
            Length(now.saturating_sub(s.since_ms)),
            counts(s.refused - s.refused_at_line, s.failures - s.failures_at_line),
            Length(now.saturating_sub(s.line_ms)),
            counts(s.refused, s.failures),
            s.cause
        );
        (s.line_ms, s.refused_at_line, s.failures_at_line) = (now, s.refused, s.failures);
        log::log!(self.level, "{line}");
        Some(line)
    }
}

/// The reporter of the disk under `dir` (`storage.dir`): snapshot and log writes fail into it;
/// only a snapshot written ends it (a log resumes with its shard's next snapshot, and a small
/// append that fits where the file already has room proves nothing about a full disk).
pub(crate) fn disk(dir: &std::path::Path, clock: Arc<dyn Clock>) -> Outage {
    Outage::new(
        format!("session engine: the disk under storage.dir {}", dir.display()),
        "sessions are served from memory and the failed writes retried; snapshots and the write-ahead log resume \
         once writes work (with storage.log = \"always\", changes are refused until then)",
        "disk",
        clock,
    )
    .level(log::Level::Error)
    .back("writes work again")
    .settle(Duration::from_secs(1))
}

/// "N operations refused, M failed attempts".
fn counts(refused: u64, failures: u64) -> String {
    format!("{refused} operations refused, {failures} failed attempts")
}

/// A length of time in milliseconds, as seconds with one decimal.
struct Length(u64);

impl Display for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} s", self.0 / 1000, self.0 % 1000 / 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn outage(clock: &ManualClock, settle: Duration) -> Outage {
        Outage::new("Redis at redis://x".into(), "operations are refused", "redis", Arc::new(clock.clone()))
            .back("answers again")
            .settle(settle)
    }

    /// A minute of outage with a refusal every 100 ms: one line at the start, a summary every
    /// 10 s, one at the end — 8 lines for 600 refusals.
    #[test]
    fn an_outage_is_told_in_a_few_lines() {
        let clock = ManualClock::new(1_000_000);
        let o = outage(&clock, Duration::ZERO);
        assert_eq!(o.recovered(), None, "nothing to end");
        assert_eq!(o.refused(), None, "a refusal outside an outage says nothing");
        let first = o.failed("connection refused").expect("the start is told");
        assert!(first.contains("Redis at redis://x unavailable: connection refused"), "{first}");
        assert!(o.is_down());
        let mut lines = vec![first];
        for _ in 0..600 {
            clock.advance(Duration::from_millis(100));
            lines.extend(o.failed("connection refused"));
            lines.extend(o.refused());
        }
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert!(lines[1].contains("still unavailable after 10.0 s"), "{}", lines[1]);
        assert!(lines[1].contains("99 operations refused, 100 failed attempts in the last 10.0 s"), "{}", lines[1]);
        assert!(lines[6].contains("still unavailable after 60.0 s"), "{}", lines[6]);
        clock.advance(Duration::from_millis(500));
        let end = o.recovered().expect("the end is told");
        assert!(end.contains("answers again after 60.5 s: 600 operations refused, 601 failed attempts"), "{end}");
        assert!(!o.is_down());
        assert_eq!(o.recovered(), None, "told once");
        // The next outage starts afresh.
        let again = o.failed("timeout").unwrap();
        assert!(again.contains("unavailable: timeout"), "{again}");
        clock.advance(Duration::from_secs(3));
        assert!(o.recovered().unwrap().contains("after 3.0 s: 0 operations refused, 1 failed attempts"));
    }

    /// A success right after a failure does not end the outage while it settles.
    #[test]
    fn a_success_among_failures_does_not_end_it() {
        let clock = ManualClock::new(5_000);
        let o = outage(&clock, Duration::from_secs(1));
        assert!(o.failed("No space left on device").is_some());
        clock.advance(Duration::from_millis(400));
        assert_eq!(o.recovered(), None);
        assert!(o.is_down());
        assert_eq!(o.failed("No space left on device"), None);
        clock.advance(Duration::from_millis(999));
        assert_eq!(o.recovered(), None);
        clock.advance(Duration::from_millis(1));
        assert!(o.recovered().unwrap().contains("answers again after 1.4 s"));
    }

    #[test]
    fn lengths_read_as_seconds() {
        assert_eq!(Length(0).to_string(), "0.0 s");
        assert_eq!(Length(4_250).to_string(), "4.2 s");
        assert_eq!(Length(61_999).to_string(), "61.9 s");
    }
}
