//! Whole sessions read from and written to Redis, for the `draco-session` command (`inspect`
//! and `migrate`; cargo feature `cli`): the same data as a data directory holds, keyed by the
//! same locator (`keys.rs`), so a session moves between the two and its cookie still opens it.
//!
//! - **Reading** walks the database with `SCAN` (one server; a Redis Cluster is refused) for
//!   this prefix's session hashes, under either key name, and opens each one: its user, times,
//!   remember-me flag and every value, in either layout.
//! - **Writing** replaces a session's hash whole in one script (`DEL`, `HSET` of its metadata
//!   and values in this engine's layout, `PEXPIRE` to what is left of its lifetime) and a
//!   logged-in one added to its user's index, which is made to last; a batch in one round
//!   trip. So writing the same sessions again gives the same data: an interrupted migration
//!   can be run again.

use std::sync::Arc;

use super::store::{Core, RedisStore};
use crate::error::{Result, SessionError};
use crate::id::Locator;
use crate::state::SessionState;

/// Replaces `KEYS[1]` with the hash `ARGV[2..]` (name, value, ...) expiring in `ARGV[1]` ms.
const REPLACE: &str = "redis.call('DEL', KEYS[1]) \
redis.call('HSET', KEYS[1], unpack(ARGV, 2)) \
redis.call('PEXPIRE', KEYS[1], ARGV[1]) return 1";

/// Session hashes read per `SCAN` step.
const PAGE: usize = 500;

/// A session read from Redis.
pub(crate) struct Exported {
    pub locator: Locator,
    pub state: SessionState,
}

impl RedisStore {
    /// One step of a walk over every session (start with cursor 0; the walk is over when the
    /// cursor answered is 0). A session that expires meanwhile is skipped; one whose data does
    /// not open is an error naming its key.
    pub(crate) async fn export_page(&self, cursor: u64) -> Result<(u64, Vec<Exported>)> {
        self.run(false, move |c| async move { c.export_page(cursor).await }).await
    }

    /// Writes `sessions` (each with what is left of its lifetime, in ms), replacing any session
    /// of the same locator.
    pub(crate) async fn import(&self, sessions: Vec<(Locator, SessionState, u64)>) -> Result<()> {
        self.run(false, move |c| async move { c.import(&sessions).await }).await
    }
}

impl Core {
    fn refuse_cluster(&self) -> Result<()> {
        if self.link.is_cluster() {
            return Err(SessionError::Unavailable(crate::error::Unavailable::Busy {
                what: "reading or writing every session of a Redis Cluster is not supported: migrate through one server",
            }));
        }
        Ok(())
    }

    async fn export_page(self: Arc<Self>, cursor: u64) -> Result<(u64, Vec<Exported>)> {
        self.refuse_cluster()?;
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor).arg("MATCH").arg(self.keys.session_pattern()).arg("COUNT").arg(PAGE);
        let (next, names): (u64, Vec<String>) = self.link.query(&scan).await?;
        if names.is_empty() {
            return Ok((next, Vec::new()));
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("HGETALL").arg(name);
        }
        let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = self.link.query_pipeline(&pipe).await?;
        let mut out = Vec::with_capacity(names.len());
        for (name, fields) in names.iter().zip(hashes) {
            let Some(k) = self.keys.of_session_key(name) else { continue };
            // Gone since the scan saw it.
            if fields.is_empty() {
                continue;
            }
            let state = self.decode(fields).map_err(|e| match e {
                SessionError::Damaged(why) => SessionError::Damaged(format!("{name}: {why}")),
                other => other,
            })?;
            out.push(Exported { locator: k.locator, state });
        }
        Ok((next, out))
    }

    /// A session's hash as a session: metadata, then every value opened.
    fn decode(&self, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<SessionState> {
        let bad = |what: &str| super::sealed::damaged("a session's metadata", what.to_owned());
        let (mut userid, mut persistent, mut created, mut access) = (None, false, None, None);
        let mut entries = Vec::new();
        let number = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|t| t.parse::<u64>().ok());
        for (field, stored) in fields {
            match field.as_slice() {
                b"u" => userid = Some(self.seal.user_of(&stored)?),
                b"p" => persistent = stored == b"1",
                b"c" => created = Some(number(&stored).ok_or_else(|| bad("created is not a time"))?),
                b"a" => access = Some(number(&stored).ok_or_else(|| bad("last access is not a time"))?),
                f if f.len() > 1 && matches!(f[0], b'd' | b'e') => entries.push(self.seal.open(f, &stored)?),
                _ => {}
            }
        }
        let (Some(userid), Some(created), Some(access)) = (userid, created, access) else {
            return Err(bad("a metadata field is missing"));
        };
        let named = entries.iter().map(|e| (e.scope.as_str(), e.key.as_str(), e.value.as_slice()));
        SessionState::from_entries(userid, persistent, created, access, named).map_err(bad)
    }

    async fn import(self: Arc<Self>, sessions: &[(Locator, SessionState, u64)]) -> Result<()> {
        self.refuse_cluster()?;
        let index_ttl = self.index_ttl_ms();
        let until = self.clock.now_ms().saturating_add(index_ttl).to_string();
        // Each session and, logged in, its index entry: one round trip for them all.
        let mut pipe = redis::pipe();
        for (locator, state, ttl_ms) in sessions {
            let k = self.keys.of_locator(locator);
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(REPLACE).arg(1).arg(&k.session).arg((*ttl_ms).max(1));
            self.fields(state, &until, &mut cmd)?;
            pipe.add_command(cmd).ignore();
            if state.userid != 0 {
                self.index_into(&mut pipe, state.userid, &k.member, index_ttl);
            }
        }
        self.link.query_pipeline::<()>(&pipe).await
    }

    /// Appends the hash of `state` in this engine's layout to `cmd`: metadata (`i`, for a
    /// logged-in session, `until`), the size `b` and every value.
    fn fields(&self, state: &SessionState, until: &str, cmd: &mut redis::Cmd) -> Result<()> {
        let mut bytes = 0;
        cmd.arg("u").arg(self.seal.user(state.userid));
        cmd.arg("p").arg(if state.persistent { "1" } else { "0" });
        cmd.arg("c").arg(state.created_ms).arg("a").arg(state.last_access_ms);
        if state.userid != 0 {
            cmd.arg("i").arg(until);
        }
        if !self.seal.form().is_empty() {
            cmd.arg("k").arg(self.seal.form());
        }
        for (scope, key, value) in state.entries() {
            let (scope, key) = (names(scope)?, names(key)?);
            bytes += scope.len() + key.len() + value.len();
            let field = self.seal.field(scope, key);
            let stored = self.seal.value(&field, scope, key, value)?;
            cmd.arg(field).arg(stored);
        }
        cmd.arg("b").arg(bytes);
        Ok(())
    }
}

/// A scope or key name as text (names are checked UTF-8 when written).
fn names(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|_| SessionError::Damaged("a name that is not UTF-8".into()))
}
