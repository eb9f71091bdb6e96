//! Robot detection cost per User-Agent over a mixed sample of the corpora.
//!
//! `cargo bench --bench robot --features fuzzing -- --warm-up-time 1 --measurement-time 5` (the
//! feature exposes `RobotDetector::is_robot_uncached`, not part of the API). Reads the corpora
//! from `tests/data/user-agents` (or the folder `DRACO_UA_DATA` names).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use draco_session::{RobotDetector, config::RobotsConfig};

/// User-Agents per sample: every file contributes lines spread evenly over it.
const PER_FILE: usize = 400;

fn data_dir() -> PathBuf {
    let dir = match std::env::var_os("DRACO_UA_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/user-agents"),
    };
    assert!(dir.is_dir(), "User-Agent corpora not found at {}: set DRACO_UA_DATA", dir.display());
    dir
}

/// `PER_FILE` non-blank lines from each file named `prefix*.txt`, evenly spaced.
fn sample(dir: &Path, prefix: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus folder")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".txt"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).expect("corpus file");
        let lines: Vec<&[u8]> =
            bytes.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).collect();
        let step = (lines.len() / PER_FILE).max(1);
        out.extend(lines.iter().step_by(step).take(PER_FILE).map(|l| l.to_vec()));
    }
    out
}

fn robot(c: &mut Criterion) {
    let dir = data_dir();
    let browsers = sample(&dir, "browsers-");
    let crawlers = sample(&dir, "crawlers-");
    // Interleaved, so branch prediction cannot learn a run of one kind.
    let mut mixed = Vec::with_capacity(browsers.len() + crawlers.len());
    let (mut b, mut r) = (browsers.iter(), crawlers.iter());
    loop {
        match (b.next(), r.next()) {
            (None, None) => break,
            (x, y) => mixed.extend(x.into_iter().chain(y).cloned()),
        }
    }
    let detector = RobotDetector::from_config(&RobotsConfig::default()).expect("default robots config");

    // The rules alone: what a User-Agent not seen before on this thread costs.
    let mut group = c.benchmark_group("robot");
    for (name, uas) in [("mixed", &mixed), ("browsers", &browsers), ("crawlers", &crawlers)] {
        group.throughput(Throughput::Elements(uas.len() as u64));
        group.bench_function(name, |bench| {
            bench.iter(|| uas.iter().filter(|ua| detector.is_robot_uncached(Some(black_box(ua.as_slice())))).count())
        });
    }
    group.finish();

    // What the middleware pays for a User-Agent it judged recently (the remembered verdict):
    // 64 browsers' User-Agents, over and over.
    let mut group = c.benchmark_group("robot_seen_before");
    let recent = &browsers[..64.min(browsers.len())];
    group.throughput(Throughput::Elements(recent.len() as u64));
    group.bench_function("browsers", |bench| {
        bench.iter(|| recent.iter().filter(|ua| detector.is_robot(Some(black_box(ua.as_slice())))).count())
    });
    group.finish();
}

criterion_group!(benches, robot);
criterion_main!(benches);
