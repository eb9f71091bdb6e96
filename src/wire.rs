//! A whole session's bytes, as both stores of persistence keep it (a snapshot's records, the
//! log's `Put` records): the one place that knows bincode and the serde shape of a
//! [`SessionState`]. The snapshot file format (`snapshot/format.rs`) and the log codec
//! (`wal/format.rs`) frame these bytes; neither encodes a session itself.
//!
//! The shape is fixed by snapshot format v1: a struct of the metadata (`userid`, `persistent`,
//! `created_ms`, `last_access_ms`) and a sequence of `{scope, key, value}`, in bincode 2
//! (standard config, serde). Changing it means new format versions, with decoders kept for old
//! files; `tests/fixtures/snapshot-v1.snap` and the test reading it guard this.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::id::Locator;
use crate::state::SessionState;

/// One session as persistence names it: by its locator (see [`crate::id`]).
pub(crate) type Record = (Locator, SessionState);

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends the bincode encoding of `value` to `out`.
///
/// # Errors
/// Only if serde refuses the value, which `SessionState` never does.
pub(crate) fn encode<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), String> {
    bincode::serde::encode_into_std_write(value, out, config()).map(drop).map_err(|e| e.to_string())
}

/// Decodes the value at the front of `bytes` (the encoding [`encode`] writes); answers it and
/// the bytes it took.
///
/// bincode allocates the length a string claims before reading its bytes, so a forged length
/// (found by fuzzing) asked for up to 2^64 bytes and aborted the process. A limit on claimed
/// bytes turns that into an error. Only strings and byte vectors claim, and each claims exactly
/// the bytes it then reads, so what is left of `bytes` bounds every honest value; the limit is
/// the next power of 16 above it (a const generic, hence the ladder).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), bincode::error::DecodeError> {
    macro_rules! limited {
        ($($bits:literal)*) => {$(
            if bytes.len() <= 1 << $bits {
                return bincode::serde::decode_from_slice(bytes, config().with_limit::<{ 1 << $bits }>());
            }
        )*};
    }
    limited!(12 16 20 24 28);
    #[cfg(target_pointer_width = "64")]
    limited!(32 36 40 44 48);
    bincode::serde::decode_from_slice(bytes, config())
}

/// The serde shape of a state, fixed by snapshot format v1: keep it.
#[derive(Serialize)]
struct WireRef<'a> {
    userid: u64,
    persistent: bool,
    created_ms: u64,
    last_access_ms: u64,
    entries: Vec<WireEntryRef<'a>>,
}

#[derive(Serialize)]
struct WireEntryRef<'a> {
    scope: &'a str,
    key: &'a str,
    value: &'a [u8],
}

#[derive(Deserialize)]
struct Wire {
    userid: u64,
    persistent: bool,
    created_ms: u64,
    last_access_ms: u64,
    entries: Vec<WireEntry>,
}

#[derive(Deserialize)]
struct WireEntry {
    scope: String,
    key: String,
    value: Vec<u8>,
}

impl Serialize for SessionState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entries = Vec::new();
        for (scope, key, value) in self.entries() {
            let (Ok(scope), Ok(key)) = (std::str::from_utf8(scope), std::str::from_utf8(key)) else {
                return Err(serde::ser::Error::custom("session entry name is not UTF-8"));
            };
            entries.push(WireEntryRef { scope, key, value });
        }
        WireRef {
            userid: self.userid,
            persistent: self.persistent,
            created_ms: self.created_ms,
            last_access_ms: self.last_access_ms,
            entries,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SessionState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let entries = wire.entries.iter().map(|e| (e.scope.as_str(), e.key.as_str(), &e.value[..]));
        Self::from_entries(wire.userid, wire.persistent, wire.created_ms, wire.last_access_ms, entries)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;
    use crate::names::DEFAULT_SCOPE;

    /// The serde shape is what snapshot format v1 stores: a struct of the metadata and a
    /// sequence of `{scope, key, value}`. This pins it against the plain derived layout.
    #[test]
    fn serde_shape_matches_the_v1_layout() {
        #[derive(Serialize)]
        struct Entry {
            scope: Box<str>,
            key: Box<str>,
            value: Box<[u8]>,
        }
        #[derive(Serialize)]
        struct Layout {
            userid: u64,
            persistent: bool,
            created_ms: u64,
            last_access_ms: u64,
            entries: Vec<Entry>,
        }
        let big = LimitsConfig { max_value_bytes: 100, max_keys: 10, max_sessions: 1, ..LimitsConfig::default() };
        let mut s = SessionState::new(5);
        s.userid = 3;
        s.persistent = true;
        s.last_access_ms = 9;
        s.set("cart", "items", b"[1,2]", &big).unwrap();
        s.set(DEFAULT_SCOPE, "k", b"\"v\"", &big).unwrap();
        let layout = Layout {
            userid: 3,
            persistent: true,
            created_ms: 5,
            last_access_ms: 9,
            entries: vec![
                Entry { scope: "cart".into(), key: "items".into(), value: b"[1,2]"[..].into() },
                Entry { scope: DEFAULT_SCOPE.into(), key: "k".into(), value: b"\"v\""[..].into() },
            ],
        };
        let config = bincode::config::standard();
        let ours = bincode::serde::encode_to_vec(&s, config).unwrap();
        assert_eq!(ours, bincode::serde::encode_to_vec(&layout, config).unwrap());
        let (back, _): (SessionState, usize) = bincode::serde::decode_from_slice(&ours, config).unwrap();
        assert_eq!(back, s);
    }
}
