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
//! | item | why a user needs it |
//! |---|---|
//! | [`SessionEngine`], [`EngineBuilder`], [`Placement`] | start the engine (either backend), use it without HTTP (jobs, load tests), choose where shard workers run |
//! | [`SessionMiddleware`], [`Session`], [`Namespace`], [`MaybeSession`], [`SessionService`] | the actix-web side: the middleware, the extractors, Draco's session API; `SessionService` is the type actix-web builds from the middleware |
//! | [`Flash`], [`FlashLevel`], [`MAX_FLASHES`], [`MAX_FLASH_TEXT`] | flash messages ([`Session::flash`], [`Session::take_flashes`]) and their bounds |
//! | [`SessionId`], [`Keyring`], [`ID_LEN`], [`SessionHandle`] | ids as values (parse, display, shard), the keys that tag them, and the handles that name a user's other sessions |
//! | [`Config`] and its sections, [`CONFIG_ENV`], [`SECRET_ENV`], [`RobotsConfig`] | `config.toml` as types, the environment variables the engine reads |
//! | [`SessionError`], [`Unavailable`], [`WebError`], [`ConfigError`], [`StartError`], [`Result`] | errors, one enum per layer, to match on |
//! | [`Get`], [`Set`], [`Login`], … [`EngineMessage`], [`SessionInfo`], [`EngineStats`] | the typed messages of the design, sent with [`SessionEngine::send`], and what the engine answers |
//! | [`SessionEvent`], [`EventKind`], [`Subscription`], [`Delivery`] | session events for audit logs and "new sign-in" mail, from [`SessionEngine::subscribe`] |
//! | [`RobotDetector`] | robot detection on its own (the middleware uses the engine's) |
//! | [`Clock`], [`SystemClock`], [`ManualClock`] | a clock to wind forward in tests, so expiry is tested without sleeping |
//! | [`DEFAULT_SCOPE`], [`MAX_NAME_LEN`], [`RESERVED_SCOPE_PREFIX`] | Draco's default namespace, the name limit, and the scope names kept for the crate's own data (the CSRF secret) |
//!
//! Everything else (the shard, its worker actor and supervisor, the Redis store, the snapshot
//! format) is internal. How the layers fit together, one request's path and the invariants
//! the code keeps are in [`architecture`] (`ARCHITECTURE.md` in the repository).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod clock;
mod config;
mod engine;
mod error;
mod events;
// Not part of the API: entry points for `fuzz/`, tests/fuzz_regressions.rs and one bench.
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
mod telemetry;
mod wal;
mod web;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    CONFIG_ENV, Config, CookieConfig, CreateRate, CsrfConfig, EventsConfig, HeaderConfig, LimitsConfig, LogMode,
    SECRET_ENV, SameSite, SessionConfig, StorageBackend, StorageConfig,
};
pub use engine::{EngineBuilder, EngineMessage, SessionEngine};
pub use error::{ConfigError, Result, SessionError, StartError, Unavailable};
pub use events::{Delivery, EventKind, SessionEvent, Subscription};
pub use id::{ID_LEN, Keyring, SessionHandle, SessionId};
pub use memory::Placement;
pub use message::*;
pub use robot::{RobotDetector, RobotsConfig};
pub use state::{DEFAULT_SCOPE, MAX_NAME_LEN};
pub use web::{
    Device, Flash, FlashLevel, MAX_FLASH_TEXT, MAX_FLASHES, MaybeSession, Namespace, RESERVED_SCOPE_PREFIX, Session,
    SessionMiddleware, SessionService, WebError,
};

/// The crate's design: `ARCHITECTURE.md`, rendered here so it ships with the docs.
#[doc = include_str!("../ARCHITECTURE.md")]
pub mod architecture {}

/// The README's examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
