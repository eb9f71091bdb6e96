//! Session data sealed at rest on Redis (`storage.encrypt`, on by default): what a session's
//! hash, the per-user index names and the event stream hold of its names, values and user,
//! and the migration of a session from one layout to another (plain ↔ sealed, or sealed under
//! a secret that is now a previous one).
//!
//! - **Values**: field `e ‖ S ‖ K` (25 bytes), `S` the first 8 bytes of a keyed BLAKE3 digest
//!   of the scope, `K` 16 bytes of one of the scope and key together, both under the *names
//!   key* (derived from the engine secret with a context of its own). The field holds the box
//!   (`crate::seal`) of `u16 scope len ‖ u16 key len ‖ scope ‖ key ‖ value`, bound to the field
//!   name: so `keys` recovers the names, `get` checks them (a box moved to another field, or
//!   two names whose digests met, is found), and what `limits.max_session_bytes` counts of a
//!   field is its stored length less [`SEALED_EXTRA`], which the scripts subtract. A scope's
//!   fields share the prefix `e ‖ S` (`clear`, `keys`).
//! - **User** `u`: `0` for a session nobody is logged into; else `# ‖ W ‖ box(user id)`, `W`
//!   the hex of a keyed digest of the user id (32 digits: a pseudonym, the same for every
//!   session of the user under one secret) and the box bound to it. The scripts compare `W`
//!   alone (`destroy` of one user's session, remember-me kept on a re-login); the caller opens
//!   the box. The per-user index is `<p>:u:{W}`.
//! - **Layout mark** `k`: the names key's id (8 hex digits) in a sealed session, absent in a
//!   plain one. Every script on a session's values is told the caller's layout and answers
//!   "stale" when the session is in another one; the caller then migrates it ([`Core::migrate`]:
//!   under the update lock, every field read, opened or parsed, and written again in its own
//!   layout, in one step) and runs the script again. A touch or remember-me switch migrates a
//!   session found in another layout after its answer. So a session written before sealing,
//!   with `storage.encrypt` off, or under a secret now in `session.previous_secrets`, is
//!   rewritten in the engine's layout on its next use; with `encrypt` off that layout is the
//!   plain one of earlier versions (`d<scope len>:<scope><key>` = the value, `u` the user id).
//! - **Events**: an entry's user id and device label are one box (`x`), bound to the entry's
//!   kind, session handle and time.
//!
//! A box that does not open (damaged, tampered with, sealed under a secret the engine does not
//! hold) is [`SessionError::Damaged`], logged, never read as data.

use crate::error::{Result, SessionError, Unavailable};
use crate::id::{Keyring, SessionId};
use crate::message::UpdateFn;
use crate::seal::{OVERHEAD, OpenError, Sealer};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::reply::Status;
use super::store::{Core, RedisStore};
use super::{keys, lock, scripts};

/// What a sealed value field's stored length has beyond the bytes `limits.max_session_bytes`
/// counts of it (its scope, key and value): the box and the two name lengths. `sizes.lua`
/// subtracts the same number.
pub(super) const SEALED_EXTRA: usize = OVERHEAD + 4;
/// Bytes of the scope digest in a value field.
const SCOPE_DIGEST: usize = 8;
/// Bytes of the scope-and-key digest in a value field.
const KEY_DIGEST: usize = 16;
/// Bytes of a user's pseudonym (hex in `u` and the index name).
const USER_DIGEST: usize = 16;
/// `#` and the pseudonym's hex: the part of a sealed `u` the scripts compare.
const WHO_LEN: usize = 1 + 2 * USER_DIGEST;

/// BLAKE3 context of the names key (derived from each keyring key).
const NAMES_CONTEXT: &str = "draco-session 2026-12 Redis field and index names, keyed digests";
/// BLAKE3 context of a names key's id (the layout mark `k`).
const NAMES_ID_CONTEXT: &str = "draco-session 2026-12 Redis field and index names, key id";

/// A value as a field holds it, opened: its scope, key and value.
pub(super) struct Entry {
    pub scope: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// How an engine writes and reads sealed data on Redis.
pub(super) struct Seal {
    sealer: Sealer,
    /// Each keyring key's names key and its id (hex), the current secret's first.
    names: Vec<(String, [u8; 32])>,
    /// `storage.encrypt`.
    seals: bool,
}

/// The error for data that does not open, logged with where it is.
pub(super) fn damaged(what: &str, why: impl std::fmt::Display) -> SessionError {
    log::error!("session data on Redis cannot be read: {what}: {why}");
    SessionError::Damaged(format!("{what}: {why}"))
}

fn digest<const N: usize>(key: &[u8; 32], parts: &[&[u8]]) -> [u8; N] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..N]);
    out
}

impl Seal {
    pub(super) fn new(ring: &Keyring, seals: bool) -> Self {
        let names = ring
            .root_keys()
            .map(|root| {
                let key = blake3::derive_key(NAMES_CONTEXT, root);
                let id = blake3::derive_key(NAMES_ID_CONTEXT, &key);
                (keys::hex(&id[..4]), key)
            })
            .collect();
        Self { sealer: Sealer::new(ring, seals), names, seals }
    }

    /// The layout this engine writes, as the scripts are told it: the names key's id, or `""`
    /// for the plain layout.
    pub(super) fn form(&self) -> &str {
        if self.seals { &self.names[0].0 } else { "" }
    }

    fn names_key(&self) -> &[u8; 32] {
        &self.names[0].1
    }

    fn scope_digest(key: &[u8; 32], scope: &str) -> [u8; SCOPE_DIGEST] {
        digest(key, &[b"scope", scope.as_bytes()])
    }

    /// The field of `scope`/`key` in this engine's layout.
    pub(super) fn field(&self, scope: &str, key: &str) -> Vec<u8> {
        if !self.seals {
            return keys::field(scope, key);
        }
        let names = self.names_key();
        let mut out = Vec::with_capacity(1 + SCOPE_DIGEST + KEY_DIGEST);
        out.push(b'e');
        out.extend_from_slice(&Self::scope_digest(names, scope));
        out.extend_from_slice(&digest::<KEY_DIGEST>(names, &[b"key", scope.as_bytes(), key.as_bytes()]));
        out
    }

    /// The prefix of every field of `scope`.
    pub(super) fn scope_prefix(&self, scope: &str) -> Vec<u8> {
        if !self.seals {
            return keys::scope_prefix(scope);
        }
        let mut out = vec![b'e'];
        out.extend_from_slice(&Self::scope_digest(self.names_key(), scope));
        out
    }

    /// The prefix of every value field.
    pub(super) fn all_scopes(&self) -> &'static [u8] {
        if self.seals { b"e" } else { keys::ALL_SCOPES }
    }

    /// What `field` (of `scope`/`key`, in this engine's layout) stores for `value`.
    pub(super) fn value(&self, field: &[u8], scope: &str, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        if field.first() != Some(&b'e') {
            return Ok(value.to_vec());
        }
        let (s, k) = (u16::try_from(scope.len()), u16::try_from(key.len()));
        let (Ok(s), Ok(k)) = (s, k) else {
            return Err(SessionError::internal("a scope or key name longer than 65535 bytes reached Redis"));
        };
        let mut out = Vec::with_capacity(SEALED_EXTRA + scope.len() + key.len() + value.len());
        let start = Sealer::reserve_head(&mut out);
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(scope.as_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(value);
        self.sealer.seal_tail(field, &mut out, start);
        Ok(out)
    }

    /// The value `field` stores, read back: it must name `scope`/`key`.
    pub(super) fn open_value(&self, field: &[u8], scope: &str, key: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
        if field.first() != Some(&b'e') {
            return Ok(stored);
        }
        let entry = self.open(field, &stored)?;
        if entry.scope != scope || entry.key != key {
            return Err(damaged("a value field", "its box names another scope or key"));
        }
        Ok(entry.value)
    }

    /// A value field and what it stores, in either layout, opened.
    pub(super) fn open(&self, field: &[u8], stored: &[u8]) -> Result<Entry> {
        match field.first() {
            Some(b'd') => plain_entry(field, stored).ok_or_else(|| damaged("a plain value field", "malformed name")),
            Some(b'e') => {
                let plain = self.sealer.open(field, stored).map_err(|e| damaged("a value field", e))?;
                sealed_entry(plain).ok_or_else(|| damaged("a value field", "malformed contents"))
            }
            _ => Err(damaged("a value field", "unknown layout")),
        }
    }

    /// `u` for `userid` in this engine's layout.
    pub(super) fn user(&self, userid: u64) -> Vec<u8> {
        if userid == 0 || !self.seals {
            return userid.to_string().into_bytes();
        }
        let mut out = self.who(&self.names[0].1, userid);
        let aad = out.clone();
        self.sealer.seal_into(&aad, &userid.to_le_bytes(), &mut out);
        out
    }

    /// `#` and `userid`'s pseudonym under names key `key`.
    fn who(&self, key: &[u8; 32], userid: u64) -> Vec<u8> {
        let mut out = vec![b'#'];
        out.extend_from_slice(keys::hex(&self.pseudonym(key, userid)).as_bytes());
        out
    }

    fn pseudonym(&self, key: &[u8; 32], userid: u64) -> [u8; USER_DIGEST] {
        digest(key, &[b"user", &userid.to_le_bytes()])
    }

    /// The user a stored `u` names, in either layout.
    pub(super) fn user_of(&self, stored: &[u8]) -> Result<u64> {
        if stored.first() == Some(&b'#') && stored.len() > WHO_LEN && Sealer::looks_sealed(&stored[WHO_LEN..]) {
            let (who, sealed) = stored.split_at(WHO_LEN);
            let plain = self.sealer.open(who, sealed).map_err(|e| damaged("a session's user", e))?;
            let bytes: [u8; 8] = plain.try_into().map_err(|_| damaged("a session's user", OpenError::Malformed))?;
            return Ok(u64::from_le_bytes(bytes));
        }
        std::str::from_utf8(stored)
            .ok()
            .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| damaged("a session's user", "neither a user id nor a sealed one"))
    }

    /// Every form a stored `u` of `userid` may be compared by: its id as text, and `#` with its
    /// pseudonym under each key.
    pub(super) fn whos(&self, userid: u64) -> Vec<Vec<u8>> {
        let mut out = vec![userid.to_string().into_bytes()];
        out.extend(self.names.iter().map(|(_, key)| self.who(key, userid)));
        out
    }

    /// The names, between the braces, of `userid`'s index: the one this engine adds to first,
    /// then those it still reads (written before the upgrade, with `encrypt` off, or under a
    /// previous secret).
    pub(super) fn index_names(&self, userid: u64) -> Vec<String> {
        let plain = userid.to_string();
        let sealed = self.names.iter().map(|(_, key)| keys::hex(&self.pseudonym(key, userid)));
        if self.seals { sealed.chain([plain]).collect() } else { [plain].into_iter().chain(sealed).collect() }
    }

    /// Whether a script's answer shows a session in another layout than this engine's: its
    /// layout mark, or its user in the other layout.
    pub(super) fn unsettled(&self, form: &[u8], user: Option<&[u8]>) -> bool {
        if form != self.form().as_bytes() {
            return true;
        }
        match user {
            Some(u) if u != b"0" => (u.first() == Some(&b'#')) != self.seals,
            _ => false,
        }
    }

    /// An event's user id and device label as one box bound to `aad`, when sealing.
    pub(super) fn event(&self, aad: &[u8], userid: u64, label: Option<&str>) -> Option<Vec<u8>> {
        self.sealer.sealing()?;
        let mut plain = userid.to_le_bytes().to_vec();
        if let Some(label) = label {
            plain.push(1);
            plain.extend_from_slice(label.as_bytes());
        }
        Some(self.sealer.seal(aad, &plain))
    }

    /// An event's box opened: the user id and device label; `None` when it does not open.
    pub(super) fn open_event(&self, aad: &[u8], sealed: &[u8]) -> Option<(u64, Option<String>)> {
        let plain = self.sealer.open(aad, sealed).ok()?;
        let userid = u64::from_le_bytes(plain.get(..8)?.try_into().ok()?);
        let label = match plain.get(8) {
            None => None,
            Some(1) => Some(String::from_utf8(plain[9..].to_vec()).ok()?),
            Some(_) => return None,
        };
        Some((userid, label))
    }
}

/// Increments of one sealed counter that wait for a batch (see [`RedisStore::queued_increment`]),
/// by session key and field: each one's amount and where its answer goes.
#[derive(Default)]
pub(super) struct Counters(Mutex<HashMap<Vec<u8>, Waiting>>);

/// The increments waiting on one counter.
type Waiting = Vec<(i64, oneshot::Sender<Result<i64>>)>;

/// What a migration deletes, and the (name, value) pairs it writes.
type Relayout = (Vec<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>);

impl RedisStore {
    /// A sealed counter's increment after its own try met another's (see `ops.rs`): joins the
    /// counter's queue on this instance, whose task (on the store's threads, so a caller that
    /// goes away never leaves a batch half answered) adds up whatever waits in one
    /// read-and-swap, each increment answered its own value in turn; a thousand concurrent
    /// increments are a few steps, not a thousand rounds of retries.
    pub(super) async fn queued_increment(&self, id: SessionId, scope: &str, key: &str, by: i64) -> Result<i64> {
        self.check_open()?;
        let core = self.core.clone();
        let mut slot = core.keys.session(&id).session.into_bytes();
        slot.push(0);
        slot.extend_from_slice(&core.seal.field(scope, key));
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut queues = core.counters.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match queues.get_mut(&slot) {
                Some(waiting) => {
                    waiting.push((by, tx));
                    false
                }
                None => {
                    queues.insert(slot.clone(), vec![(by, tx)]);
                    true
                }
            }
        };
        if first {
            let (scope, key) = (scope.to_owned(), key.to_owned());
            self.runtime.detach(async move { core.drain(id, &scope, &key, &slot).await });
        }
        rx.await.unwrap_or_else(|_| Err(Unavailable::EngineStopped.into()))
    }
}

impl Core {
    /// Runs the batches of one counter's queue until it is empty, then removes it.
    async fn drain(&self, id: SessionId, scope: &str, key: &str, slot: &[u8]) {
        loop {
            let batch = {
                let mut queues = self.counters.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let batch = queues.get_mut(slot).map(std::mem::take).unwrap_or_default();
                if batch.is_empty() {
                    queues.remove(slot);
                    return;
                }
                batch
            };
            let deltas: Vec<i64> = batch.iter().map(|(by, _)| *by).collect();
            let result = match self.swap_counter(id, scope, key, &deltas, SWAP_TRIES).await {
                Ok(Some(values)) => Ok(values),
                Ok(None) => self.locked_counter(id, scope, key, deltas).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(values) => {
                    for ((_, tx), n) in batch.into_iter().zip(values) {
                        let _ = tx.send(Ok(n));
                    }
                }
                Err(e) => {
                    for (_, tx) in batch {
                        let _ = tx.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// A counter's increments by `deltas`, in turn, under the update lock: each one's value.
    async fn locked_counter(&self, id: SessionId, scope: &str, key: &str, deltas: Vec<i64>) -> Result<Vec<i64>> {
        let values = Arc::new(Mutex::new(Vec::new()));
        let out = values.clone();
        let step: UpdateFn = Box::new(move |current| {
            let (_, sums) = sums(current, &deltas)?;
            let last = sums.last().copied().unwrap_or(0);
            *out.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = sums;
            Ok(Some(itoa::Buffer::new().format(last).as_bytes().to_vec()))
        });
        self.update(id, scope, key, step).await?;
        Ok(std::mem::take(&mut *values.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
    }

    /// A sealed counter's increments by `deltas`, in turn (see `ops.rs`): the value read (a
    /// use, whose answer carries the metadata), opened and added to here, and written by
    /// `swap.lua` only if the field still holds the box read; each increment's value. `None`
    /// when the field changed under each of `tries` tries.
    pub(super) async fn swap_counter(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        deltas: &[i64],
        tries: usize,
    ) -> Result<Option<Vec<i64>>> {
        let k = self.keys.session(&id);
        let field = self.seal.field(scope, key);
        let l = &self.limits;
        let (mut a, mut b, mut c) = Default::default();
        let max_keys = itoa::Buffer::format(&mut a, l.max_keys).as_bytes();
        let max_bytes = itoa::Buffer::format(&mut b, l.max_session_bytes).as_bytes();
        let max_anonymous = itoa::Buffer::format(&mut c, l.session_bytes_of(0)).as_bytes();
        for _ in 0..tries {
            let stored = self.exec(&scripts::GET, &k, "", &[&field]).await?.value();
            let current = stored.clone().map(|s| self.seal.open_value(&field, scope, key, s)).transpose()?;
            let (text, values) = sums(current.as_deref(), deltas)?;
            self.check_size(&text)?;
            let new = self.seal.value(&field, scope, key, &text)?;
            let args: [&[u8]; 6] =
                [&field, stored.as_deref().unwrap_or_default(), &new, max_keys, max_bytes, max_anonymous];
            if self.exec(&scripts::SWAP, &k, "", &args).await?.status() != Status::Changed {
                return Ok(Some(values));
            }
        }
        Ok(None)
    }

    /// Rewrites the session of keys `session` and `lock` in this engine's layout (see the
    /// module guide), under the update lock: every field read in one step, opened or parsed
    /// here, and written back in another step that first checks the lock is still this
    /// migration's. A box that does not open leaves the session as it was: the answer is
    /// [`SessionError::Damaged`].
    pub(super) async fn migrate(&self, session: &str, lock: &str) -> Result<()> {
        let keys = [session, lock];
        let token = lock::token();
        let lock_ms = lock::LOCK_MS.to_string();
        let r = match self.exec_any_keys(&scripts::LOCK_ALL, &keys, None, &token, &[lock_ms.as_bytes()], false).await {
            Ok(r) => r,
            Err(e) => {
                // Taken, but its answer's user did not open: released at once.
                if matches!(e, SessionError::Damaged(_)) {
                    self.unlock(&keys, &token).await;
                }
                return Err(e);
            }
        };
        let fields = r.pairs();
        let user = r.userid();
        let moved = fields
            .iter()
            .any(|(f, v)| f == b"u" && user != 0 && self.seal.unsettled(self.seal.form().as_bytes(), Some(v)));
        let deadline =
            fields.iter().find(|(f, _)| f == b"i").and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
        let (deleted, written) = match self.relayout(fields) {
            Ok(plan) => plan,
            Err(e) => {
                self.unlock(&keys, &token).await;
                return Err(e);
            }
        };
        // A logged-in session whose user was stored in another form moves to the index of this
        // engine's form: added to it before, taken out of the others after (see `index.rs`);
        // an index whose last entry goes is gone, and with it the name it had.
        let member = self.keys.of_session_key(session).map(|k| k.member).unwrap_or_default();
        let member = member.as_str();
        if moved {
            self.index(user, member, self.index_ttl_ms()).await?;
            if let Some(until) = deadline {
                self.keep_index(user, until).await;
            }
        }
        let n = deleted.len().to_string();
        let mut args: Vec<&[u8]> = vec![self.seal.form().as_bytes(), n.as_bytes()];
        args.extend(deleted.iter().map(Vec::as_slice));
        for (field, value) in &written {
            args.extend([field.as_slice(), value.as_slice()]);
        }
        self.exec_any_keys(&scripts::MIGRATE, &keys, None, &token, &args, false).await?;
        if moved {
            for name in self.seal.index_names(user).iter().skip(1) {
                let mut cmd = redis::cmd("SREM");
                cmd.arg(self.keys.user(name)).arg(member);
                if let Err(e) = self.link.query::<redis::Value>(&cmd).await {
                    log::debug!("session index update skipped: {e}");
                }
            }
        }
        log::debug!(
            "session {session} rewritten in the {} layout",
            if self.seal.form().is_empty() { "plain" } else { "sealed" }
        );
        Ok(())
    }

    /// Releases the lock of `keys` if `token` holds it; a failure leaves it to expire.
    async fn unlock(&self, keys: &[&str; 2], token: &str) {
        if let Err(e) = self.exec_any_keys(&scripts::UNLOCK, keys, None, token, &[], false).await {
            log::debug!("update lock left to expire: {e}");
        }
    }

    /// What a migration deletes and writes, from every field of the session.
    fn relayout(&self, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Relayout> {
        let (mut deleted, mut written) = (Vec::new(), Vec::new());
        for (field, stored) in fields {
            if field == b"u" {
                written.push((field, self.seal.user(self.seal.user_of(&stored)?)));
                continue;
            }
            // Metadata fields are one letter; values start with `d` (plain) or `e` (sealed).
            if field.len() < 2 || !matches!(field[0], b'd' | b'e') {
                continue;
            }
            let entry = self.seal.open(&field, &stored)?;
            let new = self.seal.field(&entry.scope, &entry.key);
            let value = self.seal.value(&new, &entry.scope, &entry.key, &entry.value)?;
            if new != field {
                deleted.push(field);
            }
            written.push((new, value));
        }
        Ok((deleted, written))
    }
}

/// Tries of a sealed counter's increment before it takes the next way (see `ops.rs`).
const SWAP_TRIES: usize = 4;

/// The counter `current` (JSON; absent = 0) after each of `deltas` in turn, saturating, and the
/// last as text: as the memory backend adds.
fn sums(current: Option<&[u8]>, deltas: &[i64]) -> Result<(Vec<u8>, Vec<i64>)> {
    let codec = |e: serde_json::Error| SessionError::WrongType(e.to_string());
    let mut n: i64 = current.map(serde_json::from_slice).transpose().map_err(codec)?.unwrap_or(0);
    let values: Vec<i64> = deltas
        .iter()
        .map(|by| {
            n = n.saturating_add(*by);
            n
        })
        .collect();
    Ok((itoa::Buffer::new().format(n).as_bytes().to_vec(), values))
}

/// A plain field `d<scope len>:<scope><key>` and its value.
fn plain_entry(field: &[u8], stored: &[u8]) -> Option<Entry> {
    let colon = field.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(field.get(1..colon)?).ok()?.parse().ok()?;
    let names = field.get(colon + 1..)?;
    let (scope, key) = (names.get(..len)?, names.get(len..)?);
    Some(Entry {
        scope: String::from_utf8(scope.to_vec()).ok()?,
        key: String::from_utf8(key.to_vec()).ok()?,
        value: stored.to_vec(),
    })
}

/// A sealed field's box opened: `u16 scope len ‖ u16 key len ‖ scope ‖ key ‖ value`.
fn sealed_entry(mut plain: Vec<u8>) -> Option<Entry> {
    let s = usize::from(u16::from_le_bytes(plain.get(..2)?.try_into().ok()?));
    let k = usize::from(u16::from_le_bytes(plain.get(2..4)?.try_into().ok()?));
    let scope = String::from_utf8(plain.get(4..4 + s)?.to_vec()).ok()?;
    let key = String::from_utf8(plain.get(4 + s..4 + s + k)?.to_vec()).ok()?;
    let value = plain.split_off(4 + s + k);
    Some(Entry { scope, key, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(secret: &[u8], previous: &[&[u8]]) -> Keyring {
        Keyring::from_secrets(secret, previous).unwrap()
    }

    const A: &[u8] = b"redis seal test secret A, 32 bytes or more";
    const B: &[u8] = b"redis seal test secret B, 32 bytes or more";

    #[test]
    fn values_round_trip_and_count_as_plain() {
        let seal = Seal::new(&ring(A, &[]), true);
        let field = seal.field("cart", "item");
        assert_eq!(field.len(), 1 + SCOPE_DIGEST + KEY_DIGEST);
        assert!(field.starts_with(&seal.scope_prefix("cart")));
        assert!(field.starts_with(seal.all_scopes()));
        assert_ne!(field, seal.field("car", "titem"));
        let stored = seal.value(&field, "cart", "item", b"\"canary\"").unwrap();
        // What the scripts count: scope, key and value, as the memory backend does.
        assert_eq!(stored.len() - SEALED_EXTRA, "cart".len() + "item".len() + b"\"canary\"".len());
        assert_eq!(SEALED_EXTRA, 53, "sizes.lua's SEALED");
        assert!(!stored.windows(6).any(|w| w == b"canary"));
        assert_eq!(seal.open_value(&field, "cart", "item", stored.clone()).unwrap(), b"\"canary\"");
        let entry = seal.open(&field, &stored).unwrap();
        assert_eq!((entry.scope.as_str(), entry.key.as_str()), ("cart", "item"));
        // Moved to another field, or read as another name: damage, never data.
        let other = seal.field("cart", "other");
        assert!(matches!(seal.open_value(&other, "cart", "other", stored.clone()), Err(SessionError::Damaged(_))));
        let mut bad = stored.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(seal.open_value(&field, "cart", "item", bad), Err(SessionError::Damaged(_))));
        // Plain fields of earlier versions still read.
        let plain = keys::field("cart", "item");
        let entry = seal.open(&plain, b"1").unwrap();
        assert_eq!((entry.scope.as_str(), entry.key.as_str(), entry.value.as_slice()), ("cart", "item", &b"1"[..]));
    }

    #[test]
    fn users_are_sealed_and_compared_by_pseudonym() {
        let seal = Seal::new(&ring(A, &[]), true);
        let u = seal.user(4242);
        assert!(!u.windows(4).any(|w| w == b"4242"));
        assert_eq!(seal.user_of(&u).unwrap(), 4242);
        assert_ne!(seal.user(4242), u, "a fresh nonce each time");
        assert_eq!(seal.user(4242)[..WHO_LEN], u[..WHO_LEN], "the same pseudonym");
        assert!(seal.whos(4242).contains(&u[..WHO_LEN].to_vec()));
        assert_eq!(seal.user_of(b"4242").unwrap(), 4242);
        assert_eq!(seal.user(0), b"0");
        assert_eq!(seal.index_names(4242)[0], std::str::from_utf8(&u[1..WHO_LEN]).unwrap());
        // A rotated secret still opens it, and compares it by its old pseudonym.
        let rotated = Seal::new(&ring(B, &[A]), true);
        assert_eq!(rotated.user_of(&u).unwrap(), 4242);
        assert!(rotated.whos(4242).contains(&u[..WHO_LEN].to_vec()));
        assert!(matches!(Seal::new(&ring(B, &[]), true).user_of(&u), Err(SessionError::Damaged(_))));
        let plain = Seal::new(&ring(A, &[]), false);
        assert_eq!(plain.user(7), b"7");
        assert_eq!(plain.field("a", "b"), keys::field("a", "b"));
        assert_eq!(plain.form(), "");
        assert!(plain.unsettled(seal.form().as_bytes(), None));
        assert!(seal.unsettled(b"", Some(b"0")));
        assert!(seal.unsettled(seal.form().as_bytes(), Some(b"7")));
        assert!(!seal.unsettled(seal.form().as_bytes(), Some(&u)));
    }

    #[test]
    fn events_open_with_their_place_only() {
        let seal = Seal::new(&ring(A, &[]), true);
        let sealed = seal.event(b"login h 1", 42, Some("Firefox")).unwrap();
        assert_eq!(seal.open_event(b"login h 1", &sealed), Some((42, Some("Firefox".into()))));
        assert_eq!(seal.open_event(b"login h 2", &sealed), None);
        assert!(Seal::new(&ring(A, &[]), false).event(b"", 1, None).is_none());
    }
}
