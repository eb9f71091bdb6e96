//! `[session]`: lifetimes, shards, the id secret, what logout clears.

use std::time::Duration;

use serde::Deserialize;

use super::{Invalid, bad, duration};

/// `[session]`. Its `Debug` shows neither secret.
#[derive(Clone, Deserialize)]
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
    /// Secret keying the id tag (at least 32 bytes). The `DRACO_SESSION_SECRET` environment
    /// variable, when set, wins over it. Defaults to none: with neither, a key generated once
    /// into `storage.dir/secret.key` (mode 0600), or, when `storage.persist` is off on the
    /// memory backend, a random key kept in memory only (no file is written; ids end with the
    /// process, as its sessions do).
    pub secret: Option<String>,
    /// Earlier secrets whose ids are still accepted, for key rotation. Defaults to `[]`.
    pub previous_secrets: Vec<String>,
    /// What `logout()` does to the session's data. `false` (the default, as Draco's manual
    /// says): the id rotates, the user and remember-me go, every other value stays (a cart,
    /// preferences). `true`: every scope is cleared too, in the same atomic step as the
    /// rotation, so the browser starts anew after a logout (a shared computer).
    pub logout_clears_data: bool,
    /// Whether a login records the client's address beside the device label, for
    /// `Session::devices`. Defaults to `false`, for privacy. The address is the one
    /// `limits.create_rate` counts (the peer, or the trusted `X-Forwarded-For` hop).
    pub record_ip: bool,
    /// How long a proof of identity stays fresh for `Session::require_fresh_auth`: the login,
    /// or the app's last `Session::reauthenticated` (after it checked a password or a second
    /// factor). Sensitive actions (ending other sessions, changing the password) ask for a
    /// fresh one. Defaults to `"10m"`; at least 1s, at most 10 years.
    #[serde(deserialize_with = "duration")]
    pub reauth_after: Duration,
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
            logout_clears_data: false,
            record_ip: false,
            reauth_after: Duration::from_secs(600),
        }
    }
}

/// Stands for a secret in `Debug` output.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"****\"")
    }
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added later must be listed here (and judged secret or not).
        let Self {
            volatile_ttl,
            persistent_ttl,
            absolute_ttl,
            shards,
            sweep_interval,
            secret,
            previous_secrets,
            logout_clears_data,
            record_ip,
            reauth_after,
        } = self;
        f.debug_struct("SessionConfig")
            .field("volatile_ttl", volatile_ttl)
            .field("persistent_ttl", persistent_ttl)
            .field("absolute_ttl", absolute_ttl)
            .field("shards", shards)
            .field("sweep_interval", sweep_interval)
            .field("secret", &secret.as_ref().map(|_| Redacted))
            .field("previous_secrets", &previous_secrets.iter().map(|_| Redacted).collect::<Vec<_>>())
            .field("logout_clears_data", logout_clears_data)
            .field("record_ip", record_ip)
            .field("reauth_after", reauth_after)
            .finish()
    }
}

/// Longest accepted duration: about 10 years.
const MAX_TTL: Duration = Duration::from_secs(10 * 366 * 86_400);

impl SessionConfig {
    /// The shard count actually used: `shards`, or the number of CPUs when it is 0.
    pub fn effective_shards(&self) -> usize {
        if self.shards > 0 { self.shards } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }

    pub(super) fn check(&self) -> Result<(), Invalid> {
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
        if s.reauth_after.is_zero() || s.reauth_after > MAX_TTL {
            return bad("session.reauth_after", "must be between 1s and 10 years");
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

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn impossible_combinations_are_rejected() {
        for (toml, key) in [
            ("[session]\nvolatile_ttl = \"2d\"\npersistent_ttl = \"1d\"", "session.persistent_ttl"),
            ("[session]\nvolatile_ttl = \"0s\"", "session.volatile_ttl"),
            ("[session]\nshards = 5000", "session.shards"),
            ("[session]\nsecret = \"short\"", "session.secret"),
            ("[session]\nreauth_after = \"0s\"", "session.reauth_after"),
            ("[session]\nreauth_after = \"20years\"", "session.reauth_after"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("f.toml"), "{toml}: {e}");
        }
    }

    #[test]
    fn reauth_after_defaults_to_ten_minutes_and_reads_human_units() {
        assert_eq!(Config::default().session.reauth_after, std::time::Duration::from_secs(600));
        let c = Config::from_toml("[session]\nreauth_after = \"90s\"", "f.toml").unwrap();
        assert_eq!(c.session.reauth_after, std::time::Duration::from_secs(90));
    }
}
