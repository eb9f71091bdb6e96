//! Supervisor actor: starts one worker per shard on its own arbiter (thread), restarts a worker
//! that died, and fans engine-wide messages out to every shard.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, Addr, Arbiter, AsyncContext, Context, Handler, Message, ResponseActFuture, ResponseFuture,
    WrapFuture,
};
use futures_util::future::join_all;

use crate::error::{Result, SessionError};
use crate::message::{EngineStats, LogoutUser, SessionInfo, SessionsOf, Stats, Sweep};
use crate::worker::{Shared, Worker};

/// How often the supervisor checks that every worker is alive.
const HEALTH_INTERVAL: Duration = Duration::from_millis(200);

/// Shard → worker address, read on every operation, written only on restart.
#[derive(Debug)]
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

    fn replace(&self, shard: usize, addr: Addr<Worker>) {
        self.workers.write().unwrap_or_else(|e| e.into_inner())[shard] = addr;
    }
}

/// Owns the workers' lifecycle. Per-session messages bypass it: the engine handle routes them
/// straight to the owning worker, so the supervisor is never a bottleneck.
pub struct Supervisor {
    shared: Arc<Shared>,
    router: Arc<Router>,
    arbiters: Vec<Arbiter>,
    restarts: Vec<u64>,
}

impl Supervisor {
    /// Starts the workers; the caller must be inside a running actix `System`.
    pub(crate) fn launch(shared: Arc<Shared>) -> (Addr<Self>, Arc<Router>) {
        let shards = shared.shards;
        let arbiters: Vec<Arbiter> = (0..shards).map(|_| Arbiter::new()).collect();
        let workers =
            arbiters.iter().enumerate().map(|(shard, arbiter)| spawn_worker(arbiter, shard, &shared, 0)).collect();
        let router = Arc::new(Router { workers: RwLock::new(workers) });
        let supervisor = Supervisor { shared, router: router.clone(), arbiters, restarts: vec![0; shards] };
        (supervisor.start(), router)
    }

    fn check_workers(&mut self) {
        for (shard, addr) in self.router.all().into_iter().enumerate() {
            if addr.connected() {
                continue;
            }
            self.restarts[shard] += 1;
            log::error!(
                "shard {shard}: worker died; restarting it (restart #{}), its in-memory sessions are lost",
                self.restarts[shard]
            );
            if !self.arbiters[shard].spawn(async {}) {
                self.arbiters[shard] = Arbiter::new();
            }
            let addr = spawn_worker(&self.arbiters[shard], shard, &self.shared, self.restarts[shard]);
            self.router.replace(shard, addr);
        }
    }
}

fn spawn_worker(arbiter: &Arbiter, shard: usize, shared: &Arc<Shared>, restarts: u64) -> Addr<Worker> {
    let shared = shared.clone();
    Worker::start_in_arbiter(&arbiter.handle(), move |_| Worker::new(shard, shared, restarts))
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        log::info!("session engine started: {} shards", self.shared.shards);
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

/// Stops every worker and the supervisor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        actix::ActorContext::stop(ctx);
    }
}

/// Sends `msg` to every worker and collects the answers.
fn fan_out<M, R>(router: &Router, msg: M) -> impl Future<Output = Result<Vec<R>>> + use<M, R>
where
    M: Message<Result = Result<R>> + Clone + Send + 'static,
    R: Send + 'static,
    Worker: actix::Handler<M>,
{
    let requests: Vec<_> = router.all().into_iter().map(|a| a.send(msg.clone())).collect();
    async move {
        let mut out = Vec::with_capacity(requests.len());
        for answer in join_all(requests).await {
            out.push(answer.map_err(|e| SessionError::Unavailable(format!("shard worker: {e}")))??);
        }
        Ok(out)
    }
}

impl Handler<LogoutUser> for Supervisor {
    type Result = ResponseFuture<Result<usize>>;

    fn handle(&mut self, msg: LogoutUser, _: &mut Context<Self>) -> Self::Result {
        let all = fan_out(&self.router, msg);
        Box::pin(async move { Ok(all.await?.into_iter().sum()) })
    }
}

impl Handler<SessionsOf> for Supervisor {
    type Result = ResponseFuture<Result<Vec<SessionInfo>>>;

    fn handle(&mut self, msg: SessionsOf, _: &mut Context<Self>) -> Self::Result {
        let all = fan_out(&self.router, msg);
        Box::pin(async move {
            let mut sessions: Vec<SessionInfo> = all.await?.into_iter().flatten().collect();
            sessions.sort_by_key(|s| std::cmp::Reverse(s.last_access));
            Ok(sessions)
        })
    }
}

impl Handler<Sweep> for Supervisor {
    type Result = ResponseFuture<Result<usize>>;

    fn handle(&mut self, msg: Sweep, _: &mut Context<Self>) -> Self::Result {
        let all = fan_out(&self.router, msg);
        Box::pin(async move { Ok(all.await?.into_iter().sum()) })
    }
}

impl Handler<Stats> for Supervisor {
    type Result = ResponseActFuture<Self, Result<EngineStats>>;

    fn handle(&mut self, msg: Stats, _: &mut Context<Self>) -> Self::Result {
        let all = fan_out(&self.router, msg);
        Box::pin(all.into_actor(self).map(|answers, supervisor, _| {
            let mut stats = EngineStats::default();
            for (shard, answer) in answers?.into_iter().enumerate() {
                let mut s = answer.shards[0];
                s.restarts = supervisor.restarts[shard];
                stats.sessions += s.sessions;
                stats.shards.push(s);
            }
            Ok(stats)
        }))
    }
}
