//! The client a request counts as for `limits.create_rate` (the engine's
//! [`CreateLimiter`](crate::rate::CreateLimiter) keeps the budgets).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use actix_web::http::header::{HeaderMap, X_FORWARDED_FOR};

/// The client a request counts as for `limits.create_rate`: the connection's peer, or with
/// `trust_forwarded_for` the last (rightmost) `X-Forwarded-For` hop — the one the proxy in
/// front added; hops left of it are whatever the client sent. Without either (a Unix socket),
/// the unspecified address: all such requests share one budget.
pub(crate) fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = || {
        let last = headers.get_all(X_FORWARDED_FOR).last()?.to_str().ok()?;
        let hop = last.rsplit(',').next()?.trim();
        hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
    };
    let forwarded = if trust_forwarded_for { forwarded() } else { None };
    forwarded.or(peer).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn the_forwarded_hop_counts_only_when_trusted_and_only_the_last_one() {
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(client_ip(Some(peer), &h, true), peer);
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6, 10.0.0.1"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1 , 203.0.113.7"));
        assert_eq!(client_ip(Some(peer), &h, false), peer);
        assert_eq!(client_ip(Some(peer), &h, true), "203.0.113.7".parse::<IpAddr>().unwrap());
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("[2001:db8::1]:443"));
        assert_eq!(client_ip(Some(peer), &h, true), "2001:db8::1".parse::<IpAddr>().unwrap());
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("unknown"));
        assert_eq!(client_ip(Some(peer), &h, true), peer);
        assert_eq!(client_ip(None, &h, false), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
}
