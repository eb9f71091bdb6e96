//! Session data sealed at rest (`storage.encrypt`, on by default): what snapshots, the log and
//! Redis keep of a session's data is a *box* made here, readable only with the engine's key.
//!
//! - **Cipher**: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), an AEAD: a box that was
//!   changed, cut, moved to another place or sealed under another key fails to open, so
//!   damage or tampering is found, never read as other data. Chosen over AES-GCM-SIV because
//!   its 192-bit nonces can be drawn at random with no bound worth counting (below), it runs in
//!   constant time in software on every CPU (no reliance on AES instructions), and it is fast
//!   on the short messages sessions are made of.
//! - **Nonces never repeat**: each box has 24 fresh bytes from the operating system's CSPRNG
//!   (through `rand`'s thread generator). Random is the only scheme that stays safe across
//!   restarts, crashes that cut a write short, and several instances sealing under one key on
//!   a shared Redis, where no counter could be kept; at 192 bits, 2^64 boxes under one key
//!   leave a collision chance below 2^-64.
//! - **Key**: derived from the engine secret with BLAKE3's key derivation under this module's
//!   own context (no new secret to manage, and a key apart from the id tags'). The current
//!   secret's key seals; keys of `session.previous_secrets` still open. Each box names its key
//!   by a 4-byte key id, so the right key is tried first and a box sealed under a secret the
//!   engine no longer holds is reported as such.
//! - **Bound to its place**: the caller passes associated data (the session's locator, the
//!   log record's sequence number, the snapshot block's generation and index, the Redis field
//!   name), so a box copied elsewhere does not open.
//!
//! A box is `[version 1][key id: 4][nonce: 24][ciphertext][tag: 16]`: [`OVERHEAD`] bytes more
//! than its plaintext.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::Rng as _;

use crate::id::Keyring;

/// The first byte of every box: the version of this layout.
const VERSION: u8 = 1;
/// The key id's length.
const KEY_ID_LEN: usize = 4;
/// The nonce's length.
const NONCE_LEN: usize = 24;
/// The authentication tag's length.
const TAG_LEN: usize = 16;
/// Bytes before the ciphertext.
const HEAD_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Bytes a box adds to its plaintext.
pub(crate) const OVERHEAD: usize = HEAD_LEN + TAG_LEN;

/// BLAKE3 context of the data key (derived from each keyring key).
const DATA_KEY_CONTEXT: &str = "draco-session 2026-12 session data at rest, XChaCha20-Poly1305 key";
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

/// The keys that seal and open session data: the current secret's first.
#[derive(Clone)]
pub(crate) struct Sealer {
    keys: Vec<([u8; KEY_ID_LEN], XChaCha20Poly1305)>,
    /// `storage.encrypt`: whether what is written now is sealed (data sealed before is
    /// opened either way).
    seals: bool,
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
                let id = blake3::derive_key(KEY_ID_CONTEXT, &key);
                let mut short = [0u8; KEY_ID_LEN];
                short.copy_from_slice(&id[..KEY_ID_LEN]);
                // 0 names plain data in file headers: never a key's id.
                if short == [0; KEY_ID_LEN] {
                    short[0] = 1;
                }
                (short, XChaCha20Poly1305::new(&key.into()))
            })
            .collect();
        Self { keys, seals }
    }

    /// This sealer when data written now must be sealed (`storage.encrypt`), else `None`.
    pub(crate) fn sealing(&self) -> Option<&Self> {
        self.seals.then_some(self)
    }

    /// The id of the key that seals, as file headers name it (never 0).
    pub(crate) fn key_id(&self) -> u32 {
        u32::from_le_bytes(self.keys[0].0)
    }

    /// Whether this sealer holds the key of id `key_id` (as [`key_id`](Self::key_id) names it).
    pub(crate) fn holds(&self, key_id: u32) -> bool {
        self.keys.iter().any(|(id, _)| *id == key_id.to_le_bytes())
    }

    /// A sealer for unit tests, from a fixed secret.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn for_tests() -> Self {
        let ring = Keyring::from_secrets(b"draco-session unit tests: a fixed secret", &[]).expect("a long secret");
        Self::new(&ring, true)
    }

    /// Appends the box of `plain`, bound to `aad`, to `out`.
    pub(crate) fn seal_into(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(plain.len() + OVERHEAD);
        out.extend_from_slice(&[0u8; HEAD_LEN]);
        out.extend_from_slice(plain);
        self.seal_tail(aad, out, start);
    }

    /// Seals in place the bytes of `out` after `start + HEAD_LEN`, which the caller wrote after
    /// reserving the head with [`reserve_head`](Self::reserve_head): no copy of the plaintext.
    pub(crate) fn seal_tail(&self, aad: &[u8], out: &mut Vec<u8>, start: usize) {
        let (id, cipher) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        out[start] = VERSION;
        out[start + 1..start + 1 + KEY_ID_LEN].copy_from_slice(id);
        out[start + 1 + KEY_ID_LEN..start + HEAD_LEN].copy_from_slice(&nonce);
        let tag = cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[start + HEAD_LEN..])
            .expect("XChaCha20-Poly1305 seals any length a session can have (up to 256 GiB)");
        out.extend_from_slice(&tag);
    }

    /// Reserves a box's head in `out`: write the plaintext after it, then call
    /// [`seal_tail`](Self::seal_tail) with the answer.
    pub(crate) fn reserve_head(out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0u8; HEAD_LEN]);
        start
    }

    /// The box of `plain`, bound to `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
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
        let nonce = XNonce::from_slice(&sealed[1 + KEY_ID_LEN..HEAD_LEN]);
        let (body, tag) = sealed[HEAD_LEN..].split_at(sealed.len() - HEAD_LEN - TAG_LEN);
        let tag = Tag::from_slice(tag);
        let mut known = false;
        // The named key first; the others too, in case two keys share an id (2^-32).
        for (key_id, cipher) in self.keys.iter().filter(|(k, _)| k == id) {
            debug_assert_eq!(key_id, id);
            known = true;
            let mut plain = body.to_vec();
            if cipher.decrypt_in_place_detached(nonce, aad, &mut plain, tag).is_ok() {
                return Ok(plain);
            }
        }
        Err(if known { OpenError::Forged } else { OpenError::UnknownKey })
    }

    /// Whether `bytes` look like a box (its version byte and at least its overhead): how
    /// stores that hold plain data from before `storage.encrypt` tell the two apart where the
    /// layout alone does not.
    pub(crate) fn looks_sealed(bytes: &[u8]) -> bool {
        bytes.len() >= OVERHEAD && bytes[0] == VERSION
    }
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
