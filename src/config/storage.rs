//! `[storage]`: the backend (memory or Redis), snapshots and the write-ahead log.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{Invalid, bad, duration};
use crate::redis_url::redact_redis_url;
#[cfg(feature = "redis")]
use crate::redis_url::scrub_redis_passwords;

/// `[storage]`. Its `Debug` shows `redis_url` with any password hidden.
#[derive(Clone, Deserialize)]
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
    /// The Redis server for `backend = "redis"`: `redis://[[user]:password@]host[:port][/db]`,
    /// or `rediss://` for TLS; or the primary that Redis Sentinel names,
    /// `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/<master name>[/db]` (the
    /// sentinels, port 26379 by default; the password is the primary's; failovers followed).
    /// A password never appears in messages, logs or `Debug` output
    /// (`redis://user:****@host`). Defaults to `"redis://127.0.0.1:6379"`.
    pub redis_url: String,
    /// `redis_url` names Redis Cluster nodes (one or more, comma-separated) rather than one
    /// server. Defaults to `false`.
    pub redis_cluster: bool,
    /// What every Redis key of this engine starts with (`<prefix>:`): its sessions, their
    /// update locks, the per-user indexes and the event stream. Apps sharing one Redis (a
    /// Redis Cluster has only database 0) each take their own, so that one's "log out
    /// everywhere", devices list and events never reach the other's sessions. 1 to 64
    /// characters, none of `{`, `}`, whitespace or control characters (they would break the
    /// keys' Cluster hash tags). Defaults to `"draco"` (the key names of earlier versions).
    pub redis_prefix: String,
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
    /// Seal every session's data at rest: in snapshots, log records and Redis, a session's
    /// names, values, user id and device label are encrypted (AES-256-GCM) under a key
    /// derived from the engine secret, so a copied data directory, backup or Redis dump reads
    /// as noise without it (`session.previous_secrets` still open data sealed under them).
    /// Data written unsealed (before this setting, or with it off) still loads, and is
    /// rewritten sealed. Defaults to `true`.
    pub encrypt: bool,
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

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added later must be listed here (and judged secret or not).
        let Self {
            dir,
            snapshot_interval,
            persist,
            backend,
            redis_url,
            redis_cluster,
            redis_prefix,
            log,
            log_max,
            encrypt,
        } = self;
        f.debug_struct("StorageConfig")
            .field("dir", dir)
            .field("snapshot_interval", snapshot_interval)
            .field("persist", persist)
            .field("backend", backend)
            .field("redis_url", &redact_redis_url(redis_url))
            .field("redis_cluster", redis_cluster)
            .field("redis_prefix", redis_prefix)
            .field("log", log)
            .field("log_max", log_max)
            .field("encrypt", encrypt)
            .finish()
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
            redis_prefix: "draco".into(),
            log: LogMode::Every(Duration::from_secs(1)),
            log_max: 256 << 20,
            encrypt: true,
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

impl StorageConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
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
        let prefix = &self.redis_prefix;
        if prefix.is_empty() || prefix.len() > 64 {
            return bad("storage.redis_prefix", format!("{prefix:?} must be 1 to 64 bytes long"));
        }
        if let Some(c) = prefix.chars().find(|&c| matches!(c, '{' | '}') || c.is_whitespace() || c.is_control()) {
            return bad(
                "storage.redis_prefix",
                format!(
                    "{prefix:?} must not contain {c:?}: no braces (they make Redis Cluster hash tags), whitespace or control characters"
                ),
            );
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
        if self.redis_url.starts_with("redis+sentinel://") || self.redis_url.starts_with("rediss+sentinel://") {
            let shown = redact_redis_url(&self.redis_url);
            if self.redis_cluster {
                return bad("storage.redis_url", format!("{shown:?} names sentinels: redis_cluster must be false"));
            }
            if self.redis_url.starts_with("rediss+") {
                return bad("storage.redis_url", format!("{shown:?}: TLS through Sentinel is not supported"));
            }
            #[cfg(feature = "redis")]
            if let Err(e) = crate::redis::sentinel::parse(&self.redis_url) {
                return bad("storage.redis_url", format!("{shown:?} is not a valid Sentinel URL: {e}"));
            }
            return Ok(());
        }
        let urls: Vec<&str> = if self.redis_cluster {
            self.redis_url.split(',').map(str::trim).collect()
        } else {
            vec![self.redis_url.as_str()]
        };
        for url in urls {
            // Messages show the URL with its password hidden (see `redact_redis_url`).
            let shown = redact_redis_url(url);
            let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
            if !schemes.iter().any(|s| url.starts_with(s)) {
                return bad(
                    "storage.redis_url",
                    format!("{shown:?} must start with redis://, rediss:// (TLS) or redis+unix://"),
                );
            }
            #[cfg(feature = "redis")]
            if let Err(e) = redis::Client::open(url) {
                let e = scrub_redis_passwords(&e.to_string(), url);
                return bad("storage.redis_url", format!("{shown:?} is not a valid Redis URL: {e}"));
            }
        }
        Ok(())
    }
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
pub(super) fn parse_bytes(text: &str) -> Option<u64> {
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
    use std::time::Duration;

    use super::{LogMode, StorageBackend, parse_bytes};
    use crate::config::Config;

    #[test]
    fn impossible_combinations_are_rejected() {
        let (toml, key) = ("[storage]\nsnapshot_interval = \"1ms\"", "storage.snapshot_interval");
        let e = Config::from_toml(toml, "f.toml").unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("f.toml"), "{toml}: {e}");
    }

    #[test]
    fn redis_prefix_defaults_to_draco_and_is_checked() {
        assert_eq!(Config::from_toml("", "f.toml").unwrap().storage.redis_prefix, "draco");
        let toml = |p: &str| format!("[storage]\nredis_prefix = {p:?}");
        assert_eq!(Config::from_toml(&toml("app-a:v2"), "f.toml").unwrap().storage.redis_prefix, "app-a:v2");
        for bad in ["", "a{b", "a}", "a b", "a\tb", "a\nb", &"x".repeat(65)] {
            let e = Config::from_toml(&toml(bad), "f.toml").unwrap_err().to_string();
            assert!(e.contains("storage.redis_prefix") && e.contains("f.toml"), "{bad:?}: {e}");
        }
    }

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
    fn invalid_redis_urls_are_named_without_their_password() {
        let toml = |url: &str| format!("[storage]\nbackend = \"redis\"\nredis_url = {url:?}");
        let e = Config::from_toml(&toml("http://user:hunter2@x"), "f.toml").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        if cfg!(feature = "redis") {
            assert!(e.contains("storage.redis_url") && e.contains("http://user:****@x"), "{e}");
            let e = Config::from_toml(&toml("redis://user:hunter2@h:99999999"), "f.toml").unwrap_err().to_string();
            assert!(e.contains("storage.redis_url") && !e.contains("hunter2"), "{e}");
            let c = Config::from_toml(&toml("rediss://user:hunter2@h:6380/1"), "f.toml").unwrap();
            assert_eq!(c.storage.redis_url, "rediss://user:hunter2@h:6380/1");
        }
    }
}
