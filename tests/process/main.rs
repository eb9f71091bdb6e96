//! The remember-me demo as a real process (`target/<profile>/examples/remember_me`, which a
//! plain `cargo test` builds; with a test filter, run `cargo build --all-features --example
//! remember_me` first): restarts and `kill -9` loops, its audit log, metrics endpoint and
//! header transport, two instances on one Redis, Redis over TLS, and a real browser
//! (Chromium through chromedriver).

#[path = "../support/canary.rs"]
mod canary;
#[path = "../support/demo.rs"]
mod demo;
#[cfg(feature = "redis")]
#[path = "../support/redis_server.rs"]
mod redis_server;
#[path = "../support/routing.rs"]
mod routing;
#[path = "../support/tmpfs.rs"]
mod tmpfs;

mod audit;
mod browser;
mod crash_loop;
mod header;
mod metrics;
mod migrate;
mod outage;
mod persistence;
mod redis;
mod redis_tls;
mod sentinel;
