//! Fresh login for sensitive actions ("sudo mode"): when the session's user last proved who
//! they are, at which level, and whether that proof is fresh enough for
//! [`Session::require_fresh_auth`].
//!
//! **Where the proof lives.** A login ([`Session::login_with`]) or a later
//! [`Session::reauthenticated`] writes one value, `{user, time, level}`, in the session's
//! reserved scope `__draco.auth` (key `proof`), with the session's ordinary operations: the
//! memory backend's snapshots and log and Redis carry it as any value, with no format change,
//! and a session from before this feature has none, so it is never fresh. The login writes it
//! before the rotation (as the device label), so it rides to the new id; the user id inside
//! binds it to that login: a proof counts only while the session's user is the one who proved,
//! so a login that fails after the write grants nothing. Logout removes it, before rotating,
//! whatever `session.logout_clears_data` says; `clear_all` removes it too. It takes one key
//! of `limits.max_keys` and its bytes, as the device label does.
//!
//! **The browser-session marker.** A remember-me cookie survives a browser restart, so the
//! stored proof alone cannot tell the browser that proved from the same browser reopened
//! days later. Each proof also sends a second cookie, `<cookie.name>_auth` (the session
//! cookie's attributes, never a `Max-Age`, so it ends with the browser session): a MAC, keyed
//! by a key derived from the current secret, over the session's locator and the proof (see
//! `Keyring::auth_marker`). A proof counts only on a request carrying the marker of that
//! proof of that session (or in the request that made it). It is required for volatile
//! sessions too: otherwise turning remember-me off would make a restored session fresh. A
//! marker of another session, of an older proof, or forged, counts for nothing; rotating the
//! secret voids every marker (users confirm their password once more). A logout or `destroy`
//! drops it.
//!
//! **The header transport.** With `[cookie] enabled = false` nothing can carry a marker and
//! the id's holder is a program, which has no browser to restart: the proof's age alone
//! decides. With cookies on, the marker is required whatever carried the id, so a client on
//! the `[header]` transport must keep its cookies to stay fresh after the request that proved.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::header::{HeaderMap, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::cookie;
use super::session::Session;
use crate::config::CookieConfig;
use crate::error::{SessionError, WebError};
use crate::id::{MARKER_LEN, SessionId};
use crate::names::{AUTH_SCOPE, PROOF_KEY};

/// A proof of identity, as the session stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Proof {
    /// The user who proved.
    #[serde(rename = "u")]
    user: u64,
    /// When, in milliseconds of the engine's clock.
    #[serde(rename = "t")]
    at: u64,
    /// At which level (1: a password; the application's own above).
    #[serde(rename = "l")]
    level: u8,
}

/// What this request did about the marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Nothing: the response says nothing about it.
    Nothing,
    /// The user proved who they are: the response sets the marker of this proof.
    Proved(Proof),
    /// Logout or `destroy`: the response drops the marker the request carried.
    Cleared,
}

/// One request's markers: those it carried and what its response must set.
#[derive(Debug)]
pub(super) struct RequestAuth {
    /// The well-formed markers of the request's cookies (usually none or one).
    received: Vec<[u8; MARKER_LEN]>,
    pending: Mutex<Pending>,
}

impl RequestAuth {
    /// The markers of the request's `Cookie` headers (none with cookies off, or when the
    /// request names no session).
    pub(super) fn from_headers(headers: &HeaderMap, config: &CookieConfig, names_a_session: bool) -> Self {
        let received = if config.enabled && names_a_session {
            cookie::named(headers, &config.name, cookie::MARKER_SUFFIX).filter_map(decode).collect()
        } else {
            Vec::new()
        };
        Self { received, pending: Mutex::new(Pending::Nothing) }
    }

    fn pending(&self) -> Pending {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, pending: Pending) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = pending;
    }
}

/// A marker's text form: 22 base64url characters.
fn decode(text: &[u8]) -> Option<[u8; MARKER_LEN]> {
    let mut out = [0u8; MARKER_LEN];
    (text.len() == 22 && URL_SAFE_NO_PAD.decode_slice(text, &mut out).ok() == Some(MARKER_LEN)).then_some(out)
}

impl Session {
    /// Logs `userid` in (as [`login`](Self::login)) and records that they proved who they
    /// are now, at `level`: 1 for a password (what `login` records), higher for what the
    /// application counts as stronger (a second factor, say); 0 counts as 1. Call it only
    /// after checking the credentials. The session is fresh (see
    /// [`require_fresh_auth`](Self::require_fresh_auth)) for `session.reauth_after`.
    ///
    /// # Errors
    /// As [`login`](Self::login). The proof is written before the rotation: when the login
    /// fails, the session's user is not the one who proved, and nothing is fresh.
    pub async fn login_with(&self, userid: u64, level: u8) -> Result<(), WebError> {
        if userid == 0 {
            return Err(SessionError::InvalidUserId.into());
        }
        // The device label goes in first, so the login (and its event) carries it.
        self.record_device().await?;
        let proof = Proof { user: userid, at: self.now_ms(), level: level.max(1) };
        let id = self.ensure().await?;
        let result = self.engine().door().insert(&id, AUTH_SCOPE, PROOF_KEY, &proof).await;
        self.wrote((id, result))?;
        self.rotate_in(userid).await?;
        self.shared_auth().set(Pending::Proved(proof));
        Ok(())
    }

    /// Records that the logged-in user proved who they are again, now, at level 1: call it
    /// after checking their password. The session is fresh again for `session.reauth_after`,
    /// and the response gives this browser the marker of the new proof.
    ///
    /// # Errors
    /// [`WebError::Engine`] with `NotLoggedIn` (409) when nobody is logged in; `SessionGone`,
    /// `Unavailable`.
    pub async fn reauthenticated(&self) -> Result<(), WebError> {
        self.reauthenticated_with(1).await
    }

    /// As [`reauthenticated`](Self::reauthenticated), at `level` (see
    /// [`login_with`](Self::login_with)). The last proof is the session's: a proof at level 1
    /// after a login at level 2 leaves the session at level 1.
    ///
    /// # Errors
    /// As [`reauthenticated`](Self::reauthenticated).
    pub async fn reauthenticated_with(&self, level: u8) -> Result<(), WebError> {
        let id = self.live_id().await?;
        let userid = self.state().current().map_or(0, |i| i.userid);
        let Some(id) = id.filter(|_| userid != 0) else { return Err(SessionError::NotLoggedIn.into()) };
        let proof = Proof { user: userid, at: self.now_ms(), level: level.max(1) };
        let result = self.engine().door().insert(&id, AUTH_SCOPE, PROOF_KEY, &proof).await;
        self.wrote((id, result))?;
        self.shared_auth().set(Pending::Proved(proof));
        Ok(())
    }

    /// How long ago the logged-in user last proved who they are, by the engine's clock, when
    /// that proof counts for this request: `None` when nobody is logged in, when the session
    /// holds no proof of its user (a session from before this feature), and when the request
    /// lacks the proof's browser-session marker (the browser restarted and remember-me brought
    /// the session back; see the module docs).
    ///
    /// # Errors
    /// `Unavailable` (503) when the session cannot be read.
    pub async fn auth_age(&self) -> Result<Option<Duration>, WebError> {
        let Some((id, proof)) = self.proof().await? else { return Ok(None) };
        if !self.carries_marker(&id, &proof) {
            return Ok(None);
        }
        Ok(Some(Duration::from_millis(self.now_ms().saturating_sub(proof.at))))
    }

    /// The level of the logged-in user's last proof ([`login_with`](Self::login_with),
    /// [`reauthenticated_with`](Self::reauthenticated_with)), fresh or not; 0 when nobody is
    /// logged in or the session holds no proof of its user.
    ///
    /// # Errors
    /// `Unavailable` (503) when the session cannot be read.
    pub async fn auth_level(&self) -> Result<u8, WebError> {
        Ok(self.proof().await?.map_or(0, |(_, proof)| proof.level))
    }

    /// Succeeds when the logged-in user proved who they are less than `session.reauth_after`
    /// ago, in this browser session (see [`auth_age`](Self::auth_age)). Put it before a
    /// sensitive action (ending other sessions, changing the password or e-mail address);
    /// on [`WebError::Reauthenticate`] ask for the password again, call
    /// [`reauthenticated`](Self::reauthenticated), and retry.
    ///
    /// ```
    /// use actix_web::HttpResponse;
    /// use draco_session::{Session, WebError};
    ///
    /// async fn log_out_other_devices(session: Session) -> Result<HttpResponse, WebError> {
    ///     // 403, "reauthenticate: ...", when the last login is older than reauth_after.
    ///     session.require_fresh_auth().await?;
    ///     let ended = session.logout_others().await?;
    ///     Ok(HttpResponse::Ok().body(format!("{ended} other sessions ended")))
    /// }
    /// ```
    ///
    /// # Errors
    /// [`WebError::Reauthenticate`] (403) when the session is not fresh, nobody logged in
    /// included; `Unavailable` (503).
    pub async fn require_fresh_auth(&self) -> Result<(), WebError> {
        self.require_fresh_auth_level(1).await
    }

    /// As [`require_fresh_auth`](Self::require_fresh_auth), and the fresh proof must be of at
    /// least `level`.
    ///
    /// # Errors
    /// As [`require_fresh_auth`](Self::require_fresh_auth).
    pub async fn require_fresh_auth_level(&self, level: u8) -> Result<(), WebError> {
        let Some((id, proof)) = self.proof().await? else { return Err(WebError::Reauthenticate) };
        let age = Duration::from_millis(self.now_ms().saturating_sub(proof.at));
        let fresh =
            proof.level >= level && age < self.config().session.reauth_after && self.carries_marker(&id, &proof);
        if fresh { Ok(()) } else { Err(WebError::Reauthenticate) }
    }

    /// Removes the proof before a logout (whatever `logout_clears_data` says) and has the
    /// response drop the marker.
    pub(super) async fn forget_proof(&self, id: SessionId) -> Result<(), WebError> {
        self.engine().remove(&id, AUTH_SCOPE, PROOF_KEY).await.map_err(|e| self.failed(id, e))?;
        self.shared_auth().set(Pending::Cleared);
        Ok(())
    }

    /// `destroy()`: the response drops the marker.
    pub(super) fn marker_ended(&self) {
        self.shared_auth().set(Pending::Cleared);
    }

    /// The `Set-Cookie` of the marker this response must send, if any: the marker of this
    /// request's proof, for the session's id as the response leaves (after the login's
    /// rotation), or the marker's removal.
    pub(crate) fn marker_cookie(&self) -> Option<HeaderValue> {
        let config = &self.config().cookie;
        if !config.enabled {
            return None;
        }
        let auth = self.shared_auth();
        match auth.pending() {
            Pending::Nothing => None,
            Pending::Cleared => (!auth.received.is_empty()).then(|| cookie::marker_cookie(config, None)),
            Pending::Proved(proof) => {
                let (id, userid) = self.state().current().map(|i| (i.id, i.userid))?;
                if userid != proof.user {
                    return None;
                }
                let mac = self.engine().keyring().auth_marker(id.locator(), proof.user, proof.at, proof.level);
                Some(cookie::marker_cookie(config, Some(&URL_SAFE_NO_PAD.encode(mac))))
            }
        }
    }

    /// The session's proof, when it is of the logged-in user, with the session's id.
    async fn proof(&self) -> Result<Option<(SessionId, Proof)>, WebError> {
        let done = self.stored(AUTH_SCOPE, PROOF_KEY).await?;
        let stored: Option<Vec<u8>> = self.read(done)?;
        let Some((id, userid)) = self.state().current().map(|i| (i.id, i.userid)) else { return Ok(None) };
        let Some(bytes) = stored.filter(|_| userid != 0) else { return Ok(None) };
        match serde_json::from_slice::<Proof>(&bytes) {
            Ok(proof) if proof.user == userid => Ok(Some((id, proof))),
            Ok(_) => Ok(None),
            Err(e) => {
                log::warn!("a session's proof of identity is unreadable, taken as none: {e}");
                Ok(None)
            }
        }
    }

    /// Whether this request may count `proof`: it made it, or it carries its marker (with
    /// cookies off there is none to carry, see the module docs).
    fn carries_marker(&self, id: &SessionId, proof: &Proof) -> bool {
        if !self.config().cookie.enabled {
            return true;
        }
        let auth = self.shared_auth();
        if auth.pending() == Pending::Proved(*proof) {
            return true;
        }
        let ring = self.engine().keyring();
        auth.received.iter().any(|m| ring.verify_marker(m, id.locator(), proof.user, proof.at, proof.level))
    }

    /// Now, in milliseconds of the engine's clock.
    fn now_ms(&self) -> u64 {
        self.engine().now().duration_since(UNIX_EPOCH).map_or(0, crate::clock::millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_decode_from_22_base64url_characters_only() {
        let mark = [7u8; MARKER_LEN];
        let text = URL_SAFE_NO_PAD.encode(mark);
        assert_eq!(decode(text.as_bytes()), Some(mark));
        assert_eq!(decode(&text.as_bytes()[..21]), None);
        assert_eq!(decode(format!("{text}A").as_bytes()), None);
        assert_eq!(decode(b"!!!!!!!!!!!!!!!!!!!!!!"), None);
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn a_marker_names_one_proof_of_one_session_under_one_secret() {
        let ring = crate::id::Keyring::from_secrets(b"a secret of at least 32 bytes, say", &[]).unwrap();
        let (a, b) = (ring.generate(), ring.generate());
        let mark = ring.auth_marker(a.locator(), 1, 1_000, 1);
        assert!(ring.verify_marker(&mark, a.locator(), 1, 1_000, 1));
        for (locator, user, at, level) in [
            (b.locator(), 1, 1_000, 1),
            (a.locator(), 2, 1_000, 1),
            (a.locator(), 1, 1_001, 1),
            (a.locator(), 1, 1_000, 2),
        ] {
            assert!(!ring.verify_marker(&mark, locator, user, at, level), "{user} {at} {level}");
        }
        let other = crate::id::Keyring::from_secrets(b"another secret of at least 32 bytes", &[]).unwrap();
        assert!(!other.verify_marker(&mark, a.locator(), 1, 1_000, 1), "a new secret voids markers");
    }

    #[test]
    fn a_proof_is_small_and_reads_back() {
        let proof = Proof { user: u64::MAX, at: 1_800_000_000_000, level: 2 };
        let text = serde_json::to_string(&proof).unwrap();
        assert!(text.len() < 64, "{text}");
        assert_eq!(serde_json::from_str::<Proof>(&text).unwrap(), proof);
    }
}
