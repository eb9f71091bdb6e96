//! Redis URLs fit for messages: passwords hidden.
//!
//! Next to the Redis backend in spirit, but compiled with or without the `redis` cargo feature
//! (so not under `src/redis/`, which is compiled only with it): the config's check names an
//! invalid `storage.redis_url` and `StorageConfig`'s `Debug` shows the URL in every build,
//! including one without the feature that refuses `backend = "redis"`.

/// `url` (or a comma-separated list of them) fit for messages: the password of its user
/// part (`redis://user:****@host`, `redis://:****@host`) and a `pass=` query parameter (Unix
/// socket URLs) replaced by `****`. A user part without `:` is hidden whole, in case it was
/// meant as a password.
pub(crate) fn redact_redis_url(url: &str) -> String {
    if url.contains(',') {
        return url.split(',').map(|u| redact_redis_url(u.trim())).collect::<Vec<_>>().join(",");
    }
    // The last `@`: a password holding an unencoded `@` or `/` is still hidden whole.
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let user = url[s + 3..at].split_once(':').map_or("", |(user, _)| user);
            let sep = if url[s + 3..at].contains(':') { ":" } else { "" };
            format!("{}{user}{sep}****{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    };
    if let Some(q) = out.find('?') {
        let end = out[q..].find('#').map_or(out.len(), |h| q + h);
        let query: Vec<String> = out[q + 1..end]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") => {
                    format!("{k}=****")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.replace_range(q + 1..end, &query.join("&"));
    }
    out
}

/// `message` with every password `url` holds (as written and percent-decoded) replaced by
/// `****`: what a client library's error says is not trusted to leave them out. Passwords
/// shorter than 4 bytes are left (replacing them would garble the message more than it hides).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn scrub_redis_passwords(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    for one in url.split(',').map(str::trim) {
        let mut secrets = Vec::new();
        if let (Some(s), Some(at)) = (one.find("://"), one.rfind('@'))
            && at > s + 3
        {
            let info = &one[s + 3..at];
            secrets.push(info.split_once(':').map_or(info, |(_, pass)| pass));
        }
        if let Some(q) = one.find('?') {
            let query = one[q + 1..].split('#').next().unwrap_or("");
            secrets.extend(query.split('&').filter_map(|pair| match pair.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") => Some(v),
                _ => None,
            }));
        }
        for secret in secrets {
            // A query decodes `+` to a space as well.
            for form in [secret.to_owned(), percent_decoded(secret), percent_decoded(&secret.replace('+', " "))] {
                if form.len() >= 4 {
                    out = out.replace(&form, "****");
                }
            }
        }
    }
    out
}

/// `%XX` escapes decoded; invalid ones kept as written.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok());
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_shown_without_passwords() {
        for (url, shown) in [
            ("redis://user:hunter2@host:6379/0", "redis://user:****@host:6379/0"),
            ("rediss://:hunter2@host:6380", "rediss://:****@host:6380"),
            ("redis://hunter2@host", "redis://****@host"),
            ("redis://user:hun@ter/2@host/1", "redis://user:****@host/1"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis+unix:///run/redis.sock?db=2&pass=hunter2#x", "redis+unix:///run/redis.sock?db=2&pass=****#x"),
            ("redis://:a@h:1, rediss://u:b@h:2", "redis://:****@h:1,rediss://u:****@h:2"),
        ] {
            assert_eq!(redact_redis_url(url), shown);
        }
        let url = "redis://u:p%40ss%2Fword@h,unix:///s?pass=a%26b+c";
        let said = "auth p%40ss%2Fword, p@ss/word, a&b c failed";
        assert_eq!(scrub_redis_passwords(said, url), "auth ****, ****, **** failed");
    }
}
