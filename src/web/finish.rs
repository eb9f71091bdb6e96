//! After the handler: what a response must say about the session id ([`Sent`]), from what its
//! request did to the session ([`Ending`]), including the once-a-day refresh of a remember-me
//! cookie. The [`SessionMiddleware`](super::SessionMiddleware) writes it on each enabled
//! transport: the `Set-Cookie`, and the `[header]` header.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::HeaderValue;

use super::cookie;
use super::request_state::Ending;
use super::session::Session;
use crate::config::{Config, CookieConfig};
use crate::id::SessionId;
use crate::message::{SessionInfo, Touch};

/// What a response tells the client about its session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// This id, from now on; a cookie lives `max_age` when given, else until the browser closes.
    Id {
        /// The session's id.
        id: SessionId,
        /// The remember-me cookie's lifetime.
        max_age: Option<Duration>,
    },
    /// No session any more: drop the id.
    Removed,
}

impl Sent {
    /// The `Set-Cookie` that says it.
    pub(crate) fn set_cookie(&self, config: &CookieConfig) -> HeaderValue {
        match self {
            Sent::Id { id, max_age } => cookie::set_cookie(config, id, *max_age),
            Sent::Removed => cookie::removal_cookie(config),
        }
    }

    /// The `[header]` value that says it: the id, or empty.
    pub(crate) fn header_value(&self) -> HeaderValue {
        match self {
            // The id is base64url, always a valid header value.
            Sent::Id { id, .. } => HeaderValue::from_bytes(&id.encode()).expect("base64url is header-safe"),
            Sent::Removed => HeaderValue::from_static(""),
        }
    }
}

impl Session {
    /// What this response must say about the session id, if the cookie changed.
    ///
    /// An unchanged cookie is sent again only to refresh a persistent cookie's `Max-Age`, on
    /// the session's first use in a UTC calendar day: the day of the engine's `last_access`
    /// before this request differs from the day of this request's use. So a remember-me
    /// cookie is renewed at most once a day and never lags its session by more than a day.
    pub(crate) async fn finish(&self) -> Option<Sent> {
        let engine = self.engine();
        let config = engine.config();
        let ending = self.state().ending();
        let (info, used, before) = match ending {
            Ending::Keep => return None,
            Ending::Remove => return Some(Sent::Removed),
            Ending::Set(info) => return Some(cookie_for(config, &info)),
            Ending::Unchanged { info, used, before } => (info, used, before),
        };
        if !info.persistent && used {
            return None;
        }
        // An operation of this request already used the session now: unless that made a new
        // UTC day, nothing is due and there is no need to ask the engine.
        if used && before.is_none_or(|b| utc_day(b) == utc_day(engine.now())) {
            return None;
        }
        // Every request that looked at its session counts as a use of it.
        // Boxed: the rare way, kept out of every request's future (see `Session::on_live`).
        let now = Box::pin(engine.door().run(Touch { id: info.id })).await.ok()?;
        let due = now.persistent && before.is_some_and(|b| utc_day(b) != utc_day(now.last_access));
        due.then(|| cookie_for(config, &now))
    }
}

fn cookie_for(config: &Config, info: &SessionInfo) -> Sent {
    let max_age = info.persistent.then(|| {
        // Equal to `persistent_ttl`, unless an absolute cap ends the session sooner.
        let left = info.expires.duration_since(info.last_access).unwrap_or_default();
        left.min(config.session.persistent_ttl)
    });
    Sent::Id { id: info.id, max_age }
}

fn utc_day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400)
}
