//! [`Env`]: all a [`Shard`](super::shard::Shard) sees of the engine around it — time, the
//! session lifetimes and limits, the keys (and the sealer they make), the shard count and every shard's live count.
//! Nothing here moves a shard, writes a file or publishes anything: the router, the home
//! threads, the snapshot writer, the log and the event hub stay with the hosts
//! ([`Hosting`](super::Hosting)), and what a shard changed reaches the log and the hub through
//! its outbox ([`super::outbox`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::clock::Clock;
use crate::config::{Config, LimitsConfig};
use crate::events::Listeners;
use crate::id::{Keyring, SessionId};
use crate::seal::Sealer;
use crate::state::Lifetimes;

/// What every shard of one engine reads, and the live counts they keep together.
#[derive(Debug)]
pub(crate) struct Env {
    pub clock: Arc<dyn Clock>,
    pub lifetimes: Lifetimes,
    pub limits: LimitsConfig,
    /// Makes the new id of a rotation, and the handles events and listings name sessions by.
    pub keyring: Keyring,
    /// `session.logout_clears_data`.
    pub logout_clears_data: bool,
    /// The number of shards.
    pub shards: usize,
    /// Live sessions per shard; their sum is checked against `limits.max_sessions`.
    pub live: Vec<AtomicUsize>,
    /// Whether anyone subscribes to events: a shard describes an event only then.
    pub listeners: Listeners,
    /// Seals snapshot runs' chunks (`storage.encrypt`); the engine's one sealer, which its
    /// log and snapshot writer share.
    pub sealer: Arc<Sealer>,
}

impl Env {
    pub fn new(
        config: &Config,
        keyring: Keyring,
        sealer: Arc<Sealer>,
        clock: Arc<dyn Clock>,
        listeners: Listeners,
    ) -> Self {
        let shards = config.session.effective_shards();
        Self {
            clock,
            lifetimes: Lifetimes::from_config(&config.session),
            limits: config.limits.clone(),
            logout_clears_data: config.session.logout_clears_data,
            shards,
            live: (0..shards).map(|_| AtomicUsize::new(0)).collect(),
            listeners,
            sealer,
            keyring,
        }
    }

    /// Now, in milliseconds since the epoch.
    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Live sessions over every shard.
    pub fn live_total(&self) -> usize {
        self.live.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// A fresh id that routes to shard `shard`.
    pub fn id_in(&self, shard: usize) -> SessionId {
        self.keyring.generate_in_shard(shard, self.shards)
    }
}
