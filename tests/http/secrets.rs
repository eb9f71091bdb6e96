//! Secrets stay secret: with no id secret configured and `persist = false`, the memory backend
//! keys ids with a key that lives in memory only (no key file, nothing in `storage.dir`), while
//! Redis, whose sessions outlive the process, keeps a key file; and a Redis password never
//! reaches a start-up error or the config's `Debug` output.

use crate::support;

use support::*;

#[cfg_attr(not(feature = "redis"), allow(clippy::needless_return, reason = "the Redis half is compiled out"))]
async fn without_a_secret_or_persistence_the_memory_backend_writes_no_key_file(b: Backend) {
    let (mut config, dir) = config(|c| c.session.secret = None);
    config.storage.dir = dir.path().join("data");
    if b == Backend::Memory {
        let engine = draco_session::SessionEngine::start(config).unwrap();
        let app = app!(engine);
        let sid = new_session(&app).await;
        assert_eq!(login(&app, Some(&sid), false).await.status, 200);
        engine.shutdown().await;
        assert!(!dir.path().join("data").exists(), "nothing written: the key lives in memory only");
        return;
    }
    #[cfg(feature = "redis")]
    {
        config.storage.backend = draco_session::config::StorageBackend::Redis;
        config.storage.redis_url = support::redis_server::shared().fresh_db_url();
        let engine = draco_session::SessionEngine::start_async(config).await.unwrap();
        let app = app!(engine);
        new_session(&app).await;
        engine.shutdown().await;
        // Redis sessions outlive the process, so their key must too.
        assert!(dir.path().join("data/secret.key").exists());
    }
}

both!(without_a_secret_or_persistence_the_memory_backend_writes_no_key_file);

#[test]
fn config_debug_shows_no_secret_and_no_redis_password() {
    let mut config = draco_session::Config::default();
    config.session.secret = Some("hunter2 hunter2 hunter2 hunter2 hunter2".into());
    config.storage.redis_url = "redis://user:swordfish@10.0.0.1:6379/0".into();
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("swordfish"), "{shown}");
    assert!(shown.contains("redis://user:****@10.0.0.1:6379/0"), "{shown}");
}

#[cfg(feature = "redis")]
#[actix_web::test]
async fn an_unreachable_redis_start_up_error_hides_the_password() {
    // A port this test holds, whose listener closes every connection at once: nobody else's
    // server can be there (a port found free and released could be taken meanwhile).
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = closer.local_addr().unwrap().port();
    std::thread::spawn(move || closer.incoming().map_while(Result::ok).for_each(drop));
    for url in [format!("redis://user:hunter2@127.0.0.1:{closed}/0"), format!("rediss://:hunter2@127.0.0.1:{closed}")] {
        let (mut config, _dir) = config(|_| {});
        config.storage.backend = draco_session::config::StorageBackend::Redis;
        config.storage.redis_url = url.clone();
        let e = draco_session::SessionEngine::start_async(config).await.expect_err("no Redis there").to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains(&format!(":****@127.0.0.1:{closed}")) && e.contains("storage.redis_url"), "{e}");
    }
}
