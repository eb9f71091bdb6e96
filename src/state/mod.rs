//! [`SessionState`]: one session's data and metadata, with no actors involved.
//!
//! - [`chunks`]: how the entries are packed (chunks of at most 1 KiB, a write rebuilding only
//!   its own).
//! - [`lifetimes`]: the lifetimes from `[session]`, and when a session expires.
//!
//! The names it checks and reserves are in [`crate::names`]; its bytes in snapshots and the
//! log, in [`crate::wire`].

mod chunks;
mod lifetimes;

use crate::config::LimitsConfig;
use crate::error::{SessionError, Unavailable};
use crate::names::{DEVICE_SCOPE, MAX_NAME_LEN};
use chunks::Chunks;
pub(crate) use lifetimes::Lifetimes;

/// What `limits.max_memory` counts for a session besides its entries' allocations: its entry
/// in the shard's map (stored hash 8, locator 16, record 64: see
/// `memory::shard::tests::a_slot_is_64_bytes`), its share of the map's index table (9 bytes a
/// bucket, at most 7/8 full, as little as 7/16 after the table doubles) and of the entries
/// vector's spare capacity: BENCHMARKS.md measured 111 bytes of RSS for a session of one
/// counter, rounded up here.
pub(crate) const SESSION_OVERHEAD: usize = 128;

/// What a write may grow a session to: the bytes it may hold (`limits.max_session_bytes`, or
/// `limits.max_anonymous_session_bytes` for a session nobody is logged into, which the caller
/// chose), and whether the shard's memory budget lets any session grow now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Room<'a> {
    pub limits: &'a LimitsConfig,
    /// The most bytes the session may hold, counted as [`SessionState::bytes`] counts them.
    pub max_bytes: usize,
    /// `Some(limit)`: the memory budget (`limits.max_memory`, `limit` bytes) is spent and nothing
    /// could be evicted; a write that grows the session is refused with `MemoryFull`.
    pub memory_full: Option<usize>,
}

impl<'a> Room<'a> {
    /// Room as `limits` gives it to any session, the memory budget aside.
    pub(crate) fn of(limits: &'a LimitsConfig) -> Self {
        Self { limits, max_bytes: limits.max_session_bytes, memory_full: None }
    }
}

/// A text value of [`DEVICE_SCOPE`] stored in a session's data, if any.
pub(crate) fn device_value(state: &SessionState, key: &str) -> Option<String> {
    state.get(DEVICE_SCOPE, key).and_then(|json| serde_json::from_slice(json).ok())
}

/// One session: user id, persistence, timestamps and namespaced values.
///
/// Values are kept as their JSON encoding, packed into chunks of at most 1 KiB (see
/// `state/chunks.rs`): a write copies at most its own entry and 1 KiB, however large the rest
/// of the session is; a write of the same size is done in place.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub(crate) userid: u64,
    pub(crate) persistent: bool,
    pub(crate) created_ms: u64,
    pub(crate) last_access_ms: u64,
    chunks: Chunks,
}

impl SessionState {
    /// A new anonymous, volatile, empty session created at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self { userid: 0, persistent: false, created_ms: now_ms, last_access_ms: now_ms, chunks: Chunks::default() }
    }

    /// A session of this metadata holding `entries` (scope, key, value), in this order, as
    /// snapshots and the log store it.
    ///
    /// # Errors
    /// When a name is longer than [`MAX_NAME_LEN`] or a value than `u32::MAX` bytes: no write
    /// makes such an entry, so the bytes it came from are damaged or forged.
    pub(crate) fn from_entries<'a>(
        userid: u64,
        persistent: bool,
        created_ms: u64,
        last_access_ms: u64,
        entries: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
    ) -> Result<Self, &'static str> {
        let mut too_long = false;
        let entries = entries.into_iter().map_while(|(scope, key, value)| {
            too_long = scope.len() > MAX_NAME_LEN || key.len() > MAX_NAME_LEN || value.len() > u32::MAX as usize;
            (!too_long).then_some((scope.as_bytes(), key.as_bytes(), value))
        });
        let chunks = Chunks::pack(entries);
        if too_long {
            return Err("session entry name or value too long");
        }
        Ok(Self { userid, persistent, created_ms, last_access_ms, chunks })
    }

    /// Its entries (scope, key, value) in order, as snapshots and the log store them.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> {
        self.chunks.iter().map(|e| (e.scope, e.key, e.value))
    }

    /// The logged-in user id, 0 when anonymous.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "public through `fuzzing::SessionState`"))]
    pub fn userid(&self) -> u64 {
        self.userid
    }

    /// Whether this is a remember-me session.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "public through `fuzzing::SessionState`"))]
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// The JSON encoding stored under `scope`/`key`.
    pub fn get(&self, scope: &str, key: &str) -> Option<&[u8]> {
        self.chunks.find(scope, key).map(|e| e.value)
    }

    /// Stores `value` under `scope`/`key`, within `limits`.
    ///
    /// # Errors
    /// [`SessionError::ValueTooLarge`], [`SessionError::TooManyKeys`] or
    /// [`SessionError::SessionTooLarge`]; the state is unchanged.
    pub fn set(
        &mut self,
        scope: &str,
        key: &str,
        value: impl AsRef<[u8]>,
        limits: &LimitsConfig,
    ) -> Result<(), SessionError> {
        self.set_within(scope, key, value.as_ref(), Room::of(limits))
    }

    /// Stores `value` under `scope`/`key`, within `room`: as [`set`](Self::set), the session's
    /// byte limit and the memory budget as `room` says.
    ///
    /// # Errors
    /// As [`set`](Self::set), [`SessionError::SessionTooLarge`] past `room.max_bytes`, and
    /// `Unavailable(MemoryFull)` for a write that grows the session while the budget is spent;
    /// the state is unchanged.
    pub(crate) fn set_within(
        &mut self,
        scope: &str,
        key: &str,
        value: &[u8],
        room: Room<'_>,
    ) -> Result<(), SessionError> {
        let limits = room.limits;
        if value.len() > limits.max_value_bytes || value.len() > u32::MAX as usize {
            return Err(SessionError::ValueTooLarge { size: value.len(), limit: limits.max_value_bytes });
        }
        debug_assert!(scope.len() <= MAX_NAME_LEN && key.len() <= MAX_NAME_LEN, "names are checked first");
        // One pass: the entry, if any (where, and its value's length), and what the session
        // counts without it.
        let (mut found, mut keys, mut others) = (None, 0, 0);
        for e in self.chunks.iter() {
            if e.key == key.as_bytes() && e.scope == scope.as_bytes() {
                found = Some(((e.chunk, e.start, e.end), e.value.len()));
            } else {
                others += e.counted();
            }
            keys += 1;
        }
        // A value of the same size (a counter, a flag): in place, the entry's header and names
        // are already right.
        if let Some(((chunk, _, end), old)) = found
            && old == value.len()
        {
            self.chunks.overwrite_value(chunk, end, value);
            return Ok(());
        }
        if found.is_none() && keys >= limits.max_keys {
            return Err(SessionError::TooManyKeys { limit: limits.max_keys });
        }
        let total = others + scope.len() + key.len() + value.len();
        let grows = found.is_none_or(|(_, old)| value.len() > old);
        // A write that does not grow the session always works, even over a lowered limit.
        if grows && total > room.max_bytes {
            return Err(SessionError::SessionTooLarge { size: total, limit: room.max_bytes });
        }
        if grows && let Some(limit) = room.memory_full {
            return Err(Unavailable::MemoryFull { limit }.into());
        }
        self.chunks.write(found.map(|(at, _)| at), scope, key, value);
        Ok(())
    }

    /// Removes `scope`/`key`; whether it was there.
    pub fn remove(&mut self, scope: &str, key: &str) -> bool {
        self.chunks.remove(scope, key)
    }

    /// Removes every key of `scope`, or of every scope when `None`.
    pub fn clear(&mut self, scope: Option<&str>) {
        match scope {
            Some(scope) => self.chunks.clear_scope(scope),
            None => self.chunks = Chunks::default(),
        }
    }

    /// The keys of `scope`, sorted.
    pub fn keys(&self, scope: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .chunks
            .iter()
            .filter(|e| e.scope == scope.as_bytes())
            .map(|e| String::from_utf8_lossy(e.key).into_owned())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Number of keys over all scopes.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "public through `fuzzing::SessionState`"))]
    pub fn len(&self) -> usize {
        self.chunks.iter().count()
    }

    /// Whether the session holds no keys.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "public through `fuzzing::SessionState`"))]
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// What the session costs the memory backend, as `limits.max_memory` estimates it:
    /// [`SESSION_OVERHEAD`] and its entries' allocations. O(chunks): no entry is read, and a
    /// session of one small entry answers at once.
    #[inline]
    pub(crate) fn footprint(&self) -> usize {
        SESSION_OVERHEAD + self.chunks.heap_bytes()
    }

    /// Bytes of its scope names, key names and values, as `limits.max_session_bytes` counts them.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "public through `fuzzing::SessionState`"))]
    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(|e| e.counted()).sum()
    }
}

/// Equal metadata and the same entries in the same order, however they are chunked.
impl PartialEq for SessionState {
    fn eq(&self, other: &Self) -> bool {
        self.userid == other.userid
            && self.persistent == other.persistent
            && self.created_ms == other.created_ms
            && self.last_access_ms == other.last_access_ms
            && self.entries().eq(other.entries())
    }
}

impl Eq for SessionState {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::DEFAULT_SCOPE;

    fn limits() -> LimitsConfig {
        LimitsConfig { max_value_bytes: 8, max_keys: 2, max_sessions: 10, ..LimitsConfig::default() }
    }

    #[test]
    fn scopes_are_independent() {
        let mut s = SessionState::new(0);
        s.set(DEFAULT_SCOPE, "k", b"1", &limits()).unwrap();
        s.set("cart", "k", b"2", &limits()).unwrap();
        assert_eq!(s.get(DEFAULT_SCOPE, "k"), Some(&b"1"[..]));
        assert_eq!(s.get("cart", "k"), Some(&b"2"[..]));
        assert!(s.remove("cart", "k"));
        assert_eq!(s.get(DEFAULT_SCOPE, "k"), Some(&b"1"[..]));
        assert_eq!(s.get("cart", "k"), None);
    }

    #[test]
    fn limits_reject_without_change() {
        let mut s = SessionState::new(0);
        assert_eq!(s.set("a", "k", [0; 9], &limits()), Err(SessionError::ValueTooLarge { size: 9, limit: 8 }));
        s.set("a", "1", b"1", &limits()).unwrap();
        s.set("a", "2", b"2", &limits()).unwrap();
        assert_eq!(s.set("b", "3", b"3", &limits()), Err(SessionError::TooManyKeys { limit: 2 }));
        // Overwriting an existing key is fine at the cap.
        s.set("a", "2", b"22", &limits()).unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn overwrite_remove_and_clear_keep_the_other_entries() {
        let big = LimitsConfig { max_value_bytes: 100, max_keys: 10, max_sessions: 1, ..LimitsConfig::default() };
        let mut s = SessionState::new(0);
        for (scope, key, value) in [("a", "x", &b"1"[..]), ("b", "x", b"22"), ("a", "y", b"333"), ("c", "z", b"")] {
            s.set(scope, key, value, &big).unwrap();
        }
        s.set("a", "x", b"9", &big).unwrap(); // same size: in place
        s.set("b", "x", b"longer value", &big).unwrap();
        assert_eq!(s.get("a", "x"), Some(&b"9"[..]));
        assert_eq!(s.get("b", "x"), Some(&b"longer value"[..]));
        assert_eq!(s.get("a", "y"), Some(&b"333"[..]));
        assert_eq!(s.get("c", "z"), Some(&b""[..]));
        assert!(s.remove("a", "x"));
        assert_eq!(s.keys("a"), ["y"]);
        s.clear(Some("b"));
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("a", "y"), Some(&b"333"[..]));
        s.clear(None);
        assert!(s.is_empty());
    }

    #[test]
    fn the_session_size_limit_refuses_growth_and_keeps_everything() {
        let limits = LimitsConfig { max_value_bytes: 100, max_session_bytes: 20, ..LimitsConfig::default() };
        let mut s = SessionState::new(0);
        s.set("a", "x", b"12345678", &limits).unwrap(); // 1 + 1 + 8
        s.set("a", "y", b"1234", &limits).unwrap(); // 1 + 1 + 4: 16 in all
        assert_eq!(s.bytes(), 16);
        // Growing past 20, by a new key or a longer value: refused, nothing changes.
        assert_eq!(s.set("a", "z", b"123", &limits), Err(SessionError::SessionTooLarge { size: 21, limit: 20 }));
        assert_eq!(s.set("a", "y", b"123456789", &limits), Err(SessionError::SessionTooLarge { size: 21, limit: 20 }));
        assert_eq!(
            (s.get("a", "x"), s.get("a", "y"), s.get("a", "z")),
            (Some(&b"12345678"[..]), Some(&b"1234"[..]), None)
        );
        assert_eq!(s.bytes(), 16);
        // Up to the limit exactly is fine.
        s.set("a", "y", b"12345", &limits).unwrap();
        s.set("a", "z", b"", &limits).unwrap();
        assert_eq!(s.bytes(), 19);
        // Over a limit lowered later, a write that does not grow the session still works.
        let lowered = LimitsConfig { max_session_bytes: 5, ..limits };
        s.set("a", "x", b"1", &lowered).unwrap();
        s.set("a", "y", b"54321", &lowered).unwrap();
        assert_eq!(s.set("a", "y", b"654321", &lowered), Err(SessionError::SessionTooLarge { size: 13, limit: 5 }));
        assert_eq!(s.get("a", "y"), Some(&b"54321"[..]));
    }
}
