//! The engine through its API, without HTTP: values, identity (login, logout, remember-me),
//! the per-user index, expiry, limits, events, concurrency, start and stop, and where shard
//! workers run. Each behaviour test runs on memory, Redis and Redis Cluster (`both!` and
//! `cluster!`, see `support/engine.rs`); test names are `<area>::<backend>::<test>`.

#[macro_use]
#[path = "../support/engine.rs"]
mod support;

mod budget;
mod concurrency;
mod erase;
mod events;
mod expiry;
mod identity;
mod legacy_keys;
mod lifecycle;
mod limits;
mod placement;
mod sealed;
mod server_threads;
mod shared_redis;
mod users;
mod values;
