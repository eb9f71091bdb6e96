//! The README's curl session, over real TCP against the demo process: an API-only config
//! (`[cookie] enabled = false`, `[header] name = "x-session-id"`, its client let through
//! `[robots] allow`), a plain HTTP/1.1 client that keeps no cookies, only the header.
//!
//! Needs the demo binary, which a plain `cargo test` builds; with a test filter, run
//! `cargo build --all-features --example remember_me` first.

use crate::demo;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use demo::Demo;
use serde_json::Value;

const CLIENT: &str = "my-app/1.0";

struct Answer {
    status: u16,
    /// Every header, names in lower case.
    headers: Vec<(String, String)>,
    json: Value,
}

impl Answer {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    fn session_header(&self) -> Option<&str> {
        let all = self.all("x-session-id");
        assert!(all.len() <= 1, "{:?}", self.headers);
        all.first().copied()
    }
}

/// One request, as `curl -A my-app/1.0 [-H 'x-session-id: ..']` sends it.
fn request(port: u16, method: &str, path: &str, id: Option<&str>, body: Option<&str>) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {CLIENT}\r\nConnection: close\r\n");
    if let Some(id) = id {
        head += &format!("x-session-id: {id}\r\n");
    }
    let body = body.unwrap_or("");
    head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (top, payload) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("incomplete: {raw:?}"));
    let mut lines = top.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Answer { status, headers, json: serde_json::from_str(payload).unwrap_or(Value::Null) }
}

#[test]
fn an_api_client_without_cookies_lives_on_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("api.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"header demo test secret, at least 32 bytes\"\n\
             [cookie]\nenabled = false\n[header]\nname = \"x-session-id\"\n[robots]\nallow = [\"^my-app/\"]\n\
             [storage]\npersist = false\ndir = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let demo = Demo::start(&config);
    let port = demo.port;

    let r = request(port, "GET", "/api/session", None, None);
    assert_eq!(r.status, 200, "{:?}", r.json);
    let first = r.session_header().expect("the new id in the header").to_owned();
    assert_eq!((r.json["session_id"].as_str(), r.json["available"].as_bool()), (Some(first.as_str()), Some(true)));
    assert_eq!(r.all("cache-control"), ["no-store"]);
    assert!(r.all("set-cookie").is_empty(), "{:?}", r.headers);

    let login = r#"{"username":"alice","password":"wonderland"}"#;
    let r = request(port, "POST", "/api/login", Some(&first), Some(login));
    let id = r.session_header().expect("the rotated id").to_owned();
    assert_ne!(id, first);
    assert_eq!((r.json["userid"].as_u64(), r.all("set-cookie").len()), (Some(1), 0));

    let r = request(port, "GET", "/api/session", Some(&id), None);
    assert_eq!((r.json["userid"].as_u64(), r.json["visits"].as_i64(), r.session_header()), (Some(1), Some(2), None));
    let r = request(port, "GET", "/api/session", Some(&first), None);
    assert_eq!(r.json["userid"], 0, "the pre-login id is dead");

    let r = request(port, "POST", "/api/logout", Some(&id), None);
    let out = r.session_header().expect("the rotated id").to_owned();
    assert_ne!(out, id);
    assert_eq!(request(port, "GET", "/api/session", Some(&out), None).json["userid"], 0);
    // The demo's robots rules still hold for any other client name.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /api/session HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.5.0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    // No id header (a `Vary` may name the header: the answer depends on it).
    let no_id = !raw.to_ascii_lowercase().lines().any(|l| l.starts_with("x-session-id:"));
    assert!(raw.contains("\"available\":false") && no_id, "{raw}");
}

/// Cookies off and no header: nothing could carry a session id back, so the demo refuses to
/// start, with an error naming the key.
#[test]
fn no_transport_at_all_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("none.toml");
    std::fs::write(&config, "[cookie]\nenabled = false\n[storage]\npersist = false\n").unwrap();
    let out = demo::spawn(&config).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cookie.enabled") && stderr.contains("header.name"), "{stderr}");
}
