//! [`SessionId`]: 128 random bits plus a 64-bit keyed tag, as 32 base64url characters.
//!
//! The tag is a BLAKE3 keyed hash of the random part, so a forged or mangled id is rejected
//! by [`Keyring::verify`] in constant time before any shard is asked.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::error::SessionError;

/// Length of a session id's text form.
pub const ID_LEN: usize = 32;
const RANDOM_LEN: usize = 16;
pub(crate) const TAG_LEN: usize = 8;
const SHARD_SEED: u64 = 0x6472_6163_6f5f_7364; // "draco_sd": fixed, so routing is stable across runs
const KEY_CONTEXT: &str = "draco-session 2026-11 session id tag v1";

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
pub struct SessionId {
    random: [u8; RANDOM_LEN],
    tag: [u8; TAG_LEN],
}

impl SessionId {
    /// The random part: what shards route on and workers index by.
    pub(crate) fn random(&self) -> &[u8; RANDOM_LEN] {
        &self.random
    }

    /// The shard that owns this id among `shards`: xxh3 (fixed seed) of the random part.
    pub fn shard(&self, shards: usize) -> usize {
        shard_of(&self.random, shards)
    }

    /// The id's Redis slot group, 0..16384: its first 14 random bits. The Redis backend's
    /// hash tag, shared by every id a session is rotated to.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn slot_group(&self) -> u16 {
        u16::from_be_bytes([self.random[0], self.random[1]]) >> 2
    }

    /// The keyed tag.
    pub(crate) fn tag(&self) -> &[u8; TAG_LEN] {
        &self.tag
    }

    /// Builds an id from its random part and tag (the Redis backend stores only the random
    /// part and re-tags it; a shard keeps the random part as the key and the tag beside it).
    pub(crate) fn from_parts(random: [u8; RANDOM_LEN], tag: [u8; TAG_LEN]) -> Self {
        Self { random, tag }
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

#[allow(clippy::cast_possible_truncation, reason = "the remainder is below `shards`, a usize")]
pub(crate) fn shard_of(random: &[u8; RANDOM_LEN], shards: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64_with_seed(random, SHARD_SEED) % shards.max(1) as u64) as usize
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
        Ok(Self { random, tag })
    }
}

/// The keys that tag ids: the current one signs, previous ones still verify (rotation).
#[derive(Clone)]
pub struct Keyring {
    current: [u8; 32],
    previous: Vec<[u8; 32]>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} previous keys)", self.previous.len())
    }
}

impl Keyring {
    /// A keyring from secrets of any length (they are stretched by BLAKE3's key derivation).
    pub fn from_secrets(current: &[u8], previous: &[&[u8]]) -> Self {
        Self {
            current: blake3::derive_key(KEY_CONTEXT, current),
            previous: previous.iter().map(|p| blake3::derive_key(KEY_CONTEXT, p)).collect(),
        }
    }

    /// A fresh id tagged with the current key.
    pub fn generate(&self) -> SessionId {
        let mut random = [0u8; RANDOM_LEN];
        rand::rng().fill_bytes(&mut random);
        SessionId { random, tag: tag(&self.current, &random) }
    }

    /// A fresh id that routes to `shard` among `shards`: rotation inside one shard, and a new
    /// session born on the shard of the thread that serves it. Random parts are drawn until
    /// one routes there (`shards` draws on average), and only that one is tagged. Conditioning
    /// on the route costs log2(`shards`) bits of the 128: an attacker who knows the shard
    /// still faces at least 118 bits (`session.shards` is at most 1024).
    pub(crate) fn generate_in_shard(&self, shard: usize, shards: usize) -> SessionId {
        let mut rng = rand::rng();
        let mut random = [0u8; RANDOM_LEN];
        loop {
            rng.fill_bytes(&mut random);
            if shard_of(&random, shards) == shard {
                return SessionId { random, tag: tag(&self.current, &random) };
            }
        }
    }

    /// A fresh id in the same Redis slot group as `of` (see [`SessionId::slot_group`]): its
    /// first 14 bits are `of`'s, the other 114 are fresh CSPRNG output. Login rotation under
    /// Redis Cluster moves a session to its new key atomically only when both keys hash to
    /// one slot.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn generate_sibling(&self, of: &SessionId) -> SessionId {
        let mut random = [0u8; RANDOM_LEN];
        rand::rng().fill_bytes(&mut random);
        random[0] = of.random[0];
        random[1] = (of.random[1] & 0xFC) | (random[1] & 0x03);
        SessionId { random, tag: tag(&self.current, &random) }
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
        let id = SessionId::from_bytes(text)?;
        if self.verify(&id) { Ok(id) } else { Err(SessionError::InvalidId) }
    }
}

fn tag(key: &[u8; 32], random: &[u8; RANDOM_LEN]) -> [u8; TAG_LEN] {
    let hash = blake3::keyed_hash(key, random);
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&hash.as_bytes()[..TAG_LEN]);
    out
}

fn ct_eq(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn ring() -> Keyring {
        Keyring::from_secrets(b"test secret test secret test secret!", &[])
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
        let old = Keyring::from_secrets(b"old secret old secret old secret old", &[]);
        let id = old.generate();
        assert!(!ring().verify(&id));
        let rotated =
            Keyring::from_secrets(b"test secret test secret test secret!", &[b"old secret old secret old secret old"]);
        assert!(rotated.verify(&id));
        assert!(rotated.verify(&rotated.generate()));
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
    fn siblings_share_the_slot_group_and_nothing_else_predictable() {
        let ring = ring();
        for _ in 0..200 {
            let a = ring.generate();
            let b = ring.generate_sibling(&a);
            assert_eq!(a.slot_group(), b.slot_group());
            assert!(a.slot_group() < 16384);
            assert!(ring.verify(&b));
            assert_ne!(a.random[2..], b.random[2..]);
        }
    }

    #[test]
    fn generate_in_shard_routes_there() {
        let k = ring();
        for shard in 0..7 {
            assert_eq!(k.generate_in_shard(shard, 7).shard(7), shard);
        }
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
    }
}
