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
//! from `ARGV[9]`. Answers are read by `reply.rs`; each ends with the user-index deadline the
//! script asks for (see `slide` in `lua/prelude.lua`), which [`Core::exec_keys`] ensures.

use std::cell::RefCell;
use std::sync::LazyLock;

use redis::{Cmd, Script};

use super::keys::SessionKeys;
use super::lock::{self, Backoff};
use super::reply::{Metadata, Reply, Status};
use super::store::Core;
use crate::error::{Result, SessionError};

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

    /// Runs `script` on one session; waits out another caller's update lock; maps the
    /// statuses every script shares to errors, so only "ok", "done", "new", "exists" and "fallback"
    /// come back.
    pub(super) async fn exec(&self, script: &Script, k: &SessionKeys, token: &str, args: &[&[u8]]) -> Result<Reply> {
        self.exec_keys(script, &[&k.session, &k.lock], token, args).await
    }

    /// As [`exec`](Self::exec), on `keys` (the session's, then any more the script takes).
    pub(super) async fn exec_keys(&self, script: &Script, keys: &[&str], token: &str, args: &[&[u8]]) -> Result<Reply> {
        let mut backoff = Backoff::new();
        loop {
            // EVALSHA built here, in one buffer (a `ScriptInvocation` copies every argument
            // twice); `Link::invoke` loads the script when Redis does not have it.
            let size = keys.iter().map(|k| k.len()).sum::<usize>() + args.iter().map(|a| a.len()).sum::<usize>();
            let mut cmd = Cmd::with_capacity(3 + keys.len() + 8 + args.len(), size + 160);
            cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
            for key in keys {
                cmd.arg(*key);
            }
            self.common_args(&mut cmd, token);
            for arg in args {
                cmd.arg(*arg);
            }
            let reply = Reply::parse(self.link.invoke(script, &cmd).await?)?.with_expiry(&self.lifetimes);
            if let Some((userid, until)) = reply.index_deadline() {
                self.keep_index(userid, until).await;
            }
            let limits = &self.limits;
            match reply.status() {
                Status::Ok => {
                    let _ = LOOKUP.try_with(|first| {
                        first.borrow_mut().get_or_insert_with(|| reply.metadata());
                    });
                    return Ok(reply);
                }
                Status::Done | Status::New | Status::Exists | Status::Fallback => return Ok(reply),
                Status::Gone => return Err(SessionError::SessionGone),
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
