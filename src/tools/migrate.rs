//! `draco-session migrate --from DIR|REDIS_URL --to DIR|REDIS_URL`, and `inspect` of a Redis
//! URL: every live session read from one store and written to the other.
//!
//! Both stores key a session by its locator (`crate::id`), so what is written is the session
//! itself — data (device labels and the fresh-login proof are data, in their reserved scopes),
//! user, remember-me flag, creation and last-access times — and every cookie issued for it
//! opens it on the destination, given the same secret. What is left of each lifetime follows
//! from the last access and `session.*_ttl` of the `--config` (the defaults without one), as on
//! the source; sessions already past it are not copied.
//!
//! - **From a data directory**: read as start-up would (`recover`), without writing to it; a
//!   directory a running engine holds is refused (sessions it changed after the copy would be
//!   lost: stop it first).
//! - **To a data directory**: one snapshot generation per shard (`session.shards` of the
//!   config), written by the engine's snapshot writer (sealed with `storage.encrypt`), under the
//!   directory's lock. The directory must hold no sessions, unless an earlier `migrate` into it
//!   was interrupted (its mark `<dir>/migrating` is there, and an engine refuses to start on
//!   the directory until the migration is run again): then its files are replaced. A key file
//!   the secret came from goes with the sessions.
//! - **To Redis**: each session's hash replaced whole (`redis/transfer.rs`), so a run that
//!   stopped half way can be run again.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Counts, Report, ToolError, io_error};
use crate::config::Config;
use crate::id::{Keyring, Locator};
use crate::state::{Lifetimes, SessionState};

/// Sessions written to Redis per round trip.
#[cfg(feature = "redis")]
const BATCH: usize = 200;

/// Where sessions are: a data directory, or a Redis server (`redis://`, `rediss://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A data directory (`storage.dir`).
    Dir(PathBuf),
    /// A Redis URL.
    Redis(String),
}

impl Place {
    /// A Redis URL when `text` starts with `redis://` or `rediss://`, else a directory.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("redis://") || text.starts_with("rediss://") {
            Self::Redis(text.to_owned())
        } else {
            Self::Dir(PathBuf::from(text))
        }
    }
}

impl std::fmt::Display for Place {
    /// The directory, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Redis(url) => f.write_str(&crate::redis_url::redact_redis_url(url)),
        }
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Sessions copied, and how many of them are logged in, persistent, their bytes.
    #[serde(flatten)]
    pub counts: Counts,
    /// Distinct users of the copied sessions.
    pub users: u64,
    /// Sessions past their lifetime, not copied.
    pub expired: u64,
    /// Files of the source that did not read (skipped as start-up skips them).
    pub problems: Vec<super::Problem>,
    /// Where the secret came from when it was a key file (the destination needs the same).
    pub key_file: Option<PathBuf>,
}

/// The keyring of a migration: `$DRACO_SESSION_SECRET` or `config`'s `session.secret`, else
/// the key file of `from` when it is a directory.
fn keyring(from: &Place, config: &Config) -> Result<(Keyring, Option<PathBuf>), ToolError> {
    let env = std::env::var_os(crate::SECRET_ENV).is_some_and(|v| !v.is_empty());
    if env || config.session.secret.is_some() {
        return Ok((Keyring::load(config).map_err(|e| ToolError::Secret(e.to_string()))?, None));
    }
    match from {
        Place::Dir(dir) => Ok((super::keyring(dir, Some(config))?, Some(dir.join("secret.key")))),
        Place::Redis(_) => Err(ToolError::Secret(format!(
            "no secret: ${} is not set and no --config gives session.secret",
            crate::SECRET_ENV
        ))),
    }
}

/// Every live session of data directory `dir`, as start-up would load it (a session in two
/// shard layouts, after a crash during a re-layout: its newer copy).
pub(crate) fn load_dir(
    dir: &Path,
    ring: &Keyring,
    problems: &mut Vec<super::Problem>,
) -> Result<HashMap<Locator, SessionState>, ToolError> {
    let listing = super::list(dir)?;
    let sealer = super::sealer(ring);
    let mut all: HashMap<Locator, SessionState> = HashMap::new();
    for group in super::groups(&listing) {
        let recovered = super::recover(&listing, group, &sealer, problems)?;
        for (locator, state) in recovered.sessions {
            match all.get(&locator) {
                Some(had) if had.last_access_ms >= state.last_access_ms => {}
                _ => {
                    all.insert(locator, state);
                }
            }
        }
    }
    Ok(all)
}

/// A Redis store for the command, and the runtime its calls are made on.
#[cfg(feature = "redis")]
fn redis(
    url: &str,
    config: &Config,
    ring: &Keyring,
) -> Result<(tokio::runtime::Runtime, crate::redis::RedisStore), ToolError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ToolError::Usage(format!("cannot start a runtime: {e}")))?;
    let mut config = config.clone();
    config.storage.backend = crate::config::StorageBackend::Redis;
    url.clone_into(&mut config.storage.redis_url);
    let clock: Arc<dyn crate::Clock> = Arc::new(crate::SystemClock);
    let store = runtime
        .block_on(crate::redis::RedisStore::connect(&config, ring.clone(), clock))
        .map_err(|e| ToolError::Usage(e.to_string()))?;
    Ok((runtime, store))
}

#[cfg(not(feature = "redis"))]
fn no_redis<T>() -> Result<T, ToolError> {
    Err(ToolError::Usage("this build has no Redis support: build with --features cli,redis".into()))
}

#[cfg(feature = "redis")]
fn redis_error(url: &str, e: &crate::SessionError) -> ToolError {
    ToolError::Usage(format!("{}: {e}", crate::redis_url::redact_redis_url(url)))
}

/// Every session of the Redis server at `url`, `progress` told the count read so far.
fn load_redis(
    url: &str,
    config: &Config,
    ring: &Keyring,
    progress: &mut dyn FnMut(u64),
) -> Result<HashMap<Locator, SessionState>, ToolError> {
    #[cfg(feature = "redis")]
    {
        let (runtime, store) = redis(url, config, ring)?;
        let mut all = HashMap::new();
        let mut cursor = 0;
        loop {
            let (next, page) = runtime.block_on(store.export_page(cursor)).map_err(|e| redis_error(url, &e))?;
            for exported in page {
                all.insert(exported.locator, exported.state);
            }
            progress(all.len() as u64);
            if next == 0 {
                store.close();
                return Ok(all);
            }
            cursor = next;
        }
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (url, config, ring, progress);
        no_redis()
    }
}

/// What [`inspect`](super::inspect) reports, of the Redis server at `url`: its sessions
/// counted (no shards, no files).
///
/// # Errors
/// [`ToolError`] when Redis cannot be reached, the secret is missing or a session does not
/// open.
pub fn inspect_redis(url: &str, config: Option<&Config>) -> Result<Report, ToolError> {
    let config = config.cloned().unwrap_or_default();
    let (ring, _) = keyring(&Place::Redis(url.to_owned()), &config)?;
    let sessions = load_redis(url, &config, &ring, &mut |_| {})?;
    let lifetimes = Lifetimes::from_config(&config.session);
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let users: BTreeSet<u64> = sessions.values().map(|s| s.userid).filter(|&u| u != 0).collect();
    Ok(Report { counts: super::count(&sessions, &lifetimes, now_ms), users: users.len() as u64, ..Report::default() })
}

/// Copies every live session of `from` to `to` (see the module docs); `progress` is told the
/// sessions read, then written, so far, and the total.
///
/// # Errors
/// [`ToolError`] when a store cannot be read or written, the secret is missing, `from` is a
/// directory a running engine holds, or `to` a directory that already holds sessions.
pub fn migrate(
    from: &Place,
    to: &Place,
    config: Option<&Config>,
    progress: &mut dyn FnMut(&str, u64, Option<u64>),
) -> Result<Summary, ToolError> {
    if from == to {
        return Err(ToolError::Usage("--from and --to are the same place".into()));
    }
    let config = config.cloned().unwrap_or_default();
    let (ring, key_file) = keyring(from, &config)?;
    let mut summary = Summary { key_file, ..Summary::default() };
    let sessions = match from {
        Place::Dir(dir) => {
            if super::engine_running(dir) {
                return Err(ToolError::Usage(format!(
                    "{} is held by a running engine: stop it first (sessions it changes after the copy would be lost)",
                    dir.display()
                )));
            }
            load_dir(dir, &ring, &mut summary.problems)?
        }
        Place::Redis(url) => load_redis(url, &config, &ring, &mut |n| progress("read", n, None))?,
    };
    let lifetimes = Lifetimes::from_config(&config.session);
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let (live, expired): (Vec<_>, Vec<_>) =
        sessions.into_iter().partition(|(_, state)| !state.is_expired(&lifetimes, now_ms));
    summary.expired = expired.len() as u64;
    let live: HashMap<Locator, SessionState> = live.into_iter().collect();
    summary.counts = super::count(&live, &lifetimes, now_ms);
    summary.users = live.values().map(|s| s.userid).filter(|&u| u != 0).collect::<BTreeSet<_>>().len() as u64;
    let total = live.len() as u64;
    match to {
        Place::Dir(dir) => write_dir(dir, &ring, &config, live, summary.key_file.as_deref(), progress)?,
        Place::Redis(url) => write_redis(url, &ring, &config, live, &lifetimes, now_ms, &mut |n| {
            progress("written", n, Some(total));
        })?,
    }
    Ok(summary)
}

#[allow(clippy::too_many_arguments, reason = "one call, from migrate")]
fn write_redis(
    url: &str,
    ring: &Keyring,
    config: &Config,
    sessions: HashMap<Locator, SessionState>,
    lifetimes: &Lifetimes,
    now_ms: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), ToolError> {
    #[cfg(feature = "redis")]
    {
        let (runtime, store) = redis(url, config, ring)?;
        let mut batch = Vec::with_capacity(BATCH);
        let mut written = 0;
        let mut sessions = sessions.into_iter().peekable();
        while let Some((locator, state)) = sessions.next() {
            let left = state.expires_ms(lifetimes).saturating_sub(now_ms);
            batch.push((locator, state, left));
            if batch.len() == BATCH || sessions.peek().is_none() {
                written += batch.len() as u64;
                runtime.block_on(store.import(std::mem::take(&mut batch))).map_err(|e| redis_error(url, &e))?;
                progress(written);
            }
        }
        store.close();
        Ok(())
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (url, ring, config, sessions, lifetimes, now_ms, progress);
        no_redis()
    }
}

/// Writes `sessions` into data directory `dir` as one snapshot generation per shard.
fn write_dir(
    dir: &Path,
    ring: &Keyring,
    config: &Config,
    sessions: HashMap<Locator, SessionState>,
    key_file: Option<&Path>,
    progress: &mut dyn FnMut(&str, u64, Option<u64>),
) -> Result<(), ToolError> {
    crate::fsutil::private_dir(dir).map_err(|e| io_error(dir, &e))?;
    let _lock = crate::snapshot::lock_dir(dir).map_err(|e| ToolError::Usage(e.to_string()))?;
    let mark = dir.join(crate::snapshot::MIGRATING);
    let listing = super::list(dir)?;
    let held = listing.snaps.len() + listing.logs.len();
    if held > 0 && !mark.exists() {
        return Err(ToolError::Usage(format!(
            "{} already holds sessions ({held} snapshot files and log segments): migrate into an empty directory",
            dir.display()
        )));
    }
    std::fs::write(&mark, b"").map_err(|e| io_error(&mark, &e))?;
    // An interrupted migration's files go: this one writes every session again.
    for name in &listing.snaps {
        let path = name.path(&listing.snap_dir);
        std::fs::remove_file(&path).map_err(|e| io_error(&path, &e))?;
    }
    for name in &listing.logs {
        let path = name.path(&listing.log_dir);
        std::fs::remove_file(&path).map_err(|e| io_error(&path, &e))?;
    }
    if let Some(key) = key_file {
        copy_key(key, &dir.join("secret.key"))?;
    }
    let shards = config.session.effective_shards();
    let mut by_shard: Vec<Vec<(Locator, SessionState)>> = (0..shards).map(|_| Vec::new()).collect();
    for (locator, state) in sessions {
        by_shard[crate::id::shard_of(&locator, shards)].push((locator, state));
    }
    let total = by_shard.iter().map(Vec::len).sum::<usize>() as u64;
    let snap_dir = dir.join(crate::snapshot::files::SUBDIR);
    crate::fsutil::private_dir(&snap_dir).map_err(|e| io_error(&snap_dir, &e))?;
    let clock: Arc<dyn crate::Clock> = Arc::new(crate::SystemClock);
    let sealer = Arc::new(crate::seal::Sealer::new(ring, config.storage.encrypt));
    let mut writer = crate::snapshot::writer::Writer::new(
        snap_dir.clone(),
        crate::wal::dir_of(dir),
        shards,
        1,
        vec![Vec::new(); shards],
        crate::snapshot::files::Fs,
        clock,
        Lifetimes::from_config(&config.session),
        sealer,
    );
    let mut written = 0;
    for (shard, sessions) in by_shard.iter().enumerate() {
        let mut chunks = vec![Vec::new()];
        for (locator, state) in sessions {
            if chunks.last().is_some_and(|c: &Vec<u8>| c.len() >= 1 << 16) {
                chunks.push(Vec::new());
            }
            let chunk = chunks.last_mut().expect("one chunk at least");
            crate::snapshot::format::encode_record(chunk, locator, state)
                .map_err(|e| ToolError::Usage(format!("a session does not encode: {e}")))?;
        }
        writer
            .write(shard, sessions.len() as u64, 0, &chunks)
            .map_err(|e| io_error(&snap_dir.join(format!("shard {shard}")), &e))?;
        written += sessions.len() as u64;
        progress("written", written, Some(total));
    }
    std::fs::remove_file(&mark).map_err(|e| io_error(&mark, &e))?;
    crate::fsutil::sync_dir(dir).map_err(|e| io_error(dir, &e))?;
    Ok(())
}

/// Copies the key file `from` to `to` (0600), unless `to` holds the same key already.
fn copy_key(from: &Path, to: &Path) -> Result<(), ToolError> {
    let key = std::fs::read(from).map_err(|e| io_error(from, &e))?;
    match std::fs::read(to) {
        Ok(there) if there == key => return Ok(()),
        Ok(_) => {
            return Err(ToolError::Secret(format!(
                "{} holds another secret than {}: the sessions would not open with it",
                to.display(),
                from.display()
            )));
        }
        Err(_) => {}
    }
    use std::io::Write as _;
    let mut file = crate::fsutil::private_file().open(to).map_err(|e| io_error(to, &e))?;
    file.write_all(&key).and_then(|()| file.sync_all()).map_err(|e| io_error(to, &e))
}
