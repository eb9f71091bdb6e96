//! `[limits]`: caps that turn into clear errors instead of unbounded growth, and the pace of
//! new sessions per client.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

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
        Ok(())
    }
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
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("f.toml"), "{toml}: {e}");
        }
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
