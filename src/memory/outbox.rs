//! [`Outbox`]: what one operation on a shard changed, as the shard describes it while it makes
//! each change, and how the shard's host turns that into log records and events once the
//! operation has run ([`Outbox::deliver`], called by [`Core`](super::host::Core) only).
//!
//! The descriptions are compact and owned: sessions by locator (and position), no names (a
//! value is written under the scope and key of the operation that writes it, which its host
//! still holds: [`OnShard::names`](super::ops::OnShard::names)), no values (a value written is
//! read back from the shard as its record is encoded, so nothing is cloned) and no event bodies
//! (handles, the device label and the time are added as the event is published). Changes are
//! described only while the shard's log is on, events only while someone subscribes. The
//! vectors are kept and cleared, so the common path allocates nothing.

use super::Hosting;
use super::shard::{Sessions, Slot};
use crate::error::Result;
use crate::events::{EventKind, SessionEvent, at_ms};
use crate::id::Locator;
use crate::wal::append::ShardLog;
use crate::wal::format;

/// The scope and the key an operation's values are under (see the module doc).
pub(crate) type Names<'a> = (&'a str, &'a str);

/// An operation's names when it writes no value (sweeps, reloads).
pub(crate) const NO_NAMES: Names<'static> = ("", "");

/// One change to persisted state, as a log record will say it.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// The whole session, as it is once the operation ran (its first write, or the login of a
    /// session never written); `at`: its position then, most likely still its position.
    Put { id: Locator, at: usize },
    /// The operation's value written: its bytes once the operation ran (a `Set`), or its
    /// absence (a `Remove`).
    Value { id: Locator, at: usize },
    /// The operation's value removed.
    Remove(Locator),
    /// The operation's scope, or (`all`) every scope, cleared.
    Clear { id: Locator, all: bool },
    /// Login or logout: the session moved to `new`; its user and persistence after the move.
    Rotate { old: Locator, new: Locator, userid: u64, persistent: bool },
    /// Remember-me switched.
    Persist { id: Locator, persistent: bool },
    /// The session ended.
    Destroy(Locator),
}

/// What happened to a session, for its [`SessionEvent`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    Created,
    /// The session's label is read as the event is published.
    LoggedIn {
        previous: Locator,
    },
    LoggedOut {
        previous: Locator,
    },
    RememberMe(bool),
    Revoked,
    Destroyed,
    Expired,
}

/// An event of the session under `session` (after the change), of user `userid`.
#[derive(Debug, Clone, Copy)]
struct Happened {
    event: Event,
    userid: u64,
    session: Locator,
}

/// Vectors that grew past this many entries (a sweep, the end of a user's many sessions) are
/// shrunk back after their delivery.
const KEPT: usize = 1024;

/// What the operation under way changed (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// The shard's log is on: changes are described.
    logging: bool,
    /// `storage.log = "always"` and the log cannot take a change now: changes are refused.
    refusing: bool,
    /// The operation under way was refused for it (counted once per operation by its host).
    refused: std::cell::Cell<bool>,
    changes: Vec<Change>,
    events: Vec<Happened>,
    /// Sessions expired (the metric).
    expired: u64,
    /// Sessions evicted for the memory budget (the metric).
    evicted: u64,
}

impl Outbox {
    /// Nothing to deliver (most operations: reads).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.events.is_empty() && self.expired == 0 && self.evicted == 0
    }

    /// Describe changes from now on (the shard's log is on), or not.
    pub fn set_logging(&mut self, on: bool) {
        self.logging = on;
    }

    /// Whether the operation that ran was refused by [`accepting`](Self::accepting); clears it.
    pub fn take_refused(&mut self) -> bool {
        self.refused.take()
    }

    /// Whether the next operation's changes are refused (its host asks its log first).
    pub fn set_refusing(&mut self, refusing: bool) {
        self.refusing = refusing;
    }

    /// Whether a change may be made now: not while an `"always"` log cannot take it.
    pub fn accepting(&self) -> Result<()> {
        if self.refusing {
            self.refused.set(true);
            Err(ShardLog::refusal())
        } else {
            Ok(())
        }
    }

    fn change(&mut self, change: Change) {
        if self.logging {
            self.changes.push(change);
        }
    }

    /// The whole session `id`, at position `at` of the shard's map, is persisted from now on.
    pub fn put(&mut self, id: &Locator, at: usize) {
        self.change(Change::Put { id: *id, at });
    }

    /// The operation's value of session `id`, at position `at` of the shard's map, was written
    /// (or removed by a write).
    #[inline]
    pub fn value(&mut self, id: &Locator, at: usize) {
        self.change(Change::Value { id: *id, at });
    }

    /// The operation's value of session `id` was removed.
    pub fn remove(&mut self, id: &Locator) {
        self.change(Change::Remove(*id));
    }

    /// The operation's scope of session `id` was cleared, or (`all`) every scope.
    pub fn clear(&mut self, id: &Locator, all: bool) {
        self.change(Change::Clear { id: *id, all });
    }

    /// Session `old` moved to `new` (login, logout), now of `userid`, `persistent` or not.
    pub fn rotate(&mut self, old: &Locator, new: &Locator, userid: u64, persistent: bool) {
        self.change(Change::Rotate { old: *old, new: *new, userid, persistent });
    }

    /// Remember-me of session `id` was switched.
    pub fn persist(&mut self, id: &Locator, persistent: bool) {
        self.change(Change::Persist { id: *id, persistent });
    }

    /// Session `id` ended.
    pub fn destroy(&mut self, id: &Locator) {
        self.change(Change::Destroy(*id));
    }

    /// `event` happened to the session under `session`, of user `userid`. The caller checked
    /// that someone listens.
    pub fn event(&mut self, event: Event, userid: u64, session: &Locator) {
        self.events.push(Happened { event, userid, session: *session });
    }

    /// Events described and not yet delivered.
    #[cfg(test)]
    pub fn events(&self) -> usize {
        self.events.len()
    }

    /// A session expired.
    pub fn expired(&mut self) {
        self.expired += 1;
    }

    /// A session was evicted for the memory budget.
    pub fn evicted(&mut self) {
        self.evicted += 1;
    }

    /// Delivers what the operation (its values under `names`) changed, reading `sessions` as
    /// they are after it: its records to `log` (one per change, in order), its events to the hub
    /// while someone listens, its expiries to their metric. Leaves the outbox empty.
    pub fn deliver(&mut self, names: Names<'_>, sessions: &Sessions, log: &mut ShardLog, hosting: &Hosting) {
        if !self.changes.is_empty() {
            let now = hosting.env.now();
            for change in &self.changes {
                record(log, now, change, names, sessions);
            }
            reset(&mut self.changes);
        }
        if !self.events.is_empty() {
            publish(&self.events, sessions, hosting);
            reset(&mut self.events);
        }
        if self.expired > 0 {
            hosting.metrics.expired.increment(std::mem::take(&mut self.expired));
        }
        if self.evicted > 0 {
            hosting.metrics.evicted.increment(std::mem::take(&mut self.evicted));
        }
    }
}

/// Clears `v`, giving back what a rare large operation made it grow to.
fn reset<T>(v: &mut Vec<T>) {
    v.clear();
    if v.capacity() > KEPT {
        v.shrink_to(KEPT / 16);
    }
}

/// Adds the record of `change` to the operation's records in `log`. A session that is gone
/// (never the case within one operation) gets none.
fn record(log: &mut ShardLog, now: u64, change: &Change, (scope, key): Names<'_>, sessions: &Sessions) {
    let record = |log: &mut ShardLog, change: format::Change<'_>| log.record(now, &change);
    match *change {
        Change::Put { ref id, at } => {
            if let Some(slot) = find(sessions, id, at) {
                record(log, format::Change::Put { id, state: &slot.state });
            }
        }
        Change::Value { ref id, at } => {
            let Some(slot) = find(sessions, id, at) else { return };
            record(
                log,
                match slot.state.get(scope, key) {
                    Some(value) => format::Change::Set { id, scope, key, value },
                    None => format::Change::Remove { id, scope, key },
                },
            );
        }
        Change::Remove(ref id) => record(log, format::Change::Remove { id, scope, key }),
        Change::Clear { ref id, all } => record(log, format::Change::Clear { id, scope: (!all).then_some(scope) }),
        Change::Rotate { ref old, ref new, userid, persistent } => {
            record(log, format::Change::Rotate { old, new, userid, persistent });
        }
        Change::Persist { ref id, persistent } => record(log, format::Change::Persist { id, persistent }),
        Change::Destroy(ref id) => record(log, format::Change::Destroy { id }),
    }
}

/// The session `id`, looked for at position `at` first (where it was when its change was
/// described: no hashing), then by its locator.
fn find<'a>(sessions: &'a Sessions, id: &Locator, at: usize) -> Option<&'a Slot> {
    match sessions.get_index(at) {
        Some((locator, slot)) if locator == id => Some(slot),
        _ => sessions.get(id),
    }
}

/// Publishes `events` while someone listens, each with its handles, its time and (a login's)
/// the session's device label.
fn publish(events: &[Happened], sessions: &Sessions, hosting: &Hosting) {
    let hub = &hosting.events;
    if !hub.wanted() {
        return;
    }
    let env = &hosting.env;
    let handle = |locator: &Locator| env.keyring.handle(locator);
    let at = at_ms(env.now());
    for happened in events {
        let kind = match happened.event {
            Event::Created => EventKind::Created,
            Event::LoggedIn { previous } => {
                let state = sessions.get(&happened.session).map(|slot| &slot.state);
                let label = state.and_then(|s| crate::state::device_value(s, crate::names::LABEL_KEY));
                EventKind::LoggedIn { label, previous: handle(&previous) }
            }
            Event::LoggedOut { previous } => EventKind::LoggedOut { previous: handle(&previous) },
            Event::RememberMe(on) => EventKind::RememberMe { on },
            Event::Revoked => EventKind::Revoked,
            Event::Destroyed => EventKind::Destroyed,
            Event::Expired => EventKind::Expired,
        };
        hub.publish(SessionEvent { kind, userid: happened.userid, session: handle(&happened.session), at });
    }
}
