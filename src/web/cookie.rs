//! The session cookie on the wire: reading our own cookie from raw `Cookie` header bytes and
//! writing `Set-Cookie` values.
//!
//! Parsing stays on bytes on purpose: one non-UTF-8 or otherwise malformed cookie set by some
//! other code on the same site must not make the whole header unreadable and log the user out.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite as CookieSameSite};
use actix_web::http::header::{COOKIE, HeaderMap, HeaderValue};

use crate::config::{CookieConfig, SameSite};
use crate::id::SessionId;

/// Most values of our cookie looked at in one request; a client sending more is misbehaving.
const MAX_CANDIDATES: usize = 8;

/// What the fresh-login marker's cookie name adds to the session cookie's (`sid` → `sid_auth`;
/// a `__Host-` or `__Secure-` prefix stays, and so do its rules, as the attributes are the same).
pub(crate) const MARKER_SUFFIX: &str = "_auth";

/// The values of every cookie named `name`, in header order, over every `Cookie` header.
pub(crate) fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    named(headers, name, "")
}

/// The values of every cookie named `name` followed by `suffix` (no allocation per request).
pub(crate) fn named<'a>(headers: &'a HeaderMap, name: &'a str, suffix: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(COOKIE)
        .flat_map(|header| header.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (key, value) = (trim(&pair[..eq]), trim(&pair[eq + 1..]));
            let matches = key.len() == name.len() + suffix.len()
                && key.starts_with(name.as_bytes())
                && key.ends_with(suffix.as_bytes());
            matches.then(|| unquote(value))
        })
        .take(MAX_CANDIDATES)
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// RFC 6265 allows a cookie value in double quotes.
fn unquote(bytes: &[u8]) -> &[u8] {
    match bytes {
        [b'"', inner @ .., b'"'] => inner,
        _ => bytes,
    }
}

/// `Set-Cookie` for `id`: a browser-session cookie, or one that lives `max_age` when given.
///
/// Written straight into the header's bytes (one allocation): every new session and every
/// rotation sends one, and formatting through a `Cookie` cost about as much as the rest of
/// the session's work for the request. The attributes are those [`base`] gives a `Cookie`.
pub(crate) fn set_cookie(config: &CookieConfig, id: &SessionId, max_age: Option<Duration>) -> HeaderValue {
    let mut out = Vec::with_capacity(96 + config.name.len() + config.path.len());
    out.extend_from_slice(config.name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(&id.encode());
    out.extend_from_slice(b"; HttpOnly; SameSite=");
    out.extend_from_slice(match config.same_site {
        SameSite::Lax => b"Lax".as_slice(),
        SameSite::Strict => b"Strict",
        SameSite::None => b"None",
    });
    if config.secure {
        out.extend_from_slice(b"; Secure");
    }
    out.extend_from_slice(b"; Path=");
    out.extend_from_slice(config.path.as_bytes());
    if let Some(domain) = &config.domain {
        out.extend_from_slice(b"; Domain=");
        out.extend_from_slice(domain.as_bytes());
    }
    if let Some(age) = max_age {
        out.extend_from_slice(b"; Max-Age=");
        out.extend_from_slice(itoa::Buffer::new().format(age.as_secs().min(i64::MAX as u64)).as_bytes());
    }
    // Name, path and domain are validated by `Config::validate`; the id is base64url.
    HeaderValue::from_maybe_shared(actix_web::web::Bytes::from(out))
        .expect("validated cookie attributes are header-safe")
}

/// `Set-Cookie` that makes the browser drop the cookie (`Max-Age=0`, expiry in the past).
pub(crate) fn removal_cookie(config: &CookieConfig) -> HeaderValue {
    let mut cookie = base(config, String::new());
    cookie.make_removal();
    header_value(&cookie)
}

/// `Set-Cookie` of the fresh-login marker: the session cookie's attributes, never a `Max-Age`
/// (it ends with the browser session), or its removal when `value` is `None`.
pub(crate) fn marker_cookie(config: &CookieConfig, value: Option<&str>) -> HeaderValue {
    let mut cookie = base(config, value.unwrap_or_default().to_owned());
    cookie.set_name(format!("{}{MARKER_SUFFIX}", config.name));
    if value.is_none() {
        cookie.make_removal();
    }
    header_value(&cookie)
}

fn base(config: &CookieConfig, value: String) -> Cookie<'static> {
    let mut cookie = Cookie::new(config.name.clone(), value);
    cookie.set_http_only(true);
    cookie.set_secure(config.secure);
    cookie.set_path(config.path.clone());
    cookie.set_same_site(match config.same_site {
        SameSite::Lax => CookieSameSite::Lax,
        SameSite::Strict => CookieSameSite::Strict,
        SameSite::None => CookieSameSite::None,
    });
    if let Some(domain) = &config.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

fn header_value(cookie: &Cookie<'_>) -> HeaderValue {
    // Name, path and domain are validated by `Config::validate`; the id is base64url.
    HeaderValue::from_str(&cookie.encoded().to_string()).expect("validated cookie attributes are header-safe")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    #[test]
    fn finds_our_cookie_among_others_and_non_utf8_bytes() {
        let map = headers(&[b"a=1; junk=\xff\xfe; sid=abc ; sidx=no", b"sid=\"def\"; =x; novalue; sid="]);
        let found: Vec<&[u8]> = values(&map, "sid").collect();
        assert_eq!(found, [&b"abc"[..], b"def", b""]);
        let map = headers(&[b"sid=abc; sid_auth=m1; sid_authx=no; xsid_auth=no", b"sid_auth=\"m2\""]);
        let found: Vec<&[u8]> = named(&map, "sid", MARKER_SUFFIX).collect();
        assert_eq!(found, [&b"m1"[..], b"m2"]);
    }

    #[test]
    fn set_cookie_is_what_a_cookie_formats() {
        let id: SessionId = "AbCdEfGhIjKlMnOpQrStUvWxYz012345".parse().unwrap();
        for config in [
            CookieConfig::default(),
            CookieConfig { secure: false, same_site: SameSite::Strict, path: "/app".into(), ..CookieConfig::default() },
            CookieConfig { name: "__Host-s".into(), same_site: SameSite::None, ..CookieConfig::default() },
            CookieConfig { domain: Some(".example.com".into()), ..CookieConfig::default() },
        ] {
            for age in [None, Some(Duration::from_secs(8_640_000))] {
                let mut cookie = base(&config, id.to_string());
                if let Some(age) = age {
                    cookie
                        .set_max_age(actix_web::cookie::time::Duration::seconds(i64::try_from(age.as_secs()).unwrap()));
                }
                assert_eq!(set_cookie(&config, &id, age), header_value(&cookie), "{config:?} {age:?}");
            }
        }
    }

    #[test]
    fn set_cookie_attributes() {
        let config = CookieConfig { domain: Some("example.com".into()), ..CookieConfig::default() };
        let id: SessionId = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".parse().unwrap();
        let v = set_cookie(&config, &id, None);
        let s = v.to_str().unwrap();
        assert!(s.starts_with("sid=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "{s}");
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Domain=example.com"] {
            assert!(s.contains(attr), "{s} lacks {attr}");
        }
        assert!(!s.contains("Max-Age") && !s.contains("Expires"), "{s}");
        let v = set_cookie(&config, &id, Some(Duration::from_secs(8_640_000)));
        assert!(v.to_str().unwrap().contains("Max-Age=8640000"));
        let v = removal_cookie(&config);
        assert!(v.to_str().unwrap().contains("Max-Age=0"));
        let v = marker_cookie(&config, Some("mark"));
        let s = v.to_str().unwrap();
        assert!(s.starts_with("sid_auth=mark;") && !s.contains("Max-Age") && !s.contains("Expires"), "{s}");
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Domain=example.com"] {
            assert!(s.contains(attr), "{s} lacks {attr}");
        }
        let v = marker_cookie(&config, None);
        assert!(v.to_str().unwrap().starts_with("sid_auth=;") && v.to_str().unwrap().contains("Max-Age=0"));
    }
}
