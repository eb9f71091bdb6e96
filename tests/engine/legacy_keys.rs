//! Sessions stored under the Redis key names of earlier versions (`<p>:{gggg}:s:<random hex>`,
//! index entries of the random part) are found and moved to the names keyed by the locator
//! (`<p>:{ggg}:S:<locator hex>`) on their next use: a get, a login, a destroy, the user's
//! devices list and "log out everywhere". Redis only.

#![cfg(feature = "redis")]

use ::redis::cmd;
use base64::Engine as _;
use draco_session::{SessionEngine, SessionError, SessionId};

use crate::support::*;

/// The key names of session `id` under prefix `p`: (earlier, current). The formulas are the
/// documented layout (`src/redis/keys.rs`): the locator is a BLAKE3 digest of the random part
/// under a fixed key.
fn names(p: &str, id: &SessionId) -> (String, String, String) {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(id.to_string()).unwrap();
    let random: [u8; 16] = bytes[..16].try_into().unwrap();
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let old_group = u16::from_be_bytes([random[0], random[1]]) >> 2;
    let digest = blake3::keyed_hash(b"draco-session locator digest v1.", &random);
    let locator = &digest.as_bytes()[..16];
    let group = u16::from_be_bytes([locator[0], locator[1]]) >> 6;
    (
        format!("{p}:{{{old_group:04x}}}:s:{}", hex(&random)),
        format!("{p}:{{{group:03x}}}:S:{}", hex(locator)),
        hex(&random),
    )
}

/// Moves session `id`'s hash to its earlier name, as an earlier version would have stored it
/// (`DUMP`, `RESTORE`, `DEL`: the two names are in different cluster slots), and its index
/// entry to the earlier form when `user` is given.
async fn make_legacy(raw: &mut Raw, c: &draco_session::Config, id: &SessionId, user: Option<u64>) -> String {
    let p = &c.storage.redis_prefix;
    let (old, new, random) = names(p, id);
    let dump: Vec<u8> = raw.query(cmd("DUMP").arg(&new)).await;
    let ttl: i64 = raw.query(cmd("PTTL").arg(&new)).await;
    assert!(ttl > 0, "the session {new} expires");
    let _: () = raw.query(cmd("RESTORE").arg(&old).arg(ttl).arg(dump)).await;
    let _: i64 = raw.query(cmd("DEL").arg(&new)).await;
    if let Some(user) = user {
        let index = format!("{p}:u:{{{user}}}");
        let member = new.rsplit(":S:").next().map(|l| format!("L{l}")).unwrap();
        let removed: i64 = raw.query(cmd("SREM").arg(&index).arg(member)).await;
        assert_eq!(removed, 1, "the login indexed the session under its locator");
        let _: i64 = raw.query(cmd("SADD").arg(&index).arg(random)).await;
    }
    old
}

async fn exists(raw: &mut Raw, key: &str) -> bool {
    raw.query::<i64>(cmd("EXISTS").arg(key)).await == 1
}

async fn earlier_names_are_read_and_moved_on_use(b: Backend, prefix: &str) {
    let mut c = b.configure(config(2));
    c.storage.redis_prefix = prefix.into();
    // The plain layout, so that the test can name the per-user index (sealed, it is named by a
    // keyed digest of the user id); key names do not depend on the layout.
    c.storage.encrypt = false;
    c.limits.max_sessions_per_user = 0;
    let before = SessionEngine::start_async(c.clone()).await.unwrap();
    let (user, other) = (b.user(5), b.user(6));
    let mut raw = Raw::open(&c).await;

    // A logged-in session with data, an anonymous one, one to log in later, and another user's
    // two sessions for "log out everywhere".
    let mine = before.login(&before.create().await.unwrap().id, user).await.unwrap().id;
    before.insert(&mine, "cart", "items", &3).await.unwrap();
    let anonymous = before.create().await.unwrap().id;
    before.insert(&anonymous, "prefs", "theme", &"dark").await.unwrap();
    let later = before.create().await.unwrap().id;
    let theirs = [
        before.login(&before.create().await.unwrap().id, other).await.unwrap().id,
        before.login(&before.create().await.unwrap().id, other).await.unwrap().id,
    ];
    before.shutdown().await;
    let mut old = Vec::new();
    for (id, user) in
        [(mine, Some(user)), (anonymous, None), (later, None), (theirs[0], Some(other)), (theirs[1], Some(other))]
    {
        old.push(make_legacy(&mut raw, &c, &id, user).await);
    }
    for key in &old {
        assert!(exists(&mut raw, key).await);
    }

    // An engine started now finds them (its start-up scan sees earlier names).
    let e = SessionEngine::start_async(c.clone()).await.unwrap();
    assert_eq!(e.get::<i32>(&mine, "cart", "items").await.unwrap(), Some(3));
    let (_, new, _) = names(prefix, &mine);
    assert!(!exists(&mut raw, &old[0]).await && exists(&mut raw, &new).await, "moved on its first use");
    assert_eq!(e.info(&mine).await.unwrap().userid, user);
    // The devices list reads an earlier index entry through to the moved session.
    let listed = e.sessions_of(user).await.unwrap();
    assert_eq!(listed.iter().map(|s| s.handle).collect::<Vec<_>>(), [e.handle_of(&mine)]);
    // A destroy and a login on sessions still under their earlier names.
    assert!(e.destroy(&anonymous).await.unwrap());
    assert!(!exists(&mut raw, &old[1]).await);
    assert_eq!(e.info(&anonymous).await, Err(SessionError::SessionGone));
    let logged = e.login(&later, user).await.unwrap();
    assert_eq!(logged.userid, user);
    assert!(!exists(&mut raw, &old[2]).await);
    assert_eq!(e.sessions_of(user).await.unwrap().len(), 2);
    // "Log out everywhere" ends both of the other user's, from their earlier index entries.
    assert_eq!(e.logout_user(other).await.unwrap(), 2);
    for (id, key) in theirs.iter().zip(&old[3..]) {
        assert_eq!(e.info(id).await, Err(SessionError::SessionGone));
        assert!(!exists(&mut raw, key).await);
    }
    e.shutdown().await;
}

mod redis {
    #[actix_rt::test]
    async fn earlier_names_are_read_and_moved_on_use() {
        super::earlier_names_are_read_and_moved_on_use(super::Backend::Redis, "legacy-one").await
    }
}

mod redis_cluster {
    #[actix_rt::test]
    async fn earlier_names_are_read_and_moved_on_use() {
        super::earlier_names_are_read_and_moved_on_use(super::Backend::cluster(), "legacy-cluster").await
    }
}
