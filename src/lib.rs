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
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod clock;
mod config;
mod engine;
mod error;
// Not part of the API: entry points for `fuzz/` and tests/fuzz_regressions.rs.
#[doc(hidden)]
pub mod fuzzing;
mod id;
mod memory;
mod message;
#[cfg(feature = "redis")]
mod redis;
mod robot;
mod secret;
mod snapshot;
mod state;
mod web;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    CONFIG_ENV, Config, CookieConfig, LimitsConfig, SECRET_ENV, SameSite, SessionConfig, StorageBackend, StorageConfig,
};
pub use engine::{EngineBuilder, EngineMessage, SessionEngine};
pub use error::{ConfigError, Result, SessionError, StartError, Unavailable};
pub use id::{ID_LEN, Keyring, SessionId};
pub use memory::Placement;
pub use message::*;
pub use robot::{RobotDetector, RobotsConfig};
pub use state::{DEFAULT_SCOPE, MAX_NAME_LEN, SessionState};
pub use web::{MaybeSession, Namespace, Session, SessionMiddleware, SessionService, WebError};

/// The README's examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
