//! The update lock: how [`RedisStore::update`](super::RedisStore::update) runs a caller's
//! closure on a session's value exactly once, with no other write landing between its read and
//! its write.
//!
//! # Protocol
//!
//! 1. `lock_read.lua` takes the session's lock (a key of its own in the session's slot, see
//!    `keys.rs`) by setting it to a fresh random token for [`LOCK_MS`], and reads the value.
//! 2. The closure runs, with no Redis command outstanding. A panic in it is contained
//!    (counted in the stats, answered as `Panicked`).
//! 3. `commit.lua` writes or removes the value and deletes the lock, in one step, only if the
//!    lock still holds this update's token; else it answers "lost" and writes nothing. When
//!    the closure fails (or its value is too large), `unlock.lua` releases the lock instead,
//!    under the same token check, and the closure's error is the answer.
//!
//! # Invariants
//!
//! - The closure runs at most once: "locked" is answered before it runs (and retried), "lost"
//!   after (never retried).
//! - Every script that writes an existing session (set, remove, clear, set_persistent,
//!   increment, rotate, and `lock_read.lua` itself) answers "locked" while another caller's
//!   token is in the lock; [`Backoff`] retries it for up to [`LOCK_WAIT`], then the answer is
//!   `Busy`. Reads, creation and destroy ignore the lock.
//! - The lock expires by itself: an update whose process dies, or whose unlock fails, holds up
//!   the session's writes for [`LOCK_MS`] at most. An update that outlives its lock writes
//!   nothing and is answered `Busy` (it may have overwritten a later writer's value otherwise).
//! - An update runs on the store's threads, not the caller's task, so a caller that goes away
//!   (a dropped request) does not stop it between lock and release; only the operation's
//!   time bound does, and the lock then expires by itself.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::RngExt as _;

use super::scripts;
use super::store::Core;
use crate::error::{Result, SessionError, Unavailable};
use crate::id::SessionId;
use crate::message::UpdateFn;

/// How long an `update` (or a migration, `sealed.rs`) may hold its session's lock (the closure
/// runs between read and write).
pub(super) const LOCK_MS: u64 = 2000;
/// How long a write waits for another caller's `update` to finish with the session.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// A fresh lock token.
pub(super) fn token() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

impl Core {
    /// Read-modify-write of `scope`/`key` of session `id` by `step`, under the protocol above.
    pub(super) async fn update(
        &self,
        id: SessionId,
        scope: &str,
        key: &str,
        step: UpdateFn,
    ) -> Result<Option<Vec<u8>>> {
        let k = self.keys.session(&id);
        let field = self.seal.field(scope, key);
        let token = token();
        let lock_ms = LOCK_MS.to_string();
        let r = self.exec(&scripts::LOCK_READ, &k, &token, &[&field, lock_ms.as_bytes()]).await?;
        let current = match r.value().map(|stored| self.seal.open_value(&field, scope, key, stored)).transpose() {
            Ok(current) => current,
            Err(e) => {
                if let Err(unlock) = self.exec_any(&scripts::UNLOCK, &k, &token, &[], false).await {
                    log::debug!("update lock left to expire: {unlock}");
                }
                return Err(e);
            }
        };
        let outcome = match catch_unwind(AssertUnwindSafe(|| step(current.as_deref()))) {
            Ok(Ok(new)) => match &new {
                Some(value) => self.check_size(value).map(|()| new),
                None => Ok(new),
            },
            Ok(Err(e)) => Err(e),
            Err(payload) => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                log::error!("session update panicked and was contained: {msg}");
                Err(SessionError::Panicked(msg))
            }
        };
        let new = match outcome {
            Ok(new) => new,
            Err(e) => {
                if let Err(unlock) = self.exec_any(&scripts::UNLOCK, &k, &token, &[], false).await {
                    log::debug!("update lock left to expire: {unlock}");
                }
                return Err(e);
            }
        };
        let stored = new.as_deref().map(|value| self.seal.value(&field, scope, key, value)).transpose()?;
        let l = &self.limits;
        let (max_keys, max_bytes, max_anonymous) =
            (l.max_keys.to_string(), l.max_session_bytes.to_string(), l.session_bytes_of(0).to_string());
        let (present, value): (&[u8], &[u8]) = match &stored {
            Some(v) => (b"1", v),
            None => (b"0", b""),
        };
        let args: [&[u8]; 6] =
            [&field, present, value, max_keys.as_bytes(), max_bytes.as_bytes(), max_anonymous.as_bytes()];
        self.exec(&scripts::COMMIT, &k, &token, &args).await?;
        Ok(new)
    }
}

/// Waiting out another caller's update: growing, jittered pauses until [`LOCK_WAIT`] is up.
pub(super) struct Backoff {
    deadline: Instant,
    pause: u64,
}

impl Backoff {
    /// Before the first attempt.
    pub(super) fn new() -> Self {
        Self { deadline: Instant::now() + LOCK_WAIT, pause: 1 }
    }

    /// After a "locked" answer: pauses before the next attempt, or `Busy` once the wait is up.
    pub(super) async fn wait(&mut self) -> Result<()> {
        if Instant::now() >= self.deadline {
            return Err(Unavailable::Busy { what: "another update holds the session" }.into());
        }
        let jitter = rand::rng().random_range(0..=self.pause);
        tokio::time::sleep(Duration::from_millis(self.pause + jitter)).await;
        self.pause = (self.pause * 2).min(8);
        Ok(())
    }
}

/// The answer to a "lost" reply: the update outlived its lock and wrote nothing.
pub(super) fn lost() -> SessionError {
    log::warn!("update took longer than its {LOCK_MS} ms lock on the session; nothing was written");
    Unavailable::Busy { what: "the update outlived its lock on the session" }.into()
}
