//! Error types, one enum per layer: [`SessionError`] (an operation, with [`Unavailable`] for
//! why the engine cannot serve it now), [`WebError`] (a handler), [`ConfigError`] (a config)
//! and [`StartError`] (starting the engine).

use std::path::PathBuf;

/// What can go wrong with one session operation.
///
/// Every variant says what happened and, where there is one, what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The id is not one this engine issued (bad format or a tag that does not verify).
    #[error("invalid session id: not issued by this engine")]
    InvalidId,
    /// The session expired, was rotated by login/logout, or was destroyed.
    #[error("session is gone: it expired, was rotated by login/logout, or was destroyed")]
    SessionGone,
    /// `set_persistent(true)` on an anonymous session.
    #[error("only a logged-in session can be persistent: call login() first")]
    NotLoggedIn,
    /// `login(0)`: user ids start at 1, 0 means anonymous.
    #[error("invalid user id 0: user ids start at 1 (0 means anonymous)")]
    InvalidUserId,
    /// A scope or key name that is empty or too long.
    #[error("invalid {what} name {name:?}: must be 1..={max} bytes")]
    InvalidName {
        /// `"scope"` or `"key"`.
        what: &'static str,
        /// The rejected name (cut to 64 bytes).
        name: String,
        /// The longest allowed name, in bytes.
        max: usize,
    },
    /// A value larger than `limits.max_value_bytes`.
    #[error("value of {size} bytes exceeds the limit of {limit} bytes (limits.max_value_bytes)")]
    ValueTooLarge {
        /// Encoded size of the rejected value.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A session already holding `limits.max_keys` keys.
    #[error("session already holds {limit} keys (limits.max_keys)")]
    TooManyKeys {
        /// The configured limit.
        limit: usize,
    },
    /// A write that would grow the session past `limits.max_session_bytes` (scope names, key
    /// names and values of all its scopes together), or, a session nobody is logged into, past
    /// `limits.max_anonymous_session_bytes`. Nothing was written.
    #[error(
        "session would hold {size} bytes, over the limit of {limit} bytes (limits.max_session_bytes; \
         limits.max_anonymous_session_bytes for a session nobody is logged into)"
    )]
    SessionTooLarge {
        /// What the session would have held, in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The engine already holds `limits.max_sessions` live sessions; nobody was evicted.
    #[error("session engine is full: {limit} live sessions (limits.max_sessions)")]
    Full {
        /// The configured limit.
        limit: usize,
    },
    /// A value could not be encoded as JSON (a value the application cannot serialize).
    #[error("value encoding error: {0}")]
    Codec(String),
    /// The stored value is not of the type asked for: a typed read, `update` or `increment`
    /// of a value stored as another type (by another handler, or by a client through an API
    /// that stores what it is given). The data's doing, not the server's: HTTP 409. Nothing
    /// was changed.
    #[error("the stored value is not of the requested type: {0}")]
    WrongType(String),
    /// Code run inside the engine (e.g. an `update` closure) panicked; the session is unchanged.
    #[error("operation panicked inside the engine; the session is unchanged: {0}")]
    Panicked(String),
    /// The engine cannot serve the operation now (stopped, restarting, backend down or busy);
    /// the reason says which. A temporary condition (HTTP 503): retry later.
    #[error("session engine unavailable: {0}")]
    Unavailable(Unavailable),
    /// The session's stored data does not open (`storage.encrypt`): damaged, tampered with, or
    /// sealed under a secret this engine does not hold (not the current one nor one of
    /// `session.previous_secrets`). Nothing was read or changed; the details are in the log.
    #[error("the session's stored data cannot be read: {0}")]
    Damaged(String),
    /// A bug inside the engine: something that cannot happen did. The details are in the log
    /// (error level); the caller only learns that the operation failed.
    #[error("internal error in the session engine (details in the log)")]
    Internal,
}

impl SessionError {
    /// An [`Internal`](Self::Internal) error, logging what happened where.
    pub(crate) fn internal(what: impl std::fmt::Display) -> Self {
        log::error!("session engine internal error: {what}");
        Self::Internal
    }
}

/// Why the engine cannot serve an operation now: [`SessionError::Unavailable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The engine was shut down ([`SessionEngine::shutdown`](crate::SessionEngine::shutdown)).
    #[error("the session engine is shut down")]
    EngineStopped,
    /// The worker owning the session died and is being restarted (it reloads its shard's last
    /// snapshot first); retry shortly.
    #[error("shard {shard} is restarting; retry shortly")]
    ShardRestarting {
        /// The shard.
        shard: usize,
    },
    /// The shard did not take the operation in time (its mailbox stayed full), or the
    /// session is locked by another update (Redis); retry shortly.
    #[error("the session engine is busy: {what}")]
    Busy {
        /// What is busy.
        what: &'static str,
    },
    /// The backend (Redis) cannot be reached or refused the command.
    #[error("the session store cannot be reached: {message}")]
    BackendUnreachable {
        /// What the backend or the connection said (passwords redacted).
        message: String,
    },
    /// The backend (Redis) did not answer in time.
    #[error("the session store did not answer within {after:?}")]
    BackendTimeout {
        /// How long the engine waited.
        after: std::time::Duration,
    },
    /// The memory backend's sessions reached `limits.max_memory` and none is left to evict to
    /// make room (logged-in sessions are never evicted): a new session, or a write that would
    /// grow one, is refused until some end or expire; nothing was changed. Retry later.
    #[error("the sessions reached their memory budget of {limit} bytes (limits.max_memory) and none can be evicted")]
    MemoryFull {
        /// The configured budget (all shards together).
        limit: usize,
    },
    /// A snapshot could not be written; the previous generation stays in place.
    #[error("the snapshot could not be written: {message}")]
    Storage {
        /// What failed (the file and the I/O error).
        message: String,
    },
}

impl From<Unavailable> for SessionError {
    fn from(reason: Unavailable) -> Self {
        Self::Unavailable(reason)
    }
}

/// A configuration file or value that cannot be used. Always names the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema (unknown key, wrong type, bad duration).
    #[error("invalid config in {origin}: {message}")]
    Parse {
        /// The file name, or `<string>`.
        origin: String,
        /// What the parser said, including the key.
        message: String,
    },
    /// A value is out of range, or values contradict each other.
    #[error("invalid config in {origin}: `{key}` {message}")]
    Invalid {
        /// The file name, or `<string>`.
        origin: String,
        /// The offending key, dotted (`session.volatile_ttl`).
        key: &'static str,
        /// Why it is rejected.
        message: String,
    },
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory or the secret key file could not be used.
    #[error("storage error at {path}: {message}")]
    Storage {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The session store (Redis) could not be reached or used at start-up.
    #[error("cannot use the Redis server at {url} (storage.redis_url): {message}")]
    Backend {
        /// The server's URL, password hidden.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// `storage.backend = "redis"` was started with the synchronous `start`.
    #[error(
        "storage.backend = \"redis\" connects asynchronously: start the engine with \
         `SessionEngine::start_async(config).await` (or `EngineBuilder::start_async`)"
    )]
    NeedsAsyncStart,
    /// No actix `System` is running on this thread.
    #[error("no actix System is running: start the engine inside #[actix_web::main] or actix_rt::System")]
    NoSystem,
}

/// Shorthand for session operation results.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// A failed session operation inside a request handler.
///
/// Implements [`ResponseError`](actix_web::ResponseError), so handlers can use `?`. The status codes:
///
/// | error | status |
/// |---|---|
/// | [`NoSession`](Self::NoSession) (a robot), [`CrossSite`](Self::CrossSite) | 403 |
/// | [`Reauthenticate`](Self::Reauthenticate) | 403, body starting `reauthenticate` |
/// | [`ReservedScope`](Self::ReservedScope) | 400 |
/// | `NotLoggedIn`, `SessionGone`, `WrongType` | 409 |
/// | `InvalidName`, `InvalidUserId` | 400 |
/// | `ValueTooLarge`, `TooManyKeys`, `SessionTooLarge` | 413 |
/// | `Full`, `Unavailable` | 503 with `Retry-After` |
/// | [`TooManyNewSessions`](Self::TooManyNewSessions) | 429 with `Retry-After` |
/// | everything else | 500 with a generic body; the details are logged |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The request has no session and may not get one: its User-Agent is a robot (or missing).
    #[error("no session: this client is treated as a robot and gets no session")]
    NoSession,
    /// A [`Namespace`](crate::Namespace) whose name starts with
    /// [`RESERVED_SCOPE_PREFIX`](crate::limits::RESERVED_SCOPE_PREFIX), which the crate keeps for its
    /// own data.
    #[error("scope names starting with \"__draco.\" are reserved for draco-session's own data")]
    ReservedScope,
    /// The origin guard (`[csrf] origin_guard`) refused an unsafe request (POST, PUT, PATCH,
    /// DELETE) that another site made the browser send.
    #[error("cross-site request refused: {0}")]
    CrossSite(&'static str),
    /// The [`SessionMiddleware`](crate::SessionMiddleware) is not installed around this route.
    #[error("SessionMiddleware is not installed: wrap the App or scope with SessionMiddleware::new(engine)")]
    MissingMiddleware,
    /// The request would create a session, and its client created `limits.create_rate`
    /// sessions already: 429 with `Retry-After`.
    #[error("too many new sessions from this client: retry in {retry_after:?} (limits.create_rate)")]
    TooManyNewSessions {
        /// When the client may create one again.
        retry_after: std::time::Duration,
    },
    /// The action needs a fresh proof of identity and the session has none
    /// ([`Session::require_fresh_auth`](crate::Session::require_fresh_auth)): 403, with a body
    /// whose first word is `reauthenticate` (stable, for programs). Ask for the password (or
    /// second factor) again, call [`Session::reauthenticated`](crate::Session::reauthenticated),
    /// and retry.
    #[error("reauthenticate: this action needs a fresh login (session.reauth_after)")]
    Reauthenticate,
    /// The engine refused or failed the operation.
    #[error(transparent)]
    Engine(#[from] SessionError),
}

impl WebError {
    /// The engine error inside, if any.
    pub fn engine(&self) -> Option<&SessionError> {
        match self {
            Self::Engine(e) => Some(e),
            _ => None,
        }
    }
}
