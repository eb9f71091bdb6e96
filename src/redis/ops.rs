//! Each typed message as one operation on Redis ([`OnRedis`]): the Redis backend's half of
//! every operation's definition (the message is in `crate::message`, the memory half in
//! `memory/ops.rs`). Most are one Lua script on one session's keys; an update, a login and
//! the per-user operations take a few steps (`lock.rs`, `index.rs`).

use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use super::keys;
use super::reply::Status;
use super::scripts;
use super::store::RedisStore;
use crate::error::{Result, SessionError};
use crate::events::EventKind;
use crate::id::SessionId;
use crate::message::op::Op;
use crate::message::*;

/// An operation on the Redis backend.
pub trait OnRedis: Op {
    /// Runs it through `store`'s connection.
    fn run(self, store: &RedisStore) -> impl Future<Output = Result<Self::Reply>> + Send;
}

/// Scripts add integers exactly only below 2^52 (Lua numbers are doubles).
const EXACT: u64 = 1 << 52;

impl OnRedis for Create {
    async fn run(self, store: &RedisStore) -> Result<SessionInfo> {
        store.run_here(move |c| async move { c.create(Some(self.id)).await }).await
    }
}

impl OnRedis for Get<'_> {
    async fn run(self, store: &RedisStore) -> Result<Option<Vec<u8>>> {
        let (id, scope, key) = (self.id, self.scope, self.key);
        store
            .run_here(move |c| async move {
                let field = c.seal.field(&scope, &key);
                let stored = c.exec(&scripts::GET, &c.keys.session(&id), "", &[&field]).await?.value();
                stored.map(|stored| c.seal.open_value(&field, &scope, &key, stored)).transpose()
            })
            .await
    }
}

impl OnRedis for Set<'_> {
    async fn run(self, store: &RedisStore) -> Result<()> {
        let (id, scope, key, value) = (self.id, self.scope, self.key, self.value);
        store
            .run_here(move |c| async move {
                c.check_size(&value)?;
                let field = c.seal.field(&scope, &key);
                let value = c.seal.value(&field, &scope, &key, &value)?;
                let l = &c.limits;
                let (max_keys, max_bytes, max_anonymous) =
                    (l.max_keys.to_string(), l.max_session_bytes.to_string(), l.session_bytes_of(0).to_string());
                let args: [&[u8]; 5] =
                    [&field, &value, max_keys.as_bytes(), max_bytes.as_bytes(), max_anonymous.as_bytes()];
                c.exec(&scripts::SET, &c.keys.session(&id), "", &args).await?;
                Ok(())
            })
            .await
    }
}

impl OnRedis for Remove<'_> {
    async fn run(self, store: &RedisStore) -> Result<bool> {
        let (id, scope, key) = (self.id, self.scope, self.key);
        store
            .run_here(move |c| async move {
                let field = c.seal.field(&scope, &key);
                Ok(c.exec(&scripts::REMOVE, &c.keys.session(&id), "", &[&field]).await?.removed())
            })
            .await
    }
}

impl OnRedis for Clear<'_> {
    async fn run(self, store: &RedisStore) -> Result<()> {
        let (id, scope) = (self.id, self.scope);
        store
            .run_here(move |c| async move {
                let prefix = scope.as_deref().map_or_else(|| c.seal.all_scopes().to_vec(), |s| c.seal.scope_prefix(s));
                c.exec(&scripts::CLEAR, &c.keys.session(&id), "", &[&prefix]).await?;
                Ok(())
            })
            .await
    }
}

impl OnRedis for Keys<'_> {
    async fn run(self, store: &RedisStore) -> Result<Vec<String>> {
        let (id, scope) = (self.id, self.scope);
        store
            .run_here(move |c| async move {
                let prefix = c.seal.scope_prefix(&scope);
                let r = c.exec(&scripts::KEYS, &c.keys.session(&id), "", &[&prefix]).await?;
                let mut names = if c.seal.form().is_empty() {
                    r.names()
                } else {
                    let mut names = Vec::new();
                    for (field, stored) in r.pairs() {
                        let entry = c.seal.open(&field, &stored)?;
                        // Another scope whose digest shares the prefix (2^-64): not this one's.
                        if entry.scope == *scope {
                            names.push(entry.key);
                        }
                    }
                    names
                };
                names.sort_unstable();
                Ok(names)
            })
            .await
    }
}

impl OnRedis for Update<'_> {
    /// Read-modify-write under the session's update lock (`lock.rs`): the step runs exactly
    /// once, between a read that takes the lock and a write that releases it. Writes by
    /// others wait for it.
    async fn run(self, store: &RedisStore) -> Result<Option<Vec<u8>>> {
        let (id, scope, key, step) = (self.id, self.scope.into_owned(), self.key.into_owned(), self.f);
        store.run(true, move |c| async move { c.update(id, &scope, &key, step).await }).await
    }
}

impl OnRedis for Increment<'_> {
    /// Plain layout: one script; a stored value or a sum beyond what the script adds exactly
    /// takes the update lock's read-modify-write instead. Sealed (Lua cannot add inside a
    /// box): the value read, added to here, and written by a script only if the field still
    /// holds the box read (boxes are never alike); when another increment came between, the
    /// counter's queue, which adds up concurrent increments in batches (`sealed.rs`).
    async fn run(self, store: &RedisStore) -> Result<i64> {
        let (id, scope, key, by) = (self.id, self.scope, self.key, self.by);
        let codec = |e: serde_json::Error| SessionError::WrongType(e.to_string());
        let sealed = !store.core.seal.form().is_empty();
        if sealed {
            // One try here; meeting another increment, the counter's queue (`sealed.rs`).
            let (s, k) = (&scope, &key);
            let n = store.run_here(move |c| async move { c.swap_counter(id, s, k, &[by], 1).await }).await?;
            if let Some(n) = n.and_then(|values| values.first().copied()) {
                return Ok(n);
            }
            return store.queued_increment(id, &scope, &key, by).await;
        } else if by.unsigned_abs() < EXACT {
            let field = keys::field(&scope, &key);
            let in_script = &field;
            let n = store
                .run_here(move |c| async move {
                    let (mut b, mut k, mut v, mut s, mut a) = Default::default();
                    let args: [&[u8]; 6] = [
                        in_script,
                        itoa::Buffer::format(&mut b, by).as_bytes(),
                        itoa::Buffer::format(&mut k, c.limits.max_keys).as_bytes(),
                        itoa::Buffer::format(&mut v, c.limits.max_value_bytes).as_bytes(),
                        itoa::Buffer::format(&mut s, c.limits.max_session_bytes).as_bytes(),
                        itoa::Buffer::format(&mut a, c.limits.session_bytes_of(0)).as_bytes(),
                    ];
                    let r = c.exec(&scripts::INCREMENT, &c.keys.session(&id), "", &args).await?;
                    if r.status() == Status::Fallback {
                        return Ok(None);
                    }
                    r.counter().map(Some)
                })
                .await?;
            if let Some(n) = n {
                return Ok(n);
            }
        }
        let step: UpdateFn = Box::new(move |current| {
            let n: i64 = current.map(serde_json::from_slice).transpose().map_err(codec)?.unwrap_or(0);
            Ok(Some(itoa::Buffer::new().format(n.saturating_add(by)).as_bytes().to_vec()))
        });
        let (scope, key) = (scope.into_owned(), key.into_owned());
        let stored = store.run(true, move |c| async move { c.update(id, &scope, &key, step).await }).await?;
        let stored = stored.ok_or_else(|| SessionError::internal("an increment stored no value"))?;
        serde_json::from_slice(&stored).map_err(codec)
    }
}

impl OnRedis for Login {
    async fn run(self, store: &RedisStore) -> Result<SessionInfo> {
        if self.userid == 0 {
            return Err(SessionError::InvalidUserId);
        }
        let (id, userid) = (self.id, self.userid);
        let login = store.run(true, move |c| async move { c.rotate(id, userid).await });
        // Under the user's lock when logins are limited: the limit's list (`Door`) then never
        // sees a login half done (in the index, not yet rotated), which it would take for a
        // stale entry and drop.
        if store.core.limits.max_sessions_per_user == 0 {
            return login.await;
        }
        store.exclusive_for_user(userid, login).await
    }
}

impl OnRedis for Logout {
    async fn run(self, store: &RedisStore) -> Result<SessionInfo> {
        store.run(true, move |c| async move { c.rotate(self.id, 0).await }).await
    }
}

impl OnRedis for SetPersistent {
    async fn run(self, store: &RedisStore) -> Result<SessionInfo> {
        let (id, persistent) = (self.id, self.persistent);
        store
            .run_here(move |c| async move {
                let flag: &[u8] = if persistent { b"1" } else { b"0" };
                let k = c.keys.session(&id);
                let info = c.exec_any(&scripts::SET_PERSISTENT, &k, "", &[flag], true).await?.info(id)?;
                c.publish(EventKind::RememberMe { on: persistent }, info.userid, id.locator()).await;
                Ok(info)
            })
            .await
    }
}

impl OnRedis for Info {
    async fn run(self, store: &RedisStore) -> Result<SessionInfo> {
        metadata(store, self.id, &scripts::INFO, false).await
    }
}

impl OnRedis for Touch {
    async fn run(self, store: &RedisStore) -> Result<SessionInfo> {
        metadata(store, self.id, &scripts::TOUCH, true).await
    }
}

/// The metadata of session `id` as `script` (a read, or a use that slides its expiry and
/// migrates a session in another layout: `use_`) answers it.
async fn metadata(
    store: &RedisStore,
    id: SessionId,
    script: &'static LazyLock<redis::Script>,
    use_: bool,
) -> Result<SessionInfo> {
    store
        .run_here(move |c| async move { c.exec_any(script, &c.keys.session(&id), "", &[], use_).await?.info(id) })
        .await
}

impl OnRedis for Destroy {
    async fn run(self, store: &RedisStore) -> Result<bool> {
        store.run(true, move |c| async move { c.delete_session(&c.keys.session(&self.id), None).await }).await
    }
}

impl OnRedis for LogoutUser {
    /// Every session in the user's index (`index.rs`), each deleted only while it is still
    /// that user's.
    async fn run(self, store: &RedisStore) -> Result<usize> {
        let userid = self.userid;
        store
            .run(false, move |c| async move {
                let members = c.members(userid).await?;
                let mut ended = 0;
                for member in &members {
                    if let Some(k) = c.keys.of_member(member)
                        && c.delete_session(&k, Some(userid)).await?
                    {
                        ended += 1;
                    }
                }
                if !members.is_empty() {
                    c.unindex(userid, &members).await;
                }
                Ok(ended)
            })
            .await
    }
}

impl OnRedis for EraseUser {
    /// The user's event-stream entries deleted first (their device labels and times; the
    /// "revoked" events of this erasure come after), then every session in the index, its
    /// lock key too, then the index itself.
    async fn run(self, store: &RedisStore) -> Result<usize> {
        let userid = self.userid;
        store
            .run(false, move |c| async move {
                c.forget_events(userid).await?;
                let mut ended = 0;
                for member in c.members(userid).await? {
                    let Some(k) = c.keys.of_member(&member) else { continue };
                    if c.delete_session(&k, Some(userid)).await? {
                        ended += 1;
                        c.link.query::<redis::Value>(redis::cmd("DEL").arg(&k.lock)).await?;
                    }
                }
                c.drop_index(userid).await?;
                Ok(ended)
            })
            .await
    }
}

impl OnRedis for Revoke {
    async fn run(self, store: &RedisStore) -> Result<bool> {
        let (userid, handle) = (self.userid, self.handle);
        store
            .run(false, move |c| async move {
                for member in c.members(userid).await? {
                    if let Some(k) = c.keys.of_member(&member)
                        && c.keyring.handle(&k.locator) == handle
                    {
                        let ended = c.delete_session(&k, Some(userid)).await?;
                        c.unindex(userid, &member).await;
                        return Ok(ended);
                    }
                }
                Ok(false)
            })
            .await
    }
}

impl OnRedis for SessionsOf {
    /// The user's index read through: each entry's metadata and device, stale entries
    /// (expired, rotated away, another user's now) dropped from the index on the way.
    async fn run(self, store: &RedisStore) -> Result<Vec<UserSession>> {
        let userid = self.userid;
        store
            .run(false, move |c| async move {
                let mut live = Vec::new();
                let mut stale = Vec::new();
                for member in c.members(userid).await? {
                    let Some(k) = c.keys.of_member(&member) else {
                        stale.push(member);
                        continue;
                    };
                    // The reply reads as a session's metadata under an id: the index holds none
                    // (and the answer none), so a placeholder stands in for it.
                    let id = SessionId::from_parts([0; 16], [0; 8]);
                    match c.exec_any(&scripts::INFO, &k, "", &[], false).await {
                        Ok(r) => match r.info(id) {
                            Ok(info) if info.userid == userid => {
                                let (label, ip) = c.device(&k).await?;
                                live.push(UserSession {
                                    handle: c.keyring.handle(&k.locator),
                                    userid,
                                    label,
                                    ip,
                                    persistent: info.persistent,
                                    created: info.created,
                                    last_access: info.last_access,
                                    expires: info.expires,
                                });
                            }
                            _ => stale.push(member),
                        },
                        Err(SessionError::SessionGone) => c.expired(userid, &member, &k.locator).await,
                        Err(e) => return Err(e),
                    }
                }
                if !stale.is_empty() {
                    c.unindex(userid, &stale).await;
                }
                live.sort_by_key(|s| std::cmp::Reverse(s.last_access));
                Ok(live)
            })
            .await
    }
}

impl OnRedis for Stats {
    /// One pseudo-shard: the session hashes found by `SCAN` (O(keys in the database)) and
    /// this instance's own counters.
    async fn run(self, store: &RedisStore) -> Result<EngineStats> {
        store
            .run(false, move |c| async move {
                let sessions = c.count_sessions().await?;
                let shard = ShardStats {
                    sessions,
                    created: c.created.load(Ordering::Relaxed),
                    destroyed: c.destroyed.load(Ordering::Relaxed),
                    operations: c.operations.load(Ordering::Relaxed),
                    panics: c.panics.load(Ordering::Relaxed),
                    ..ShardStats::default()
                };
                Ok(EngineStats { sessions, shards: vec![shard], log_fsyncs: 0 })
            })
            .await
    }
}

impl OnRedis for Sweep {
    /// Redis expires sessions on its own: nothing to sweep.
    async fn run(self, store: &RedisStore) -> Result<usize> {
        store.check_open().map(|()| 0)
    }
}
