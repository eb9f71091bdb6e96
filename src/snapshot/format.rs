//! The snapshot codec: the one place that knows the file format. A record's bytes (bincode of
//! the serde shapes) are [`crate::wire`]'s.
//!
//! A file is a fixed 80-byte header followed by a body. All integers are little-endian.
//!
//! | bytes  | field                                              |
//! |--------|----------------------------------------------------|
//! | 0..8   | magic `DRACOSNP`                                   |
//! | 8..12  | format version (4)                                 |
//! | 12..16 | shard index                                        |
//! | 16..20 | shard count of the writer                          |
//! | 20..24 | key id of a sealed body (see [`crate::seal`]); 0: plain |
//! | 24..32 | generation (unique, increasing)                    |
//! | 32..40 | written at, ms since the epoch                     |
//! | 40..48 | entry count                                        |
//! | 48..56 | body length in bytes                               |
//! | 56..64 | xxh3-64 of the body                                |
//! | 64..72 | log position: the first write-ahead log record this snapshot may lack |
//! | 72..80 | xxh3-64 of bytes 0..72 (the header itself)         |
//!
//! The body is `entries` records back to back, each the bincode 2 (standard config, serde)
//! encoding of `(Locator, SessionState)` (see [`crate::wire`]): a session is named by its locator, a one-way digest
//! of its id (see [`crate::id`]), so a copied snapshot yields no id that opens a session.
//!
//! A sealed body (`storage.encrypt`, the default) is the file's random 16-byte id, then a
//! sequence of blocks, each a u32 length and a box of [`crate::seal`] (AES-256-GCM) bound to
//! the file's shard, shard count and id and the block's index; the blocks' plaintexts, end to
//! end, are the records above. Only the header stays plain: counts, sizes, times and checksums. A block that does
//! not open is damage like a checksum mismatch (the previous generation is loaded); a body
//! sealed under a key the engine does not hold stops start-up with an error saying so.
//!
//! Older versions are still read. Version 3 is version 4 with bytes 20..24 always 0 (plain).
//! Version 2 has the same header; its records are
//! `(SessionId, SessionState)`, whole ids (random part, then tag), turned into locators as they
//! are read. Version 1 is version 2 without the log position: its header checksum is at 64..72,
//! over bytes 0..64, and its body starts at 72; it reads as log position 0. Bodies are tied to
//! the serde shape of those types: changing one means a new format version with a decoder kept
//! for old files. `tests/fixtures/snapshot-v1.snap` and the test reading it guard this.

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use crate::id::{LOCATOR_LEN, Locator, SessionId};
use crate::seal::Sealer;
use crate::state::SessionState;
use crate::wire::{self, Record};

/// First bytes of every snapshot file.
pub(crate) const MAGIC: [u8; 8] = *b"DRACOSNP";
/// The format version this build writes (and the newest it reads).
pub(crate) const VERSION: u32 = 4;
/// The newest version whose records name sessions by their whole id (and whose writers chose
/// a session's shard by its id, not its locator).
pub(crate) const LAST_WITH_IDS: u32 = 2;
/// Size of the header this build writes.
pub(crate) const HEADER_LEN: usize = 80;
/// Size of a version 1 header.
const V1_HEADER_LEN: usize = 72;

/// The header fields of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub shard: u32,
    pub shards: u32,
    pub generation: u64,
    pub written_ms: u64,
    pub entries: u64,
    pub body_len: u64,
    pub body_hash: u64,
    /// The first write-ahead log record (of this shard) the snapshot may lack: replay starts
    /// there. 0 for a version 1 file.
    pub log_from: u64,
    /// The key id of a sealed body; 0: the body is plain (always, before version 4).
    pub key_id: u32,
}

/// Why a file cannot be read as a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormatError {
    /// Shorter than a header, or than the body length the header announces.
    #[error("truncated: {len} bytes, expected {expected}")]
    Truncated { len: u64, expected: u64 },
    /// Not a snapshot file at all.
    #[error("not a draco-session snapshot (wrong magic bytes)")]
    BadMagic,
    /// The header does not match its own checksum.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// The body does not match the checksum in the header.
    #[error("body checksum mismatch")]
    BodyChecksum,
    /// Checksums match but the records do not decode (a writer bug, or a forged file).
    #[error("record {index} does not decode: {message}")]
    Record { index: u64, message: String },
    /// Written by a newer draco-session: not corrupt, but unreadable by this build.
    #[error("format version {found}, but this build reads only up to version {VERSION}: upgrade draco-session")]
    UnsupportedVersion { found: u32 },
    /// A sealed block does not open (damaged or tampered with).
    #[error("sealed block {index} {why}")]
    Sealed { index: u64, why: crate::seal::OpenError },
    /// Sealed under a key this engine does not hold: not damage, so never set aside.
    #[error(
        "sealed under a key this engine does not hold: was session.secret changed without listing the old one \
         in session.previous_secrets?"
    )]
    UnknownKey,
}

impl FormatError {
    /// Whether the file is damaged (as opposed to written by a newer version, or sealed under
    /// a key not held).
    pub fn is_corrupt(&self) -> bool {
        !matches!(self, Self::UnsupportedVersion { .. } | Self::UnknownKey)
    }
}

/// Appends the record of one session to `out`.
///
/// # Errors
/// Only if serde refuses the value, which `SessionState` never does.
pub(crate) fn encode_record(out: &mut Vec<u8>, locator: &Locator, state: &SessionState) -> Result<(), String> {
    wire::encode(out, &(locator, state))
}

/// The header of a file whose body is `chunks` concatenated.
/// A file's body as the writer writes it: plain chunks of records (key id 0), or a sealed
/// body's parts — the file's random id, then its blocks.
#[derive(Debug, Default)]
pub(crate) struct Body {
    pub key_id: u32,
    pub parts: Vec<Vec<u8>>,
}

impl Body {
    /// A plain body of chunks of encoded records.
    pub fn plain(chunks: Vec<Vec<u8>>) -> Self {
        Self { key_id: 0, parts: chunks }
    }
}

/// Length of a sealed body's random id, its first bytes.
const FILE_ID_LEN: usize = 16;

/// What a sealed block is bound to: the file's shard, layout and random id, and the block's
/// index. The id is drawn for each file, so a block cannot move to another file (another
/// generation included), nor to another place in its own.
fn block_aad(shard: u32, shards: u32, id: &[u8], index: u64) -> [u8; 40] {
    let mut aad = [0u8; 40];
    aad[..8].copy_from_slice(b"DRACOSNP");
    aad[8..12].copy_from_slice(&shard.to_le_bytes());
    aad[12..16].copy_from_slice(&shards.to_le_bytes());
    aad[16..32].copy_from_slice(id);
    aad[32..40].copy_from_slice(&index.to_le_bytes());
    aad
}

/// Seals one file's chunks of encoded records into blocks as they come (a shard's snapshot
/// run seals each chunk as it fills, on the shard's own thread, so shards seal in parallel and
/// the writer thread only writes).
pub(crate) struct BlockSealer {
    sealer: Sealer,
    shard: u32,
    shards: u32,
    id: [u8; FILE_ID_LEN],
    blocks: Vec<Vec<u8>>,
}

impl BlockSealer {
    /// For a file of shard `shard` of `shards`, under a fresh random id.
    pub fn new(sealer: &Sealer, shard: u32, shards: u32) -> Self {
        let mut id = [0u8; FILE_ID_LEN];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut id);
        Self { sealer: sealer.clone(), shard, shards, id, blocks: Vec::new() }
    }

    /// Seals the next chunk (an empty one is skipped).
    pub fn seal(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let index = self.blocks.len() as u64;
        let mut block = Vec::with_capacity(4 + chunk.len() + crate::seal::OVERHEAD);
        block.extend_from_slice(&[0; 4]);
        self.sealer.seal_into(&block_aad(self.shard, self.shards, &self.id, index), chunk, &mut block);
        let len = u32::try_from(block.len() - 4).expect("a chunk is about 1 MiB");
        block[..4].copy_from_slice(&len.to_le_bytes());
        self.blocks.push(block);
    }

    /// The sealed body.
    pub fn finish(self) -> Body {
        let mut parts = Vec::with_capacity(self.blocks.len() + 1);
        parts.push(self.id.to_vec());
        parts.extend(self.blocks);
        Body { key_id: self.sealer.key_id(), parts }
    }
}

/// The plaintext of a sealed body: its blocks opened, end to end.
fn open_body(sealer: &Sealer, header: &Header, body: &[u8]) -> Result<Vec<u8>, FormatError> {
    if !sealer.holds(header.key_id) {
        return Err(FormatError::UnknownKey);
    }
    let malformed = |index| FormatError::Sealed { index, why: crate::seal::OpenError::Malformed };
    let id = body.get(..FILE_ID_LEN).ok_or(malformed(0))?;
    let mut plain = Vec::with_capacity(body.len());
    let (mut at, mut index) = (FILE_ID_LEN, 0u64);
    while at < body.len() {
        let len = body
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or(malformed(index))?;
        let block = body.get(at + 4..at + 4 + len).ok_or(malformed(index))?;
        let aad = block_aad(header.shard, header.shards, id, index);
        plain.extend_from_slice(&sealer.open(&aad, block).map_err(|why| FormatError::Sealed { index, why })?);
        at += 4 + len;
        index += 1;
    }
    Ok(plain)
}

#[allow(clippy::too_many_arguments, reason = "one per header field")]
pub(crate) fn header_for(
    shard: u32,
    shards: u32,
    generation: u64,
    written_ms: u64,
    entries: u64,
    log_from: u64,
    key_id: u32,
    chunks: &[Vec<u8>],
) -> Header {
    let mut hasher = Xxh3::new();
    let mut body_len = 0u64;
    for chunk in chunks {
        hasher.update(chunk);
        body_len += chunk.len() as u64;
    }
    Header {
        version: VERSION,
        shard,
        shards,
        generation,
        written_ms,
        entries,
        body_len,
        body_hash: hasher.digest(),
        log_from,
        key_id,
    }
}

impl Header {
    /// The header's length in bytes (by its version).
    pub fn len(&self) -> usize {
        if self.version == 1 { V1_HEADER_LEN } else { HEADER_LEN }
    }

    /// The 80 header bytes (version 2 and later).
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.shard.to_le_bytes());
        b[16..20].copy_from_slice(&self.shards.to_le_bytes());
        b[20..24].copy_from_slice(&self.key_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.generation.to_le_bytes());
        b[32..40].copy_from_slice(&self.written_ms.to_le_bytes());
        b[40..48].copy_from_slice(&self.entries.to_le_bytes());
        b[48..56].copy_from_slice(&self.body_len.to_le_bytes());
        b[56..64].copy_from_slice(&self.body_hash.to_le_bytes());
        b[64..72].copy_from_slice(&self.log_from.to_le_bytes());
        let check = xxh3_64(&b[..72]);
        b[72..80].copy_from_slice(&check.to_le_bytes());
        b
    }

    /// Reads and checks a header: magic, version, header checksum.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < 12 || bytes[0..8] != MAGIC {
            return Err(if bytes.len() < 8 || (bytes.len() < 12 && bytes[..8] == MAGIC) {
                FormatError::Truncated { len: bytes.len() as u64, expected: HEADER_LEN as u64 }
            } else {
                FormatError::BadMagic
            });
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        // Where each version keeps its header checksum, and over which bytes.
        let check_of = |v: u32| if v == 1 { (V1_HEADER_LEN, 64) } else { (HEADER_LEN, 72) };
        if version > VERSION {
            // A flipped bit in the version field of a file this build writes must read as
            // damage, not as a file from the future: check each known header checksum with its
            // version put back.
            for known in 1..=VERSION {
                let (len, sum) = check_of(known);
                if bytes.len() >= len {
                    let mut head = bytes[..sum].to_vec();
                    head[8..12].copy_from_slice(&known.to_le_bytes());
                    if xxh3_64(&head) == u64_at(sum) {
                        return Err(FormatError::HeaderChecksum);
                    }
                }
            }
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let (len, sum) = check_of(version);
        if bytes.len() < len {
            return Err(FormatError::Truncated { len: bytes.len() as u64, expected: len as u64 });
        }
        if xxh3_64(&bytes[..sum]) != u64_at(sum) || version == 0 {
            return Err(FormatError::HeaderChecksum);
        }
        Ok(Self {
            version,
            shard: u32_at(12),
            shards: u32_at(16),
            generation: u64_at(24),
            written_ms: u64_at(32),
            entries: u64_at(40),
            body_len: u64_at(48),
            body_hash: u64_at(56),
            log_from: if version == 1 { 0 } else { u64_at(64) },
            key_id: if version >= 4 { u32_at(20) } else { 0 },
        })
    }
}

/// Checks and decodes a whole file.
///
/// # Errors
/// A [`FormatError`]; never a panic, whatever the bytes.
pub(crate) fn decode(bytes: &[u8], sealer: &Sealer) -> Result<(Header, Vec<Record>), FormatError> {
    let header = Header::parse(bytes)?;
    let len = bytes.len() as u64;
    let expected = (header.len() as u64).saturating_add(header.body_len);
    if len < expected {
        return Err(FormatError::Truncated { len, expected });
    }
    // Trailing bytes change the length: as damaging as missing ones.
    if len > expected {
        return Err(FormatError::BodyChecksum);
    }
    let body = &bytes[header.len()..];
    if xxh3_64(body) != header.body_hash {
        return Err(FormatError::BodyChecksum);
    }
    let opened;
    let body = if header.key_id == 0 {
        body
    } else {
        opened = open_body(sealer, &header, body)?;
        &opened[..]
    };
    // Every record takes at least 16 bytes (the locator), which bounds a forged count.
    let mut records =
        Vec::with_capacity(usize::try_from(header.entries).unwrap_or(usize::MAX).min(body.len() / LOCATOR_LEN));
    let mut pos = 0;
    for index in 0..header.entries {
        let (record, used) = decode_record(&body[pos..], header.version)
            .map_err(|e| FormatError::Record { index, message: e.to_string() })?;
        pos += used;
        records.push(record);
    }
    if pos != body.len() {
        return Err(FormatError::Record { index: header.entries, message: "bytes left after the last record".into() });
    }
    Ok((header, records))
}

/// Decodes the record at the front of `bytes`; answers it and the bytes it took. Never
/// allocates more than `bytes` can hold (see [`wire::decode`]).
fn decode_record(bytes: &[u8], version: u32) -> Result<(Record, usize), bincode::error::DecodeError> {
    if version <= LAST_WITH_IDS {
        let ((id, state), used): ((SessionId, SessionState), usize) = wire::decode(bytes)?;
        return Ok(((*id.locator(), state), used));
    }
    wire::decode(bytes)
}

/// The records of a body (test helper: what a snapshot run encoded).
#[cfg(test)]
pub(crate) fn decode_records(mut body: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let (record, used) = decode_record(body, VERSION).expect("a record this crate encoded");
        out.push(record);
        body = &body[used..];
    }
    out
}

/// A whole file in memory (header + body), for tests and the fixture generator.
#[cfg(test)]
pub(crate) fn encode_file(
    shard: u32,
    shards: u32,
    generation: u64,
    written_ms: u64,
    records: &[(Locator, &SessionState)],
) -> Vec<u8> {
    let mut body = Vec::new();
    for (locator, state) in records {
        encode_record(&mut body, locator, state).unwrap();
    }
    let chunks = [body];
    let header = header_for(shard, shards, generation, written_ms, records.len() as u64, 0, 0, &chunks);
    let mut file = header.to_bytes().to_vec();
    file.extend_from_slice(&chunks[0]);
    file
}

#[cfg(test)]
mod tests {
    /// A sealed file of `records`, in `blocks` chunks.
    fn sealed_file(sealer: &Sealer, records: &[(Locator, SessionState)], blocks: usize) -> Vec<u8> {
        let mut chunks = vec![Vec::new(); blocks];
        for (i, (locator, state)) in records.iter().enumerate() {
            encode_record(&mut chunks[i % blocks], locator, state).unwrap();
        }
        let mut blocks = BlockSealer::new(sealer, 3, 8);
        chunks.iter().for_each(|c| blocks.seal(c));
        let body = blocks.finish();
        let header = header_for(3, 8, 42, 1, records.len() as u64, 0, body.key_id, &body.parts);
        let mut file = header.to_bytes().to_vec();
        body.parts.iter().for_each(|b| file.extend_from_slice(b));
        file
    }

    #[test]
    fn a_sealed_file_reads_back_and_holds_no_name_or_value() {
        let sealer = Sealer::for_tests();
        let records = sample();
        // One block: records end to end as written.
        let file = sealed_file(&sealer, &records, 1);
        let (header, decoded) = decode(&file, &sealer).unwrap();
        assert_eq!((header.version, header.key_id), (VERSION, sealer.key_id()));
        assert_eq!(decoded, records);
        for canary in [&b"cart"[..], b"items", b"[19]"] {
            assert!(!file.windows(canary.len()).any(|w| w == canary), "{canary:?} is plain");
        }
        // A block may not move: blocks of another file, or swapped, do not open.
        let two = sealed_file(&sealer, &records[..2], 2);
        let (h, _) = decode(&two, &sealer).unwrap();
        let (id, body) = two[HEADER_LEN..].split_at(16);
        let first = 4 + u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        let swapped = [id, &body[first..], &body[..first]].concat();
        let header = Header { body_hash: xxh3_64(&swapped), ..h };
        let file = [&header.to_bytes()[..], &swapped].concat();
        assert!(matches!(decode(&file, &sealer), Err(FormatError::Sealed { index: 0, .. })));
        // Nor can a block move from another file of the same shard (another generation).
        let again = sealed_file(&sealer, &records[..2], 2);
        let mixed = [&two[..HEADER_LEN + 16], &again[HEADER_LEN + 16..]].concat();
        let header = Header { body_hash: xxh3_64(&mixed[HEADER_LEN..]), ..h };
        let file = [&header.to_bytes()[..], &mixed[HEADER_LEN..]].concat();
        assert!(matches!(decode(&file, &sealer), Err(FormatError::Sealed { index: 0, .. })));
    }

    #[test]
    fn a_tampered_block_is_damage_and_a_key_not_held_is_not() {
        let sealer = Sealer::for_tests();
        let file = sealed_file(&sealer, &sample(), 1);
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        // Checksums forged to match, as an attacker would.
        let (h, _) = decode(&file, &sealer).unwrap();
        let header = Header { body_hash: xxh3_64(&bad[HEADER_LEN..]), ..h };
        bad[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        let err = decode(&bad, &sealer).unwrap_err();
        assert!(matches!(err, FormatError::Sealed { .. }) && err.is_corrupt(), "{err}");
        let other = Keyring::from_secrets(b"another secret, long enough to be one", &[]).unwrap();
        let err = decode(&file, &Sealer::new(&other, true)).unwrap_err();
        assert_eq!(err, FormatError::UnknownKey);
        assert!(!err.is_corrupt(), "never set aside as damage");
    }

    use super::*;
    use crate::config::LimitsConfig;
    use crate::id::Keyring;

    fn sample() -> Vec<(Locator, SessionState)> {
        let ring = Keyring::from_secrets(b"format test secret format test secret", &[]).unwrap();
        (0..20u64)
            .map(|i| {
                let mut s = SessionState::new(1_000 + i);
                s.set("cart", "items", format!("[{i}]").into_bytes(), &LimitsConfig::default()).unwrap();
                if i % 3 == 0 {
                    s.userid = i + 1;
                    s.persistent = true;
                }
                (*ring.generate().locator(), s)
            })
            .collect()
    }

    fn file() -> (Vec<(Locator, SessionState)>, Vec<u8>) {
        let records = sample();
        let refs: Vec<_> = records.iter().map(|(id, s)| (*id, s)).collect();
        let bytes = encode_file(3, 8, 42, 123_456, &refs);
        (records, bytes)
    }

    /// A version 2 file: whole ids in the records.
    fn v2_file(records: &[(SessionId, SessionState)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (id, state) in records {
            wire::encode(&mut body, &(id, state)).unwrap();
        }
        let chunks = [body];
        let mut header = header_for(0, 1, 7, 1, records.len() as u64, 5, 0, &chunks);
        header.version = 2;
        let mut file = header.to_bytes().to_vec();
        file.extend_from_slice(&chunks[0]);
        file
    }

    #[test]
    fn version_2_files_still_read_with_ids_turned_into_locators() {
        let ring = Keyring::from_secrets(b"format test secret format test secret", &[]).unwrap();
        let records: Vec<(SessionId, SessionState)> =
            sample().into_iter().map(|(_, state)| (ring.generate(), state)).collect();
        let (header, decoded) = decode(&v2_file(&records), &Sealer::for_tests()).unwrap();
        assert_eq!((header.version, header.log_from), (2, 5));
        let expected: Vec<Record> = records.iter().map(|(id, s)| (*id.locator(), s.clone())).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_snapshot_holds_no_id() {
        let ring = Keyring::from_secrets(b"format test secret format test secret", &[]).unwrap();
        let ids: Vec<SessionId> = (0..50).map(|_| ring.generate()).collect();
        let states: Vec<SessionState> = (0..50).map(SessionState::new).collect();
        let refs: Vec<(Locator, &SessionState)> = ids.iter().zip(&states).map(|(id, s)| (*id.locator(), s)).collect();
        let bytes = encode_file(0, 1, 1, 1, &refs);
        for id in &ids {
            for part in [&id.random()[..], &id.tag()[..], id.to_string().as_bytes()] {
                assert!(!bytes.windows(part.len()).any(|w| w == part), "the snapshot holds part of an id");
            }
        }
    }

    #[test]
    fn round_trip() {
        let (records, bytes) = file();
        let (header, decoded) = decode(&bytes, &Sealer::for_tests()).unwrap();
        assert_eq!(decoded, records);
        assert_eq!((header.shard, header.shards, header.generation, header.written_ms), (3, 8, 42, 123_456));
        assert_eq!(header.entries, 20);
        assert_eq!(header.version, VERSION);
    }

    #[test]
    fn empty_snapshot_round_trips() {
        let bytes = encode_file(0, 1, 1, 0, &[]);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(decode(&bytes, &Sealer::for_tests()).unwrap().1, vec![]);
    }

    #[test]
    fn every_truncation_is_detected() {
        let (_, bytes) = file();
        for len in 0..bytes.len() {
            let err = decode(&bytes[..len], &Sealer::for_tests()).unwrap_err();
            assert!(err.is_corrupt(), "cut at {len}: {err}");
            if len >= 8 {
                assert!(matches!(err, FormatError::Truncated { .. }), "cut at {len}: {err}");
            }
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let (_, bytes) = file();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                let err = decode(&bad, &Sealer::for_tests()).unwrap_err();
                assert!(err.is_corrupt(), "byte {i} bit {bit}: {err}");
            }
        }
    }

    #[test]
    fn header_and_body_damage_are_named() {
        let (_, bytes) = file();
        let mut bad = bytes.clone();
        bad[30] ^= 0xff; // generation
        assert_eq!(decode(&bad, &Sealer::for_tests()).unwrap_err(), FormatError::HeaderChecksum);
        let mut bad = bytes.clone();
        bad[HEADER_LEN + 5] ^= 0x01;
        assert_eq!(decode(&bad, &Sealer::for_tests()).unwrap_err(), FormatError::BodyChecksum);
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode(&long, &Sealer::for_tests()).unwrap_err().is_corrupt());
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let (_, mut bytes) = file();
        bytes[0..8].copy_from_slice(b"NOTASNAP");
        assert_eq!(decode(&bytes, &Sealer::for_tests()).unwrap_err(), FormatError::BadMagic);
        assert_eq!(
            decode(b"{\"json\": true, \"not\": \"a snapshot\"}", &Sealer::for_tests()).unwrap_err(),
            FormatError::BadMagic
        );
    }

    #[test]
    fn future_version_is_a_clear_error_not_corruption() {
        let (_, bytes) = file();
        let mut future = bytes.clone();
        future[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        // A real future file would have its own valid header checksum.
        let check = xxh3_64(&future[..72]);
        future[72..80].copy_from_slice(&check.to_le_bytes());
        let err = decode(&future, &Sealer::for_tests()).unwrap_err();
        assert_eq!(err, FormatError::UnsupportedVersion { found: VERSION + 1 });
        assert!(!err.is_corrupt());
        assert!(err.to_string().contains("upgrade"), "{err}");
        // Even a future file shorter than a v1 header is "future", not corrupt.
        assert_eq!(
            decode(&future[..20], &Sealer::for_tests()).unwrap_err(),
            FormatError::UnsupportedVersion { found: VERSION + 1 }
        );
    }

    #[test]
    fn consistent_checksums_over_garbage_records_are_an_error_not_a_panic() {
        let chunks = [vec![0xff; 40]];
        let header = header_for(0, 1, 1, 0, 3, 0, 0, &chunks);
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(&chunks[0]);
        assert!(matches!(decode(&bytes, &Sealer::for_tests()).unwrap_err(), FormatError::Record { .. }));
        // A huge forged count does not allocate a huge vector.
        let header = header_for(0, 1, 1, 0, u64::MAX, 0, 0, &chunks);
        let mut bytes = header.to_bytes().to_vec();
        bytes.extend_from_slice(&chunks[0]);
        assert!(decode(&bytes, &Sealer::for_tests()).is_err());
    }

    #[test]
    fn a_forged_string_length_is_an_error_not_a_huge_allocation() {
        // A record whose first scope name claims 2^60 bytes, behind correct checksums.
        let mut body = vec![7u8; 24]; // the id
        body.extend_from_slice(&[0, 0, 0, 0]); // userid, persistent, created_ms, last_access_ms
        body.push(1); // one entry
        body.push(253); // the scope's length: a u64 follows
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        body.extend_from_slice(b"scope");
        let chunks = [body];
        let mut bytes = header_for(0, 1, 1, 0, 1, 0, 0, &chunks).to_bytes().to_vec();
        bytes.extend_from_slice(&chunks[0]);
        assert!(matches!(decode(&bytes, &Sealer::for_tests()).unwrap_err(), FormatError::Record { index: 0, .. }));
    }

    #[test]
    fn large_honest_records_still_decode() {
        let ring = Keyring::from_secrets(b"format test secret format test secret", &[]).unwrap();
        let limits = LimitsConfig { max_value_bytes: 1 << 21, max_session_bytes: 1 << 22, ..LimitsConfig::default() };
        let mut s = SessionState::new(1);
        s.set("s", "big", vec![b'x'; 1 << 21], &limits).unwrap();
        s.set("s", "small", b"1", &limits).unwrap();
        let id = *ring.generate().locator();
        let bytes = encode_file(0, 1, 1, 0, &[(id, &s)]);
        assert_eq!(decode(&bytes, &Sealer::for_tests()).unwrap().1, vec![(id, s)]);
    }
}
