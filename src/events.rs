//! Session events: what happened to which session, for audit logs and "new sign-in" mail.
//!
//! [`SessionEngine::subscribe`](crate::SessionEngine::subscribe) hands out a [`Subscription`].
//! Each subscriber has a bounded buffer (`events.capacity`): the engine never waits for one,
//! and a subscriber that falls behind misses the oldest events and is told how many
//! ([`Delivery::Missed`]).
//!
//! - Memory backend: the shard that makes a change describes its event, and the shard's host
//!   publishes it as the operation ends; only while someone subscribes (no subscriber, no
//!   cost beyond one atomic load).
//! - Redis backend: the instance that makes a change appends its event to the stream
//!   `<redis_prefix>:events` (`draco:events` by default) right after the change; every instance with a subscriber reads that
//!   stream, so each subscriber sees the events of every instance, its own included. Redis
//!   expires sessions on its own and tells nobody: an expiry is reported when an instance
//!   observes it (listing a user's sessions finds one Redis has dropped), so only logged-in
//!   sessions' expiries are reported, late, and anonymous ones never.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use crate::id::SessionHandle;

/// One thing that happened to a session.
///
/// `session` is the session's [`SessionHandle`]: a keyed digest of its id, safe to log or
/// show (it opens nothing) and the name [`Session::devices`](crate::Session::devices) lists
/// it under. A login or logout moves the session to a new id, so its handle changes too:
/// those events carry the handle it had before (`previous`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionEvent {
    /// What happened.
    pub kind: EventKind,
    /// The session's user: the one logged in, or, for a logout, the one logged out. 0 for
    /// an anonymous session.
    pub userid: u64,
    /// The session's handle (after the change, for a login or logout).
    pub session: SessionHandle,
    /// When, by the engine's clock (millisecond precision).
    pub at: SystemTime,
}

/// The kinds of [`SessionEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A new anonymous session.
    Created,
    /// A user logged in; the session's device label, when the web layer recorded one (see
    /// [`Device`](crate::Device)).
    LoggedIn {
        /// "Firefox 133 on Windows 10", …
        label: Option<String>,
        /// The session's handle before the login rotated its id.
        previous: SessionHandle,
    },
    /// The user logged out; the session lives on, anonymous.
    LoggedOut {
        /// The session's handle before the logout rotated its id.
        previous: SessionHandle,
    },
    /// Remember-me was turned on or off (reported on every call, changed or not).
    RememberMe {
        /// Whether the session is now persistent.
        on: bool,
    },
    /// Ended from elsewhere: [`revoke`](crate::SessionEngine::revoke), "log out everywhere"
    /// ([`logout_user`](crate::SessionEngine::logout_user)), or `limits.max_sessions_per_user`.
    Revoked,
    /// Ended by [`destroy`](crate::SessionEngine::destroy).
    Destroyed,
    /// Dropped after its lifetime ran out (on Redis: when observed; see the module docs), or,
    /// an anonymous session of the memory backend, evicted to keep `limits.max_memory`.
    Expired,
}

impl EventKind {
    /// A short name: `created`, `login`, `logout`, `remember_me`, `revoked`, `destroyed`,
    /// `expired`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::LoggedIn { .. } => "login",
            Self::LoggedOut { .. } => "logout",
            Self::RememberMe { .. } => "remember_me",
            Self::Revoked => "revoked",
            Self::Destroyed => "destroyed",
            Self::Expired => "expired",
        }
    }
}

/// One line for an audit log: `login user=7 session=… previous=… device="Firefox 133 on Linux"`.
impl fmt::Display for SessionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} user={} session={}", self.kind.name(), self.userid, self.session)?;
        match &self.kind {
            EventKind::LoggedIn { label, previous } => {
                write!(f, " previous={previous}")?;
                if let Some(label) = label {
                    write!(f, " device={label:?}")?;
                }
                Ok(())
            }
            EventKind::LoggedOut { previous } => write!(f, " previous={previous}"),
            EventKind::RememberMe { on } => write!(f, " on={on}"),
            _ => Ok(()),
        }
    }
}

/// How long a subscriber that was just woken lets events gather before it waits again. One
/// wake-up of the subscriber's thread per event (a futex wake and two context switches) cost
/// as much as the rest of a new visitor's request in the HTTP bench; a batch per millisecond
/// costs next to nothing and delays an event by at most this much.
const GATHER: Duration = Duration::from_millis(1);

/// What a [`Subscription`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The next event.
    Event(SessionEvent),
    /// The subscriber fell behind by more than `events.capacity`: this many events were
    /// dropped for it (the ones after still arrive).
    Missed(u64),
}

/// A stream of the engine's [`SessionEvent`]s, from the moment of
/// [`subscribe`](crate::SessionEngine::subscribe) on. Dropping it unsubscribes.
///
/// ```
/// use draco_session::events::{Delivery, EventKind};
/// use draco_session::{Config, SessionEngine};
///
/// # actix_rt::System::new().block_on(async {
/// # let mut config = Config::default();
/// # config.session.secret = Some("an example secret of at least 32 bytes".into());
/// # config.storage.persist = false;
/// let engine = SessionEngine::start(config).unwrap();
/// let mut events = engine.subscribe().await.unwrap();
/// let session = engine.create().await.unwrap();
/// engine.login(&session.id, 7).await.unwrap();
/// let Some(Delivery::Event(created)) = events.recv().await else { panic!() };
/// assert_eq!(created.kind, EventKind::Created);
/// let Some(Delivery::Event(login)) = events.recv().await else { panic!() };
/// assert_eq!((login.kind.name(), login.userid), ("login", 7));
/// # engine.shutdown().await;
/// # });
/// ```
pub struct Subscription {
    receiver: broadcast::Receiver<SessionEvent>,
    /// The last [`recv`](Self::recv) had to wait: the next one that finds nothing lets more
    /// events gather first (see [`GATHER`]).
    woken: bool,
    /// The hub's count of subscribers (not the hub: holding its sender would keep
    /// [`recv`](Self::recv) from ever seeing the engine go).
    count: Arc<AtomicUsize>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").field("queued", &self.receiver.len()).finish()
    }
}

impl Subscription {
    /// The next event, or how many were missed; `None` once the engine is gone (every handle
    /// of it dropped; after [`shutdown`](crate::SessionEngine::shutdown) no more events come).
    ///
    /// Events are handed over in batches: after a wait, the next call that finds nothing
    /// queued lets events gather for a millisecond before it waits again, so a busy engine
    /// wakes a subscriber about once a millisecond rather than once an event. Needs a Tokio
    /// runtime with timers (actix-web's, or `#[tokio::main]`'s).
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            match self.receiver.try_recv() {
                Ok(event) => return Some(Delivery::Event(event)),
                Err(broadcast::error::TryRecvError::Lagged(n)) => return Some(Delivery::Missed(n)),
                Err(broadcast::error::TryRecvError::Closed) => return None,
                Err(broadcast::error::TryRecvError::Empty) if self.woken => {
                    self.woken = false;
                    tokio::time::sleep(GATHER).await;
                }
                Err(broadcast::error::TryRecvError::Empty) => break,
            }
        }
        self.woken = true;
        match self.receiver.recv().await {
            Ok(event) => Some(Delivery::Event(event)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Delivery::Missed(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// As [`recv`](Self::recv), without waiting: `None` when nothing is queued (or the
    /// engine is gone).
    pub fn try_recv(&mut self) -> Option<Delivery> {
        match self.receiver.try_recv() {
            Ok(event) => Some(Delivery::Event(event)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Delivery::Missed(n)),
            Err(_) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where events are published inside one engine: a bounded broadcast channel and a count of
/// subscribers, so publishers skip all work while nobody listens.
pub(crate) struct EventHub {
    sender: broadcast::Sender<SessionEvent>,
    subscribers: Arc<AtomicUsize>,
}

impl fmt::Debug for EventHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHub").field("subscribers", &self.subscribers()).finish()
    }
}

impl EventHub {
    /// A hub buffering `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Arc<Self> {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Arc::new(Self { sender, subscribers: Arc::new(AtomicUsize::new(0)) })
    }

    /// How many subscriptions are open.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Whether anyone listens: publishers check this before building an event.
    #[inline]
    pub fn wanted(&self) -> bool {
        self.subscribers() > 0
    }

    /// Hands `event` to every subscriber; never waits.
    pub fn publish(&self, event: SessionEvent) {
        // An error only means nobody subscribes right now.
        let _ = self.sender.send(event);
    }

    /// A read-only view of whether anyone listens, for those who record events without
    /// publishing them (a memory shard's outbox: see `memory/outbox.rs`).
    pub fn listeners(&self) -> Listeners {
        Listeners(self.subscribers.clone())
    }

    /// A new subscription, from now on.
    pub fn subscribe(&self) -> Subscription {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscription { receiver: self.sender.subscribe(), woken: false, count: self.subscribers.clone() }
    }
}

/// Whether an [`EventHub`] has subscribers, without the means to publish.
#[derive(Debug, Clone)]
pub(crate) struct Listeners(Arc<AtomicUsize>);

impl Listeners {
    /// Whether anyone listens: one atomic load.
    #[inline]
    pub fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// `ms` since the Unix epoch as a time.
pub(crate) fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> SessionHandle {
        "AAAAAAAAAAAAAAAAAAAAAA".parse().unwrap()
    }

    fn event(n: u64) -> SessionEvent {
        SessionEvent { kind: EventKind::Created, userid: n, session: handle(), at: at_ms(n) }
    }

    #[test]
    fn a_subscriber_that_falls_behind_is_told_how_many_it_missed() {
        let hub = EventHub::new(4);
        assert!(!hub.wanted());
        let mut slow = hub.subscribe();
        assert!(hub.wanted());
        for n in 0..10 {
            hub.publish(event(n));
        }
        assert_eq!(slow.try_recv(), Some(Delivery::Missed(6)));
        for n in 6..10 {
            assert_eq!(slow.try_recv(), Some(Delivery::Event(event(n))));
        }
        assert_eq!(slow.try_recv(), None);
        drop(slow);
        assert!(!hub.wanted());
    }

    #[test]
    fn an_event_reads_as_one_audit_line() {
        let handle = handle();
        let login = SessionEvent {
            kind: EventKind::LoggedIn { label: Some("Firefox 133 on Linux".into()), previous: handle },
            userid: 7,
            session: handle,
            at: at_ms(0),
        };
        assert_eq!(
            login.to_string(),
            "login user=7 session=AAAAAAAAAAAAAAAAAAAAAA previous=AAAAAAAAAAAAAAAAAAAAAA device=\"Firefox 133 on Linux\""
        );
        let remember = SessionEvent { kind: EventKind::RememberMe { on: true }, ..login };
        assert!(remember.to_string().starts_with("remember_me user=7 ") && remember.to_string().ends_with(" on=true"));
    }
}
