//! What the `draco-session` command (`src/bin/draco-session.rs`, cargo feature `cli`) does with
//! a data directory: [`inspect`] it and [`verify`] it, reading only.
//!
//! **Not part of the API**: hidden from the docs, exempt from semver. Both read the files with
//! the engine's own decoders (`snapshot::format::decode`,
//! `wal::format::read_segment`) and recover a shard as start-up would (its newest good
//! snapshot generation, then its log replayed over it with `wal::replay::apply`), but
//! write nothing: no torn tail is cut, no damaged file set aside, no key file created. Reading
//! while an engine runs is safe (files are replaced by rename, logs only appended to), so
//! neither takes the directory's lock; `inspect` says when an engine holds it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::id::{Keyring, Locator};
use crate::seal::Sealer;
use crate::snapshot::files::{self, FileName, Kind};
use crate::snapshot::format;
use crate::state::{Lifetimes, SessionState};
use crate::wal::format::{Stop, read_segment};
use crate::wal::io::{self as wal_io, SegmentName};
use crate::wal::replay::apply;

mod migrate;
pub use migrate::{Place, Summary, inspect_redis, migrate};

/// Why a tool could not run at all (damage is not this: it is a [`Problem`]).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// No usable secret: none given, and no readable `<dir>/secret.key`.
    #[error("{0}")]
    Secret(String),
    /// The command cannot do what it was asked (e.g. a Redis URL in a build without Redis).
    #[error("{0}")]
    Usage(String),
    /// A directory or file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

pub(crate) fn io_error(path: &Path, e: &std::io::Error) -> ToolError {
    ToolError::Io { path: path.to_owned(), message: e.to_string() }
}

/// The keyring the engine would use on `dir`: `$DRACO_SESSION_SECRET`, else `config`'s
/// `session.secret` (with its `previous_secrets`), else the key file `<dir>/secret.key`. Unlike
/// the engine it never creates the key file.
///
/// # Errors
/// [`ToolError::Io`] when `dir` is not a directory; [`ToolError::Secret`] when none of them
/// gives a secret of 32 bytes or more.
pub fn keyring(dir: &Path, config: Option<&Config>) -> Result<Keyring, ToolError> {
    if !dir.is_dir() {
        return Err(ToolError::Io { path: dir.to_owned(), message: "not a directory".into() });
    }
    let mut config = config.cloned().unwrap_or_default();
    config.storage.dir = dir.to_owned();
    let env = std::env::var_os(crate::SECRET_ENV).is_some_and(|v| !v.is_empty());
    if !env && config.session.secret.is_none() {
        let path = dir.join("secret.key");
        let secret = std::fs::read(&path).map_err(|e| {
            ToolError::Secret(format!(
                "no secret: ${} is not set, no --config gives session.secret, and {} cannot be read ({e})",
                crate::SECRET_ENV,
                path.display()
            ))
        })?;
        let previous: Vec<&[u8]> = config.session.previous_secrets.iter().map(|s| s.as_bytes()).collect();
        return Keyring::from_secrets(&secret, &previous)
            .map_err(|e| ToolError::Secret(format!("{}: {e}", path.display())));
    }
    Keyring::load(&config).map_err(|e| ToolError::Secret(e.to_string()))
}

/// The sealer that opens the files of a keyring.
pub(crate) fn sealer(ring: &Keyring) -> Sealer {
    Sealer::new(ring, false)
}

/// One shard's sessions, as start-up would load them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardReport {
    /// The shard count of the layout that wrote it.
    pub shards: u32,
    /// The shard.
    pub shard: u32,
    /// The snapshot generation loaded (none: no good snapshot).
    pub generation: Option<u64>,
    /// Log records applied over it.
    pub log_records: u64,
    /// Counts, as in [`Report`].
    #[serde(flatten)]
    pub counts: Counts,
}

/// Session counts.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    /// Sessions.
    pub sessions: u64,
    /// Sessions with a user (userid ≠ 0).
    pub logged_in: u64,
    /// Remember-me sessions.
    pub persistent: u64,
    /// Sessions past their lifetime now (with the config's lifetimes): start-up drops them.
    pub expired: u64,
    /// Encoded size of every session (its snapshot record), in bytes.
    pub bytes: u64,
    /// The largest session's encoded size, in bytes.
    pub largest: u64,
}

impl Counts {
    fn add(&mut self, other: &Self) {
        self.sessions += other.sessions;
        self.logged_in += other.logged_in;
        self.persistent += other.persistent;
        self.expired += other.expired;
        self.bytes += other.bytes;
        self.largest = self.largest.max(other.largest);
    }
}

/// A snapshot file or log segment.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// Its path, relative to the data directory.
    pub path: String,
    /// `snapshot` or `log`.
    pub kind: &'static str,
    /// Its size in bytes.
    pub size: u64,
}

/// What [`inspect`] finds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Totals over every shard.
    #[serde(flatten)]
    pub counts: Counts,
    /// Distinct users of the logged-in sessions.
    pub users: u64,
    /// Per shard (layout, shard), in order.
    pub shards: Vec<ShardReport>,
    /// Every snapshot file and log segment.
    pub files: Vec<FileReport>,
    /// Whether a running engine holds the directory's lock (its files may change meanwhile).
    pub engine_running: bool,
    /// What could not be read (damaged files are skipped as start-up skips them).
    pub problems: Vec<Problem>,
}

/// A file that does not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Where in it (0: its header, or the file as a whole).
    pub offset: u64,
    /// Why.
    pub why: String,
    /// False for what is normal after a crash (a torn tail at the end of a shard's newest log
    /// segment, which start-up cuts off) or a file kept aside: a note, not damage.
    pub damage: bool,
}

/// Whether an engine holds `<dir>/lock` (taken with a shared lock attempt; nothing is created).
pub fn engine_running(dir: &Path) -> bool {
    std::fs::File::open(dir.join(crate::snapshot::LOCK_FILE))
        .is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)))
}

/// Names in the snapshot and log directories.
pub(crate) struct Listing {
    snap_dir: PathBuf,
    log_dir: PathBuf,
    snaps: Vec<FileName>,
    logs: Vec<SegmentName>,
}

pub(crate) fn list(dir: &Path) -> Result<Listing, ToolError> {
    if !dir.is_dir() {
        return Err(ToolError::Io { path: dir.to_owned(), message: "not a directory".into() });
    }
    let snap_dir = dir.join(files::SUBDIR);
    let log_dir = crate::wal::dir_of(dir);
    let snaps = match files::list(&snap_dir) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(&snap_dir, &e)),
    };
    let logs = wal_io::list(&log_dir).map_err(|e| io_error(&log_dir, &e))?;
    Ok(Listing { snap_dir, log_dir, snaps, logs })
}

fn read(path: &Path) -> Result<Vec<u8>, ToolError> {
    std::fs::read(path).map_err(|e| io_error(path, &e))
}

fn problem(file: &Path, offset: u64, why: impl Into<String>, damage: bool) -> Problem {
    Problem { file: file.to_owned(), offset, why: why.into(), damage }
}

/// Checks one snapshot file.
fn check_snapshot(
    path: &Path,
    bytes: &[u8],
    sealer: &Sealer,
) -> Result<(format::Header, Vec<crate::wire::Record>), Problem> {
    format::decode(bytes, sealer).map_err(|e| {
        let offset = match e {
            format::FormatError::BodyChecksum
            | format::FormatError::Record { .. }
            | format::FormatError::Sealed { .. } => format::Header::parse(bytes).map_or(0, |h| h.len() as u64),
            _ => 0,
        };
        problem(path, offset, e.to_string(), true)
    })
}

/// Where reading a segment stopped, as a problem (`newest`: the last segment of its shard).
fn segment_problem(path: &Path, name: &SegmentName, bytes: &[u8], sealer: &Sealer, newest: bool) -> Option<Problem> {
    let (header, _, stop) = read_segment(bytes, sealer);
    if let Some(h) = header
        && (h.shard, h.shards, h.base) != (name.shard, name.shards, name.base)
    {
        let why = format!("header says shard {} of {} from {}, not what its name says", h.shard, h.shards, h.base);
        return Some(problem(path, 0, why, true));
    }
    match stop? {
        Stop::Torn { offset } if newest => {
            Some(problem(path, offset, "the last record was cut by a crash (start-up truncates it)", false))
        }
        Stop::Torn { offset } => Some(problem(path, offset, "a record cut short, with later segments after it", true)),
        Stop::Damaged { offset, why } => Some(problem(path, offset, why, true)),
        Stop::ForeignKey => Some(problem(path, 0, "sealed under a key not held: wrong secret?", true)),
    }
}

/// Reads every snapshot file and log segment of `dir`: answers each damaged one (file, offset,
/// why), and notes (`damage` false) for a torn tail at the end of a shard's newest segment,
/// for files set aside as `.corrupt` and unfinished `.tmp` writes. No problem with `damage`: all
/// is good.
///
/// # Errors
/// [`ToolError`] when a directory or file cannot be read at all.
pub fn verify(dir: &Path, ring: &Keyring) -> Result<Vec<Problem>, ToolError> {
    let listing = list(dir)?;
    let sealer = sealer(ring);
    let mut problems = Vec::new();
    for name in &listing.snaps {
        let path = name.path(&listing.snap_dir);
        match name.kind {
            Kind::Snap => {
                if let Err(p) = check_snapshot(&path, &read(&path)?, &sealer) {
                    problems.push(p);
                }
            }
            Kind::Tmp => problems.push(problem(&path, 0, "an unfinished write (start-up removes it)", false)),
            Kind::Corrupt => problems.push(problem(&path, 0, "set aside as damaged by an earlier start", false)),
        }
    }
    for (i, name) in listing.logs.iter().enumerate() {
        let path = name.path(&listing.log_dir);
        let newest = listing.logs.get(i + 1).is_none_or(|next| (next.shards, next.shard) != (name.shards, name.shard));
        problems.extend(segment_problem(&path, name, &read(&path)?, &sealer, newest));
    }
    Ok(problems)
}

/// Every (layout, shard) that has a snapshot file or a log segment.
pub(crate) fn groups(listing: &Listing) -> BTreeSet<(u32, u32)> {
    listing
        .snaps
        .iter()
        .filter(|n| n.kind == Kind::Snap)
        .map(|n| (n.shards, n.shard))
        .chain(listing.logs.iter().map(|n| (n.shards, n.shard)))
        .collect()
}

/// A shard recovered as start-up would, without writing.
pub(crate) struct Recovered {
    generation: Option<u64>,
    log_records: u64,
    pub(crate) sessions: HashMap<Locator, SessionState>,
}

pub(crate) fn recover(
    listing: &Listing,
    (layout, shard): (u32, u32),
    sealer: &Sealer,
    problems: &mut Vec<Problem>,
) -> Result<Recovered, ToolError> {
    let mut out = Recovered { generation: None, log_records: 0, sessions: HashMap::new() };
    let mut log_from = 0;
    let mut gens: Vec<&FileName> =
        listing.snaps.iter().filter(|n| n.kind == Kind::Snap && (n.shards, n.shard) == (layout, shard)).collect();
    gens.sort_by_key(|n| std::cmp::Reverse(n.generation));
    for name in gens {
        let path = name.path(&listing.snap_dir);
        match check_snapshot(&path, &read(&path)?, sealer) {
            Ok((header, records)) => {
                out.generation = Some(name.generation);
                log_from = header.log_from;
                out.sessions = records.into_iter().collect();
                break;
            }
            Err(p) => problems.push(p),
        }
    }
    let segments: Vec<&SegmentName> = listing.logs.iter().filter(|n| (n.shards, n.shard) == (layout, shard)).collect();
    let first = segments.iter().rposition(|n| n.base <= log_from).unwrap_or(0);
    let mut next_lsn = log_from;
    for (i, name) in segments.iter().enumerate().skip(first) {
        let path = name.path(&listing.log_dir);
        let bytes = read(&path)?;
        let (header, entries, _) = read_segment(&bytes, sealer);
        if header.is_none_or(|h| h.base > next_lsn) {
            break;
        }
        for (_, entry) in entries {
            if entry.lsn < next_lsn {
                continue;
            }
            if entry.lsn > next_lsn {
                break;
            }
            next_lsn += 1;
            out.log_records += 1;
            apply(&mut out.sessions, entry);
        }
        if let Some(p) = segment_problem(&path, name, &bytes, sealer, i + 1 == segments.len()) {
            let stops = p.damage;
            problems.push(p);
            if stops {
                break;
            }
        }
    }
    Ok(out)
}

pub(crate) fn count(sessions: &HashMap<Locator, SessionState>, lifetimes: &Lifetimes, now_ms: u64) -> Counts {
    let mut counts = Counts::default();
    let mut record = Vec::new();
    for (locator, state) in sessions {
        record.clear();
        // Encoding a session never fails (see `format::encode_record`); a failure counts 0 bytes.
        let _ = format::encode_record(&mut record, locator, state);
        let size = record.len() as u64;
        counts.sessions += 1;
        counts.logged_in += u64::from(state.userid != 0);
        counts.persistent += u64::from(state.persistent);
        counts.expired += u64::from(state.is_expired(lifetimes, now_ms));
        counts.bytes += size;
        counts.largest = counts.largest.max(size);
    }
    counts
}

/// What start-up would load from `dir`: per shard (of every layout on disk), its newest good
/// snapshot generation with its log replayed over it, counted; and every snapshot file and log
/// segment with its size. `config` gives the lifetimes `expired` is counted with (defaults
/// without one). What does not read is in [`Report::problems`] and skipped, as start-up does.
///
/// # Errors
/// [`ToolError`] when a directory or file cannot be read at all.
pub fn inspect(dir: &Path, ring: &Keyring, config: Option<&Config>) -> Result<Report, ToolError> {
    let listing = list(dir)?;
    let sealer = sealer(ring);
    let lifetimes = Lifetimes::from_config(&config.cloned().unwrap_or_default().session);
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let mut report = Report { engine_running: engine_running(dir), ..Report::default() };
    let mut users = BTreeSet::new();
    for group in groups(&listing) {
        let recovered = recover(&listing, group, &sealer, &mut report.problems)?;
        users.extend(recovered.sessions.values().map(|s| s.userid).filter(|&u| u != 0));
        let counts = count(&recovered.sessions, &lifetimes, now_ms);
        report.counts.add(&counts);
        report.shards.push(ShardReport {
            shards: group.0,
            shard: group.1,
            generation: recovered.generation,
            log_records: recovered.log_records,
            counts,
        });
    }
    report.users = users.len() as u64;
    let sizes: BTreeMap<PathBuf, &'static str> = listing
        .snaps
        .iter()
        .filter(|n| n.kind == Kind::Snap)
        .map(|n| (n.path(&listing.snap_dir), "snapshot"))
        .chain(listing.logs.iter().map(|n| (n.path(&listing.log_dir), "log")))
        .collect();
    for (path, kind) in sizes {
        let size = std::fs::metadata(&path).map_err(|e| io_error(&path, &e))?.len();
        let shown = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
        report.files.push(FileReport { path: shown, kind, size });
    }
    Ok(report)
}
