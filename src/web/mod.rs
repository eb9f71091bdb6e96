//! The actix-web layer: [`SessionMiddleware`] maps the session cookie to the engine, and the
//! [`Session`] extractor gives handlers Draco's session API.
//!
//! ```
//! use actix_web::{App, HttpResponse, Result, test, web};
//! use draco_session::{Config, Session, SessionEngine, SessionMiddleware};
//!
//! async fn hello(session: Session) -> Result<HttpResponse> {
//!     let visits = session.namespace("stats").increment("visits", 1).await?;
//!     Ok(HttpResponse::Ok().body(format!("visit number {visits}")))
//! }
//!
//! # actix_rt::System::new().block_on(async {
//! let mut config = Config::default();
//! config.session.secret = Some("an example secret of at least 32 bytes".into());
//! config.storage.persist = false;
//! let engine = SessionEngine::start(config).unwrap();
//!
//! let app = test::init_service(
//!     App::new().wrap(SessionMiddleware::new(engine.clone())).route("/", web::get().to(hello)),
//! )
//! .await;
//! let req = test::TestRequest::get().uri("/").insert_header(("user-agent", "Mozilla/5.0")).to_request();
//! let res = test::call_service(&app, req).await;
//! assert!(res.headers().contains_key("set-cookie")); // the first write created the session
//! # engine.shutdown().await;
//! # });
//! ```

mod access;
mod auth;
pub(crate) mod cookie;
pub(crate) mod csrf;
mod devices;
mod error;
mod extract;
mod finish;
mod flash;
mod middleware;
mod namespace;
pub(crate) mod rate;
mod request_state;
mod session;

pub use devices::Device;
pub use extract::MaybeSession;
pub use flash::{Flash, FlashLevel};
pub use middleware::{SessionMiddleware, SessionService};
pub use namespace::Namespace;
pub use session::Session;
