//! Which shard owns a session id, computed here from the documented routing (ARCHITECTURE.md:
//! xxh3, with a fixed seed, of the id's locator, a keyed BLAKE3 digest of its random part)
//! rather than asked of the engine, which keeps routing to itself. A change of routing is a
//! change of the data directory's layout: these tests fail first.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use draco_session::SessionId;

/// The key of the locator digest (`src/id.rs`).
const LOCATOR_KEY: [u8; 32] = *b"draco-session locator digest v1.";
/// The seed of the shard hash (`src/id.rs`).
const SHARD_SEED: u64 = 0x6472_6163_6f5f_7364;

/// The shard that owns `id` among `shards`.
pub fn shard_of(id: &SessionId, shards: usize) -> usize {
    let bytes = URL_SAFE_NO_PAD.decode(id.to_string()).expect("an id is base64url");
    let random: [u8; 16] = bytes[..16].try_into().expect("16 random bytes, then the tag");
    let digest = blake3::keyed_hash(&LOCATOR_KEY, &random);
    let locator = &digest.as_bytes()[..16];
    let shards = u64::try_from(shards.max(1)).expect("a shard count fits u64");
    usize::try_from(xxhash_rust::xxh3::xxh3_64_with_seed(locator, SHARD_SEED) % shards).expect("below the shard count")
}
