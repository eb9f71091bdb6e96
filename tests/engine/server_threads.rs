//! Shards on the server's threads (`Placement::ServerThreads`, the default): a thread adopts a
//! shard, serves its sessions without messages, creates new sessions on it, and gives it back
//! when it stops — with nothing lost on the way, under load, over HTTP and across a restart.

use crate::support::routing;

use routing::shard_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::Arbiter;
use actix_web::{App, HttpResponse, HttpServer, web};
use draco_session::config::LogMode;
use draco_session::{Config, Session, SessionEngine, SessionError, SessionId};
use futures_util::future::join_all;
use tokio::sync::oneshot;

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

fn config(dir: &std::path::Path, shards: usize) -> Config {
    let mut c = Config::default();
    c.session.secret = Some("server threads test secret, at least 32 bytes".into());
    c.session.shards = shards;
    c.storage.dir = dir.to_owned();
    c.cookie.secure = false;
    c
}

/// Runs `job` on `arbiter`'s thread and waits (without blocking this thread's arbiter) for
/// its answer.
async fn on<T, F, Fut>(arbiter: &Arbiter, job: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    assert!(arbiter.spawn_fn(move || {
        actix::spawn(async move {
            let _ = tx.send(job().await);
        });
    }));
    rx.await.expect("the job answered")
}

fn local_ops(stats: &draco_session::message::EngineStats, shard: usize) -> u64 {
    stats.shards[shard].local_operations
}

#[actix_rt::test]
async fn a_thread_adopts_a_shard_serves_it_locally_and_gives_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let e = SessionEngine::start(config(dir.path(), 2)).unwrap();
    // Sessions made before any server thread exists live on the shards' own threads.
    let before = e.create().await.unwrap().id;
    e.insert(&before, "a", "k", &"kept").await.unwrap();

    let a = Arbiter::new();
    let engine = e.clone();
    let (shard, born) = on(&a, move || async move {
        let shard = engine.host_here().await.expect("a shard to adopt");
        assert_eq!(engine.host_here().await, None, "one shard per thread");
        let born = engine.create().await.unwrap().id;
        for _ in 0..100 {
            engine.increment(&born, "c", "n", 1).await.unwrap();
        }
        (shard, born)
    })
    .await;
    assert_eq!(shard_of(&born, 2), shard, "a new session is born on the creating thread's shard");
    let stats = e.stats().await.unwrap();
    assert!(local_ops(&stats, shard) >= 101, "the adopting thread's operations ran locally: {stats:?}");
    // From this thread the session is remote, and still served.
    assert_eq!(e.get::<i64>(&born, "c", "n").await.unwrap(), Some(100));
    assert_eq!(e.get::<String>(&before, "a", "k").await.unwrap().as_deref(), Some("kept"));

    // A second thread takes the other shard; a third finds none left.
    let b = Arbiter::new();
    let engine = e.clone();
    let other = on(&b, move || async move { engine.host_here().await }).await;
    assert_eq!(other, Some(1 - shard));
    let c = Arbiter::new();
    let engine = e.clone();
    assert_eq!(on(&c, move || async move { engine.host_here().await }).await, None);

    // Login rotates within the shard, on its thread.
    let engine = e.clone();
    let logged = on(&a, move || async move { engine.login(&born, 7).await.unwrap().id }).await;
    assert_eq!(shard_of(&logged, 2), shard);

    // The adopting thread stops: its shard goes home with every write.
    a.stop();
    a.join().unwrap();
    assert_eq!(e.get::<i64>(&logged, "c", "n").await.unwrap(), Some(100));
    assert_eq!(e.increment(&logged, "c", "n", 1).await.unwrap(), 101);
    // ... and another thread can adopt it again.
    let engine = e.clone();
    assert_eq!(on(&c, move || async move { engine.host_here().await }).await, Some(shard));
    let engine = e.clone();
    assert_eq!(on(&c, move || async move { engine.increment(&logged, "c", "n", 1).await.unwrap() }).await, 102);

    e.shutdown().await;
    b.stop();
    c.stop();
    let e = SessionEngine::start(config(dir.path(), 2)).unwrap();
    assert_eq!(e.get::<i64>(&logged, "c", "n").await.unwrap(), Some(102));
    assert_eq!(e.info(&logged).await.unwrap().userid, 7);
    assert_eq!(e.get::<String>(&before, "a", "k").await.unwrap().as_deref(), Some("kept"));
    e.shutdown().await;
}

/// Increments from this thread and from the adopting one while the shard moves there and
/// back: every acknowledged increment is counted once, and none is refused by the move.
#[actix_rt::test]
async fn no_write_is_lost_while_a_shard_moves() {
    let dir = tempfile::tempdir().unwrap();
    let e = SessionEngine::start(config(dir.path(), 1)).unwrap();
    let s = e.create().await.unwrap().id;
    let acked = Arc::new(AtomicU64::new(0));

    let hammer = |e: SessionEngine, s: SessionId, acked: Arc<AtomicU64>| async move {
        let mut refused = 0;
        for _ in 0..400 {
            match e.increment(&s, "c", "n", 1).await {
                Ok(_) => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Err(SessionError::Unavailable(_)) => refused += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        refused
    };
    let here = join_all((0..8).map(|_| hammer(e.clone(), s, acked.clone())));
    let a = Arbiter::new();
    let (engine, acked_there) = (e.clone(), acked.clone());
    let there = on(&a, move || async move {
        assert_eq!(engine.host_here().await, Some(0));
        hammer(engine, s, acked_there).await
    });
    let (refused_here, refused_there) = futures_util::future::join(here, there).await;
    assert_eq!(refused_here.iter().sum::<u32>() + refused_there, 0, "a move refuses nothing");
    assert_eq!(e.get::<i64>(&s, "c", "n").await.unwrap(), Some(3600));

    // The adopting thread stops while this one keeps writing: what was acknowledged is there.
    let writers = join_all((0..8).map(|_| hammer(e.clone(), s, acked.clone())));
    let stop = async {
        actix_rt::time::sleep(Duration::from_millis(5)).await;
        a.stop();
    };
    let (_, ()) = futures_util::future::join(writers, stop).await;
    let n = e.get::<i64>(&s, "c", "n").await.unwrap().unwrap();
    assert_eq!(u64::try_from(n).unwrap(), acked.load(Ordering::Relaxed), "acknowledged writes, each once");
    e.shutdown().await;
}

async fn count(session: Session) -> HttpResponse {
    match session.increment("counter", 1).await {
        Ok(n) => HttpResponse::Ok().body(n.to_string()),
        Err(e) => HttpResponse::ServiceUnavailable().body(e.to_string()),
    }
}

/// One HTTP/1.1 connection kept open for every request of a client.
struct KeptConnection {
    reader: std::io::BufReader<std::net::TcpStream>,
    port: u16,
}

impl KeptConnection {
    fn open(port: u16) -> Self {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self { reader: std::io::BufReader::new(stream), port }
    }

    /// `GET /` on this connection: the status, the `Set-Cookie` pair (`name=value`) if any,
    /// and the body. Panics if the server closed the connection.
    fn get(&mut self, cookie: Option<&str>) -> (u16, Option<String>, String) {
        use std::io::{BufRead, Read, Write};
        let mut head = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: {BROWSER}\r\n", self.port);
        if let Some(c) = cookie {
            head += &format!("Cookie: {c}\r\n");
        }
        head += "\r\n";
        self.reader.get_mut().write_all(head.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        assert!(!status_line.is_empty(), "the server closed a kept connection");
        let status = status_line.get(9..12).and_then(|s| s.parse().ok()).expect("a status line");
        let (mut length, mut set_cookie) = (0, None);
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header line");
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            } else if name.eq_ignore_ascii_case("set-cookie") {
                set_cookie = value.trim().split(';').next().map(str::to_owned);
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        (status, set_cookie, String::from_utf8(body).unwrap())
    }
}

/// A real server with two workers: each worker hosts a shard, a client keeping its connection
/// is served on its session's thread, and a graceful stop (as on SIGTERM) sends the shards
/// home before `run()` returns, so the shutdown snapshot holds every answered request.
#[actix_rt::test]
async fn a_server_hosts_shards_on_its_workers_and_stops_without_losing_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let e = SessionEngine::start(config(dir.path(), 2)).unwrap();
    let mw = draco_session::SessionMiddleware::new(e.clone());
    let server = HttpServer::new(move || App::new().wrap(mw.clone()).route("/", web::get().to(count)))
        .workers(2)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    let running = actix_rt::spawn(server);

    // Five clients, each on a connection of its own that it keeps (HTTP/1.1 keep-alive, a
    // raw socket: no pool that could open a second one), 40 requests each.
    let clients = (0..5).map(|_| {
        actix_rt::task::spawn_blocking(move || {
            let mut connection = KeptConnection::open(port);
            let mut cookie: Option<String> = None;
            let mut last = 0;
            for _ in 0..40 {
                let (status, set, body) = connection.get(cookie.as_deref());
                assert_eq!(status, 200, "{body}");
                if let Some(set) = set {
                    cookie = Some(set);
                }
                last = body.parse::<i64>().unwrap();
            }
            (cookie.unwrap(), last)
        })
    });
    let sessions: Vec<(String, i64)> = join_all(clients).await.into_iter().map(Result::unwrap).collect();
    assert!(sessions.iter().all(|(_, n)| *n == 40), "{sessions:?}");
    let stats = e.stats().await.unwrap();
    let (local, all) = stats.shards.iter().fold((0, 0), |(l, a), s| (l + s.local_operations, a + s.operations));
    // Each connection's session is born on the worker serving it, and every request of a
    // connection is served by that worker, so only a few operations (if any) cross threads.
    assert!(local * 10 >= all * 9, "locality {local}/{all}: {stats:?}");

    handle.stop(true).await;
    running.await.unwrap().unwrap();
    // The workers are gone: their shards are served from their own threads again.
    let ids: Vec<SessionId> = sessions.iter().map(|(c, _)| c.split_once('=').unwrap().1.parse().unwrap()).collect();
    for id in &ids {
        assert_eq!(e.get::<i64>(id, "__system__", "counter").await.unwrap(), Some(40));
    }
    e.shutdown().await;
    let e = SessionEngine::start(config(dir.path(), 2)).unwrap();
    for id in &ids {
        assert_eq!(e.get::<i64>(id, "__system__", "counter").await.unwrap(), Some(40));
    }
    e.shutdown().await;
}

/// `host_here` needs an actix arbiter on the calling thread, and a placement that moves
/// shards: otherwise it hosts nothing, and says so without a panic.
#[actix_rt::test]
async fn host_here_without_an_arbiter_or_with_another_placement_hosts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = SessionEngine::start(config(dir.path(), 2)).unwrap();
    let engine = e.clone();
    let answer = std::thread::spawn(move || {
        let mut adopt = std::pin::pin!(engine.host_here());
        adopt.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    })
    .join()
    .unwrap();
    assert_eq!(answer, std::task::Poll::Ready(None));
    let s = e.create().await.unwrap().id;
    assert_eq!(e.increment(&s, "c", "n", 1).await.unwrap(), 1);
    e.shutdown().await;

    let dedicated = SessionEngine::builder(config(dir.path(), 2))
        .placement(draco_session::Placement::DedicatedThreads)
        .start()
        .unwrap();
    assert_eq!(dedicated.host_here().await, None);
    dedicated.shutdown().await;
}

/// A shard moves while its snapshot is being encoded and written, both ways: the snapshot
/// under way finishes on the new host (its waiters, marks and the writer's answer move with
/// the shard), and what it wrote loads back whole. Without a log, so that only the snapshots
/// can bring the sessions back; and with the default log (its twin).
#[actix_rt::test]
async fn a_shard_moves_in_the_middle_of_a_snapshot_and_the_snapshot_completes() {
    a_shard_moves_in_the_middle_of_a_snapshot(LogMode::Off).await;
}

/// As above, with the default log beside the snapshots.
#[actix_rt::test]
async fn a_shard_moves_in_the_middle_of_a_snapshot_and_the_snapshot_completes_with_the_log() {
    a_shard_moves_in_the_middle_of_a_snapshot(Config::default().storage.log).await;
}

async fn a_shard_moves_in_the_middle_of_a_snapshot(log: LogMode) {
    let dir = tempfile::tempdir().unwrap();
    let with_log = |path: &std::path::Path| {
        let mut c = config(path, 1);
        c.storage.log = log;
        c
    };
    let e = SessionEngine::start(with_log(dir.path())).unwrap();
    // Enough sessions that a snapshot takes many steps (256 sessions per step).
    let mut ids = Vec::new();
    for i in 0..20_000i64 {
        let id = e.create().await.unwrap().id;
        e.insert(&id, "a", "n", &i).await.unwrap();
        ids.push(id);
    }
    let a = Arbiter::new();
    let engine = e.clone();
    let (snapshot, adopted) = futures_util::future::join(e.snapshot(), async {
        on(&a, move || async move { engine.host_here().await }).await
    })
    .await;
    assert_eq!(adopted, Some(0));
    // A snapshot writes the whole shard; with the log on, the log's own early snapshot (its
    // size past a share of `log_max`) may have just written it, and then this one finds
    // nothing changed. Either way it completes.
    let whole = |written: usize| written == 20_000 || (log != LogMode::Off && written == 0);
    let written = snapshot.unwrap();
    assert!(whole(written), "the snapshot that was under way as the shard moved wrote {written}");

    // And back: a change, a snapshot asked for, the adopting thread stopped meanwhile.
    e.insert(&ids[0], "a", "n", &-1).await.unwrap();
    let (snapshot, ()) = futures_util::future::join(e.snapshot(), async {
        a.stop();
    })
    .await;
    let written = snapshot.unwrap();
    assert!(whole(written), "the snapshot asked for as the thread stopped wrote {written}");

    // No shutdown: what loads is what the snapshots wrote. The first engine's workers still
    // run (and hold the directory's lock), so the second starts on a copy of its files.
    let copy = tempfile::tempdir().unwrap();
    crate::support::canary::copy_tree(dir.path(), copy.path());
    drop(e);
    if log == LogMode::Off {
        let logged = std::fs::read_dir(copy.path().join("log")).map_or(0, Iterator::count);
        assert_eq!(logged, 0, "no log files: only the snapshots hold the sessions");
    }
    let e = SessionEngine::start(with_log(copy.path())).unwrap();
    assert_eq!(e.stats().await.unwrap().sessions, 20_000);
    assert_eq!(e.get::<i64>(&ids[0], "a", "n").await.unwrap(), Some(-1));
    assert_eq!(e.get::<i64>(&ids[19_999], "a", "n").await.unwrap(), Some(19_999));
    e.shutdown().await;
}
