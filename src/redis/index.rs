//! The per-user index: `<storage.redis_prefix>:u:{<W>}`, the set of a user's session ids (each as
//! `keys::session(..).member`), so that `logout_user` and `sessions_of` find them without
//! scanning the database. `W` is the user's pseudonym (`sealed.rs`), or its id in the plain
//! layout. A login adds to the index this engine writes; the others a user may have (its id,
//! written before sealing or with `storage.encrypt` off; its pseudonym under a previous
//! secret) are read, cleaned and extended too, so a session logged in before an upgrade or a
//! secret rotation is still found.
//!
//! It lives in its own Redis Cluster slot, so no session script touches it: it is changed by
//! separate commands, ordered so that a failure in between leaves a stale entry (a session
//! gone, rotated away or now another user's), never a logged-in session missing from it.
//! Readers skip stale entries and remove them; removals are best effort.
//!
//! It lasts as long as any session in it: its expiry is only ever extended ([`EXTEND`]). A
//! login makes it last [`index_ttl_ms`](Core::index_ttl_ms) and records that deadline in the
//! session (field `i`); a use that slides a logged-in session's expiry past its `i` moves `i`
//! to that expiry and a day and asks for the index to last as long ([`Core::keep_index`], from
//! `scripts.rs`): a command of its own (the index is in another Cluster slot), about once a day
//! per session.

use redis::ToRedisArgs;

use super::keys;
use std::future::Future;
use std::time::Duration;

use super::store::{Core, RedisStore};
use crate::error::Result;

/// Extends `KEYS[1]`'s expiry to `ARGV[1]` ms from now, never shortening it; a key without
/// one (a new index) gets it, a missing key stays missing. Works before Redis 7 (no `GT`).
/// Sent with `EVAL`: a login and about one use a day per session run it.
const EXTEND: &str = "local t = redis.call('PTTL', KEYS[1]) \
if t == -2 or (t >= 0 and t >= tonumber(ARGV[1])) then return 0 end \
redis.call('PEXPIRE', KEYS[1], ARGV[1]) return 1";

/// How long a user's login lock lasts unless released (its list and ends take far less).
const LOGIN_LOCK_MS: u64 = 10_000;
/// How long a login waits for another's lock before it goes on without (a warning): within
/// the store's bound on one operation.
const LOGIN_WAIT: Duration = Duration::from_secs(2);
/// Deletes `KEYS[1]` if it still holds `ARGV[1]`.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

impl RedisStore {
    /// Runs `op` holding the lock of `userid`'s logins, `<p>:u:{W}:login` (`W` as the index's
    /// name): one instance at a time applies `limits.max_sessions_per_user` to the user (see
    /// `Door::keep_newest`). A lock not taken within [`LOGIN_WAIT`] (an instance that died
    /// holding it: it expires) or Redis failing lets `op` run without it, with a warning.
    pub(crate) async fn exclusive_for_user<T>(&self, userid: u64, op: impl Future<Output = T>) -> T {
        let key = format!("{}:login", self.core.keys.user(&self.core.seal.index_names(userid)[0]));
        let token = super::lock::token();
        let taken = {
            let (key, token) = (key.clone(), token.clone());
            self.run(false, move |c| async move { c.take_login_lock(&key, &token).await }).await
        };
        match &taken {
            Ok(true) => {}
            Ok(false) => log::warn!("user {userid}: another login held the user's lock for {LOGIN_WAIT:?}; going on"),
            Err(e) => log::warn!("user {userid}: the user's login lock not taken ({e}); going on"),
        }
        let out = op.await;
        if matches!(taken, Ok(true)) {
            let released = self
                .run(false, move |c| async move {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(RELEASE).arg(1).arg(&key).arg(&token);
                    c.link.query::<i64>(&cmd).await
                })
                .await;
            if let Err(e) = released {
                log::debug!("user {userid}: login lock left to expire: {e}");
            }
        }
        out
    }
}

impl Core {
    /// Takes `key` for `token` (`SET NX PX`), trying again with short pauses for at most
    /// [`LOGIN_WAIT`]: whether it did.
    async fn take_login_lock(&self, key: &str, token: &str) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + LOGIN_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(token).arg("NX").arg("PX").arg(LOGIN_LOCK_MS);
            if self.link.query::<Option<String>>(&cmd).await?.is_some() {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            let jitter = Duration::from_micros(rand::RngExt::random_range(&mut rand::rng(), 0..1000));
            tokio::time::sleep(pause + jitter).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The longest session lifetime and a minute: how long a login makes its user's index last.
    pub(super) fn index_ttl_ms(&self) -> u64 {
        self.lifetimes.persistent_ms.max(self.lifetimes.volatile_ms).saturating_add(60_000)
    }

    /// [`EXTEND`] on index `user`, to `ttl_ms` from now.
    fn extend(user: &str, ttl_ms: u64) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(EXTEND).arg(1).arg(user).arg(ttl_ms.max(1));
        cmd
    }

    /// Adds `member` to `userid`'s index, before the rotation that logs it in, and makes the
    /// index last at least `ttl_ms` more.
    pub(super) async fn index(&self, userid: u64, member: &str, ttl_ms: u64) -> Result<()> {
        let mut pipe = redis::pipe();
        self.index_into(&mut pipe, userid, member, ttl_ms);
        self.link.query_pipeline(&pipe).await
    }

    /// [`index`](Self::index)'s commands, added to `pipe` (answers ignored).
    pub(super) fn index_into(&self, pipe: &mut redis::Pipeline, userid: u64, member: &str, ttl_ms: u64) {
        let user = self.keys.user(&self.seal.index_names(userid)[0]);
        pipe.sadd(&user, member).ignore().add_command(Self::extend(&user, ttl_ms)).ignore();
    }

    /// Makes `userid`'s index last until `until` (ms, the engine's clock), as a script asked
    /// (see the module guide). A failure is logged: the session's `i` has moved on, so the
    /// index may expire before it (log-out-everywhere and the devices page then miss it).
    pub(super) async fn keep_index(&self, userid: u64, until: u64) {
        // Each of the user's indexes: a missing one stays missing.
        for name in self.seal.index_names(userid) {
            let cmd = Self::extend(&self.keys.user(&name), until.saturating_sub(self.clock.now_ms()));
            if let Err(e) = self.link.query::<redis::Value>(&cmd).await {
                log::warn!("session index of a user not extended: {e}");
            }
        }
    }

    /// Removes `members` (one or a list) from `userid`'s indexes. Failing does no harm, as
    /// readers tolerate stale entries.
    pub(super) async fn unindex(&self, userid: u64, members: &impl ToRedisArgs) {
        for name in self.seal.index_names(userid) {
            let mut cmd = redis::cmd("SREM");
            cmd.arg(self.keys.user(&name)).arg(members);
            if let Err(e) = self.link.query::<redis::Value>(&cmd).await {
                log::debug!("session index update skipped: {e}");
            }
        }
    }

    /// Deletes every index of `userid` (an erasure, once the sessions in them are gone).
    pub(super) async fn drop_index(&self, userid: u64) -> Result<()> {
        for name in self.seal.index_names(userid) {
            self.link.query::<redis::Value>(redis::cmd("DEL").arg(self.keys.user(&name))).await?;
        }
        Ok(())
    }

    /// The entries of every index of `userid`, each once.
    pub(super) async fn members(&self, userid: u64) -> Result<Vec<String>> {
        let mut all: Vec<String> = Vec::new();
        for name in self.seal.index_names(userid) {
            let members: Vec<String> = self.link.query(redis::cmd("SMEMBERS").arg(self.keys.user(&name))).await?;
            all.extend(members);
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    /// The session's device label and address (see `names::DEVICE_SCOPE`), in one command: in
    /// this engine's layout, else the plain one (a session not migrated yet; one sealed under
    /// a previous secret shows none until its next use migrates it).
    pub(super) async fn device(&self, k: &keys::SessionKeys) -> Result<(Option<String>, Option<String>)> {
        use crate::names::{DEVICE_SCOPE, IP_KEY, LABEL_KEY};
        let fields = [self.seal.field(DEVICE_SCOPE, LABEL_KEY), self.seal.field(DEVICE_SCOPE, IP_KEY)];
        let plain = [keys::field(DEVICE_SCOPE, LABEL_KEY), keys::field(DEVICE_SCOPE, IP_KEY)];
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&k.session).arg(&fields[0]).arg(&fields[1]).arg(&plain[0]).arg(&plain[1]);
        let values: Vec<Option<Vec<u8>>> = self.link.query(&cmd).await?;
        let text = |i: usize, key: &str| -> Result<Option<String>> {
            let (field, stored) = match (values.get(i).cloned().flatten(), values.get(i + 2).cloned().flatten()) {
                (Some(stored), _) => (&fields[i], stored),
                (None, Some(stored)) => (&plain[i], stored),
                (None, None) => return Ok(None),
            };
            let json = self.seal.open_value(field, DEVICE_SCOPE, key, stored)?;
            Ok(serde_json::from_slice(&json).ok())
        };
        Ok((text(0, LABEL_KEY)?, text(1, IP_KEY)?))
    }

    /// Drops the index entry of a session of `userid` Redis has expired, and reports the
    /// expiry: the instance whose `SREM` removed the entry does, so it is reported once.
    /// (A session that a failed login left in the index unused is reported so too.)
    pub(super) async fn expired(&self, userid: u64, member: &str, locator: &crate::id::Locator) {
        let mut removed = false;
        for name in self.seal.index_names(userid) {
            let mut cmd = redis::cmd("SREM");
            cmd.arg(self.keys.user(&name)).arg(member);
            match self.link.query::<u64>(&cmd).await {
                Ok(1) => removed = true,
                Ok(_) => {}
                Err(e) => log::debug!("session index update skipped: {e}"),
            }
        }
        if removed {
            self.publish(crate::events::EventKind::Expired, userid, locator).await;
        }
    }
}
