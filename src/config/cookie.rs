//! `[cookie]` and `[header]`: the two transports that carry the session id, and the rule
//! that at least one of them must.

use serde::Deserialize;

use super::{Invalid, bad, is_hostname};

/// `SameSite` attribute of the cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SameSite {
    /// Sent on top-level navigations from other sites, not on their sub-requests.
    Lax,
    /// Never sent from other sites.
    Strict,
    /// Always sent; requires `secure = true`.
    None,
}

/// `[cookie]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CookieConfig {
    /// Cookie name. Defaults to `"sid"`. Prefer `"__Host-sid"` when serving HTTPS: browsers
    /// then accept the cookie only with `Secure`, `Path=/` and no `Domain`, so no other
    /// subdomain or plain-HTTP page can set or shadow it. The rules of the `__Host-` prefix
    /// (`secure = true`, `path = "/"`, no `domain`) and of `__Secure-` (`secure = true`) are
    /// checked at start-up.
    pub name: String,
    /// Send the cookie only over HTTPS. Defaults to `true`; set `false` for plain-HTTP local demos.
    pub secure: bool,
    /// `SameSite` attribute: `"lax"`, `"strict"` or `"none"`. Defaults to `"lax"`.
    pub same_site: SameSite,
    /// `Path` attribute: starts with `/`, visible ASCII without spaces, `;` or `,`.
    /// Defaults to `"/"`.
    pub path: String,
    /// `Domain` attribute: a host name such as `"example.com"` (a leading dot is allowed and
    /// ignored by browsers). Defaults to none (host-only cookie).
    pub domain: Option<String>,
    /// Carry the session id in the cookie at all. Defaults to `true`. With `false` (an API
    /// that only speaks the [`[header]`](HeaderConfig) transport) no response ever has a
    /// `Set-Cookie` and a request's cookie of this name is ignored; `header.name` must then be
    /// set, or no session could ever come back (a start-up error).
    pub enabled: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "sid".into(),
            secure: true,
            same_site: SameSite::Lax,
            path: "/".into(),
            domain: None,
            enabled: true,
        }
    }
}

/// `[header]`: the header transport, for API clients that keep no cookies (mobile apps,
/// scripts, server-to-server calls).
///
/// With a `name`, [`SessionMiddleware`](crate::SessionMiddleware) also takes the session id
/// from that request header, and whenever it would set the cookie (a new session, a rotation
/// by login or logout, a persistence change, the daily refresh of a remember-me cookie) it
/// sends the id in the same response header, together with `Cache-Control: no-store`
/// (unless the handler set one); when the session is destroyed it sends the header with an
/// empty value. The client keeps the last id it got and sends it back. While cookies are on,
/// only a request that carried the header is answered in it: a client using the header sends
/// it empty until it has an id, and a browser living on its `HttpOnly` cookie never finds its
/// id in a header a page's script could read. With `[cookie] enabled = false` every response
/// that names an id uses the header.
///
/// Precedence: a request carrying the header (with a non-empty value) is served by the
/// header's id alone and its cookie is ignored, even when the header's id is forged or dead
/// (then the request has no session, as with a dead cookie, and a write creates a new one).
/// The header is what the client chose explicitly: browsers never add it on their own and
/// another site's page cannot make a browser send it (a custom header needs a CORS preflight),
/// whereas cookies ride along by themselves, including one planted by a sibling subdomain. So
/// one request never mixes two ids, and a cookie cannot move a header client onto another
/// session. An absent or empty header leaves the cookie in charge, as without this section.
/// A response to a header client also sets the cookie (when on): both name the same id.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HeaderConfig {
    /// The header's name, such as `"x-session-id"` (any case; HTTP header names are
    /// case-insensitive). Defaults to `""`: off. It must be a legal header name and not one
    /// HTTP, browsers, proxies or this crate already give a meaning (`Cookie`, `Set-Cookie`,
    /// `Authorization`, `Cache-Control`, `Host`, `Sec-*` and the like).
    pub name: String,
}

impl CookieConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        let c = self;
        let token_ok =
            |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token_ok(&c.name) {
            return bad("cookie.name", format!("{:?} is not a valid cookie name", c.name));
        }
        if c.same_site == SameSite::None && !c.secure {
            return bad("cookie.same_site", "\"none\" requires cookie.secure = true");
        }
        // Every `Set-Cookie` is built from these: a byte a header cannot hold would fail every
        // response that sets the cookie, so they are checked here, once.
        if !c.path.starts_with('/') || !c.path.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',') {
            return bad(
                "cookie.path",
                format!("{:?} must start with / and hold only visible ASCII, without spaces, ; or ,", c.path),
            );
        }
        if let Some(d) = &c.domain
            && !is_hostname(d.strip_prefix('.').unwrap_or(d))
        {
            return bad(
                "cookie.domain",
                format!("{d:?} is not a host name (letters, digits, - and dots, such as \"example.com\")"),
            );
        }
        c.check_prefix()
    }

    /// The rules browsers enforce for the `__Host-` and `__Secure-` name prefixes (matched
    /// without regard to case, as browsers do): a cookie that breaks them is silently dropped,
    /// which would log everyone out.
    fn check_prefix(&self) -> Result<(), Invalid> {
        let c = self;
        let has = |prefix: &str| c.name.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
        if has("__Host-") {
            if !c.secure {
                return bad("cookie.secure", format!("must be true for the __Host- cookie name {:?}", c.name));
            }
            if c.path != "/" {
                return bad("cookie.path", format!("must be \"/\" for the __Host- cookie name {:?}", c.name));
            }
            if c.domain.is_some() {
                return bad("cookie.domain", format!("must be unset for the __Host- cookie name {:?}", c.name));
            }
        } else if has("__Secure-") && !c.secure {
            return bad("cookie.secure", format!("must be true for the __Secure- cookie name {:?}", c.name));
        }
        Ok(())
    }
}

/// Header names a session id must not take (lower case): HTTP's own and the hop-by-hop ones,
/// those browsers and proxies set or read, and those this crate writes.
const RESERVED_HEADERS: &[&str] = &[
    "accept",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "cookie2",
    "date",
    "expect",
    "forwarded",
    "host",
    "keep-alive",
    "location",
    "origin",
    "pragma",
    "proxy-authorization",
    "proxy-connection",
    "referer",
    "retry-after",
    "set-cookie",
    "set-cookie2",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

impl HeaderConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        let name = &self.name;
        if name.is_empty() {
            return Ok(());
        }
        let token = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token || name.len() > 64 {
            return bad(
                "header.name",
                format!("{name:?} is not a header name (at most 64 letters, digits and - such as \"x-session-id\")"),
            );
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("sec-")
            || lower.starts_with("access-control-")
        {
            return bad(
                "header.name",
                format!(
                    "{name:?} already means something to HTTP, browsers or proxies: pick your own, such as \"x-session-id\""
                ),
            );
        }
        Ok(())
    }
}

/// Some transport must carry the session id back, or every request would be a stranger.
pub(super) fn check_transport(cookie: &CookieConfig, header: &HeaderConfig) -> Result<(), Invalid> {
    if !cookie.enabled && header.name.is_empty() {
        return bad(
            "cookie.enabled",
            "is false and header.name is empty: no transport would carry the session id; \
             set header.name (such as \"x-session-id\") or turn the cookie back on",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::error::ConfigError;

    #[test]
    fn impossible_combinations_are_rejected() {
        for (toml, key) in [
            ("[cookie]\nsame_site = \"none\"\nsecure = false", "cookie.same_site"),
            ("[cookie]\nname = \"a b\"", "cookie.name"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("f.toml"), "{toml}: {e}");
        }
    }

    #[test]
    fn cookie_path_and_domain_must_be_header_safe() {
        for (toml, key) in [
            ("[cookie]\npath = \"/a\\u0001b\"", "cookie.path"),
            ("[cookie]\npath = \"/a\\nSet-Cookie: x=1\"", "cookie.path"),
            ("[cookie]\npath = \"/a\\u007f\"", "cookie.path"),
            ("[cookie]\npath = \"/a b\"", "cookie.path"),
            ("[cookie]\npath = \"/a;b\"", "cookie.path"),
            ("[cookie]\npath = \"/é\"", "cookie.path"),
            ("[cookie]\npath = \"app\"", "cookie.path"),
            ("[cookie]\ndomain = \"exa\\u0001mple.com\"", "cookie.domain"),
            ("[cookie]\ndomain = \"example.com; Secure\"", "cookie.domain"),
            ("[cookie]\ndomain = \"a.com,b.com\"", "cookie.domain"),
            ("[cookie]\ndomain = \"exa mple.com\"", "cookie.domain"),
            ("[cookie]\ndomain = \"\"", "cookie.domain"),
            ("[cookie]\ndomain = \"example..com\"", "cookie.domain"),
            ("[cookie]\ndomain = \"-example.com\"", "cookie.domain"),
            ("[cookie]\ndomain = \"example.com:8080\"", "cookie.domain"),
            ("[cookie]\ndomain = \"exämple.com\"", "cookie.domain"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if *k == key), "{toml}: {e:?}");
            assert!(e.to_string().contains("f.toml"), "{e}");
        }
        for toml in [
            "[cookie]\npath = \"/app/v1-x_y.z~%20\"",
            "[cookie]\ndomain = \"example.com\"",
            "[cookie]\ndomain = \".Sub-1.example.com\"",
            "[cookie]\ndomain = \"localhost\"",
            "[cookie]\ndomain = \"127.0.0.1\"",
        ] {
            Config::from_toml(toml, "f.toml").unwrap_or_else(|e| panic!("{toml}: {e}"));
        }
    }

    #[test]
    fn the_header_transport_is_off_by_default_and_its_name_is_checked() {
        let c = Config::from_toml("", "f.toml").unwrap();
        assert_eq!((c.header.name.as_str(), c.cookie.enabled), ("", true));
        for good in ["x-session-id", "X-Session-Id", "session_token", "x.sid"] {
            let c = Config::from_toml(&format!("[header]\nname = \"{good}\""), "f.toml").unwrap();
            assert_eq!(c.header.name, good);
        }
        for bad in [
            "x session",
            "x-sid:",
            "x-sid\\r\\nSet-Cookie: a=1",
            "é",
            "Cookie",
            "set-cookie",
            "AUTHORIZATION",
            "cache-control",
            "host",
            "sec-session",
            "Access-Control-Allow-Origin",
        ] {
            let e = Config::from_toml(&format!("[header]\nname = \"{bad}\""), "f.toml").unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { key: "header.name", .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("f.toml"), "{e}");
        }
        let long = "x".repeat(65);
        let e = Config::from_toml(&format!("[header]\nname = \"{long}\""), "f.toml").unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { key: "header.name", .. }), "{e:?}");
    }

    #[test]
    fn cookies_off_needs_the_header_transport() {
        let e = Config::from_toml("[cookie]\nenabled = false", "f.toml").unwrap_err();
        assert!(matches!(&e, ConfigError::Invalid { key: "cookie.enabled", .. }), "{e:?}");
        assert!(e.to_string().contains("header.name"), "{e}");
        let c = Config::from_toml("[cookie]\nenabled = false\n[header]\nname = \"x-session-id\"", "f.toml").unwrap();
        assert!(!c.cookie.enabled);
        // The engine refuses it as well, not only the file parser.
        let mut config = Config::default();
        config.cookie.enabled = false;
        assert!(config.validate("t").is_err());
    }

    #[test]
    fn cookie_name_prefixes_have_their_rules_checked() {
        for (toml, key) in [
            ("[cookie]\nname = \"__Host-sid\"\nsecure = false", "cookie.secure"),
            ("[cookie]\nname = \"__host-sid\"\nsecure = false", "cookie.secure"),
            ("[cookie]\nname = \"__Host-sid\"\npath = \"/app\"", "cookie.path"),
            ("[cookie]\nname = \"__Host-sid\"\ndomain = \"example.com\"", "cookie.domain"),
            ("[cookie]\nname = \"__Secure-sid\"\nsecure = false", "cookie.secure"),
            ("[cookie]\nname = \"__SECURE-sid\"\nsecure = false", "cookie.secure"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { key: k, .. } if *k == key), "{toml}: {e:?}");
            let text = e.to_string();
            assert!(text.contains("f.toml") && text.contains("sid"), "{text}");
        }
        let c = Config::from_toml("[cookie]\nname = \"__Host-sid\"", "f.toml").unwrap();
        assert_eq!((c.cookie.name.as_str(), c.cookie.secure, c.cookie.path.as_str()), ("__Host-sid", true, "/"));
        Config::from_toml("[cookie]\nname = \"__Secure-sid\"\npath = \"/app\"\ndomain = \"example.com\"", "f.toml")
            .unwrap();
        // Only the prefix at the start counts.
        Config::from_toml("[cookie]\nname = \"my__Host-sid\"\nsecure = false", "f.toml").unwrap();
    }
}
