//! Session data sealed at rest (`storage.encrypt`, on by default): what snapshots, the log and
//! Redis keep of a session's data is a *box* made here, readable only with the engine's key.
//!
//! - **Cipher**: AES-256-GCM (RustCrypto's `aes-gcm`), an AEAD: a box that was changed, cut,
//!   moved to another place or sealed under another key fails to open, so damage or tampering
//!   is found, never read as other data. Chosen for its cost on the short records sessions are
//!   made of, which the log seals on every change before it is acknowledged: on this project's
//!   machines a 40-byte record costs 0.16 µs with AES-256-GCM (AES-NI and carry-less multiply,
//!   detected at run time; a constant-time software fallback elsewhere), 0.5 µs with
//!   AES-256-GCM-SIV and 1.8 µs with XChaCha20-Poly1305 (`chacha20poly1305` 0.10), against a
//!   budget of about 0.3 µs per request (BENCHMARKS.md, "Encryption at rest").
//! - **Nonces never repeat**: GCM's 96-bit nonce is drawn at random for each box, under a
//!   *subkey* that seals at most 2^28 boxes: each thread that seals draws a 128-bit random salt
//!   and seals under `BLAKE3-keyed(data key, salt)`, and draws a new salt after 2^28 boxes (or
//!   when it first seals for an engine). Random nonces stay safe across restarts, crashes that
//!   cut a write short, and several instances sealing under one secret on a shared Redis, where
//!   no counter could be kept; with at most 2^28 nonces per subkey, the chance that two of them
//!   ever meet is below 2^-41 per subkey (2^56 / 2^97), and subkeys of different salts are
//!   unrelated. The salt travels in the box; an opener derives its subkey once and keeps it
//!   (a small per-thread table), so reading a file or a Redis database costs one derivation per
//!   writer, not per box.
//! - **Key**: the data key is derived from the engine secret with BLAKE3's key derivation under
//!   this module's own context (no new secret to manage, and a key apart from the id tags').
//!   The current secret's key seals; keys of `session.previous_secrets` still open. Each box
//!   names its data key by a 4-byte key id, so a box sealed under a secret the engine no
//!   longer holds is reported as such.
//! - **Bound to its place**: the caller passes associated data (the session's locator, the log
//!   record's sequence number, the snapshot block's generation and index, the Redis field
//!   name), so a box copied elsewhere does not open.
//!
//! A box is `[version 2][key id: 4][salt: 16][nonce: 12][ciphertext][tag: 16]`: [`OVERHEAD`]
//! bytes more than its plaintext.

use std::cell::RefCell;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::Rng as _;

use crate::id::Keyring;

/// The first byte of every box: the version of this layout.
const VERSION: u8 = 2;
/// The key id's length.
const KEY_ID_LEN: usize = 4;
/// The subkey salt's length.
const SALT_LEN: usize = 16;
/// The nonce's length.
const NONCE_LEN: usize = 12;
/// The authentication tag's length.
const TAG_LEN: usize = 16;
/// Bytes before the ciphertext.
const HEAD_LEN: usize = 1 + KEY_ID_LEN + SALT_LEN + NONCE_LEN;
/// Bytes a box adds to its plaintext.
pub(crate) const OVERHEAD: usize = HEAD_LEN + TAG_LEN;
/// Boxes one subkey seals before its thread draws a new salt.
const SEALS_PER_SUBKEY: u64 = 1 << 28;
/// Subkeys a thread keeps (sealing and opening together).
const CACHED_SUBKEYS: usize = 8;

/// BLAKE3 context of the data key (derived from each keyring key).
const DATA_KEY_CONTEXT: &str = "draco-session 2026-12 session data at rest, AES-256-GCM data key";
/// BLAKE3 context of a data key's id.
const KEY_ID_CONTEXT: &str = "draco-session 2026-12 session data at rest, key id";

/// Why a box does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    /// Shorter than an empty box, or of an unknown layout version.
    #[error("not a sealed box (truncated or unknown layout)")]
    Malformed,
    /// Sealed under a key this engine does not hold.
    #[error(
        "sealed under a key this engine does not hold (was session.secret changed without listing the old one in session.previous_secrets?)"
    )]
    UnknownKey,
    /// The key is ours but the box does not authenticate: damaged or tampered with.
    #[error("does not authenticate (damaged or tampered with)")]
    Forged,
}

/// A data key: its id, as boxes and file headers name it, and its bytes.
#[derive(Clone)]
struct DataKey {
    id: [u8; KEY_ID_LEN],
    key: [u8; 32],
}

/// A subkey a thread keeps: for which data key and salt, and how many boxes it sealed (for
/// the sealing subkey of `sealer`, the engine's sealer it seals for).
struct Subkey {
    key: [u8; 32],
    salt: [u8; SALT_LEN],
    cipher: Aes256Gcm,
    sealer: Option<u64>,
    sealed: u64,
}

thread_local! {
    /// This thread's subkeys, most recently used first.
    static SUBKEYS: RefCell<Vec<Subkey>> = const { RefCell::new(Vec::new()) };
}

/// The keys that seal and open session data: the current secret's first.
#[derive(Clone)]
pub(crate) struct Sealer {
    keys: Vec<DataKey>,
    /// `storage.encrypt`: whether what is written now is sealed (data sealed before is
    /// opened either way).
    seals: bool,
    /// Tells this sealer's sealing subkeys apart from other engines' in the thread's table.
    uid: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

impl Sealer {
    /// The sealer of a keyring: a data key derived from each of its keys. With `seals` off
    /// ([`sealing`](Self::sealing) answers `None`) it only opens what was sealed before.
    pub(crate) fn new(ring: &Keyring, seals: bool) -> Self {
        let keys = ring
            .root_keys()
            .map(|root| {
                let key = blake3::derive_key(DATA_KEY_CONTEXT, root);
                let digest = blake3::derive_key(KEY_ID_CONTEXT, &key);
                let mut id = [0u8; KEY_ID_LEN];
                id.copy_from_slice(&digest[..KEY_ID_LEN]);
                // 0 names plain data in file headers: never a key's id.
                if id == [0; KEY_ID_LEN] {
                    id[0] = 1;
                }
                DataKey { id, key }
            })
            .collect();
        Self { keys, seals, uid: rand::rng().next_u64() }
    }

    /// This sealer when data written now must be sealed (`storage.encrypt`), else `None`.
    pub(crate) fn sealing(&self) -> Option<&Self> {
        self.seals.then_some(self)
    }

    /// The id of the key that seals, as file headers name it (never 0).
    pub(crate) fn key_id(&self) -> u32 {
        u32::from_le_bytes(self.keys[0].id)
    }

    /// Whether this sealer holds the key of id `key_id` (as [`key_id`](Self::key_id) names it).
    pub(crate) fn holds(&self, key_id: u32) -> bool {
        self.keys.iter().any(|k| k.id == key_id.to_le_bytes())
    }

    /// A sealer for unit tests, from a fixed secret.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn for_tests() -> Self {
        let ring = Keyring::from_secrets(b"draco-session unit tests: a fixed secret", &[]).expect("a long secret");
        Self::new(&ring, true)
    }

    /// Appends the box of `plain`, bound to `aad`, to `out`.
    pub(crate) fn seal_into(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        let start = Self::reserve_head(out);
        out.extend_from_slice(plain);
        self.seal_tail(aad, out, start);
    }

    /// Reserves a box's head in `out`: write the plaintext after it, then call
    /// [`seal_tail`](Self::seal_tail) with the answer.
    pub(crate) fn reserve_head(out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0u8; HEAD_LEN]);
        start
    }

    /// Seals in place the bytes of `out` after `start + HEAD_LEN`, which the caller wrote after
    /// reserving the head with [`reserve_head`](Self::reserve_head): no copy of the plaintext.
    pub(crate) fn seal_tail(&self, aad: &[u8], out: &mut Vec<u8>, start: usize) {
        let current = &self.keys[0];
        let mut rng = rand::rng();
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let (salt, tag) = SUBKEYS.with_borrow_mut(|table| {
            let found = table.iter().position(|s| s.sealer == Some(self.uid) && s.sealed < SEALS_PER_SUBKEY);
            let at = found.unwrap_or_else(|| {
                let mut salt = [0u8; SALT_LEN];
                rng.fill_bytes(&mut salt);
                // The worn-out one, if any, is no longer for sealing.
                table.iter_mut().filter(|s| s.sealer == Some(self.uid)).for_each(|s| s.sealer = None);
                insert(table, subkey(&current.key, salt, Some(self.uid)))
            });
            let sub = &mut table[at];
            sub.sealed += 1;
            let tag = sub
                .cipher
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[start + HEAD_LEN..])
                .expect("AES-256-GCM seals any length a session can have (up to 64 GiB)");
            (sub.salt, tag)
        });
        let head = &mut out[start..start + HEAD_LEN];
        head[0] = VERSION;
        head[1..=KEY_ID_LEN].copy_from_slice(&current.id);
        head[1 + KEY_ID_LEN..1 + KEY_ID_LEN + SALT_LEN].copy_from_slice(&salt);
        head[1 + KEY_ID_LEN + SALT_LEN..].copy_from_slice(&nonce);
        out.extend_from_slice(&tag);
    }

    /// The box of `plain`, bound to `aad`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code, reason = "the Redis backend's"))]
    pub(crate) fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
        self.seal_into(aad, plain, &mut out);
        out
    }

    /// Opens a box bound to `aad`: its plaintext.
    ///
    /// # Errors
    /// [`OpenError`]: not a box, sealed under a key not held, or not authentic.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < OVERHEAD || sealed[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let id = &sealed[1..=KEY_ID_LEN];
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&sealed[1 + KEY_ID_LEN..1 + KEY_ID_LEN + SALT_LEN]);
        let nonce = Nonce::from_slice(&sealed[1 + KEY_ID_LEN + SALT_LEN..HEAD_LEN]);
        let (body, tag) = sealed[HEAD_LEN..].split_at(sealed.len() - HEAD_LEN - TAG_LEN);
        let tag = Tag::from_slice(tag);
        let mut known = false;
        // Keys of this id (two sharing one: 2^-32), each tried.
        for key in self.keys.iter().filter(|k| k.id == id) {
            known = true;
            let mut plain = body.to_vec();
            let opened = SUBKEYS.with_borrow_mut(|table| {
                let at = table
                    .iter()
                    .position(|s| s.salt == salt && s.key == key.key)
                    .unwrap_or_else(|| insert(table, subkey(&key.key, salt, None)));
                table[at].cipher.decrypt_in_place_detached(nonce, aad, &mut plain, tag).is_ok()
            });
            if opened {
                return Ok(plain);
            }
        }
        Err(if known { OpenError::Forged } else { OpenError::UnknownKey })
    }

    /// Whether `bytes` look like a box (its version byte and at least its overhead): how
    /// stores that hold plain data from before `storage.encrypt` tell the two apart where the
    /// layout alone does not.
    #[cfg_attr(not(feature = "redis"), allow(dead_code, reason = "the Redis backend's"))]
    pub(crate) fn looks_sealed(bytes: &[u8]) -> bool {
        bytes.len() >= OVERHEAD && bytes[0] == VERSION
    }
}

/// The subkey of data key `key` and `salt`.
fn subkey(key: &[u8; 32], salt: [u8; SALT_LEN], sealer: Option<u64>) -> Subkey {
    let derived = blake3::keyed_hash(key, &salt);
    Subkey { key: *key, salt, cipher: Aes256Gcm::new(derived.as_bytes().into()), sealer, sealed: 0 }
}

/// Puts `sub` first in the thread's table (dropping the least recently added past
/// [`CACHED_SUBKEYS`]); answers its place, 0.
fn insert(table: &mut Vec<Subkey>, sub: Subkey) -> usize {
    table.insert(0, sub);
    table.truncate(CACHED_SUBKEYS);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(secret: &[u8], previous: &[&[u8]]) -> Keyring {
        Keyring::from_secrets(secret, previous).unwrap()
    }

    const A: &[u8] = b"seal test secret A, at least 32 bytes long";
    const B: &[u8] = b"seal test secret B, at least 32 bytes long";

    #[test]
    fn a_box_opens_with_its_key_and_place_only() {
        let sealer = Sealer::new(&ring(A, &[]), true);
        let sealed = sealer.seal(b"place", b"canary value");
        assert_eq!(sealed.len(), b"canary value".len() + OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"canary"));
        assert_eq!(sealer.open(b"place", &sealed).unwrap(), b"canary value");
        assert_eq!(sealer.open(b"elsewhere", &sealed), Err(OpenError::Forged));
        let other = Sealer::new(&ring(B, &[]), true);
        assert_eq!(other.open(b"place", &sealed), Err(OpenError::UnknownKey));
        assert_eq!(sealer.open(b"place", &sealed[..OVERHEAD - 1]), Err(OpenError::Malformed));
    }

    #[test]
    fn every_flipped_bit_is_found() {
        let sealer = Sealer::new(&ring(A, &[]), true);
        let sealed = sealer.seal(b"aad", b"some session bytes");
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                assert!(sealer.open(b"aad", &bad).is_err(), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn previous_secrets_still_open_and_the_current_one_seals() {
        let old = Sealer::new(&ring(A, &[]), true);
        let sealed = old.seal(b"x", b"written before the rotation");
        let rotated = Sealer::new(&ring(B, &[A]), true);
        assert_eq!(rotated.open(b"x", &sealed).unwrap(), b"written before the rotation");
        let new = rotated.seal(b"x", b"after");
        assert_eq!(Sealer::new(&ring(B, &[]), true).open(b"x", &new).unwrap(), b"after");
        assert_eq!(old.open(b"x", &new), Err(OpenError::UnknownKey));
    }

    #[test]
    fn nonces_differ_between_boxes_of_the_same_plaintext() {
        let sealer = Sealer::new(&ring(A, &[]), true);
        let boxes: std::collections::HashSet<Vec<u8>> =
            (0..1000).map(|_| sealer.seal(b"", b"same")[..HEAD_LEN].to_vec()).collect();
        assert_eq!(boxes.len(), 1000);
        // One thread seals under one subkey (one salt) until it has sealed its share.
        let salts: std::collections::HashSet<Vec<u8>> = boxes.iter().map(|b| b[5..5 + SALT_LEN].to_vec()).collect();
        assert_eq!(salts.len(), 1);
        // Another thread, or another engine, seals under a subkey of its own.
        let there = std::thread::scope(|s| s.spawn(|| sealer.seal(b"", b"same")).join().unwrap());
        assert!(!salts.contains(&there[5..5 + SALT_LEN]));
        let other = Sealer::new(&ring(A, &[]), true).seal(b"", b"same");
        assert!(!salts.contains(&other[5..5 + SALT_LEN]));
        assert_eq!(sealer.open(b"", &there).unwrap(), b"same");
        assert_eq!(sealer.open(b"", &other).unwrap(), b"same");
    }

    #[test]
    fn sealing_in_place_matches_sealing_a_copy() {
        let sealer = Sealer::new(&ring(A, &[]), true);
        let mut out = b"prefix".to_vec();
        let start = Sealer::reserve_head(&mut out);
        out.extend_from_slice(b"in place");
        sealer.seal_tail(b"ad", &mut out, start);
        assert_eq!(&out[..6], b"prefix");
        assert!(Sealer::looks_sealed(&out[6..]));
        assert_eq!(sealer.open(b"ad", &out[6..]).unwrap(), b"in place");
    }
}
