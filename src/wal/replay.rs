//! Start-up (and a restarted shard): the log records after a snapshot, applied on top of it.
//!
//! Records carry results, so replay is idempotent: a snapshot is encoded while its shard keeps
//! serving, and may already hold some of the records after its log position; applying them
//! again, in order, ends in the same sessions. Only a `Put` (a session's first write) creates
//! a session; a change to a session that is absent is skipped (it moved under a new id the
//! snapshot already holds, or ended).
//!
//! Damage: a torn tail (the last record of the newest segment cut by a crash) is truncated with
//! one warning. Anything else that stops the records — a damaged record with data after it, a
//! hole in the sequence — stops replay there with an error naming the file and offset: what
//! came before is kept (the segment is cut back to it, a copy of the whole file and every later
//! segment set aside as `.corrupt`), and the log goes on from there.

use std::collections::HashMap;
use std::path::Path;

use super::format::{self, Entry, Owned, Stop};
use super::io::{self, SegmentName};
use crate::config::LimitsConfig;
use crate::error::StartError;
use crate::id::Locator;
use crate::seal::Sealer;
use crate::state::SessionState;
use crate::wire::Record;

/// A shard's sessions after replay.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub records: Vec<Record>,
    /// The sequence number of the shard's next record.
    pub next_lsn: u64,
    /// Records applied.
    pub applied: u64,
    /// Segments read.
    pub segments: usize,
    /// Records were applied from a segment of format version 1, which an older version wrote
    /// routing sessions by their id: what this shard holds now belongs to other shards too.
    pub legacy: bool,
    /// Records were applied from a plain segment (written with `storage.encrypt` off, or
    /// before it).
    pub plain: bool,
}

/// Replays the log of shard `shard` of a `shards`-shard layout from sequence number `from`
/// over `records` (its snapshot).
///
/// # Errors
/// [`StartError::Storage`] when a segment cannot be read (not damage: damage is handled).
pub(crate) fn replay(
    dir: &Path,
    shards: u32,
    shard: u32,
    from: u64,
    records: Vec<Record>,
    sealer: &Sealer,
) -> Result<Replayed, StartError> {
    let names: Vec<SegmentName> = io::list(dir)
        .map_err(|e| storage(dir, format!("cannot list the write-ahead log directory: {e}")))?
        .into_iter()
        .filter(|n| (n.shards, n.shard) == (shards, shard))
        .collect();
    // Segments wholly before `from` are not needed (deleted once a snapshot is durable).
    let first = names.iter().rposition(|n| n.base <= from).unwrap_or(0);
    let names = &names[first..];
    if names.is_empty() {
        return Ok(Replayed { records, next_lsn: from, ..Replayed::default() });
    }
    let mut sessions: HashMap<Locator, SessionState> = records.into_iter().collect();
    let mut out = Replayed { next_lsn: from, ..Replayed::default() };
    for (i, name) in names.iter().enumerate() {
        let path = name.path(dir);
        let bytes = std::fs::read(&path).map_err(|e| storage(&path, format!("cannot read log segment: {e}")))?;
        out.segments += 1;
        let last = i + 1 == names.len();
        let (header, entries, stop) = format::read_segment(&bytes, sealer);
        let plain = header.is_some_and(|h| h.key_id == 0);
        let stop = match header {
            Some(h) if (h.shard, h.shards, h.base) != (name.shard, name.shards, name.base) => Some(Stop::Damaged {
                offset: 0,
                why: format!("header says shard {} of {} from {}, not what its name says", h.shard, h.shards, h.base),
            }),
            Some(h) if h.base > out.next_lsn => Some(Stop::Damaged {
                offset: 0,
                why: format!(
                    "records {} to {} are missing (a write failed, or a segment is gone)",
                    out.next_lsn,
                    h.base - 1
                ),
            }),
            _ => {
                let mut gap = None;
                for (offset, entry) in entries {
                    if entry.lsn < out.next_lsn {
                        continue;
                    }
                    if entry.lsn > out.next_lsn {
                        gap = Some(Stop::Damaged {
                            offset,
                            why: format!(
                                "record {} follows record {}: records are missing",
                                entry.lsn,
                                out.next_lsn - 1
                            ),
                        });
                        break;
                    }
                    out.next_lsn += 1;
                    out.applied += 1;
                    out.legacy |= format::routed_by_id(&bytes);
                    out.plain |= plain;
                    apply(&mut sessions, entry);
                }
                gap.or(stop)
            }
        };
        match stop {
            None => {}
            Some(Stop::ForeignKey) => {
                return Err(storage(
                    &path,
                    "its records are sealed under a key this engine does not hold: was session.secret changed \
                     without listing the old one in session.previous_secrets? (or move the log directory away to \
                     start without these changes)"
                        .into(),
                ));
            }
            Some(Stop::Torn { offset }) if last => truncate(&path, offset, bytes.len()),
            Some(Stop::Torn { offset }) => log::warn!(
                "log segment {} ends in a record cut at offset {offset} (a crash); the next segment goes on",
                path.display()
            ),
            Some(Stop::Damaged { offset, why }) => {
                log::error!(
                    "log segment {} is damaged at offset {offset} ({why}): replay of shard {shard} stops there, \
                     keeping the {} records before it; a copy of the segment and the {} segments after it are \
                     set aside as .corrupt",
                    path.display(),
                    out.applied,
                    names.len() - i - 1
                );
                // The good records before the damage stay in place (the log goes on from them);
                // the whole damaged file, and every later one, are kept aside for inspection.
                keep_aside(&path, true);
                keep_good_part(&path, offset);
                for later in &names[i + 1..] {
                    keep_aside(&later.path(dir), false);
                }
                break;
            }
        }
    }
    out.records = sessions.into_iter().collect();
    Ok(out)
}

/// `path` + `.corrupt`: a copy (`copy`) or the file itself.
fn keep_aside(path: &Path, copy: bool) {
    let mut aside = path.to_owned().into_os_string();
    aside.push(".corrupt");
    let done = if copy { std::fs::copy(path, &aside).map(drop) } else { std::fs::rename(path, &aside) };
    if let Err(e) = done {
        log::error!("cannot set log segment {} aside: {e}", path.display());
    }
}

/// Cuts a damaged segment back to its records before `offset` (all of it for a bad header).
fn keep_good_part(path: &Path, offset: u64) {
    if let Err(e) = cut(path, offset) {
        log::error!("cannot cut damaged log segment {} back to its good records: {e}", path.display());
    }
}

/// Cuts a segment at `offset`, durably; a segment cut inside its header goes whole.
fn cut(path: &Path, offset: u64) -> std::io::Result<()> {
    if offset == 0 {
        return std::fs::remove_file(path);
    }
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(offset)?;
    file.sync_all()
}

fn storage(path: &Path, message: String) -> StartError {
    StartError::Storage { path: path.to_owned(), message }
}

/// Cuts a torn tail off the newest segment, so the next start does not meet it again (a
/// segment whose header itself was cut goes whole).
fn truncate(path: &Path, offset: u64, len: usize) {
    match cut(path, offset) {
        Ok(()) if offset == 0 => log::warn!(
            "log segment {}: created but its header cut by a crash ({len} bytes); removed (it held no record)",
            path.display()
        ),
        Ok(()) => log::warn!(
            "log segment {}: a record cut by a crash at offset {offset}; truncated ({} bytes dropped)",
            path.display(),
            len as u64 - offset
        ),
        Err(e) => log::warn!(
            "log segment {}: a record cut by a crash at offset {offset}; cannot truncate it ({e}), replay ignores it",
            path.display()
        ),
    }
}

/// Limits do not apply to replay: what was accepted once is restored.
fn unlimited() -> LimitsConfig {
    LimitsConfig {
        max_value_bytes: usize::MAX,
        max_keys: usize::MAX,
        max_sessions: usize::MAX,
        max_session_bytes: usize::MAX,
        ..LimitsConfig::default()
    }
}

/// Applies one record.
pub(crate) fn apply(sessions: &mut HashMap<Locator, SessionState>, entry: Entry) {
    let touch = |s: &mut SessionState| s.last_access_ms = s.last_access_ms.max(entry.time_ms);
    match entry.change {
        Owned::Put { id, state } => {
            sessions.insert(id, state);
        }
        Owned::Set { id, scope, key, value } => {
            if let Some(s) = sessions.get_mut(&id) {
                if let Err(e) = s.set(&scope, &key, &value, &unlimited()) {
                    log::warn!("log replay: a logged value cannot be set again ({e}); skipped");
                }
                touch(s);
            }
        }
        Owned::Remove { id, scope, key } => {
            if let Some(s) = sessions.get_mut(&id) {
                s.remove(&scope, &key);
                touch(s);
            }
        }
        Owned::Clear { id, scope } => {
            if let Some(s) = sessions.get_mut(&id) {
                s.clear(scope.as_deref());
                touch(s);
            }
        }
        Owned::Rotate { old, new, userid, persistent } => {
            if let Some(mut s) = sessions.remove(&old) {
                s.userid = userid;
                s.persistent = persistent;
                touch(&mut s);
                sessions.insert(new, s);
            }
        }
        Owned::Persist { id, persistent } => {
            if let Some(s) = sessions.get_mut(&id) {
                s.persistent = persistent;
                touch(s);
            }
        }
        Owned::Destroy { id } => {
            sessions.remove(&id);
        }
    }
}
