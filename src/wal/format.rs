//! The write-ahead log codec: the one place that knows the log's bytes.
//!
//! A segment file is a 40-byte header followed by records. All integers are little-endian.
//!
//! | bytes  | header field                                   |
//! |--------|------------------------------------------------|
//! | 0..8   | magic `DRACOLOG`                               |
//! | 8..12  | format version (3)                             |
//! | 12..16 | shard index                                    |
//! | 16..20 | shard count of the writer                      |
//! | 20..24 | key id of its sealed records (see [`crate::seal`]); 0: plain |
//! | 24..32 | base: the sequence number of its first record |
//! | 32..40 | xxh3-64 of bytes 0..32                         |
//!
//! Each record is a 16-byte frame and a payload:
//!
//! | bytes      | record field                                          |
//! |------------|-------------------------------------------------------|
//! | 0..4       | payload length `n`                                    |
//! | 4..8       | low 32 bits of xxh3-64 of bytes 0..4 (the length's own check) |
//! | 8..16      | xxh3-64 of the payload                                |
//! | 16..16+n   | payload: sequence u64, time (ms since the epoch) u64, kind u8, fields |
//!
//! The length has a check of its own, so a damaged length never makes the reader skip good
//! records. A record that does not read is damage when a good record follows it, else a torn
//! tail (a write a crash cut short); zeros after the last record are space the writer zeroed
//! ahead of its records (see [`super::io`]), the end. Sessions are named by their 16-byte
//! locator (a one-way digest of the id: the log holds no usable id; see [`crate::id`]); names
//! are a u16 length and bytes; values a u32 length and bytes; a whole session (kind `Put`) its
//! bytes of [`crate::wire`], as snapshot records hold it. Records hold results, never closures:
//! replaying a record twice, or over a snapshot that already holds it, gives the same session
//! (see [`super::replay`]).
//!
//! In a sealed segment (`storage.encrypt`, the default) each record's fields after its
//! locators (names, values, a whole session, a user id, a persistence flag) are one box of
//! [`crate::seal`] (AES-256-GCM) bound to the record's plain part (sequence number,
//! time, kind, locators): what stays plain is what replay needs to order, route and check
//! records. A box that does not open is a record that does not decode: damage or a torn tail,
//! by the rules above.
//!
//! Version 2 (still read) is version 3 with bytes 20..24 always 0. Version 1 (still read) is the same with each session named by its whole id, 24 bytes
//! (random part, then tag): the reader turns it into the locator.

use xxhash_rust::xxh3::xxh3_64;

use crate::id::{LOCATOR_LEN, Locator, locator_of};
use crate::seal::Sealer;
use crate::state::SessionState;
use crate::wire;

/// First bytes of every segment file.
pub(crate) const MAGIC: [u8; 8] = *b"DRACOLOG";
/// The log format version this build writes (and the newest it reads).
pub(crate) const VERSION: u32 = 3;
/// Version 1 named sessions by their whole id.
const V1: u32 = 1;
/// Size of a segment header.
pub(crate) const HEADER_LEN: usize = 40;
/// Size of a record's frame.
pub(crate) const FRAME_LEN: usize = 16;
/// Largest payload a writer produces (a whole session is bounded by the limits, far below).
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

const PUT: u8 = 1;
const SET: u8 = 2;
const REMOVE: u8 = 3;
const CLEAR: u8 = 4;
const CLEAR_ALL: u8 = 5;
const ROTATE: u8 = 6;
const PERSIST: u8 = 7;
const DESTROY: u8 = 8;

/// One change, as the shard records it (borrowed: encoding copies nothing first).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    /// The whole session (its first write: from then on it is persisted).
    Put { id: &'a Locator, state: &'a SessionState },
    /// A value written (set, update, increment): the resulting bytes.
    Set { id: &'a Locator, scope: &'a str, key: &'a str, value: &'a [u8] },
    /// A value removed (remove, or an update answering `None`).
    Remove { id: &'a Locator, scope: &'a str, key: &'a str },
    /// A scope, or (`None`) every scope, cleared.
    Clear { id: &'a Locator, scope: Option<&'a str> },
    /// Login or logout: the session moves to `new`; its user and persistence after the move.
    Rotate { old: &'a Locator, new: &'a Locator, userid: u64, persistent: bool },
    /// Remember-me switched.
    Persist { id: &'a Locator, persistent: bool },
    /// The session ended (destroy, log out everywhere).
    Destroy { id: &'a Locator },
}

/// One decoded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owned {
    Put { id: Locator, state: SessionState },
    Set { id: Locator, scope: String, key: String, value: Vec<u8> },
    Remove { id: Locator, scope: String, key: String },
    Clear { id: Locator, scope: Option<String> },
    Rotate { old: Locator, new: Locator, userid: u64, persistent: bool },
    Persist { id: Locator, persistent: bool },
    Destroy { id: Locator },
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub lsn: u64,
    pub time_ms: u64,
    pub change: Owned,
}

/// A segment's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub shard: u32,
    pub shards: u32,
    pub base: u64,
    /// The key id its records are sealed under; 0: plain (always, before version 3).
    pub key_id: u32,
}

impl SegmentHeader {
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.shard.to_le_bytes());
        b[16..20].copy_from_slice(&self.shards.to_le_bytes());
        b[20..24].copy_from_slice(&self.key_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.base.to_le_bytes());
        let check = xxh3_64(&b[..32]);
        b[32..40].copy_from_slice(&check.to_le_bytes());
        b
    }

    /// Reads and checks a header.
    pub fn parse(bytes: &[u8]) -> Result<Self, Stop> {
        if bytes.len() < HEADER_LEN {
            return Err(Stop::Torn { offset: 0 });
        }
        if bytes[0..8] != MAGIC || xxh3_64(&bytes[..32]) != u64_at(bytes, 32) {
            return Err(Stop::Damaged { offset: 0, why: "segment header damaged".into() });
        }
        let version = u32_at(bytes, 8);
        if !(V1..=VERSION).contains(&version) {
            return Err(Stop::Damaged {
                offset: 0,
                why: format!("log format version {version}; this build reads versions {V1} to {VERSION}"),
            });
        }
        let key_id = if version >= 3 { u32_at(bytes, 20) } else { 0 };
        Ok(Self { shard: u32_at(bytes, 12), shards: u32_at(bytes, 16), base: u64_at(bytes, 24), key_id })
    }
}

/// Whether `bytes` (a segment file) is of format version 1, written when shards were chosen by
/// the id rather than its locator.
pub(crate) fn routed_by_id(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && u32_at(bytes, 8) == V1
}

/// Where reading a segment stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The last record is incomplete: a write cut by a crash. Truncate here.
    Torn { offset: u64 },
    /// A record in the middle is damaged: nothing from here on can be trusted.
    Damaged { offset: u64, why: String },
    /// Its records are sealed under a key the engine does not hold: not damage, nothing read.
    ForeignKey,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

fn length_check(len: &[u8]) -> u32 {
    #[allow(clippy::cast_possible_truncation, reason = "the low 32 bits, on purpose")]
    let low = xxh3_64(len) as u32;
    low
}

#[allow(clippy::cast_possible_truncation, reason = "names are at most MAX_NAME_LEN bytes (checked on write)")]
fn put_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

#[allow(clippy::cast_possible_truncation, reason = "values are at most limits.max_value_bytes (64 MiB)")]
fn put_bytes(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

fn put_id(out: &mut Vec<u8>, id: &Locator) {
    out.extend_from_slice(id);
}

/// Appends one framed record to `out`.
///
/// # Errors
/// Only if serde refuses a session (kind `Put`), which `SessionState` never does.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    lsn: u64,
    time_ms: u64,
    change: &Change<'_>,
    sealer: Option<&Sealer>,
) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_LEN]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
    let (kind, id) = match *change {
        Change::Put { id, .. } => (PUT, id),
        Change::Set { id, .. } => (SET, id),
        Change::Remove { id, .. } => (REMOVE, id),
        Change::Clear { id, scope: Some(_) } => (CLEAR, id),
        Change::Clear { id, scope: None } => (CLEAR_ALL, id),
        Change::Rotate { old, new, .. } => {
            out.push(ROTATE);
            put_id(out, old);
            (ROTATE, new)
        }
        Change::Persist { id, .. } => (PERSIST, id),
        Change::Destroy { id } => (DESTROY, id),
    };
    if kind != ROTATE {
        out.push(kind);
    }
    put_id(out, id);
    // The fields, sealed in one box when the segment is.
    let fields_at = out.len();
    let sealing = sealer.filter(|_| has_fields(kind)).map(|sealer| (sealer, Sealer::reserve_head(out)));
    match *change {
        Change::Put { state, .. } => {
            if let Err(e) = wire::encode(out, state) {
                out.truncate(start);
                return Err(e);
            }
        }
        Change::Set { scope, key, value, .. } => {
            put_name(out, scope);
            put_name(out, key);
            put_bytes(out, value);
        }
        Change::Remove { scope, key, .. } => {
            put_name(out, scope);
            put_name(out, key);
        }
        Change::Clear { scope: Some(scope), .. } => put_name(out, scope),
        Change::Rotate { userid, persistent, .. } => {
            out.extend_from_slice(&userid.to_le_bytes());
            out.push(u8::from(persistent));
        }
        Change::Persist { persistent, .. } => out.push(u8::from(persistent)),
        Change::Clear { scope: None, .. } | Change::Destroy { .. } => {}
    }
    if let Some((sealer, head)) = sealing {
        // The plain part (sequence, time, kind, locators: at most 49 bytes) binds the box.
        let mut aad = [0u8; 64];
        let plain = &out[start + FRAME_LEN..fields_at];
        aad[..plain.len()].copy_from_slice(plain);
        sealer.seal_tail(&aad[..plain.len()], out, head);
    }
    let payload_len = out.len() - start - FRAME_LEN;
    let Ok(len) = u32::try_from(payload_len) else {
        out.truncate(start);
        return Err(format!("a log record of {payload_len} bytes is too large"));
    };
    let hash = xxh3_64(&out[start + FRAME_LEN..]);
    let len = len.to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&length_check(&len).to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&hash.to_le_bytes());
    Ok(())
}

/// Whether records of this kind have fields after their locators (what a sealed segment seals).
fn has_fields(kind: u8) -> bool {
    !matches!(kind, CLEAR_ALL | DESTROY)
}

#[cfg_attr(
    not(feature = "fuzzing"),
    allow(dead_code, reason = "only the `log_segment` fuzz target encodes owned entries")
)]
pub(crate) fn encode_owned(out: &mut Vec<u8>, entry: &Entry, sealer: Option<&Sealer>) -> Result<(), String> {
    let change = match &entry.change {
        Owned::Put { id, state } => Change::Put { id, state },
        Owned::Set { id, scope, key, value } => Change::Set { id, scope, key, value },
        Owned::Remove { id, scope, key } => Change::Remove { id, scope, key },
        Owned::Clear { id, scope } => Change::Clear { id, scope: scope.as_deref() },
        Owned::Rotate { old, new, userid, persistent } => {
            Change::Rotate { old, new, userid: *userid, persistent: *persistent }
        }
        Owned::Persist { id, persistent } => Change::Persist { id, persistent: *persistent },
        Owned::Destroy { id } => Change::Destroy { id },
    };
    encode(out, entry.lsn, entry.time_ms, &change, sealer)
}

/// Reads a payload field by field; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The segment's format version: how sessions are named.
    version: u32,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("payload too short")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64_at(self.take(8)?, 0))
    }
    fn id(&mut self) -> Result<Locator, String> {
        if self.version == V1 {
            // The whole id: random part, then tag.
            let b = self.take(24)?;
            return Ok(locator_of(b[..16].try_into().expect("16")));
        }
        Ok(self.take(LOCATOR_LEN)?.try_into().expect("LOCATOR_LEN"))
    }
    fn name(&mut self) -> Result<String, String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().expect("2")) as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "a name is not UTF-8".to_owned())
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let len = u32_at(self.take(4)?, 0) as usize;
        Ok(self.take(len)?.to_vec())
    }
    fn bool(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("{b} is not a boolean")),
        }
    }
}

fn decode_payload(payload: &[u8], version: u32, sealer: Option<&Sealer>) -> Result<Entry, String> {
    let mut c = Cursor { bytes: payload, at: 0, version };
    let lsn = c.u64()?;
    let time_ms = c.u64()?;
    let kind = c.u8()?;
    let (id, old) = match kind {
        ROTATE => {
            let old = c.id()?;
            (c.id()?, Some(old))
        }
        PUT | SET | REMOVE | CLEAR | CLEAR_ALL | PERSIST | DESTROY => (c.id()?, None),
        kind => return Err(format!("unknown record kind {kind}")),
    };
    let opened;
    let mut f = match sealer {
        Some(sealer) if has_fields(kind) => {
            opened = sealer.open(&payload[..c.at], &payload[c.at..]).map_err(|e| format!("its sealed fields {e}"))?;
            Cursor { bytes: &opened, at: 0, version }
        }
        _ => c,
    };
    let change = match kind {
        PUT => {
            let (state, used): (SessionState, usize) =
                wire::decode(&f.bytes[f.at..]).map_err(|e| format!("session does not decode: {e}"))?;
            f.at += used;
            Owned::Put { id, state }
        }
        SET => Owned::Set { id, scope: f.name()?, key: f.name()?, value: f.bytes()? },
        REMOVE => Owned::Remove { id, scope: f.name()?, key: f.name()? },
        CLEAR => Owned::Clear { id, scope: Some(f.name()?) },
        CLEAR_ALL => Owned::Clear { id, scope: None },
        ROTATE => Owned::Rotate { old: old.unwrap_or(id), new: id, userid: f.u64()?, persistent: f.bool()? },
        PERSIST => Owned::Persist { id, persistent: f.bool()? },
        _ => Owned::Destroy { id },
    };
    if f.at != f.bytes.len() {
        return Err("bytes left after the record".into());
    }
    Ok(Entry { lsn, time_ms, change })
}

/// The records of one segment file (header included), in order, each with its offset, and
/// where and why reading stopped early, if it did. Never panics, whatever the bytes.
pub(crate) fn read_segment(bytes: &[u8], sealer: &Sealer) -> (Option<SegmentHeader>, Vec<(u64, Entry)>, Option<Stop>) {
    let header = match SegmentHeader::parse(bytes) {
        Ok(h) => h,
        Err(stop) => return (None, Vec::new(), Some(stop)),
    };
    if header.key_id != 0 && !sealer.holds(header.key_id) {
        return (Some(header), Vec::new(), Some(Stop::ForeignKey));
    }
    let sealer = (header.key_id != 0).then_some(sealer);
    let version = u32_at(bytes, 8);
    let mut entries = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        match read_record(bytes, at, version, sealer) {
            Ok(Some((entry, next))) => {
                entries.push((at as u64, entry));
                at = next;
            }
            Ok(None) => break,
            Err(stop) => return (Some(header), entries, Some(stop)),
        }
    }
    (Some(header), entries, None)
}

/// The record at `at`, and where the next one begins; `Ok(None)`: only zeros from here on
/// (space the writer zeroed ahead of its records), the end.
fn read_record(bytes: &[u8], at: usize, version: u32, sealer: Option<&Sealer>) -> Result<Option<(Entry, usize)>, Stop> {
    let rest = &bytes[at..];
    // A real record is never 0 bytes long: zeros here are the end, if nothing else follows.
    if rest.len() >= 4 && rest[..4] == [0; 4] && rest.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    match check_record(rest) {
        Ok(end) => {
            let payload = &rest[FRAME_LEN..end];
            decode_payload(payload, version, sealer)
                .map(|entry| Some((entry, at + end)))
                .map_err(|why| bad_record(bytes, at, format!("record does not decode: {why}")))
        }
        Err(why) => Err(bad_record(bytes, at, why.into())),
    }
}

/// The end (relative to `rest`) of the framed record at its start, if its frame and checksum
/// hold.
fn check_record(rest: &[u8]) -> Result<usize, &'static str> {
    if rest.len() < FRAME_LEN {
        return Err("record frame incomplete");
    }
    let len_bytes: [u8; 4] = rest[0..4].try_into().expect("4");
    if length_check(&len_bytes) != u32_at(rest, 4) {
        return Err("record length damaged");
    }
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_PAYLOAD || FRAME_LEN + len > rest.len() {
        return Err("record longer than what follows");
    }
    if xxh3_64(&rest[FRAME_LEN..FRAME_LEN + len]) != u64_at(rest, 8) {
        return Err("record checksum mismatch");
    }
    Ok(FRAME_LEN + len)
}

/// A record at `at` that does not read: damage when a good record follows it somewhere (the
/// log went on after it), else a torn tail — a write a crash cut short, possibly followed by
/// zeros or, after a power cut, by garbage that never held a record.
fn bad_record(bytes: &[u8], at: usize, why: String) -> Stop {
    let offset = at as u64;
    let follows = (at + 1..bytes.len().saturating_sub(FRAME_LEN)).any(|p| check_record(&bytes[p..]).is_ok());
    if follows { Stop::Damaged { offset, why } } else { Stop::Torn { offset } }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, reason = "test segments are a few hundred bytes")]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;
    use crate::id::Keyring;

    fn ids() -> (Locator, Locator) {
        ([0xA1; LOCATOR_LEN], [0xB2; LOCATOR_LEN])
    }

    /// A version 1 record naming its session by the whole id, framed as version 1 wrote it.
    fn v1_record(out: &mut Vec<u8>, lsn: u64, kind: u8, id: &crate::SessionId, rest: &[u8]) {
        let mut payload = Vec::new();
        payload.extend_from_slice(&lsn.to_le_bytes());
        payload.extend_from_slice(&1_000u64.to_le_bytes());
        payload.push(kind);
        payload.extend_from_slice(id.random());
        payload.extend_from_slice(id.tag());
        payload.extend_from_slice(rest);
        let len = (payload.len() as u32).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&length_check(&len).to_le_bytes());
        out.extend_from_slice(&xxh3_64(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }

    #[test]
    fn version_1_segments_still_read_with_ids_turned_into_locators() {
        let ring = Keyring::from_secrets(b"log format test secret, long enough", &[]).unwrap();
        let (a, b) = (ring.generate(), ring.generate());
        let mut bytes = SegmentHeader { shard: 0, shards: 1, base: 3, key_id: 0 }.to_bytes().to_vec();
        bytes[8..12].copy_from_slice(&V1.to_le_bytes());
        let check = xxh3_64(&bytes[..32]);
        bytes[32..40].copy_from_slice(&check.to_le_bytes());
        let mut set = Vec::new();
        put_name(&mut set, "s");
        put_name(&mut set, "k");
        put_bytes(&mut set, b"1");
        v1_record(&mut bytes, 3, SET, &a, &set);
        let mut rotate = Vec::new();
        rotate.extend_from_slice(b.random());
        rotate.extend_from_slice(b.tag());
        rotate.extend_from_slice(&9u64.to_le_bytes());
        rotate.push(0);
        v1_record(&mut bytes, 4, ROTATE, &a, &rotate);
        let (header, entries, stop) = read_segment(&bytes, &sealer());
        assert_eq!((header.map(|h| h.base), stop), (Some(3), None));
        // Its writer placed sessions by id: start-up rewrites the layout (see snapshot::open).
        assert!(routed_by_id(&bytes));
        assert!(!routed_by_id(&segment().0));
        let changes: Vec<Owned> = entries.into_iter().map(|(_, e)| e.change).collect();
        assert_eq!(
            changes,
            [
                Owned::Set { id: *a.locator(), scope: "s".into(), key: "k".into(), value: b"1".to_vec() },
                Owned::Rotate { old: *a.locator(), new: *b.locator(), userid: 9, persistent: false },
            ]
        );
    }

    #[test]
    fn records_hold_no_id() {
        let ring = Keyring::from_secrets(b"log format test secret, long enough", &[]).unwrap();
        let id = ring.generate();
        let mut bytes = Vec::new();
        encode(&mut bytes, 1, 2, &Change::Set { id: id.locator(), scope: "s", key: "k", value: b"1" }, None).unwrap();
        for part in [&id.random()[..], &id.tag()[..], id.to_string().as_bytes()] {
            assert!(!bytes.windows(part.len()).any(|w| w == part), "the record holds part of the id");
        }
    }

    fn sealer() -> Sealer {
        Sealer::for_tests()
    }

    /// A sealed segment (the default) of every kind of record.
    fn segment() -> (Vec<u8>, Vec<Entry>) {
        segment_sealed(Some(&sealer()))
    }

    fn segment_sealed(sealing: Option<&Sealer>) -> (Vec<u8>, Vec<Entry>) {
        let (a, b) = ids();
        let mut state = SessionState::new(5);
        state.set("cart", "items", b"[1,2]", &LimitsConfig::default()).unwrap();
        let changes = [
            Change::Put { id: &a, state: &state },
            Change::Set { id: &a, scope: "s", key: "k", value: b"\"v\"" },
            Change::Remove { id: &a, scope: "s", key: "k" },
            Change::Clear { id: &a, scope: Some("cart") },
            Change::Clear { id: &a, scope: None },
            Change::Rotate { old: &a, new: &b, userid: 7, persistent: true },
            Change::Persist { id: &b, persistent: false },
            Change::Destroy { id: &b },
        ];
        let key_id = sealing.map_or(0, Sealer::key_id);
        let mut bytes = SegmentHeader { shard: 1, shards: 4, base: 10, key_id }.to_bytes().to_vec();
        for (i, c) in changes.iter().enumerate() {
            encode(&mut bytes, 10 + i as u64, 1_000 + i as u64, c, sealing).unwrap();
        }
        let (_, entries, stop) = read_segment(&bytes, &sealer());
        assert_eq!(stop, None);
        (bytes, entries.into_iter().map(|(_, e)| e).collect())
    }

    #[test]
    fn every_kind_round_trips() {
        let (bytes, entries) = segment();
        assert_eq!(entries.len(), 8);
        let Owned::Put { id: a, .. } = entries[0].change.clone() else { panic!("{:?}", entries[0]) };
        let Owned::Destroy { id: b } = entries[7].change.clone() else { panic!("{:?}", entries[7]) };
        assert_ne!(a, b);
        assert_eq!(entries[5].change, Owned::Rotate { old: a, new: b, userid: 7, persistent: true });
        assert_eq!(entries[3].change, Owned::Clear { id: a, scope: Some("cart".into()) });
        assert_eq!(entries[4].change, Owned::Clear { id: a, scope: None });
        assert_eq!((entries[7].lsn, entries[7].time_ms), (17, 1_007));
        let key_id = sealer().key_id();
        assert_eq!(SegmentHeader::parse(&bytes).unwrap(), SegmentHeader { shard: 1, shards: 4, base: 10, key_id });
    }

    #[test]
    fn plain_segments_still_read_and_sealed_ones_hold_no_name_value_or_user() {
        let (plain, entries) = segment_sealed(None);
        let (sealed, same) = segment();
        assert_eq!(entries, same);
        for canary in [&b"cart"[..], b"items", b"[1,2]", b"\"v\""] {
            assert!(plain.windows(canary.len()).any(|w| w == canary));
            assert!(!sealed.windows(canary.len()).any(|w| w == canary), "{canary:?} is plain in a sealed segment");
        }
        // Every kind with fields grew by one box; the two without did not.
        assert_eq!(sealed.len() - plain.len(), 6 * crate::seal::OVERHEAD);
    }

    /// A sealed record whose checksums were forged to match (tampering, not a flipped bit) does
    /// not open: damage, never other data.
    #[test]
    fn a_tampered_box_with_forged_checksums_is_damage() {
        let (bytes, entries) = segment();
        let (_, all, _) = read_segment(&bytes, &sealer());
        let at = all[1].0 as usize;
        let len = u32_at(&bytes, at) as usize;
        let mut bad = bytes.clone();
        // The last byte of the record's value box (its tag).
        bad[at + FRAME_LEN + len - 1] ^= 1;
        let hash = xxh3_64(&bad[at + FRAME_LEN..at + FRAME_LEN + len]);
        bad[at + 8..at + 16].copy_from_slice(&hash.to_le_bytes());
        let (_, got, stop) = read_segment(&bad, &sealer());
        assert_eq!(got.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), entries[..1]);
        assert!(
            matches!(stop, Some(Stop::Damaged { offset, ref why }) if offset == at as u64 && why.contains("authenticate")),
            "{stop:?}"
        );
    }

    #[test]
    fn a_segment_sealed_under_a_key_not_held_is_not_read_as_damage() {
        let (bytes, _) = segment();
        let other = Sealer::new(&Keyring::from_secrets(b"another secret, long enough to be one", &[]).unwrap(), true);
        assert_eq!(read_segment(&bytes, &other).2, Some(Stop::ForeignKey));
        let rotated = Keyring::from_secrets(
            b"another secret, long enough to be one",
            &[b"draco-session unit tests: a fixed secret"],
        );
        assert_eq!(read_segment(&bytes, &Sealer::new(&rotated.unwrap(), true)).1.len(), 8);
    }

    /// A crash can stop a write at any byte: every cut reads as the records before it and a
    /// torn tail at the record cut, never as damage.
    #[test]
    fn every_cut_is_a_torn_tail_keeping_what_came_before() {
        let (bytes, entries) = segment();
        let (_, all, _) = read_segment(&bytes, &sealer());
        let ends: Vec<usize> = all.iter().skip(1).map(|(o, _)| *o as usize).chain([bytes.len()]).collect();
        for cut in HEADER_LEN..bytes.len() {
            let (_, got, stop) = read_segment(&bytes[..cut], &sealer());
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(got.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), entries[..whole], "cut at {cut}");
            if cut == HEADER_LEN || ends.contains(&cut) {
                assert_eq!(stop, None, "cut at a record boundary {cut}");
            } else {
                assert!(matches!(stop, Some(Stop::Torn { .. })), "cut at {cut}: {stop:?}");
            }
        }
        for cut in 0..HEADER_LEN {
            assert_eq!(read_segment(&bytes[..cut], &sealer()).2, Some(Stop::Torn { offset: 0 }));
        }
    }

    /// A flipped bit anywhere is caught: in a middle record as damage at that record, in the
    /// last record as damage or a torn tail; the records before are kept either way.
    #[test]
    fn every_bit_flip_is_caught() {
        let (bytes, entries) = segment();
        let (_, all, _) = read_segment(&bytes, &sealer());
        let last = all.last().unwrap().0 as usize;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                let (header, got, stop) = read_segment(&bad, &sealer());
                if i < HEADER_LEN {
                    assert!(header.is_none() && matches!(stop, Some(Stop::Damaged { .. })), "byte {i} bit {bit}");
                    continue;
                }
                let hit = all.iter().rposition(|(o, _)| *o as usize <= i).unwrap();
                assert_eq!(got.len(), hit, "byte {i} bit {bit}");
                assert_eq!(got.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), entries[..hit]);
                match stop {
                    Some(Stop::Damaged { offset, .. }) => assert_eq!(offset, all[hit].0),
                    Some(Stop::Torn { offset }) => {
                        assert!(i >= last, "byte {i} bit {bit}: only the last record may read as torn");
                        assert_eq!(offset, all[hit].0);
                    }
                    None | Some(Stop::ForeignKey) => panic!("byte {i} bit {bit} not caught: {stop:?}"),
                }
            }
        }
    }

    /// Zeros after the records are the space the writer keeps ahead: the end, not damage. A
    /// record cut short before them, or garbage with no record after it, is a torn tail; a
    /// damaged record with a good one after it is damage.
    #[test]
    fn zeros_are_the_end_and_only_a_good_record_after_a_bad_one_makes_damage() {
        let (mut bytes, entries) = segment();
        let end = bytes.len();
        bytes.extend_from_slice(&[0u8; 100]);
        assert_eq!(read_segment(&bytes, &sealer()).1.len(), entries.len());
        assert_eq!(read_segment(&bytes, &sealer()).2, None);
        let mut garbage = bytes.clone();
        garbage[end + 50] = 1;
        assert_eq!(read_segment(&garbage, &sealer()).2, Some(Stop::Torn { offset: end as u64 }));
        // The last record cut short, then zeros (a power cut in zeroed space).
        let (_, all, _) = read_segment(&bytes, &sealer());
        let last = all.last().unwrap().0 as usize;
        let mut cut = bytes.clone();
        cut[last + 20..end].fill(0);
        assert_eq!(read_segment(&cut, &sealer()).2, Some(Stop::Torn { offset: last as u64 }));
        // A good record after the bad one: damage.
        let mut middle = bytes.clone();
        middle[all[2].0 as usize + 20] ^= 1;
        assert!(matches!(read_segment(&middle, &sealer()).2, Some(Stop::Damaged { offset, .. }) if offset == all[2].0));
    }
}
