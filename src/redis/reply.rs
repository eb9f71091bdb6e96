//! A script's answer, typed: its [`Status`], parsed once, and named accessors for the items
//! each script answers (layouts in the `lua/*.lua` opening comments). Every answer ends with
//! one more item, taken off by [`Reply::parse`]: the user-index deadline the script asks its
//! caller to ensure (see `slide` in `lua/prelude.lua`), false when none.

use redis::Value;

use crate::clock::to_system_time;
use crate::error::{Result, SessionError};
use crate::id::SessionId;
use crate::message::SessionInfo;
use crate::state::Lifetimes;

/// The first item of every script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// The operation ran: the session's metadata follows, then the script's own items.
    Ok,
    /// `destroy.lua`, `unlock.lua`: ran, with no metadata.
    Done,
    /// `create*.lua`: the session is made, at the time that follows; the rest of its metadata
    /// is what every new session has.
    New,
    /// The new key is taken (`create*.lua`, `rotate.lua`).
    Exists,
    /// Not done: the caller takes its general path (`create_counter.lua`, `increment.lua`).
    Fallback,
    /// `swap.lua`: the field no longer holds what the caller read; nothing was written.
    Changed,
    /// The session is in another layout than the caller's (`sealed.rs`): migrate, run again.
    Stale,
    /// No such live session.
    Gone,
    /// Remember-me asked of an anonymous session.
    NotLoggedIn,
    /// The live-sessions cap is reached.
    Full,
    /// A new key would pass the per-session cap.
    TooMany,
    /// The value would pass the size cap; its size follows.
    TooLarge,
    /// The session would pass its size cap; the size it would have follows.
    TooBig,
    /// An update's lock expired or passed to another caller before its write.
    Lost,
    /// Another caller's update holds the session.
    Locked,
}

impl Status {
    fn parse(status: &str) -> Result<Self> {
        Ok(match status {
            "ok" => Self::Ok,
            "done" => Self::Done,
            "new" => Self::New,
            "exists" => Self::Exists,
            "fallback" => Self::Fallback,
            "changed" => Self::Changed,
            "stale" => Self::Stale,
            "gone" => Self::Gone,
            "notloggedin" => Self::NotLoggedIn,
            "full" => Self::Full,
            "toomany" => Self::TooMany,
            "toolarge" => Self::TooLarge,
            "toobig" => Self::TooBig,
            "lost" => Self::Lost,
            "locked" => Self::Locked,
            other => return Err(SessionError::internal(format_args!("unexpected Redis script status {other:?}"))),
        })
    }
}

// The "ok" answer, built by `reply(...)` (`load.lua`): {"ok", userid, persistent, created,
// last_access, expires, previous_access, layout mark, extra...}, times in ms. The user id as
// stored (sealed or not, see `sealed.rs`) is turned into its number by `Reply::parse_with`.
const USERID: usize = 1;
const PERSISTENT: usize = 2;
const CREATED: usize = 3;
const LAST_ACCESS: usize = 4;
const EXPIRES: usize = 5;
/// `last_access` before this script's use of the session.
const PREVIOUS_ACCESS: usize = 6;
/// The session's layout mark `k` ("" when plain).
const FORM: usize = 7;
/// Where the script's own items begin.
const EXTRA: usize = 8;

/// `get.lua`, `lock_read.lua`: the field's value, nil when absent.
const VALUE: usize = EXTRA;
/// `remove.lua`: how many fields it deleted (0 or 1).
const REMOVED: usize = EXTRA;
/// `keys.lua`: the names (plain layout) or the fields and values (sealed), an array;
/// `lock_all.lua`: every field and value.
const NAMES: usize = EXTRA;
/// `increment.lua`: the new value, as text.
const COUNTER: usize = EXTRA;
/// `rotate.lua`: the user id before the rotation, as stored.
const PREVIOUS_USER: usize = EXTRA;
/// `destroy.lua`: {"done", userid} (as stored; its number after `parse_with`), nil when it
/// deleted nothing.
const DELETED_USER: usize = 1;
/// `create*.lua`: {"new", now}.
const NEW_AT: usize = 1;
/// `increment.lua`: {"toolarge", size}; writing scripts: {"toobig", size, cap}.
const SIZE: usize = 1;
/// Writing scripts: {"toobig", size, cap}, the byte cap that applied (the session's user's).
const CAP: usize = 2;

/// A script's answer.
pub(super) struct Reply {
    status: Status,
    items: Vec<Value>,
    /// The user id and time (ms) its index must last to, when the script asks for it.
    index: Option<(u64, u64)>,
    /// An "ok" answer's user id as stored.
    stored_user: Option<Vec<u8>>,
}

/// The metadata of an "ok" answer, kept after the rest of it is dropped: its user id,
/// remember-me flag, creation, expiry and last access before the script's use (ms); `None`
/// when malformed.
pub(super) struct Metadata(Option<(u64, bool, u64, u64, u64)>);

impl Reply {
    /// [`parse_with`](Self::parse_with) for answers whose user ids are plain numbers.
    #[cfg(test)]
    pub(super) fn parse(value: Value) -> Result<Self> {
        Self::parse_with(value, |u| {
            std::str::from_utf8(u).ok().and_then(|t| t.parse().ok()).ok_or(SessionError::Internal)
        })
    }

    /// Errors on anything but an array starting with a known status (and ending with the
    /// index deadline, or false). The user ids an answer holds as stored (an "ok" answer's,
    /// a deletion's, the index deadline's) are turned into numbers by `user` (`sealed.rs`),
    /// whose error is the answer's.
    pub(super) fn parse_with(value: Value, user: impl Fn(&[u8]) -> Result<u64>) -> Result<Self> {
        let Value::Array(mut items) = value else {
            return Err(SessionError::internal("unexpected reply from Redis (not an array)"));
        };
        let status = match items.first() {
            Some(Value::BulkString(b)) => std::str::from_utf8(b).unwrap_or("?"),
            Some(Value::SimpleString(s)) => s,
            _ => "?",
        };
        let status = Status::parse(status)?;
        let index = match items.pop() {
            Some(Value::Array(pair)) => match (bytes(&pair, 0), ms(&pair, 1)) {
                (Some(stored), Some(until)) => Some((user(&stored)?, until)),
                _ => None,
            },
            _ => None,
        };
        let mut stored_user = None;
        let at = match status {
            Status::Ok => Some(USERID),
            Status::Done => Some(DELETED_USER),
            _ => None,
        };
        if let Some(at) = at
            && let Some(stored) = bytes(&items, at)
        {
            items[at] = Value::BulkString(user(&stored)?.to_string().into_bytes());
            stored_user = Some(stored);
        }
        Ok(Self { status, items, index, stored_user })
    }

    /// An "ok" answer's layout mark (`sealed.rs`): empty for the plain layout.
    pub(super) fn form(&self) -> &[u8] {
        match self.items.get(FORM) {
            Some(Value::BulkString(b)) => b,
            _ => b"",
        }
    }

    /// An "ok" answer's user id; 0 when it has none.
    pub(super) fn userid(&self) -> u64 {
        str_at(&self.items, USERID).and_then(|t| t.parse().ok()).unwrap_or(0)
    }

    /// An "ok" answer's user id as stored.
    pub(super) fn stored_user(&self) -> Option<&[u8]> {
        self.stored_user.as_deref()
    }

    /// The (name, value) pairs of a sealed `keys.lua` answer or of `lock_all.lua`'s.
    pub(super) fn pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let Some(Value::Array(items)) = self.items.get(NAMES) else { return Vec::new() };
        items.chunks_exact(2).filter_map(|pair| Some((bytes(pair, 0)?, bytes(pair, 1)?))).collect()
    }

    /// The user whose index must last to a time (ms, the engine's clock), and that time: asked
    /// by a script whose use took a logged-in session's expiry past the last one ensured.
    pub(super) fn index_deadline(&self) -> Option<(u64, u64)> {
        self.index
    }

    pub(super) fn status(&self) -> Status {
        self.status
    }

    /// Fills in an "ok" answer's expiry when the script left it to the caller (nil): computed
    /// from the persistent flag, the creation and the last access the answer carries, under
    /// `lifetimes`, as the scripts' own Redis expiry is.
    pub(super) fn with_expiry(mut self, lifetimes: &Lifetimes) -> Self {
        if self.status == Status::Ok && matches!(self.items.get(EXPIRES), Some(Value::Nil)) {
            let persistent = str_at(&self.items, PERSISTENT) == Some("1");
            let expires = match (ms(&self.items, CREATED), ms(&self.items, LAST_ACCESS)) {
                (Some(created), Some(last_access)) => {
                    let ttl = if persistent { lifetimes.persistent_ms } else { lifetimes.volatile_ms };
                    let idle = last_access.saturating_add(ttl);
                    let at = match lifetimes.absolute_ms {
                        0 => idle,
                        absolute => idle.min(created.saturating_add(absolute)),
                    };
                    Value::Int(i64::try_from(at).unwrap_or(i64::MAX))
                }
                _ => Value::Nil,
            };
            self.items[EXPIRES] = expires;
        }
        self
    }

    /// The info of session `id`, just made ("new" answer): anonymous, not remembered, created
    /// and last used at the time the answer carries.
    pub(super) fn new_session(&self, id: SessionId, lifetimes: &Lifetimes) -> Result<SessionInfo> {
        let now = ms(&self.items, NEW_AT).ok_or_else(|| SessionError::internal("malformed new-session reply"))?;
        let expires = match lifetimes.absolute_ms {
            0 => lifetimes.volatile_ms,
            absolute => lifetimes.volatile_ms.min(absolute),
        };
        Ok(SessionInfo {
            id,
            userid: 0,
            persistent: false,
            created: to_system_time(now),
            last_access: to_system_time(now),
            expires: to_system_time(now.saturating_add(expires)),
        })
    }

    /// Of an "ok" answer.
    pub(super) fn metadata(&self) -> Metadata {
        let items = &self.items;
        let userid = str_at(items, USERID).and_then(|t| t.parse().ok());
        let persistent = str_at(items, PERSISTENT).map(|p| p == "1");
        let times = (ms(items, CREATED), ms(items, EXPIRES), ms(items, PREVIOUS_ACCESS));
        Metadata(match (userid, persistent, times) {
            (Some(u), Some(p), (Some(c), Some(e), Some(a))) => Some((u, p, c, e, a)),
            _ => None,
        })
    }

    /// The metadata of an "ok" answer as the info of session `id`.
    pub(super) fn info(&self, id: SessionId) -> Result<SessionInfo> {
        info_at(&self.items, id, LAST_ACCESS)
    }

    /// The value read ([`VALUE`]); `None` when absent.
    pub(super) fn value(&self) -> Option<Vec<u8>> {
        bytes(&self.items, VALUE)
    }

    /// Whether the field was there ([`REMOVED`]).
    pub(super) fn removed(&self) -> bool {
        matches!(self.items.get(REMOVED), Some(Value::Int(1)))
    }

    /// The names listed ([`NAMES`]), in Redis's order.
    pub(super) fn names(&self) -> Vec<String> {
        match self.items.get(NAMES) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The counter's new value ([`COUNTER`]).
    pub(super) fn counter(&self) -> Result<i64> {
        if let Some(Value::Int(n)) = self.items.get(COUNTER) {
            return Ok(*n);
        }
        let text = bytes(&self.items, COUNTER).unwrap_or_default();
        std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| SessionError::internal("unexpected increment reply from Redis"))
    }

    /// The user before a login or logout ([`PREVIOUS_USER`]), as stored.
    pub(super) fn previous_user(&self) -> Option<Vec<u8>> {
        bytes(&self.items, PREVIOUS_USER)
    }

    /// Whose session was deleted ([`DELETED_USER`]): `None` when none was, else its user (0
    /// when anonymous or unreadable).
    pub(super) fn deleted_user(&self) -> Option<u64> {
        text(&self.items, DELETED_USER).map(|t| t.parse().unwrap_or(0))
    }

    /// The size that passed the cap ([`SIZE`]).
    pub(super) fn size(&self) -> usize {
        match self.items.get(SIZE) {
            Some(Value::Int(n)) => usize::try_from(*n).unwrap_or(0),
            _ => 0,
        }
    }

    /// The byte cap a "toobig" answer names; `None` when it names none.
    pub(super) fn cap(&self) -> Option<usize> {
        match self.items.get(CAP) {
            Some(Value::Int(n)) => usize::try_from(*n).ok(),
            _ => None,
        }
    }
}

impl Metadata {
    /// The info of session `id` as it was before the script's use of it: the previous last
    /// access in place of the new one.
    pub(super) fn info_before(&self, id: SessionId) -> Result<SessionInfo> {
        let (userid, persistent, created, expires, last_access) =
            self.0.ok_or_else(|| SessionError::internal("malformed session metadata in Redis"))?;
        Ok(SessionInfo {
            id,
            userid,
            persistent,
            created: to_system_time(created),
            last_access: to_system_time(last_access),
            expires: to_system_time(expires),
        })
    }
}

fn bytes(items: &[Value], i: usize) -> Option<Vec<u8>> {
    match items.get(i) {
        Some(Value::BulkString(b)) => Some(b.clone()),
        Some(Value::SimpleString(s)) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// The text at `i`, borrowed.
fn str_at(items: &[Value], i: usize) -> Option<&str> {
    match items.get(i) {
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok(),
        Some(Value::SimpleString(s)) => Some(s),
        _ => None,
    }
}

fn text(items: &[Value], i: usize) -> Option<String> {
    bytes(items, i).and_then(|b| String::from_utf8(b).ok())
}

/// A time (ms) at `i`: an integer, or an integer as text (the scripts keep times as text).
fn ms(items: &[Value], i: usize) -> Option<u64> {
    match items.get(i) {
        Some(Value::Int(n)) => Some(u64::try_from(*n).unwrap_or(0)),
        Some(Value::BulkString(b)) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn info_at(items: &[Value], id: SessionId, access: usize) -> Result<SessionInfo> {
    let bad = || SessionError::internal("malformed session metadata in Redis");
    let userid = str_at(items, USERID).and_then(|t| t.parse().ok()).ok_or_else(bad)?;
    let persistent = str_at(items, PERSISTENT).ok_or_else(bad)? == "1";
    let ms = |i| ms(items, i).ok_or_else(bad);
    Ok(SessionInfo {
        id,
        userid,
        persistent,
        created: to_system_time(ms(CREATED)?),
        last_access: to_system_time(ms(access)?),
        expires: to_system_time(ms(EXPIRES)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn ok(extra: Vec<Value>) -> Value {
        let mut items = vec![bulk("ok"), bulk("42"), bulk("1"), Value::Int(1_000), Value::Int(3_000)];
        items.extend([Value::Int(9_000), Value::Int(2_000), bulk("")]);
        items.extend(extra);
        items.push(Value::Nil);
        Value::Array(items)
    }

    #[test]
    fn an_unknown_status_or_shape_is_an_internal_error() {
        assert!(matches!(Reply::parse(Value::Array(vec![bulk("maybe")])), Err(SessionError::Internal)));
        assert!(matches!(Reply::parse(Value::Array(vec![Value::Int(1), Value::Nil])), Err(SessionError::Internal)));
        assert!(matches!(Reply::parse(bulk("ok")), Err(SessionError::Internal)));
        let locked = Reply::parse(Value::Array(vec![Value::SimpleString("locked".into()), Value::Nil])).unwrap();
        assert_eq!(locked.status(), Status::Locked);
        assert_eq!(locked.index_deadline(), None);
    }

    #[test]
    fn an_ok_answer_reads_as_named_fields() {
        let id = SessionId::from_parts([7; 16], [1; 8]);
        let reply = Reply::parse(ok(vec![bulk("17")])).unwrap();
        assert_eq!(reply.status(), Status::Ok);
        let info = reply.info(id).unwrap();
        assert_eq!((info.userid, info.persistent), (42, true));
        assert_eq!(info.created, to_system_time(1_000));
        assert_eq!(info.last_access, to_system_time(3_000));
        assert_eq!(info.expires, to_system_time(9_000));
        assert_eq!(reply.metadata().info_before(id).unwrap().last_access, to_system_time(2_000));
        assert_eq!(reply.value().as_deref(), Some(&b"17"[..]));
        assert_eq!(reply.counter().unwrap(), 17);
        assert_eq!(reply.previous_user().as_deref(), Some(&b"17"[..]));
        assert_eq!((reply.form(), reply.stored_user()), (&b""[..], Some(&b"42"[..])));
        assert!(Reply::parse(ok(vec![Value::Int(1)])).unwrap().removed());
        let names = Reply::parse(ok(vec![Value::Array(vec![bulk("b"), bulk("a")])])).unwrap().names();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn other_answers_read_their_own_items() {
        let done = |user: Value| Reply::parse(Value::Array(vec![bulk("done"), user, Value::Nil])).unwrap();
        assert_eq!(done(bulk("42")).deleted_user(), Some(42));
        assert_eq!(done(Value::Nil).deleted_user(), None);
        let too_large = Value::Array(vec![bulk("toolarge"), Value::Int(99), Value::Nil]);
        assert_eq!(Reply::parse(too_large).unwrap().size(), 99);
    }

    #[test]
    fn the_last_item_is_the_index_deadline() {
        let pair = Value::Array(vec![bulk("42"), Value::Int(90_000)]);
        let refused = Reply::parse(Value::Array(vec![bulk("toomany"), pair.clone()])).unwrap();
        assert_eq!((refused.status(), refused.index_deadline()), (Status::TooMany, Some((42, 90_000))));
        let reply = Reply::parse(ok(vec![bulk("17")])).unwrap();
        assert_eq!(reply.index_deadline(), None);
        assert_eq!(reply.value().as_deref(), Some(&b"17"[..]));
        let mut items = vec![bulk("ok"), bulk("42"), bulk("1"), Value::Int(1_000), Value::Int(3_000)];
        items.extend([Value::Int(9_000), Value::Int(2_000), bulk("k1"), bulk("17"), pair]);
        let reply = Reply::parse(Value::Array(items)).unwrap();
        assert_eq!((reply.index_deadline(), reply.counter().unwrap()), (Some((42, 90_000)), 17));
    }
}
