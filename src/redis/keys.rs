//! Redis key and field names.
//!
//! Every key starts with `<p>:`, `p` being `storage.redis_prefix` (`draco` by default, the key
//! names of versions before it existed): apps sharing one Redis each have their own keys,
//! indexes and event stream ([`KeySpace`]). The prefix holds no `{` or `}` (checked with the
//! config), so the hash tags below are each key's first.
//!
//! - session hash: `<p>:{gggg}:s:<random hex>`; its update lock: `<p>:{gggg}:l:<random hex>`.
//!   `gggg` is the id's 14-bit slot group (hex): the hash tag, so a session's keys share a
//!   Redis Cluster slot, and so does every id the session is rotated to (login/logout draw the
//!   new id from the same group).
//! - per-user index (a set of sessions, each as its random part in hex, the same name its
//!   keys carry): `<p>:u:{<W>}`, `W` the user's pseudonym (a keyed digest of its id, see
//!   `sealed.rs`), or `<p>:u:{<userid>}` in the plain layout (`storage.encrypt` off, and
//!   before it); its own slot.
//! - event stream: `<p>:events` (`events.rs`), its own slot.
//!
//! Keys and index entries hold the random part only, never the tag: a copy of the Redis data
//! yields no id that verifies without the engine's secret, which is never sent to Redis.

use crate::id::SessionId;

/// The names of one engine's keys: `storage.redis_prefix` and what follows it.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    /// `<prefix>:`.
    prefix: String,
    /// `<prefix>:events`.
    stream: String,
}

/// The keys of one session.
#[derive(Debug, Clone)]
pub(crate) struct SessionKeys {
    pub session: String,
    pub lock: String,
    /// Its entry in a per-user index.
    pub member: String,
}

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl KeySpace {
    /// The keys under `prefix` (`storage.redis_prefix`, checked by the config).
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: format!("{prefix}:"), stream: format!("{prefix}:events") }
    }

    /// The keys of session `id`.
    pub(crate) fn session(&self, id: &SessionId) -> SessionKeys {
        self.of_random(id.random())
    }

    /// The keys of the session whose id has the random part `random`.
    pub(crate) fn of_random(&self, random: &[u8; 16]) -> SessionKeys {
        let group = crate::id::slot_group_of(random);
        let (random, p) = (hex(random), &self.prefix);
        SessionKeys {
            session: format!("{p}{{{group:04x}}}:s:{random}"),
            lock: format!("{p}{{{group:04x}}}:l:{random}"),
            member: random,
        }
    }

    /// A user's index, under `name` (one of `Seal::index_names`: the user's pseudonym, or
    /// its id in the plain layout).
    pub(crate) fn user(&self, name: &str) -> String {
        format!("{}u:{{{name}}}", self.prefix)
    }

    /// The event stream.
    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    /// Glob matching every session hash (and no other key), for `stats`: the prefix with the
    /// glob's special characters escaped.
    pub(crate) fn session_pattern(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 8);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("{*}:s:*");
        out
    }
}

/// The random part an index entry names; `None` for a malformed entry. Entries written before
/// the index dropped tags (random part, then tag: 48 hex digits) still name their session, so
/// "log out everywhere" still finds sessions logged in before an upgrade.
pub(crate) fn of_member(member: &str) -> Option<[u8; 16]> {
    match member.len() {
        32 => unhex::<16>(member),
        48 => unhex::<8>(member.get(32..)?).and(unhex::<16>(member.get(..32)?)),
        _ => None,
    }
}

/// Field prefix of every value of `scope` in the plain layout (`sealed.rs` has the sealed one):
/// its length keeps `("ab","c")` and `("a","bc")` apart.
pub(crate) fn scope_prefix(scope: &str) -> Vec<u8> {
    let mut out = format!("d{}:", scope.len()).into_bytes();
    out.extend_from_slice(scope.as_bytes());
    out
}

/// Field prefix shared by every value of every scope.
pub(crate) const ALL_SCOPES: &[u8] = b"d";

/// The hash field holding `scope`/`key`.
pub(crate) fn field(scope: &str, key: &str) -> Vec<u8> {
    let mut out = scope_prefix(scope);
    out.extend_from_slice(key.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Keyring;

    #[test]
    fn a_sessions_keys_share_one_hash_tag_across_rotation() {
        let ring = Keyring::from_secrets(b"keys test secret, 32 bytes or more!!", &[]).unwrap();
        let id = ring.generate();
        let next = ring.generate_sibling(&id);
        let space = KeySpace::new("draco");
        let (a, b) = (space.session(&id), space.session(&next));
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
        assert_eq!(tag(&a.session), tag(&a.lock));
        assert_eq!(tag(&a.session), tag(&b.session));
        assert_ne!(a.session, b.session);
        assert_eq!(of_member(&a.member), Some(*id.random()));
        assert!(of_member("zz").is_none());
        // An entry of the older form (random part, then tag) names the same session.
        let older = format!("{}{}", a.member, hex(id.tag()));
        assert_eq!(of_member(&older), Some(*id.random()));
        assert!(of_member(&format!("{}zz", a.member)).is_none());
        assert!(of_member(&format!("{}é{}", &a.member[..31], &a.member[32..])).is_none());
        assert!(of_member(&format!("{}é{}", &older[..31], &older[33..])).is_none());
        // The index holds no tag: without the engine's secret its entries open nothing.
        assert!(!a.member.contains(&hex(id.tag())));
        assert_eq!(a.member.len(), 32);
        assert_eq!(space.user("42"), "draco:u:{42}");
    }

    #[test]
    fn the_default_prefix_keeps_the_earlier_key_names_and_others_are_apart() {
        let ring = Keyring::from_secrets(b"keys test secret, 32 bytes or more!!", &[]).unwrap();
        let id = ring.generate();
        let group = crate::id::slot_group_of(id.random());
        let (draco, app) = (KeySpace::new("draco"), KeySpace::new("app*[a]"));
        let k = draco.session(&id);
        assert_eq!(k.session, format!("draco:{{{group:04x}}}:s:{}", k.member));
        assert_eq!(k.lock, format!("draco:{{{group:04x}}}:l:{}", k.member));
        assert_eq!((draco.stream(), draco.session_pattern().as_str()), ("draco:events", "draco:{*}:s:*"));
        let other = app.session(&id);
        assert_eq!(other.session, format!("app*[a]:{{{group:04x}}}:s:{}", k.member));
        assert_eq!((app.user("7").as_str(), app.stream()), ("app*[a]:u:{7}", "app*[a]:events"));
        assert_eq!(app.session_pattern(), "app\\*\\[a\\]:{*}:s:*");
    }

    #[test]
    fn fields_never_collide_across_scopes() {
        assert_ne!(field("ab", "c"), field("a", "bc"));
        assert!(field("cart", "x").starts_with(&scope_prefix("cart")));
        assert!(field("cart", "x").starts_with(ALL_SCOPES));
    }
}
