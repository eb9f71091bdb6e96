//! [`Lifetimes`]: how long a session lives (`session.volatile_ttl`, `persistent_ttl`,
//! `absolute_ttl`), and when a [`SessionState`] expires under them.

use super::SessionState;
use crate::clock::millis;

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

impl SessionState {
    /// When the session expires, in ms since the epoch.
    pub(crate) fn expires_ms(&self, l: &Lifetimes) -> u64 {
        let ttl = if self.persistent { l.persistent_ms } else { l.volatile_ms };
        let idle = self.last_access_ms.saturating_add(ttl);
        if l.absolute_ms > 0 { idle.min(self.created_ms.saturating_add(l.absolute_ms)) } else { idle }
    }

    pub(crate) fn is_expired(&self, l: &Lifetimes, now_ms: u64) -> bool {
        self.expires_ms(l) <= now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
