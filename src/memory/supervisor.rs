//! Supervisor actor: starts one worker per shard on its own arbiter (thread), restarts a worker
//! that died, and fans engine-wide messages out to every shard.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorFutureExt, Addr, Arbiter, ArbiterHandle, AsyncContext, Context, Handler, Message, ResponseActFuture,
    ResponseFuture, WrapFuture,
};
use futures_util::future::join_all;

use tokio::sync::oneshot;

use super::host::ask_shard;
use super::ops::EveryShard;
use super::snapshot_run::SnapshotResult;
use super::worker::{EraseNow, Every, FinalSnapshot, SnapshotNow, Worker};
use super::{Hosting, Placement};
use crate::error::{Result, SessionError, Unavailable};
use crate::snapshot::Recovered;

/// How often the supervisor checks that every worker is alive.
const HEALTH_INTERVAL: Duration = Duration::from_millis(200);

/// Shard → host address, read on every message, written when a host starts, restarts or
/// moves (see [`super::host`]).
#[derive(Debug, Default)]
pub(crate) struct Router {
    workers: RwLock<Vec<Addr<Worker>>>,
}

impl Router {
    pub fn get(&self, shard: usize) -> Addr<Worker> {
        self.workers.read().unwrap_or_else(|e| e.into_inner())[shard].clone()
    }

    pub fn all(&self) -> Vec<Addr<Worker>> {
        self.workers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Routes `shard` to `addr`; answers the host it replaces.
    pub fn replace(&self, shard: usize, addr: Addr<Worker>) -> Addr<Worker> {
        std::mem::replace(&mut self.workers.write().unwrap_or_else(|e| e.into_inner())[shard], addr)
    }

    fn install(&self, workers: Vec<Addr<Worker>>) {
        *self.workers.write().unwrap_or_else(|e| e.into_inner()) = workers;
    }
}

/// Owns the workers' lifecycle. Per-session messages bypass it: the engine handle routes them
/// straight to the owning worker, so the supervisor is never a bottleneck.
pub(crate) struct Supervisor {
    hosting: Arc<Hosting>,
    /// Each shard's home thread; empty with [`Placement::CurrentThread`], where workers share
    /// the supervisor's arbiter.
    arbiters: Vec<Arbiter>,
    restarts: Vec<u64>,
    /// Shutting down: workers stop on purpose and must not be restarted.
    stopping: bool,
}

impl Supervisor {
    /// Starts the workers, each owning its share of `sessions` (loaded from snapshots, one
    /// vector per shard); the caller must be inside a running actix `System`.
    pub(crate) fn launch(hosting: Arc<Hosting>, sessions: Vec<Recovered>) -> Addr<Self> {
        let shards = hosting.env.shards;
        let arbiters: Vec<Arbiter> = match hosting.placement {
            Placement::CurrentThread => Vec::new(),
            _ => (0..shards).map(|_| Arbiter::new()).collect(),
        };
        if !arbiters.is_empty() {
            let _ = hosting.homes.set(arbiters.iter().map(Arbiter::handle).collect());
        }
        let workers = sessions
            .into_iter()
            .enumerate()
            .map(|(shard, sessions)| {
                let home = arbiters.get(shard).map_or_else(Arbiter::current, Arbiter::handle);
                spawn_worker(&home, shard, &hosting, 0, sessions, false)
            })
            .collect();
        hosting.router.install(workers);
        Supervisor { hosting, arbiters, restarts: vec![0; shards], stopping: false }.start()
    }

    fn check_workers(&mut self) {
        if self.stopping {
            return;
        }
        let on_server: Vec<bool> =
            self.hosting.hosts.lock().unwrap_or_else(|e| e.into_inner()).iter().map(Option::is_some).collect();
        for (shard, addr) in self.hosting.router.all().into_iter().enumerate() {
            // A server thread's host hands its shard home as it is dropped (see `host`).
            if addr.connected() || on_server[shard] {
                continue;
            }
            self.restarts[shard] += 1;
            let lost = if self.hosting.wal.is_some() {
                "it reloads its last snapshot and replays its write-ahead log"
            } else if self.hosting.snapshots.is_some() {
                "it reloads its last snapshot; changes made since are lost"
            } else {
                "its in-memory sessions are lost (storage.persist is off)"
            };
            log::error!("shard {shard}: worker died; restarting it (restart #{}), {lost}", self.restarts[shard]);
            let home = match self.arbiters.get_mut(shard) {
                Some(arbiter) => {
                    if !arbiter.spawn(async {}) {
                        *arbiter = Arbiter::new();
                    }
                    arbiter.handle()
                }
                None => Arbiter::current(),
            };
            let addr = spawn_worker(&home, shard, &self.hosting, self.restarts[shard], Recovered::default(), true);
            self.hosting.router.replace(shard, addr);
        }
    }
}

fn spawn_worker(
    arbiter: &ArbiterHandle,
    shard: usize,
    hosting: &Arc<Hosting>,
    restarts: u64,
    sessions: Recovered,
    reload: bool,
) -> Addr<Worker> {
    let hosting = hosting.clone();
    // The worker (and its index over the loaded sessions) is built on its own thread.
    Worker::start_in_arbiter(arbiter, move |_| Worker::new(shard, hosting, restarts, sessions, reload))
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        log::info!("session engine started: {} shards", self.hosting.env.shards);
        ctx.run_interval(HEALTH_INTERVAL, |s, _| s.check_workers());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        log::info!("session engine stopped");
    }
}

/// Tells the supervisor that a worker's mailbox was found closed: check and restart now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct WorkerDown;

impl Handler<WorkerDown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: WorkerDown, _: &mut Context<Self>) {
        self.check_workers();
    }
}

/// Stops every worker after its final snapshot is durable, then the supervisor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// How the shards' final snapshots went.
#[derive(Debug, Default)]
struct Finals {
    /// Shard files written, and the sessions in them.
    written: usize,
    sessions: u64,
    /// Shards with nothing to write.
    unchanged: usize,
    failed: usize,
    /// Workers the actix system stopped first: they wrote their snapshot as they were dropped.
    with_thread: usize,
}

impl Finals {
    fn log(&self, started: Instant) {
        let Self { written, sessions, unchanged, failed, with_thread } = self;
        let ms = started.elapsed().as_millis();
        if *failed == 0 {
            log::info!(
                "final snapshot durable: {sessions} sessions in {written} shard files, {unchanged} shards \
                 unchanged, {with_thread} saved as the actix system stopped them, {ms} ms"
            );
        } else {
            log::error!(
                "final snapshot incomplete: {failed} shards failed; {sessions} sessions in {written} shard files durable, {ms} ms"
            );
        }
    }
}

/// Waits for every worker's final snapshot, then stops the worker threads and waits for them to
/// end: a worker dropped with its thread finishes its final snapshot first.
async fn final_snapshots<F>(requests: Vec<F>, arbiters: Vec<Arbiter>) -> Finals
where
    F: Future<Output = std::result::Result<Option<oneshot::Receiver<SnapshotResult>>, actix::MailboxError>>,
{
    let mut finals = Finals::default();
    for (shard, answer) in join_all(requests).await.into_iter().enumerate() {
        let outcome = match answer {
            Ok(Some(durable)) => durable.await.unwrap_or_else(|_| Err("the snapshot writer thread is gone".into())),
            Ok(None) => Ok(None),
            // Stopped with its arbiter (the actix system is stopping): the worker writes its
            // final snapshot as it is dropped; joining the threads below waits for that.
            Err(_) => {
                finals.with_thread += 1;
                continue;
            }
        };
        match outcome {
            Ok(Some(n)) => {
                finals.written += 1;
                finals.sessions += n;
            }
            Ok(None) => finals.unchanged += 1,
            Err(e) => {
                finals.failed += 1;
                log::error!("shard {shard}: final snapshot failed: {e}");
            }
        }
    }
    let (joined, threads_done) = oneshot::channel();
    let joiner = std::thread::Builder::new().name("draco-shutdown".into()).spawn(move || {
        for arbiter in arbiters {
            arbiter.stop();
            let _ = arbiter.join();
        }
        let _ = joined.send(());
    });
    if joiner.is_ok() {
        let _ = threads_done.await;
    }
    finals
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let started = Instant::now();
        let requests: Vec<_> =
            (0..self.hosting.env.shards).map(|shard| ask_shard(self.hosting.clone(), shard, FinalSnapshot)).collect();
        let finals = final_snapshots(requests, std::mem::take(&mut self.arbiters));
        Box::pin(finals.into_actor(self).map(move |finals, supervisor, ctx| {
            if let Some(snapshots) = &supervisor.hosting.snapshots {
                // Every final write is done: the writer thread can end.
                snapshots.stop();
                finals.log(started);
            }
            if let Some(wal) = &supervisor.hosting.wal {
                wal.stop();
            }
            if let Some(snapshots) = &supervisor.hosting.snapshots {
                snapshots.release_lock();
            }
            actix::ActorContext::stop(ctx);
        }))
    }
}

/// Snapshots every changed shard now; answers the sessions written once all are durable.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<usize>")]
pub(crate) struct SnapshotAll;

impl Handler<SnapshotAll> for Supervisor {
    type Result = ResponseFuture<Result<usize>>;

    fn handle(&mut self, _: SnapshotAll, _: &mut Context<Self>) -> Self::Result {
        let requests: Vec<_> =
            (0..self.hosting.env.shards).map(|shard| ask_shard(self.hosting.clone(), shard, SnapshotNow)).collect();
        Box::pin(async move {
            let mut sessions = 0;
            for answer in join_all(requests).await {
                let durable = answer.map_err(|_| SessionError::from(Unavailable::EngineStopped))?;
                let written = durable
                    .await
                    .map_err(|_| SessionError::from(Unavailable::EngineStopped))?
                    .map_err(|message| SessionError::from(Unavailable::Storage { message }))?;
                sessions += usize::try_from(written.unwrap_or(0)).unwrap_or(usize::MAX);
            }
            Ok(sessions)
        })
    }
}

/// Rewrites every shard for an erasure ([`EraseNow`]); answers once every shard's rewrite is
/// durable, or the first error.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<()>")]
pub(crate) struct EraseAll;

impl Handler<EraseAll> for Supervisor {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, _: EraseAll, _: &mut Context<Self>) -> Self::Result {
        let requests: Vec<_> =
            (0..self.hosting.env.shards).map(|shard| ask_shard(self.hosting.clone(), shard, EraseNow)).collect();
        Box::pin(async move {
            let stopped = || SessionError::from(Unavailable::EngineStopped);
            for answer in join_all(requests).await {
                answer
                    .map_err(|_| stopped())?
                    .await
                    .map_err(|_| stopped())?
                    .map_err(|message| SessionError::from(Unavailable::Storage { message }))?;
            }
            Ok(())
        })
    }
}

/// An engine-wide operation for every shard; the supervisor merges the answers (see
/// [`EveryShard`]).
pub(crate) struct FanOut<M>(pub M);

impl<M: EveryShard> Message for FanOut<M> {
    type Result = Result<M::Reply>;
}

impl<M: EveryShard> Handler<FanOut<M>> for Supervisor {
    type Result = ResponseActFuture<Self, Result<M::Reply>>;

    fn handle(&mut self, FanOut(msg): FanOut<M>, _: &mut Context<Self>) -> Self::Result {
        let requests: Vec<_> = (0..self.hosting.env.shards)
            .map(|shard| ask_shard(self.hosting.clone(), shard, Every(msg.clone())))
            .collect();
        let answers = async move {
            let mut parts = Vec::with_capacity(requests.len());
            for answer in join_all(requests).await {
                parts.push(answer.map_err(|_| SessionError::from(Unavailable::EngineStopped))??);
            }
            Ok(parts)
        };
        Box::pin(answers.into_actor(self).map(|parts: Result<Vec<M::Reply>>, supervisor, _| {
            let log_fsyncs = supervisor.hosting.wal.as_ref().map_or(0, |w| w.fsyncs());
            Ok(M::merge(parts?, &supervisor.restarts, log_fsyncs))
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Config, SessionEngine, SessionError};

    #[actix_rt::test]
    async fn a_restarted_worker_reloads_its_last_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.session.secret = Some("supervisor test secret, at least 32 bytes".into());
        c.session.shards = 2;
        c.storage.dir = dir.path().to_owned();
        let e = SessionEngine::start(c).unwrap();
        let id = e.create().await.unwrap().id;
        e.insert(&id, "a", "b", &1).await.unwrap();
        assert_eq!(e.snapshot().await.unwrap(), 1);
        // A worker that stops on its own is restarted like one that crashed.
        let shard = id.shard(2);
        e.memory().router().get(shard).send(super::FinalSnapshot).await.unwrap();
        let mut waited = Duration::ZERO;
        let value = loop {
            match e.get::<i32>(&id, "a", "b").await {
                Err(SessionError::Unavailable(_)) if waited < Duration::from_secs(10) => {
                    actix_rt::time::sleep(Duration::from_millis(20)).await;
                    waited += Duration::from_millis(20);
                }
                other => break other,
            }
        };
        assert_eq!(value, Ok(Some(1)));
        assert_eq!(e.stats().await.unwrap().shards[shard].restarts, 1);
        e.shutdown().await;
    }
}
