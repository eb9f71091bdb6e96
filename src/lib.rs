//! # draco-session
//!
//! An embedded, actor-based session engine for actix-web, with the session API of the Draco
//! web framework: namespaced session data, `login(userid)` / `logout()`, remember-me
//! persistence, and no sessions at all for web robots.
//!
//! A supervisor actor shards sessions over worker actors by a stable hash of the id; each
//! worker alone owns its sessions, so concurrent requests on one session never lose writes.
//!
//! Past one process, `[storage] backend = "redis"` (cargo feature `redis`) keeps sessions in a
//! Redis server (`storage.redis_url`) shared by every app instance, behind the same API: start
//! the engine with [`SessionEngine::start_async`], which starts either backend.
//!
//! ```
//! use draco_session::{Config, SessionEngine, SessionError};
//!
//! # actix_rt::System::new().block_on(async {
//! let mut config = Config::default();
//! config.session.secret = Some("an example secret of at least 32 bytes".into());
//! config.storage.persist = false;
//! let engine = SessionEngine::start(config).unwrap();
//!
//! let session = engine.create().await.unwrap();
//! engine.insert(&session.id, "cart", "items", &vec!["book"]).await.unwrap();
//! assert_eq!(engine.increment(&session.id, "stats", "visits", 1).await.unwrap(), 1);
//!
//! // Remember-me needs a logged-in user.
//! assert_eq!(engine.set_persistent(&session.id, true).await, Err(SessionError::NotLoggedIn));
//! let logged_in = engine.login(&session.id, 42).await.unwrap();
//! assert_ne!(logged_in.id, session.id); // the id rotates; the old one is dead
//! assert_eq!(engine.get::<Vec<String>>(&session.id, "cart", "items").await, Err(SessionError::SessionGone));
//! assert_eq!(engine.get::<Vec<String>>(&logged_in.id, "cart", "items").await.unwrap().unwrap(), ["book"]);
//! # engine.shutdown().await;
//! # });
//! ```
//!
//! ## What is public, and why
//!
//! The root holds what an application names; each group of the rest has a module of its own.
//!
//! | item | why a user needs it |
//! |---|---|
//! | [`SessionEngine`], [`EngineBuilder`], [`Placement`] | start the engine (either backend), use it without HTTP (jobs, load tests), choose where shard workers run |
//! | [`EngineMessage`], [`SessionInfo`] | the bound of [`SessionEngine::send`] (implemented by every type of [`message`]), and what most operations answer |
//! | [`SessionMiddleware`], [`SessionService`], [`Session`], [`Namespace`], [`MaybeSession`] | the actix-web side: the middleware, the extractors, Draco's session API; `SessionService` is the type actix-web builds from the middleware |
//! | [`Flash`], [`FlashLevel`] | flash messages ([`Session::flash`], [`Session::take_flashes`]) |
//! | [`Device`] | one of the user's sessions as a devices page shows it ([`Session::devices`]) |
//! | [`SessionId`], [`SessionHandle`], [`Keyring`] | ids as values (parse, display), the handles that name a user's other sessions, and the keys that tag ids |
//! | [`Config`], [`CONFIG_ENV`], [`SECRET_ENV`] | `config.toml` as a type, the environment variables the engine reads |
//! | [`SessionError`], [`WebError`] | what an operation and a handler fail with, to match on |
//! | [`RobotDetector`] | robot detection on its own (the middleware uses the engine's) |
//! | [`Clock`], [`SystemClock`], [`ManualClock`] | a clock to wind forward in tests, so expiry is tested without sleeping |
//! | [`config`] | the sections of [`Config`] (`SessionConfig`, `CookieConfig`, `StorageConfig`, …) and their enums |
//! | [`message`] | the typed messages of the design ([`message::Get`], [`message::Login`], …), sent with [`SessionEngine::send`], and what the engine answers ([`message::EngineStats`], …) |
//! | [`events`] | session events for audit logs and "new sign-in" mail, from [`SessionEngine::subscribe`] |
//! | [`error`] | every error type ([`error::StartError`], [`error::ConfigError`], [`error::Unavailable`], …) and the [`error::Result`] shorthand |
//! | [`limits`] | fixed names and bounds: Draco's default namespace, the name, id and flash limits, the scope names kept for the crate's own data |
//! | [`architecture`] | the design, as documentation |
//! | `tools` | not for users: hidden, and only with the `cli` cargo feature, what the `draco-session` command (`inspect`, `verify`, `migrate`) runs |
//! | `fuzzing` | not for users: hidden, and only with the `fuzzing` cargo feature (off by default; `fuzz/`, the corpus replay test and two benches turn it on), the parsers' entry points |
//!
//! Everything else (the shard, its worker actor and supervisor, the Redis store, the snapshot
//! format) is internal. How the layers fit together, one request's path and the invariants
//! the code keeps are in [`architecture`] (`ARCHITECTURE.md` in the repository).
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

mod clock;
pub mod config;
mod engine;
pub mod error;
pub mod events;
mod fsutil;
// Not part of the API: entry points for `fuzz/`, the fuzz corpus replay test and the benches
// that need an internal hook.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod id;
mod memory;
pub mod message;
mod names;
mod outage;
mod rate;
#[cfg(feature = "redis")]
mod redis;
mod redis_url;
mod robot;
mod seal;
mod secret;
mod snapshot;
mod state;
mod telemetry;
// Not part of the API: what the `draco-session` command (cargo feature `cli`) runs.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod tools;
mod wal;
mod web;
mod wire;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CONFIG_ENV, Config, SECRET_ENV};
pub use engine::{EngineBuilder, EngineMessage, SessionEngine};
pub use error::{SessionError, WebError};
// `crate::Result` for the crate's own code; users write `Result<T, SessionError>` (or
// `draco_session::error::Result`).
use error::Result;
pub use id::{Keyring, SessionHandle, SessionId};
pub use memory::Placement;
pub use message::SessionInfo;
pub use robot::RobotDetector;
// Root paths the crate's own code and docs use (`crate::Subscription`), not re-exported.
#[cfg(doc)]
use events::SessionEvent;
use events::Subscription;
pub use web::{Device, Flash, FlashLevel, MaybeSession, Namespace, Session, SessionMiddleware, SessionService};

/// Fixed names and bounds: [`DEFAULT_SCOPE`](limits::DEFAULT_SCOPE), Draco's namespace for
/// values set without one; the longest scope or key name; the length of an id and the shortest
/// secret; the flash queue's bounds; the scope names kept for the crate's own data.
pub mod limits {
    pub use crate::id::{ID_LEN, MIN_SECRET_LEN};
    pub use crate::names::{DEFAULT_SCOPE, MAX_FLASH_TEXT, MAX_FLASHES, MAX_NAME_LEN, RESERVED_SCOPE_PREFIX};
}

/// The crate's design: `ARCHITECTURE.md`, rendered here so it ships with the docs.
#[doc = include_str!("../ARCHITECTURE.md")]
pub mod architecture {}

/// The README's examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    /// The names this file makes public at the crate root: each `pub use`d name and `pub mod`
    /// (statements starting at the line's start; a module's own items are indented).
    fn root_items() -> Vec<String> {
        let source = include_str!("lib.rs");
        let mut items = Vec::new();
        for (at, _) in source.match_indices("\npub ") {
            let statement = &source[at + 1..];
            if let Some(module) = statement.strip_prefix("pub mod ") {
                items.push(module.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap().to_owned());
            } else if let Some(path) = statement.strip_prefix("pub use ") {
                let path = &path[..path.find(';').expect("a use ends with ;")];
                let names = match path.split_once('{') {
                    Some((_, list)) => list.trim_end_matches('}'),
                    None => path.rsplit("::").next().unwrap(),
                };
                items.extend(names.split(',').map(|n| n.trim().rsplit(' ').next().unwrap().to_owned()));
                items.retain(|n| !n.is_empty());
            }
        }
        items
    }

    #[test]
    fn the_root_holds_at_most_35_items_and_the_table_names_each() {
        let items = root_items();
        for expected in ["SessionEngine", "SessionMiddleware", "Config", "config", "message", "limits", "fuzzing"] {
            assert!(items.iter().any(|i| i == expected), "{expected} not found in {items:?}");
        }
        assert!(items.len() <= 35, "{} items at the root: {items:?}", items.len());
        let table: Vec<&str> = include_str!("lib.rs").lines().filter(|l| l.starts_with("//! | ")).collect();
        for item in &items {
            let named = |l: &&str| l.split(" | ").nth(1).is_some_and(|cell| cell.contains(&format!("`{item}`")));
            assert!(table.iter().any(named), "{item} is public but missing from the \"What is public\" table");
        }
    }
}
