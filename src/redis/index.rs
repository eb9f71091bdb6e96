//! The per-user index: `<storage.redis_prefix>:u:{<userid>}`, the set of a user's session ids (each as
//! `keys::session(..).member`), so that `logout_user` and `sessions_of` find them without
//! scanning the database.
//!
//! It lives in its own Redis Cluster slot, so no session script touches it: it is changed by
//! separate commands, ordered so that a failure in between leaves a stale entry (a session
//! gone, rotated away or now another user's), never a logged-in session missing from it.
//! Readers skip stale entries and remove them; removals are best effort. Each login refreshes
//! its expiry to [`index_ttl_ms`](Core::index_ttl_ms).

use redis::ToRedisArgs;

use super::keys;
use super::store::Core;
use crate::error::Result;

impl Core {
    /// The longest session lifetime and a minute, counted from the user's latest login.
    fn index_ttl_ms(&self) -> u64 {
        self.lifetimes.persistent_ms.max(self.lifetimes.volatile_ms).saturating_add(60_000)
    }

    /// Adds `member` to `userid`'s index, before the rotation that logs it in.
    pub(super) async fn index(&self, userid: u64, member: &str) -> Result<()> {
        let user = self.keys.user(userid);
        let mut pipe = redis::pipe();
        pipe.sadd(&user, member)
            .ignore()
            .pexpire(&user, i64::try_from(self.index_ttl_ms()).unwrap_or(i64::MAX))
            .ignore();
        self.link.query_pipeline(&pipe).await
    }

    /// Removes `members` (one or a list) from `userid`'s index. Failing does no harm, as
    /// readers tolerate stale entries.
    pub(super) async fn unindex(&self, userid: u64, members: impl ToRedisArgs) {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(self.keys.user(userid)).arg(members);
        if let Err(e) = self.link.query::<redis::Value>(&cmd).await {
            log::debug!("session index update skipped: {e}");
        }
    }

    pub(super) async fn members(&self, userid: u64) -> Result<Vec<String>> {
        self.link.query(redis::cmd("SMEMBERS").arg(self.keys.user(userid))).await
    }

    /// The session's device label and address (see `names::DEVICE_SCOPE`), in one command.
    pub(super) async fn device(&self, random: &[u8; 16]) -> Result<(Option<String>, Option<String>)> {
        use crate::names::{DEVICE_SCOPE, IP_KEY, LABEL_KEY};
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.of_random(random).session)
            .arg(keys::field(DEVICE_SCOPE, LABEL_KEY))
            .arg(keys::field(DEVICE_SCOPE, IP_KEY));
        let values: Vec<Option<Vec<u8>>> = self.link.query(&cmd).await?;
        let text = |i: usize| values.get(i).cloned().flatten().and_then(|j| serde_json::from_slice(&j).ok());
        Ok((text(0), text(1)))
    }

    /// Drops the index entry of a session of `userid` Redis has expired, and reports the
    /// expiry: the instance whose `SREM` removed the entry does, so it is reported once.
    /// (A session that a failed login left in the index unused is reported so too.)
    pub(super) async fn expired(&self, userid: u64, member: &str, random: &[u8; 16]) {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(self.keys.user(userid)).arg(member);
        match self.link.query::<u64>(&cmd).await {
            Ok(1) => self.publish(crate::events::EventKind::Expired, userid, random).await,
            Ok(_) => {}
            Err(e) => log::debug!("session index update skipped: {e}"),
        }
    }
}
