//! [`Chunks`]: a session's entries, packed in chunks of at most 1 KiB.
//!
//! An entry is `[scope len u16][key len u16][value len u32][scope][key][value]`; entries follow
//! each other in a chunk. Sessions hold few, small keys, and a small buffer scanned linearly
//! beats a map of maps on memory (one allocation instead of three per key) and on speed at these
//! sizes. Small entries share a chunk of at most [`CHUNK_BYTES`] (1 KiB); an entry larger than
//! that has a chunk of its own. A write rebuilds only the chunk of its entry, so it copies at
//! most the new entry plus [`CHUNK_BYTES`], however large the rest of the session is; a write of
//! the same size is done in place.
//!
//! A session of one small entry (a counter, a flag: most of them) holds it inline, in the
//! record itself ([`Inline`]): no allocation at all. Its bytes are
//! `[scope len][key len][scope][key][value]`, one byte each for the lengths, and the default
//! scope ([`DEFAULT_SCOPE`]) takes no bytes: its length byte says it is that scope.
//!
//! Nothing here checks a limit: [`SessionState`](super::SessionState) does, before any write.

use crate::names::DEFAULT_SCOPE;

/// Bytes of an entry's header: the three lengths.
const ENTRY_HEADER: usize = 8;
/// What the allocator adds to each allocation, as the memory budget estimates it.
pub(super) const ALLOC_OVERHEAD: usize = 16;
/// Most bytes of packed entries sharing one chunk.
pub(super) const CHUNK_BYTES: usize = 1024;

#[cfg(test)]
thread_local! {
    /// Bytes of entries copied into rebuilt chunks on this thread, for the test that a write
    /// copies its own entry, not the session.
    pub(super) static COPIED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts `n` bytes of entries copied by a write (tests only).
#[cfg_attr(not(test), allow(unused_variables, reason = "counted in tests only"))]
fn copied(n: usize) {
    #[cfg(test)]
    COPIED.with(|c| c.set(c.get() + n));
}

/// Bytes of an entry held inline (see [`Inline`]): what fits beside the variant's tag and
/// length in the 24 bytes a boxed chunk takes anyway.
pub(super) const INLINE_BYTES: usize = 22;
/// An inline entry's scope length byte meaning [`DEFAULT_SCOPE`] (no name is this long inline).
const INLINE_DEFAULT_SCOPE: u8 = u8::MAX;

/// One small entry held in the session record itself:
/// `[scope len u8][key len u8][scope][key][value]`, the value running to `len`; a scope length
/// of [`INLINE_DEFAULT_SCOPE`] is the default scope, its name not stored.
#[derive(Debug, Clone, Copy)]
pub(super) struct Inline {
    len: u8,
    bytes: [u8; INLINE_BYTES],
}

impl Inline {
    /// The entry inline, if it fits.
    #[allow(clippy::cast_possible_truncation, reason = "every length is checked against INLINE_BYTES first")]
    fn new(scope: &[u8], key: &[u8], value: &[u8]) -> Option<Self> {
        let stored_scope: &[u8] = if scope == DEFAULT_SCOPE.as_bytes() { &[] } else { scope };
        let len = 2 + stored_scope.len() + key.len() + value.len();
        if len > INLINE_BYTES {
            return None;
        }
        let mut bytes = [0u8; INLINE_BYTES];
        bytes[0] = if stored_scope.len() < scope.len() { INLINE_DEFAULT_SCOPE } else { scope.len() as u8 };
        bytes[1] = key.len() as u8;
        let mut at = 2;
        for part in [stored_scope, key, value] {
            bytes[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Some(Self { len: len as u8, bytes })
    }

    /// Its entry; its range is `0..len` of chunk 0 (the value ends at `len`).
    fn entry(&self) -> Packed<'_> {
        let end = usize::from(self.len);
        let (scope, scope_at) = match self.bytes[0] {
            INLINE_DEFAULT_SCOPE => (DEFAULT_SCOPE.as_bytes(), 2),
            n => (&self.bytes[2..2 + usize::from(n)], 2 + usize::from(n)),
        };
        let key_at = scope_at;
        let value_at = key_at + usize::from(self.bytes[1]);
        Packed { scope, key: &self.bytes[key_at..value_at], value: &self.bytes[value_at..end], chunk: 0, start: 0, end }
    }

    /// The entry packed as a chunk of its own.
    fn to_chunk(self) -> Box<[u8]> {
        let e = self.entry();
        let mut out = Vec::with_capacity(entry_size(e.scope, e.key, e.value));
        push_entry(&mut out, e.scope, e.key, e.value);
        out.into_boxed_slice()
    }
}

/// The entries of a session: one small entry inline, or chunks. Most sessions with more fit
/// one chunk, held without a list around it: a list would cost each of them an allocation.
///
/// Invariant: no chunk is empty, and a chunk of two entries or more is at most
/// [`CHUNK_BYTES`] long. A lone entry that fits [`Inline`] is mostly held so, but need not be.
#[derive(Debug, Clone)]
pub(super) enum Chunks {
    Inline(Inline),
    One(Box<[u8]>),
    /// None (an empty session), or two and more.
    Many(Box<[Box<[u8]>]>),
}

impl Default for Chunks {
    fn default() -> Self {
        Self::Many(Box::default())
    }
}

/// One packed entry, borrowed from its chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packed<'a> {
    pub scope: &'a [u8],
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// Index of its chunk, and byte range of the whole entry in it.
    pub chunk: usize,
    pub start: usize,
    pub end: usize,
}

impl Packed<'_> {
    /// Its size as `limits.max_session_bytes` counts it: names and value.
    pub fn counted(&self) -> usize {
        self.scope.len() + self.key.len() + self.value.len()
    }
}

/// The entries of some chunks (or of an inline entry), in order.
pub(super) struct Iter<'a> {
    inline: Option<&'a Inline>,
    chunks: &'a [Box<[u8]>],
    chunk: usize,
    at: usize,
}

impl<'a> Iter<'a> {
    pub(super) fn new(chunks: &'a [Box<[u8]>]) -> Self {
        Self { inline: None, chunks, chunk: 0, at: 0 }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Packed<'a>;

    #[inline]
    fn next(&mut self) -> Option<Packed<'a>> {
        if let Some(inline) = self.inline.take() {
            return Some(inline.entry());
        }
        let mut d: &'a [u8] = self.chunks.get(self.chunk)?;
        while self.at >= d.len() {
            self.chunk += 1;
            self.at = 0;
            d = self.chunks.get(self.chunk)?;
        }
        let start = self.at;
        let header = d.get(start..start + ENTRY_HEADER)?;
        let scope_len = u16::from_le_bytes([header[0], header[1]]) as usize;
        let key_len = u16::from_le_bytes([header[2], header[3]]) as usize;
        let value_len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let scope_at = start + ENTRY_HEADER;
        let key_at = scope_at + scope_len;
        let value_at = key_at + key_len;
        let end = value_at + value_len;
        // Chunks are only ever built by `push_entry`, so this holds; stop rather than panic.
        let value = d.get(value_at..end)?;
        self.at = end;
        Some(Packed { scope: &d[scope_at..key_at], key: &d[key_at..value_at], value, chunk: self.chunk, start, end })
    }
}

/// The packed size of an entry.
pub(super) fn entry_size(scope: &[u8], key: &[u8], value: &[u8]) -> usize {
    ENTRY_HEADER + scope.len() + key.len() + value.len()
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "names are at most MAX_NAME_LEN bytes and values at most limits.max_value_bytes (64 MiB), checked before any write"
)]
fn push_entry(out: &mut Vec<u8>, scope: &[u8], key: &[u8], value: &[u8]) {
    copied(entry_size(scope, key, value));
    out.extend_from_slice(&(scope.len() as u16).to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(scope);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// `chunk` with its byte range `start..end` replaced by `replacement`.
fn spliced(chunk: &[u8], start: usize, end: usize, replacement: &[u8]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(chunk.len() - (end - start) + replacement.len());
    out.extend_from_slice(&chunk[..start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&chunk[end..]);
    copied(chunk.len() - (end - start));
    out.into_boxed_slice()
}

impl Chunks {
    fn from_vec(mut chunks: Vec<Box<[u8]>>) -> Self {
        match chunks.pop() {
            Some(one) if chunks.is_empty() => Self::one(one),
            Some(last) => {
                chunks.push(last);
                Self::Many(chunks.into_boxed_slice())
            }
            None => Self::default(),
        }
    }

    /// A single chunk: inline when it holds one entry that fits.
    fn one(chunk: Box<[u8]>) -> Self {
        if chunk.len() <= ENTRY_HEADER + INLINE_BYTES {
            let mut entries = Iter::new(std::slice::from_ref(&chunk));
            if let (Some(e), None) = (entries.next(), entries.next())
                && let Some(inline) = Inline::new(e.scope, e.key, e.value)
            {
                return Self::Inline(inline);
            }
        }
        Self::One(chunk)
    }

    /// Back inline if what is left is one chunk holding one entry that fits.
    fn settle(&mut self) {
        if let Self::One(chunk) = self
            && chunk.len() <= ENTRY_HEADER + INLINE_BYTES
        {
            *self = Self::one(std::mem::take(chunk));
        }
    }

    fn into_vec(self) -> Vec<Box<[u8]>> {
        match self {
            Self::Inline(inline) => vec![inline.to_chunk()],
            Self::One(one) => vec![one],
            Self::Many(many) => many.into_vec(),
        }
    }

    /// The chunks on the heap: none for an inline entry.
    pub(super) fn as_slice(&self) -> &[Box<[u8]>] {
        match self {
            Self::Inline(_) => &[],
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Box<[u8]>] {
        match self {
            Self::Inline(_) => &mut [],
            Self::One(one) => std::slice::from_mut(one),
            Self::Many(many) => many,
        }
    }

    /// Bytes of its allocations as `limits.max_memory` estimates them: each one's size plus
    /// [`ALLOC_OVERHEAD`]; none for an inline entry or an empty session. O(chunks), no entry
    /// read.
    pub(super) fn heap_bytes(&self) -> usize {
        let alloc = |n: usize| if n == 0 { 0 } else { n + ALLOC_OVERHEAD };
        match self {
            Self::Inline(_) => 0,
            Self::One(one) => alloc(one.len()),
            Self::Many(many) => {
                alloc(size_of_val::<[Box<[u8]>]>(many)) + many.iter().map(|c| alloc(c.len())).sum::<usize>()
            }
        }
    }

    /// Whether it holds no entry.
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Self::Many(many) if many.is_empty())
    }

    /// Moves an inline entry into a chunk of its own, so the chunk paths apply.
    fn spill(&mut self) {
        if let Self::Inline(inline) = self {
            *self = Self::One(inline.to_chunk());
        }
    }

    /// Entries in order, packed as writes in that order would pack them (small ones sharing
    /// chunks). The caller has checked every length.
    pub(super) fn pack<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8], &'a [u8])>) -> Self {
        let mut chunks: Vec<Box<[u8]>> = Vec::new();
        let mut small = Vec::new();
        for (scope, key, value) in entries {
            if !small.is_empty() && small.len() + entry_size(scope, key, value) > CHUNK_BYTES {
                chunks.push(std::mem::take(&mut small).into_boxed_slice());
            }
            push_entry(&mut small, scope, key, value);
        }
        if !small.is_empty() {
            chunks.push(small.into_boxed_slice());
        }
        Self::from_vec(chunks)
    }

    /// Every entry, in order.
    #[inline]
    pub(super) fn iter(&self) -> Iter<'_> {
        match self {
            Self::Inline(inline) => Iter { inline: Some(inline), chunks: &[], chunk: 0, at: 0 },
            _ => Iter::new(self.as_slice()),
        }
    }

    /// The entry of `scope`/`key`.
    pub(super) fn find(&self, scope: &str, key: &str) -> Option<Packed<'_>> {
        self.iter().find(|e| e.key == key.as_bytes() && e.scope == scope.as_bytes())
    }

    /// Overwrites the value ending at `end` of chunk `chunk` with one of the same length.
    pub(super) fn overwrite_value(&mut self, chunk: usize, end: usize, value: &[u8]) {
        match self {
            Self::Inline(inline) => inline.bytes[end - value.len()..end].copy_from_slice(value),
            _ => self.as_mut_slice()[chunk][end - value.len()..end].copy_from_slice(value),
        }
    }

    /// The chunks, with chunk `at` replaced by `with` (`None`: removed) and `push` added last.
    fn rechunk(&mut self, at: Option<(usize, Option<Box<[u8]>>)>, push: Option<Box<[u8]>>) {
        // Only the chunk pointers move: no entry is copied.
        let old = std::mem::take(self).into_vec();
        // Exactly the capacity needed: the box keeps this allocation as it is.
        let mut chunks = Vec::with_capacity(old.len() + usize::from(push.is_some()));
        for (j, chunk) in old.into_iter().enumerate() {
            match &at {
                Some((i, _)) if *i == j => {}
                _ => chunks.push(chunk),
            }
        }
        if let Some((i, Some(chunk))) = at {
            chunks.insert(i, chunk);
        }
        chunks.extend(push);
        *self = Self::from_vec(chunks);
    }

    /// Writes `scope`/`key` = `value`: over the entry at `found` (its chunk and byte range),
    /// or as a new entry.
    pub(super) fn write(&mut self, found: Option<(usize, usize, usize)>, scope: &str, key: &str, value: &[u8]) {
        // The session's only entry, or its first: inline when it fits.
        let lone = if found.is_some() { matches!(self, Self::Inline(_)) } else { self.is_empty() };
        if lone && let Some(inline) = Inline::new(scope.as_bytes(), key.as_bytes(), value) {
            *self = Self::Inline(inline);
            return;
        }
        // Else the chunk paths: an inline entry is then the one chunk, found whole.
        let found = match (found, &*self) {
            (Some(_), Self::Inline(inline)) => {
                let e = inline.entry();
                Some((0, 0, entry_size(e.scope, e.key, e.value)))
            }
            (found, _) => found,
        };
        self.spill();
        self.write_chunks(found, scope, key, value);
        self.settle();
    }

    fn write_chunks(&mut self, found: Option<(usize, usize, usize)>, scope: &str, key: &str, value: &[u8]) {
        let size = entry_size(scope.as_bytes(), key.as_bytes(), value);
        let mut entry = Vec::with_capacity(size);
        push_entry(&mut entry, scope.as_bytes(), key.as_bytes(), value);
        match found {
            Some((i, start, end)) => {
                let chunk = &self.as_slice()[i];
                if start == 0 && end == chunk.len() {
                    // Alone in its chunk: the new entry is the new chunk.
                    self.as_mut_slice()[i] = entry.into_boxed_slice();
                } else if chunk.len() - (end - start) + size <= CHUNK_BYTES {
                    let rebuilt = spliced(chunk, start, end, &entry);
                    self.as_mut_slice()[i] = rebuilt;
                } else {
                    // Too large to share the chunk any more: it moves to one of its own.
                    let rest = spliced(chunk, start, end, &[]);
                    self.rechunk(Some((i, Some(rest))), Some(entry.into_boxed_slice()));
                }
            }
            None => match self.as_mut_slice().last_mut() {
                Some(last) if last.len() + size <= CHUNK_BYTES => {
                    let end = last.len();
                    *last = spliced(last, end, end, &entry);
                }
                _ => self.rechunk(None, Some(entry.into_boxed_slice())),
            },
        }
    }

    /// Removes `scope`/`key`; whether it was there.
    pub(super) fn remove(&mut self, scope: &str, key: &str) -> bool {
        let Some((i, start, end)) = self.find(scope, key).map(|e| (e.chunk, e.start, e.end)) else { return false };
        if let Self::Inline(_) = self {
            *self = Self::default();
            return true;
        }
        let chunk = &self.as_slice()[i];
        if start == 0 && end == chunk.len() {
            self.rechunk(Some((i, None)), None);
        } else {
            let rest = spliced(chunk, start, end, &[]);
            self.as_mut_slice()[i] = rest;
        }
        self.settle();
        true
    }

    /// Removes every entry of `scope`.
    pub(super) fn clear_scope(&mut self, scope: &str) {
        if let Self::Inline(inline) = self {
            if inline.entry().scope == scope.as_bytes() {
                *self = Self::default();
            }
            return;
        }
        let all = self.as_slice();
        let mut chunks: Vec<Box<[u8]>> = Vec::with_capacity(all.len());
        for chunk in all {
            let entries = || Iter::new(std::slice::from_ref(chunk));
            if entries().all(|e| e.scope != scope.as_bytes()) {
                chunks.push(chunk.clone());
                continue;
            }
            let mut kept = Vec::new();
            for e in entries().filter(|e| e.scope != scope.as_bytes()) {
                kept.extend_from_slice(&chunk[e.start..e.end]);
            }
            if !kept.is_empty() {
                chunks.push(kept.into_boxed_slice());
            }
        }
        *self = Self::from_vec(chunks);
    }
}

#[cfg(test)]
mod tests {
    use super::super::SessionState;
    use super::*;
    use crate::config::LimitsConfig;

    /// A write copies its own entry (and at most one small chunk), never the rest of the
    /// session: changing a 1-byte value's size in a session holding 1 MiB copies as little
    /// as in an empty one.
    #[test]
    fn a_write_does_not_copy_the_whole_session() {
        let limits = LimitsConfig { max_value_bytes: 64 << 10, ..LimitsConfig::default() };
        let copies = |s: &mut SessionState, value: &[u8]| {
            COPIED.with(|c| c.set(0));
            s.set("stats", "n", value, &limits).unwrap();
            COPIED.with(std::cell::Cell::get)
        };
        let mut small = SessionState::new(0);
        small.set("stats", "n", b"9", &limits).unwrap();
        let mut big = SessionState::new(0);
        big.set("stats", "n", b"9", &limits).unwrap();
        for i in 0..15 {
            big.set("files", &format!("f{i}"), vec![b'x'; 64 << 10], &limits).unwrap();
        }
        big.set("stats", "m", b"1", &limits).unwrap();
        assert!(big.bytes() > 15 * (64 << 10));
        // At most one shared chunk and the entry: a few KiB, whatever the session holds.
        const BOUND: usize = 4096;
        // 9 -> 10: one byte more, so not the same-size path.
        let (in_small, in_big) = (copies(&mut small, b"10"), copies(&mut big, b"10"));
        assert!(in_big <= BOUND, "a 1-byte change copied {in_big} bytes of a 1 MiB session");
        assert!(in_small <= BOUND);
        // Adding and removing a small key: the same.
        COPIED.with(|c| c.set(0));
        big.set("stats", "k", b"1", &limits).unwrap();
        assert!(big.remove("stats", "k"));
        assert!(COPIED.with(std::cell::Cell::get) <= 2 * BOUND);
        // A big value's own write copies that value, once.
        COPIED.with(|c| c.set(0));
        big.set("files", "f3", vec![b'y'; 60 << 10], &limits).unwrap();
        assert!(COPIED.with(std::cell::Cell::get) <= (60 << 10) + BOUND);
        assert_eq!(big.get("stats", "n"), Some(&b"10"[..]));
        assert_eq!(big.get("files", "f3").map(<[u8]>::len), Some(60 << 10));
        assert_eq!(big.get("files", "f14").map(<[u8]>::len), Some(64 << 10));
        assert_eq!(big.len(), 17);
    }

    /// One small entry lives in the record itself, with no allocation: a counter in the
    /// default scope up to 13 digits, any scope's when names and value fit 20 bytes. Growing
    /// past that, or a second entry, moves it to a chunk; shrinking back brings it inline.
    #[test]
    fn a_lone_small_entry_is_inline_and_moves_out_and_back() {
        use crate::names::DEFAULT_SCOPE;
        let limits = LimitsConfig::default();
        let inline = |s: &SessionState| matches!(s.chunks, Chunks::Inline(_));
        let mut s = SessionState::new(0);
        s.set(DEFAULT_SCOPE, "counter", b"1", &limits).unwrap();
        assert!(inline(&s) && s.chunks.as_slice().is_empty() && !s.is_empty());
        assert_eq!(s.get(DEFAULT_SCOPE, "counter"), Some(&b"1"[..]));
        assert_eq!(s.keys(DEFAULT_SCOPE), ["counter"]);
        assert_eq!(s.bytes(), DEFAULT_SCOPE.len() + 8);
        s.set(DEFAULT_SCOPE, "counter", b"1234567890123", &limits).unwrap();
        assert!(inline(&s));
        s.set(DEFAULT_SCOPE, "counter", b"12345678901234", &limits).unwrap();
        assert!(!inline(&s));
        assert_eq!(s.get(DEFAULT_SCOPE, "counter"), Some(&b"12345678901234"[..]));
        s.set(DEFAULT_SCOPE, "counter", b"2", &limits).unwrap();
        assert!(inline(&s));
        // A named scope is stored: "cart" + "n" + 15 bytes is the most that fits.
        s.set("cart", "n", b"123456789012345", &limits).unwrap();
        assert!(!inline(&s));
        assert_eq!(s.len(), 2);
        assert!(s.remove(DEFAULT_SCOPE, "counter"));
        assert!(inline(&s));
        assert_eq!(s.get("cart", "n"), Some(&b"123456789012345"[..]));
        assert_eq!(s.get(DEFAULT_SCOPE, "counter"), None);
        s.set("cart", "n", b"1234567890123456", &limits).unwrap();
        assert!(!inline(&s));
        s.set("cart", "n", b"", &limits).unwrap();
        assert!(inline(&s));
        assert_eq!(s.get("cart", "n"), Some(&b""[..]));
        // Clearing another scope keeps it; its own scope, or removing it, empties the session.
        s.clear(Some(DEFAULT_SCOPE));
        assert_eq!(s.len(), 1);
        s.clear(Some("cart"));
        assert!(s.is_empty() && !inline(&s));
        s.set("a", "b", b"1", &limits).unwrap();
        assert!(s.remove("a", "b") && s.is_empty());
        assert!(!s.remove("a", "b"));
        // Read back from its entries (a snapshot, the log), a lone small entry is inline again,
        // and equal; so is the default scope's name spelled out as a stored scope would be.
        s.set(DEFAULT_SCOPE, "counter", b"77", &limits).unwrap();
        let back = SessionState::from_entries(0, false, 0, 0, [(DEFAULT_SCOPE, "counter", &b"77"[..])]).unwrap();
        assert!(inline(&back));
        assert_eq!(back, s);
        let two = SessionState::from_entries(0, false, 0, 0, [("a", "x", &b"1"[..]), ("a", "y", b"2")]).unwrap();
        assert!(!inline(&two));
        assert_eq!(two.get("a", "y"), Some(&b"2"[..]));
    }

    /// Entries that outgrow a shared chunk move to their own and back; what is stored, the
    /// order aside, never depends on how it is chunked, and a round trip keeps it.
    #[test]
    fn entries_move_between_chunks_and_keep_their_values() {
        let limits = LimitsConfig { max_value_bytes: 4096, ..LimitsConfig::default() };
        let mut s = SessionState::new(0);
        let mut model = std::collections::BTreeMap::new();
        for step in 0u32..400 {
            let key = format!("k{}", step % 13);
            let len = [0, 1, 7, 300, 900, 2000][(step as usize * 7) % 6];
            if step % 11 == 5 {
                assert_eq!(s.remove("s", &key), model.remove(&key).is_some());
            } else {
                let value = vec![b'a' + (step % 26) as u8; len];
                s.set("s", &key, &value, &limits).unwrap();
                model.insert(key, value);
            }
            for chunk in s.chunks.as_slice() {
                assert!(!chunk.is_empty());
                let entries = Iter::new(std::slice::from_ref(chunk)).count();
                assert!(entries == 1 || chunk.len() <= CHUNK_BYTES, "a shared chunk of {} bytes", chunk.len());
            }
        }
        for (key, value) in &model {
            assert_eq!(s.get("s", key), Some(&value[..]));
        }
        assert_eq!(s.len(), model.len());
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&s, config).unwrap();
        let (back, _): (SessionState, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(back, s);
        s.clear(Some("s"));
        assert!(s.is_empty());
    }
}
