//! Snapshot file names and the file-system operations behind a small trait, so tests can make
//! any single step fail.
//!
//! Files live in `<storage.dir>/snapshots/` and are named
//! `shard-SSSS-of-NNNN.GGGGGGGGGGGG.snap`: shard `S` of a layout of `N` shards, generation `G`.
//! Writes go to the same name plus `.tmp`; a damaged file is renamed aside to `.corrupt`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::{as_u32, number, private_file, sync_dir};

/// Name of the snapshot directory inside `storage.dir`.
pub(crate) const SUBDIR: &str = "snapshots";

/// What a name in the snapshot directory says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FileName {
    pub shards: u32,
    pub shard: u32,
    pub generation: u64,
    pub kind: Kind,
}

/// The state of a file, by its suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// A complete snapshot (`.snap`).
    Snap,
    /// An unfinished write (`.snap.tmp`).
    Tmp,
    /// A damaged file kept aside (`.snap.corrupt`).
    Corrupt,
}

impl FileName {
    pub fn snap(shards: usize, shard: usize, generation: u64) -> Self {
        Self { shards: as_u32(shards), shard: as_u32(shard), generation, kind: Kind::Snap }
    }

    pub fn with_kind(self, kind: Kind) -> Self {
        Self { kind, ..self }
    }

    pub fn render(&self) -> String {
        let suffix = match self.kind {
            Kind::Snap => "",
            Kind::Tmp => ".tmp",
            Kind::Corrupt => ".corrupt",
        };
        format!("shard-{:04}-of-{:04}.{:012}.snap{suffix}", self.shard, self.shards, self.generation)
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.render())
    }

    pub fn parse(name: &str) -> Option<Self> {
        let (stem, kind) = if let Some(s) = name.strip_suffix(".snap") {
            (s, Kind::Snap)
        } else if let Some(s) = name.strip_suffix(".snap.tmp") {
            (s, Kind::Tmp)
        } else if let Some(s) = name.strip_suffix(".snap.corrupt") {
            (s, Kind::Corrupt)
        } else {
            return None;
        };
        let rest = stem.strip_prefix("shard-")?;
        let (shard, rest) = rest.split_once("-of-")?;
        let (shards, generation) = rest.split_once('.')?;
        Some(Self { shard: number(shard)?, shards: number(shards)?, generation: number(generation)?, kind })
    }
}

/// Every name in `dir` that is a snapshot file of some kind.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<FileName>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(name) = entry?.file_name().to_str().and_then(FileName::parse) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// The file-system steps of writing a snapshot. [`Fs`] does them for real; tests inject faults.
pub(crate) trait SnapshotIo: Send + 'static {
    /// Creates (or truncates) `path`, writes `parts` in order, and fsyncs the file.
    fn write_synced(&mut self, path: &Path, parts: &[&[u8]]) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the directory's entries (renames, removals) durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub(crate) struct Fs;

impl SnapshotIo for Fs {
    fn write_synced(&mut self, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
        let mut file = private_file().open(path)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        sync_dir(dir)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_by_layout_shard_generation() {
        for kind in [Kind::Snap, Kind::Tmp, Kind::Corrupt] {
            let n = FileName::snap(16, 3, 1_234).with_kind(kind);
            assert_eq!(FileName::parse(&n.render()), Some(n), "{}", n.render());
        }
        assert_eq!(FileName::snap(4, 1, 7).render(), "shard-0001-of-0004.000000000007.snap");
        for bad in ["secret.key", "shard-1-of-2.3.json", "shard--of-2.3.snap", "shard-a-of-2.3.snap", "x.snap"] {
            assert_eq!(FileName::parse(bad), None, "{bad}");
        }
        assert!(FileName::snap(4, 1, 7) < FileName::snap(4, 1, 8));
    }
}
