//! Cross-site request forgery: the per-session token ([`Session::csrf_token`],
//! [`Session::verify_csrf`]) and the origin guard [`SessionMiddleware`](super::SessionMiddleware)
//! puts in front of unsafe methods (`[csrf] origin_guard`).
//!
//! The token is Django's defence against BREACH: the session keeps one secret (32 random bytes,
//! in the reserved scope [`CSRF_SCOPE`]) and every call hands out a new masking of it,
//! `base64url(pad ‖ secret ⊕ pad)` with a fresh random `pad`, so the bytes of a page that
//! embeds it never repeat across responses and a compression oracle has nothing to converge on.
//! The secret is bound to the user id it was made for: after a login or a logout it is replaced,
//! so a token learnt before a login (a fixated session) is worthless after it.

use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, ORIGIN};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::session::Session;
use crate::config::CsrfConfig;
use crate::error::WebError;
use crate::names::{CSRF_KEY, CSRF_SCOPE};

pub(crate) const SECRET_LEN: usize = 32;
/// A token's length: base64url (no padding) of the pad and the masked secret, 64 bytes.
pub(crate) const TOKEN_LEN: usize = 86;

/// What the session stores: the secret, and the user id it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    user: u64,
    secret: String,
}

impl Stored {
    fn secret(&self) -> Option<[u8; SECRET_LEN]> {
        URL_SAFE_NO_PAD.decode(&self.secret).ok()?.try_into().ok()
    }
}

/// `secret` masked with `pad`: `base64url(pad ‖ secret ⊕ pad)`.
pub(crate) fn mask_with(secret: &[u8; SECRET_LEN], pad: &[u8; SECRET_LEN]) -> String {
    let mut out = [0u8; 2 * SECRET_LEN];
    out[..SECRET_LEN].copy_from_slice(pad);
    for (i, (s, p)) in secret.iter().zip(pad).enumerate() {
        out[SECRET_LEN + i] = s ^ p;
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// `secret` masked with a fresh random pad.
pub(crate) fn mask(secret: &[u8; SECRET_LEN]) -> String {
    let mut pad = [0u8; SECRET_LEN];
    rand::rng().fill_bytes(&mut pad);
    mask_with(secret, &pad)
}

/// The secret a token masks; `None` for anything that is not exactly a token's form.
pub(crate) fn unmask(token: &[u8]) -> Option<[u8; SECRET_LEN]> {
    if token.len() != TOKEN_LEN {
        return None;
    }
    // The decoder rejects non-canonical trailing bits, so one token has one text form.
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let (pad, masked) = bytes.split_at_checked(SECRET_LEN)?;
    let mut secret = [0u8; SECRET_LEN];
    for (i, (m, p)) in masked.iter().zip(pad).enumerate() {
        secret[i] = m ^ p;
    }
    (masked.len() == SECRET_LEN).then_some(secret)
}

/// Compares in time that depends on the length only.
fn same(a: &[u8; SECRET_LEN], b: &[u8; SECRET_LEN]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Session {
    /// A CSRF token for this session, to put in a form's hidden field (or a header of the
    /// page's own scripts) and check with [`verify_csrf`](Self::verify_csrf) when it comes back.
    ///
    /// Every call answers a different string (a fresh masking of one per-session secret, as
    /// Django does against BREACH), and every one verifies. The secret is made on first use,
    /// so this writes (and creates the session when there is none); it is replaced when the
    /// user id changes (login, logout), which voids tokens handed out before. It lives in the
    /// reserved scope `__draco.csrf`, which [`clear_all`](Self::clear_all) empties too.
    ///
    /// ```
    /// use actix_web::{HttpResponse, web};
    /// use draco_session::{Session, WebError};
    ///
    /// async fn form(session: Session) -> Result<HttpResponse, WebError> {
    ///     let token = session.csrf_token().await?;
    ///     Ok(HttpResponse::Ok().body(format!(
    ///         r#"<form method="post"><input type="hidden" name="csrf" value="{token}"><button>Go</button></form>"#
    ///     )))
    /// }
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Posted {
    ///     csrf: String,
    /// }
    ///
    /// async fn submit(session: Session, form: web::Form<Posted>) -> Result<HttpResponse, WebError> {
    ///     if !session.verify_csrf(&form.csrf).await? {
    ///         return Ok(HttpResponse::Forbidden().body("this form expired: reload the page"));
    ///     }
    ///     Ok(HttpResponse::SeeOther().insert_header(("location", "/")).finish())
    /// }
    /// ```
    ///
    /// # Errors
    /// [`WebError::NoSession`] (403) for a robot without a session: it has no token, as it has
    /// no session; otherwise as [`Namespace::update`](super::Namespace::update).
    pub async fn csrf_token(&self) -> Result<String, WebError> {
        let (stored, user) = self.csrf_stored().await?;
        if let Some(secret) = stored.as_ref().filter(|s| s.user == user).and_then(Stored::secret) {
            return Ok(mask(&secret));
        }
        let mut fresh = [0u8; SECRET_LEN];
        rand::rng().fill_bytes(&mut fresh);
        let fresh = Stored { user, secret: URL_SAFE_NO_PAD.encode(fresh) };
        // Atomic: of two requests making the first secret at once, both use the same one.
        let id = self.ensure().await?;
        let step = move |current: Option<Stored>| match current {
            Some(s) if s.user == user && s.secret().is_some() => s,
            _ => fresh,
        };
        let result = self.engine().door().update(&id, CSRF_SCOPE, CSRF_KEY, step).await;
        let stored = self.wrote((id, result))?;
        let secret = stored.secret().ok_or_else(|| crate::SessionError::internal("CSRF secret not 32 bytes"))?;
        Ok(mask(&secret))
    }

    /// Whether `token` is one of this session's [`csrf_token`](Self::csrf_token)s, for the
    /// session's current user. `false` without a session, for a token made before a login or
    /// logout, and for anything malformed; compared in constant time. Never creates a session.
    ///
    /// # Errors
    /// `Unavailable` (503) when the session cannot be read.
    pub async fn verify_csrf(&self, token: &str) -> Result<bool, WebError> {
        let Some(given) = unmask(token.as_bytes()) else { return Ok(false) };
        let (stored, user) = self.csrf_stored().await?;
        let secret = stored.filter(|s| s.user == user).and_then(|s| s.secret());
        Ok(secret.is_some_and(|secret| same(&given, &secret)))
    }

    /// The stored secret, if any, and the session's user id now (0 without a session). One
    /// trip: the read carries the cookie's lookup along.
    async fn csrf_stored(&self) -> Result<(Option<Stored>, u64), WebError> {
        let done = self.stored(CSRF_SCOPE, CSRF_KEY).await?;
        let stored: Option<Vec<u8>> = self.read(done)?;
        let stored: Option<Stored> = stored.map(|bytes| crate::engine::decode(&bytes)).transpose()?;
        let user = self.state().current().map_or(0, |i| i.userid);
        Ok((stored, user))
    }
}

/// Why the origin guard refuses this request, or `None` to let it through.
///
/// Only unsafe methods are checked. With `Sec-Fetch-Site` (every current browser sends it),
/// only `same-origin` and `none` (typed in, a bookmark) pass; `same-site` and `cross-site` pass
/// only from an origin in `trusted_origins`. Without it, a request whose `Origin` is present
/// must come from `own_origin()` or a trusted origin. A request with neither header is not a
/// browser's cross-site request (old browsers aside), and passes.
pub(crate) fn refusal(
    method: &Method,
    headers: &HeaderMap,
    own_origin: impl FnOnce() -> String,
    config: &CsrfConfig,
) -> Option<&'static str> {
    if !config.origin_guard || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE) {
        return None;
    }
    let origin = headers.get(ORIGIN).map(|o| o.to_str().map(normalize_origin).unwrap_or_default());
    let trusted = || origin.as_ref().is_some_and(|o| config.trusted_origins.iter().any(|t| normalize_origin(t) == *o));
    match headers.get("sec-fetch-site").map(|v| v.as_bytes().to_ascii_lowercase()) {
        Some(site) if site == b"same-origin" || site == b"none" => None,
        Some(_) if trusted() => None,
        Some(_) => Some("Sec-Fetch-Site says another site sent it"),
        None => match &origin {
            None => None,
            Some(o) if *o == normalize_origin(&own_origin()) || trusted() => None,
            Some(_) => Some("its Origin is not this site's"),
        },
    }
}

/// `scheme://host[:port]` in lower case, without the scheme's default port.
pub(crate) fn normalize_origin(origin: &str) -> String {
    let lower = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let default_port = if lower.starts_with("http://") {
        ":80"
    } else if lower.starts_with("https://") {
        ":443"
    } else {
        return lower;
    };
    match lower.strip_suffix(default_port) {
        Some(short) => short.to_owned(),
        None => lower,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    #[test]
    fn a_token_masks_the_secret_differently_each_time_and_unmasks() {
        let secret = [7u8; SECRET_LEN];
        let (a, b) = (mask(&secret), mask(&secret));
        assert_ne!(a, b, "a fresh pad each time");
        assert_eq!((a.len(), b.len()), (TOKEN_LEN, TOKEN_LEN));
        assert!(!a.contains(&URL_SAFE_NO_PAD.encode(secret)[..8]));
        assert_eq!(unmask(a.as_bytes()), Some(secret));
        assert_eq!(unmask(b.as_bytes()), Some(secret));
        assert_eq!(mask_with(&secret, &[0; SECRET_LEN]).len(), TOKEN_LEN);
    }

    #[test]
    fn tampered_short_long_and_garbage_tokens_do_not_unmask_to_the_secret() {
        let secret = [42u8; SECRET_LEN];
        let token = mask(&secret);
        for cut in [0, 1, 43, 85] {
            assert_eq!(unmask(&token.as_bytes()[..cut]), None, "cut to {cut}");
        }
        assert_eq!(unmask(format!("{token}A").as_bytes()), None);
        assert_eq!(unmask(&[b'!'; TOKEN_LEN]), None, "not base64url");
        assert_eq!(unmask(&[0xff; TOKEN_LEN]), None);
        // A non-canonical last character (its low bits set) is refused, not read as another.
        let mut odd = token.clone().into_bytes();
        odd[TOKEN_LEN - 1] = b'B';
        assert_eq!(unmask(&odd), None);
        // Every single-character change unmasks to something else, or to nothing.
        for i in 0..TOKEN_LEN {
            let mut t = token.clone().into_bytes();
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            assert_ne!(unmask(&t), Some(secret), "position {i}");
        }
        assert!(same(&secret, &secret) && !same(&secret, &[43u8; SECRET_LEN]));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(k.parse().unwrap(), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn the_guard_refuses_unsafe_cross_site_requests_only() {
        let on = CsrfConfig::default();
        let own = || "http://127.0.0.1:8080".to_owned();
        let check = |m: Method, h: &[(&'static str, &'static str)], c: &CsrfConfig| refusal(&m, &headers(h), own, c);
        // Safe methods and clients without browser headers always pass.
        assert_eq!(check(Method::GET, &[("sec-fetch-site", "cross-site")], &on), None);
        assert_eq!(check(Method::POST, &[], &on), None);
        for site in ["same-origin", "none", "Same-Origin"] {
            assert_eq!(check(Method::POST, &[("sec-fetch-site", site)], &on), None, "{site}");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for site in ["cross-site", "same-site", "bogus"] {
                assert!(check(m.clone(), &[("sec-fetch-site", site)], &on).is_some(), "{m} {site}");
            }
        }
        // Without Sec-Fetch-Site the Origin decides.
        assert_eq!(check(Method::POST, &[("origin", "http://127.0.0.1:8080")], &on), None);
        assert_eq!(check(Method::POST, &[("origin", "HTTP://127.0.0.1:8080/")], &on), None);
        for o in ["http://evil.test", "null", "http://127.0.0.1:8081", "https://127.0.0.1:8080"] {
            assert!(check(Method::POST, &[("origin", o)], &on).is_some(), "{o}");
        }
        // Trusted origins pass either way; the guard can be turned off.
        let trusting = CsrfConfig { trusted_origins: vec!["https://App.example.com:443".into()], ..on.clone() };
        let from_app = [("origin", "https://app.example.com"), ("sec-fetch-site", "same-site")];
        assert_eq!(check(Method::POST, &from_app, &trusting), None);
        assert_eq!(check(Method::POST, &from_app[..1], &trusting), None);
        assert!(check(Method::POST, &from_app, &on).is_some());
        let off = CsrfConfig { origin_guard: false, ..on };
        assert_eq!(check(Method::POST, &[("sec-fetch-site", "cross-site")], &off), None);
    }

    #[test]
    fn origins_compare_without_case_or_default_ports() {
        assert_eq!(normalize_origin("HTTPS://Example.com:443"), "https://example.com");
        assert_eq!(normalize_origin("http://example.com:80/"), "http://example.com");
        assert_eq!(normalize_origin("http://example.com:443"), "http://example.com:443");
        assert_eq!(normalize_origin("https://[::1]:8443"), "https://[::1]:8443");
    }
}
