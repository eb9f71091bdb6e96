//! [`SessionMiddleware`]: connects the session cookie of each request to the engine.

use std::rc::Rc;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{CACHE_CONTROL, HeaderName, HeaderValue, SET_COOKIE, VARY};
use actix_web::{Error, HttpMessage};
use futures_util::future::LocalBoxFuture;

use super::csrf;
use super::rate;
use super::session::Session;
use crate::engine::SessionEngine;
use crate::error::WebError;

/// Gives every request a [`Session`](super::Session) and writes the session cookie back.
///
/// Per request it only parses the `Cookie` header (raw bytes, our cookie name only) and
/// checks the ids' tags; the engine is asked nothing until a handler uses the session (its
/// first operation carries the cookie's lookup along).
/// After the handler it adds a `Set-Cookie` only when the cookie changed: a new session, a
/// rotation by login/logout, a persistence change, `destroy()`, or the daily refresh of a
/// remember-me cookie's `Max-Age`. A response carrying that `Set-Cookie` also gets
/// `Cache-Control: no-store`, so no shared cache keeps the session id for other clients,
/// unless the handler set a `Cache-Control` of its own (then keeping cookies out of caches is
/// the handler's job).
///
/// With `[header] name` set (the header transport, see [`HeaderConfig`](crate::config::HeaderConfig)),
/// the id is also read from that request header, which wins over the cookie when present. A
/// response that would set the cookie also carries the id in that header (an empty value after
/// `destroy()`), with the same `Cache-Control: no-store`, when the request carried the header
/// (a client using the header sends it empty until it has an id) or cookies are off: a page's
/// script can read a response header, so a browser living on its `HttpOnly` cookie never gets
/// its id there. With `[cookie] enabled = false` no `Set-Cookie` is ever sent and the
/// request's cookie is ignored.
///
/// A response whose handler used the session (any operation, which looks the cookie up first)
/// gets `Vary: Cookie` (and the header transport's name when it is on), so no shared cache
/// hands one client's page to another.
///
/// That refresh happens on a persistent session's first use in a UTC calendar day: the
/// middleware compares the day of the session's `last_access` before the request (the engine's
/// clock, as the request's first operation found it) with the day of this request's use.
/// So the cookie is re-sent at most once a day per session and never expires more than a day
/// before the session it names.
///
/// Before the handler, with `[csrf] origin_guard` on (the default), it refuses with a 403
/// ([`WebError::CrossSite`]) every POST, PUT, PATCH or DELETE that another site made the
/// browser send (see [`CsrfConfig::origin_guard`](crate::config::CsrfConfig::origin_guard)); the
/// per-form tokens are [`Session::csrf_token`](super::Session::csrf_token).
///
/// Build it once, outside the `HttpServer` factory, and clone it into each worker's `App`:
/// clones share the robot detector and the engine handle.
///
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use draco_session::{Config, SessionEngine, SessionMiddleware};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let engine = SessionEngine::start(Config::default()).expect("session engine");
///     let sessions = SessionMiddleware::new(engine.clone());
///     HttpServer::new(move || App::new().wrap(sessions.clone()))
///         .bind(("127.0.0.1", 8080))?
///         .run()
///         .await?;
///     engine.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct SessionMiddleware {
    engine: SessionEngine,
    /// `[header] name`, parsed once: looking a header up by a `&str` would parse (and, for a
    /// custom name, allocate) on every request.
    id_header: Option<HeaderName>,
}

impl SessionMiddleware {
    /// The middleware for `engine`, with its cookie, header and robot settings. The robot
    /// detector is the engine's, built once when the engine started, so middlewares are cheap
    /// to make.
    pub fn new(engine: SessionEngine) -> Self {
        let id_header = id_header(&engine.config().header.name);
        Self { engine, id_header }
    }

    /// The engine sessions live in.
    pub fn engine(&self) -> &SessionEngine {
        &self.engine
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Self::Transform, Self::InitError>>;

    /// Runs on each actix-web worker thread as it starts: that thread adopts one of the
    /// engine's shards ([`SessionEngine::host_here`]), so the sessions it creates live on it.
    fn new_transform(&self, service: S) -> Self::Future {
        let engine = self.engine.clone();
        let id_header = self.id_header.clone();
        Box::pin(async move {
            if let Some(shard) = engine.host_here().await {
                log::debug!("shard {shard} hosted on this actix-web worker thread");
            }
            let vary = vary(id_header.as_ref());
            Ok(SessionService { service: Rc::new(service), engine, id_header, vary })
        })
    }
}

/// The `[header]` transport's header, `None` when off. The engine validated the name when it
/// started, so it parses.
fn id_header(name: &str) -> Option<HeaderName> {
    if name.is_empty() {
        return None;
    }
    let parsed = HeaderName::from_bytes(name.as_bytes());
    if parsed.is_err() {
        log::error!("[header] name {name:?} is not a header name: the header transport is off");
    }
    parsed.ok()
}

/// The service [`SessionMiddleware`] wraps around an app; actix-web builds it.
#[derive(Debug)]
pub struct SessionService<S> {
    service: Rc<S>,
    engine: SessionEngine,
    id_header: Option<HeaderName>,
    /// `Vary` for a response that used the session: `Cookie`, and the header transport's name.
    vary: HeaderValue,
}

/// The `Vary` value of a response whose handler used the session.
fn vary(id_header: Option<&HeaderName>) -> HeaderValue {
    match id_header {
        None => HeaderValue::from_static("Cookie"),
        Some(name) => HeaderValue::from_str(&format!("Cookie, {name}")).unwrap_or(HeaderValue::from_static("Cookie")),
    }
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let own_origin = || {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        };
        if let Some(why) = csrf::refusal(req.method(), req.headers(), own_origin, &self.engine.config().csrf) {
            log::debug!("{} {} refused by the origin guard: {why}", req.method(), req.path());
            return Box::pin(std::future::ready(Err(WebError::CrossSite(why).into())));
        }
        let limits = &self.engine.config().limits;
        let peer = req.peer_addr().map(|a| a.ip());
        let client = rate::client_ip(peer, req.headers(), limits.trust_forwarded_for);
        let session = Session::for_request(self.engine.clone(), req.headers(), client, self.id_header.as_ref());
        req.extensions_mut().insert(session.clone());
        let service = self.service.clone();
        // The header transport answers in its header only a client that uses it: one that sent
        // the header (empty until it has an id), or any client when cookies are off. A page's
        // script could read the header, so a cookie-only browser never gets its id there.
        let cookies = self.engine.config().cookie.enabled;
        let id_header_out = self.id_header.clone().filter(|name| !cookies || req.headers().contains_key(name));
        let vary = self.vary.clone();
        Box::pin(async move {
            let mut response = service.call(req).await?;
            if session.consulted() {
                // The answer depends on the session the request named: no cache may give it
                // to a request naming another (or none).
                response.response_mut().headers_mut().append(VARY, vary);
            }
            let sent = session.finish().await;
            // The fresh-login marker (`auth.rs`), after the session cookie it goes with.
            let marker = session.marker_cookie();
            if sent.is_some() || marker.is_some() {
                let cookie = &session.config().cookie;
                let headers = response.response_mut().headers_mut();
                if let Some(sent) = sent {
                    if cookie.enabled {
                        headers.append(SET_COOKIE, sent.set_cookie(cookie));
                    }
                    if let Some(name) = id_header_out {
                        headers.insert(name, sent.header_value());
                    }
                }
                if let Some(marker) = marker {
                    headers.append(SET_COOKIE, marker);
                }
                // A cache that stored this response would hand the cookie (or the header), a
                // session id, to the next client. The handler's own Cache-Control, if any, is
                // its call.
                if !headers.contains_key(CACHE_CONTROL) {
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
            }
            Ok(response)
        })
    }
}
