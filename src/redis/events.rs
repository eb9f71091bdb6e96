//! Session events on Redis: the capped stream `<storage.redis_prefix>:events` (`draco:events`
//! by default), one per app sharing the server.
//!
//! A new session's "created" event (the one every new visitor causes) is appended by the
//! creating script itself on one Redis server: same step, no extra round trip. Every other
//! event, and on a Redis Cluster every event, is appended by the instance that made the change
//! right after it succeeded (one `XADD … MAXLEN ~ events.redis_stream_len`; a failure is
//! logged, the change stands): a stream is one key, so one cluster slot, which the session
//! scripts, touching only their own session's slot, cannot reach. An instance that dies between
//! a change and its `XADD` loses that one event.
//!
//! While an instance has a subscriber, one reader task reads the stream from where it stood
//! when the first subscriber came (`XREAD BLOCK` on a connection of its own) and hands each
//! entry to the instance's [`EventHub`]; so every subscriber sees every instance's events,
//! its own instance's included, each once. It stops when the last subscriber goes, and
//! survives Redis outages (it reconnects and goes on from the last entry it read).
//!
//! Entry fields: `k` kind name, `u` user id, `s` session handle, `t` time (ms), and `p`
//! previous handle (login, logout), `l` device label (login), `r` remember-me `1`/`0`. With
//! `storage.encrypt` (see `sealed.rs`) the user id and label are instead one box, `x`, bound to
//! the entry's kind, handle and time (a "created" event, always anonymous, keeps `u` = `0`);
//! every instance with the same secret opens it, and one that cannot skips the entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::streams::{StreamRangeReply, StreamReadReply};
use redis::{FromRedisValue, Value};

use super::conn::Dedicated;
use super::keys::SessionKeys;
use super::sealed::Seal;
use super::store::{Core, RedisStore};
use crate::error::Result;
use crate::events::{EventKind, SessionEvent, Subscription, at_ms};
use crate::id::{Locator, SessionHandle};

/// How long one `XREAD` waits for entries before the reader looks at its subscribers again.
const BLOCK_MS: u64 = 500;
/// Most entries one `XREAD` takes.
const BATCH: usize = 256;

impl Core {
    /// Appends an event of the session whose locator is `locator`.
    pub(super) async fn publish(&self, kind: EventKind, userid: u64, locator: &Locator) {
        if self.stream_len == 0 {
            return;
        }
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.stream()).arg("MAXLEN").arg("~").arg(self.stream_len).arg("*");
        let (handle, at) = (self.keyring.handle(locator).to_string(), self.clock.now_ms().to_string());
        let label = match &kind {
            EventKind::LoggedIn { label, .. } => label.as_deref(),
            _ => None,
        };
        cmd.arg("k").arg(kind.name());
        let sealed = self.seal.event(&event_aad(kind.name(), &handle, &at), userid, label);
        match &sealed {
            Some(sealed) => cmd.arg("x").arg(sealed),
            None => cmd.arg("u").arg(userid),
        };
        cmd.arg("s").arg(&handle).arg("t").arg(&at);
        match &kind {
            EventKind::LoggedIn { label, previous } => {
                cmd.arg("p").arg(previous.to_string());
                if let Some(label) = label
                    && sealed.is_none()
                {
                    cmd.arg("l").arg(label);
                }
            }
            EventKind::LoggedOut { previous } => {
                cmd.arg("p").arg(previous.to_string());
            }
            EventKind::RememberMe { on } => {
                cmd.arg("r").arg(u8::from(*on));
            }
            _ => {}
        }
        if let Err(e) = self.link.query::<Value>(&cmd).await {
            log::warn!("session event '{}' not written to Redis: {e}", kind.name());
        }
    }

    /// The handle a creating script appends its "created" event with, when it does: on one
    /// server it appends in the same step, at no extra round trip (its other argument is
    /// [`stream_len_arg`](Core::stream_len_arg)); on a cluster (another slot) or with events
    /// off, it does not.
    pub(super) fn creation_event(&self, id: &crate::id::SessionId) -> Option<[u8; 22]> {
        if self.stream_len == 0 || self.link.is_cluster() {
            return None;
        }
        Some(self.keyring.handle(id.locator()).text())
    }

    /// A creating script's keys: the session's, and the stream when it appends the event.
    pub(super) fn creation_keys<'a>(&'a self, k: &'a SessionKeys, appended: bool) -> ([&'a str; 3], usize) {
        ([k.session.as_str(), k.lock.as_str(), self.keys.stream()], if appended { 3 } else { 2 })
    }

    /// Deletes every entry of `userid` from the stream (`SessionEngine::erase_user`): read
    /// through in batches (`XRANGE`), the user's entries deleted (`XDEL`); how many. Read even
    /// with `events.redis_stream_len = 0`: entries written before it was set may be there.
    pub(super) async fn forget_events(&self, userid: u64) -> Result<usize> {
        let stream = self.keys.stream();
        let (mut from, mut deleted) = ("-".to_owned(), 0);
        loop {
            let batch: StreamRangeReply =
                self.link.query(redis::cmd("XRANGE").arg(stream).arg(&from).arg("+").arg("COUNT").arg(BATCH)).await?;
            let mine: Vec<&str> = batch
                .ids
                .iter()
                // Sealed entries name the user inside their box: read like the event reader does.
                .filter(|e| event_of(&e.map, &self.seal).is_some_and(|event| event.userid == userid))
                .map(|e| e.id.as_str())
                .collect();
            if !mine.is_empty() {
                deleted += self.link.query::<usize>(redis::cmd("XDEL").arg(stream).arg(&mine)).await?;
            }
            match batch.ids.last().and_then(|last| next_id(&last.id)) {
                Some(next) if batch.ids.len() == BATCH => from = next,
                _ => return Ok(deleted),
            }
        }
    }

    /// The id of the stream's last entry now (`0-0` when empty): where a new reader starts.
    async fn last_event_id(&self) -> Result<String> {
        let last: StreamRangeReply = self
            .link
            .query(redis::cmd("XREVRANGE").arg(self.keys.stream()).arg("+").arg("-").arg("COUNT").arg(1))
            .await?;
        Ok(last.ids.first().map_or_else(|| "0-0".to_owned(), |e| e.id.clone()))
    }
}

impl RedisStore {
    /// A subscription to every instance's events; starts this instance's reader if it has
    /// none running.
    pub(crate) async fn subscribe(&self) -> Result<Subscription> {
        self.check_open()?;
        if self.core.stream_len == 0 {
            log::warn!("session events subscribed to, but events.redis_stream_len = 0 writes none to Redis");
        }
        let subscription = self.core.events.subscribe();
        if !self.core.reading.swap(true, Ordering::SeqCst) {
            let start = match self.run(false, |c| async move { c.last_event_id().await }).await {
                Ok(start) => start,
                Err(e) => {
                    self.core.reading.store(false, Ordering::SeqCst);
                    return Err(e);
                }
            };
            self.runtime.detach(read(self.core.clone(), start));
        }
        Ok(subscription)
    }
}

/// The reader: hands every entry after `from` to the instance's subscribers, while there are
/// any.
async fn read(core: Arc<Core>, mut from: String) {
    let mut conn: Option<Dedicated> = None;
    let mut failing = false;
    loop {
        if core.stopped.load(Ordering::Relaxed) || !still_wanted(&core) {
            return;
        }
        let reader = match &mut conn {
            Some(c) => c,
            None => {
                match Dedicated::open(&core.url, core.link.is_cluster(), Duration::from_millis(BLOCK_MS + 2000)).await {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            log::warn!("session events: cannot reach Redis at {} to read them: {e}", core.link.url());
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
        };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(BATCH).arg("BLOCK").arg(BLOCK_MS).arg("STREAMS").arg(core.keys.stream()).arg(&from);
        match reader.query::<Option<StreamReadReply>>(&cmd).await {
            Ok(reply) => {
                if std::mem::take(&mut failing) {
                    log::info!("session events: reading from Redis at {} again", core.link.url());
                }
                for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    match event_of(&entry.map, &core.seal) {
                        Some(event) => core.events.publish(event),
                        None => {
                            log::debug!(
                                "session events: entry {} of {} not understood, skipped",
                                entry.id,
                                core.keys.stream()
                            )
                        }
                    }
                    from = entry.id;
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    log::warn!("session events: reading {} failed: {e}; retrying", core.keys.stream());
                }
                conn = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The smallest stream id after `id` (`XRANGE`'s exclusive `(` needs Redis 6.2).
fn next_id(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
    Some(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms.checked_add(1)?),
    })
}

/// Whether the reader should go on: someone subscribes. When nobody does, it gives up its
/// place, unless a subscriber came meanwhile and found it still running.
fn still_wanted(core: &Core) -> bool {
    if core.events.wanted() {
        return true;
    }
    core.reading.store(false, Ordering::SeqCst);
    // A subscriber that came after the check above saw `reading` set and started no reader.
    core.events.wanted() && !core.reading.swap(true, Ordering::SeqCst)
}

/// What an event's box is bound to: its kind, session handle and time, as the entry has them.
fn event_aad(kind: &str, handle: &str, at: &str) -> Vec<u8> {
    format!("draco-session event {kind} {handle} {at}").into_bytes()
}

/// The event an entry stands for; `None` for one this version does not know, or whose box
/// `seal` cannot open.
fn event_of(map: &HashMap<String, Value>, seal: &Seal) -> Option<SessionEvent> {
    let text = |f: &str| map.get(f).and_then(|v| String::from_redis_value(v).ok());
    let number = |f: &str| text(f)?.parse::<u64>().ok();
    let handle = |f: &str| text(f)?.parse::<SessionHandle>().ok();
    let (userid, label) = match map.get("x") {
        Some(sealed) => {
            let sealed = Vec::<u8>::from_redis_value(sealed).ok()?;
            seal.open_event(&event_aad(&text("k")?, &text("s")?, &text("t")?), &sealed)?
        }
        None => (number("u")?, text("l")),
    };
    let kind = match text("k")?.as_str() {
        "created" => EventKind::Created,
        "login" => EventKind::LoggedIn { label, previous: handle("p")? },
        "logout" => EventKind::LoggedOut { previous: handle("p")? },
        "remember_me" => EventKind::RememberMe { on: text("r")? == "1" },
        "revoked" => EventKind::Revoked,
        "destroyed" => EventKind::Destroyed,
        "expired" => EventKind::Expired,
        _ => return None,
    };
    Some(SessionEvent { kind, userid, session: handle("s")?, at: at_ms(number("t")?) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&str, &str)]) -> HashMap<String, Value> {
        fields.iter().map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec()))).collect()
    }

    fn plain() -> Seal {
        let ring = crate::id::Keyring::from_secrets(b"events test secret, 32 bytes or more", &[]).unwrap();
        Seal::new(&ring, false)
    }

    #[test]
    fn sealed_entries_read_back_with_the_secret_only() {
        let ring = crate::id::Keyring::from_secrets(b"events test secret, 32 bytes or more", &[]).unwrap();
        let seal = Seal::new(&ring, true);
        let h = "AAAAAAAAAAAAAAAAAAAAAA";
        let sealed = seal.event(&event_aad("login", h, "1000"), 4242, Some("Firefox")).unwrap();
        let mut entry = map(&[("k", "login"), ("s", h), ("t", "1000"), ("p", h)]);
        entry.insert("x".into(), Value::BulkString(sealed));
        let login = event_of(&entry, &seal).expect("a login");
        assert_eq!(login.userid, 4242);
        assert!(matches!(login.kind, EventKind::LoggedIn { label: Some(ref l), .. } if l == "Firefox"));
        // Another secret, or the box moved to another time: skipped.
        let other = crate::id::Keyring::from_secrets(b"another events secret, 32 bytes or more", &[]).unwrap();
        assert!(event_of(&entry, &Seal::new(&other, true)).is_none());
        entry.insert("t".into(), Value::BulkString(b"1001".to_vec()));
        assert!(event_of(&entry, &seal).is_none());
    }

    #[test]
    fn entries_read_back_as_the_events_written() {
        let h = "AAAAAAAAAAAAAAAAAAAAAA";
        let seal = plain();
        let event_of = |m: &HashMap<String, Value>| event_of(m, &seal);
        let login = event_of(&map(&[("k", "login"), ("u", "7"), ("s", h), ("t", "1000"), ("p", h), ("l", "Firefox")]));
        let login = login.expect("a login");
        assert_eq!(login.userid, 7);
        assert_eq!(login.at, at_ms(1000));
        assert!(matches!(login.kind, EventKind::LoggedIn { label: Some(ref l), .. } if l == "Firefox"));
        let on = event_of(&map(&[("k", "remember_me"), ("u", "7"), ("s", h), ("t", "1"), ("r", "1")]));
        assert_eq!(on.map(|e| e.kind), Some(EventKind::RememberMe { on: true }));
        // Unknown kinds, missing or malformed fields: skipped, never a panic.
        assert!(event_of(&map(&[("k", "teleported"), ("u", "7"), ("s", h), ("t", "1")])).is_none());
        assert!(event_of(&map(&[("k", "created"), ("u", "x"), ("s", h), ("t", "1")])).is_none());
        assert!(event_of(&map(&[("k", "created"), ("u", "1"), ("s", "short"), ("t", "1")])).is_none());
        assert!(event_of(&map(&[("k", "login"), ("u", "1"), ("s", h), ("t", "1")])).is_none());
    }

    #[test]
    fn the_id_after_a_stream_id() {
        assert_eq!(next_id("5-0").as_deref(), Some("5-1"));
        assert_eq!(next_id(&format!("5-{}", u64::MAX)).as_deref(), Some("6-0"));
        assert_eq!(next_id("garbage"), None);
    }
}
