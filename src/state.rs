//! [`SessionState`]: one session's data and metadata, with no actors involved.

use serde::{Deserialize, Serialize};

use crate::clock::millis;
use crate::config::LimitsConfig;
use crate::error::SessionError;

/// The reserved scope holding what a session records about its device (see
/// `Session::devices`): `label`, a short name of the browser and system that logged in.
pub(crate) const DEVICE_SCOPE: &str = "__draco.device";
/// The device label's key in [`DEVICE_SCOPE`].
pub(crate) const LABEL_KEY: &str = "label";

/// The client address's key in [`DEVICE_SCOPE`] (`session.record_ip`).
pub(crate) const IP_KEY: &str = "ip";

/// A text value of [`DEVICE_SCOPE`] stored in a session's data, if any.
pub(crate) fn device_value(state: &SessionState, key: &str) -> Option<String> {
    state.get(DEVICE_SCOPE, key).and_then(|json| serde_json::from_slice(json).ok())
}

/// The default namespace, as in Draco.
pub const DEFAULT_SCOPE: &str = "__system__";
/// Longest scope or key name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// One session: user id, persistence, timestamps and namespaced values.
///
/// Values are kept as their JSON encoding. Entries are packed
/// (`[scope len u16][key len u16][value len u32][scope][key][value]`, repeated) into chunks:
/// sessions hold few, small keys, and a small buffer scanned linearly beats a map of maps on
/// memory (one allocation instead of three per key) and on speed at these sizes. Small entries
/// share a chunk of at most `CHUNK_BYTES` (1 KiB); an entry larger than that has a chunk of its own.
/// A write rebuilds only the chunk of its entry, so it copies at most the new entry plus
/// `CHUNK_BYTES` (1 KiB), however large the rest of the session is; a write of the same size is done
/// in place.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub(crate) userid: u64,
    pub(crate) persistent: bool,
    pub(crate) created_ms: u64,
    pub(crate) last_access_ms: u64,
    /// Invariant: no chunk is empty, and a chunk of two entries or more is at most
    /// `CHUNK_BYTES` (1 KiB) long.
    chunks: Chunks,
}

/// The chunks of a session. Most sessions fit one chunk, held without a list around it: a
/// list would cost each of them an allocation.
#[derive(Debug, Clone)]
enum Chunks {
    One(Box<[u8]>),
    /// None (an empty session), or two and more.
    Many(Box<[Box<[u8]>]>),
}

impl Default for Chunks {
    fn default() -> Self {
        Self::Many(Box::default())
    }
}

impl Chunks {
    fn from_vec(mut chunks: Vec<Box<[u8]>>) -> Self {
        match chunks.pop() {
            Some(one) if chunks.is_empty() => Self::One(one),
            Some(last) => {
                chunks.push(last);
                Self::Many(chunks.into_boxed_slice())
            }
            None => Self::default(),
        }
    }

    fn into_vec(self) -> Vec<Box<[u8]>> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many.into_vec(),
        }
    }

    fn as_slice(&self) -> &[Box<[u8]>] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Box<[u8]>] {
        match self {
            Self::One(one) => std::slice::from_mut(one),
            Self::Many(many) => many,
        }
    }
}

const ENTRY_HEADER: usize = 8;
/// Most bytes of packed entries sharing one chunk.
const CHUNK_BYTES: usize = 1024;

#[cfg(test)]
thread_local! {
    /// Bytes of entries copied into rebuilt chunks on this thread, for the test that a write
    /// copies its own entry, not the session.
    static COPIED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `n` bytes of entries copied by a write (tests only).
#[cfg_attr(not(test), allow(unused_variables, reason = "counted in tests only"))]
fn copied(n: usize) {
    #[cfg(test)]
    COPIED.with(|c| c.set(c.get() + n));
}

/// One packed entry, borrowed from its chunk.
#[derive(Debug, Clone, Copy)]
struct Packed<'a> {
    scope: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
    /// Index of its chunk, and byte range of the whole entry in it.
    chunk: usize,
    start: usize,
    end: usize,
}

impl Packed<'_> {
    /// Its size as `limits.max_session_bytes` counts it: names and value.
    fn counted(&self) -> usize {
        self.scope.len() + self.key.len() + self.value.len()
    }
}

struct Iter<'a> {
    chunks: &'a [Box<[u8]>],
    chunk: usize,
    at: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = Packed<'a>;

    fn next(&mut self) -> Option<Packed<'a>> {
        let mut d: &'a [u8] = self.chunks.get(self.chunk)?;
        while self.at >= d.len() {
            self.chunk += 1;
            self.at = 0;
            d = self.chunks.get(self.chunk)?;
        }
        let start = self.at;
        let header = d.get(start..start + ENTRY_HEADER)?;
        let scope_len = u16::from_le_bytes([header[0], header[1]]) as usize;
        let key_len = u16::from_le_bytes([header[2], header[3]]) as usize;
        let value_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let scope_at = start + ENTRY_HEADER;
        let key_at = scope_at + scope_len;
        let value_at = key_at + key_len;
        let end = value_at + value_len;
        // Chunks are only ever built by `push_entry`, so this holds; stop rather than panic.
        let value = d.get(value_at..end)?;
        self.at = end;
        Some(Packed { scope: &d[scope_at..key_at], key: &d[key_at..value_at], value, chunk: self.chunk, start, end })
    }
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "names are at most MAX_NAME_LEN bytes and values at most limits.max_value_bytes (64 MiB), checked before any write"
)]
fn push_entry(out: &mut Vec<u8>, scope: &[u8], key: &[u8], value: &[u8]) {
    copied(ENTRY_HEADER + scope.len() + key.len() + value.len());
    out.extend_from_slice(&(scope.len() as u16).to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(scope);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// `chunk` with its byte range `start..end` replaced by `replacement`.
fn spliced(chunk: &[u8], start: usize, end: usize, replacement: &[u8]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(chunk.len() - (end - start) + replacement.len());
    out.extend_from_slice(&chunk[..start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&chunk[end..]);
    copied(chunk.len() - (end - start));
    out.into_boxed_slice()
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
        let mut chunks: Vec<Box<[u8]>> = Vec::new();
        let mut small = Vec::new();
        for e in &wire.entries {
            if e.scope.len() > MAX_NAME_LEN || e.key.len() > MAX_NAME_LEN || e.value.len() > u32::MAX as usize {
                return Err(serde::de::Error::custom("session entry name or value too long"));
            }
            let size = ENTRY_HEADER + e.scope.len() + e.key.len() + e.value.len();
            if !small.is_empty() && small.len() + size > CHUNK_BYTES {
                chunks.push(std::mem::take(&mut small).into_boxed_slice());
            }
            push_entry(&mut small, e.scope.as_bytes(), e.key.as_bytes(), &e.value);
        }
        if !small.is_empty() {
            chunks.push(small.into_boxed_slice());
        }
        Ok(Self {
            userid: wire.userid,
            persistent: wire.persistent,
            created_ms: wire.created_ms,
            last_access_ms: wire.last_access_ms,
            chunks: Chunks::from_vec(chunks),
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
        Self { userid: 0, persistent: false, created_ms: now_ms, last_access_ms: now_ms, chunks: Chunks::default() }
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
        Iter { chunks: self.chunks.as_slice(), chunk: 0, at: 0 }
    }

    fn find(&self, scope: &str, key: &str) -> Option<Packed<'_>> {
        self.iter().find(|e| e.key == key.as_bytes() && e.scope == scope.as_bytes())
    }

    /// The chunks, with chunk `at` replaced by `with` (`None`: removed) and `push` added last.
    fn rechunk(&mut self, at: Option<(usize, Option<Box<[u8]>>)>, push: Option<Box<[u8]>>) {
        // Only the chunk pointers move: no entry is copied.
        let old = std::mem::take(&mut self.chunks).into_vec();
        // Exactly the capacity needed: the box keeps this allocation as it is.
        let mut chunks = Vec::with_capacity(old.len() + usize::from(push.is_some()));
        for (j, chunk) in old.into_iter().enumerate() {
            match &at {
                Some((i, _)) if *i == j => {}
                _ => chunks.push(chunk),
            }
        }
        if let Some((i, Some(chunk))) = at {
            chunks.insert(i, chunk);
        }
        chunks.extend(push);
        self.chunks = Chunks::from_vec(chunks);
    }

    /// The JSON encoding stored under `scope`/`key`.
    pub fn get(&self, scope: &str, key: &str) -> Option<&[u8]> {
        self.find(scope, key).map(|e| e.value)
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
        let value = value.as_ref();
        if value.len() > limits.max_value_bytes || value.len() > u32::MAX as usize {
            return Err(SessionError::ValueTooLarge { size: value.len(), limit: limits.max_value_bytes });
        }
        debug_assert!(scope.len() <= MAX_NAME_LEN && key.len() <= MAX_NAME_LEN, "names are checked first");
        let size = ENTRY_HEADER + scope.len() + key.len() + value.len();
        // One pass: the entry, if any, and what the session counts without it.
        let (mut found, mut keys, mut others) = (None, 0, 0);
        for e in self.iter() {
            if e.key == key.as_bytes() && e.scope == scope.as_bytes() {
                found = Some((e.chunk, e.start, e.end));
            } else {
                others += e.counted();
            }
            keys += 1;
        }
        // A value of the same size (a counter, a flag): in place, the entry's header and names
        // are already right.
        if let Some((chunk, start, end)) = found
            && end - start == size
        {
            self.chunks.as_mut_slice()[chunk][end - value.len()..end].copy_from_slice(value);
            return Ok(());
        }
        if found.is_none() && keys >= limits.max_keys {
            return Err(SessionError::TooManyKeys { limit: limits.max_keys });
        }
        let total = others + scope.len() + key.len() + value.len();
        let grows = found.is_none_or(|(_, start, end)| size > end - start);
        // A write that does not grow the session always works, even over a lowered limit.
        if grows && total > limits.max_session_bytes {
            return Err(SessionError::SessionTooLarge { size: total, limit: limits.max_session_bytes });
        }
        let mut entry = Vec::with_capacity(size);
        push_entry(&mut entry, scope.as_bytes(), key.as_bytes(), value);
        match found {
            Some((i, start, end)) => {
                let chunk = &self.chunks.as_slice()[i];
                if start == 0 && end == chunk.len() {
                    // Alone in its chunk: the new entry is the new chunk.
                    self.chunks.as_mut_slice()[i] = entry.into_boxed_slice();
                } else if chunk.len() - (end - start) + size <= CHUNK_BYTES {
                    let rebuilt = spliced(chunk, start, end, &entry);
                    self.chunks.as_mut_slice()[i] = rebuilt;
                } else {
                    // Too large to share the chunk any more: it moves to one of its own.
                    let rest = spliced(chunk, start, end, &[]);
                    self.rechunk(Some((i, Some(rest))), Some(entry.into_boxed_slice()));
                }
            }
            None => match self.chunks.as_mut_slice().last_mut() {
                Some(last) if last.len() + size <= CHUNK_BYTES => {
                    let end = last.len();
                    *last = spliced(last, end, end, &entry);
                }
                _ => self.rechunk(None, Some(entry.into_boxed_slice())),
            },
        }
        Ok(())
    }

    /// Removes `scope`/`key`; whether it was there.
    pub fn remove(&mut self, scope: &str, key: &str) -> bool {
        let Some((i, start, end)) = self.find(scope, key).map(|e| (e.chunk, e.start, e.end)) else { return false };
        let chunk = &self.chunks.as_slice()[i];
        if start == 0 && end == chunk.len() {
            self.rechunk(Some((i, None)), None);
        } else {
            let rest = spliced(chunk, start, end, &[]);
            self.chunks.as_mut_slice()[i] = rest;
        }
        true
    }

    /// Removes every key of `scope`, or of every scope when `None`.
    pub fn clear(&mut self, scope: Option<&str>) {
        let Some(scope) = scope else {
            self.chunks = Chunks::default();
            return;
        };
        let all = self.chunks.as_slice();
        let mut chunks: Vec<Box<[u8]>> = Vec::with_capacity(all.len());
        for chunk in all {
            let entries = || Iter { chunks: std::slice::from_ref(chunk), chunk: 0, at: 0 };
            if entries().all(|e| e.scope != scope.as_bytes()) {
                chunks.push(chunk.clone());
                continue;
            }
            let mut kept = Vec::new();
            for e in entries().filter(|e| e.scope != scope.as_bytes()) {
                kept.extend_from_slice(&chunk[e.start..e.end]);
            }
            if !kept.is_empty() {
                chunks.push(kept.into_boxed_slice());
            }
        }
        self.chunks = Chunks::from_vec(chunks);
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
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "public through `fuzzing::SessionState`"))]
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the session holds no keys.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "public through `fuzzing::SessionState`"))]
    pub fn is_empty(&self) -> bool {
        self.chunks.as_slice().is_empty()
    }

    /// Bytes of its scope names, key names and values, as `limits.max_session_bytes` counts them.
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "public through `fuzzing::SessionState`"))]
    pub fn bytes(&self) -> usize {
        self.iter().map(|e| e.counted()).sum()
    }
}

/// Equal metadata and the same entries in the same order, however they are chunked.
impl PartialEq for SessionState {
    fn eq(&self, other: &Self) -> bool {
        self.userid == other.userid
            && self.persistent == other.persistent
            && self.created_ms == other.created_ms
            && self.last_access_ms == other.last_access_ms
            && self.iter().map(|e| (e.scope, e.key, e.value)).eq(other.iter().map(|e| (e.scope, e.key, e.value)))
    }
}

impl Eq for SessionState {}

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

    /// A write copies its own entry (and at most one small chunk), never the rest of the
    /// session: changing a 1-byte value's size in a session holding 1 MiB copies as little
    /// as in an empty one.
    #[test]
    fn a_write_does_not_copy_the_whole_session() {
        let limits = LimitsConfig { max_value_bytes: 64 << 10, ..LimitsConfig::default() };
        let copies = |s: &mut SessionState, value: &[u8]| {
            COPIED.with(|c| c.set(0));
            s.set("stats", "n", value, &limits).unwrap();
            COPIED.with(std::cell::Cell::get)
        };
        let mut small = SessionState::new(0);
        small.set("stats", "n", b"9", &limits).unwrap();
        let mut big = SessionState::new(0);
        big.set("stats", "n", b"9", &limits).unwrap();
        for i in 0..15 {
            big.set("files", &format!("f{i}"), vec![b'x'; 64 << 10], &limits).unwrap();
        }
        big.set("stats", "m", b"1", &limits).unwrap();
        assert!(big.bytes() > 15 * (64 << 10));
        // At most one shared chunk and the entry: a few KiB, whatever the session holds.
        const BOUND: usize = 4096;
        // 9 -> 10: one byte more, so not the same-size path.
        let (in_small, in_big) = (copies(&mut small, b"10"), copies(&mut big, b"10"));
        assert!(in_big <= BOUND, "a 1-byte change copied {in_big} bytes of a 1 MiB session");
        assert!(in_small <= BOUND);
        // Adding and removing a small key: the same.
        COPIED.with(|c| c.set(0));
        big.set("stats", "k", b"1", &limits).unwrap();
        assert!(big.remove("stats", "k"));
        assert!(COPIED.with(std::cell::Cell::get) <= 2 * BOUND);
        // A big value's own write copies that value, once.
        COPIED.with(|c| c.set(0));
        big.set("files", "f3", vec![b'y'; 60 << 10], &limits).unwrap();
        assert!(COPIED.with(std::cell::Cell::get) <= (60 << 10) + BOUND);
        assert_eq!(big.get("stats", "n"), Some(&b"10"[..]));
        assert_eq!(big.get("files", "f3").map(<[u8]>::len), Some(60 << 10));
        assert_eq!(big.get("files", "f14").map(<[u8]>::len), Some(64 << 10));
        assert_eq!(big.len(), 17);
    }

    /// Entries that outgrow a shared chunk move to their own and back; what is stored, the
    /// order aside, never depends on how it is chunked, and a round trip keeps it.
    #[test]
    fn entries_move_between_chunks_and_keep_their_values() {
        let limits = LimitsConfig { max_value_bytes: 4096, ..LimitsConfig::default() };
        let mut s = SessionState::new(0);
        let mut model = std::collections::BTreeMap::new();
        for step in 0u32..400 {
            let key = format!("k{}", step % 13);
            let len = [0, 1, 7, 300, 900, 2000][(step as usize * 7) % 6];
            if step % 11 == 5 {
                assert_eq!(s.remove("s", &key), model.remove(&key).is_some());
            } else {
                let value = vec![b'a' + (step % 26) as u8; len];
                s.set("s", &key, &value, &limits).unwrap();
                model.insert(key, value);
            }
            for chunk in s.chunks.as_slice() {
                assert!(!chunk.is_empty());
                let entries = Iter { chunks: std::slice::from_ref(chunk), chunk: 0, at: 0 }.count();
                assert!(entries == 1 || chunk.len() <= CHUNK_BYTES, "a shared chunk of {} bytes", chunk.len());
            }
        }
        for (key, value) in &model {
            assert_eq!(s.get("s", key), Some(&value[..]));
        }
        assert_eq!(s.len(), model.len());
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&s, config).unwrap();
        let (back, _): (SessionState, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, s);
        s.clear(Some("s"));
        assert!(s.is_empty());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("key", "").is_err());
        assert!(check_name("key", &"x".repeat(257)).is_err());
        assert!(check_name("key", "visits").is_ok());
    }
}
