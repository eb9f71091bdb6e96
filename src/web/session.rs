//! [`Session`]: the per-request handle handlers extract, with Draco's session API.
//!
//! The handle is created by the middleware for every request and costs nothing until a handler
//! uses it: the cookie's session is looked up by the first operation, in the same trip to the
//! engine as that operation, and only a write creates a session (lazy creation). How those
//! trips go is in `access.rs`; what they leave behind, in [`RequestState`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth::RequestAuth;
use super::cookie;
use super::namespace::Namespace;
use super::request_state::RequestState;
use crate::engine::SessionEngine;
use crate::error::SessionError;
use crate::error::WebError;
use crate::id::SessionId;
use crate::message::{Clear, Destroy, Login, Logout, SetPersistent};
use crate::names::DEFAULT_SCOPE;

/// The session of one request. Extract it in a handler; clones share the same state.
///
/// Mirrors `draco.session`: [`get`](Self::get)/[`insert`](Self::insert)/[`remove`](Self::remove)
/// work on the default scope `__system__`, [`namespace`](Self::namespace) gives the same
/// operations on an independent scope, and [`login`](Self::login), [`logout`](Self::logout),
/// [`userid`](Self::userid), [`persistent`](Self::persistent) and
/// [`set_persistent`](Self::set_persistent) manage the user.
///
/// A robot (see [`RobotDetector`](crate::RobotDetector)) without a session still gets a `Session`, but
/// [`is_available`](Self::is_available) is `false`, reads find nothing and writes fail with
/// [`WebError::NoSession`] (a 403, never a 5xx). [`MaybeSession`](super::MaybeSession) is
/// `None` instead.
///
/// The handle is `Send`: it may be held across `.await` and moved into spawned work. The
/// cookie is written when the response leaves, so a session first created by work that
/// outlives the request never reaches the browser.
///
/// ```
/// use actix_web::{HttpResponse, Result};
/// use draco_session::Session;
///
/// async fn visit(session: Session) -> Result<HttpResponse> {
///     if !session.is_available() {
///         return Ok(HttpResponse::Ok().body("hello, robot"));
///     }
///     let visits = session.namespace("stats").increment("visits", 1).await?;
///     Ok(HttpResponse::Ok().body(format!("visit {visits}, user {}", session.userid().await?)))
/// }
/// ```
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Session")
            .field("id", &state.current().map(|i| i.id))
            .field("userid", &state.current().map_or(0, |i| i.userid))
            .finish()
    }
}

/// What the clones of one request's [`Session`] share.
///
/// Two locks, because neither can do the other's job: `state` must be readable from sync code
/// (`is_available`, `Debug`, the middleware's cookie decision) and so is a std mutex never held
/// across `.await`; the lookup and the lazy creation span engine trips, and only an async
/// mutex held across them (`gate`) keeps concurrent operations of one request (clones of the
/// handle moved into spawned work) from looking the cookie up twice or creating two sessions.
/// `gate` is taken before `state`, never the other way round.
struct Shared {
    engine: SessionEngine,
    user_agent: Option<HeaderValue>,
    /// Whether the User-Agent is a robot: matching is not free, so only once it matters.
    robot: OnceLock<bool>,
    /// Serialises the cookie lookup and session creation of this request.
    gate: futures_util::lock::Mutex<()>,
    /// The client, for `limits.create_rate` (see `rate::client_ip`).
    client: IpAddr,
    /// This request already took its token of `limits.create_rate`: a creation it retries
    /// (the engine's fallback from a one-step counter) does not pay again.
    admitted: AtomicBool,
    /// This request was counted as a robot refused a session (`draco_session_robot_requests_total`).
    refused: AtomicBool,
    /// Never held across an `.await`.
    state: Mutex<RequestState>,
    /// The request's fresh-login markers, and the one its response sets (`auth.rs`).
    auth: RequestAuth,
}

impl Session {
    /// The handle the middleware attaches to a request: parses the cookie (or the `[header]`
    /// header, `id_header`, which wins when present and non-empty), asks nobody yet.
    pub(crate) fn for_request(
        engine: SessionEngine,
        headers: &HeaderMap,
        client: IpAddr,
        id_header: Option<&HeaderName>,
    ) -> Self {
        let (mut candidates, mut had_cookie) = (Vec::new(), false);
        // The header is the client's explicit choice: when it came, it alone names the session
        // (see `HeaderConfig`), and a forged or dead one reads as a dead cookie would.
        let from_header = id_header.and_then(|name| headers.get(name)).filter(|v| !v.is_empty());
        if let Some(value) = from_header {
            had_cookie = true;
            if let Ok(id) = engine.parse_id(value.as_bytes()) {
                candidates.push(id);
            }
        } else if engine.config().cookie.enabled {
            let name = &engine.config().cookie.name;
            for value in cookie::values(headers, name) {
                had_cookie = true;
                if let Ok(id) = engine.parse_id(value)
                    && !candidates.contains(&id)
                {
                    candidates.push(id);
                }
            }
        }
        let user_agent = headers.get(USER_AGENT).cloned();
        // Without a session to name, a marker has nothing to count for.
        let auth = RequestAuth::from_headers(headers, &engine.config().cookie, !candidates.is_empty());
        Self {
            shared: Arc::new(Shared {
                engine,
                user_agent,
                robot: OnceLock::new(),
                gate: futures_util::lock::Mutex::new(()),
                client,
                admitted: AtomicBool::new(false),
                refused: AtomicBool::new(false),
                state: Mutex::new(RequestState::new(candidates, had_cookie)),
                auth,
            }),
        }
    }

    /// The client's address (see `rate::client_ip`).
    pub(super) fn client(&self) -> IpAddr {
        self.shared.client
    }

    /// The request's User-Agent header.
    pub(super) fn user_agent(&self) -> Option<&HeaderValue> {
        self.shared.user_agent.as_ref()
    }

    /// The request state. Never hold the guard across an `.await`.
    pub(super) fn state(&self) -> MutexGuard<'_, RequestState> {
        // A panic while holding the guard cannot leave the state half-updated in a harmful way.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The request's fresh-login markers.
    pub(super) fn shared_auth(&self) -> &RequestAuth {
        &self.shared.auth
    }

    /// Waits for this request's lookup or creation in progress, if any, and holds off others.
    pub(super) async fn gate(&self) -> futures_util::lock::MutexGuard<'_, ()> {
        self.shared.gate.lock().await
    }

    pub(super) fn engine(&self) -> &SessionEngine {
        &self.shared.engine
    }

    /// Takes this request's token of `limits.create_rate`, once, before it creates a session.
    ///
    /// # Errors
    /// [`WebError::TooManyNewSessions`] when the client has none left.
    pub(super) fn admit_creation(&self) -> Result<(), WebError> {
        if self.shared.admitted.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.engine()
            .take_create_token(self.shared.client)
            .map_err(|retry_after| WebError::TooManyNewSessions { retry_after })?;
        self.shared.admitted.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn is_robot(&self) -> bool {
        let shared = &self.shared;
        *shared
            .robot
            .get_or_init(|| shared.engine.robots().is_robot(shared.user_agent.as_ref().map(HeaderValue::as_bytes)))
    }

    /// The engine's configuration (what a page may tell its users, e.g. what logging out does).
    pub fn config(&self) -> &crate::config::Config {
        self.engine().config()
    }

    /// Whether the request used its session: its cookie was looked up (every operation does
    /// that first), so the response may depend on which session the request named.
    pub(super) fn consulted(&self) -> bool {
        self.state().is_looked_up()
    }

    /// Whether this request has a session or may get one: `false` only for a robot (or a
    /// missing User-Agent) without a valid session. Draco's `if session:`.
    pub fn is_available(&self) -> bool {
        let available = self.state().current().is_some() || !self.is_robot();
        if !available {
            self.refuse_robot();
        }
        available
    }

    /// Counts this request, once, as a robot refused a session.
    pub(super) fn refuse_robot(&self) {
        if !self.shared.refused.swap(true, Ordering::Relaxed) {
            self.engine().metrics().robots.increment(1);
        }
    }

    /// The session's id; `None` while there is no session (nothing written yet, or a robot).
    ///
    /// # Errors
    /// `Unavailable` (503) when the cookie's session cannot be looked up.
    pub async fn id(&self) -> Result<Option<SessionId>, WebError> {
        self.live_id().await
    }

    /// The logged-in user id (Draco's `userid()`); 0 when anonymous or without a session.
    ///
    /// As of the cookie lookup and this request's own login/logout.
    ///
    /// # Errors
    /// `Unavailable` (503) when the cookie's session cannot be looked up.
    pub async fn userid(&self) -> Result<u64, WebError> {
        self.resolve().await?;
        Ok(self.state().current().map_or(0, |i| i.userid))
    }

    /// Whether this is a remember-me session (Draco's `persistent()`); `false` without one.
    ///
    /// # Errors
    /// `Unavailable` (503) when the cookie's session cannot be looked up.
    pub async fn persistent(&self) -> Result<bool, WebError> {
        self.resolve().await?;
        Ok(self.state().current().is_some_and(|i| i.persistent))
    }

    /// The same operations on the independent scope `scope` (Draco's `namespace(scope)`).
    pub fn namespace(&self, scope: &str) -> Namespace {
        Namespace::new(self.clone(), scope.to_owned())
    }

    fn system(&self) -> Namespace {
        Namespace::new(self.clone(), DEFAULT_SCOPE)
    }

    /// Reads `key` of the default scope as a `T`; `None` when absent or without a session.
    ///
    /// # Errors
    /// See [`Namespace::get`].
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, WebError> {
        self.system().get(key).await
    }

    /// Stores `value` under `key` of the default scope, creating the session if needed.
    ///
    /// # Errors
    /// See [`Namespace::insert`].
    pub async fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), WebError> {
        self.system().insert(key, value).await
    }

    /// Removes `key` of the default scope; whether it was there.
    ///
    /// # Errors
    /// See [`Namespace::remove`].
    pub async fn remove(&self, key: &str) -> Result<bool, WebError> {
        self.system().remove(key).await
    }

    /// Atomically replaces `key` of the default scope with `f(current)`; answers the new value.
    ///
    /// # Errors
    /// See [`Namespace::update`].
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T, WebError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Option<T>) -> T + Send + 'static,
    {
        self.system().update(key, f).await
    }

    /// Atomically adds `by` to the counter `key` of the default scope; answers the new value.
    ///
    /// # Errors
    /// See [`Namespace::increment`].
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, WebError> {
        self.system().increment(key, by).await
    }

    /// The keys of the default scope, sorted.
    ///
    /// # Errors
    /// See [`Namespace::keys`].
    pub async fn keys(&self) -> Result<Vec<String>, WebError> {
        self.system().keys().await
    }

    /// Removes every key of the default scope.
    ///
    /// # Errors
    /// See [`Namespace::clear`].
    pub async fn clear(&self) -> Result<(), WebError> {
        self.system().clear().await
    }

    /// Removes every key of every scope; user id and persistence stay.
    ///
    /// # Errors
    /// [`WebError::Engine`] when the engine fails.
    pub async fn clear_all(&self) -> Result<(), WebError> {
        let done = self.on_live(|id| Clear { id, scope: None }).await?;
        self.read(done)
    }

    /// Logs `userid` in (Draco's `login(userid)`), creating the session if needed. The id
    /// rotates and the data stays, so a fixated id is worthless; the new cookie is sent. Also
    /// records that the user proved who they are now, at level 1 (see
    /// [`login_with`](Self::login_with) and [`require_fresh_auth`](Self::require_fresh_auth)).
    ///
    /// # Errors
    /// [`WebError::NoSession`] for a robot; `InvalidUserId` for 0; `SessionGone` (409) when
    /// another request ended the session meanwhile; `Full`/`Unavailable` (503).
    pub async fn login(&self, userid: u64) -> Result<(), WebError> {
        self.login_with(userid, 1).await
    }

    /// The login's rotation, once the device label and the proof are in.
    pub(super) async fn rotate_in(&self, userid: u64) -> Result<(), WebError> {
        // Rotations, persistence changes and `destroy` look the cookie up first (`on_live`).
        let engine = self.engine().door();
        let done = match self.live_id().await? {
            Some(id) => (id, engine.run(Login { id, userid }).await),
            None => self.created_with(|id| Login { id, userid }).await?,
        };
        self.changed(done)
    }

    /// Logs out (Draco's `logout()`): user id 0, volatile again, id rotated, other data kept
    /// (every scope cleared too with `session.logout_clears_data`), the proof of identity
    /// removed in any case (see [`auth_age`](Self::auth_age)).
    /// Without a session it does nothing.
    ///
    /// # Errors
    /// `SessionGone` (409) when another request ended the session meanwhile; `Unavailable`.
    pub async fn logout(&self) -> Result<(), WebError> {
        let Some(id) = self.live_id().await? else { return Ok(()) };
        // First: a logout that fails after it leaves the user logged in, never fresh and out.
        self.forget_proof(id).await?;
        let result = self.engine().door().run(Logout { id }).await;
        self.changed((id, result))
    }

    /// Makes the session persistent ("remember me": the cookie gets a `Max-Age` of
    /// `session.persistent_ttl`) or volatile again (Draco's `setPersistent(p)`).
    ///
    /// # Errors
    /// `NotLoggedIn` (409) for `true` on an anonymous session or without a session;
    /// `SessionGone` (409); `Unavailable` (503).
    pub async fn set_persistent(&self, persistent: bool) -> Result<(), WebError> {
        let Some(id) = self.live_id().await? else {
            return if persistent { Err(SessionError::NotLoggedIn.into()) } else { Ok(()) };
        };
        let result = self.engine().door().run(SetPersistent { id, persistent }).await;
        self.changed((id, result))
    }

    /// Ends the session and tells the browser to drop the cookie; whether a session existed.
    /// A later write in the same request starts a new session.
    ///
    /// # Errors
    /// [`WebError::Engine`] with `Unavailable` when the engine is stopped.
    pub async fn destroy(&self) -> Result<bool, WebError> {
        let existed = match self.live_id().await? {
            Some(id) => self.engine().door().run(Destroy { id }).await.map_err(|e| self.failed(id, e))?,
            None => false,
        };
        self.state().destroyed();
        self.marker_ended();
        Ok(existed)
    }
}
