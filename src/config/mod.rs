//! [`Config`] mirrors `config.toml`: every key, its default, and validation.
//!
//! This file holds the root: [`Config`], loading it from TOML text or a file, the environment
//! variables, and the check that asks every section to check itself. Each `[section]` has its
//! own file with its struct, its `Default`, its `check()` and its tests: `session.rs`,
//! `cookie.rs` (with the `[header]` transport), `storage.rs`, `limits.rs`, `csrf.rs`,
//! `events.rs`, `robots.rs`.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::ConfigError;

mod cookie;
mod csrf;
mod events;
mod limits;
mod robots;
mod session;
mod storage;

pub use cookie::{CookieConfig, HeaderConfig, SameSite};
pub use csrf::CsrfConfig;
pub use events::EventsConfig;
pub use limits::{CreateRate, LimitsConfig};
#[cfg(test)]
pub(crate) use robots::PATTERN_MAX_LEN;
pub use robots::RobotsConfig;
pub use session::SessionConfig;
pub use storage::{LogMode, StorageBackend, StorageConfig};

/// Environment variable naming a config file (used by the examples).
pub const CONFIG_ENV: &str = "DRACO_SESSION_CONFIG";
/// Environment variable holding the id secret; when set (non-empty) it wins over
/// `session.secret`, so a deployment can replace a secret a config file carries.
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
    /// `[header]`: the session id in a request/response header, for clients without cookies.
    pub header: HeaderConfig,
    /// `[storage]`: where and how often sessions are persisted.
    pub storage: StorageConfig,
    /// `[limits]`: caps that turn into clear errors instead of unbounded growth.
    pub limits: LimitsConfig,
    /// `[robots]`: which User-Agents never get a session.
    pub robots: RobotsConfig,
    /// `[csrf]`: the origin guard against cross-site requests.
    pub csrf: CsrfConfig,
    /// `[events]`: session events for [`SessionEngine::subscribe`](crate::SessionEngine::subscribe).
    pub events: EventsConfig,
}

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
        self.robots.check().map_err(|invalid| named(invalid, origin))
    }

    /// [`validate`](Self::validate) but for the `[robots]` patterns, which the engine checks by
    /// compiling them once, into the detector it keeps.
    pub(crate) fn validate_settings(&self, origin: &str) -> Result<(), ConfigError> {
        let checks = [
            self.session.check(),
            self.cookie.check(),
            self.header.check(),
            cookie::check_transport(&self.cookie, &self.header),
            self.storage.check(),
            self.limits.check(),
            self.csrf.check(),
            self.events.check(),
        ];
        match checks.into_iter().find_map(Result::err) {
            Some(invalid) => Err(named(invalid, origin)),
            None => Ok(()),
        }
    }
}

/// A rejected value: its dotted key, and why.
pub(crate) type Invalid = (&'static str, String);

/// The error for `invalid`, naming `origin` (the config file).
pub(crate) fn named((key, message): Invalid, origin: &str) -> ConfigError {
    ConfigError::Invalid { origin: origin.to_owned(), key, message }
}

fn bad(key: &'static str, message: impl Into<String>) -> Result<(), Invalid> {
    Err((key, message.into()))
}

/// Deserializes a human duration (`"2s"`, `"90m"`, `"100d"`): every duration key of every section.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write e.g. \"2s\", \"90m\", \"2h\", \"100d\""
        ))
    })
}

/// A host name: dot-separated labels of letters, digits and `-` (not at a label's ends), each
/// 1 to 63 bytes, 253 bytes in all. (`cookie.domain` and `csrf.trusted_origins`.)
fn is_hostname(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = include_str!("../../config.toml");
        let c = Config::from_toml(text, "config.toml").unwrap();
        let d = Config::default();
        assert_eq!(c.session.volatile_ttl, d.session.volatile_ttl);
        assert_eq!(c.session.persistent_ttl, d.session.persistent_ttl);
        assert_eq!(c.session.shards, d.session.shards);
        assert_eq!(c.cookie.name, d.cookie.name);
        assert_eq!(c.storage.dir, d.storage.dir);
        assert_eq!(c.limits.max_sessions, d.limits.max_sessions);
        assert_eq!(c.limits.max_session_bytes, d.limits.max_session_bytes);
        assert_eq!(c.limits.max_anonymous_session_bytes, d.limits.max_anonymous_session_bytes);
        assert_eq!(c.limits.max_memory, d.limits.max_memory);
        assert_eq!(c.limits.create_rate, d.limits.create_rate);
        assert_eq!(c.limits.trust_forwarded_for, d.limits.trust_forwarded_for);
        assert_eq!(c.storage.backend, d.storage.backend);
        assert_eq!(c.storage.redis_url, d.storage.redis_url);
        assert_eq!(c.storage.redis_cluster, d.storage.redis_cluster);
        assert_eq!(c.session.logout_clears_data, d.session.logout_clears_data);
        assert_eq!(c.csrf.origin_guard, d.csrf.origin_guard);
        assert_eq!(c.csrf.trusted_origins, d.csrf.trusted_origins);
        assert_eq!((c.cookie.enabled, &c.header.name), (d.cookie.enabled, &d.header.name));
    }

    #[test]
    fn debug_output_holds_no_secret_and_no_password() {
        let mut c = Config::default();
        c.session.secret = Some("current secret hunter2 at least 32 bytes".into());
        c.session.previous_secrets = vec!["previous secret swordfish, 32 bytes long".into()];
        c.storage.redis_url = "rediss://user:hunter3@redis.example:6380/1".into();
        let shown = format!("{c:?} {c:#?}");
        for secret in ["hunter2", "swordfish", "hunter3"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("rediss://user:****@redis.example:6380/1") && shown.contains("volatile_ttl"), "{shown}");
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
