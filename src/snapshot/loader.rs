//! Start-up recovery: read every snapshot file, fall back to the previous generation of a
//! damaged one, re-hash sessions to the current shard count, drop the expired.

use std::collections::BTreeMap;
use std::path::Path;

use super::files::{self, FileName, Kind};
use super::format::{self, FormatError};
use crate::error::StartError;
use crate::fsutil;
use crate::seal::Sealer;
use crate::state::Lifetimes;
use crate::wal::io::SegmentName;
use crate::wal::replay;
use crate::wire::Record;

/// A shard's sessions as start-up (or a restarted worker) finds them: its newest good
/// snapshot with the log records after it applied.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub records: Vec<Record>,
    /// The sequence number of the shard's next log record.
    pub next_lsn: u64,
    /// Log records applied over the snapshot (not in any snapshot yet).
    pub replayed: u64,
}

/// What start-up found on disk.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Live sessions, by current shard.
    pub shards: Vec<Vec<Record>>,
    /// Each current shard's next log record, and the records replayed into it.
    pub next_lsn: Vec<u64>,
    pub replayed: Vec<u64>,
    /// Log segments of another shard count, to delete once the current layout is written.
    pub stale_logs: Vec<SegmentName>,
    /// Log records replayed, over all shards.
    pub log_records: u64,
    /// Generations of the current layout still on disk and not known bad, by shard, oldest first.
    pub generations: Vec<Vec<u64>>,
    /// First generation number never used in the directory.
    pub next_generation: u64,
    /// Snapshot files of another shard count (or of an older format, see `legacy`), to delete
    /// once the current layout is written.
    pub stale: Vec<FileName>,
    /// Some of the current layout's sessions came from files written when shards were chosen
    /// by the id (snapshot format 1 or 2, log format 1): the layout is rewritten in full.
    pub legacy: bool,
    /// Sessions of the current layout were read from plain files (written before
    /// `storage.encrypt`, or with it off) while it is on: the layout is rewritten sealed and
    /// the plain files removed.
    pub unsealed: bool,
    /// Files read successfully.
    pub files: usize,
    /// Damaged files renamed aside.
    pub corrupt: usize,
    /// Sessions dropped because they expired while the engine was down.
    pub expired: usize,
}

/// Why one file could not be used.
enum Problem {
    /// Damaged: set it aside and try the previous generation.
    Corrupt(String),
    /// Unreadable for a reason that is not damage: refuse to start rather than start empty.
    Fatal(StartError),
}

fn storage(path: &Path, message: String) -> StartError {
    StartError::Storage { path: path.to_owned(), message }
}

fn read_file(dir: &Path, name: FileName, sealer: &Sealer) -> Result<(Vec<Record>, format::Header), Problem> {
    let path = name.path(dir);
    let bytes =
        std::fs::read(&path).map_err(|e| Problem::Fatal(storage(&path, format!("cannot read snapshot: {e}"))))?;
    let (header, records) = format::decode(&bytes, sealer).map_err(|e: FormatError| {
        if e.is_corrupt() {
            Problem::Corrupt(e.to_string())
        } else {
            Problem::Fatal(storage(
                &path,
                format!("{e}, or move the snapshots directory away to start without these sessions"),
            ))
        }
    })?;
    if (header.shard, header.shards, header.generation) != (name.shard, name.shards, name.generation) {
        return Err(Problem::Corrupt(format!(
            "header says shard {} of {} generation {}, which does not match its file name",
            header.shard, header.shards, header.generation
        )));
    }
    Ok((records, header))
}

/// One shard of one layout: the newest generation that reads, setting damaged ones aside.
struct Group {
    records: Vec<Record>,
    /// The loaded snapshot's log position (0: none loaded).
    log_from: u64,
    /// Generations left on disk as `.snap`, oldest first.
    remaining: Vec<u64>,
    files: usize,
    corrupt: usize,
    /// The loaded snapshot is of a format whose writer chose shards by the id.
    legacy: bool,
    /// The loaded snapshot holds sessions in a plain body.
    plain: bool,
}

fn load_group(dir: &Path, shards: u32, shard: u32, generations: &[u64], sealer: &Sealer) -> Result<Group, StartError> {
    let mut remaining = generations.to_vec();
    let mut corrupt = 0;
    for &generation in generations.iter().rev() {
        let name = FileName { shards, shard, generation, kind: Kind::Snap };
        match read_file(dir, name, sealer) {
            Ok((records, header)) => {
                let legacy = header.version <= format::LAST_WITH_IDS;
                let plain = header.key_id == 0 && !records.is_empty();
                let log_from = header.log_from;
                return Ok(Group { records, log_from, remaining, files: 1, corrupt, legacy, plain });
            }
            Err(Problem::Fatal(e)) => return Err(e),
            Err(Problem::Corrupt(why)) => {
                corrupt += 1;
                remaining.retain(|g| *g != generation);
                let from = name.path(dir);
                let aside = name.with_kind(Kind::Corrupt).path(dir);
                let next = if remaining.is_empty() {
                    "no earlier generation is left: this shard's sessions are lost"
                } else {
                    "loading the previous generation instead"
                };
                match std::fs::rename(&from, &aside) {
                    Ok(()) => log::error!(
                        "snapshot {} is corrupt ({why}); renamed aside to {}; {next}",
                        from.display(),
                        aside.display()
                    ),
                    Err(e) => log::error!(
                        "snapshot {} is corrupt ({why}) and could not be renamed aside ({e}); {next}",
                        from.display()
                    ),
                }
            }
        }
    }
    Ok(Group { records: Vec::new(), log_from: 0, remaining, files: 0, corrupt, legacy: false, plain: false })
}

/// A group's snapshot, then its log replayed over it.
fn recover_group(
    dir: &Path,
    log_dir: &Path,
    layout: u32,
    shard: u32,
    generations: &[u64],
    sealer: &Sealer,
) -> Result<(Group, replay::Replayed), StartError> {
    let mut group = load_group(dir, layout, shard, generations, sealer)?;
    let records = std::mem::take(&mut group.records);
    let replayed = replay::replay(log_dir, layout, shard, group.log_from, records, sealer)?;
    Ok((group, replayed))
}

/// Groups the `.snap` files of `names` by (layout, shard), generations oldest first; a shard
/// with log segments and no snapshot is a group too.
fn groups(names: &[FileName], logs: &[SegmentName]) -> BTreeMap<(u32, u32), Vec<u64>> {
    let mut groups: BTreeMap<(u32, u32), Vec<u64>> = BTreeMap::new();
    for n in names.iter().filter(|n| n.kind == Kind::Snap) {
        groups.entry((n.shards, n.shard)).or_default().push(n.generation);
    }
    for n in logs {
        groups.entry((n.shards, n.shard)).or_default();
    }
    for gens in groups.values_mut() {
        gens.sort_unstable();
    }
    groups
}

/// Reads the whole snapshot directory for an engine of `shards` shards at `now_ms`.
///
/// # Errors
/// [`StartError::Storage`] when the directory or a file cannot be read, or a file was written
/// by a newer version. Damage is not an error: the file is set aside and the previous
/// generation used.
pub(crate) fn load_all(
    dir: &Path,
    log_dir: &Path,
    shards: usize,
    now_ms: u64,
    lifetimes: &Lifetimes,
    sealer: &Sealer,
) -> Result<Loaded, StartError> {
    let names = files::list(dir).map_err(|e| storage(dir, format!("cannot list snapshot directory: {e}")))?;
    let logs = crate::wal::io::list(log_dir)
        .map_err(|e| storage(log_dir, format!("cannot list the write-ahead log directory: {e}")))?;
    let next_generation = names.iter().map(|n| n.generation).max().map_or(1, |g| g + 1);
    for tmp in names.iter().filter(|n| n.kind == Kind::Tmp) {
        // An interrupted write: the generation before it is intact.
        let path = tmp.path(dir);
        match std::fs::remove_file(&path) {
            Ok(()) => log::warn!("removed unfinished snapshot write {}", path.display()),
            Err(e) => log::warn!("cannot remove unfinished snapshot write {}: {e}", path.display()),
        }
    }
    let groups: Vec<((u32, u32), Vec<u64>)> = groups(&names, &logs).into_iter().collect();

    // Files decode in parallel: one thread per CPU, each taking every n-th group.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(groups.len()).max(1);
    let results: Vec<Result<(Group, replay::Replayed), StartError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let groups = &groups;
                scope.spawn(move || {
                    groups
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|((layout, shard), gens)| recover_group(dir, log_dir, *layout, *shard, gens, sealer))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut per_thread: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| vec![Err(storage(dir, "snapshot loader thread panicked".into()))]))
            .map(Vec::into_iter)
            .collect();
        // Back to group order.
        (0..groups.len()).filter_map(|i| per_thread[i % threads].next()).collect()
    });

    let mut loaded = Loaded {
        shards: (0..shards).map(|_| Vec::new()).collect(),
        next_lsn: vec![0; shards],
        replayed: vec![0; shards],
        generations: vec![Vec::new(); shards],
        next_generation,
        ..Loaded::default()
    };
    for ((layout, shard), result) in groups.iter().map(|(key, _)| key).zip(results) {
        let (group, replayed) = result?;
        loaded.files += group.files;
        loaded.corrupt += group.corrupt;
        loaded.log_records += replayed.applied;
        loaded.unsealed |= sealer.sealing().is_some() && (group.plain || replayed.plain);
        if *layout as usize == shards && (*shard as usize) < shards && (group.legacy || replayed.legacy) {
            // Written when shards were chosen by the id: its sessions now belong to several
            // shards. Rewritten in full like another layout, then removed.
            loaded.legacy = true;
            loaded.next_lsn[*shard as usize] = replayed.next_lsn;
            loaded.stale.extend(group.remaining.iter().map(|&generation| FileName {
                shards: *layout,
                shard: *shard,
                generation,
                kind: Kind::Snap,
            }));
        } else if *layout as usize == shards && (*shard as usize) < shards {
            loaded.generations[*shard as usize] = group.remaining;
            loaded.next_lsn[*shard as usize] = replayed.next_lsn;
            loaded.replayed[*shard as usize] = replayed.applied;
        } else {
            loaded.stale_logs.extend(logs.iter().filter(|n| (n.shards, n.shard) == (*layout, *shard)));
            loaded.stale.extend(group.remaining.iter().map(|&generation| FileName {
                shards: *layout,
                shard: *shard,
                generation,
                kind: Kind::Snap,
            }));
        }
        for (locator, state) in replayed.records {
            if state.is_expired(lifetimes, now_ms) {
                loaded.expired += 1;
            } else {
                // Routing by the locator re-hashes a different layout and is a no-op otherwise.
                loaded.shards[crate::id::shard_of(&locator, shards)].push((locator, state));
            }
        }
    }
    if !loaded.stale.is_empty() || !loaded.stale_logs.is_empty() {
        // Several layouts on disk (a crash while the layout was being rewritten) can hold the
        // same session twice: keep the most recently used copy.
        for records in &mut loaded.shards {
            records.sort_unstable_by(|a, b| (a.0, b.1.last_access_ms).cmp(&(b.0, a.1.last_access_ms)));
            records.dedup_by(|later, earlier| later.0 == earlier.0);
        }
    }
    Ok(loaded)
}

/// Re-reads one shard of the current layout (after its worker was restarted): its snapshot,
/// then its log. Damage is handled as at start-up; any other failure is logged and yields no
/// sessions.
pub(crate) fn load_shard(
    dir: &Path,
    log_dir: &Path,
    shards: usize,
    shard: usize,
    now_ms: u64,
    lifetimes: &Lifetimes,
    sealer: &Sealer,
) -> Recovered {
    let (shards, shard) = (fsutil::as_u32(shards), fsutil::as_u32(shard));
    let names = match files::list(dir) {
        Ok(names) => names,
        Err(e) => {
            log::error!("shard {shard}: cannot list snapshot directory {}: {e}", dir.display());
            return Recovered { next_lsn: past_every_segment(log_dir, shards, shard), ..Recovered::default() };
        }
    };
    let gens = groups(&names, &[]).remove(&(shards, shard)).unwrap_or_default();
    match recover_group(dir, log_dir, shards, shard, &gens, sealer) {
        Ok((_, replayed)) => Recovered {
            records: replayed.records.into_iter().filter(|(_, s)| !s.is_expired(lifetimes, now_ms)).collect(),
            next_lsn: replayed.next_lsn,
            replayed: replayed.applied,
        },
        Err(e) => {
            log::error!("shard {shard}: cannot reload its snapshot and log: {e}");
            Recovered { next_lsn: past_every_segment(log_dir, shards, shard), ..Recovered::default() }
        }
    }
}

/// A sequence number past every segment of the shard (with a hole, which replay reports): a
/// shard that could not read its log back must not write over it.
fn past_every_segment(log_dir: &Path, shards: u32, shard: u32) -> u64 {
    let newest = crate::wal::io::list(log_dir)
        .unwrap_or_default()
        .iter()
        .filter(|n| (n.shards, n.shard) == (shards, shard))
        .map(|n| n.base)
        .max()
        .unwrap_or(0);
    newest.saturating_add(1 << 40)
}
