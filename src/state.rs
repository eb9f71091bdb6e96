//! [`SessionState`]: one session's data and metadata, with no actors involved.

use serde::{Deserialize, Serialize};

use crate::config::LimitsConfig;
use crate::error::SessionError;

/// The default namespace, as in Draco.
pub const DEFAULT_SCOPE: &str = "__system__";
/// Longest scope or key name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// One stored value: its scope, key and JSON encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    scope: Box<str>,
    key: Box<str>,
    value: Box<[u8]>,
}

/// One session: user id, persistence, timestamps and namespaced values.
///
/// Values are kept as their JSON encoding. Entries live in one flat vector: sessions hold few
/// keys, and a scan of a short vector beats a map of maps on both speed and memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    pub(crate) userid: u64,
    pub(crate) persistent: bool,
    pub(crate) created_ms: u64,
    pub(crate) last_access_ms: u64,
    entries: Vec<Entry>,
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
            volatile_ms: c.volatile_ttl.as_millis() as u64,
            persistent_ms: c.persistent_ttl.as_millis() as u64,
            absolute_ms: c.absolute_ttl.as_millis() as u64,
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
        Self { userid: 0, persistent: false, created_ms: now_ms, last_access_ms: now_ms, entries: Vec::new() }
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

    fn position(&self, scope: &str, key: &str) -> Option<usize> {
        self.entries.iter().position(|e| &*e.key == key && &*e.scope == scope)
    }

    /// The JSON encoding stored under `scope`/`key`.
    pub fn get(&self, scope: &str, key: &str) -> Option<&[u8]> {
        self.position(scope, key).map(|i| &*self.entries[i].value)
    }

    /// Stores `value` under `scope`/`key`, within `limits`.
    ///
    /// # Errors
    /// [`SessionError::ValueTooLarge`] or [`SessionError::TooManyKeys`]; the state is unchanged.
    pub fn set(&mut self, scope: &str, key: &str, value: Vec<u8>, limits: &LimitsConfig) -> Result<(), SessionError> {
        if value.len() > limits.max_value_bytes {
            return Err(SessionError::ValueTooLarge { size: value.len(), limit: limits.max_value_bytes });
        }
        match self.position(scope, key) {
            Some(i) => self.entries[i].value = value.into_boxed_slice(),
            None => {
                if self.entries.len() >= limits.max_keys {
                    return Err(SessionError::TooManyKeys { limit: limits.max_keys });
                }
                self.entries.push(Entry { scope: scope.into(), key: key.into(), value: value.into_boxed_slice() });
            }
        }
        Ok(())
    }

    /// Removes `scope`/`key`; whether it was there.
    pub fn remove(&mut self, scope: &str, key: &str) -> bool {
        match self.position(scope, key) {
            Some(i) => {
                self.entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Removes every key of `scope`, or of every scope when `None`.
    pub fn clear(&mut self, scope: Option<&str>) {
        match scope {
            Some(s) => self.entries.retain(|e| &*e.scope != s),
            None => self.entries.clear(),
        }
    }

    /// The keys of `scope`, sorted.
    pub fn keys(&self, scope: &str) -> Vec<String> {
        let mut keys: Vec<String> =
            self.entries.iter().filter(|e| &*e.scope == scope).map(|e| e.key.to_string()).collect();
        keys.sort_unstable();
        keys
    }

    /// Number of keys over all scopes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the session holds no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LimitsConfig {
        LimitsConfig { max_value_bytes: 8, max_keys: 2, max_sessions: 10 }
    }

    #[test]
    fn scopes_are_independent() {
        let mut s = SessionState::new(0);
        s.set(DEFAULT_SCOPE, "k", b"1".to_vec(), &limits()).unwrap();
        s.set("cart", "k", b"2".to_vec(), &limits()).unwrap();
        assert_eq!(s.get(DEFAULT_SCOPE, "k"), Some(&b"1"[..]));
        assert_eq!(s.get("cart", "k"), Some(&b"2"[..]));
        assert!(s.remove("cart", "k"));
        assert_eq!(s.get(DEFAULT_SCOPE, "k"), Some(&b"1"[..]));
        assert_eq!(s.get("cart", "k"), None);
    }

    #[test]
    fn limits_reject_without_change() {
        let mut s = SessionState::new(0);
        assert_eq!(s.set("a", "k", vec![0; 9], &limits()), Err(SessionError::ValueTooLarge { size: 9, limit: 8 }));
        s.set("a", "1", b"1".to_vec(), &limits()).unwrap();
        s.set("a", "2", b"2".to_vec(), &limits()).unwrap();
        assert_eq!(s.set("b", "3", b"3".to_vec(), &limits()), Err(SessionError::TooManyKeys { limit: 2 }));
        // Overwriting an existing key is fine at the cap.
        s.set("a", "2", b"22".to_vec(), &limits()).unwrap();
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
    fn names_are_checked() {
        assert!(check_name("key", "").is_err());
        assert!(check_name("key", &"x".repeat(257)).is_err());
        assert!(check_name("key", "visits").is_ok());
    }
}
