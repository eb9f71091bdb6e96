//! [`Session`]: the per-request handle handlers extract, with Draco's session API.
//!
//! The handle is created by the middleware for every request and costs nothing until a handler
//! uses it: the cookie's session is looked up by the first operation, in the same trip to the
//! engine as that operation, and only a write creates a session (lazy creation).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderValue, USER_AGENT};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cookie;
use super::error::WebError;
use crate::engine::SessionEngine;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::message::SessionInfo;
use crate::robot::RobotDetector;
use crate::state::DEFAULT_SCOPE;

/// What one [`SessionMiddleware`](super::SessionMiddleware) shares with all its requests.
#[derive(Debug)]
pub(crate) struct Context {
    pub engine: SessionEngine,
    pub robots: RobotDetector,
}

/// The session of one request. Extract it in a handler; clones share the same state.
///
/// Mirrors `draco.session`: [`get`](Self::get)/[`insert`](Self::insert)/[`remove`](Self::remove)
/// work on the default scope `__system__`, [`namespace`](Self::namespace) gives the same
/// operations on an independent scope, and [`login`](Self::login), [`logout`](Self::logout),
/// [`userid`](Self::userid), [`persistent`](Self::persistent) and
/// [`set_persistent`](Self::set_persistent) manage the user.
///
/// A robot (see [`RobotDetector`]) without a session still gets a `Session`, but
/// [`is_available`](Self::is_available) is `false`, reads find nothing and writes fail with
/// [`WebError::NoSession`] (a 403, never a 5xx). [`MaybeSession`] is `None` instead.
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
    state: Arc<RequestState>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = self.view();
        f.debug_struct("Session")
            .field("id", &view.current.as_ref().map(|i| i.id))
            .field("userid", &view.current.as_ref().map_or(0, |i| i.userid))
            .finish()
    }
}

struct RequestState {
    ctx: Arc<Context>,
    user_agent: Option<HeaderValue>,
    /// Serialises the cookie lookup and session creation of this request.
    gate: futures_util::lock::Mutex<()>,
    /// Never held across an `.await`.
    view: Mutex<View>,
}

#[derive(Default)]
struct View {
    /// Whether the cookie's session was looked up.
    resolved: bool,
    /// Ids from the cookie whose tag verifies, in header order.
    candidates: Vec<SessionId>,
    /// The request carried a cookie with our name at all (valid or not).
    had_cookie: bool,
    /// What the client's cookie stands for: the live session it named and its persistence.
    sent: Option<(SessionId, bool)>,
    /// The session's last use before this request.
    last_access_before: Option<SystemTime>,
    /// The live session, with its metadata as of the last operation of this request.
    current: Option<SessionInfo>,
    /// The User-Agent is a robot; computed when first needed.
    robot: Option<bool>,
    /// The session ended under this request (rotated or destroyed by another request).
    lost: bool,
    /// `destroy()` was called.
    destroyed: bool,
    /// An engine operation of this request already counted as a use.
    slid: bool,
}

impl Session {
    /// The handle the middleware attaches to a request: parses the cookie, asks nobody yet.
    pub(crate) fn for_request(ctx: Arc<Context>, headers: &HeaderMap) -> Self {
        let mut view = View::default();
        let name = &ctx.engine.config().cookie.name;
        for value in cookie::values(headers, name) {
            view.had_cookie = true;
            if let Ok(id) = ctx.engine.parse_id(value)
                && !view.candidates.contains(&id)
            {
                view.candidates.push(id);
            }
        }
        let user_agent = headers.get(USER_AGENT).cloned();
        Self {
            state: Arc::new(RequestState {
                ctx,
                user_agent,
                gate: futures_util::lock::Mutex::new(()),
                view: Mutex::new(view),
            }),
        }
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // A panic while holding the guard cannot leave `View` half-updated in a harmful way.
        self.state.view.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn engine(&self) -> &SessionEngine {
        &self.state.ctx.engine
    }

    fn is_robot(&self) -> bool {
        let mut view = self.view();
        *view.robot.get_or_insert_with(|| {
            self.state.ctx.robots.is_robot(self.state.user_agent.as_ref().map(HeaderValue::as_bytes))
        })
    }

    /// Looks the cookie's session up, once per request. With several cookies of our name the
    /// first one naming a live session wins.
    async fn resolve(&self) -> Result<(), WebError> {
        if self.view().resolved {
            return Ok(());
        }
        let _gate = self.state.gate.lock().await;
        self.resolve_locked().await
    }

    /// [`resolve`](Self::resolve), with the gate held. On an engine error the ids not yet
    /// tried stay, so a later operation can still find the session (and never replaces it).
    async fn resolve_locked(&self) -> Result<(), WebError> {
        let candidates = {
            let mut view = self.view();
            if view.resolved {
                return Ok(());
            }
            std::mem::take(&mut view.candidates)
        };
        let mut found = None;
        for (i, id) in candidates.iter().enumerate() {
            match self.engine().info(id).await {
                Ok(info) => {
                    found = Some(info);
                    break;
                }
                Err(SessionError::SessionGone | SessionError::InvalidId) => {}
                Err(e) => {
                    self.view().candidates = candidates[i..].to_vec();
                    return Err(e.into());
                }
            }
        }
        self.found(found);
        Ok(())
    }

    /// Records what the cookie stands for.
    fn found(&self, found: Option<SessionInfo>) {
        let mut view = self.view();
        view.sent = found.as_ref().map(|i| (i.id, i.persistent));
        view.last_access_before = found.as_ref().map(|i| i.last_access);
        view.current = found;
        view.resolved = true;
    }

    /// Runs `op` on the live session, never creating one: `None` when there is none. `op` must
    /// change nothing but the data and the last access: no rotation, `destroy` or persistence
    /// change (those look the cookie up first, see [`SessionEngine::looked_up`]).
    ///
    /// While the cookie is not looked up yet, the lookup of its first id travels with `op` on
    /// that id ([`SessionEngine::looked_up`]: one wake-up of the shard's worker, one Redis
    /// round trip) instead of going first on its own. Only when that id turns out dead are the
    /// others looked up one by one and `op` sent again; on a dead id `op` did nothing (every
    /// operation checks that its session is live).
    async fn on_live<R, F, Fut>(&self, op: F) -> Result<Option<(SessionId, crate::Result<R>)>, WebError>
    where
        F: Fn(SessionId) -> Fut,
        Fut: Future<Output = crate::Result<R>>,
    {
        if !self.view().resolved {
            let _gate = self.state.gate.lock().await;
            let first = {
                let mut view = self.view();
                (!view.resolved && !view.candidates.is_empty()).then(|| view.candidates.remove(0))
            };
            if let Some(first) = first {
                let (info, result) = self.engine().looked_up(&first, op(first)).await;
                match info {
                    Ok(info) => {
                        self.found(Some(info));
                        return Ok(Some((first, result)));
                    }
                    Err(SessionError::SessionGone | SessionError::InvalidId) => {}
                    Err(e) => {
                        self.view().candidates.insert(0, first);
                        return Err(e.into());
                    }
                }
            }
            self.resolve_locked().await?;
        }
        let Some(id) = self.view().current.as_ref().map(|i| i.id) else { return Ok(None) };
        Ok(Some((id, op(id).await)))
    }

    /// Runs `op` on the live session, or on a new one when there is none (a write).
    async fn on_session<R, F, Fut>(&self, op: F) -> Result<(SessionId, crate::Result<R>), WebError>
    where
        F: Fn(SessionId) -> Fut,
        Fut: Future<Output = crate::Result<R>>,
    {
        if let Some(done) = self.on_live(&op).await? {
            return Ok(done);
        }
        self.created_with(op).await
    }

    /// Creates the session (the lazy creation) and runs `op` on it, in one trip: the new id is
    /// made here, so the creation and `op` leave together (one wake-up of the shard's worker;
    /// on Redis, two scripts in one round trip). If a session appeared meanwhile (another
    /// operation of this request), `op` runs on that one.
    async fn created_with<R, F, Fut>(&self, op: F) -> Result<(SessionId, crate::Result<R>), WebError>
    where
        F: Fn(SessionId) -> Fut,
        Fut: Future<Output = crate::Result<R>>,
    {
        let gate = self.state.gate.lock().await;
        if let Some(id) = self.may_create()? {
            drop(gate);
            return Ok((id, op(id).await));
        }
        let engine = self.engine();
        let id = engine.new_id();
        let (created, result) = futures_util::future::join(engine.create_as(id), op(id)).await;
        // Without the session (full, unavailable) `op` found nothing and did nothing.
        self.created(created?);
        // Where the two can be reordered on the way (Redis Cluster asks the database size
        // before creating), `op` may have arrived first: then it is sent again.
        let result = match result {
            Err(SessionError::SessionGone) => op(id).await,
            other => other,
        };
        Ok((id, result))
    }

    /// A write's outcome: counts as a use, or forgets a session that is gone.
    fn wrote<R>(&self, (id, result): (SessionId, crate::Result<R>)) -> Result<R, WebError> {
        match result {
            Ok(value) => {
                self.used(id, None);
                Ok(value)
            }
            Err(e) => Err(self.failed(id, e)),
        }
    }

    /// A read's outcome: as [`wrote`](Self::wrote), but a session that is gone (or none at
    /// all) reads as `R::default()`.
    fn read<R: Default>(&self, done: Option<(SessionId, crate::Result<R>)>) -> Result<R, WebError> {
        match done {
            None => Ok(R::default()),
            Some((id, Err(e))) => self.read_failed(id, e).map(|()| R::default()),
            Some(done) => self.wrote(done),
        }
    }

    /// A metadata change's outcome: the answered info becomes the session's.
    fn changed(&self, (id, result): (SessionId, crate::Result<SessionInfo>)) -> Result<(), WebError> {
        result.map(|info| self.used(id, Some(info))).map_err(|e| self.failed(id, e))
    }

    /// The live session's id, without creating one.
    async fn live_id(&self) -> Result<Option<SessionId>, WebError> {
        self.resolve().await?;
        Ok(self.view().current.as_ref().map(|i| i.id))
    }

    /// The live session's id, creating the session when there is none (the lazy creation).
    async fn ensure(&self) -> Result<SessionId, WebError> {
        if let Some(id) = self.live_id().await? {
            return Ok(id);
        }
        let _gate = self.state.gate.lock().await;
        if let Some(id) = self.may_create()? {
            return Ok(id);
        }
        let info = self.engine().create().await?;
        let id = info.id;
        self.created(info);
        Ok(id)
    }

    /// With the gate held, before creating a session: `Some(id)` when this request has one
    /// meanwhile (use it), `None` when one may be created.
    ///
    /// # Errors
    /// `SessionGone` when another request rotated or destroyed this client's session (a new
    /// one would overwrite the cookie that request just set); `NoSession` for a robot.
    fn may_create(&self) -> Result<Option<SessionId>, WebError> {
        {
            let view = self.view();
            if let Some(info) = &view.current {
                return Ok(Some(info.id));
            }
            if view.lost {
                return Err(SessionError::SessionGone.into());
            }
        }
        if self.is_robot() {
            return Err(WebError::NoSession);
        }
        Ok(None)
    }

    /// Records the session this request just created.
    fn created(&self, info: SessionInfo) {
        let mut view = self.view();
        view.current = Some(info);
        view.slid = true;
    }

    /// As [`ensure`](Self::ensure) when it would create, but the new session holds the counter
    /// `scope`/`key` at `by` (the engine's `create_counter`). `None`: not done (a session
    /// exists meanwhile, or the engine leaves it to create and increment).
    async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<i64>, WebError> {
        let _gate = self.state.gate.lock().await;
        if self.may_create()?.is_some() {
            return Ok(None);
        }
        let Some((info, n)) = self.engine().create_counter(scope, key, by).await? else { return Ok(None) };
        self.created(info);
        Ok(Some(n))
    }

    /// Records a successful operation on `id`, with the metadata it answered if any.
    fn used(&self, id: SessionId, info: Option<SessionInfo>) {
        let mut view = self.view();
        view.slid = true;
        if let Some(info) = info
            && view.current.as_ref().is_some_and(|c| c.id == id)
        {
            view.current = Some(info);
        }
    }

    /// Turns an engine error on `id` into a web error; a session that is gone is forgotten.
    fn failed(&self, id: SessionId, e: SessionError) -> WebError {
        if matches!(e, SessionError::SessionGone | SessionError::InvalidId) {
            let mut view = self.view();
            if view.current.as_ref().is_some_and(|c| c.id == id) {
                view.current = None;
                view.lost = true;
            }
            return SessionError::SessionGone.into();
        }
        e.into()
    }

    /// For reads: a session that is gone reads as empty; other errors stay errors.
    fn read_failed(&self, id: SessionId, e: SessionError) -> Result<(), WebError> {
        match self.failed(id, e) {
            WebError::Engine(SessionError::SessionGone) => Ok(()),
            other => Err(other),
        }
    }

    /// Whether this request has a session or may get one: `false` only for a robot (or a
    /// missing User-Agent) without a valid session. Draco's `if session:`.
    pub fn is_available(&self) -> bool {
        self.view().current.is_some() || !self.is_robot()
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
        Ok(self.view().current.as_ref().map_or(0, |i| i.userid))
    }

    /// Whether this is a remember-me session (Draco's `persistent()`); `false` without one.
    ///
    /// # Errors
    /// `Unavailable` (503) when the cookie's session cannot be looked up.
    pub async fn persistent(&self) -> Result<bool, WebError> {
        self.resolve().await?;
        Ok(self.view().current.as_ref().is_some_and(|i| i.persistent))
    }

    /// The same operations on the independent scope `scope` (Draco's `namespace(scope)`).
    pub fn namespace(&self, scope: &str) -> Namespace {
        Namespace { session: self.clone(), scope: scope.to_owned() }
    }

    fn system(&self) -> Namespace {
        self.namespace(DEFAULT_SCOPE)
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
        let engine = self.engine();
        let done = self.on_live(|id| async move { engine.clear(&id, None).await }).await?;
        self.read(done)
    }

    /// Logs `userid` in (Draco's `login(userid)`), creating the session if needed. The id
    /// rotates and the data stays, so a fixated id is worthless; the new cookie is sent.
    ///
    /// # Errors
    /// [`WebError::NoSession`] for a robot; `InvalidUserId` for 0; `SessionGone` (409) when
    /// another request ended the session meanwhile; `Full`/`Unavailable` (503).
    pub async fn login(&self, userid: u64) -> Result<(), WebError> {
        // Rotations, persistence changes and `destroy` look the cookie up first (`on_live`).
        let engine = self.engine();
        let done = match self.live_id().await? {
            Some(id) => (id, engine.login(&id, userid).await),
            None => self.created_with(|id| async move { engine.login(&id, userid).await }).await?,
        };
        self.changed(done)
    }

    /// Logs out (Draco's `logout()`): user id 0, volatile again, id rotated, other data kept.
    /// Without a session it does nothing.
    ///
    /// # Errors
    /// `SessionGone` (409) when another request ended the session meanwhile; `Unavailable`.
    pub async fn logout(&self) -> Result<(), WebError> {
        let Some(id) = self.live_id().await? else { return Ok(()) };
        let result = self.engine().logout(&id).await;
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
        let result = self.engine().set_persistent(&id, persistent).await;
        self.changed((id, result))
    }

    /// Ends the session and tells the browser to drop the cookie; whether a session existed.
    /// A later write in the same request starts a new session.
    ///
    /// # Errors
    /// [`WebError::Engine`] with `Unavailable` when the engine is stopped.
    pub async fn destroy(&self) -> Result<bool, WebError> {
        let existed = match self.live_id().await? {
            Some(id) => self.engine().destroy(&id).await.map_err(|e| self.failed(id, e))?,
            None => false,
        };
        let mut view = self.view();
        view.current = None;
        view.lost = false;
        view.destroyed = true;
        Ok(existed)
    }

    /// After the handler: the `Set-Cookie` this response needs, if the cookie changed.
    ///
    /// An unchanged cookie is sent again only to refresh a persistent cookie's `Max-Age`, on
    /// the session's first use in a UTC calendar day: the day of the engine's `last_access`
    /// before this request differs from the day of this request's use. So a remember-me
    /// cookie is renewed at most once a day and never lags its session by more than a day.
    pub(crate) async fn finish(&self) -> Option<HeaderValue> {
        let (current, sent, before, destroyed, had_cookie, slid) = {
            let view = self.view();
            if !view.resolved {
                return None;
            }
            (view.current.clone(), view.sent, view.last_access_before, view.destroyed, view.had_cookie, view.slid)
        };
        let config = &self.engine().config().cookie;
        let Some(info) = current else {
            return (destroyed && had_cookie).then(|| cookie::removal_cookie(config));
        };
        if sent != Some((info.id, info.persistent)) {
            return Some(self.cookie_for(&info));
        }
        if !info.persistent && slid {
            return None;
        }
        // An operation of this request already used the session now: unless that made a new
        // UTC day, nothing is due and there is no need to ask the engine.
        if slid && before.is_none_or(|b| utc_day(b) == utc_day(self.engine().now())) {
            return None;
        }
        // Every request that looked at its session counts as a use of it.
        let now = self.engine().touch(&info.id).await.ok()?;
        let due = now.persistent && before.is_some_and(|b| utc_day(b) != utc_day(now.last_access));
        due.then(|| self.cookie_for(&now))
    }

    fn cookie_for(&self, info: &SessionInfo) -> HeaderValue {
        let config = self.engine().config();
        let max_age = info.persistent.then(|| {
            // Equal to `persistent_ttl`, unless an absolute cap ends the session sooner.
            let left = info.expires.duration_since(info.last_access).unwrap_or_default();
            left.min(config.session.persistent_ttl)
        });
        cookie::set_cookie(&config.cookie, &info.id, max_age)
    }
}

fn utc_day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400)
}

impl FromRequest for Session {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = req.extensions().get::<Session>().cloned();
        Box::pin(async move {
            let session = session.ok_or(WebError::MissingMiddleware)?;
            // The first operation looks the cookie up. Only a robot with a cookie needs it
            // now: whether it has a session decides `is_available`.
            if !session.view().candidates.is_empty() && session.is_robot() {
                session.resolve().await?;
            }
            Ok(session)
        })
    }
}

/// Extracts `Some(session)`, or `None` for a robot without a session: Draco's `if session:`.
///
/// actix-web's `Option<T>` extractor is `None` only when `T` fails to extract, and a
/// [`Session`] always extracts (a robot must still be served), so this wrapper stands in for
/// `Option<Session>`.
///
/// ```
/// use draco_session::{MaybeSession, WebError};
///
/// async fn page(MaybeSession(session): MaybeSession) -> Result<String, WebError> {
///     Ok(match session {
///         Some(s) => format!("user {}", s.userid().await?),
///         None => "no session for robots".into(),
///     })
/// }
/// ```
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<Session>);

impl MaybeSession {
    /// The session, if available.
    pub fn into_inner(self) -> Option<Session> {
        self.0
    }
}

impl FromRequest for MaybeSession {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = Session::from_request(req, payload);
        Box::pin(async move {
            let session = session.await?;
            Ok(MaybeSession(session.is_available().then_some(session)))
        })
    }
}

/// One scope of a [`Session`] (Draco's `namespace(scope)`): the same operations, on keys
/// independent of every other scope. Cheap to clone; `Send`.
#[derive(Debug, Clone)]
pub struct Namespace {
    session: Session,
    scope: String,
}

impl Namespace {
    /// The scope's name.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Reads `key` as a `T`; `None` when absent or without a session. Never creates a session.
    ///
    /// # Errors
    /// `InvalidName` (400) for an empty or over-long name; `Codec` (500) when the stored value
    /// is not a `T`; `Unavailable` (503).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, WebError> {
        let (engine, scope) = (self.session.engine(), &self.scope);
        let done = self.session.on_live(|id| async move { engine.get::<T>(&id, scope, key).await }).await?;
        self.session.read(done)
    }

    /// Stores `value` under `key`, creating the session if needed.
    ///
    /// # Errors
    /// [`WebError::NoSession`] (403) for a robot; `ValueTooLarge`/`TooManyKeys` (413);
    /// `InvalidName` (400); `SessionGone` (409) when another request ended the session
    /// meanwhile; `Full`/`Unavailable` (503).
    pub async fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), WebError> {
        let (engine, scope) = (self.session.engine(), &self.scope);
        let done = self.session.on_session(|id| async move { engine.insert(&id, scope, key, value).await }).await?;
        self.session.wrote(done)
    }

    /// Removes `key`; whether it was there. Never creates a session.
    ///
    /// # Errors
    /// `InvalidName` (400); `Unavailable` (503).
    pub async fn remove(&self, key: &str) -> Result<bool, WebError> {
        let (engine, scope) = (self.session.engine(), &self.scope);
        let done = self.session.on_live(|id| async move { engine.remove(&id, scope, key).await }).await?;
        self.session.read(done)
    }

    /// Atomically replaces `key` with `f(current)` inside the engine, creating the session if
    /// needed: concurrent requests never lose each other's updates. Answers the new value.
    ///
    /// # Errors
    /// As [`insert`](Self::insert); also `Codec` (500) when the stored value is not a `T` and
    /// `Panicked` (500) when `f` panics (the session is unchanged).
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T, WebError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Option<T>) -> T + Send + 'static,
    {
        // `f` runs once, so the lookup cannot be sent along with it: it comes first.
        let s = &self.session;
        let id = s.ensure().await?;
        let result = s.engine().update(&id, &self.scope, key, f).await;
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
        let (s, engine, scope) = (&self.session, self.session.engine(), &self.scope);
        let op = |id| async move { engine.increment(&id, scope, key, by).await };
        if let Some(done) = s.on_live(op).await? {
            return s.wrote(done);
        }
        if let Some(n) = s.create_counter(scope, key, by).await? {
            return Ok(n);
        }
        s.wrote(s.on_session(op).await?)
    }

    /// The keys of this scope, sorted; empty without a session.
    ///
    /// # Errors
    /// `InvalidName` (400); `Unavailable` (503).
    pub async fn keys(&self) -> Result<Vec<String>, WebError> {
        let (engine, scope) = (self.session.engine(), &self.scope);
        let done = self.session.on_live(|id| async move { engine.keys(&id, scope).await }).await?;
        self.session.read(done)
    }

    /// Removes every key of this scope.
    ///
    /// # Errors
    /// `InvalidName` (400); `Unavailable` (503).
    pub async fn clear(&self) -> Result<(), WebError> {
        let (engine, scope) = (self.session.engine(), &self.scope);
        let done = self.session.on_live(|id| async move { engine.clear(&id, Some(scope)).await }).await?;
        self.session.read(done)
    }
}
