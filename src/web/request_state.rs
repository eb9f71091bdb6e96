//! [`RequestState`]: the state machine of one request's session. What the cookie lookup found
//! ([`Lookup`], [`Found`]), what the request has done to the session since ([`Status`]), and
//! what the response's cookie must therefore say ([`Ending`]).
//!
//! Pure: the [`Session`](super::Session) handle feeds it the engine's answers under its lock,
//! and nothing here waits on anything.

use std::time::SystemTime;

use crate::error::SessionError;
use crate::id::SessionId;
use crate::message::SessionInfo;

/// Whether the request's cookie was looked up yet, and what it named. Looked up once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Not yet.
    Pending {
        /// The ids of our cookie(s) whose tag verifies, in header order, not tried yet.
        candidates: Vec<SessionId>,
        /// A cookie of our name (or the `[header]` header) came at all, valid or not: only then
        /// is a removal worth sending.
        had_cookie: bool,
    },
    /// Done.
    Done(Found),
}

/// What the request's cookie named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// The request carried no cookie of our name.
    NoCookie,
    /// Cookies of our name, none naming a live session (bad tag, expired, ended).
    Dead,
    /// The live session named first, as it was before this request used it.
    Live {
        /// Its id.
        id: SessionId,
        /// Whether the cookie was a remember-me cookie.
        persistent: bool,
        /// The session's last use before this request.
        last_access: SystemTime,
    },
}

/// The session this request holds and what the request did to it, after actix-session's
/// `SessionStatus`, plus what lazy creation and concurrent requests add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Status {
    /// No session: the cookie named none (or is not looked up yet) and nothing created one.
    NoSession,
    /// The cookie's session, with the id and persistence the cookie carries.
    Unchanged {
        /// As of this request's last operation on it.
        info: SessionInfo,
        /// An operation of this request already counted as a use, so asking the engine for
        /// the daily refresh is only worth it when that use fell on a new UTC day.
        used: bool,
    },
    /// The cookie's session, made persistent or volatile: the cookie's `Max-Age` must follow.
    Changed {
        /// As of this request's last operation on it.
        info: SessionInfo,
    },
    /// A session the cookie does not name: created by this request, or rotated by
    /// login/logout.
    Rotated {
        /// As of this request's last operation on it.
        info: SessionInfo,
        /// Created after [`Destroyed`](Self::Destroyed): if this one is lost too, the cookie
        /// still names the destroyed session and must still be removed.
        after_destroy: bool,
    },
    /// `destroy()` ended the session and no write started a new one yet.
    Destroyed,
    /// Another request ended the session under this one (rotated or destroyed it). This
    /// request creates no other: it would overwrite the cookie the other request set.
    Lost {
        /// As in [`Rotated`](Self::Rotated).
        after_destroy: bool,
    },
}

/// What the response must tell the browser about its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ending {
    /// Nothing: the session was never looked at, there is none, or another request ended it
    /// (and may have set the cookie itself).
    Keep,
    /// Drop the cookie: `destroy()` ended what it named.
    Remove,
    /// The cookie for this session: a new id or a new persistence.
    Set(SessionInfo),
    /// The cookie's session, unchanged: only the daily refresh of a remember-me cookie may be
    /// due, which is the middleware's call.
    Unchanged {
        /// The session as of this request's last operation.
        info: SessionInfo,
        /// As in [`Status::Unchanged`].
        used: bool,
        /// The session's last use before this request.
        before: Option<SystemTime>,
    },
}

/// The state of one request's session: [`Lookup`] and [`Status`].
#[derive(Debug)]
pub(super) struct RequestState {
    lookup: Lookup,
    status: Status,
}

impl RequestState {
    /// Before anything: the verified ids of the request's cookies, and whether it had any.
    pub(super) fn new(candidates: Vec<SessionId>, had_cookie: bool) -> Self {
        Self { lookup: Lookup::Pending { candidates, had_cookie }, status: Status::NoSession }
    }

    pub(super) fn is_looked_up(&self) -> bool {
        matches!(self.lookup, Lookup::Done(_))
    }

    /// Ids are left to try: the lookup may still find a session.
    pub(super) fn has_candidates(&self) -> bool {
        matches!(&self.lookup, Lookup::Pending { candidates, .. } if !candidates.is_empty())
    }

    /// Takes the first id left to try, while the lookup is pending.
    pub(super) fn next_candidate(&mut self) -> Option<SessionId> {
        match &mut self.lookup {
            Lookup::Pending { candidates, .. } if !candidates.is_empty() => Some(candidates.remove(0)),
            _ => None,
        }
    }

    /// Takes every id left to try; `None` once the lookup is done.
    pub(super) fn take_candidates(&mut self) -> Option<Vec<SessionId>> {
        match &mut self.lookup {
            Lookup::Pending { candidates, .. } => Some(std::mem::take(candidates)),
            Lookup::Done(_) => None,
        }
    }

    /// Gives back taken ids the engine could not answer for, to be tried first next time: an
    /// engine error must not make this request replace a session it merely failed to see.
    pub(super) fn retry(&mut self, mut ids: Vec<SessionId>) {
        if let Lookup::Pending { candidates, .. } = &mut self.lookup {
            ids.append(candidates);
            *candidates = ids;
        }
    }

    /// The lookup's result: the first live session a candidate named, if any. The lookup
    /// precedes everything else the request does, so it sets the status outright.
    pub(super) fn found(&mut self, live: Option<SessionInfo>) {
        let had_cookie = match &self.lookup {
            Lookup::Pending { had_cookie, .. } => *had_cookie,
            Lookup::Done(found) => *found != Found::NoCookie,
        };
        self.lookup = Lookup::Done(match &live {
            Some(info) => Found::Live { id: info.id, persistent: info.persistent, last_access: info.last_access },
            None if had_cookie => Found::Dead,
            None => Found::NoCookie,
        });
        self.status = match live {
            Some(info) => Status::Unchanged { info, used: false },
            None => Status::NoSession,
        };
    }

    /// The live session, as of this request's last operation on it.
    pub(super) fn current(&self) -> Option<&SessionInfo> {
        match &self.status {
            Status::Unchanged { info, .. } | Status::Changed { info } | Status::Rotated { info, .. } => Some(info),
            Status::NoSession | Status::Destroyed | Status::Lost { .. } => None,
        }
    }

    /// Before creating a session: `Some(id)` when the request holds one (use it), `None` when
    /// one may be created.
    ///
    /// # Errors
    /// `SessionGone` when the session was [`Lost`](Status::Lost).
    pub(super) fn may_create(&self) -> Result<Option<SessionId>, SessionError> {
        match &self.status {
            Status::Lost { .. } => Err(SessionError::SessionGone),
            _ => Ok(self.current().map(|info| info.id)),
        }
    }

    /// This request created `info`'s session.
    pub(super) fn created(&mut self, info: SessionInfo) {
        self.status = Status::Rotated { info, after_destroy: self.after_destroy() };
    }

    /// An operation on `id` succeeded; with `Some(info)` it answered the session's new
    /// metadata (login, logout, persistence), which replaces the current one if `id` is it.
    pub(super) fn used(&mut self, id: SessionId, info: Option<SessionInfo>) {
        match info {
            Some(info) if self.current().is_some_and(|c| c.id == id) => self.status = self.holding(info),
            _ => {
                if let Status::Unchanged { used, .. } = &mut self.status {
                    *used = true;
                }
            }
        }
    }

    /// The engine says `id` is gone: if it is the current session, another request ended it.
    pub(super) fn gone(&mut self, id: SessionId) {
        if self.current().is_some_and(|c| c.id == id) {
            self.status = Status::Lost { after_destroy: self.after_destroy() };
        }
    }

    /// `destroy()` ended the session, if there was one.
    pub(super) fn destroyed(&mut self) {
        self.status = Status::Destroyed;
    }

    /// What the response must tell the browser.
    pub(super) fn ending(&self) -> Ending {
        let Lookup::Done(found) = self.lookup else { return Ending::Keep };
        match &self.status {
            Status::NoSession | Status::Lost { after_destroy: false } => Ending::Keep,
            Status::Destroyed | Status::Lost { after_destroy: true } => match found {
                Found::NoCookie => Ending::Keep,
                Found::Dead | Found::Live { .. } => Ending::Remove,
            },
            Status::Changed { info } | Status::Rotated { info, .. } => Ending::Set(info.clone()),
            Status::Unchanged { info, used } => {
                let before = match found {
                    Found::Live { last_access, .. } => Some(last_access),
                    Found::NoCookie | Found::Dead => None,
                };
                Ending::Unchanged { info: info.clone(), used: *used, before }
            }
        }
    }

    /// The status once the request's session has the metadata `info` after one of its
    /// operations (which counts as a use): the cookie is compared by id and persistence.
    fn holding(&self, info: SessionInfo) -> Status {
        match self.lookup {
            Lookup::Done(Found::Live { id, persistent, .. }) if id == info.id => {
                if persistent == info.persistent {
                    Status::Unchanged { info, used: true }
                } else {
                    Status::Changed { info }
                }
            }
            _ => Status::Rotated { info, after_destroy: self.after_destroy() },
        }
    }

    fn after_destroy(&self) -> bool {
        matches!(
            self.status,
            Status::Destroyed | Status::Rotated { after_destroy: true, .. } | Status::Lost { after_destroy: true }
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn id(c: char) -> SessionId {
        c.to_string().repeat(32).parse().unwrap()
    }

    fn info(c: char, persistent: bool) -> SessionInfo {
        let t = UNIX_EPOCH + Duration::from_secs(1_000);
        SessionInfo { id: id(c), userid: 0, persistent, created: t, last_access: t, expires: t }
    }

    /// A request whose cookie named the live session `A`, looked up.
    fn with_session(persistent: bool) -> RequestState {
        let mut s = RequestState::new(vec![id('A')], true);
        assert_eq!(s.take_candidates(), Some(vec![id('A')]));
        s.found(Some(info('A', persistent)));
        s
    }

    #[test]
    fn nothing_to_say_before_the_lookup() {
        let s = RequestState::new(vec![id('A')], true);
        assert!(!s.is_looked_up() && s.has_candidates());
        assert_eq!(s.ending(), Ending::Keep);
        assert_eq!(s.may_create(), Ok(None));
    }

    #[test]
    fn candidates_are_tried_in_order_and_failed_ones_first_again() {
        let mut s = RequestState::new(vec![id('A'), id('B'), id('C')], true);
        assert_eq!(s.next_candidate(), Some(id('A')));
        s.retry(vec![id('A')]);
        assert_eq!(s.take_candidates(), Some(vec![id('A'), id('B'), id('C')]));
        assert!(!s.has_candidates());
        s.retry(vec![id('B'), id('C')]);
        assert_eq!(s.next_candidate(), Some(id('B')));
        s.found(None);
        assert!(s.is_looked_up() && !s.has_candidates());
        assert_eq!((s.next_candidate(), s.take_candidates()), (None, None));
        assert_eq!(s.lookup, Lookup::Done(Found::Dead));
    }

    #[test]
    fn an_unused_cookie_session_leaves_the_refresh_to_the_middleware() {
        let mut s = with_session(true);
        let before = Some(info('A', true).last_access);
        assert_eq!(s.ending(), Ending::Unchanged { info: info('A', true), used: false, before });
        s.used(id('A'), None);
        assert_eq!(s.ending(), Ending::Unchanged { info: info('A', true), used: true, before });
    }

    #[test]
    fn a_persistence_change_sets_the_cookie_until_changed_back() {
        let mut s = with_session(false);
        s.used(id('A'), Some(info('A', true)));
        assert_eq!(s.status, Status::Changed { info: info('A', true) });
        assert_eq!(s.ending(), Ending::Set(info('A', true)));
        s.used(id('A'), Some(info('A', false)));
        assert_eq!(s.status, Status::Unchanged { info: info('A', false), used: true });
    }

    #[test]
    fn a_rotation_sets_the_new_cookie_and_answers_on_the_old_id_are_ignored() {
        let mut s = with_session(false);
        s.used(id('A'), Some(info('B', false)));
        assert_eq!(s.ending(), Ending::Set(info('B', false)));
        s.used(id('A'), Some(info('C', true)));
        s.gone(id('A'));
        assert_eq!(s.current(), Some(&info('B', false)));
    }

    #[test]
    fn the_first_write_without_a_cookie_creates_and_sets() {
        let mut s = RequestState::new(vec![], false);
        s.found(None);
        assert_eq!((s.lookup.clone(), s.ending()), (Lookup::Done(Found::NoCookie), Ending::Keep));
        assert_eq!(s.may_create(), Ok(None));
        s.created(info('B', false));
        assert_eq!(s.may_create(), Ok(Some(id('B'))));
        assert_eq!(s.ending(), Ending::Set(info('B', false)));
    }

    #[test]
    fn a_session_lost_to_another_request_is_not_replaced_nor_its_cookie_touched() {
        let mut s = with_session(false);
        s.gone(id('A'));
        assert_eq!(s.status, Status::Lost { after_destroy: false });
        assert_eq!(s.may_create(), Err(SessionError::SessionGone));
        assert_eq!(s.ending(), Ending::Keep);
    }

    #[test]
    fn destroy_removes_a_cookie_if_there_was_one_and_a_write_starts_anew() {
        let mut s = RequestState::new(vec![], false);
        s.found(None);
        s.destroyed();
        assert_eq!(s.ending(), Ending::Keep);

        let mut s = with_session(true);
        s.destroyed();
        assert_eq!((s.current(), s.ending()), (None, Ending::Remove));
        assert_eq!(s.may_create(), Ok(None));
        s.created(info('B', false));
        assert_eq!(s.ending(), Ending::Set(info('B', false)));
        s.gone(id('B'));
        assert_eq!(s.may_create(), Err(SessionError::SessionGone));
        assert_eq!(s.ending(), Ending::Remove);
    }

    #[test]
    fn destroy_after_a_loss_may_create_again() {
        let mut s = with_session(false);
        s.gone(id('A'));
        s.destroyed();
        assert_eq!((s.may_create(), s.ending()), (Ok(None), Ending::Remove));
    }
}
