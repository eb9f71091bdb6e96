//! `draco-session`: looks into an engine's data directory or Redis server, and moves sessions
//! between the two (cargo feature `cli`; Redis URLs need `redis` too).
//!
//! - `draco-session inspect DIR|REDIS_URL [--json]`: what start-up would load — sessions,
//!   logged in, persistent, users, bytes (total and largest), per shard — and every snapshot
//!   file and log segment with its size; of a Redis server, its sessions counted.
//! - `draco-session verify DIR`: reads every snapshot file and log segment; exit 0 when all are
//!   good, 1 naming each damaged file and offset, 2 when it cannot run (usage, secret, I/O).
//! - `draco-session migrate --from DIR|REDIS_URL --to DIR|REDIS_URL`: copies every live
//!   session, so that every cookie opens it on the destination (the same secret); can be run
//!   again after an interruption. A progress line on a terminal, a summary at the end.
//! - `draco-session erase-user DIR|REDIS_URL USERID`: ends every session of the user and
//!   rewrites the files so no copy of their data remains (`SessionEngine::erase_user`), with an
//!   engine started for the purpose and shut down after. On a data directory it refuses (exit 1)
//!   while a running engine holds it.
//!
//! The secret comes from `$DRACO_SESSION_SECRET`, else the `--config` file's `session.secret`
//! (and `previous_secrets`), else `DIR/secret.key`, as the engine finds it; none of the commands
//! creates a key file (but `migrate` into a directory copies the one the secret came from).
//! `inspect` and `verify` only read, and are safe on a directory a running engine holds;
//! `migrate` refuses to read one (stop the engine first) or to write into one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use draco_session::tools::{self, Problem, Report, ToolError};
use draco_session::{Config, SessionEngine};

/// Looks into a draco-session data directory (storage.dir); erases a user's sessions offline.
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
        /// The data directory (storage.dir), or a Redis URL (redis://HOST:PORT[/DB], rediss://...).
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
    /// Copies every live session from one store to another: cookies keep working with the same secret.
    Migrate {
        /// Where the sessions are: a data directory (its engine stopped), or a Redis URL.
        #[arg(long)]
        from: String,
        /// Where they go: an empty data directory, or a Redis URL.
        #[arg(long)]
        to: String,
    },
    /// Ends every session of a user and rewrites the files so none of their data remains; refuses
    /// a data directory a running engine holds.
    EraseUser {
        /// The data directory (storage.dir), or a Redis URL (redis://HOST:PORT[/DB], rediss://...).
        target: PathBuf,
        /// The user id (a positive integer).
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        userid: u64,
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
            let report = match tools::Place::parse(&dir.to_string_lossy()) {
                tools::Place::Redis(url) => tools::inspect_redis(&url, config.as_ref())?,
                tools::Place::Dir(dir) => {
                    let ring = tools::keyring(&dir, config.as_ref())?;
                    tools::inspect(&dir, &ring, config.as_ref())?
                }
            };
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
        Command::EraseUser { target, userid } => erase_user(target, *userid, config),
        Command::Migrate { from, to } => migrate(&tools::Place::parse(from), &tools::Place::parse(to), config.as_ref()),
    }
}

fn migrate(from: &tools::Place, to: &tools::Place, config: Option<&Config>) -> Result<ExitCode, ToolError> {
    use std::io::{IsTerminal as _, Write as _};
    let terminal = std::io::stderr().is_terminal();
    let mut last = std::time::Instant::now();
    let mut progress = |what: &str, n: u64, total: Option<u64>| {
        let done = total == Some(n);
        if !terminal || (!done && last.elapsed() < std::time::Duration::from_millis(100)) {
            return;
        }
        last = std::time::Instant::now();
        let line = match total {
            Some(total) if total > 0 => {
                let width = 30;
                let filled = usize::try_from(n * width / total).unwrap_or(0).min(30);
                format!("[{}{}] {n}/{total} sessions {what}", "#".repeat(filled), " ".repeat(30 - filled))
            }
            _ => format!("{n} sessions {what}"),
        };
        eprint!("\r{line}");
        let _ = std::io::stderr().flush();
    };
    let summary = tools::migrate(from, to, config, &mut progress);
    if terminal {
        eprintln!();
    }
    let summary = summary?;
    for p in &summary.problems {
        eprintln!("{}: {}", if p.damage { "damaged, skipped" } else { "note" }, describe(p));
    }
    let c = &summary.counts;
    println!(
        "migrated {} sessions from {from} to {to}: logged in {}, persistent {}, users {}, bytes {}; {} past their lifetime not copied",
        c.sessions, c.logged_in, c.persistent, summary.users, c.bytes, summary.expired
    );
    if let (Some(key), tools::Place::Redis(_)) = (&summary.key_file, to) {
        println!(
            "the secret came from {}: give every instance the same one ($DRACO_SESSION_SECRET or session.secret)",
            key.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `erase-user` works: a data directory or a Redis server.
fn erase_config(target: &Path, config: Option<Config>) -> Result<(Config, Option<draco_session::Keyring>), ToolError> {
    let redis = target.to_str().filter(|t| t.starts_with("redis://") || t.starts_with("rediss://"));
    let given = config.is_some();
    let mut config = config.unwrap_or_default();
    if let Some(url) = redis {
        if !cfg!(feature = "redis") {
            return Err(ToolError::Usage("this build has no Redis support: build with --features cli,redis".into()));
        }
        let env = std::env::var_os(draco_session::SECRET_ENV).is_some_and(|v| !v.is_empty());
        if !env && config.session.secret.is_none() {
            return Err(ToolError::Secret(format!(
                "no secret: ${} is not set and no --config gives session.secret",
                draco_session::SECRET_ENV
            )));
        }
        config.storage.backend = draco_session::config::StorageBackend::Redis;
        url.clone_into(&mut config.storage.redis_url);
        return Ok((config, None));
    }
    // The keyring found as the other commands find it, handed to the engine so that it never
    // creates a key file in the directory.
    let ring = tools::keyring(target, given.then_some(&config))?;
    config.storage.backend = draco_session::config::StorageBackend::Memory;
    config.storage.dir = target.to_owned();
    config.storage.persist = true;
    Ok((config, Some(ring)))
}

fn erase_user(target: &Path, userid: u64, config: Option<Config>) -> Result<ExitCode, ToolError> {
    let (config, ring) = erase_config(target, config)?;
    let system = actix::System::new();
    let code = system.block_on(async move {
        let mut builder = SessionEngine::builder(config);
        if let Some(ring) = ring {
            builder = builder.keyring(ring);
        }
        let engine = match builder.start_async().await {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!("draco-session: {e}");
                return ExitCode::from(1);
            }
        };
        let erased = engine.erase_user(userid).await;
        engine.shutdown().await;
        match erased {
            Ok(n) => {
                println!("erased {n} sessions of user {userid}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("draco-session: erasing user {userid}: {e}");
                ExitCode::from(1)
            }
        }
    });
    Ok(code)
}

fn print_report(dir: &Path, report: &Report) {
    let c = &report.counts;
    println!("{}{}", dir.display(), if report.engine_running { " (an engine is running on it)" } else { "" });
    println!(
        "sessions {}  logged in {}  persistent {}  users {}  expired {}  bytes {}  largest {}",
        c.sessions, c.logged_in, c.persistent, report.users, c.expired, c.bytes, c.largest
    );
    if !report.shards.is_empty() {
        print_shards(report);
    }
    if !report.files.is_empty() {
        println!();
    }
    for f in &report.files {
        println!("{:>12}  {:<8} {}", f.size, f.kind, f.path);
    }
    for p in &report.problems {
        println!("{}: {}", if p.damage { "damaged" } else { "note" }, describe(p));
    }
}

fn print_shards(report: &Report) {
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
