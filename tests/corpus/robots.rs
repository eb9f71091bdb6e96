//! Robot detection measured on real User-Agent corpora: recall on crawler lists, false positives
//! on browser lists.
//!
//! The corpora live in `tests/data/user-agents` (sources and licences in its README;
//! `DRACO_UA_DATA` overrides the folder). Run with `cargo test --test corpus -- robots::
//! --nocapture` to see the table; `DRACO_UA_SHOW=1` also lists every miss and every false
//! positive.

use std::path::{Path, PathBuf};

use draco_session::{RobotDetector, config::RobotsConfig};

/// Least share of a crawler file that must be detected.
const MIN_RECALL: f64 = 0.95;
/// Largest share of a browser file that may be taken for robots.
const MAX_FALSE_POSITIVES: f64 = 0.001;

fn data_dir() -> PathBuf {
    let dir = match std::env::var_os("DRACO_UA_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/user-agents"),
    };
    assert!(
        dir.is_dir(),
        "User-Agent corpora not found at {}: the repository ships them in tests/data/user-agents; \
         DRACO_UA_DATA may name another folder holding crawlers-*.txt and browsers-*.txt",
        dir.display()
    );
    dir
}

/// The non-blank lines of a corpus file, as raw bytes (a file need not be UTF-8).
fn lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

/// The corpus files whose names start with `prefix`, sorted.
fn corpus(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(prefix) && name.ends_with(".txt")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {prefix}*.txt in {}", dir.display());
    files
}

struct Row {
    file: String,
    lines: usize,
    detected: usize,
    /// Lines on the wrong side: missed crawlers, or browsers taken for robots.
    wrong: Vec<String>,
}

impl Row {
    fn share(&self) -> f64 {
        self.detected as f64 / self.lines as f64
    }
}

fn measure(detector: &RobotDetector, files: &[PathBuf], crawlers: bool) -> Vec<Row> {
    files
        .iter()
        .map(|path| {
            let lines = lines(path);
            assert!(!lines.is_empty(), "{} is empty", path.display());
            let mut detected = 0;
            let mut wrong = Vec::new();
            for ua in &lines {
                let robot = detector.is_robot(Some(ua));
                detected += usize::from(robot);
                if robot != crawlers {
                    wrong.push(String::from_utf8_lossy(ua).into_owned());
                }
            }
            let file = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            Row { file, lines: lines.len(), detected, wrong }
        })
        .collect()
}

fn print(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!("{:<32} {:>7} {:>9} {:>8}", "file", "lines", "detected", "%");
    for row in rows {
        println!("{:<32} {:>7} {:>9} {:>7.2}%", row.file, row.lines, row.detected, 100.0 * row.share());
        if std::env::var_os("DRACO_UA_SHOW").is_some() {
            for ua in &row.wrong {
                println!("    {ua}");
            }
        }
    }
}

fn detector() -> RobotDetector {
    RobotDetector::from_config(&RobotsConfig::default()).expect("default robots config")
}

#[test]
fn crawlers_are_recognised() {
    let dir = data_dir();
    let rows = measure(&detector(), &corpus(&dir, "crawlers-"), true);
    print("crawlers: recall (detected as robots)", &rows);
    for row in &rows {
        assert!(
            row.share() >= MIN_RECALL,
            "{}: recall {:.2}% < {:.0}%; {} missed, e.g. {:?}",
            row.file,
            100.0 * row.share(),
            100.0 * MIN_RECALL,
            row.wrong.len(),
            &row.wrong[..row.wrong.len().min(10)]
        );
    }
}

#[test]
fn browsers_keep_their_sessions() {
    let dir = data_dir();
    let rows = measure(&detector(), &corpus(&dir, "browsers-"), false);
    print("browsers: false positives (taken for robots)", &rows);
    for row in &rows {
        assert!(
            row.share() <= MAX_FALSE_POSITIVES,
            "{}: {:.3}% false positives > {:.1}%: {:?}",
            row.file,
            100.0 * row.share(),
            100.0 * MAX_FALSE_POSITIVES,
            row.wrong
        );
    }
}
