//! Session data sealed at rest on Redis (`storage.encrypt`, on by default): a canary written
//! through the API — a value, its scope and key names, a user id, a device label — is absent
//! from every key's raw content (as text, hex and base64), and reads back through the API, after
//! a restart, and under a rotated secret; an engine without the key gets an error, never data;
//! sessions written plain (`encrypt = false`, as before sealing) still read and are rewritten
//! sealed on their next use; a tampered field is an error. Redis and Redis Cluster.

#![cfg(feature = "redis")]

use ::redis::Value;
use base64::Engine as _;
use draco_session::{Config, SessionError};

use crate::support::*;

const VALUE: &str = "canary-value-Zq8Xw";
const SCOPE: &str = "canary-scope-Jm4Pd";
const KEY: &str = "canary-key-Rt7Lc";
const LABEL: &str = "Canary Browser 77 on CanaryOS";
/// Added to the test's user: a user id no digest or box would spell by chance.
const USER_BASE: u64 = 8_734_512_093_000;
const OTHER_SECRET: &str = "a second engine secret, at least 32 bytes";

impl Raw {
    /// Every key of the engine (its own prefix; on one server, every key of its database).
    async fn keys(&mut self, c: &Config) -> Vec<String> {
        let pattern = if c.storage.redis_cluster { format!("{}:*", c.storage.redis_prefix) } else { "*".into() };
        let mut keys: Vec<String> = self.query(::redis::cmd("KEYS").arg(pattern)).await;
        keys.sort();
        keys
    }

    /// Each key's name and raw content, read by its type.
    async fn contents(&mut self, c: &Config) -> Vec<(String, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        for key in self.keys(c).await {
            let kind: String = self.query(::redis::cmd("TYPE").arg(&key)).await;
            let mut cmd = match kind.as_str() {
                "hash" => ::redis::cmd("HGETALL"),
                "string" => ::redis::cmd("GET"),
                "set" => ::redis::cmd("SMEMBERS"),
                "list" => {
                    let mut cmd = ::redis::cmd("LRANGE");
                    cmd.arg(&key).arg(0).arg(-1);
                    cmd
                }
                "zset" => {
                    let mut cmd = ::redis::cmd("ZRANGE");
                    cmd.arg(&key).arg(0).arg(-1).arg("WITHSCORES");
                    cmd
                }
                "stream" => {
                    let mut cmd = ::redis::cmd("XRANGE");
                    cmd.arg(&key).arg("-").arg("+");
                    cmd
                }
                "none" => continue, // expired meanwhile
                other => panic!("key {key} of an unexpected type {other}"),
            };
            if matches!(kind.as_str(), "hash" | "string" | "set") {
                cmd.arg(&key);
            }
            let value: Value = self.query(&cmd).await;
            let mut parts = vec![key.clone().into_bytes()];
            flatten(&value, &mut parts);
            out.push((key, parts));
        }
        out
    }

    /// The session hashes (one server: the engine's database holds only its own).
    async fn sessions(&mut self, c: &Config) -> Vec<String> {
        self.keys(c).await.into_iter().filter(|k| k.contains("}:S:")).collect()
    }
}

fn flatten(value: &Value, out: &mut Vec<Vec<u8>>) {
    match value {
        Value::BulkString(b) => out.push(b.clone()),
        Value::SimpleString(s) => out.push(s.clone().into_bytes()),
        Value::Int(n) => out.push(n.to_string().into_bytes()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| flatten(v, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
}

/// Each canary as text, hex (both cases) and base64 (standard and URL-safe, padded or not).
fn needles(canaries: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for c in canaries {
        let hex: String = c.bytes().map(|b| format!("{b:02x}")).collect();
        out.push((format!("{c:?} as text"), c.clone().into_bytes()));
        out.push((format!("{c:?} as hex"), hex.clone().into_bytes()));
        out.push((format!("{c:?} as HEX"), hex.to_uppercase().into_bytes()));
        for (name, b64) in [
            ("base64", base64::engine::general_purpose::STANDARD.encode(c)),
            ("base64 unpadded", base64::engine::general_purpose::STANDARD_NO_PAD.encode(c)),
            ("url-safe base64", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c)),
        ] {
            out.push((format!("{c:?} as {name}"), b64.into_bytes()));
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The canaries found in any key's name or content, with where.
async fn found(raw: &mut Raw, c: &Config, canaries: &[String]) -> Vec<String> {
    let needles = needles(canaries);
    let mut hits = Vec::new();
    for (key, parts) in raw.contents(c).await {
        for part in &parts {
            for (what, needle) in &needles {
                if holds(part, needle) {
                    hits.push(format!("{what} in {key}"));
                }
            }
        }
    }
    hits
}

fn canaries(user: u64) -> Vec<String> {
    [VALUE, SCOPE, KEY, LABEL].into_iter().map(str::to_owned).chain([user.to_string()]).collect()
}

/// The test's config: a prefix of its own (the cluster's keyspace is shared).
fn sealed_config(b: Backend, name: &str, user: u64) -> Config {
    let mut c = config(2);
    c.storage.redis_prefix = format!("{name}-{}", user % 1_000_000);
    b.configure(c)
}

async fn a_canary_is_nowhere_in_redis_and_reads_back(b: Backend) {
    let user = USER_BASE + b.user(1);
    let c = sealed_config(b, "sealed", user);
    assert!(c.storage.encrypt, "on by default");
    let e = start_configured(c.clone(), None).await;
    let s = e.create().await.unwrap().id;
    e.insert(&s, SCOPE, KEY, &VALUE).await.unwrap();
    e.insert(&s, "__draco.device", "label", &LABEL).await.unwrap();
    let s = e.login(&s, user).await.unwrap().id;
    e.set_persistent(&s, true).await.unwrap();
    assert_eq!(e.increment(&s, SCOPE, "visits", 5).await.unwrap(), 5);
    let mut raw = Raw::open(&c).await;
    let keys = raw.keys(&c).await;
    assert!(keys.iter().any(|k| k.contains("}:S:")) && keys.iter().any(|k| k.contains(":u:")), "{keys:?}");
    assert_eq!(found(&mut raw, &c, &canaries(user)).await, Vec::<String>::new());

    // Everything reads back through the API, on this engine and after a restart.
    for engine in [e.clone(), start_configured(c.clone(), None).await] {
        assert_eq!(engine.get::<String>(&s, SCOPE, KEY).await.unwrap().as_deref(), Some(VALUE));
        assert_eq!(engine.keys(&s, SCOPE).await.unwrap(), [KEY, "visits"]);
        let info = engine.info(&s).await.unwrap();
        assert_eq!((info.userid, info.persistent), (user, true));
        let listed = engine.sessions_of(user).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].label.as_deref(), Some(LABEL));
    }
    assert_eq!(e.increment(&s, SCOPE, "visits", 1).await.unwrap(), 6);

    // A rotated secret (the old one in previous_secrets) reads it, and rewrites it under the new one.
    let mut rotated = c.clone();
    rotated.session.secret = Some(OTHER_SECRET.into());
    rotated.session.previous_secrets = c.session.secret.clone().into_iter().collect();
    let r = start_configured(rotated, None).await;
    assert_eq!(r.get::<String>(&s, SCOPE, KEY).await.unwrap().as_deref(), Some(VALUE));
    assert_eq!(r.info(&s).await.unwrap().userid, user);
    assert_eq!(r.sessions_of(user).await.unwrap().len(), 1);
    assert_eq!(found(&mut raw, &c, &canaries(user)).await, Vec::<String>::new());
    // Now only the new secret opens its values: the engine without it gets an error, not data.
    let err = e.get::<String>(&s, SCOPE, KEY).await.unwrap_err();
    assert!(matches!(err, SessionError::Damaged(_)), "{err:?}");
    assert!(err.to_string().contains("previous_secrets"), "{err}");
    assert_eq!(r.get::<String>(&s, SCOPE, KEY).await.unwrap().as_deref(), Some(VALUE));
    assert_eq!(r.logout_user(user).await.unwrap(), 1);
}

async fn plain_sessions_still_read_and_are_rewritten_sealed(b: Backend) {
    let user = USER_BASE + b.user(2);
    let c = sealed_config(b, "unsealed", user);
    let mut plain = c.clone();
    plain.storage.encrypt = false;
    // Events are not rewritten: the plain engine writes none (a capped stream's entries go
    // only as newer ones push them out).
    plain.events.redis_stream_len = 0;
    let p = start_configured(plain, None).await;
    let s = p.create().await.unwrap().id;
    p.insert(&s, SCOPE, KEY, &VALUE).await.unwrap();
    p.insert(&s, "__draco.device", "label", &LABEL).await.unwrap();
    let s = p.login(&s, user).await.unwrap().id;
    p.increment(&s, SCOPE, "visits", 2).await.unwrap();
    let mut raw = Raw::open(&c).await;
    let seen = found(&mut raw, &c, &canaries(user)).await;
    for canary in canaries(user) {
        assert!(seen.iter().any(|hit| hit.starts_with(&format!("{canary:?} as text"))), "{canary} plain: {seen:?}");
    }

    // An engine that seals reads it, and its first use rewrites it sealed (its index too).
    let e = start_configured(c.clone(), None).await;
    assert_eq!(e.get::<String>(&s, SCOPE, KEY).await.unwrap().as_deref(), Some(VALUE));
    assert_eq!(found(&mut raw, &c, &canaries(user)).await, Vec::<String>::new());
    assert_eq!(e.info(&s).await.unwrap().userid, user);
    assert_eq!(e.increment(&s, SCOPE, "visits", 1).await.unwrap(), 3);
    assert_eq!(e.keys(&s, SCOPE).await.unwrap(), [KEY, "visits"]);
    let listed = e.sessions_of(user).await.unwrap();
    assert_eq!((listed.len(), listed[0].label.as_deref()), (1, Some(LABEL)));

    // With encrypt off, sealed data still reads (and is written plain again).
    assert_eq!(p.get::<String>(&s, SCOPE, KEY).await.unwrap().as_deref(), Some(VALUE));
    assert_eq!(p.increment(&s, SCOPE, "visits", 1).await.unwrap(), 4);
    assert_eq!(p.sessions_of(user).await.unwrap().len(), 1);
    assert_eq!(e.logout_user(user).await.unwrap(), 1);
}

/// A field changed in Redis, moved to another name, or sealed under another key is an error
/// on every read, never other data (one server: the test finds the session's hash by scanning
/// its own database).
async fn tampered_fields_are_errors_never_data(b: Backend) {
    let user = USER_BASE + b.user(3);
    let c = sealed_config(b, "tampered", user);
    let e = start_configured(c.clone(), None).await;
    let s = e.login(&e.create().await.unwrap().id, user).await.unwrap().id;
    e.insert(&s, SCOPE, KEY, &VALUE).await.unwrap();
    e.insert(&s, SCOPE, "other", &"another value").await.unwrap();
    let mut raw = Raw::open(&c).await;
    let [hash] = &raw.sessions(&c).await[..] else { panic!("one session") };
    let hash = hash.clone();
    let fields: Vec<(Vec<u8>, Vec<u8>)> = raw.query(::redis::cmd("HGETALL").arg(&hash)).await;
    let values: Vec<&(Vec<u8>, Vec<u8>)> = fields.iter().filter(|(f, _)| f.len() > 1).collect();
    assert_eq!(values.len(), 2, "two value fields");
    let damaged = |r: Result<Option<String>, SessionError>| matches!(r, Err(SessionError::Damaged(_)));

    // One flipped bit in either value: both reads of that field fail, the other still reads.
    let (field, stored) = values[0];
    let mut bad = stored.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let _: i64 = raw.query(::redis::cmd("HSET").arg(&hash).arg(field).arg(&bad)).await;
    let (a, b_) = (e.get::<String>(&s, SCOPE, KEY).await, e.get::<String>(&s, SCOPE, "other").await);
    assert!(damaged(a.clone()) != damaged(b_.clone()), "exactly the tampered field fails: {a:?} {b_:?}");
    if let Ok(v) = &a {
        assert_eq!(v.as_deref(), Some(VALUE));
    }
    if let Ok(v) = &b_ {
        assert_eq!(v.as_deref(), Some("another value"));
    }
    assert!(e.keys(&s, SCOPE).await.is_err(), "listing opens every field");
    // Moved onto the other field's name: it does not open there.
    let (other_field, _) = values[1];
    let _: i64 = raw.query(::redis::cmd("HSET").arg(&hash).arg(field).arg(stored)).await;
    let _: i64 = raw.query(::redis::cmd("HSET").arg(&hash).arg(other_field).arg(stored)).await;
    let (a, b_) = (e.get::<String>(&s, SCOPE, KEY).await, e.get::<String>(&s, SCOPE, "other").await);
    assert!(damaged(a.clone()) != damaged(b_.clone()), "the moved box fails where it was moved: {a:?} {b_:?}");
    // The user: a flipped bit in its box.
    let u: Vec<u8> = raw.query(::redis::cmd("HGET").arg(&hash).arg("u")).await;
    let mut bad = u.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let _: i64 = raw.query(::redis::cmd("HSET").arg(&hash).arg("u").arg(&bad)).await;
    assert!(matches!(e.info(&s).await, Err(SessionError::Damaged(_))));
    let _: i64 = raw.query(::redis::cmd("HSET").arg(&hash).arg("u").arg(&u)).await;
    assert_eq!(e.info(&s).await.unwrap().userid, user);

    // A session whose hash holds data sealed under another secret: an error, not data.
    let mut other = c.clone();
    other.session.secret = Some(OTHER_SECRET.into());
    let o = start_configured(other, None).await;
    let t = o.create().await.unwrap().id;
    let theirs = raw.sessions(&c).await.into_iter().find(|k| *k != hash).expect("the other engine's session");
    let _: i64 = raw.query(::redis::cmd("COPY").arg(&hash).arg(&theirs).arg("REPLACE")).await;
    assert!(matches!(o.get::<String>(&t, SCOPE, KEY).await, Err(SessionError::Damaged(_))));
    assert!(matches!(o.info(&t).await, Err(SessionError::Damaged(_))));
    // The failed migration left no update lock behind (`<p>:{ggg}:L:<locator>`, the session
    // hash's name with `l` for `s`): the next write is refused as damaged, not as busy.
    let lock = theirs.replacen(":S:", ":L:", 1);
    assert_ne!(lock, theirs);
    let held: i64 = raw.query(::redis::cmd("EXISTS").arg(&lock)).await;
    assert_eq!(held, 0, "{lock} is still held");
    assert!(matches!(o.insert(&t, SCOPE, KEY, &1).await, Err(SessionError::Damaged(_))));
    let held: i64 = raw.query(::redis::cmd("EXISTS").arg(&lock)).await;
    assert_eq!(held, 0, "{lock} is still held");
}

mod redis {
    use super::*;

    #[actix_rt::test]
    async fn a_canary_is_nowhere_in_redis_and_reads_back() {
        super::a_canary_is_nowhere_in_redis_and_reads_back(Backend::Redis).await
    }

    #[actix_rt::test]
    async fn plain_sessions_still_read_and_are_rewritten_sealed() {
        super::plain_sessions_still_read_and_are_rewritten_sealed(Backend::Redis).await
    }

    #[actix_rt::test]
    async fn tampered_fields_are_errors_never_data() {
        super::tampered_fields_are_errors_never_data(Backend::Redis).await
    }
}

cluster!(a_canary_is_nowhere_in_redis_and_reads_back, plain_sessions_still_read_and_are_rewritten_sealed);
