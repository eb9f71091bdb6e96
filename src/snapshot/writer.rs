//! The snapshot writer thread: the only place that touches snapshot files after start-up.
//! Workers hand it encoded chunks through a crossbeam channel and never wait for the disk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::files::{FileName, Kind, SnapshotIo};
use super::format::{self, Body};
use super::loader::{self, Recovered};
use crate::clock::Clock;
use crate::fsutil;
use crate::seal::Sealer;
use crate::state::Lifetimes;

/// Called on the writer thread when a write is durable (or failed).
pub(crate) type WriteDone = Box<dyn FnOnce(io::Result<Written>) + Send>;
/// Called on the writer thread with the sessions of a reloaded shard.
pub(crate) type LoadDone = Box<dyn FnOnce(Recovered) + Send>;

/// Work for the writer thread.
pub(crate) enum Job {
    /// Write one shard's snapshot from encoded records; it holds every log record before
    /// `log_from`.
    Write { shard: usize, entries: u64, log_from: u64, body: Body, done: WriteDone },
    /// Write one shard's snapshot for an erasure ([`Writer::erase`]).
    Erase { shard: usize, entries: u64, log_from: u64, body: Body, done: WriteDone },
    /// Read one shard's newest good snapshot back (its worker was restarted).
    Load { shard: usize, done: LoadDone },
    /// Finish the queued jobs, then end the thread.
    Stop,
}

/// A durable snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub generation: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// Writes generations of shard snapshots and keeps the newest two of each shard.
pub(crate) struct Writer<I: SnapshotIo> {
    dir: PathBuf,
    /// The write-ahead log's directory: segments a durable snapshot made useless are deleted.
    log_dir: PathBuf,
    shards: usize,
    next_generation: u64,
    /// Generations on disk, by shard, oldest first.
    kept: Vec<Vec<u64>>,
    io: I,
    clock: Arc<dyn Clock>,
    lifetimes: Lifetimes,
    /// Seals the bodies written (`storage.encrypt`), opens those read back.
    sealer: Arc<Sealer>,
}

/// Generations kept per shard: the newest, and the previous one in case the newest is damaged.
const KEEP: usize = 2;

impl<I: SnapshotIo> Writer<I> {
    #[allow(clippy::too_many_arguments, reason = "the writer's whole configuration")]
    pub fn new(
        dir: PathBuf,
        log_dir: PathBuf,
        shards: usize,
        next_generation: u64,
        kept: Vec<Vec<u64>>,
        io: I,
        clock: Arc<dyn Clock>,
        lifetimes: Lifetimes,
        sealer: Arc<Sealer>,
    ) -> Self {
        Self { dir, log_dir, shards, next_generation, kept, io, clock, lifetimes, sealer }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one generation: temp file, fsync, atomic rename, fsync of the directory, then
    /// drops generations older than the previous one. On any failure the earlier generations
    /// are untouched.
    pub fn write(&mut self, shard: usize, entries: u64, log_from: u64, chunks: &[Vec<u8>]) -> io::Result<Written> {
        let body = self.body(shard, chunks);
        self.write_body(shard, entries, log_from, &body)
    }

    /// The body of plain `chunks` of shard `shard`: sealed when `storage.encrypt` is on.
    pub fn body(&self, shard: usize, chunks: &[Vec<u8>]) -> Body {
        match self.sealer.sealing() {
            Some(sealer) => {
                let mut blocks = format::BlockSealer::new(sealer, fsutil::as_u32(shard), fsutil::as_u32(self.shards));
                chunks.iter().for_each(|c| blocks.seal(c));
                blocks.finish()
            }
            None => Body::plain(chunks.to_vec()),
        }
    }

    /// [`write`](Self::write) of a body already made (a snapshot run seals its own).
    pub fn write_body(&mut self, shard: usize, entries: u64, log_from: u64, body: &Body) -> io::Result<Written> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let name = FileName::snap(self.shards, shard, generation);
        let (index, shards) = (fsutil::as_u32(shard), fsutil::as_u32(self.shards));
        let chunks = &body.parts[..];
        let header =
            format::header_for(index, shards, generation, self.clock.now_ms(), entries, log_from, body.key_id, chunks);
        let head = header.to_bytes();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(chunks.len() + 1);
        parts.push(&head);
        parts.extend(chunks.iter().map(Vec::as_slice));
        let tmp = name.with_kind(Kind::Tmp).path(&self.dir);
        let path = name.path(&self.dir);
        if let Err(e) = self.io.write_synced(&tmp, &parts).and_then(|()| self.io.rename(&tmp, &path)) {
            let _ = self.io.remove(&tmp);
            return Err(e);
        }
        self.kept[shard].push(generation);
        // Until the directory is synced the rename may not survive a power cut: keep every
        // older generation until then.
        self.io.sync_dir(&self.dir)?;
        while self.kept[shard].len() > KEEP {
            let old = self.kept[shard].remove(0);
            let old = FileName::snap(self.shards, shard, old).path(&self.dir);
            if let Err(e) = self.io.remove(&old) {
                log::warn!("cannot remove old snapshot {}: {e}", old.display());
            }
        }
        self.drop_old_log(shard);
        Ok(Written { generation, entries, bytes: (format::HEADER_LEN as u64) + header.body_len })
    }

    /// Deletes the log segments of `shard` that only hold records the older of its two kept
    /// snapshots already has (so either generation can still be replayed over). Never the
    /// newest segment: its shard may be appending to it.
    fn drop_old_log(&self, shard: usize) {
        let Some(&oldest) = self.kept[shard].first() else { return };
        let path = FileName::snap(self.shards, shard, oldest).path(&self.dir);
        let mut head = [0u8; format::HEADER_LEN];
        let keep_from = match std::fs::File::open(&path).and_then(|mut f| {
            use std::io::Read;
            let n = f.read(&mut head)?;
            Ok(format::Header::parse(&head[..n]))
        }) {
            Ok(Ok(header)) => header.log_from,
            _ => return,
        };
        let (shards, index) = (fsutil::as_u32(self.shards), fsutil::as_u32(shard));
        let segments: Vec<_> = match crate::wal::io::list(&self.log_dir) {
            Ok(all) => all.into_iter().filter(|n| (n.shards, n.shard) == (shards, index)).collect(),
            Err(e) => {
                log::warn!("cannot list the write-ahead log directory {}: {e}", self.log_dir.display());
                return;
            }
        };
        // Segment i holds records from its base up to the next segment's base.
        for pair in segments.windows(2) {
            if pair[1].base <= keep_from {
                let old = pair[0].path(&self.log_dir);
                if let Err(e) = std::fs::remove_file(&old) {
                    log::warn!("cannot remove old log segment {}: {e}", old.display());
                }
            }
        }
    }

    /// Writes `shard`'s snapshot for an erasure: twice (two generations holding the same
    /// sessions, so the shard keeps a fallback), then deletes every other file of the shard —
    /// older generations, unfinished writes, files set aside as damaged — and every log
    /// segment of the shard whose records all come before `keep_log` (damaged ones whatever
    /// they hold). Unlike a plain write, a file that cannot be deleted is an error: the
    /// erasure is not done.
    pub fn erase(
        &mut self,
        shard: usize,
        entries: u64,
        log_from: u64,
        keep_log: u64,
        body: &Body,
    ) -> io::Result<Written> {
        self.write_body(shard, entries, log_from, body)?;
        let written = self.write_body(shard, entries, log_from, body)?;
        let (shards, index) = (fsutil::as_u32(self.shards), fsutil::as_u32(shard));
        let kept = [written.generation - 1, written.generation];
        for name in super::files::list(&self.dir)? {
            let clean = name.kind == Kind::Snap && kept.contains(&name.generation);
            if (name.shards, name.shard) == (shards, index) && !clean {
                gone(self.io.remove(&name.path(&self.dir)))?;
            }
        }
        self.kept[shard].retain(|g| kept.contains(g));
        self.io.sync_dir(&self.dir)?;
        if !self.log_dir.is_dir() {
            return Ok(written);
        }
        for entry in std::fs::read_dir(&self.log_dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            let (segment, damaged) = match name.strip_suffix(".corrupt") {
                Some(name) => (crate::wal::io::SegmentName::parse(name), true),
                None => (crate::wal::io::SegmentName::parse(name), false),
            };
            if segment.is_some_and(|n| (n.shards, n.shard) == (shards, index) && (damaged || n.base < keep_log)) {
                gone(std::fs::remove_file(&path))?;
            }
        }
        fsutil::sync_dir(&self.log_dir)?;
        Ok(written)
    }

    /// Serves jobs until [`Job::Stop`] or until every sender is gone.
    ///
    /// A directory that stays unwritable fails every shard at every interval: the disk's
    /// `outage` tells it in a few lines rather than a flood.
    pub fn run(mut self, jobs: Receiver<Job>, metrics: crate::telemetry::Io, outage: &crate::outage::Outage) {
        while let Ok(job) = jobs.recv() {
            match job {
                Job::Write { shard, entries, log_from, body, done } => {
                    let started = std::time::Instant::now();
                    let result = self.write_body(shard, entries, log_from, &body);
                    drop(body);
                    match &result {
                        Ok(w) => {
                            metrics.duration.record(started.elapsed());
                            metrics.bytes.increment(w.bytes);
                        }
                        Err(_) => metrics.failures.increment(1),
                    }
                    match &result {
                        Err(e) => {
                            log::debug!("shard {shard}: snapshot write failed, the previous generation stays: {e}");
                            let _ = outage.failed(format_args!(
                                "snapshot write to {} failed (the previous generation stays in place): {e}",
                                self.dir.display()
                            ));
                        }
                        Ok(_) => {
                            let _ = outage.recovered();
                        }
                    }
                    done(result);
                }
                Job::Erase { shard, entries, log_from, body, done } => {
                    let result = self.erase(shard, entries, log_from, log_from, &body);
                    if let Err(e) = &result {
                        log::error!("shard {shard}: the snapshot of an erasure failed: {e}");
                    }
                    done(result);
                }
                Job::Load { shard, done } => {
                    let recovered = loader::load_shard(
                        &self.dir,
                        &self.log_dir,
                        self.shards,
                        shard,
                        self.clock.now_ms(),
                        &self.lifetimes,
                        &self.sealer,
                    );
                    done(recovered);
                }
                Job::Stop => break,
            }
        }
        log::debug!("snapshot writer for {} stopped", self.dir.display());
    }
}

/// A removal's outcome, a file already gone counting as removed.
fn gone(removed: io::Result<()>) -> io::Result<()> {
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::LimitsConfig;
    use crate::id::{Keyring, Locator};
    use crate::snapshot::files::{self, Fs};
    use crate::state::SessionState;

    /// Fails the `fail_at`-th file-system step (0-based), counting every step.
    struct Faulty {
        real: Fs,
        step: usize,
        fail_at: usize,
    }

    impl Faulty {
        fn tick(&mut self, what: &str) -> io::Result<()> {
            let step = self.step;
            self.step += 1;
            if step == self.fail_at { Err(io::Error::other(format!("injected fault in {what}"))) } else { Ok(()) }
        }
    }

    impl SnapshotIo for Faulty {
        fn write_synced(&mut self, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
            if self.step == self.fail_at {
                // A torn write: half the bytes reach the temp file, then the error.
                let all: Vec<u8> = parts.concat();
                std::fs::write(path, &all[..all.len() / 2])?;
            }
            self.tick("write")?;
            self.real.write_synced(path, parts)
        }
        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.tick("rename")?;
            self.real.rename(from, to)
        }
        fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
            self.tick("sync_dir")?;
            self.real.sync_dir(dir)
        }
        fn remove(&mut self, path: &Path) -> io::Result<()> {
            self.tick("remove")?;
            self.real.remove(path)
        }
    }

    fn sealer() -> Arc<Sealer> {
        Arc::new(Sealer::for_tests())
    }

    fn lifetimes() -> Lifetimes {
        Lifetimes { volatile_ms: 3_600_000, persistent_ms: 3_600_000, absolute_ms: 0 }
    }

    fn encoded(records: &[(Locator, SessionState)]) -> Vec<Vec<u8>> {
        let mut chunk = Vec::new();
        for (id, s) in records {
            format::encode_record(&mut chunk, id, s).unwrap();
        }
        vec![chunk]
    }

    fn generation(n: u64) -> Vec<(Locator, SessionState)> {
        let ring = Keyring::from_secrets(b"writer test secret writer test secret", &[]).unwrap();
        (0..n)
            .map(|i| {
                let mut s = SessionState::new(1_000);
                s.set("g", "n", n.to_string().into_bytes(), &LimitsConfig::default()).unwrap();
                s.set("g", "i", i.to_string().into_bytes(), &LimitsConfig::default()).unwrap();
                (*ring.generate().locator(), s)
            })
            .collect()
    }

    #[test]
    fn keeps_two_generations() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000));
        let mut w = Writer::new(
            dir.path().into(),
            dir.path().join("log"),
            1,
            1,
            vec![vec![]],
            Fs,
            clock,
            lifetimes(),
            sealer(),
        );
        for n in 1..=4 {
            let g = generation(n);
            assert_eq!(w.write(0, n, 0, &encoded(&g)).unwrap().generation, n);
        }
        let names: Vec<u64> = files::list(dir.path()).unwrap().iter().map(|n| n.generation).collect();
        assert_eq!(names, [3, 4]);
        assert_eq!(
            loader::load_shard(dir.path(), &dir.path().join("log"), 1, 0, 1_000, &lifetimes(), &Sealer::for_tests())
                .records
                .len(),
            4
        );
    }

    /// A write that fails at any step leaves the previous generation loadable; a failure
    /// after the rename leaves the new one.
    #[test]
    fn a_failed_write_leaves_the_previous_generation_intact() {
        let steps = ["write", "rename", "sync_dir", "remove old generation"];
        for (fail_at, step) in steps.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(ManualClock::new(1_000));
            let mut good = Writer::new(
                dir.path().into(),
                dir.path().join("log"),
                1,
                1,
                vec![vec![]],
                Fs,
                clock.clone(),
                lifetimes(),
                sealer(),
            );
            good.write(0, 1, 0, &encoded(&generation(1))).unwrap();
            let second = generation(2);
            good.write(0, 2, 0, &encoded(&second)).unwrap();

            let faulty = Faulty { real: Fs, step: 0, fail_at };
            let mut w = Writer::new(
                dir.path().into(),
                dir.path().join("log"),
                1,
                3,
                vec![vec![1, 2]],
                faulty,
                clock,
                lifetimes(),
                sealer(),
            );
            let result = w.write(0, 3, 0, &encoded(&generation(3)));
            let loaded = loader::load_shard(
                dir.path(),
                &dir.path().join("log"),
                1,
                0,
                1_000,
                &lifetimes(),
                &Sealer::for_tests(),
            )
            .records;
            let names = files::list(dir.path()).unwrap();
            assert!(names.iter().all(|n| n.kind == Kind::Snap), "{step}: leftovers {names:?}");
            match *step {
                "write" | "rename" => {
                    assert!(result.is_err(), "{step}");
                    assert_eq!(loaded, second, "{step}: previous generation must load");
                }
                "sync_dir" => {
                    assert!(result.is_err(), "{step}");
                    // Renamed but maybe not durable: generation 2 must still be on disk.
                    assert_eq!(loaded.len(), 3, "{step}");
                    assert!(names.iter().any(|n| n.generation == 2), "{step}: {names:?}");
                }
                _ => {
                    assert!(result.is_ok(), "{step}: a failed clean-up is not a failed write");
                    assert_eq!(loaded.len(), 3, "{step}");
                }
            }
            // The writer recovers: the next write works and leaves no stray file behind.
            w.io.fail_at = usize::MAX;
            w.write(0, 4, 0, &encoded(&generation(4))).unwrap();
            assert_eq!(
                loader::load_shard(
                    dir.path(),
                    &dir.path().join("log"),
                    1,
                    0,
                    1_000,
                    &lifetimes(),
                    &Sealer::for_tests()
                )
                .records
                .len(),
                4,
                "{step}"
            );
        }
    }
}
