//! [`Namespace`]: one scope of a [`Session`], with the data operations on its keys. Each
//! operation picks its way to the engine: a read never creates a session, a write may.

use std::borrow::Cow;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::session::Session;
use crate::engine::{Door, decode, encode};
use crate::error::WebError;
use crate::message::{Clear, Get, Increment, Keys, Remove, Set};

/// Scope names starting with this are kept for the crate's own data (the CSRF secret of
/// [`Session::csrf_token`], the device label, the queue of [`Session::flash`]): a
/// [`Namespace`] of such a name fails every operation with
/// [`WebError::ReservedScope`] (400), so no application key can collide with them.
pub const RESERVED_SCOPE_PREFIX: &str = "__draco.";

/// One scope of a [`Session`] (Draco's `namespace(scope)`): the same operations, on keys
/// independent of every other scope. Cheap to clone; `Send`.
#[derive(Debug, Clone)]
pub struct Namespace {
    session: Session,
    /// Borrowed for the default scope, so `session.get(..)` and friends allocate no name.
    scope: Cow<'static, str>,
}

impl Namespace {
    pub(super) fn new(session: Session, scope: impl Into<Cow<'static, str>>) -> Self {
        Self { session, scope: scope.into() }
    }

    /// The scope's name.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The engine, for a scope applications may use.
    fn engine(&self) -> Result<Door<'_>, WebError> {
        self.checked_scope()?;
        Ok(self.session.engine().door())
    }

    /// The scope, if applications may use it.
    fn checked_scope(&self) -> Result<&str, WebError> {
        if self.scope.starts_with(RESERVED_SCOPE_PREFIX) {
            return Err(WebError::ReservedScope);
        }
        Ok(&self.scope)
    }

    /// Reads `key` as a `T`; `None` when absent or without a session. Never creates a session.
    ///
    /// # Errors
    /// `InvalidName` (400) for an empty or over-long name; `WrongType` (409) when the stored value
    /// is not a `T`; `Unavailable` (503).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, WebError> {
        let scope = self.checked_scope()?;
        let done = self.session.on_live(|id| Get { id, scope: scope.into(), key: key.into() }).await?;
        let stored: Option<Vec<u8>> = self.session.read(done)?;
        Ok(stored.map(|bytes| decode(&bytes)).transpose()?)
    }

    /// Stores `value` under `key`, creating the session if needed.
    ///
    /// # Errors
    /// [`WebError::NoSession`] (403) for a robot; `ValueTooLarge`/`TooManyKeys`/`SessionTooLarge` (413);
    /// `InvalidName` (400); `SessionGone` (409) when another request ended the session
    /// meanwhile; `Full`/`Unavailable` (503).
    pub async fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), WebError> {
        let scope = self.checked_scope()?;
        // Encoded first: a value that cannot be stored creates nothing.
        let value = encode(value)?;
        let set = |id| Set { id, scope: scope.into(), key: key.into(), value: value.clone() };
        let done = self.session.on_session(set).await?;
        self.session.wrote(done)
    }

    /// Removes `key`; whether it was there. Never creates a session.
    ///
    /// # Errors
    /// `InvalidName` (400); `Unavailable` (503).
    pub async fn remove(&self, key: &str) -> Result<bool, WebError> {
        let scope = self.checked_scope()?;
        let done = self.session.on_live(|id| Remove { id, scope: scope.into(), key: key.into() }).await?;
        self.session.read(done)
    }

    /// Atomically replaces `key` with `f(current)` inside the engine, creating the session if
    /// needed: concurrent requests never lose each other's updates. Answers the new value.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); also `WrongType` (409) when the stored value is not a `T` and
    /// `Panicked` (500) when `f` panics (the session is unchanged).
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T, WebError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Option<T>) -> T + Send + 'static,
    {
        // `f` runs once, so the lookup cannot be sent along with it: it comes first. Names
        // that would be refused create nothing.
        let (s, engine) = (&self.session, self.engine()?);
        crate::names::check_name("scope", &self.scope)?;
        crate::names::check_name("key", key)?;
        let id = s.ensure().await?;
        let result = engine.update(&id, &self.scope, key, f).await;
        s.wrote((id, result))
    }

    /// Atomically adds `by` to the integer under `key` (absent counts as 0), creating the
    /// session if needed; answers the new value.
    ///
    /// # Errors
    /// As [`update`](Self::update).
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, WebError> {
        // The engine's own increment: the same update on the memory backend, one script on
        // Redis, which also creates a missing session in the same script.
        let (s, scope) = (&self.session, self.checked_scope()?);
        let op = |id| Increment { id, scope: scope.into(), key: key.into(), by };
        if let Some(done) = s.on_live(op).await? {
            return s.wrote(done);
        }
        // A new session's ways, boxed (see `Session::on_live`).
        if let Some(n) = Box::pin(s.create_counter(scope, key, by)).await? {
            return Ok(n);
        }
        s.wrote(Box::pin(s.on_session(op)).await?)
    }

    /// The keys of this scope, sorted; empty without a session.
    ///
    /// # Errors
    /// `InvalidName` (400); `Unavailable` (503).
    pub async fn keys(&self) -> Result<Vec<String>, WebError> {
        let scope = self.checked_scope()?;
        let done = self.session.on_live(|id| Keys { id, scope: scope.into() }).await?;
        self.session.read(done)
    }

    /// Removes every key of this scope.
    ///
    /// # Errors
    /// `InvalidName` (400); `Unavailable` (503).
    pub async fn clear(&self) -> Result<(), WebError> {
        let scope = self.checked_scope()?;
        let done = self.session.on_live(|id| Clear { id, scope: Some(scope.into()) }).await?;
        self.session.read(done)
    }
}

impl Session {
    /// The JSON stored under `scope`/`key` of the live session, with its id, as
    /// [`on_live`](Session::on_live) answers it: for the crate's own reserved scopes.
    pub(super) async fn stored(
        &self,
        scope: &'static str,
        key: &'static str,
    ) -> Result<Option<(crate::SessionId, crate::Result<Option<Vec<u8>>>)>, WebError> {
        self.on_live(|id| Get { id, scope: scope.into(), key: key.into() }).await
    }
}
