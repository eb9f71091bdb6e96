//! [`WebError`]: what a [`Session`](super::Session) method can fail with, and the HTTP response
//! each failure becomes. Responses never carry internal details; those go to the log.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::error::{SessionError, Unavailable, WebError};

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NoSession | Self::CrossSite(_) | Self::Reauthenticate => StatusCode::FORBIDDEN,
            Self::ReservedScope => StatusCode::BAD_REQUEST,
            Self::MissingMiddleware => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TooManyNewSessions { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Engine(e) => match e {
                SessionError::NotLoggedIn | SessionError::SessionGone | SessionError::WrongType(_) => {
                    StatusCode::CONFLICT
                }
                SessionError::InvalidName { .. } | SessionError::InvalidUserId => StatusCode::BAD_REQUEST,
                SessionError::ValueTooLarge { .. }
                | SessionError::TooManyKeys { .. }
                | SessionError::SessionTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                SessionError::Full { .. } | SessionError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        // Every body is a fixed text: engine messages can name limits, values or panics.
        let body = match status {
            StatusCode::FORBIDDEN if matches!(self, Self::CrossSite(_)) => {
                "cross-site request refused: this site accepts POST, PUT, PATCH and DELETE requests only from \
                 its own pages"
            }
            StatusCode::FORBIDDEN if *self == Self::Reauthenticate => {
                "reauthenticate: this action needs a recent login; confirm your password and try again"
            }
            StatusCode::FORBIDDEN => "no session: sessions are not given to robots or clients without a User-Agent",
            StatusCode::CONFLICT => match self {
                Self::Engine(SessionError::NotLoggedIn) => "not logged in: only a logged-in session can be persistent",
                Self::Engine(SessionError::WrongType(_)) => {
                    "the stored value is not of the type this request expects: nothing was changed"
                }
                _ => "the session ended during this request: reload and try again",
            },
            StatusCode::BAD_REQUEST if *self == Self::ReservedScope => {
                "invalid session request: scope names starting with __draco. are reserved"
            }
            StatusCode::BAD_REQUEST => "invalid session request: scope and key names must be 1 to 256 bytes",
            StatusCode::PAYLOAD_TOO_LARGE => "session data too large",
            StatusCode::TOO_MANY_REQUESTS => "too many new sessions from this address: try again later",
            StatusCode::SERVICE_UNAVAILABLE => "sessions are temporarily unavailable: try again shortly",
            _ => "internal server error",
        };
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            log::error!("session operation failed: {self}");
        } else if status == StatusCode::SERVICE_UNAVAILABLE && !self.in_outage() {
            log::warn!("session operation refused: {self}");
        } else {
            log::debug!("session operation refused: {self}");
        }
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        if let Self::TooManyNewSessions { retry_after } = self {
            // Whole seconds, rounded up: never "0", which would invite an immediate retry.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.insert_header((header::RETRY_AFTER, secs.max(1)));
        }
        response.content_type("text/plain; charset=utf-8").body(body)
    }
}

impl WebError {
    /// A refusal the engine reports as part of an outage (Redis unreachable or silent, the disk
    /// failing): a few lines per outage there, so none per request here.
    fn in_outage(&self) -> bool {
        matches!(
            self,
            Self::Engine(SessionError::Unavailable(
                Unavailable::BackendUnreachable { .. }
                    | Unavailable::BackendTimeout { .. }
                    | Unavailable::Storage { .. }
            ))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body(e: WebError) -> (StatusCode, String) {
        let r = e.error_response();
        let status = r.status();
        let bytes = r.into_body().try_into_bytes().unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[test]
    fn statuses_and_opaque_bodies() {
        let secret = "db password hunter2";
        let (s, b) = body(WebError::Engine(SessionError::Panicked(secret.into())));
        assert_eq!(s, 500);
        assert!(!b.contains("hunter2"), "{b}");
        let (s, b) = body(WebError::Engine(SessionError::Codec(secret.into())));
        assert_eq!(s, 500);
        assert!(!b.contains("hunter2"));
        let (s, b) = body(WebError::Engine(SessionError::Unavailable(crate::error::Unavailable::BackendUnreachable {
            message: secret.into(),
        })));
        assert_eq!(s, 503);
        assert!(!b.contains("hunter2"));
        assert_eq!(body(WebError::Engine(SessionError::ValueTooLarge { size: 9, limit: 8 })).0, 413);
        assert_eq!(body(WebError::Engine(SessionError::SessionTooLarge { size: 9, limit: 8 })).0, 413);
        assert_eq!(body(WebError::Engine(SessionError::Full { limit: 1 })).0, 503);
        assert_eq!(body(WebError::Engine(SessionError::NotLoggedIn)).0, 409);
        assert_eq!(body(WebError::NoSession).0, 403);
        let limited = WebError::TooManyNewSessions { retry_after: std::time::Duration::from_millis(1500) };
        assert_eq!(limited.error_response().headers().get("retry-after").unwrap(), "2");
        assert_eq!(body(limited).0, 429);
        assert_eq!(body(WebError::MissingMiddleware).0, 500);
        let (s, b) = body(WebError::CrossSite("Sec-Fetch-Site says another site sent it"));
        assert_eq!(s, 403);
        assert!(b.starts_with("cross-site request refused"), "{b}");
        let (s, b) = body(WebError::Reauthenticate);
        assert_eq!(s, 403);
        assert!(b.starts_with("reauthenticate:"), "{b}");
        let (s, b) = body(WebError::ReservedScope);
        assert_eq!(s, 400);
        assert!(b.contains("reserved"), "{b}");
    }

    #[test]
    fn every_unavailable_reason_is_a_503_and_an_internal_error_a_500() {
        use crate::error::Unavailable;
        let reasons = [
            Unavailable::EngineStopped,
            Unavailable::ShardRestarting { shard: 3 },
            Unavailable::Busy { what: "the shard" },
            Unavailable::BackendUnreachable { message: "refused".into() },
            Unavailable::BackendTimeout { after: std::time::Duration::from_secs(1) },
            Unavailable::Storage { message: "disk full".into() },
        ];
        for reason in reasons {
            let text = SessionError::from(reason.clone()).to_string();
            assert!(text.starts_with("session engine unavailable: "), "{text}");
            assert_eq!(body(WebError::Engine(reason.into())).0, 503);
        }
        let (s, b) = body(WebError::Engine(SessionError::internal("an invariant broke: hunter2")));
        assert_eq!(s, 500);
        assert!(!b.contains("hunter2"), "{b}");
    }
}
