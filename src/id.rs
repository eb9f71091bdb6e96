//! [`SessionId`]: 128 random bits plus a 64-bit keyed tag, as 32 base64url characters.
//!
//! The tag is a BLAKE3 keyed hash of the random part, so a forged or mangled id is rejected
//! by [`Keyring::verify`] in constant time before any shard is asked.
//!
//! What the engine stores is not the id but its *locator*: a one-way BLAKE3 digest of the
//! random part. Shards are keyed by it, snapshots and the write-ahead log hold it, and routing
//! hashes it; so a copy of the data directory (even with the key file beside it) yields no id
//! that opens a session. [`SessionHandle`] is the name a session goes by in front of other
//! sessions of its user (a devices page): a keyed digest of the locator.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, SessionError};

/// Length of a session id's text form.
pub const ID_LEN: usize = 32;
/// The shortest secret a [`Keyring`] takes, in bytes (`session.secret`, `session.previous_secrets`,
/// `$DRACO_SESSION_SECRET`, the key file).
pub const MIN_SECRET_LEN: usize = 32;
const RANDOM_LEN: usize = 16;
pub(crate) const TAG_LEN: usize = 8;
const SHARD_SEED: u64 = 0x6472_6163_6f5f_7364; // "draco_sd": fixed, so routing is stable across runs
const KEY_CONTEXT: &str = "draco-session 2026-11 session id tag v1";
const HANDLE_CONTEXT: &str = "draco-session 2026-11 session handle v1";
const MARKER_CONTEXT: &str = "draco-session 2026-11 fresh login marker v1";
/// Length of a fresh-login marker (see [`Keyring::auth_marker`]).
pub(crate) const MARKER_LEN: usize = 16;
/// Fixed key of the locator digest: domain separation from every other use of BLAKE3 here,
/// not a secret (the locator is one-way because the random part is 128 unknown bits).
const LOCATOR_KEY: [u8; 32] = *b"draco-session locator digest v1.";

/// Length of a [`Locator`].
pub(crate) const LOCATOR_LEN: usize = 16;
/// What the engine keeps in place of an id: a one-way digest of its random part (see the
/// module docs). Uniformly distributed, so shards hash it cheaply.
pub(crate) type Locator = [u8; LOCATOR_LEN];

/// The locator of the random part `random`.
pub(crate) fn locator_of(random: &[u8; RANDOM_LEN]) -> Locator {
    let hash = blake3::keyed_hash(&LOCATOR_KEY, random);
    let mut out = [0u8; LOCATOR_LEN];
    out.copy_from_slice(&hash.as_bytes()[..LOCATOR_LEN]);
    out
}

/// A session id. Its text form is 32 URL- and cookie-safe characters.
///
/// Parsing checks the format only; whether this engine issued it is checked by
/// [`Keyring::verify`] (the engine does it on every operation).
///
/// ```
/// use draco_session::SessionId;
///
/// assert!("not-a-session-id".parse::<SessionId>().is_err());
/// assert!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".parse::<SessionId>().is_ok());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "IdParts", into = "IdParts")]
pub struct SessionId {
    random: [u8; RANDOM_LEN],
    tag: [u8; TAG_LEN],
    /// Derived from `random` once, when the id is made or parsed.
    locator: Locator,
}

/// The serde shape of an id (version 1 snapshots hold it): random part and tag.
#[derive(Serialize, Deserialize)]
struct IdParts {
    random: [u8; RANDOM_LEN],
    tag: [u8; TAG_LEN],
}

impl From<IdParts> for SessionId {
    fn from(p: IdParts) -> Self {
        Self::from_parts(p.random, p.tag)
    }
}

impl From<SessionId> for IdParts {
    fn from(id: SessionId) -> Self {
        Self { random: id.random, tag: id.tag }
    }
}

impl SessionId {
    /// The random part (the Redis backend names keys by it).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn random(&self) -> &[u8; RANDOM_LEN] {
        &self.random
    }

    /// What the engine keeps in place of this id: shards are keyed by it, snapshots and the
    /// log hold it.
    pub(crate) fn locator(&self) -> &Locator {
        &self.locator
    }

    /// The shard that owns this id among `shards`: xxh3 (fixed seed) of its locator.
    pub(crate) fn shard(&self, shards: usize) -> usize {
        shard_of(&self.locator, shards)
    }

    /// The keyed tag.
    #[cfg(test)]
    pub(crate) fn tag(&self) -> &[u8; TAG_LEN] {
        &self.tag
    }

    /// Builds an id from its random part and tag (the Redis backend stores only the random
    /// part and re-tags it; a shard keeps the random part as the key and the tag beside it).
    pub(crate) fn from_parts(random: [u8; RANDOM_LEN], tag: [u8; TAG_LEN]) -> Self {
        Self { random, tag, locator: locator_of(&random) }
    }

    /// The text form's bytes (base64url, no padding).
    pub(crate) fn encode(&self) -> [u8; ID_LEN] {
        let mut bytes = [0u8; RANDOM_LEN + TAG_LEN];
        bytes[..RANDOM_LEN].copy_from_slice(&self.random);
        bytes[RANDOM_LEN..].copy_from_slice(&self.tag);
        let mut out = [0u8; ID_LEN];
        let n = URL_SAFE_NO_PAD.encode_slice(bytes, &mut out).expect("24 bytes fit 32 chars");
        debug_assert_eq!(n, ID_LEN);
        out
    }
}

/// The Redis slot group of the random part `random` in the key names of earlier versions
/// (its first 14 bits), which the Redis backend still reads and moves to its own names.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn slot_group_of(random: &[u8; RANDOM_LEN]) -> u16 {
    u16::from_be_bytes([random[0], random[1]]) >> 2
}

#[allow(clippy::cast_possible_truncation, reason = "the remainder is below `shards`, a usize")]
pub(crate) fn shard_of(locator: &Locator, shards: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64_with_seed(locator, SHARD_SEED) % shards.max(1) as u64) as usize
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.encode();
        f.write_str(std::str::from_utf8(&text).expect("base64 is ASCII"))
    }
}

impl fmt::Debug for SessionId {
    /// Shows a prefix only, so logs never carry a usable id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.encode();
        write!(f, "SessionId({}…)", std::str::from_utf8(&text[..6]).expect("ASCII"))
    }
}

impl FromStr for SessionId {
    type Err = SessionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(s.as_bytes())
    }
}

impl SessionId {
    /// Parses the text form from raw bytes (e.g. straight from a `Cookie` header).
    ///
    /// # Errors
    /// [`SessionError::InvalidId`] unless `text` is 32 base64url characters.
    pub fn from_bytes(text: &[u8]) -> Result<Self, SessionError> {
        if text.len() != ID_LEN {
            return Err(SessionError::InvalidId);
        }
        let mut bytes = [0u8; RANDOM_LEN + TAG_LEN];
        match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
            Ok(n) if n == bytes.len() => {}
            _ => return Err(SessionError::InvalidId),
        }
        let mut random = [0u8; RANDOM_LEN];
        let mut tag = [0u8; TAG_LEN];
        random.copy_from_slice(&bytes[..RANDOM_LEN]);
        tag.copy_from_slice(&bytes[RANDOM_LEN..]);
        Ok(Self::from_parts(random, tag))
    }
}

/// The keys that tag ids: the current one signs, previous ones still verify (rotation).
#[derive(Clone)]
pub struct Keyring {
    current: [u8; 32],
    previous: Vec<[u8; 32]>,
    /// Keys [`SessionHandle`]s; derived from `current`.
    handle_key: [u8; 32],
    /// Keys the fresh-login markers (the browser-session cookie of `Session::auth_age`);
    /// derived from `current`.
    marker_key: [u8; 32],
    /// Random: which keyring verified an id in [`VERIFIED`], and where that id sits there.
    seed: u64,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} previous keys)", self.previous.len())
    }
}

impl Keyring {
    /// A keyring from the current secret and the previous ones (still accepted, for rotation),
    /// each at least [`MIN_SECRET_LEN`] bytes, as `session.secret` and
    /// `session.previous_secrets` must be. They are stretched by BLAKE3's key derivation.
    ///
    /// ```
    /// use draco_session::Keyring;
    ///
    /// let ring = Keyring::from_secrets(b"a secret of at least 32 bytes, say", &[]).unwrap();
    /// assert!(ring.verify(&ring.generate()));
    /// assert!(Keyring::from_secrets(b"too short", &[]).is_err());
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `session.secret` (or `session.previous_secrets`) when a
    /// secret is shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn from_secrets(current: &[u8], previous: &[&[u8]]) -> Result<Self, ConfigError> {
        let short = |key: &'static str, message: &str| ConfigError::Invalid {
            origin: "Keyring::from_secrets".into(),
            key,
            message: message.into(),
        };
        if current.len() < MIN_SECRET_LEN {
            return Err(short("session.secret", "must be at least 32 bytes"));
        }
        if previous.iter().any(|p| p.len() < MIN_SECRET_LEN) {
            return Err(short("session.previous_secrets", "every entry must be at least 32 bytes"));
        }
        let current = blake3::derive_key(KEY_CONTEXT, current);
        Ok(Self {
            handle_key: blake3::derive_key(HANDLE_CONTEXT, &current),
            marker_key: blake3::derive_key(MARKER_CONTEXT, &current),
            current,
            previous: previous.iter().map(|p| blake3::derive_key(KEY_CONTEXT, p)).collect(),
            seed: rand::rng().next_u64(),
        })
    }

    /// The derived keys, the current one first: what [`crate::seal`] derives its data keys
    /// from.
    pub(crate) fn root_keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// A fresh id tagged with the current key.
    pub fn generate(&self) -> SessionId {
        let mut random = [0u8; RANDOM_LEN];
        rand::rng().fill_bytes(&mut random);
        SessionId::from_parts(random, tag(&self.current, &random))
    }

    /// A fresh id that routes to `shard` among `shards`: rotation inside one shard, and a new
    /// session born on the shard of the thread that serves it. Random parts are drawn until
    /// one routes there (`shards` draws on average), and only that one is tagged. Conditioning
    /// on the route costs log2(`shards`) bits of the 128: an attacker who knows the shard
    /// still faces at least 118 bits (`session.shards` is at most 1024). Each draw costs one
    /// locator digest.
    pub(crate) fn generate_in_shard(&self, shard: usize, shards: usize) -> SessionId {
        self.generate_matching(|locator| shard_of(locator, shards) == shard)
    }

    /// A fresh id whose locator `accept`s: random parts drawn until one does, and only that one
    /// tagged. What the condition fixes of the locator is what it costs of the 128 random bits
    /// (the Redis backend keeps a session in its slot group, 10 bits, across a login).
    pub(crate) fn generate_matching(&self, accept: impl Fn(&Locator) -> bool) -> SessionId {
        let mut rng = rand::rng();
        let mut random = [0u8; RANDOM_LEN];
        loop {
            rng.fill_bytes(&mut random);
            let locator = locator_of(&random);
            if accept(&locator) {
                return SessionId { random, tag: tag(&self.current, &random), locator };
            }
        }
    }

    /// The handle of the session whose locator is `locator`: what a devices page shows in
    /// place of another session's id. A keyed digest, so only an engine holding this keyring's
    /// current secret can tell which session a handle names (by recomputing it).
    pub(crate) fn handle(&self, locator: &Locator) -> SessionHandle {
        let hash = blake3::keyed_hash(&self.handle_key, locator);
        let mut out = [0u8; HANDLE_LEN];
        out.copy_from_slice(&hash.as_bytes()[..HANDLE_LEN]);
        SessionHandle(out)
    }

    /// The fresh-login marker of a proof of identity: a MAC, keyed by a key derived from the
    /// current secret, over the session's locator and the proof (user, time in ms, level). The
    /// browser keeps it in a cookie without `Max-Age`, so it dies with the browser session;
    /// only this engine can make one, and one names a single proof of a single session.
    pub(crate) fn auth_marker(&self, locator: &Locator, userid: u64, at_ms: u64, level: u8) -> [u8; MARKER_LEN] {
        let mut hasher = blake3::Hasher::new_keyed(&self.marker_key);
        hasher.update(locator).update(&userid.to_be_bytes()).update(&at_ms.to_be_bytes()).update(&[level]);
        let mut out = [0u8; MARKER_LEN];
        out.copy_from_slice(&hasher.finalize().as_bytes()[..MARKER_LEN]);
        out
    }

    /// Whether `marker` is [`auth_marker`](Self::auth_marker) of these; constant time.
    pub(crate) fn verify_marker(
        &self,
        marker: &[u8; MARKER_LEN],
        locator: &Locator,
        userid: u64,
        at_ms: u64,
        level: u8,
    ) -> bool {
        ct_eq(&self.auth_marker(locator, userid, at_ms, level), marker)
    }

    /// Whether one of our keys tagged `id`. Constant time in the id's content.
    pub fn verify(&self, id: &SessionId) -> bool {
        let mut ok = ct_eq(&tag(&self.current, &id.random), &id.tag);
        for key in &self.previous {
            ok |= ct_eq(&tag(key, &id.random), &id.tag);
        }
        ok
    }

    /// Parses and verifies in one step.
    ///
    /// # Errors
    /// [`SessionError::InvalidId`] for a malformed or forged id.
    pub fn parse(&self, text: &[u8]) -> Result<SessionId, SessionError> {
        let text: &[u8; ID_LEN] = text.try_into().map_err(|_| SessionError::InvalidId)?;
        let slot = usize::try_from(xxhash_rust::xxh3::xxh3_64_with_seed(text, self.seed) % VERIFIED_SLOTS as u64)
            .unwrap_or_default();
        let seen = |v: &Vec<Option<Verified>>| {
            let e = v.get(slot)?.as_ref()?;
            (e.ring == self.seed && ct_eq(&e.text, text)).then_some(e.id)
        };
        if let Some(id) = VERIFIED.try_with(|v| v.try_borrow().ok().and_then(|v| seen(&v))).ok().flatten() {
            return Ok(id);
        }
        let id = SessionId::from_bytes(text)?;
        if !self.verify(&id) {
            return Err(SessionError::InvalidId);
        }
        let _ = VERIFIED.try_with(|v| {
            if let Ok(mut v) = v.try_borrow_mut() {
                if v.is_empty() {
                    v.resize_with(VERIFIED_SLOTS, || None);
                }
                v[slot] = Some(Verified { ring: self.seed, text: *text, id });
            }
        });
        Ok(id)
    }
}

thread_local! {
    /// Ids this thread parsed and verified lately, by their text: a browser sends the same
    /// cookie with every request, and finding it here costs a hash and a compare instead of a
    /// base64 decode and a BLAKE3 tag. Only verified ids enter, under the keyring that verified
    /// them, so [`Keyring::parse`] answers exactly what it would without. Direct-mapped by a
    /// hash keyed with the keyring's random seed, [`VERIFIED_SLOTS`] entries (about 90 KiB)
    /// per thread: a flood of distinct ids only evicts, and the text is compared in constant
    /// time, so no timing tells anything of the ids kept.
    static VERIFIED: std::cell::RefCell<Vec<Option<Verified>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Entries of [`VERIFIED`].
const VERIFIED_SLOTS: usize = 1024;

struct Verified {
    /// The seed of the keyring that verified it.
    ring: u64,
    text: [u8; ID_LEN],
    id: SessionId,
}

const HANDLE_LEN: usize = 16;
/// Length of a handle's text form.
const HANDLE_TEXT_LEN: usize = 22;

/// The name of one of a user's sessions as other sessions of that user may see it (a devices
/// page): never the session's id, but a keyed digest of what the engine stores for it, which
/// only this engine can match to a session. Its text form is 22 base64url characters.
///
/// ```
/// use draco_session::SessionHandle;
///
/// assert!("AAAAAAAAAAAAAAAAAAAAAA".parse::<SessionHandle>().is_ok());
/// assert!("not a handle".parse::<SessionHandle>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHandle([u8; HANDLE_LEN]);

impl SessionHandle {
    /// The text form (base64url, 22 characters) without an allocation.
    pub(crate) fn text(&self) -> [u8; HANDLE_TEXT_LEN] {
        let mut out = [0u8; HANDLE_TEXT_LEN];
        URL_SAFE_NO_PAD.encode_slice(self.0, &mut out).expect("16 bytes fit 22 chars");
        out
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).expect("base64 is ASCII"))
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({self})")
    }
}

impl FromStr for SessionHandle {
    type Err = SessionError;

    /// # Errors
    /// [`SessionError::InvalidId`] unless `s` is 22 base64url characters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != HANDLE_TEXT_LEN {
            return Err(SessionError::InvalidId);
        }
        let mut bytes = [0u8; HANDLE_LEN];
        match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut bytes) {
            Ok(HANDLE_LEN) => Ok(Self(bytes)),
            _ => Err(SessionError::InvalidId),
        }
    }
}

fn tag(key: &[u8; 32], random: &[u8; RANDOM_LEN]) -> [u8; TAG_LEN] {
    let hash = blake3::keyed_hash(key, random);
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&hash.as_bytes()[..TAG_LEN]);
    out
}

fn ct_eq<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// What this thread remembers of verified ids answers as verifying again would: a twin
    /// with a forged tag, or an id another keyring made, stays refused after the genuine one
    /// was parsed, and a flood of ids leaves every one still parsed right.
    #[test]
    fn parsing_remembers_only_what_this_keyring_verified() {
        let (a, b) = (ring(), Keyring::from_secrets(b"another secret, also 32 bytes long!", &[]).unwrap());
        let id = a.generate();
        let text = id.encode();
        for _ in 0..2 {
            assert_eq!(a.parse(&text), Ok(id));
            assert_eq!(b.parse(&text), Err(SessionError::InvalidId), "b never verified it");
            let mut forged = text;
            forged[ID_LEN - 1] = if forged[ID_LEN - 1] == b'A' { b'B' } else { b'A' };
            assert_eq!(a.parse(&forged), Err(SessionError::InvalidId));
        }
        let many: Vec<SessionId> = (0..3 * VERIFIED_SLOTS).map(|_| a.generate()).collect();
        for _ in 0..2 {
            for id in &many {
                assert_eq!(a.parse(&id.encode()), Ok(*id));
                assert_eq!(b.parse(&id.encode()), Err(SessionError::InvalidId));
            }
        }
    }

    fn ring() -> Keyring {
        Keyring::from_secrets(b"test secret test secret test secret!", &[]).unwrap()
    }

    #[test]
    fn text_form_is_32_url_safe_chars_and_round_trips() {
        let k = ring();
        for _ in 0..1000 {
            let id = k.generate();
            let text = id.to_string();
            assert_eq!(text.len(), ID_LEN);
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(text.parse::<SessionId>().unwrap(), id);
            assert!(k.verify(&id));
        }
    }

    #[test]
    fn ids_never_repeat_in_a_large_sample() {
        let k = ring();
        let ids: HashSet<SessionId> = (0..200_000).map(|_| k.generate()).collect();
        assert_eq!(ids.len(), 200_000);
    }

    #[test]
    fn other_key_rejects_previous_key_accepts() {
        let old = Keyring::from_secrets(b"old secret old secret old secret old", &[]).unwrap();
        let id = old.generate();
        assert!(!ring().verify(&id));
        let rotated =
            Keyring::from_secrets(b"test secret test secret test secret!", &[b"old secret old secret old secret old"])
                .unwrap();
        assert!(rotated.verify(&id));
        assert!(rotated.verify(&rotated.generate()));
    }

    #[test]
    fn secrets_shorter_than_the_config_allows_are_refused() {
        let long = [b'k'; MIN_SECRET_LEN];
        assert!(Keyring::from_secrets(&long, &[&long]).is_ok());
        let short = &long[..MIN_SECRET_LEN - 1];
        for (current, previous, key) in
            [(short, &[][..], "session.secret"), (&long[..], &[short][..], "session.previous_secrets")]
        {
            match Keyring::from_secrets(current, previous) {
                Err(ConfigError::Invalid { key: k, message, .. }) => {
                    assert_eq!(k, key);
                    assert!(message.contains("at least 32 bytes"), "{message}");
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_text_is_rejected() {
        let k = ring();
        let good = k.generate().to_string();
        for bad in ["", "abc", &good[..31], &format!("{good}A"), &good.replace(|_| true, "=")] {
            assert_eq!(k.parse(bad.as_bytes()), Err(SessionError::InvalidId), "{bad:?}");
        }
        let mut non_ascii = good.as_bytes().to_vec();
        non_ascii[3] = 0xff;
        assert_eq!(k.parse(&non_ascii), Err(SessionError::InvalidId));
    }

    #[test]
    fn generate_in_shard_routes_there() {
        let k = ring();
        for shard in 0..7 {
            assert_eq!(k.generate_in_shard(shard, 7).shard(7), shard);
        }
    }

    #[test]
    fn what_is_stored_reveals_neither_part_of_the_id() {
        let k = ring();
        let id = k.generate();
        let locator = *id.locator();
        assert_eq!(locator, locator_of(id.random()));
        // Neither half of the id appears in its locator or its handle.
        let handle = k.handle(&locator);
        for stored in [&locator[..], &handle.0[..]] {
            assert!(stored.windows(4).all(|w| !id.random().windows(4).any(|r| r == w)));
            assert!(stored.windows(4).all(|w| !id.tag().windows(4).any(|t| t == w)));
        }
        // The text form round-trips to the same locator; another id has another one.
        assert_eq!(id.to_string().parse::<SessionId>().unwrap().locator(), &locator);
        assert_ne!(k.generate().locator(), &locator);
    }

    #[test]
    fn handles_need_the_engine_secret() {
        let id = ring().generate();
        let other = Keyring::from_secrets(b"another secret another secret ano", &[]).unwrap();
        assert_eq!(ring().handle(id.locator()), ring().handle(id.locator()));
        assert_ne!(ring().handle(id.locator()), other.handle(id.locator()));
        assert!("AAAAAAAAAAAAAAAAAAAAA".parse::<SessionHandle>().is_err());
        assert!("AAAAAAAAAAAAAAAAAAAAA=".parse::<SessionHandle>().is_err());
    }

    #[test]
    fn the_serde_shape_is_random_part_then_tag() {
        // Version 1 snapshots hold ids in this shape.
        let id = ring().generate();
        let bytes = bincode::serde::encode_to_vec(id, bincode::config::standard()).unwrap();
        assert_eq!(bytes.len(), RANDOM_LEN + TAG_LEN);
        assert_eq!(&bytes[..RANDOM_LEN], id.random());
        let (back, _): (SessionId, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, id);
        assert_eq!(back.locator(), id.locator());
    }

    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    proptest! {
        #[test]
        fn every_single_character_change_is_rejected(pos in 0..ID_LEN, c in 0..=255u8) {
            let k = ring();
            let id = k.generate();
            let mut text = id.to_string().into_bytes();
            prop_assume!(text[pos] != c);
            text[pos] = c;
            prop_assert!(k.parse(&text).is_err());
        }

        #[test]
        fn every_alphabet_substitution_is_rejected(pos in 0..ID_LEN, i in 0..64usize) {
            let k = ring();
            let mut text = k.generate().to_string().into_bytes();
            prop_assume!(text[pos] != ALPHABET[i]);
            text[pos] = ALPHABET[i];
            prop_assert!(k.parse(&text).is_err());
        }

        #[test]
        fn shard_routing_is_stable_and_in_range(random in any::<[u8; 16]>(), shards in 1..1024usize) {
            let s = shard_of(&random, shards);
            prop_assert!(s < shards);
            prop_assert_eq!(s, shard_of(&random, shards));
        }

        #[test]
        fn handles_round_trip_their_text_form(bytes in any::<[u8; 16]>()) {
            let handle = SessionHandle(bytes);
            prop_assert_eq!(handle.to_string().parse::<SessionHandle>(), Ok(handle));
        }
    }
}
