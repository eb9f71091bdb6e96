//! Redis Sentinel on real processes: a primary, a replica and a sentinel started by the test,
//! two remember-me demo instances on `redis+sentinel://`. Under load from 8 clients the primary
//! is killed (SIGKILL): every request meanwhile is answered 200 or 503 (never another status,
//! never a hang), the sentinel promotes the replica, and both instances are served by the new
//! primary; the session logged in before (replicated: the test waits for it) is still logged
//! in. The recovery time and the refusals are printed (RELIABILITY.md has the figures).
#![cfg(feature = "redis")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::demo::{Demo, request, try_request};

/// A Redis process of the test's, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn redis(dir: &Path, args: &[&str]) -> Process {
    let child = Command::new("redis-server")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (apt-get install redis-server; .ci/test installs it)");
    Process(child)
}

/// One command in RESP to the server on `port`; its answer's lines (bulk strings and arrays
/// flattened), or an error when it does not answer.
fn command(port: u16, args: &[&str]) -> std::io::Result<Vec<String>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out += &format!("${}\r\n{a}\r\n", a.len());
    }
    stream.write_all(out.as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut lines = Vec::new();
    let mut pending = 1i64;
    while pending > 0 {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_owned();
        pending -= 1;
        match line.as_bytes().first() {
            Some(b'*') => pending += line[1..].parse::<i64>().unwrap_or(0).max(0),
            Some(b'$') if line != "$-1" => {
                let len: usize = line[1..].parse().map_err(std::io::Error::other)?;
                let mut value = vec![0u8; len + 2];
                std::io::Read::read_exact(&mut reader, &mut value)?;
                lines.push(String::from_utf8_lossy(&value[..len]).into_owned());
            }
            Some(b'-') => return Err(std::io::Error::other(line)),
            Some(b':' | b'+') => lines.push(line[1..].to_owned()),
            _ => lines.push(line),
        }
    }
    Ok(lines)
}

/// Polls `check` every 100 ms until it holds, at most `within`; panics naming `what`.
fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn primary_of(sentinel: u16) -> Option<u16> {
    let answer = command(sentinel, &["SENTINEL", "get-master-addr-by-name", "mymaster"]).ok()?;
    answer.get(1)?.parse().ok()
}

/// A primary, its replica and a sentinel watching them (`mymaster`, quorum 1, down after 1 s),
/// each on its own port, ready: the replica in sync and known to the sentinel.
struct Trio {
    primary: Option<Process>,
    _replica: Process,
    _sentinel: Process,
    ports: (u16, u16, u16),
}

fn trio(dir: &Path) -> Trio {
    let (p, r, s) = (free_port(), free_port(), free_port());
    let common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    let primary = Some(redis(dir, &[&["--port", &p.to_string()][..], &common[..]].concat()));
    let replica = redis(
        dir,
        &[&["--port", &r.to_string(), "--replicaof", "127.0.0.1", &p.to_string()][..], &common[..]].concat(),
    );
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {s}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {p} 1\n\
             sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n",
            dir.display()
        ),
    )
    .unwrap();
    let sentinel = redis(dir, &[conf.to_str().unwrap(), "--sentinel"]);
    wait_for("the replica in sync", Duration::from_secs(30), || {
        command(r, &["INFO", "replication"]).is_ok_and(|l| l.iter().any(|l| l.contains("master_link_status:up")))
    });
    wait_for("the sentinel knows the primary and its replica", Duration::from_secs(60), || {
        primary_of(s) == Some(p)
            && command(s, &["SENTINEL", "replicas", "mymaster"]).is_ok_and(|l| l.iter().any(|l| l == &r.to_string()))
    });
    Trio { primary, _replica: replica, _sentinel: sentinel, ports: (p, r, s) }
}

#[test]
fn a_failover_under_load_is_answered_503_meanwhile_then_served_by_the_new_primary() {
    let dir = tempfile::tempdir().unwrap();
    let mut trio = trio(dir.path());
    let (p, r, s) = trio.ports;
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"sentinel test secret, at least 32 bytes\"\n[cookie]\nsecure = false\n\
             [storage]\nbackend = \"redis\"\nredis_url = \"redis+sentinel://127.0.0.1:{s}/mymaster\"\n"
        ),
    )
    .unwrap();
    let (a, b) = (Demo::start(&config), Demo::start(&config));
    let body = r#"{"username":"alice","password":"wonderland","remember":true}"#;
    let (status, cookie, json) = request(a.port, "POST", "/api/login", None, Some(body));
    assert_eq!(status, 200, "{json}");
    let cookie = cookie.unwrap();
    assert_eq!(request(b.port, "GET", "/api/session", Some(&cookie), None).2["userid"], 1);
    // The login has reached the replica before the primary dies.
    let copies = command(p, &["WAIT", "1", "5000"]).unwrap();
    assert_eq!(copies, ["1"], "the replica acknowledged the writes");

    // Load: 8 clients on both instances, each request's status counted.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (stop, ok, refused, cookie) = (stop.clone(), ok.clone(), refused.clone(), cookie.clone());
            let port = if i % 2 == 0 { a.port } else { b.port };
            std::thread::spawn(move || {
                let mut others = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match try_request(port, "POST", "/api/incr/hits", Some(&cookie), None) {
                        Ok((200, _, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        Ok((503, _, _)) => {
                            std::thread::sleep(Duration::from_millis(20));
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        Ok((other, _, json)) => {
                            others.push(format!("{other} {json}"));
                            0
                        }
                        Err(e) => {
                            others.push(format!("no answer: {e}"));
                            0
                        }
                    };
                }
                others
            })
        })
        .collect();
    wait_for("the load running", Duration::from_secs(30), || ok.load(Ordering::Relaxed) > 200);

    let killed = Instant::now();
    drop(trio.primary.take());
    wait_for("the sentinel promoting the replica", Duration::from_secs(60), || primary_of(s) == Some(r));
    let promoted = killed.elapsed();
    // Served again: both instances answer increments (the load keeps going meanwhile).
    let mut served = [false, false];
    wait_for("both instances served by the new primary", Duration::from_secs(60), || {
        for (i, port) in [a.port, b.port].into_iter().enumerate() {
            served[i] =
                served[i] || try_request(port, "POST", "/api/incr/hits", Some(&cookie), None).is_ok_and(|r| r.0 == 200);
        }
        served == [true, true]
    });
    let recovered = killed.elapsed();
    let ok_before = ok.load(Ordering::Relaxed);
    wait_for("the load served after the failover", Duration::from_secs(30), || {
        ok.load(Ordering::Relaxed) > ok_before + 100
    });
    stop.store(true, Ordering::Relaxed);
    let others: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert!(others.is_empty(), "every answer was 200 or 503: {others:?}");
    let refusals = refused.load(Ordering::Relaxed);
    println!(
        "failover: promoted {:.2} s after the kill, both instances served {:.2} s after it; {refusals} requests \
         refused (503), {} served",
        promoted.as_secs_f64(),
        recovered.as_secs_f64(),
        ok.load(Ordering::Relaxed)
    );
    // The session logged in before the failover is still logged in, on both.
    for port in [a.port, b.port] {
        let (status, _, json) = request(port, "GET", "/api/session", Some(&cookie), None);
        assert_eq!(
            (status, json["userid"].as_u64(), json["persistent"].as_bool()),
            (200, Some(1), Some(true)),
            "{json}"
        );
    }
}
