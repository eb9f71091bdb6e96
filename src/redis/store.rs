//! [`RedisStore`]: every session operation as one atomic Lua script on one session's keys (or
//! a few steps, for an update, a login and the per-user index), run through the store's
//! connection (`conn.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::conn::{IoRuntime, Link};
use super::keys::{self, SessionKeys};
use super::reply::Status;
use super::scripts;
use super::sealed::{Counters, Seal};
use crate::clock::Clock;
use crate::config::{Config, LimitsConfig};
use crate::error::{Result, SessionError, StartError, Unavailable};
use crate::events::{EventHub, EventKind};
use crate::id::{Keyring, SessionId};
use crate::message::SessionInfo;
use crate::redis_url::{redact_redis_url, scrub_redis_passwords};
use crate::state::Lifetimes;

/// The Redis backend of one engine.
pub(crate) struct RedisStore {
    // Field order is drop order: the runtime shuts down before the connections it drives go.
    pub(super) runtime: IoRuntime,
    pub(super) core: Arc<Core>,
}

/// What an operation running on the store's runtime needs.
pub(super) struct Core {
    pub(super) link: Link,
    pub(super) keyring: Keyring,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) lifetimes: Lifetimes,
    pub(super) limits: LimitsConfig,
    /// The names of its keys (`storage.redis_prefix`).
    pub(super) keys: keys::KeySpace,
    /// How it seals what it stores (`storage.encrypt`, see `sealed.rs`).
    pub(super) seal: Seal,
    /// Sealed counters' increments waiting for a batch (`sealed.rs`).
    pub(super) counters: Counters,
    /// `session.logout_clears_data`.
    logout_clears_data: bool,
    /// The server's URL as configured (with any password: never shown), for the event
    /// reader's own connection.
    pub(super) url: String,
    /// `events.redis_stream_len`: 0 writes no events.
    pub(super) stream_len: usize,
    /// The same as a script argument.
    pub(super) stream_len_arg: Vec<u8>,
    /// This instance's subscribers (see `events.rs`).
    pub(super) events: Arc<EventHub>,
    /// Whether the event reader runs.
    pub(super) reading: AtomicBool,
    pub(super) stopped: AtomicBool,
    pub(super) created: AtomicU64,
    pub(super) destroyed: AtomicU64,
    pub(super) operations: AtomicU64,
    pub(super) panics: AtomicU64,
    /// Whether sessions may remain under the key names of earlier versions (`keys.rs`): true
    /// until a scan at start finds none (one server; a cluster keeps looking).
    pub(super) legacy: AtomicBool,
}

/// Restores a session hash (`DUMP`ed from its earlier name) under `KEYS[1]` unless a session
/// is there already (another request moved it first). `ARGV[1]`: its remaining ms, 0 for none.
const ADOPT: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end \
redis.call('RESTORE', KEYS[1], ARGV[1], ARGV[2]) return 1";

impl RedisStore {
    /// Connects to `storage.redis_url` and checks the server answers (bounded, see
    /// `conn.rs`); with `storage.redis_cluster`, the URL lists seed nodes, comma-separated.
    pub(crate) async fn connect(
        config: &Config,
        keyring: Keyring,
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<Self, StartError> {
        let (url, cluster) = (config.storage.redis_url.as_str(), config.storage.redis_cluster);
        let events = &config.events;
        let shown = redact_redis_url(url);
        let (runtime, link) = Link::open(url, cluster, shown.clone()).await.map_err(|message| StartError::Backend {
            url: shown.clone(),
            message: scrub_redis_passwords(&message, url),
        })?;
        let kind = if cluster { "Redis Cluster" } else { "Redis" };
        log::info!("session engine: sessions live in {kind} at {shown}");
        let seal = Seal::new(&keyring, config.storage.encrypt);
        let core = Core {
            link,
            keyring,
            clock,
            lifetimes: Lifetimes::from_config(&config.session),
            limits: config.limits.clone(),
            keys: keys::KeySpace::new(&config.storage.redis_prefix),
            seal,
            counters: Counters::default(),
            logout_clears_data: config.session.logout_clears_data,
            url: url.to_owned(),
            stream_len: events.redis_stream_len,
            stream_len_arg: events.redis_stream_len.to_string().into_bytes(),
            events: EventHub::new(events.capacity),
            reading: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            created: AtomicU64::new(0),
            destroyed: AtomicU64::new(0),
            operations: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            legacy: AtomicBool::new(true),
        };
        let (runtime, core) = (runtime, Arc::new(core));
        if !cluster {
            let core = core.clone();
            runtime.detach(async move { core.look_for_legacy().await });
        }
        Ok(Self { runtime, core })
    }

    /// `Unavailable` once the engine is shut down.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.core.stopped.load(Ordering::Relaxed) {
            return Err(Unavailable::EngineStopped.into());
        }
        Ok(())
    }

    /// Runs `op` on the store's runtime and waits for it from whatever runtime the caller is on.
    pub(super) async fn run<T, F>(&self, counts: bool, op: impl FnOnce(Arc<Core>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.check_open()?;
        if counts {
            self.core.operations.fetch_add(1, Ordering::Relaxed);
        }
        self.runtime.spawn(op(self.core.clone())).await
    }

    /// As [`run`](Self::run) for an operation of one script (or a read and one script), but
    /// polled by the caller's own task, on its runtime's own connection when it has one (see
    /// [`IoRuntime::here`]).
    pub(super) async fn run_here<T, F>(&self, op: impl FnOnce(Arc<Core>) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        self.check_open()?;
        self.core.operations.fetch_add(1, Ordering::Relaxed);
        let local = self.core.link.local_use();
        self.runtime.here(local, op(self.core.clone())).await
    }

    /// Runs `op`, an operation on `id`, and answers `id`'s metadata as it was before `op` used
    /// it. When `op` is one script that answered "ok", its own reply carries that metadata, so
    /// the lookup costs nothing more; else (`id` gone, a limit refused the operation, an
    /// operation of several steps) `id` is looked up on its own after `op`. So `op` must change
    /// nothing but data and the last access, and after a successful `op` of several steps the
    /// last access answered is `op`'s own.
    pub(crate) fn looked_up<R, L: Future<Output = Result<SessionInfo>>>(
        &self,
        id: SessionId,
        op: impl Future<Output = Result<R>>,
        lookup: impl FnOnce() -> L,
    ) -> impl Future<Output = (Result<SessionInfo>, Result<R>)> {
        // `op` goes into the watching scope now: the future below holds it once.
        let watched = scripts::watching(op);
        async move {
            let (first, result) = watched.await;
            let info = match (first, &result) {
                (Some(metadata), _) => metadata.info_before(id),
                (None, Err(SessionError::SessionGone | SessionError::InvalidId)) => Err(SessionError::SessionGone),
                (None, _) => lookup().await,
            };
            (info, result)
        }
    }

    /// A new session whose counter `scope`/`key` is incremented once by `by`, in one step;
    /// `Ok(None)`: not done, use create and increment.
    pub(crate) async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        if by.unsigned_abs() >= 1 << 52 {
            return Ok(None);
        }
        self.run_here(move |c| async move { c.create_counter(scope, key, by).await }).await
    }

    /// Runs one operation (see `ops.rs`).
    pub(crate) fn run_op<M: super::OnRedis>(&self, msg: M) -> impl Future<Output = Result<M::Reply>> + Send {
        msg.run(self)
    }

    /// Redis persists by its own configuration: nothing to write.
    pub(crate) async fn snapshot(&self) -> Result<usize> {
        self.check_open().map(|()| 0)
    }

    /// Later calls answer `Unavailable`; the connection closes when the last handle drops.
    pub(crate) fn close(&self) {
        if !self.core.stopped.swap(true, Ordering::Relaxed) {
            log::info!("session engine stopped (Redis at {})", self.core.link.url());
        }
    }
}

impl Core {
    pub(super) fn check_size(&self, value: &[u8]) -> Result<()> {
        let limit = self.limits.max_value_bytes;
        if value.len() > limit {
            return Err(SessionError::ValueTooLarge { size: value.len(), limit });
        }
        Ok(())
    }

    /// The live-sessions cap for a creating script to check. One server: the script checks
    /// `DBSIZE` itself (no extra round trip). A cluster: `DBSIZE` summed over the primaries
    /// here, and the script checks nothing (`""`).
    async fn cap_arg(&self) -> Result<String> {
        let limit = self.limits.max_sessions;
        if !self.link.is_cluster() {
            return Ok(limit.to_string());
        }
        let size: usize = self.link.query(&redis::cmd("DBSIZE")).await?;
        if size >= limit {
            return Err(SessionError::Full { limit });
        }
        Ok(String::new())
    }

    /// `create` then `increment` by `by` of `scope`/`key`, as one script; `None` when the limits
    /// refuse the value (checked here, as the memory backend would): then it is left to those
    /// two steps, which report the error the same way as always.
    pub(super) async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<(SessionInfo, i64)>> {
        let value = itoa::Buffer::new().format(by).as_bytes().to_vec();
        // What `b` counts: the scope, the key, the value.
        let bytes = scope.len() + key.len() + value.len();
        let l = &self.limits;
        // A new session is anonymous: held to `max_anonymous_session_bytes`.
        if l.max_keys < 1 || value.len() > l.max_value_bytes || bytes > l.session_bytes_of(0) {
            return Ok(None);
        }
        let bytes = itoa::Buffer::new().format(bytes).as_bytes().to_vec();
        let field = self.seal.field(scope, key);
        let value = self.seal.value(&field, scope, key, &value)?;
        loop {
            let cap = self.cap_arg().await?;
            let new = self.keyring.generate();
            let k = self.keys.session(&new);
            let event = self.creation_event(&new);
            let mut args: Vec<&[u8]> = vec![cap.as_bytes(), &field, &value, &bytes];
            if let Some(handle) = &event {
                args.extend([self.stream_len_arg.as_slice(), handle]);
            }
            let (keys, n) = self.creation_keys(&k, event.is_some());
            let r = self.exec_keys(&scripts::CREATE_COUNTER, &keys[..n], "", &args).await?;
            match r.status() {
                Status::Exists => continue,
                _ => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    // Counted as the two operations it stands for.
                    self.operations.fetch_add(1, Ordering::Relaxed);
                    let info = r.new_session(new, &self.lifetimes)?;
                    if event.is_none() {
                        self.publish(EventKind::Created, 0, new.locator()).await;
                    }
                    return Ok(Some((info, by)));
                }
            }
        }
    }

    pub(super) async fn create(&self, id: Option<SessionId>) -> Result<SessionInfo> {
        loop {
            // The live-sessions cap counts every key of the database: see the module guide.
            let in_script = self.cap_arg().await?;
            let new = id.unwrap_or_else(|| self.keyring.generate());
            let k = self.keys.session(&new);
            let event = self.creation_event(&new);
            let (keys, n) = self.creation_keys(&k, event.is_some());
            let r = match &event {
                Some(handle) => {
                    let args: [&[u8]; 3] = [in_script.as_bytes(), &self.stream_len_arg, handle];
                    self.exec_keys(&scripts::CREATE, &keys[..n], "", &args).await?
                }
                None => self.exec_keys(&scripts::CREATE, &keys[..n], "", &[in_script.as_bytes()]).await?,
            };
            match r.status() {
                Status::Exists if id.is_some() => return Err(SessionError::InvalidId),
                Status::Exists => continue,
                _ => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    let info = r.new_session(new, &self.lifetimes)?;
                    if event.is_none() {
                        self.publish(EventKind::Created, 0, new.locator()).await;
                    }
                    return Ok(info);
                }
            }
        }
    }

    /// The new id enters the user's index before the rotation and the old one leaves it
    /// after, each in its own command (see `index.rs`); the index then lasts at least until
    /// the deadline the rotation records in the session (`i`).
    pub(super) async fn rotate(&self, id: SessionId, userid: u64) -> Result<SessionInfo> {
        let old = self.keys.session(&id);
        loop {
            let group = keys::group_of(id.locator());
            let new_id = self.keyring.generate_matching(|l| keys::group_of(l) == group);
            let new = self.keys.session(&new_id);
            let ttl = self.index_ttl_ms();
            // Taken before the index's expiry is set, so the index lasts at least until then.
            let until = self.clock.now_ms().saturating_add(ttl).to_string();
            if userid != 0 {
                self.index(userid, &new.member, ttl).await?;
            }
            let uid = self.seal.user(userid);
            let clear: &[u8] = if userid == 0 && self.logout_clears_data { b"1" } else { b"0" };
            let keys: [&str; 3] = [&old.session, &old.lock, &new.session];
            let whos = if userid == 0 { Vec::new() } else { self.seal.whos(userid) };
            let mut args: Vec<&[u8]> = vec![&uid, clear, until.as_bytes()];
            args.extend(whos.iter().map(Vec::as_slice));
            let result = self.exec_any_keys(&scripts::ROTATE, &keys, Some(&old), "", &args, false).await;
            let reply = match result {
                Ok(r) if r.status() == Status::Ok => r,
                other => {
                    if userid != 0 {
                        self.unindex(userid, &new.member).await;
                    }
                    match other {
                        Ok(_) => continue, // the new id is taken (never in practice): draw another
                        Err(e) => return Err(e),
                    }
                }
            };
            let previous = match reply.previous_user() {
                Some(stored) => self.seal.user_of(&stored)?,
                None => 0,
            };
            if previous != 0 {
                self.unindex(previous, &old.member).await;
            }
            let info = reply.info(new_id)?;
            let before = self.keyring.handle(id.locator());
            let event = if userid != 0 {
                // The label the web layer recorded before the login (see `state::DEVICE_SCOPE`).
                let label = self.device(&new).await.ok().and_then(|(label, _)| label);
                (EventKind::LoggedIn { label, previous: before }, userid)
            } else {
                (EventKind::LoggedOut { previous: before }, previous)
            };
            self.publish(event.0, event.1, new_id.locator()).await;
            return Ok(info);
        }
    }

    /// Deletes a session (only if it belongs to `only_user`, when given, stored in any form);
    /// whether it did.
    pub(super) async fn delete_session(&self, k: &SessionKeys, only_user: Option<u64>) -> Result<bool> {
        let whos = only_user.map(|u| self.seal.whos(u)).unwrap_or_else(|| vec![Vec::new()]);
        let args: Vec<&[u8]> = whos.iter().map(Vec::as_slice).collect();
        let mut r = self.exec_any(&scripts::DESTROY, k, "", &args, false).await?;
        if r.deleted_user().is_none() && self.adopt(k).await? {
            r = self.exec_any(&scripts::DESTROY, k, "", &args, false).await?;
        }
        let Some(userid) = r.deleted_user() else { return Ok(false) };
        self.destroyed.fetch_add(1, Ordering::Relaxed);
        if only_user.is_none() && userid != 0 {
            self.unindex(userid, &k.member).await;
        }
        // Ended for a user from elsewhere (revoke, log out everywhere), or destroyed by its own.
        let kind = if only_user.is_some() { EventKind::Revoked } else { EventKind::Destroyed };
        self.publish(kind, userid, &k.locator).await;
        Ok(true)
    }

    /// Moves the session `k` names from its earlier name, if it is there (see `keys.rs`):
    /// whether it did. Its hash moves whole (`DUMP`, `RESTORE`) with its expiry; its update
    /// lock is left to expire. Answers false at once when no earlier name is known or none
    /// remains.
    pub(super) async fn adopt(&self, k: &SessionKeys) -> Result<bool> {
        let Some(old) = k.legacy.as_deref() else { return Ok(false) };
        if !self.legacy.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let mut pipe = redis::pipe();
        pipe.cmd("DUMP").arg(&old.session).cmd("PTTL").arg(&old.session);
        let (dump, ttl): (Option<Vec<u8>>, i64) = self.link.query_pipeline(&pipe).await?;
        let Some(dump) = dump else { return Ok(false) };
        if ttl == -2 {
            return Ok(false);
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADOPT).arg(1).arg(&k.session).arg(ttl.max(0)).arg(dump);
        let moved: i64 = self.link.query(&cmd).await?;
        self.link.query::<i64>(redis::cmd("DEL").arg(&old.session)).await?;
        if moved == 1 {
            log::debug!("session moved from {} to {}", old.session, k.session);
        }
        Ok(true)
    }

    /// At start (one server): whether any session remains under the earlier key names; when
    /// none does, operations stop looking for them. A failure leaves them looking.
    async fn look_for_legacy(&self) {
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("MATCH").arg(self.keys.legacy_pattern()).arg("COUNT").arg(1000);
            match self.link.query::<(u64, Vec<String>)>(&cmd).await {
                Ok((_, found)) if !found.is_empty() => {
                    log::info!("sessions under earlier Redis key names found: each moves on its next use");
                    return;
                }
                Ok((0, _)) => {
                    self.legacy.store(false, Ordering::Relaxed);
                    return;
                }
                Ok((next, _)) => cursor = next,
                Err(e) => {
                    log::debug!("scan for earlier Redis key names stopped: {e}");
                    return;
                }
            }
        }
    }

    pub(super) async fn count_sessions(&self) -> Result<usize> {
        if self.link.is_cluster() {
            // SCAN walks one node: in a cluster, count every key of every primary instead.
            return self.link.query(&redis::cmd("DBSIZE")).await;
        }
        let mut cursor: u64 = 0;
        let mut count = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .link
                .query(
                    redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(self.keys.session_pattern()).arg("COUNT").arg(1000),
                )
                .await?;
            count += batch.len();
            if next == 0 {
                return Ok(count);
            }
            cursor = next;
        }
    }
}
