//! `draco-session`: looks into an engine's data directory (cargo feature `cli`).
//!
//! - `draco-session inspect DIR [--json]`: what start-up would load — sessions, logged in,
//!   persistent, users, bytes (total and largest), per shard — and every snapshot file and log
//!   segment with its size.
//! - `draco-session verify DIR`: reads every snapshot file and log segment; exit 0 when all are
//!   good, 1 naming each damaged file and offset, 2 when it cannot run (usage, secret, I/O).
//!
//! The secret comes from `$DRACO_SESSION_SECRET`, else the `--config` file's `session.secret`
//! (and `previous_secrets`), else `DIR/secret.key`, as the engine finds it. Both commands only
//! read, and are safe on a directory a running engine holds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use draco_session::Config;
use draco_session::tools::{self, Problem, Report, ToolError};

/// Looks into a draco-session data directory (storage.dir), reading only.
#[derive(Debug, Parser)]
#[command(name = "draco-session", version)]
struct Cli {
    /// A config file whose session.secret (and previous_secrets) opens the data; without it,
    /// $DRACO_SESSION_SECRET, else DIR/secret.key.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sessions, logged in, persistent, users and bytes, per shard; snapshot files and log segments.
    Inspect {
        /// The data directory (storage.dir).
        dir: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Reads every snapshot file and log segment: exit 0 when all are good, 1 naming each damaged one.
    Verify {
        /// The data directory (storage.dir).
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("draco-session: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, ToolError> {
    let config = match &cli.config {
        Some(path) => Some(Config::from_file(path).map_err(|e| ToolError::Secret(e.to_string()))?),
        None => None,
    };
    match &cli.command {
        Command::Inspect { dir, json } => {
            let ring = tools::keyring(dir, config.as_ref())?;
            let report = tools::inspect(dir, &ring, config.as_ref())?;
            if *json {
                let text = serde_json::to_string_pretty(&report)
                    .map_err(|e| ToolError::Io { path: dir.clone(), message: e.to_string() })?;
                println!("{text}");
            } else {
                print_report(dir, &report);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir } => {
            let ring = tools::keyring(dir, config.as_ref())?;
            let problems = tools::verify(dir, &ring)?;
            Ok(print_problems(dir, &problems))
        }
    }
}

fn print_report(dir: &Path, report: &Report) {
    let c = &report.counts;
    println!("{}{}", dir.display(), if report.engine_running { " (an engine is running on it)" } else { "" });
    println!(
        "sessions {}  logged in {}  persistent {}  users {}  expired {}  bytes {}  largest {}",
        c.sessions, c.logged_in, c.persistent, report.users, c.expired, c.bytes, c.largest
    );
    println!();
    println!(
        "{:>13} {:>12} {:>8} {:>9} {:>9} {:>10} {:>12} {:>10}",
        "shard", "generation", "log", "sessions", "logged in", "persistent", "bytes", "largest"
    );
    for s in &report.shards {
        let generation = s.generation.map_or_else(|| "-".to_owned(), |g| g.to_string());
        let shard = format!("{} of {}", s.shard, s.shards);
        let k = &s.counts;
        println!(
            "{shard:>13} {generation:>12} {:>8} {:>9} {:>9} {:>10} {:>12} {:>10}",
            s.log_records, k.sessions, k.logged_in, k.persistent, k.bytes, k.largest
        );
    }
    println!();
    for f in &report.files {
        println!("{:>12}  {:<8} {}", f.size, f.kind, f.path);
    }
    for p in &report.problems {
        println!("{}: {}", if p.damage { "damaged" } else { "note" }, describe(p));
    }
}

fn describe(p: &Problem) -> String {
    format!("{} at offset {}: {}", p.file.display(), p.offset, p.why)
}

fn print_problems(dir: &Path, problems: &[Problem]) -> ExitCode {
    for p in problems.iter().filter(|p| !p.damage) {
        println!("note: {}", describe(p));
    }
    let damaged: Vec<&Problem> = problems.iter().filter(|p| p.damage).collect();
    for p in &damaged {
        println!("damaged: {}", describe(p));
    }
    if damaged.is_empty() {
        println!("{}: every snapshot file and log segment reads", dir.display());
        ExitCode::SUCCESS
    } else {
        println!("{}: {} damaged", dir.display(), damaged.len());
        ExitCode::from(1)
    }
}
