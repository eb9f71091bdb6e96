//! `[events]`: how far event subscribers may fall behind, and the Redis event stream's length.

use serde::Deserialize;

use super::{Invalid, bad};

/// `[events]`: the session events of [`SessionEngine::subscribe`](crate::SessionEngine::subscribe).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EventsConfig {
    /// Events each subscriber may fall behind by before it misses the oldest (and is told how
    /// many it missed). The engine never waits for a subscriber. Defaults to `1024`.
    pub capacity: usize,
    /// Redis backend: events are appended to the stream `<redis_prefix>:events` (`draco:events` by default), capped at about this
    /// many entries (`XADD … MAXLEN ~`), which every instance reads, so each subscriber sees
    /// the events of every instance. `0` writes no events to Redis (nothing to subscribe to).
    /// Defaults to `10000`. The memory backend has no stream.
    pub redis_stream_len: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { capacity: 1024, redis_stream_len: 10_000 }
    }
}

impl EventsConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.capacity == 0 || self.capacity > 1 << 20 {
            return bad("events.capacity", format!("is {}, must be between 1 and 1048576", self.capacity));
        }
        if self.redis_stream_len > 100_000_000 {
            return bad("events.redis_stream_len", format!("is {}, at most 100000000", self.redis_stream_len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::error::ConfigError;

    #[test]
    fn events_settings_parse_and_are_checked() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!((c.events.capacity, c.events.redis_stream_len), (1024, 10_000));
        let c = Config::from_toml("[events]\ncapacity = 16\nredis_stream_len = 0", "t").unwrap();
        assert_eq!((c.events.capacity, c.events.redis_stream_len), (16, 0));
        for (toml, key) in [
            ("[events]\ncapacity = 0", "events.capacity"),
            ("[events]\ncapacity = 1048577", "events.capacity"),
            ("[events]\nredis_stream_len = 100000001", "events.redis_stream_len"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if *k == key), "{toml}: {e:?}");
            assert!(e.to_string().contains("f.toml"), "{e}");
        }
    }
}
