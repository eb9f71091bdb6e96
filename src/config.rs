//! [`Config`] mirrors `config.toml`: every key, its default, and validation in one place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::ConfigError;
use crate::robot::{RobotDetector, RobotsConfig};

/// Environment variable naming a config file (used by the examples).
pub const CONFIG_ENV: &str = "DRACO_SESSION_CONFIG";
/// Environment variable holding the id secret; overrides `session.secret`.
pub const SECRET_ENV: &str = "DRACO_SESSION_SECRET";

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// `[session]`: lifetimes, shards, id secret.
    pub session: SessionConfig,
    /// `[cookie]`: the session cookie.
    pub cookie: CookieConfig,
    /// `[storage]`: where and how often sessions are persisted.
    pub storage: StorageConfig,
    /// `[limits]`: caps that turn into clear errors instead of unbounded growth.
    pub limits: LimitsConfig,
    /// `[robots]`: which User-Agents never get a session.
    pub robots: RobotsConfig,
}

/// `[session]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Idle lifetime of a volatile session. Defaults to `"2h"`.
    #[serde(deserialize_with = "duration")]
    pub volatile_ttl: Duration,
    /// Idle lifetime of a persistent ("remember me") session. Defaults to `"100d"`.
    #[serde(deserialize_with = "duration")]
    pub persistent_ttl: Duration,
    /// Hard cap on a session's age whatever its use; `"0s"` means none. Defaults to `"0s"`.
    #[serde(deserialize_with = "duration")]
    pub absolute_ttl: Duration,
    /// Number of shard workers; 0 means one per CPU. Defaults to `0`.
    pub shards: usize,
    /// How often each worker sweeps expired sessions. Defaults to `"1s"`.
    #[serde(deserialize_with = "duration")]
    pub sweep_interval: Duration,
    /// Secret keying the id tag (at least 32 bytes). Defaults to none: the
    /// `DRACO_SESSION_SECRET` environment variable, else a key generated once into
    /// `storage.dir/secret.key` (mode 0600).
    pub secret: Option<String>,
    /// Earlier secrets whose ids are still accepted, for key rotation. Defaults to `[]`.
    pub previous_secrets: Vec<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            volatile_ttl: Duration::from_secs(2 * 3600),
            persistent_ttl: Duration::from_secs(100 * 86_400),
            absolute_ttl: Duration::ZERO,
            shards: 0,
            sweep_interval: Duration::from_secs(1),
            secret: None,
            previous_secrets: Vec::new(),
        }
    }
}

impl SessionConfig {
    /// The shard count actually used: `shards`, or the number of CPUs when it is 0.
    pub fn effective_shards(&self) -> usize {
        if self.shards > 0 { self.shards } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }
}

/// `SameSite` attribute of the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SameSite {
    /// Sent on top-level navigations from other sites, not on their sub-requests.
    Lax,
    /// Never sent from other sites.
    Strict,
    /// Always sent; requires `secure = true`.
    None,
}

/// `[cookie]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CookieConfig {
    /// Cookie name. Defaults to `"sid"`.
    pub name: String,
    /// Send the cookie only over HTTPS. Defaults to `true`; set `false` for plain-HTTP local demos.
    pub secure: bool,
    /// `SameSite` attribute: `"lax"`, `"strict"` or `"none"`. Defaults to `"lax"`.
    pub same_site: SameSite,
    /// `Path` attribute. Defaults to `"/"`.
    pub path: String,
    /// `Domain` attribute. Defaults to none (host-only cookie).
    pub domain: Option<String>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self { name: "sid".into(), secure: true, same_site: SameSite::Lax, path: "/".into(), domain: None }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StorageConfig {
    /// Data directory (secret key, snapshots); created when missing. Defaults to `"data"`.
    pub dir: PathBuf,
    /// How often workers snapshot their sessions to disk. Defaults to `"30s"`.
    #[serde(deserialize_with = "duration")]
    pub snapshot_interval: Duration,
    /// Write and load snapshots at all. Defaults to `true`.
    pub persist: bool,
    /// Where sessions live: `"memory"` (shard workers, snapshots in `dir`) or `"redis"`
    /// (a Redis server shared by several app instances; needs the `redis` cargo feature).
    /// Defaults to `"memory"`.
    pub backend: StorageBackend,
    /// The Redis server for `backend = "redis"` (`redis://[:password@]host:port[/db]`,
    /// `rediss://` for TLS is not compiled in). Defaults to `"redis://127.0.0.1:6379"`.
    pub redis_url: String,
    /// `redis_url` names Redis Cluster nodes (one or more, comma-separated) rather than one
    /// server. Defaults to `false`.
    pub redis_cluster: bool,
    /// The write-ahead log (memory backend, with `persist`): `"1s"` (the default) appends every
    /// change to the log before it is acknowledged and fsyncs the log at least once a second
    /// (any duration from `"10ms"` to `"10s"` sets that interval); `"always"` acknowledges a
    /// change only once its record is fsynced (group commit); `"off"`: snapshots only.
    #[serde(deserialize_with = "log_mode")]
    pub log: LogMode,
    /// Log size (all shards together) past which a shard snapshots early, so the log before
    /// the snapshot can be deleted: `"256MiB"` by default (units B, KiB, MiB, GiB).
    #[serde(deserialize_with = "byte_size")]
    pub log_max: u64,
}

/// `storage.log`: when a change is durable (see [`StorageConfig::log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogMode {
    /// No log: a crash loses the changes since the last snapshot.
    Off,
    /// Every change reaches the log (the kernel) before it is acknowledged; the log is fsynced
    /// at this interval. A process crash loses nothing, a power cut at most this interval.
    Every(Duration),
    /// A change is acknowledged only once its record is fsynced; one fsync covers every record
    /// written meanwhile (group commit).
    Always,
}

impl std::fmt::Display for LogMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Always => f.write_str("always"),
            Self::Every(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
            snapshot_interval: Duration::from_secs(30),
            persist: true,
            backend: StorageBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_cluster: false,
            log: LogMode::Every(Duration::from_secs(1)),
            log_max: 256 << 20,
        }
    }
}

/// `storage.backend`: where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StorageBackend {
    /// In this process: shard worker actors, with bincode snapshots in `storage.dir`.
    Memory,
    /// In a Redis server (`storage.redis_url`), shared by every instance that points at it.
    Redis,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Largest encoded value, in bytes. Defaults to `65536` (64 KiB).
    pub max_value_bytes: usize,
    /// Most keys in one session, over all scopes. Defaults to `1024`.
    pub max_keys: usize,
    /// Most live sessions in the engine; creating one more fails with `Full`. Defaults to `10000000`.
    pub max_sessions: usize,
    /// Most logged-in sessions one user may have; past it, a login ends that user's least
    /// recently used other session. `0` (the default): no limit.
    pub max_sessions_per_user: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { max_value_bytes: 64 * 1024, max_keys: 1024, max_sessions: 10_000_000, max_sessions_per_user: 0 }
    }
}

/// Longest accepted duration: about 10 years.
const MAX_TTL: Duration = Duration::from_secs(10 * 366 * 86_400);

impl Config {
    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the key when the file cannot be read, does not parse,
    /// has an unknown key or an invalid value.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    ///
    /// ```
    /// use draco_session::Config;
    ///
    /// let config = Config::from_toml("[session]\nvolatile_ttl = \"90m\"", "inline").unwrap();
    /// assert_eq!(config.session.volatile_ttl.as_secs(), 5400);
    ///
    /// let err = Config::from_toml("[session]\nvolatile_tll = \"90m\"", "inline").unwrap_err();
    /// assert!(err.to_string().contains("volatile_tll"));
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks ranges and combinations; `origin` names the source in errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending key.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate_settings(origin)?;
        RobotDetector::build(&self.robots, origin).map(drop)
    }

    /// [`validate`](Self::validate) but for the `[robots]` patterns, which the engine checks by
    /// compiling them once, into the detector it keeps.
    pub(crate) fn validate_settings(&self, origin: &str) -> Result<(), ConfigError> {
        let checks = [self.session.check(), self.cookie.check(), self.storage.check(), self.limits.check()];
        match checks.into_iter().find_map(Result::err) {
            Some((key, message)) => Err(ConfigError::Invalid { origin: origin.to_owned(), key, message }),
            None => Ok(()),
        }
    }
}

/// A rejected value: its dotted key, and why.
type Invalid = (&'static str, String);

fn bad(key: &'static str, message: impl Into<String>) -> Result<(), Invalid> {
    Err((key, message.into()))
}

impl SessionConfig {
    fn check(&self) -> Result<(), Invalid> {
        let s = self;
        if s.volatile_ttl.is_zero() || s.volatile_ttl > MAX_TTL {
            return bad("session.volatile_ttl", "must be between 1s and 10 years");
        }
        if s.persistent_ttl.is_zero() || s.persistent_ttl > MAX_TTL {
            return bad("session.persistent_ttl", "must be between 1s and 10 years");
        }
        if s.persistent_ttl < s.volatile_ttl {
            return bad(
                "session.persistent_ttl",
                "must not be shorter than session.volatile_ttl (remember-me would forget sooner)",
            );
        }
        if s.absolute_ttl > MAX_TTL {
            return bad("session.absolute_ttl", "must be at most 10 years (0s = none)");
        }
        if s.shards > 1024 {
            return bad("session.shards", format!("is {}, at most 1024", s.shards));
        }
        if s.sweep_interval < Duration::from_millis(10) {
            return bad("session.sweep_interval", "must be at least 10ms");
        }
        if let Some(secret) = &s.secret
            && secret.len() < 32
        {
            return bad("session.secret", "must be at least 32 bytes");
        }
        if s.previous_secrets.iter().any(|p| p.len() < 32) {
            return bad("session.previous_secrets", "every entry must be at least 32 bytes");
        }
        Ok(())
    }
}

impl CookieConfig {
    fn check(&self) -> Result<(), Invalid> {
        let c = self;
        let token_ok =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token_ok(&c.name) {
            return bad("cookie.name", format!("{:?} is not a valid cookie name", c.name));
        }
        if c.same_site == SameSite::None && !c.secure {
            return bad("cookie.same_site", "\"none\" requires cookie.secure = true");
        }
        if !c.path.starts_with('/') || c.path.contains([';', ',']) {
            return bad("cookie.path", format!("{:?} must start with / and hold no ; or ,", c.path));
        }
        if let Some(d) = &c.domain
            && (d.is_empty() || d.contains([';', ',', ' ']))
        {
            return bad("cookie.domain", format!("{d:?} is not a valid domain"));
        }
        Ok(())
    }
}

impl StorageConfig {
    fn check(&self) -> Result<(), Invalid> {
        if self.dir.as_os_str().is_empty() {
            return bad("storage.dir", "must not be empty");
        }
        if self.snapshot_interval < Duration::from_millis(100) {
            return bad("storage.snapshot_interval", "must be at least 100ms");
        }
        if let LogMode::Every(d) = self.log
            && !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&d)
        {
            return bad("storage.log", "as an fsync interval must be between 10ms and 10s");
        }
        if self.log_max < 1 << 20 {
            return bad("storage.log_max", "must be at least 1MiB");
        }
        if self.backend != StorageBackend::Redis {
            return Ok(());
        }
        if !cfg!(feature = "redis") {
            return bad(
                "storage.backend",
                "is \"redis\" but draco-session was built without its `redis` cargo feature: \
                 enable the feature, or use backend = \"memory\"",
            );
        }
        let urls: Vec<&str> = if self.redis_cluster {
            self.redis_url.split(',').map(str::trim).collect()
        } else {
            vec![self.redis_url.as_str()]
        };
        for url in urls {
            if !(url.starts_with("redis://") || url.starts_with("redis+unix://") || url.starts_with("unix://")) {
                return bad("storage.redis_url", format!("{url:?} must start with redis:// (or redis+unix://)"));
            }
            #[cfg(feature = "redis")]
            if let Err(e) = redis::Client::open(url) {
                return bad("storage.redis_url", format!("{url:?} is not a valid Redis URL: {e}"));
            }
        }
        Ok(())
    }
}

impl LimitsConfig {
    fn check(&self) -> Result<(), Invalid> {
        if self.max_value_bytes == 0 || self.max_value_bytes > 64 << 20 {
            return bad("limits.max_value_bytes", "must be between 1 and 67108864");
        }
        if self.max_keys == 0 {
            return bad("limits.max_keys", "must be at least 1");
        }
        if self.max_sessions == 0 {
            return bad("limits.max_sessions", "must be at least 1");
        }
        Ok(())
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write e.g. \"2s\", \"90m\", \"2h\", \"100d\""
        ))
    })
}

fn log_mode<'de, D: Deserializer<'de>>(d: D) -> Result<LogMode, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "off" => Ok(LogMode::Off),
        "always" => Ok(LogMode::Always),
        other => humantime::parse_duration(other).map(LogMode::Every).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid log mode {text:?}: write \"always\", \"off\", or an fsync interval such as \"1s\""
            ))
        }),
    }
}

/// Parses `"256MiB"`, `"1 GiB"`, `"4096"` (bytes), `"10MB"` (decimal units).
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse_bytes(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("invalid size {text:?}; write e.g. \"256MiB\", \"1GiB\", \"65536\""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_settings_parse_and_are_checked() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c.storage.log, LogMode::Every(Duration::from_secs(1)));
        assert_eq!(c.storage.log_max, 256 << 20);
        let c = Config::from_toml("[storage]\nlog = \"always\"\nlog_max = \"1GiB\"", "t").unwrap();
        assert_eq!((c.storage.log, c.storage.log_max), (LogMode::Always, 1 << 30));
        let c = Config::from_toml("[storage]\nlog = \"off\"", "t").unwrap();
        assert_eq!(c.storage.log, LogMode::Off);
        let c = Config::from_toml("[storage]\nlog = \"200ms\"", "t").unwrap();
        assert_eq!(c.storage.log, LogMode::Every(Duration::from_millis(200)));
        for (toml, key) in [
            ("[storage]\nlog = \"sometimes\"", "sometimes"),
            ("[storage]\nlog = \"1h\"", "storage.log"),
            ("[storage]\nlog_max = \"12 parsecs\"", "12 parsecs"),
            ("[storage]\nlog_max = \"1KiB\"", "storage.log_max"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("f.toml"), "{toml}: {e}");
        }
        assert_eq!(parse_bytes("10MB"), Some(10_000_000));
        assert_eq!(parse_bytes("99999999999999GiB"), None);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c.session.volatile_ttl, Duration::from_secs(7200));
        assert_eq!(c.session.persistent_ttl, Duration::from_secs(8_640_000));
        assert_eq!(c.cookie.name, "sid");
        assert!(c.cookie.secure);
        assert_eq!(c.storage.snapshot_interval, Duration::from_secs(30));
        assert_eq!(c.limits.max_value_bytes, 65536);
    }

    #[test]
    fn shipped_config_toml_parses_to_the_defaults() {
        let text = include_str!("../config.toml");
        let c = Config::from_toml(text, "config.toml").unwrap();
        let d = Config::default();
        assert_eq!(c.session.volatile_ttl, d.session.volatile_ttl);
        assert_eq!(c.session.persistent_ttl, d.session.persistent_ttl);
        assert_eq!(c.session.shards, d.session.shards);
        assert_eq!(c.cookie.name, d.cookie.name);
        assert_eq!(c.storage.dir, d.storage.dir);
        assert_eq!(c.limits.max_sessions, d.limits.max_sessions);
        assert_eq!(c.storage.backend, d.storage.backend);
        assert_eq!(c.storage.redis_url, d.storage.redis_url);
        assert_eq!(c.storage.redis_cluster, d.storage.redis_cluster);
    }

    #[test]
    fn redis_backend_is_checked() {
        let c = Config::from_toml("[storage]\nbackend = \"memory\"", "t").unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Memory);
        let e = Config::from_toml("[storage]\nbackend = \"mongo\"", "f.toml").unwrap_err().to_string();
        assert!(e.contains("backend") && e.contains("f.toml"), "{e}");
        let redis =
            Config::from_toml("[storage]\nbackend = \"redis\"\nredis_url = \"redis://10.0.0.1:7000/2\"", "f.toml");
        if cfg!(feature = "redis") {
            assert_eq!(redis.unwrap().storage.redis_url, "redis://10.0.0.1:7000/2");
            let e = Config::from_toml("[storage]\nbackend = \"redis\"\nredis_url = \"http://x\"", "f.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("storage.redis_url") && e.contains("http://x"), "{e}");
        } else {
            let e = redis.unwrap_err().to_string();
            assert!(e.contains("storage.backend") && e.contains("`redis` cargo feature"), "{e}");
        }
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = Config::from_toml("[cookie]\nnmae = \"x\"", "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("nmae"), "{e}");
        let e = Config::from_toml("[sesion]\n", "my.toml").unwrap_err().to_string();
        assert!(e.contains("sesion"), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let e = Config::from_toml("[session]\nvolatile_ttl = \"2 hours-ish\"", "f.toml").unwrap_err().to_string();
        assert!(e.contains("volatile_ttl") && e.contains("f.toml"), "{e}");
    }

    #[test]
    fn impossible_combinations_are_rejected() {
        for (toml, key) in [
            ("[session]\nvolatile_ttl = \"2d\"\npersistent_ttl = \"1d\"", "session.persistent_ttl"),
            ("[session]\nvolatile_ttl = \"0s\"", "session.volatile_ttl"),
            ("[session]\nshards = 5000", "session.shards"),
            ("[session]\nsecret = \"short\"", "session.secret"),
            ("[cookie]\nsame_site = \"none\"\nsecure = false", "cookie.same_site"),
            ("[cookie]\nname = \"a b\"", "cookie.name"),
            ("[limits]\nmax_keys = 0", "limits.max_keys"),
            ("[storage]\nsnapshot_interval = \"1ms\"", "storage.snapshot_interval"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("f.toml"), "{toml}: {e}");
        }
    }

    #[test]
    fn invalid_robot_patterns_name_key_pattern_and_file() {
        let e = Config::from_toml("[robots]\nextra = [\"ok\", \"(unclosed\"]", "f.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "robots.extra", .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("f.toml") && e.contains("(unclosed"), "{e}");
        let e = Config::from_toml("[robots]\ndetect = false\nallow = [\"a{2,1}\"]", "f.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "robots.allow", .. }), "{e:?}");
        assert!(Config::from_toml("[robots]\nextra = [\"^acme/\"]\nallow = [\"friendly\"]", "f.toml").is_ok());
    }

    #[test]
    fn durations_accept_human_units() {
        let c = Config::from_toml(
            "[session]\nvolatile_ttl = \"90m\"\npersistent_ttl = \"100d\"\n[storage]\nsnapshot_interval = \"2s\"",
            "t",
        )
        .unwrap();
        assert_eq!(c.session.volatile_ttl, Duration::from_secs(5400));
        assert_eq!(c.storage.snapshot_interval, Duration::from_secs(2));
    }
}
