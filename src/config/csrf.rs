//! `[csrf]`: the origin guard against cross-site requests.

use serde::Deserialize;

use super::{Invalid, bad, is_hostname};

/// `[csrf]`: the origin guard of [`SessionMiddleware`](crate::SessionMiddleware). The tokens
/// of [`Session::csrf_token`](crate::Session::csrf_token) need no configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CsrfConfig {
    /// Refuse (403) a POST, PUT, PATCH or DELETE that another site made the browser send:
    /// `Sec-Fetch-Site` other than `same-origin` or `none`, or, from browsers that do not send
    /// it, an `Origin` other than the request's own scheme, host and port. Requests without
    /// either header (scripts, server-to-server calls) pass. Behind a proxy the request's own
    /// origin is taken from `Forwarded` / `X-Forwarded-Proto` / `X-Forwarded-Host`, else the
    /// `Host` header: have the proxy pass them, or list the public origin in
    /// `trusted_origins`. Defaults to `true`.
    pub origin_guard: bool,
    /// Origins (`"https://app.example.com"`, scheme, host and optional port) whose cross-site
    /// unsafe requests are let through: a sibling front end, a payment or login provider
    /// posting back. Defaults to `[]`.
    pub trusted_origins: Vec<String>,
}

impl Default for CsrfConfig {
    fn default() -> Self {
        Self { origin_guard: true, trusted_origins: Vec::new() }
    }
}

impl CsrfConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        for origin in &self.trusted_origins {
            let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            let (host, port) = match rest {
                Some(rest) if rest.starts_with('[') => match rest.split_once(']') {
                    Some((v6, port)) => (&v6[1..], port.strip_prefix(':')),
                    None => ("", None),
                },
                Some(rest) => match rest.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (rest, None),
                },
                None => ("", None),
            };
            let host_ok = is_hostname(host) || host.parse::<std::net::Ipv6Addr>().is_ok();
            let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
            let v6_ok = !host.contains(':') || rest.is_some_and(|r| r.starts_with('['));
            if !(host_ok && port_ok && v6_ok) {
                return bad(
                    "csrf.trusted_origins",
                    format!(
                        "{origin:?} is not an origin: write scheme, host and optional port, such as \"https://app.example.com\""
                    ),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::error::ConfigError;

    #[test]
    fn csrf_settings_parse_and_trusted_origins_are_checked() {
        let c = Config::from_toml("", "t").unwrap();
        assert!(c.csrf.origin_guard && c.csrf.trusted_origins.is_empty());
        let c = Config::from_toml(
            "[csrf]\norigin_guard = false\ntrusted_origins = [\"https://app.example.com\", \"http://127.0.0.1:8080\", \"https://[::1]:8443\"]",
            "t",
        )
        .unwrap();
        assert!(!c.csrf.origin_guard);
        assert_eq!(c.csrf.trusted_origins.len(), 3);
        for bad in [
            "app.example.com",
            "https://",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://a b.com",
            "https://::1",
            "null",
        ] {
            let toml = format!("[csrf]\ntrusted_origins = [{bad:?}]");
            let e = Config::from_toml(&toml, "f.toml").unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { key: "csrf.trusted_origins", .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains(bad), "{e}");
        }
        let e = Config::from_toml("[csrf]\norigin_gaurd = true", "f.toml").unwrap_err().to_string();
        assert!(e.contains("origin_gaurd"), "{e}");
    }
}
