//! How a [`Session`] reaches the engine: the cookie's lookup, which rides along the first
//! operation; the lazy creation of a session by the first write; and the recording of every
//! answer in the [`RequestState`](super::request_state::RequestState).
//!
//! Lookup and creation happen under the request's gate (see [`Session::gate`]); the state lock
//! is taken only for the synchronous transitions between engine trips.

use super::session::Session;
use crate::engine::BackendOp;
use crate::error::SessionError;
use crate::error::WebError;
use crate::id::SessionId;
use crate::message::{Create, Destroy, Info, SessionInfo};

impl Session {
    /// Looks the cookie's session up, once per request. With several cookies of our name the
    /// first one naming a live session wins.
    pub(super) async fn resolve(&self) -> Result<(), WebError> {
        if self.state().is_looked_up() {
            return Ok(());
        }
        let _gate = self.gate().await;
        self.resolve_locked().await
    }

    /// [`resolve`](Self::resolve), with the gate held. On an engine error the ids not yet
    /// tried stay, so a later operation can still find the session (and never replaces it).
    async fn resolve_locked(&self) -> Result<(), WebError> {
        let Some(candidates) = self.state().take_candidates() else { return Ok(()) };
        let mut found = None;
        for (i, id) in candidates.iter().enumerate() {
            match self.engine().door().run(Info { id: *id }).await {
                Ok(info) => {
                    found = Some(info);
                    break;
                }
                Err(SessionError::SessionGone | SessionError::InvalidId) => {}
                Err(e) => {
                    self.state().retry(candidates[i..].to_vec());
                    return Err(e.into());
                }
            }
        }
        self.state().found(found);
        Ok(())
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
    ///
    /// [`SessionEngine::looked_up`]: crate::engine::SessionEngine::looked_up
    pub(super) async fn on_live<M, F>(&self, op: F) -> Result<Option<(SessionId, crate::Result<M::Reply>)>, WebError>
    where
        F: Fn(SessionId) -> M,
        M: BackendOp,
    {
        let door = self.engine().door();
        if !self.state().is_looked_up() {
            let _gate = self.gate().await;
            let first = self.state().next_candidate();
            if let Some(first) = first {
                let (info, result) = door.looked_up(&first, op(first)).await;
                match info {
                    Ok(info) => {
                        self.state().found(Some(info));
                        return Ok(Some((first, result)));
                    }
                    Err(SessionError::SessionGone | SessionError::InvalidId) => {}
                    Err(e) => {
                        self.state().retry(vec![first]);
                        return Err(e.into());
                    }
                }
            }
            // Boxed, as every rare way below: a future is as large as its largest state, and
            // each is copied as it moves, so the common way (a live cookie) carries none of them.
            Box::pin(self.resolve_locked()).await?;
        }
        let Some(id) = self.state().current().map(|i| i.id) else { return Ok(None) };
        Ok(Some((id, door.run(op(id)).await)))
    }

    /// Runs `op` on the live session, or on a new one when there is none (a write).
    pub(super) async fn on_session<M, F>(&self, op: F) -> Result<(SessionId, crate::Result<M::Reply>), WebError>
    where
        F: Fn(SessionId) -> M,
        M: BackendOp,
    {
        if let Some(done) = self.on_live(&op).await? {
            return Ok(done);
        }
        Box::pin(self.created_with(op)).await
    }

    /// Creates the session (the lazy creation) and runs `op` on it, in one trip: the new id is
    /// made here, so the creation and `op` leave together (one wake-up of the shard's worker;
    /// on Redis, two scripts in one round trip). If a session appeared meanwhile (another
    /// operation of this request), `op` runs on that one.
    pub(super) async fn created_with<M, F>(&self, op: F) -> Result<(SessionId, crate::Result<M::Reply>), WebError>
    where
        F: Fn(SessionId) -> M,
        M: BackendOp,
    {
        let door = self.engine().door();
        let gate = self.gate().await;
        if let Some(id) = self.may_create()? {
            drop(gate);
            return Ok((id, door.run(op(id)).await));
        }
        let id = door.new_id();
        // A write that would be refused creates nothing: its names and size are checked first.
        self.may_write(&op(id))?;
        let (created, result) = futures_util::future::join(door.run(Create { id }), door.run(op(id))).await;
        // Without the session (full, unavailable) `op` found nothing and did nothing.
        let info = created?;
        // Where the two can be reordered on the way (Redis Cluster asks the database size
        // before creating), `op` may have arrived first: then it is sent again.
        let result = match result {
            Err(SessionError::SessionGone) => door.run(op(id)).await,
            other => other,
        };
        if let Err(e) = &result
            && refuses_the_write(e)
        {
            // Refused by a check only the shard can make (the session's size): the session
            // made for it goes too, and the response sets no cookie.
            if let Err(e) = door.run(Destroy { id }).await {
                log::warn!("a session created for a refused write was not ended: {e}");
            }
            return Err(e.clone().into());
        }
        self.state().created(info);
        Ok((id, result))
    }

    /// Refuses, before anything is created for it, a write whose names or value the engine
    /// would refuse anyway.
    fn may_write<M: BackendOp>(&self, msg: &M) -> Result<(), WebError> {
        msg.check()?;
        let limit = self.config().limits.max_value_bytes;
        if msg.value_len() > limit {
            return Err(SessionError::ValueTooLarge { size: msg.value_len(), limit }.into());
        }
        Ok(())
    }

    /// The live session's id, without creating one.
    pub(super) async fn live_id(&self) -> Result<Option<SessionId>, WebError> {
        self.resolve().await?;
        Ok(self.state().current().map(|i| i.id))
    }

    /// The live session's id, creating the session when there is none (the lazy creation).
    pub(super) async fn ensure(&self) -> Result<SessionId, WebError> {
        if let Some(id) = self.live_id().await? {
            return Ok(id);
        }
        let _gate = self.gate().await;
        if let Some(id) = self.may_create()? {
            return Ok(id);
        }
        let info = self.engine().door().create().await?;
        let id = info.id;
        self.state().created(info);
        Ok(id)
    }

    /// With the gate held, before creating a session: `Some(id)` when this request has one
    /// meanwhile (use it), `None` when one may be created.
    ///
    /// # Errors
    /// `SessionGone` when another request rotated or destroyed this client's session (a new
    /// one would overwrite the cookie that request just set); `NoSession` for a robot;
    /// `TooManyNewSessions` past the client's `limits.create_rate`.
    fn may_create(&self) -> Result<Option<SessionId>, WebError> {
        let existing = self.state().may_create()?;
        if existing.is_some() {
            return Ok(existing);
        }
        if self.is_robot() {
            self.refuse_robot();
            return Err(WebError::NoSession);
        }
        self.admit_creation()?;
        Ok(None)
    }

    /// As [`ensure`](Self::ensure) when it would create, but the new session holds the counter
    /// `scope`/`key` at `by` (the engine's `create_counter`). `None`: not done (a session
    /// exists meanwhile, or the engine leaves it to create and increment).
    pub(super) async fn create_counter(&self, scope: &str, key: &str, by: i64) -> Result<Option<i64>, WebError> {
        let _gate = self.gate().await;
        if self.may_create()?.is_some() {
            return Ok(None);
        }
        let Some((info, n)) = self.engine().door().create_counter(scope, key, by).await? else { return Ok(None) };
        self.state().created(info);
        Ok(Some(n))
    }

    /// A write's outcome: counts as a use, or forgets a session that is gone.
    pub(super) fn wrote<R>(&self, (id, result): (SessionId, crate::Result<R>)) -> Result<R, WebError> {
        match result {
            Ok(value) => {
                self.state().used(id, None);
                Ok(value)
            }
            Err(e) => Err(self.failed(id, e)),
        }
    }

    /// A read's outcome: as [`wrote`](Self::wrote), but a session that is gone (or none at
    /// all) reads as `R::default()`.
    pub(super) fn read<R: Default>(&self, done: Option<(SessionId, crate::Result<R>)>) -> Result<R, WebError> {
        match done {
            None => Ok(R::default()),
            Some((id, Err(e))) => self.read_failed(id, e).map(|()| R::default()),
            Some(done) => self.wrote(done),
        }
    }

    /// A metadata change's outcome: the answered info becomes the session's.
    pub(super) fn changed(&self, (id, result): (SessionId, crate::Result<SessionInfo>)) -> Result<(), WebError> {
        result.map(|info| self.state().used(id, Some(info))).map_err(|e| self.failed(id, e))
    }

    /// Turns an engine error on `id` into a web error; a session that is gone is forgotten.
    pub(super) fn failed(&self, id: SessionId, e: SessionError) -> WebError {
        if matches!(e, SessionError::SessionGone | SessionError::InvalidId) {
            self.state().gone(id);
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
}

/// A write refused for what it carries (its names, its size, the session's room): a client's
/// error, after which a session created for the write must not stay.
fn refuses_the_write(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::InvalidName { .. }
            | SessionError::ValueTooLarge { .. }
            | SessionError::TooManyKeys { .. }
            | SessionError::SessionTooLarge { .. }
            | SessionError::WrongType(_)
    )
}
