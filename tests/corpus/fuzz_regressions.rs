//! Replays the fuzz corpus and every input the fuzzers ever flagged, on the stable toolchain.
//!
//! For each target in `draco_session::fuzzing::TARGETS`, every file of `fuzz/corpus/<target>/`
//! and `fuzz/artifacts/<target>/` goes through the same function the fuzz target calls
//! (`fuzz/fuzz_targets/<target>.rs`). Each input must return without a panic and within a time
//! bound (generous, as this runs unoptimised): a crash, hang or quadratic blow-up found by
//! fuzzing stays fixed. See RELIABILITY.md for how the corpus was grown.

// The entry points are behind the `fuzzing` feature (`cargo test --all-features` has it).
#![cfg(feature = "fuzzing")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use draco_session::fuzzing;

/// Most time one input may take in a debug build. The slowest target (config: it compiles the
/// robot rules) takes well under this.
const PER_INPUT: Duration = Duration::from_secs(5);

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let files = inputs(target);
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut slowest = (Duration::ZERO, PathBuf::new());
    for path in &files {
        // A fuzzer running meanwhile replaces corpus files: skip one that just went away.
        let Ok(data) = std::fs::read(path) else { continue };
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| fuzzing::run(target, &data)));
        let took = t.elapsed();
        if took > slowest.0 {
            slowest = (took, path.clone());
        }
        if outcome.is_err() {
            failures.push(format!("{}: panicked", path.display()));
        } else if took > PER_INPUT {
            failures.push(format!("{}: took {took:?} (bound {PER_INPUT:?})", path.display()));
        }
    }
    eprintln!(
        "{target}: {} inputs in {:?}; slowest {:?} ({})",
        files.len(),
        started.elapsed(),
        slowest.0,
        slowest.1.display()
    );
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_corpus() {
    for target in fuzzing::TARGETS {
        assert!(!inputs(target).is_empty(), "fuzz/corpus/{target}/ is empty or missing");
    }
}

#[test]
fn session_id() {
    replay("session_id");
}

#[test]
fn cookie_header() {
    replay("cookie_header");
}

#[test]
fn user_agent() {
    replay("user_agent");
}

#[test]
fn snapshot() {
    replay("snapshot");
}

#[test]
fn log_segment() {
    replay("log_segment");
}

#[test]
fn config() {
    replay("config");
}

#[test]
fn csrf_token() {
    replay("csrf_token");
}
