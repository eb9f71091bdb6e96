//! Segment file names, and the file-system steps of the log behind two small traits, so tests
//! can fail any write or fsync and watch when fsyncs happen.
//!
//! Segments live in `<storage.dir>/log/` and are named `shard-SSSS-of-NNNN.LLLLLLLLLLLLLLLLLLLL.log`:
//! shard `S` of a layout of `N` shards, `L` the sequence number of its first record. A segment
//! set aside as damaged gets `.corrupt` appended.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the log directory inside `storage.dir`.
pub(crate) const SUBDIR: &str = "log";

/// What a segment's name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentName {
    pub shards: u32,
    pub shard: u32,
    pub base: u64,
}

impl SegmentName {
    pub fn render(&self) -> String {
        format!("shard-{:04}-of-{:04}.{:020}.log", self.shard, self.shards, self.base)
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.render())
    }

    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_suffix(".log")?.strip_prefix("shard-")?;
        let (shard, rest) = rest.split_once("-of-")?;
        let (shards, base) = rest.split_once('.')?;
        let number = crate::fsutil::number::<u64>;
        let small = crate::fsutil::number::<u32>;
        Some(Self { shard: small(shard)?, shards: small(shards)?, base: number(base)? })
    }
}

/// Every segment in `dir`, ordered by layout, shard, base. A missing directory has none.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<SegmentName>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str().and_then(SegmentName::parse) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// An open segment, appended to by its shard's thread and fsynced by the syncer thread.
pub(crate) trait SegmentFile: Send + Sync + 'static {
    /// Appends `bytes` at the end (one `write` call in the common case).
    fn append(&self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
}

/// The log's file-system steps. [`Disk`] does them for real; tests inject faults.
pub(crate) trait LogIo: Send + Sync + 'static {
    /// Creates (or truncates) the segment at `path` and writes its `header`; it may keep up to
    /// `ahead` bytes written past its records.
    fn create(&self, path: &Path, header: &[u8], ahead: u64) -> io::Result<Box<dyn SegmentFile>>;
    /// Makes the directory's entries (a new segment) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default)]
pub(crate) struct Disk;

/// Zeros written per step, each under the segment's lock (its shard may be appending).
#[cfg(unix)]
const ZEROS: usize = 64 << 10;

/// A segment on disk. It keeps up to `ahead` bytes of zeros written past its records, so an
/// fsync flushes data only: an append that grows the file makes `fdatasync` commit the file's
/// size through the journal too, which took 1.3-4x as long on this machine's ext4
/// (`scripts/fsync_probe.py`, BENCHMARKS.md). Readers take zeros after the last record as the end.
struct DiskSegment {
    file: File,
    #[cfg_attr(not(unix), allow(dead_code))]
    ahead: u64,
    /// Where the next record goes, and how far the file is written (records, then zeros).
    ends: std::sync::Mutex<(u64, u64)>,
}

impl DiskSegment {
    fn ends(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        self.ends.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps between half of `ahead` and `ahead` bytes of zeros written past the records (on
    /// the syncer thread, before an fsync), a step at a time, never where a record is or goes.
    /// Never more than [`ahead_allowed`] of the free space: zeros must not be what fills a disk
    /// (on a nearly full one there are none), and running out of room while writing them is no
    /// failure of the log (the records are written; the next fsync simply commits the size).
    #[cfg(unix)]
    fn zero_ahead(&self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let zeros = [0u8; ZEROS];
        let mut ahead = None;
        loop {
            let mut ends = self.ends();
            let (next, written) = *ends;
            if written >= next + self.ahead / 2 {
                return Ok(());
            }
            // Asked once per call, only when zeros are due (once per half of `ahead` appended).
            let ahead = *ahead.get_or_insert_with(|| ahead_allowed(self.ahead, crate::fsutil::free_space(&self.file)));
            if written >= next + ahead / 2 {
                return Ok(());
            }
            let from = written.max(next);
            match self.file.write_all_at(&zeros, from) {
                Ok(()) => ends.1 = from + ZEROS as u64,
                Err(e) if crate::fsutil::out_of_space(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Free space below which a segment writes no zeros ahead at all.
pub(crate) const AHEAD_MIN_FREE: u64 = 4 << 20;

/// How many zeros a segment may keep ahead of its records, given the configured `ahead` and
/// the file system's `free` bytes (`None`: unknown, the configured amount): at most an eighth
/// of the free space, and none below [`AHEAD_MIN_FREE`].
pub(crate) fn ahead_allowed(ahead: u64, free: Option<u64>) -> u64 {
    match free {
        None => ahead,
        Some(free) if free < AHEAD_MIN_FREE => 0,
        Some(free) => ahead.min(free / 8),
    }
}

impl SegmentFile for DiskSegment {
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut ends = self.ends();
        #[cfg(unix)]
        std::os::unix::fs::FileExt::write_all_at(&self.file, bytes, ends.0)?;
        #[cfg(not(unix))]
        (&self.file).write_all(bytes)?;
        ends.0 += bytes.len() as u64;
        ends.1 = ends.1.max(ends.0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        #[cfg(unix)]
        self.zero_ahead()?;
        self.file.sync_data()
    }
}

impl LogIo for Disk {
    fn create(&self, path: &Path, header: &[u8], ahead: u64) -> io::Result<Box<dyn SegmentFile>> {
        let mut file = crate::fsutil::private_file().open(path)?;
        file.write_all(header)?;
        let len = header.len() as u64;
        Ok(Box::new(DiskSegment { file, ahead, ends: std::sync::Mutex::new((len, len)) }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        crate::fsutil::sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_ahead_take_a_small_share_of_the_free_space() {
        let ahead = 4 << 20;
        assert_eq!(ahead_allowed(ahead, None), ahead);
        assert_eq!(ahead_allowed(ahead, Some(u64::MAX)), ahead);
        assert_eq!(ahead_allowed(ahead, Some(16 << 20)), 2 << 20);
        assert_eq!(ahead_allowed(ahead, Some(AHEAD_MIN_FREE)), AHEAD_MIN_FREE / 8);
        assert_eq!(ahead_allowed(ahead, Some(AHEAD_MIN_FREE - 1)), 0);
        assert_eq!(ahead_allowed(ahead, Some(0)), 0);
    }

    #[test]
    fn names_round_trip_and_sort_by_base() {
        let n = SegmentName { shards: 4, shard: 2, base: 123 };
        assert_eq!(n.render(), "shard-0002-of-0004.00000000000000000123.log");
        assert_eq!(SegmentName::parse(&n.render()), Some(n));
        assert!(SegmentName { base: 9, ..n } < SegmentName { base: 10, ..n });
        for bad in ["shard-0002-of-0004.12.log.corrupt", "shard-1-of-2.snap", "x.log", "shard-a-of-2.1.log"] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }
}
