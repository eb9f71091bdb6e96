//! The remember-me demo as a real process (`target/<profile>/examples/remember_me`, which a
//! plain `cargo test` builds; with a test filter, run `cargo build --all-features --example
//! remember_me` first): restarts and `kill -9` loops, its audit log, metrics endpoint and
//! header transport, two instances on one Redis, Redis over TLS, a real browser (Chromium
//! through chromedriver), and the load generators' loopback-only check.

#[path = "../support/canary.rs"]
mod canary;
#[path = "../support/demo.rs"]
mod demo;
// The load generators' shared client code (`examples/load_test.rs`, `examples/soak.rs`), for
// `load_clients.rs`: examples' own `#[cfg(test)]` tests never run under `cargo test`.
#[allow(dead_code, reason = "only the loopback check is tested here")]
#[path = "../../examples/support/demo_client.rs"]
mod demo_client;
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
mod load_clients;
mod metrics;
mod migrate;
mod outage;
mod persistence;
mod redis;
mod redis_tls;
mod sentinel;
