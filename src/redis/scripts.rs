//! The Lua scripts that make each session operation one atomic step inside Redis, and
//! running one ([`Core::exec`]).
//!
//! Each script is `lua/<name>.lua`, whose opening comment says what it does and what it
//! answers, run after `lua/prelude.lua` (the helpers they share) and the helper files it names
//! (`load.lua`, `sizes.lua`, `values.lua`, `creating.lua`), concatenated at build time.
//!
//! Every script touches only keys of one session (its hash, its update lock, and for a
//! rotation the new hash), which share one hash tag and so one Redis Cluster slot. The
//! per-user index is updated by separate commands (see `index.rs`).
//!
//! Common arguments: `KEYS[1]` the session hash, `KEYS[2]` its update lock; `ARGV[1]` now
//! (ms, the engine's clock), `ARGV[2..4]` the volatile, persistent and absolute lifetimes (ms,
//! absolute 0 = none), `ARGV[5]` the caller's lock token (`""` = holds none), `ARGV[6..8]` the
//! times at or before which a session is gone (see [`Core::common_args`]). Op arguments follow
//! from `ARGV[9]`, and the caller's layout is always the last argument (`sealed.rs`: a script
//! on values answers "stale" for a session in another layout, which the caller migrates before
//! running it again). Answers are read by `reply.rs`; each ends with the user-index deadline the
//! script asks for (see `slide` in `lua/prelude.lua`), which [`Core::exec_keys`] ensures.

use std::cell::RefCell;
use std::sync::LazyLock;

use redis::{Cmd, Script};

use super::keys::SessionKeys;
use super::lock::{self, Backoff};
use super::reply::{Metadata, Reply, Status};
use super::store::Core;
use crate::error::{Result, SessionError, Unavailable};

/// A script: `lua/prelude.lua`, then the helper files it names and its own file, run as a
/// function whose answer gets one more item: the prelude's `index` (false when nil), read by
/// [`Reply::parse`].
macro_rules! script {
    ($(#[$doc:meta])* $name:ident = $($file:literal),+) => {
        $(#[$doc])*
        pub(crate) static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                "local answer = (function()\n",
                $(include_str!(concat!("lua/", $file)),)+
                "\nend)()\nanswer[#answer + 1] = index or false\nreturn answer\n"
            ))
        });
    };
}

script!(
    /// A new anonymous session.
    CREATE = "creating.lua", "create.lua"
);
script!(
    /// A new anonymous session holding a counter's first value.
    CREATE_COUNTER = "creating.lua", "create_counter.lua"
);
script!(
    /// A value.
    GET = "load.lua", "get.lua"
);
script!(
    /// Writes a value.
    SET = "load.lua", "sizes.lua", "values.lua", "set.lua"
);
script!(
    /// Removes a value.
    REMOVE = "load.lua", "sizes.lua", "values.lua", "remove.lua"
);
script!(
    /// Removes a scope's values, or all.
    CLEAR = "load.lua", "sizes.lua", "values.lua", "clear.lua"
);
script!(
    /// The keys of a scope.
    KEYS = "load.lua", "keys.lua"
);
script!(
    /// The metadata; not a use.
    INFO = "load.lua", "info.lua"
);
script!(
    /// A use: slides the expiry.
    TOUCH = "load.lua", "touch.lua"
);
script!(
    /// Remember-me on or off.
    SET_PERSISTENT = "load.lua", "set_persistent.lua"
);
script!(
    /// Login/logout: the session moves to a new id of the same slot group.
    ROTATE = "load.lua", "rotate.lua"
);
script!(
    /// Deletes the session.
    DESTROY = "destroy.lua"
);
script!(
    /// Integer increment of a value.
    INCREMENT = "load.lua", "sizes.lua", "increment.lua"
);
script!(
    /// Update, step 1: takes the update lock and reads the value (see `lock.rs`).
    LOCK_READ = "load.lua", "lock_read.lua"
);
script!(
    /// Update, step 2: writes the value and releases the lock (see `lock.rs`).
    COMMIT = "load.lua", "sizes.lua", "values.lua", "commit.lua"
);
script!(
    /// Update abandoned: releases the lock (see `lock.rs`).
    UNLOCK = "unlock.lua"
);
script!(
    /// A sealed counter's increment: writes the value only if the field still holds what the
    /// caller read (see `ops.rs`).
    SWAP = "load.lua", "sizes.lua", "values.lua", "swap.lua"
);
script!(
    /// Migration, step 1: takes the update lock and reads every field (see `sealed.rs`).
    LOCK_ALL = "load.lua", "lock_all.lua"
);
script!(
    /// Migration, step 2: writes the session in the caller's layout and releases the lock.
    MIGRATE = "load.lua", "migrate.lua"
);

tokio::task_local! {
    /// Set around an operation by [`watching`]: the metadata of the first "ok" answer of a
    /// script run while it is polled.
    static LOOKUP: RefCell<Option<Metadata>>;
}

/// Runs `op`, keeping the metadata of the first "ok" answer of a script it runs. Not an
/// `async fn`, so `op` is held once, inside the scope (see `engine/store.rs`).
pub(super) fn watching<R>(op: impl Future<Output = R>) -> impl Future<Output = (Option<Metadata>, R)> {
    LOOKUP.scope(RefCell::new(None), async {
        let result = op.await;
        (LOOKUP.with(|first| first.borrow_mut().take()), result)
    })
}

impl Core {
    /// Adds `ARGV[1..8]` to `cmd`: now, the three lifetimes, the lock token, and the times at or
    /// before which a session is gone: its last access, volatile (now - volatile lifetime) or
    /// persistent, and its creation (now - absolute lifetime); `""` when there is no such time
    /// (before the clock's start, or no absolute lifetime).
    fn common_args(&self, cmd: &mut Cmd, token: &str) {
        fn time(cmd: &mut Cmd, ms: Option<u64>) {
            match ms {
                Some(ms) => cmd.arg(itoa::Buffer::new().format(ms)),
                None => cmd.arg(""),
            };
        }
        let l = &self.lifetimes;
        let now = self.clock.now_ms();
        for ms in [now, l.volatile_ms, l.persistent_ms, l.absolute_ms] {
            time(cmd, Some(ms));
        }
        cmd.arg(token);
        time(cmd, now.checked_sub(l.volatile_ms));
        time(cmd, now.checked_sub(l.persistent_ms));
        time(cmd, if l.absolute_ms == 0 { None } else { now.checked_sub(l.absolute_ms) });
    }

    /// Runs `script` on one session in this engine's layout; waits out another caller's update
    /// lock; migrates a session found in another layout first (`sealed.rs`); maps the statuses
    /// every script shares to errors, so only "ok", "done", "new", "exists", "fallback" and
    /// "changed" come back.
    pub(super) async fn exec(&self, script: &Script, k: &SessionKeys, token: &str, args: &[&[u8]]) -> Result<Reply> {
        self.run_script(script, &[&k.session, &k.lock], Some(k), token, args, false, false).await
    }

    /// As [`exec`](Self::exec), on `keys` (the session's, then any more the script takes).
    pub(super) async fn exec_keys(&self, script: &Script, keys: &[&str], token: &str, args: &[&[u8]]) -> Result<Reply> {
        self.run_script(script, keys, None, token, args, false, false).await
    }

    /// As [`exec`](Self::exec), for a script that works on a session in any layout (metadata,
    /// rotation, deletion, the lock and migration's own steps); with `settle`, a session its
    /// answer shows in another layout is migrated after it (a failure is logged: the answer
    /// stands).
    pub(super) async fn exec_any(
        &self,
        script: &Script,
        k: &SessionKeys,
        token: &str,
        args: &[&[u8]],
        settle: bool,
    ) -> Result<Reply> {
        self.run_script(script, &[&k.session, &k.lock], Some(k), token, args, true, settle).await
    }

    /// As [`exec_any`](Self::exec_any), on `keys` (the session's, then any more the script
    /// takes); `k`, when given, names the session's keys, so one found only under its earlier
    /// name is moved first (`keys.rs`).
    pub(super) async fn exec_any_keys(
        &self,
        script: &Script,
        keys: &[&str],
        k: Option<&SessionKeys>,
        token: &str,
        args: &[&[u8]],
        settle: bool,
    ) -> Result<Reply> {
        self.run_script(script, keys, k, token, args, true, settle).await
    }

    #[allow(clippy::too_many_arguments, reason = "the forms above, in one place")]
    async fn run_script(
        &self,
        script: &Script,
        keys: &[&str],
        k: Option<&SessionKeys>,
        token: &str,
        args: &[&[u8]],
        any: bool,
        settle: bool,
    ) -> Result<Reply> {
        let form = if any { "*" } else { self.seal.form() };
        let mut backoff = Backoff::new();
        let mut migrations = 0;
        let mut adopted = false;
        loop {
            // EVALSHA built here, in one buffer (a `ScriptInvocation` copies every argument
            // twice); `Link::invoke` loads the script when Redis does not have it.
            let size = keys.iter().map(|k| k.len()).sum::<usize>() + args.iter().map(|a| a.len()).sum::<usize>();
            let mut cmd = Cmd::with_capacity(3 + keys.len() + 9 + args.len(), size + 170);
            cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
            for key in keys {
                cmd.arg(*key);
            }
            self.common_args(&mut cmd, token);
            for arg in args {
                cmd.arg(*arg);
            }
            cmd.arg(form);
            let answer = self.link.invoke(script, &cmd).await?;
            let reply = Reply::parse_with(answer, |u| self.seal.user_of(u))?.with_expiry(&self.lifetimes);
            if let Some((userid, until)) = reply.index_deadline() {
                self.keep_index(userid, until).await;
            }
            let limits = &self.limits;
            match reply.status() {
                Status::Ok => {
                    let _ = LOOKUP.try_with(|first| {
                        first.borrow_mut().get_or_insert_with(|| reply.metadata());
                    });
                    if settle && self.seal.unsettled(reply.form(), reply.stored_user()) {
                        let (session, lock) = (keys[0], keys.get(1).copied().unwrap_or_default());
                        if let Err(e) = Box::pin(self.migrate(session, lock)).await {
                            log::warn!("session {session} left in its earlier layout: {e}");
                        }
                    }
                    return Ok(reply);
                }
                Status::Done | Status::New | Status::Exists | Status::Fallback | Status::Changed => return Ok(reply),
                Status::Stale => {
                    // Instances that disagree on `storage.encrypt` or the secret would move a
                    // session back and forth: give up after a few rounds.
                    migrations += 1;
                    if migrations > 3 {
                        return Err(Unavailable::Busy {
                            what: "the session keeps changing layout (do all instances share storage.encrypt and session.secret?)",
                        }
                        .into());
                    }
                    Box::pin(self.migrate(keys[0], keys[1])).await?;
                }
                Status::Gone => {
                    // Found under its earlier name: moved, and the script runs again.
                    if !adopted && let Some(k) = k {
                        adopted = true;
                        if Box::pin(self.adopt(k)).await? {
                            continue;
                        }
                    }
                    return Err(SessionError::SessionGone);
                }
                Status::NotLoggedIn => return Err(SessionError::NotLoggedIn),
                Status::Full => return Err(SessionError::Full { limit: limits.max_sessions }),
                Status::TooMany => return Err(SessionError::TooManyKeys { limit: limits.max_keys }),
                Status::TooLarge => {
                    return Err(SessionError::ValueTooLarge { size: reply.size(), limit: limits.max_value_bytes });
                }
                Status::TooBig => {
                    // The cap the script applied: the anonymous one for a session nobody is in.
                    let limit = reply.cap().unwrap_or(limits.max_session_bytes);
                    return Err(SessionError::SessionTooLarge { size: reply.size(), limit });
                }
                Status::Lost => return Err(lock::lost()),
                Status::Locked => backoff.wait().await?,
            }
        }
    }
}
