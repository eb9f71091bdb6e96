//! Flash messages: [`Session::flash`] queues a message for the user's next page ("Welcome back,
//! alice"), [`Session::take_flashes`] reads and empties the queue, once.
//!
//! The queue lives in the session, in the reserved scope [`FLASH_SCOPE`] (see
//! [`RESERVED_SCOPE_PREFIX`](crate::names::RESERVED_SCOPE_PREFIX)), so it survives a redirect, a login
//! or logout (which keep the data) and a restart like any value, and no application scope ever
//! shows it. It is bounded, so a handler that flashes in a loop cannot grow a session without
//! limit: at most [`MAX_FLASHES`] messages (the oldest dropped), each at most
//! [`MAX_FLASH_TEXT`] bytes (longer text cut at a character boundary).

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::session::Session;
use crate::error::SessionError;
use crate::error::WebError;
use crate::message::{Update, UpdateFn};
use crate::names::{FLASH_KEY, FLASH_SCOPE, MAX_FLASH_TEXT, MAX_FLASHES};

/// How a flash message should look: a page maps it to a style (see [`FlashLevel::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FlashLevel {
    /// Neutral information.
    Info,
    /// Something worked ("Welcome back").
    Success,
    /// Something to watch.
    Warning,
    /// Something failed.
    Error,
}

impl FlashLevel {
    /// `"info"`, `"success"`, `"warning"` or `"error"`: a CSS class, say.
    pub fn as_str(self) -> &'static str {
        match self {
            FlashLevel::Info => "info",
            FlashLevel::Success => "success",
            FlashLevel::Warning => "warning",
            FlashLevel::Error => "error",
        }
    }
}

impl std::fmt::Display for FlashLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One flash message, as [`Session::take_flashes`] answers it. The text is the application's
/// as given (cut to [`MAX_FLASH_TEXT`]): escape it for the page it goes into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Flash {
    /// Its level.
    pub level: FlashLevel,
    /// Its text.
    pub text: String,
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The queue after `flash` joins it: the oldest dropped past [`MAX_FLASHES`], and while its
/// encoding exceeds `max_bytes` (`limits.max_value_bytes`) as long as older ones remain.
fn pushed(queue: Option<Vec<Flash>>, flash: Flash, max_bytes: usize) -> Vec<Flash> {
    let mut queue = queue.unwrap_or_default();
    queue.push(flash);
    let excess = queue.len().saturating_sub(MAX_FLASHES);
    queue.drain(..excess);
    while queue.len() > 1 && serde_json::to_vec(&queue).map_or(0, |v| v.len()) > max_bytes {
        queue.remove(0);
    }
    queue
}

impl Session {
    /// Queues a message for the user's next page (read it there with
    /// [`take_flashes`](Self::take_flashes)): it stays in the session until taken, so it
    /// survives the redirect after a form, and a login or logout.
    ///
    /// Creates the session when there is none. A robot without a session gets none, and the
    /// message is dropped: this answers `Ok(())`, so handlers need no robot branch. Bounded:
    /// at most [`MAX_FLASHES`] queued (a further one drops the oldest), text cut to
    /// [`MAX_FLASH_TEXT`] bytes.
    ///
    /// ```
    /// use actix_web::{HttpResponse, http::header::LOCATION};
    /// use draco_session::{FlashLevel, Session, WebError};
    ///
    /// async fn saved(session: Session) -> Result<HttpResponse, WebError> {
    ///     session.flash(FlashLevel::Success, "Saved").await?;
    ///     Ok(HttpResponse::SeeOther().insert_header((LOCATION, "/")).finish())
    /// }
    ///
    /// async fn page(session: Session) -> Result<HttpResponse, WebError> {
    ///     let notes: String = session
    ///         .take_flashes()
    ///         .await?
    ///         .iter()
    ///         .map(|f| format!("<p class=\"{}\">{}</p>", f.level, f.text)) // escape in real pages
    ///         .collect();
    ///     Ok(HttpResponse::Ok().body(notes))
    /// }
    /// ```
    ///
    /// # Errors
    /// As [`Namespace::update`](super::Namespace::update): `SessionGone` (409), `Full` or
    /// `Unavailable` (503), and `ValueTooLarge` (413) only when `limits.max_value_bytes` is too
    /// small for even this one message.
    pub async fn flash(&self, level: FlashLevel, text: impl Into<String>) -> Result<(), WebError> {
        let flash = Flash { level, text: cut(text.into(), MAX_FLASH_TEXT) };
        let max_bytes = self.config().limits.max_value_bytes;
        let op = |id| {
            let flash = flash.clone();
            let push = move |queue| pushed(queue, flash, max_bytes);
            Update { id, scope: FLASH_SCOPE.into(), key: FLASH_KEY.into(), f: crate::engine::update_step(push) }
        };
        match self.on_session(op).await {
            Err(WebError::NoSession) => Ok(()),
            done => self.wrote(done?).map(drop),
        }
    }

    /// The messages queued by [`flash`](Self::flash), oldest first, and an empty queue after:
    /// each message is read once. Without a session (or with nothing queued) answers an empty
    /// list and creates nothing; with nothing queued it writes nothing either.
    ///
    /// # Errors
    /// `Unavailable` (503).
    pub async fn take_flashes(&self) -> Result<Vec<Flash>, WebError> {
        let engine = self.engine().door();
        // A read first, riding along the cookie's lookup: most pages have nothing queued, and
        // then they cost no write (no log record, no Redis lock).
        let done = self.stored(FLASH_SCOPE, FLASH_KEY).await?;
        let Some(id) = done.as_ref().map(|(id, _)| *id) else { return Ok(Vec::new()) };
        if self.read::<Option<Vec<u8>>>(done)?.is_none() {
            return Ok(Vec::new());
        }
        // Then the queue is taken and removed in one atomic step, so a message queued by a
        // concurrent request meanwhile is either taken now or kept for later, never lost.
        let taken = Arc::new(Mutex::new(None));
        let slot = taken.clone();
        let step: UpdateFn = Box::new(move |current| {
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = current.map(<[u8]>::to_vec);
            Ok(None)
        });
        let result = engine.run(Update { id, scope: FLASH_SCOPE.into(), key: FLASH_KEY.into(), f: step }).await;
        match self.wrote((id, result)) {
            Err(WebError::Engine(SessionError::SessionGone)) => return Ok(Vec::new()),
            other => other?,
        };
        let bytes = taken.lock().unwrap_or_else(PoisonError::into_inner).take();
        Ok(bytes.map_or_else(Vec::new, |b| {
            serde_json::from_slice(&b).unwrap_or_else(|e| {
                log::warn!("dropping unreadable flash messages: {e}");
                Vec::new()
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(text: &str) -> Flash {
        Flash { level: FlashLevel::Info, text: text.into() }
    }

    #[test]
    fn the_queue_keeps_the_newest_and_fits_the_value_limit() {
        let mut queue = None;
        for i in 0..40 {
            queue = Some(pushed(queue, info(&i.to_string()), 65_536));
        }
        let queue = queue.unwrap();
        assert_eq!(queue.len(), MAX_FLASHES);
        assert_eq!((queue[0].text.as_str(), queue[MAX_FLASHES - 1].text.as_str()), ("24", "39"));
        let big = "x".repeat(MAX_FLASH_TEXT);
        let mut queue = None;
        for _ in 0..5 {
            queue = Some(pushed(queue, info(&big), 3 * MAX_FLASH_TEXT));
        }
        let queue = queue.unwrap();
        assert_eq!(queue.len(), 2, "as many as fit in 3 KiB");
        assert!(serde_json::to_vec(&queue).unwrap().len() <= 3 * MAX_FLASH_TEXT);
        // One message alone is kept even when too big: the engine's limit then answers.
        assert_eq!(pushed(None, info(&big), 10).len(), 1);
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(cut("short".into(), MAX_FLASH_TEXT), "short");
        let cut_text = cut("é".repeat(MAX_FLASH_TEXT), MAX_FLASH_TEXT);
        assert_eq!(cut_text.len(), MAX_FLASH_TEXT);
        let cut_odd = cut(format!("a{}", "é".repeat(MAX_FLASH_TEXT)), MAX_FLASH_TEXT);
        assert_eq!(cut_odd.len(), MAX_FLASH_TEXT - 1);
    }

    #[test]
    fn levels_serialise_in_lower_case() {
        let f = Flash { level: FlashLevel::Warning, text: "careful".into() };
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"level":"warning","text":"careful"}"#);
        assert_eq!(FlashLevel::Success.to_string(), "success");
    }
}
