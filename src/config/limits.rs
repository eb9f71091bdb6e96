//! `[limits]`: caps that turn into clear errors instead of unbounded growth, and the pace of
//! new sessions per client.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::storage::parse_bytes;
use super::{Invalid, bad};

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
    /// recently used other session; `0`: no limit. Defaults to `10`: more browsers and devices
    /// than a person keeps logged in at once, while stolen credentials replayed thousands of
    /// times (or a script logging in without keeping its cookie) cannot pile up sessions, nor
    /// a devices page listing them all.
    pub max_sessions_per_user: usize,
    /// Most bytes one session holds: its scope names, key names and encoded values, all
    /// scopes together. A write that would grow a session past it fails with
    /// `SessionTooLarge` (HTTP 413) and changes nothing; a write that does not grow the
    /// session always works. At least `max_value_bytes`. Defaults to `1048576` (1 MiB).
    pub max_session_bytes: usize,
    /// Most bytes a session nobody is logged into holds, counted as `max_session_bytes` counts
    /// them (and never more than it): a write growing an anonymous session past it fails with
    /// `SessionTooLarge` (HTTP 413) and changes nothing, so a client without an account cannot
    /// make the engine keep a megabyte for it. A login lifts it to `max_session_bytes`. Bytes,
    /// or a size such as `"64KiB"`. Both backends. Defaults to `65536` (64 KiB).
    #[serde(deserialize_with = "anonymous_bytes")]
    pub max_anonymous_session_bytes: usize,
    /// The memory the sessions of the memory backend may take, all shards together (each shard
    /// keeps its share, `max_memory / shards`); a size such as `"512MiB"`, or bytes. A session
    /// counts an estimate of what it costs: 128 bytes of map entry, index and metadata, plus its
    /// entries' allocations (each with 16 bytes of allocator overhead); a shard may pass its
    /// share by one write. When the sessions reach it, the least recently used **anonymous**
    /// sessions are evicted to make room (as if they had expired: their log record ends them,
    /// a restart does not bring them back); a logged-in session is never evicted. When nothing
    /// is left to evict, new sessions and writes that grow one are refused with
    /// `Unavailable(MemoryFull)` (HTTP 503 with `Retry-After`); nothing else is lost. At least
    /// `1MiB`. The Redis backend ignores it (see SECURITY.md: `maxmemory` with `volatile-lru`).
    /// Defaults to `"1GiB"`.
    #[serde(deserialize_with = "max_memory")]
    pub max_memory: usize,
    /// New sessions one client may create: `"off"`, or a rate such as `"20/s"`, `"600/m"`,
    /// `"10000/h"`. A request that would create one more is answered 429 with `Retry-After`;
    /// requests with a live session, or creating none, are never limited. A client is its
    /// IP address (IPv6: its /64), see `trust_forwarded_for`; at most 65,536 clients are
    /// tracked, the idlest forgotten first. Defaults to `"off"`.
    #[serde(deserialize_with = "create_rate")]
    pub create_rate: Option<CreateRate>,
    /// New sessions a client may create at once before `create_rate` paces it; `0` means the
    /// rate's count. Defaults to `0`.
    pub create_burst: u32,
    /// Take the client's address for `create_rate` from the last (rightmost) hop of the
    /// `X-Forwarded-For` header instead of the connection's peer. Only when a proxy you run
    /// sets that hop: trusted without one, clients forge it; not trusted behind one, every
    /// client behind the proxy shares one budget. Defaults to `false`.
    pub trust_forwarded_for: bool,
}

/// `limits.create_rate`: `count` new sessions per `per`.
///
/// ```
/// use draco_session::config::CreateRate;
/// use std::time::Duration;
///
/// let rate: CreateRate = "600/m".parse().unwrap();
/// assert_eq!((rate.count, rate.per), (600, Duration::from_secs(60)));
/// assert!("20 per day".parse::<CreateRate>().unwrap_err().contains("20/s"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateRate {
    /// Sessions per period (at least 1).
    pub count: u32,
    /// The period: a second, a minute or an hour.
    pub per: Duration,
}

impl std::str::FromStr for CreateRate {
    type Err = String;

    /// `"N/s"`, `"N/m"` or `"N/h"`, N at least 1.
    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.trim().split_once('/').and_then(|(count, per)| {
            let count: u32 = count.trim().parse().ok().filter(|&n| n > 0)?;
            let per = match per.trim() {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => return None,
            };
            Some(Self { count, per: Duration::from_secs(per) })
        });
        parsed.ok_or_else(|| {
            format!(
                "invalid rate {text:?}: write \"off\" or new sessions per second, minute or hour, \
                 e.g. \"20/s\", \"600/m\""
            )
        })
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_value_bytes: 64 * 1024,
            max_keys: 1024,
            max_sessions: 10_000_000,
            max_session_bytes: 1 << 20,
            max_anonymous_session_bytes: 64 * 1024,
            max_memory: 1 << 30,
            create_rate: None,
            create_burst: 0,
            trust_forwarded_for: false,
            max_sessions_per_user: 10,
        }
    }
}

impl LimitsConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.max_value_bytes == 0 || self.max_value_bytes > 64 << 20 {
            return bad("limits.max_value_bytes", "must be between 1 and 67108864");
        }
        if self.max_keys == 0 {
            return bad("limits.max_keys", "must be at least 1");
        }
        if self.max_sessions == 0 {
            return bad("limits.max_sessions", "must be at least 1");
        }
        if self.max_session_bytes < self.max_value_bytes || self.max_session_bytes > 1 << 30 {
            return bad(
                "limits.max_session_bytes",
                format!(
                    "is {}: must be at least limits.max_value_bytes ({}) and at most 1073741824",
                    self.max_session_bytes, self.max_value_bytes
                ),
            );
        }
        if self.max_anonymous_session_bytes == 0 || self.max_anonymous_session_bytes > 1 << 30 {
            return bad(
                "limits.max_anonymous_session_bytes",
                format!(
                    "is {}: must be between 1 and 1073741824 (a session is held to the smaller of \
                     it and limits.max_session_bytes until someone logs into it)",
                    self.max_anonymous_session_bytes
                ),
            );
        }
        if self.max_memory < Self::MIN_MEMORY {
            return bad(
                "limits.max_memory",
                format!("is {} bytes: must be at least 1MiB (1048576), e.g. \"512MiB\"", self.max_memory),
            );
        }
        Ok(())
    }

    /// The smallest `max_memory`.
    const MIN_MEMORY: usize = 1 << 20;

    /// The most bytes a session of `userid` (0: anonymous) may hold.
    #[inline]
    pub(crate) fn session_bytes_of(&self, userid: u64) -> usize {
        if userid == 0 { self.max_anonymous_session_bytes.min(self.max_session_bytes) } else { self.max_session_bytes }
    }
}

/// A size in bytes: an integer, or a string with a unit (`"512MiB"`, `"64KiB"`, `"1GiB"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// Reads a [`Size`] for `key`; a bad one names the key and how to write it.
fn size<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<usize, D::Error> {
    let size = Size::deserialize(d).map_err(|_| {
        serde::de::Error::custom(format!("{key}: expected a size in bytes or a string such as \"512MiB\""))
    })?;
    let bytes = match &size {
        Size::Bytes(n) => Some(*n),
        Size::Text(text) => parse_bytes(text),
    };
    bytes.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
        let text = match size {
            Size::Bytes(n) => n.to_string(),
            Size::Text(text) => text,
        };
        serde::de::Error::custom(format!(
            "{key}: invalid size {text:?}; write bytes or a size with a unit, e.g. \"512MiB\", \"64KiB\", \"1GiB\""
        ))
    })
}

fn max_memory<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(d, "limits.max_memory")
}

fn anonymous_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(d, "limits.max_anonymous_session_bytes")
}

fn create_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CreateRate>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::CreateRate;
    use crate::config::Config;

    #[test]
    fn impossible_combinations_are_rejected() {
        for (toml, key) in [
            ("[limits]\nmax_keys = 0", "limits.max_keys"),
            ("[limits]\nmax_session_bytes = 0", "limits.max_session_bytes"),
            ("[limits]\nmax_value_bytes = 4096\nmax_session_bytes = 1024", "limits.max_session_bytes"),
            ("[limits]\nmax_anonymous_session_bytes = 0", "limits.max_anonymous_session_bytes"),
            ("[limits]\nmax_anonymous_session_bytes = \"2GiB\"", "limits.max_anonymous_session_bytes"),
            ("[limits]\nmax_memory = \"512KiB\"", "limits.max_memory"),
            ("[limits]\nmax_memory = 1000", "limits.max_memory"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("f.toml"), "{toml}: {e}");
        }
    }

    /// `max_memory` and `max_anonymous_session_bytes` take bytes or a size with a unit; their
    /// defaults are 1 GiB and 64 KiB; a value that is not a size names its key.
    #[test]
    fn memory_budget_and_anonymous_size_parse_and_bad_ones_name_the_key() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!((c.limits.max_memory, c.limits.max_anonymous_session_bytes), (1 << 30, 64 << 10));
        let c =
            Config::from_toml("[limits]\nmax_memory = \"32MiB\"\nmax_anonymous_session_bytes = \"4KiB\"", "t").unwrap();
        assert_eq!((c.limits.max_memory, c.limits.max_anonymous_session_bytes), (32 << 20, 4096));
        let c = Config::from_toml("[limits]\nmax_memory = 2097152\nmax_anonymous_session_bytes = 100", "t").unwrap();
        assert_eq!((c.limits.max_memory, c.limits.max_anonymous_session_bytes), (2 << 20, 100));
        for (key, bad) in [
            ("max_memory", "\"lots\""),
            ("max_memory", "\"32 parsecs\""),
            ("max_memory", "-1"),
            ("max_memory", "true"),
            ("max_anonymous_session_bytes", "\"64KB of it\""),
            ("max_anonymous_session_bytes", "[1]"),
        ] {
            let e = Config::from_toml(&format!("[limits]\n{key} = {bad}"), "f.toml").unwrap_err().to_string();
            assert!(e.contains(&format!("limits.{key}")) && e.contains("f.toml"), "{key} = {bad}: {e}");
        }
        // The anonymous cap never exceeds the session cap; a logged-in session has the latter.
        let c = Config::from_toml("[limits]\nmax_value_bytes = 1000\nmax_session_bytes = 2000", "t").unwrap();
        assert_eq!((c.limits.session_bytes_of(0), c.limits.session_bytes_of(7)), (2000, 2000));
        assert_eq!(
            (Config::default().limits.session_bytes_of(0), Config::default().limits.session_bytes_of(7)),
            (64 << 10, 1 << 20)
        );
    }

    #[test]
    fn create_rate_parses_and_bad_rates_name_the_key() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!((c.limits.create_rate, c.limits.create_burst, c.limits.trust_forwarded_for), (None, 0, false));
        let c = Config::from_toml("[limits]\ncreate_rate = \"20/s\"\ncreate_burst = 40", "t").unwrap();
        assert_eq!(c.limits.create_rate, Some(CreateRate { count: 20, per: Duration::from_secs(1) }));
        assert_eq!(c.limits.create_burst, 40);
        let c = Config::from_toml("[limits]\ncreate_rate = \"600/m\"\ntrust_forwarded_for = true", "t").unwrap();
        assert_eq!(c.limits.create_rate, Some(CreateRate { count: 600, per: Duration::from_secs(60) }));
        assert!(c.limits.trust_forwarded_for);
        for bad in ["20", "0/s", "-1/s", "20/day", "lots/s", "20/s/s"] {
            let e = Config::from_toml(&format!("[limits]\ncreate_rate = \"{bad}\""), "f.toml").unwrap_err().to_string();
            assert!(e.contains("create_rate") && e.contains("f.toml") && e.contains(bad), "{bad}: {e}");
        }
    }
}
