//! The extractors: [`Session`] from the request the middleware prepared, and [`MaybeSession`],
//! which is `None` for a robot without a session.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use std::future::{Ready, ready};

use futures_util::future::{Either, LocalBoxFuture};

use super::session::Session;
use crate::error::WebError;

impl FromRequest for Session {
    type Error = WebError;
    type Future = Either<Ready<Result<Self, WebError>>, LocalBoxFuture<'static, Result<Self, WebError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(session) = req.extensions().get::<Session>().cloned() else {
            return Either::Left(ready(Err(WebError::MissingMiddleware)));
        };
        // The first operation looks the cookie up. Only a robot with a cookie needs it now:
        // whether it has a session decides `is_available`.
        if !(session.state().has_candidates() && session.is_robot()) {
            return Either::Left(ready(Ok(session)));
        }
        Either::Right(Box::pin(async move {
            session.resolve().await?;
            Ok(session)
        }))
    }
}

/// Extracts `Some(session)`, or `None` for a robot without a session: Draco's `if session:`.
///
/// actix-web's `Option<T>` extractor is `None` only when `T` fails to extract, and a
/// [`Session`] always extracts (a robot must still be served), so this wrapper stands in for
/// `Option<Session>`.
///
/// ```
/// use draco_session::{MaybeSession, WebError};
///
/// async fn page(MaybeSession(session): MaybeSession) -> Result<String, WebError> {
///     Ok(match session {
///         Some(s) => format!("user {}", s.userid().await?),
///         None => "no session for robots".into(),
///     })
/// }
/// ```
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<Session>);

impl MaybeSession {
    /// The session, if available.
    pub fn into_inner(self) -> Option<Session> {
        self.0
    }
}

impl FromRequest for MaybeSession {
    type Error = WebError;
    type Future = LocalBoxFuture<'static, Result<Self, WebError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = Session::from_request(req, payload);
        Box::pin(async move {
            let session = session.await?;
            Ok(MaybeSession(session.is_available().then_some(session)))
        })
    }
}
