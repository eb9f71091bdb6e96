//! Redis key and field names.
//!
//! Every key starts with `<p>:`, `p` being `storage.redis_prefix` (`draco` by default, the key
//! names of versions before it existed): apps sharing one Redis each have their own keys,
//! indexes and event stream ([`KeySpace`]). The prefix holds no `{` or `}` (checked with the
//! config), so the hash tags below are each key's first.
//!
//! - session hash: `<p>:{ggg}:S:<locator hex>`; its update lock: `<p>:{ggg}:L:<locator hex>`.
//!   The locator is what the memory backend keys a session by (`crate::id`: a one-way digest
//!   of the id's random part), so a data directory's sessions can be written to Redis and back
//!   (`draco-session migrate`) and every cookie still opens its session. `ggg` is the
//!   locator's slot group, its first 10 bits (hex): the hash tag, so a session's keys share a
//!   Redis Cluster slot, and so does every id the session is rotated to (login and logout draw
//!   the new id until its locator is in the same group: 1024 draws on average, as a memory
//!   shard's rotation does with 1024 shards). 1024 groups spread over the cluster's slots.
//! - per-user index (a set of sessions, each as `L` and the locator in hex): `<p>:u:{<W>}`,
//!   `W` the user's pseudonym (a keyed digest of its id, see `sealed.rs`), or `<p>:u:{<userid>}`
//!   in the plain layout (`storage.encrypt` off, and before it); its own slot.
//! - event stream: `<p>:events` (`events.rs`), its own slot.
//! - **Earlier names** (before the locator): `<p>:{gggg}:s:<random hex>` and
//!   `<p>:{gggg}:l:<random hex>`, `gggg` the first 14 bits of the id's random part, and index
//!   entries of the random part in hex. An operation that finds no session under the new name
//!   looks for it under the earlier one and moves it ([`Legacy`], `store.rs`), while any such
//!   key may remain (on one server the engine scans for them as it starts, and stops looking
//!   once none is left); index entries of the earlier form still name their session.
//!
//! Keys and index entries hold locators (earlier: random parts), never the tag: a copy of the
//! Redis data yields no id that verifies without the engine's secret, which is never sent to
//! Redis.

use crate::id::{Locator, SessionId, locator_of};

/// Bits of a locator that make a session's slot group (its hash tag).
const GROUP_BITS: u32 = 10;

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
    /// Its locator.
    pub locator: Locator,
    /// Its keys under the earlier names, when known (from the id or an earlier index entry).
    pub legacy: Option<Box<Legacy>>,
}

/// A session's keys under the names of earlier versions (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Legacy {
    /// Its hash. (Its update lock, `<p>:{gggg}:l:<random hex>`, is left to expire.)
    pub session: String,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
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

/// The slot group of `locator`: its first [`GROUP_BITS`] bits.
pub(crate) fn group_of(locator: &Locator) -> u16 {
    u16::from_be_bytes([locator[0], locator[1]]) >> (16 - GROUP_BITS)
}

impl KeySpace {
    /// The keys under `prefix` (`storage.redis_prefix`, checked by the config).
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: format!("{prefix}:"), stream: format!("{prefix}:events") }
    }

    /// The keys of session `id` (and its earlier names).
    pub(crate) fn session(&self, id: &SessionId) -> SessionKeys {
        self.of_random(id.random())
    }

    /// The keys of the session whose locator is `locator` (earlier names unknown).
    pub(crate) fn of_locator(&self, locator: &Locator) -> SessionKeys {
        let (group, name, p) = (group_of(locator), hex(locator), &self.prefix);
        SessionKeys {
            session: format!("{p}{{{group:03x}}}:S:{name}"),
            lock: format!("{p}{{{group:03x}}}:L:{name}"),
            member: format!("L{name}"),
            locator: *locator,
            legacy: None,
        }
    }

    /// The keys of the session whose id has the random part `random`, with its earlier names.
    fn of_random(&self, random: &[u8; 16]) -> SessionKeys {
        let mut keys = self.of_locator(&locator_of(random));
        let (group, name, p) = (crate::id::slot_group_of(random), hex(random), &self.prefix);
        keys.legacy = Some(Box::new(Legacy { session: format!("{p}{{{group:04x}}}:s:{name}") }));
        keys
    }

    /// The keys an index entry names (`L` and a locator, or an earlier entry's random part,
    /// alone or followed by the tag: 32 or 48 hex digits); `None` for a malformed entry.
    pub(crate) fn of_member(&self, member: &str) -> Option<SessionKeys> {
        if let Some(locator) = member.strip_prefix('L') {
            return unhex::<16>(locator).map(|l| self.of_locator(&l));
        }
        let random = match member.len() {
            32 => unhex::<16>(member),
            48 => unhex::<8>(member.get(32..)?).and(unhex::<16>(member.get(..32)?)),
            _ => None,
        }?;
        Some(self.of_random(&random))
    }

    /// The keys of the session hash named `name` (either form); `None` for another key.
    pub(crate) fn of_session_key(&self, name: &str) -> Option<SessionKeys> {
        let rest = name.strip_prefix(&self.prefix)?;
        let (_, rest) = rest.split_once("}:")?;
        if let Some(locator) = rest.strip_prefix("S:") {
            return unhex::<16>(locator).map(|l| self.of_locator(&l));
        }
        rest.strip_prefix("s:").and_then(unhex::<16>).map(|r| self.of_random(&r))
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

    /// The prefix with the glob's special characters escaped.
    fn glob_prefix(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 8);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// Glob matching every session hash, under either name (and no other key), for `stats`.
    pub(crate) fn session_pattern(&self) -> String {
        self.glob_prefix() + "{*}:[sS]:*"
    }

    /// Glob matching every session hash under the earlier names.
    pub(crate) fn legacy_pattern(&self) -> String {
        self.glob_prefix() + "{*}:s:*"
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

    fn ring() -> Keyring {
        Keyring::from_secrets(b"keys test secret, 32 bytes or more!!", &[]).unwrap()
    }

    #[test]
    fn a_sessions_keys_share_one_hash_tag_across_rotation() {
        let ring = ring();
        let space = KeySpace::new("draco");
        for _ in 0..50 {
            let id = ring.generate();
            let group = group_of(id.locator());
            let next = ring.generate_matching(|l| group_of(l) == group);
            let (a, b) = (space.session(&id), space.session(&next));
            let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
            assert_eq!(tag(&a.session), tag(&a.lock));
            assert_eq!(tag(&a.session), tag(&b.session));
            assert_ne!(a.session, b.session);
            assert!(group < 1024);
            assert!(ring.verify(&next));
        }
    }

    #[test]
    fn keys_are_named_by_the_locator_and_entries_name_their_keys() {
        let ring = ring();
        let id = ring.generate();
        let space = KeySpace::new("draco");
        let k = space.session(&id);
        let (group, locator) = (group_of(id.locator()), hex(id.locator()));
        assert_eq!(k.session, format!("draco:{{{group:03x}}}:S:{locator}"));
        assert_eq!(k.lock, format!("draco:{{{group:03x}}}:L:{locator}"));
        assert_eq!(k.member, format!("L{locator}"));
        // From the locator alone (a data directory's session) come the same names.
        let same = space.of_locator(id.locator());
        assert_eq!((same.session.as_str(), same.lock.as_str()), (k.session.as_str(), k.lock.as_str()));
        assert!(same.legacy.is_none());
        // The earlier names, from the random part.
        let old = k.legacy.as_ref().unwrap();
        let (g, random) = (crate::id::slot_group_of(id.random()), hex(id.random()));
        assert_eq!(old.session, format!("draco:{{{g:04x}}}:s:{random}"));
        // Every form of index entry names the session's keys; earlier ones with their old names.
        for member in [k.member.clone(), random.clone(), format!("{random}{}", hex(id.tag()))] {
            let named = space.of_member(&member).unwrap();
            assert_eq!(named.session, k.session, "{member}");
            assert_eq!(named.legacy.is_some(), !member.starts_with('L'));
        }
        for bad in ["zz", "L", &format!("L{}", &locator[..31]), &format!("{random}zz"), &format!("{}é", &random[..30])]
        {
            assert!(space.of_member(bad).is_none(), "{bad}");
        }
        // Key names parse back, either form; other keys do not.
        assert_eq!(space.of_session_key(&k.session).unwrap().locator, *id.locator());
        let from_old = space.of_session_key(&old.session).unwrap();
        assert_eq!((from_old.locator, from_old.legacy.unwrap().session), (*id.locator(), old.session.clone()));
        for other in [
            k.lock.as_str(),
            &format!("draco:{{{g:04x}}}:l:{random}"),
            "draco:u:{42}",
            "draco:events",
            "other:{001}:S:00",
        ] {
            assert!(space.of_session_key(other).is_none(), "{other}");
        }
        // No key or entry holds the tag or (new names) the random part.
        for name in [&k.session, &k.lock, &k.member] {
            assert!(!name.contains(&hex(id.tag())) && !name.contains(&random));
        }
        assert_eq!(space.user("42"), "draco:u:{42}");
    }

    #[test]
    fn the_default_prefix_keeps_the_earlier_names_and_others_are_apart() {
        let ring = ring();
        let id = ring.generate();
        let (draco, app) = (KeySpace::new("draco"), KeySpace::new("app*[a]"));
        let k = draco.session(&id);
        assert!(k.session.starts_with("draco:{"));
        assert_eq!((draco.stream(), draco.session_pattern().as_str()), ("draco:events", "draco:{*}:[sS]:*"));
        assert_eq!(draco.legacy_pattern(), "draco:{*}:s:*");
        let other = app.session(&id);
        assert_eq!(other.session, format!("app*[a]:{}", &k.session["draco:".len()..]));
        assert_eq!((app.user("7").as_str(), app.stream()), ("app*[a]:u:{7}", "app*[a]:events"));
        assert_eq!(app.session_pattern(), "app\\*\\[a\\]:{*}:[sS]:*");
        assert!(app.of_session_key(&k.session).is_none());
    }

    #[test]
    fn fields_never_collide_across_scopes() {
        assert_ne!(field("ab", "c"), field("a", "bc"));
        assert!(field("cart", "x").starts_with(&scope_prefix("cart")));
        assert!(field("cart", "x").starts_with(ALL_SCOPES));
    }
}
