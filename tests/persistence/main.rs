//! Sessions on disk, from outside the engine: snapshots (when and what is written, the format
//! across versions, damage), the write-ahead log, restarts in one process, and the model-based
//! property test with crashes (see `support/persistence.rs`).

#[path = "../support/persistence.rs"]
mod support;

/// A throwaway redis-server, for `erase-user` on Redis (cli.rs).
#[cfg(all(feature = "cli", feature = "redis"))]
#[path = "../support/redis_server.rs"]
mod redis_server;

mod budget;
#[cfg(feature = "cli")]
mod cli;
mod damage;
mod erase;
mod format;
mod full_disk;
mod log;
mod model;
mod restart;
mod sealed;
mod snapshots;
