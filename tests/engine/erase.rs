//! `erase_user`: every session of the user ends, nobody else's, and on Redis no key holds the
//! user's data or names their sessions afterwards. On memory, Redis and Redis Cluster (see
//! `support/engine.rs`); what the memory backend leaves on disk is in
//! `tests/persistence/erase.rs`.

#[cfg(feature = "redis")]
use std::collections::HashSet;

use draco_session::SessionError;

use crate::support::canary::canary_sessions;
use crate::support::*;

const CANARY: &str = "erase-canary-of-the-user-5c1f";
const OTHER_CANARY: &str = "erase-canary-of-another-user-9b2e";

async fn erase_user_ends_every_session_of_the_user_and_no_one_elses(b: Backend) {
    let mut c = config(4);
    c.limits.max_sessions_per_user = 0;
    let e = b.engine_with_clock(c).await.0;
    let (user, other_user, nobody) = (b.user(31), b.user(32), b.user(33));
    let mine = canary_sessions(&e, user, 9, CANARY).await;
    let theirs = canary_sessions(&e, other_user, 3, OTHER_CANARY).await;
    let anonymous = e.create().await.unwrap().id;
    e.insert(&anonymous, "a", "b", &1).await.unwrap();

    assert_eq!(e.erase_user(user).await.unwrap(), mine.len());
    for id in &mine {
        assert_eq!(e.info(id).await, Err(SessionError::SessionGone));
        assert_eq!(e.get::<String>(id, "profile", "note").await, Err(SessionError::SessionGone));
        assert_eq!(e.insert(id, "cart", "items", &1).await, Err(SessionError::SessionGone), "no write revives it");
    }
    assert!(e.sessions_of(user).await.unwrap().is_empty());
    for (i, id) in theirs.iter().enumerate() {
        assert_eq!(e.info(id).await.unwrap().userid, other_user);
        let note: String = e.get(id, "profile", "note").await.unwrap().unwrap();
        assert_eq!(note, format!("{OTHER_CANARY} before login {i}"));
    }
    assert_eq!(e.sessions_of(other_user).await.unwrap().len(), theirs.len());
    assert_eq!(e.get::<i32>(&anonymous, "a", "b").await.unwrap(), Some(1));
    assert_eq!(e.erase_user(user).await.unwrap(), 0, "nothing left to end");
    assert_eq!(e.erase_user(nobody).await.unwrap(), 0, "an unknown user");
    // The user may come back: a new login works and is a session like any other.
    let again = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
    assert_eq!(e.sessions_of(user).await.unwrap().len(), 1);
    assert_eq!(e.erase_user(user).await.unwrap(), 1);
    assert_eq!(e.info(&again).await, Err(SessionError::SessionGone));
}

both!(erase_user_ends_every_session_of_the_user_and_no_one_elses);
cluster!(erase_user_ends_every_session_of_the_user_and_no_one_elses);

/// Redis only: every key of the database read raw after an erasure.
#[cfg(feature = "redis")]
mod raw {
    use ::redis::aio::MultiplexedConnection;
    use ::redis::{Value, cmd};

    use super::*;

    /// Every byte string inside a reply, concatenated with separators.
    fn bytes_of(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::BulkString(b) => out.extend_from_slice(b),
            Value::SimpleString(s) => out.extend_from_slice(s.as_bytes()),
            Value::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Array(items) | Value::Set(items) => items.iter().for_each(|i| bytes_of(i, out)),
            Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
                bytes_of(k, out);
                bytes_of(v, out);
            }),
            _ => {}
        }
        out.push(0);
    }

    fn contains(hay: &[u8], needle: &str) -> bool {
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    /// A connection of the test's own to the engine's Redis server.
    async fn connect(c: &draco_session::Config) -> MultiplexedConnection {
        ::redis::Client::open(c.storage.redis_url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// Every key of the database with everything it holds, read by its type.
    async fn dump(conn: &mut MultiplexedConnection) -> Vec<(String, Vec<u8>)> {
        let keys: Vec<String> = cmd("KEYS").arg("*").query_async(conn).await.unwrap();
        let mut out = Vec::new();
        for key in keys {
            let kind: String = cmd("TYPE").arg(&key).query_async(conn).await.unwrap();
            let read = match kind.as_str() {
                "hash" => cmd("HGETALL").arg(&key).clone(),
                "set" => cmd("SMEMBERS").arg(&key).clone(),
                "stream" => cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
                "string" => cmd("GET").arg(&key).clone(),
                "list" => cmd("LRANGE").arg(&key).arg(0).arg(-1).clone(),
                "zset" => cmd("ZRANGE").arg(&key).arg(0).arg(-1).arg("WITHSCORES").clone(),
                "none" => continue,
                other => panic!("key {key} of unexpected type {other}"),
            };
            let value: Value = read.query_async(conn).await.unwrap();
            let mut bytes = Vec::new();
            bytes_of(&value, &mut bytes);
            let dumped: Value = cmd("DUMP").arg(&key).query_async(conn).await.unwrap();
            bytes_of(&dumped, &mut bytes);
            out.push((key, bytes));
        }
        out
    }

    /// After `erase_user`, no key of the database holds the user's canary, names one of the
    /// user's sessions (their random parts, read from the index before) or is the user's
    /// index; the event stream keeps only the erasure's own "revoked" entries of the user.
    /// The other user's data is still there.
    #[actix_rt::test]
    async fn on_redis_no_key_holds_the_erased_users_data_or_names_their_sessions() {
        let b = Backend::Redis;
        let mut c = b.configure(config(1));
        c.limits.max_sessions_per_user = 0;
        // Stored plain, so that every copy of the data is visible to this check (sealed, the
        // erasure deletes the same keys: the next test).
        c.storage.encrypt = false;
        let e = start_configured(c.clone(), None).await;
        let mut conn = connect(&c).await;
        let (user, other_user) = (41, 42);
        let mine = canary_sessions(&e, user, 5, CANARY).await;
        canary_sessions(&e, other_user, 2, OTHER_CANARY).await;
        let index = format!("{}:u:{{{user}}}", c.storage.redis_prefix);
        let members: Vec<String> = cmd("SMEMBERS").arg(&index).query_async(&mut conn).await.unwrap();
        assert_eq!(members.len(), mine.len());
        let before = dump(&mut conn).await;
        assert!(before.iter().any(|(_, v)| contains(v, CANARY)), "the canary is readable before: the check sees it");

        assert_eq!(e.erase_user(user).await.unwrap(), mine.len());
        let after = dump(&mut conn).await;
        let names: HashSet<&str> = after.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!names.contains(index.as_str()), "the user's index is gone");
        for (key, bytes) in &after {
            assert!(!contains(bytes, CANARY), "{key} still holds the erased user's data");
            for member in &members {
                assert!(!key.contains(member.as_str()), "{key} names an erased session");
            }
        }
        assert!(after.iter().any(|(_, v)| contains(v, OTHER_CANARY)), "the other user's data stays");
        // The stream: the user's entries from before are gone; only the erasure's own
        // "revoked" events of the user remain (user id, a dead session's handle, a time).
        let stream = format!("{}:events", c.storage.redis_prefix);
        let entries: ::redis::streams::StreamRangeReply =
            cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut conn).await.unwrap();
        let field = |e: &::redis::streams::StreamId, f: &str| e.get::<String>(f).unwrap_or_default();
        let of_user: Vec<String> =
            entries.ids.iter().filter(|e| field(e, "u") == user.to_string()).map(|e| field(e, "k")).collect();
        assert_eq!(of_user, vec!["revoked".to_owned(); mine.len()]);
        assert!(entries.ids.iter().any(|e| field(e, "u") == other_user.to_string() && field(e, "k") == "login"));
        e.shutdown().await;
    }

    /// Sealed (the default): the user's index (named by a pseudonym) and every key naming
    /// one of the user's sessions are gone; the other user's index and sessions stay.
    #[actix_rt::test]
    async fn on_redis_sealed_no_key_names_the_erased_users_sessions_or_index() {
        let mut c = Backend::Redis.configure(config(1));
        c.limits.max_sessions_per_user = 0;
        let e = start_configured(c.clone(), None).await;
        let mut conn = connect(&c).await;
        let prefix = c.storage.redis_prefix.clone();
        let indexes = |conn: &mut MultiplexedConnection| {
            let pattern = format!("{prefix}:u:*");
            let mut conn = conn.clone();
            async move { cmd("KEYS").arg(pattern).query_async::<Vec<String>>(&mut conn).await.unwrap() }
        };
        canary_sessions(&e, 7, 2, OTHER_CANARY).await;
        let theirs = indexes(&mut conn).await;
        assert_eq!(theirs.len(), 1);
        let mine = canary_sessions(&e, 8, 4, CANARY).await;
        let both = indexes(&mut conn).await;
        assert_eq!(both.len(), 2);
        let my_index: Vec<&String> = both.iter().filter(|k| !theirs.contains(k)).collect();
        let members: Vec<String> = cmd("SMEMBERS").arg(my_index[0]).query_async(&mut conn).await.unwrap();
        assert_eq!(members.len(), mine.len());

        assert_eq!(e.erase_user(8).await.unwrap(), mine.len());
        assert_eq!(indexes(&mut conn).await, theirs, "the erased user's index is gone, the other's stays");
        let keys: Vec<String> = cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        for key in &keys {
            for member in &members {
                assert!(!key.contains(member.as_str()), "{key} names an erased session");
            }
        }
        assert!(keys.iter().filter(|k| !k.contains(":u:") && !k.ends_with(":events")).count() >= 2, "{keys:?}");
        e.shutdown().await;
    }
}
