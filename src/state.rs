//! [`SessionState`]: one session's data and metadata, with no actors involved.

use serde::{Deserialize, Serialize};

use crate::clock::millis;
use crate::config::LimitsConfig;
use crate::error::SessionError;

/// The default namespace, as in Draco.
pub const DEFAULT_SCOPE: &str = "__system__";
/// Longest scope or key name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// One session: user id, persistence, timestamps and namespaced values.
///
/// Values are kept as their JSON encoding. All entries of a session are packed into one
/// allocation (`[scope len u16][key len u16][value len u32][scope][key][value]`, repeated):
/// sessions hold few, small keys, and one buffer scanned linearly beats a map of maps on
/// memory (one allocation instead of three per key) and on speed at these sizes. A write
/// rebuilds the buffer, so its cost grows with the session's size, which the limits bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub(crate) userid: u64,
    pub(crate) persistent: bool,
    pub(crate) created_ms: u64,
    pub(crate) last_access_ms: u64,
    data: Box<[u8]>,
}

const ENTRY_HEADER: usize = 8;

/// One packed entry, borrowed from the buffer.
#[derive(Debug, Clone, Copy)]
struct Packed<'a> {
    scope: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
    /// Byte range of the whole entry in the buffer.
    start: usize,
    end: usize,
}

struct Iter<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Packed<'a>;

    fn next(&mut self) -> Option<Packed<'a>> {
        let d = self.data;
        let start = self.at;
        let header = d.get(start..start + ENTRY_HEADER)?;
        let scope_len = u16::from_le_bytes([header[0], header[1]]) as usize;
        let key_len = u16::from_le_bytes([header[2], header[3]]) as usize;
        let value_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let scope_at = start + ENTRY_HEADER;
        let key_at = scope_at + scope_len;
        let value_at = key_at + key_len;
        let end = value_at + value_len;
        // The buffer is only ever built by `push_entry`, so this holds; stop rather than panic.
        let value = d.get(value_at..end)?;
        self.at = end;
        Some(Packed { scope: &d[scope_at..key_at], key: &d[key_at..value_at], value, start, end })
    }
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "names are at most MAX_NAME_LEN bytes and values at most limits.max_value_bytes (64 MiB), checked before any write"
)]
fn push_entry(out: &mut Vec<u8>, scope: &[u8], key: &[u8], value: &[u8]) {
    out.extend_from_slice(&(scope.len() as u16).to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(scope);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
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
        for e in self.iter() {
            let (Ok(scope), Ok(key)) = (std::str::from_utf8(e.scope), std::str::from_utf8(e.key)) else {
                return Err(serde::ser::Error::custom("session entry name is not UTF-8"));
            };
            entries.push(WireEntryRef { scope, key, value: e.value });
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
        let mut data = Vec::new();
        for e in &wire.entries {
            if e.scope.len() > MAX_NAME_LEN || e.key.len() > MAX_NAME_LEN || e.value.len() > u32::MAX as usize {
                return Err(serde::de::Error::custom("session entry name or value too long"));
            }
            push_entry(&mut data, e.scope.as_bytes(), e.key.as_bytes(), &e.value);
        }
        Ok(Self {
            userid: wire.userid,
            persistent: wire.persistent,
            created_ms: wire.created_ms,
            last_access_ms: wire.last_access_ms,
            data: data.into_boxed_slice(),
        })
    }
}

/// Lifetimes a state's expiry is computed from, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub volatile_ms: u64,
    pub persistent_ms: u64,
    /// 0 = no absolute cap.
    pub absolute_ms: u64,
}

impl Lifetimes {
    pub fn from_config(c: &crate::config::SessionConfig) -> Self {
        Self {
            volatile_ms: millis(c.volatile_ttl),
            persistent_ms: millis(c.persistent_ttl),
            absolute_ms: millis(c.absolute_ttl),
        }
    }
}

/// Checks a scope or key name.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), SessionError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        let mut cut = name.len().min(64);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(SessionError::InvalidName { what, name: name[..cut].to_owned(), max: MAX_NAME_LEN });
    }
    Ok(())
}

impl SessionState {
    /// A new anonymous, volatile, empty session created at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self { userid: 0, persistent: false, created_ms: now_ms, last_access_ms: now_ms, data: Box::default() }
    }

    /// The logged-in user id, 0 when anonymous.
    pub fn userid(&self) -> u64 {
        self.userid
    }

    /// Whether this is a remember-me session.
    pub fn persistent(&self) -> bool {
        self.persistent
    }

    /// When the session expires, in ms since the epoch.
    pub(crate) fn expires_ms(&self, l: &Lifetimes) -> u64 {
        let ttl = if self.persistent { l.persistent_ms } else { l.volatile_ms };
        let idle = self.last_access_ms.saturating_add(ttl);
        if l.absolute_ms > 0 { idle.min(self.created_ms.saturating_add(l.absolute_ms)) } else { idle }
    }

    pub(crate) fn is_expired(&self, l: &Lifetimes, now_ms: u64) -> bool {
        self.expires_ms(l) <= now_ms
    }

    fn iter(&self) -> Iter<'_> {
        Iter { data: &self.data, at: 0 }
    }

    fn find(&self, scope: &str, key: &str) -> Option<Packed<'_>> {
        self.iter().find(|e| e.key == key.as_bytes() && e.scope == scope.as_bytes())
    }

    /// Replaces the byte range `start..end` of the buffer with `replacement`.
    fn splice(&mut self, start: usize, end: usize, replacement: &[u8]) {
        let mut data = Vec::with_capacity(self.data.len() - (end - start) + replacement.len());
        data.extend_from_slice(&self.data[..start]);
        data.extend_from_slice(replacement);
        data.extend_from_slice(&self.data[end..]);
        self.data = data.into_boxed_slice();
    }

    /// The JSON encoding stored under `scope`/`key`.
    pub fn get(&self, scope: &str, key: &str) -> Option<&[u8]> {
        self.find(scope, key).map(|e| e.value)
    }

    /// Stores `value` under `scope`/`key`, within `limits`.
    ///
    /// # Errors
    /// [`SessionError::ValueTooLarge`] or [`SessionError::TooManyKeys`]; the state is unchanged.
    pub fn set(
        &mut self,
        scope: &str,
        key: &str,
        value: impl AsRef<[u8]>,
        limits: &LimitsConfig,
    ) -> Result<(), SessionError> {
        let value = value.as_ref();
        if value.len() > limits.max_value_bytes || value.len() > u32::MAX as usize {
            return Err(SessionError::ValueTooLarge { size: value.len(), limit: limits.max_value_bytes });
        }
        debug_assert!(scope.len() <= MAX_NAME_LEN && key.len() <= MAX_NAME_LEN, "names are checked first");
        let size = ENTRY_HEADER + scope.len() + key.len() + value.len();
        let found = self.find(scope, key).map(|e| (e.start, e.end));
        // A value of the same size (a counter, a flag): in place, the entry's header and names
        // are already right.
        if let Some((start, end)) = found
            && end - start == size
        {
            self.data[end - value.len()..end].copy_from_slice(value);
            return Ok(());
        }
        let mut entry = Vec::with_capacity(size);
        push_entry(&mut entry, scope.as_bytes(), key.as_bytes(), value);
        match found {
            Some((start, end)) => self.splice(start, end, &entry),
            None => {
                if self.len() >= limits.max_keys {
                    return Err(SessionError::TooManyKeys { limit: limits.max_keys });
                }
                let end = self.data.len();
                self.splice(end, end, &entry);
            }
        }
        Ok(())
    }

    /// Removes `scope`/`key`; whether it was there.
    pub fn remove(&mut self, scope: &str, key: &str) -> bool {
        match self.find(scope, key).map(|e| (e.start, e.end)) {
            Some((start, end)) => {
                self.splice(start, end, &[]);
                true
            }
            None => false,
        }
    }

    /// Removes every key of `scope`, or of every scope when `None`.
    pub fn clear(&mut self, scope: Option<&str>) {
        let Some(scope) = scope else {
            self.data = Box::default();
            return;
        };
        let mut kept = Vec::with_capacity(self.data.len());
        for e in self.iter().filter(|e| e.scope != scope.as_bytes()) {
            kept.extend_from_slice(&self.data[e.start..e.end]);
        }
        self.data = kept.into_boxed_slice();
    }

    /// The keys of `scope`, sorted.
    pub fn keys(&self, scope: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .iter()
            .filter(|e| e.scope == scope.as_bytes())
            .map(|e| String::from_utf8_lossy(e.key).into_owned())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Number of keys over all scopes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the session holds no keys.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn expiry_slides_and_respects_the_absolute_cap() {
        let l = Lifetimes { volatile_ms: 100, persistent_ms: 1000, absolute_ms: 0 };
        let mut s = SessionState::new(0);
        assert_eq!(s.expires_ms(&l), 100);
        s.last_access_ms = 50;
        assert_eq!(s.expires_ms(&l), 150);
        s.persistent = true;
        assert_eq!(s.expires_ms(&l), 1050);
        let capped = Lifetimes { absolute_ms: 500, ..l };
        assert_eq!(s.expires_ms(&capped), 500);
        assert!(s.is_expired(&capped, 500));
        assert!(!s.is_expired(&l, 1049));
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

    #[test]
    fn names_are_checked() {
        assert!(check_name("key", "").is_err());
        assert!(check_name("key", &"x".repeat(257)).is_err());
        assert!(check_name("key", "visits").is_ok());
    }
}
