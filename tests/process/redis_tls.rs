//! `rediss://`: the Redis backend over TLS. A real redis-server speaking TLS only (Debian's is
//! built with TLS), with a CA and a server certificate made by the `openssl` command at test
//! time: the demo process, trusting that CA through `SSL_CERT_FILE`, serves sessions from it;
//! without that trust it refuses to start (the server's certificate is verified). A `rediss://`
//! URL aimed at a plain server fails in the TLS handshake, so TLS is compiled in.
//!
//! Needs the demo binary built with the `redis` feature, which `cargo test --all-features`
//! does; with a test filter, run `cargo build --all-features --example remember_me` first.
#![cfg(feature = "redis")]

use crate::redis_server;

use crate::demo;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use demo::{Demo, request};
use draco_session::{Config, SessionEngine, config::StorageBackend, error::StartError};
use redis_server::RedisServer;

/// Runs `openssl` with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("cannot run openssl ({e}): the TLS tests make their certificates with it (apt-get install openssl)")
    });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA (`ca.pem`) and a certificate it signed for 127.0.0.1 (`server.pem`, `server.key`).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=draco-session test CA", "-keyout", "ca.key"];
    ca.extend(ec);
    ca.extend(["-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr"];
    csr.extend(ec);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    );
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

fn write_config(dir: &Path, redis_url: &str) -> PathBuf {
    let config = dir.join("config.toml");
    let data = dir.join("data").display().to_string();
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"redis TLS test secret, at least 32 bytes\"\n[cookie]\nsecure = false\n\
             [storage]\ndir = {data:?}\nbackend = \"redis\"\nredis_url = {redis_url:?}\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn sessions_live_in_a_redis_server_reached_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let server = RedisServer::start_tls(&cert, &key, &ca);
    let config = write_config(dir.path(), &format!("rediss://127.0.0.1:{}/3", server.port));

    let demo = Demo::start_with_env(&config, "warn", &[("SSL_CERT_FILE", &ca)]);
    let (status, cookie, first) = request(demo.port, "GET", "/api/session", None, None);
    assert_eq!((status, &first["visits"]), (200, &serde_json::json!(1)), "{first}");
    let cookie = cookie.expect("a session cookie");
    let (_, _, second) = request(demo.port, "GET", "/api/session", Some(&cookie), None);
    assert_eq!(second["visits"], 2, "the session lives in the TLS server");
    drop(demo);
    // The plain port is off: everything above went over TLS. And the session is in database 3,
    // beside the event stream its creation was appended to.
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(&ca)
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string(), "-n", "3", "DBSIZE"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2", "{}", String::from_utf8_lossy(&out.stderr));

    // Without trusting the test CA the server's certificate is refused: no session engine.
    let mut untrusted = demo::spawn_with_env(&config, "warn", &[("SSL_CERT_FILE", &cert)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = untrusted.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo started against an untrusted certificate");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(untrusted.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("rediss://127.0.0.1") && stderr.contains("invalid peer certificate"), "{stderr}");
}

/// Starts an engine on `url`; its start-up error.
async fn start_error(url: &str) -> StartError {
    let mut config = Config::default();
    config.session.secret = Some("redis TLS test secret, at least 32 bytes".into());
    config.storage.backend = StorageBackend::Redis;
    config.storage.redis_url = url.to_owned();
    SessionEngine::start_async(config).await.expect_err("no TLS server there")
}

/// A `rediss://` URL is accepted and tried (not refused as an unknown scheme or a feature not
/// compiled in): a plain redis-server leaves the client's TLS hello unanswered, and a server
/// answering in plain text fails the handshake in rustls.
#[actix_rt::test]
async fn a_rediss_url_at_a_plain_server_fails_in_the_tls_handshake() {
    let server = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let e = start_error(&url).await;
    let StartError::Backend { url: shown, message } = &e else { panic!("refused, not tried: {e}") };
    assert_eq!(shown, &url);
    assert!(!message.contains("not enabled") && !message.contains("scheme"), "{e}");

    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in plain.incoming().map_while(Result::ok) {
            let _ = std::io::Read::read(&mut conn, &mut [0u8; 4096]);
            let _ = std::io::Write::write_all(&mut conn, b"-ERR unknown command\r\n");
        }
    });
    let e = start_error(&format!("rediss://127.0.0.1:{port}")).await.to_string();
    assert!(e.contains("corrupt message"), "a TLS error: {e}");
}
