//! [`Config`] mirrors `config.toml`: every key, its default, and validation in one place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::ConfigError;
use crate::robot::RobotDetector;
// `[robots]`, defined beside the detector it configures.
pub use crate::robot::RobotsConfig;

/// Environment variable naming a config file (used by the examples).
pub const CONFIG_ENV: &str = "DRACO_SESSION_CONFIG";
/// Environment variable holding the id secret; when set (non-empty) it wins over
/// `session.secret`, so a deployment can replace a secret a config file carries.
pub const SECRET_ENV: &str = "DRACO_SESSION_SECRET";

/// The whole configuration. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// `[session]`: lifetimes, shards, id secret.
    pub session: SessionConfig,
    /// `[cookie]`: the session cookie.
    pub cookie: CookieConfig,
    /// `[header]`: the session id in a request/response header, for clients without cookies.
    pub header: HeaderConfig,
    /// `[storage]`: where and how often sessions are persisted.
    pub storage: StorageConfig,
    /// `[limits]`: caps that turn into clear errors instead of unbounded growth.
    pub limits: LimitsConfig,
    /// `[robots]`: which User-Agents never get a session.
    pub robots: RobotsConfig,
    /// `[csrf]`: the origin guard against cross-site requests.
    pub csrf: CsrfConfig,
    /// `[events]`: session events for [`SessionEngine::subscribe`](crate::SessionEngine::subscribe).
    pub events: EventsConfig,
}

/// `[session]`. Its `Debug` shows neither secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Idle lifetime of a volatile session. Defaults to `"2h"`.
    #[serde(deserialize_with = "duration")]
    pub volatile_ttl: Duration,
    /// Idle lifetime of a persistent ("remember me") session. Defaults to `"100d"`.
    #[serde(deserialize_with = "duration")]
    pub persistent_ttl: Duration,
    /// Hard cap on a session's age whatever its use; `"0s"` means none. Defaults to `"0s"`.
    #[serde(deserialize_with = "duration")]
    pub absolute_ttl: Duration,
    /// Number of shard workers; 0 means one per CPU. Defaults to `0`.
    pub shards: usize,
    /// How often each worker sweeps expired sessions. Defaults to `"1s"`.
    #[serde(deserialize_with = "duration")]
    pub sweep_interval: Duration,
    /// Secret keying the id tag (at least 32 bytes). The `DRACO_SESSION_SECRET` environment
    /// variable, when set, wins over it. Defaults to none: with neither, a key generated once
    /// into `storage.dir/secret.key` (mode 0600), or, when `storage.persist` is off on the
    /// memory backend, a random key kept in memory only (no file is written; ids end with the
    /// process, as its sessions do).
    pub secret: Option<String>,
    /// Earlier secrets whose ids are still accepted, for key rotation. Defaults to `[]`.
    pub previous_secrets: Vec<String>,
    /// What `logout()` does to the session's data. `false` (the default, as Draco's manual
    /// says): the id rotates, the user and remember-me go, every other value stays (a cart,
    /// preferences). `true`: every scope is cleared too, in the same atomic step as the
    /// rotation, so the browser starts anew after a logout (a shared computer).
    pub logout_clears_data: bool,
    /// Whether a login records the client's address beside the device label, for
    /// `Session::devices`. Defaults to `false`, for privacy. The address is the one
    /// `limits.create_rate` counts (the peer, or the trusted `X-Forwarded-For` hop).
    pub record_ip: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            volatile_ttl: Duration::from_secs(2 * 3600),
            persistent_ttl: Duration::from_secs(100 * 86_400),
            absolute_ttl: Duration::ZERO,
            shards: 0,
            sweep_interval: Duration::from_secs(1),
            secret: None,
            previous_secrets: Vec::new(),
            logout_clears_data: false,
            record_ip: false,
        }
    }
}

/// Stands for a secret in `Debug` output.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"****\"")
    }
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added later must be listed here (and judged secret or not).
        let Self {
            volatile_ttl,
            persistent_ttl,
            absolute_ttl,
            shards,
            sweep_interval,
            secret,
            previous_secrets,
            logout_clears_data,
            record_ip,
        } = self;
        f.debug_struct("SessionConfig")
            .field("volatile_ttl", volatile_ttl)
            .field("persistent_ttl", persistent_ttl)
            .field("absolute_ttl", absolute_ttl)
            .field("shards", shards)
            .field("sweep_interval", sweep_interval)
            .field("secret", &secret.as_ref().map(|_| Redacted))
            .field("previous_secrets", &previous_secrets.iter().map(|_| Redacted).collect::<Vec<_>>())
            .field("logout_clears_data", logout_clears_data)
            .field("record_ip", record_ip)
            .finish()
    }
}

impl SessionConfig {
    /// The shard count actually used: `shards`, or the number of CPUs when it is 0.
    pub fn effective_shards(&self) -> usize {
        if self.shards > 0 { self.shards } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }
}

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
/// empty value. The client keeps the last id it got and sends it back.
///
/// Precedence: a request carrying the header (with a non-empty value) is served by the
/// header's id alone and its cookie is ignored, even when the header's id is forged or dead
/// (then the request has no session, as with a dead cookie, and a write creates a new one).
/// The header is what the client chose explicitly: browsers never add it on their own and
/// another site's page cannot make a browser send it (a custom header needs a CORS preflight),
/// whereas cookies ride along by themselves, including one planted by a sibling subdomain. So
/// one request never mixes two ids, and a cookie cannot move a header client onto another
/// session. An absent or empty header leaves the cookie in charge, as without this section.
/// Responses speak on every enabled transport: the header and the cookie name the same id.
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

/// `[events]`: the session events of [`SessionEngine::subscribe`](crate::SessionEngine::subscribe).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EventsConfig {
    /// Events each subscriber may fall behind by before it misses the oldest (and is told how
    /// many it missed). The engine never waits for a subscriber. Defaults to `1024`.
    pub capacity: usize,
    /// Redis backend: events are appended to the stream `draco:events`, capped at about this
    /// many entries (`XADD … MAXLEN ~`), which every instance reads, so each subscriber sees
    /// the events of every instance. `0` writes no events to Redis (nothing to subscribe to).
    /// Defaults to `10000`. The memory backend has no stream.
    pub redis_stream_len: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { capacity: 1024, redis_stream_len: 10_000 }
    }
}

impl EventsConfig {
    fn check(&self) -> Result<(), Invalid> {
        if self.capacity == 0 || self.capacity > 1 << 20 {
            return bad("events.capacity", format!("is {}, must be between 1 and 1048576", self.capacity));
        }
        if self.redis_stream_len > 100_000_000 {
            return bad("events.redis_stream_len", format!("is {}, at most 100000000", self.redis_stream_len));
        }
        Ok(())
    }
}

impl CsrfConfig {
    fn check(&self) -> Result<(), Invalid> {
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

/// `[storage]`. Its `Debug` shows `redis_url` with any password hidden.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StorageConfig {
    /// Data directory (secret key, snapshots); created when missing. Defaults to `"data"`.
    pub dir: PathBuf,
    /// How often workers snapshot their sessions to disk. Defaults to `"30s"`.
    #[serde(deserialize_with = "duration")]
    pub snapshot_interval: Duration,
    /// Write and load snapshots at all. Defaults to `true`.
    pub persist: bool,
    /// Where sessions live: `"memory"` (shard workers, snapshots in `dir`) or `"redis"`
    /// (a Redis server shared by several app instances; needs the `redis` cargo feature).
    /// Defaults to `"memory"`.
    pub backend: StorageBackend,
    /// The Redis server for `backend = "redis"`: `redis://[[user]:password@]host[:port][/db]`,
    /// or `rediss://` for TLS. A password never appears in messages, logs or `Debug` output
    /// (`redis://user:****@host`). Defaults to `"redis://127.0.0.1:6379"`.
    pub redis_url: String,
    /// `redis_url` names Redis Cluster nodes (one or more, comma-separated) rather than one
    /// server. Defaults to `false`.
    pub redis_cluster: bool,
    /// The write-ahead log (memory backend, with `persist`): `"1s"` (the default) appends every
    /// change to the log before it is acknowledged and fsyncs the log at least once a second
    /// (any duration from `"10ms"` to `"10s"` sets that interval); `"always"` acknowledges a
    /// change only once its record is fsynced (group commit); `"off"`: snapshots only.
    #[serde(deserialize_with = "log_mode")]
    pub log: LogMode,
    /// Log size (all shards together) past which a shard snapshots early, so the log before
    /// the snapshot can be deleted: `"256MiB"` by default (units B, KiB, MiB, GiB).
    #[serde(deserialize_with = "byte_size")]
    pub log_max: u64,
}

/// `storage.log`: when a change is durable (see [`StorageConfig::log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogMode {
    /// No log: a crash loses the changes since the last snapshot.
    Off,
    /// Every change reaches the log (the kernel) before it is acknowledged; the log is fsynced
    /// at this interval. A process crash loses nothing, a power cut at most this interval.
    Every(Duration),
    /// A change is acknowledged only once its record is fsynced; one fsync covers every record
    /// written meanwhile (group commit).
    Always,
}

impl std::fmt::Display for LogMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Always => f.write_str("always"),
            Self::Every(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added later must be listed here (and judged secret or not).
        let Self { dir, snapshot_interval, persist, backend, redis_url, redis_cluster, log, log_max } = self;
        f.debug_struct("StorageConfig")
            .field("dir", dir)
            .field("snapshot_interval", snapshot_interval)
            .field("persist", persist)
            .field("backend", backend)
            .field("redis_url", &redact_redis_url(redis_url))
            .field("redis_cluster", redis_cluster)
            .field("log", log)
            .field("log_max", log_max)
            .finish()
    }
}

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

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data"),
            snapshot_interval: Duration::from_secs(30),
            persist: true,
            backend: StorageBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_cluster: false,
            log: LogMode::Every(Duration::from_secs(1)),
            log_max: 256 << 20,
        }
    }
}

/// `storage.backend`: where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StorageBackend {
    /// In this process: shard worker actors, with bincode snapshots in `storage.dir`.
    Memory,
    /// In a Redis server (`storage.redis_url`), shared by every instance that points at it.
    Redis,
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Largest encoded value, in bytes. Defaults to `65536` (64 KiB).
    pub max_value_bytes: usize,
    /// Most keys in one session, over all scopes. Defaults to `1024`.
    pub max_keys: usize,
    /// Most live sessions in the engine; creating one more fails with `Full`. Defaults to `10000000`.
    pub max_sessions: usize,
    /// Most logged-in sessions one user may have; past it, a login ends that user's least
    /// recently used other session. `0` (the default): no limit.
    pub max_sessions_per_user: usize,
    /// Most bytes one session holds: its scope names, key names and encoded values, all
    /// scopes together. A write that would grow a session past it fails with
    /// `SessionTooLarge` (HTTP 413) and changes nothing; a write that does not grow the
    /// session always works. At least `max_value_bytes`. Defaults to `1048576` (1 MiB).
    pub max_session_bytes: usize,
    /// New sessions one client may create: `"off"`, or a rate such as `"20/s"`, `"600/m"`,
    /// `"10000/h"`. A request that would create one more is answered 429 with `Retry-After`;
    /// requests with a live session, or creating none, are never limited. A client is its
    /// IP address (IPv6: its /64), see `trust_forwarded_for`; at most 65,536 clients are
    /// tracked, the idlest forgotten first. Defaults to `"off"`.
    #[serde(deserialize_with = "create_rate")]
    pub create_rate: Option<CreateRate>,
    /// New sessions a client may create at once before `create_rate` paces it; `0` means the
    /// rate's count. Defaults to `0`.
    pub create_burst: u32,
    /// Take the client's address for `create_rate` from the last (rightmost) hop of the
    /// `X-Forwarded-For` header instead of the connection's peer. Only when a proxy you run
    /// sets that hop: trusted without one, clients forge it; not trusted behind one, every
    /// client behind the proxy shares one budget. Defaults to `false`.
    pub trust_forwarded_for: bool,
}

/// `limits.create_rate`: `count` new sessions per `per`.
///
/// ```
/// use draco_session::config::CreateRate;
/// use std::time::Duration;
///
/// let rate: CreateRate = "600/m".parse().unwrap();
/// assert_eq!((rate.count, rate.per), (600, Duration::from_secs(60)));
/// assert!("20 per day".parse::<CreateRate>().unwrap_err().contains("20/s"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateRate {
    /// Sessions per period (at least 1).
    pub count: u32,
    /// The period: a second, a minute or an hour.
    pub per: Duration,
}

impl std::str::FromStr for CreateRate {
    type Err = String;

    /// `"N/s"`, `"N/m"` or `"N/h"`, N at least 1.
    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.trim().split_once('/').and_then(|(count, per)| {
            let count: u32 = count.trim().parse().ok().filter(|&n| n > 0)?;
            let per = match per.trim() {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => return None,
            };
            Some(Self { count, per: Duration::from_secs(per) })
        });
        parsed.ok_or_else(|| {
            format!(
                "invalid rate {text:?}: write \"off\" or new sessions per second, minute or hour, \
                 e.g. \"20/s\", \"600/m\""
            )
        })
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_value_bytes: 64 * 1024,
            max_keys: 1024,
            max_sessions: 10_000_000,
            max_session_bytes: 1 << 20,
            create_rate: None,
            create_burst: 0,
            trust_forwarded_for: false,
            max_sessions_per_user: 0,
        }
    }
}

/// Longest accepted duration: about 10 years.
const MAX_TTL: Duration = Duration::from_secs(10 * 366 * 86_400);

impl Config {
    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the key when the file cannot be read, does not parse,
    /// has an unknown key or an invalid value.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    ///
    /// ```
    /// use draco_session::Config;
    ///
    /// let config = Config::from_toml("[session]\nvolatile_ttl = \"90m\"", "inline").unwrap();
    /// assert_eq!(config.session.volatile_ttl.as_secs(), 5400);
    ///
    /// let err = Config::from_toml("[session]\nvolatile_tll = \"90m\"", "inline").unwrap_err();
    /// assert!(err.to_string().contains("volatile_tll"));
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks ranges and combinations; `origin` names the source in errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first offending key.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.validate_settings(origin)?;
        RobotDetector::build(&self.robots, origin).map(drop)
    }

    /// [`validate`](Self::validate) but for the `[robots]` patterns, which the engine checks by
    /// compiling them once, into the detector it keeps.
    pub(crate) fn validate_settings(&self, origin: &str) -> Result<(), ConfigError> {
        let checks = [
            self.session.check(),
            self.cookie.check(),
            self.header.check(),
            self.check_transport(),
            self.storage.check(),
            self.limits.check(),
            self.csrf.check(),
            self.events.check(),
        ];
        match checks.into_iter().find_map(Result::err) {
            Some((key, message)) => Err(ConfigError::Invalid { origin: origin.to_owned(), key, message }),
            None => Ok(()),
        }
    }
}

impl Config {
    /// Some transport must carry the session id back, or every request would be a stranger.
    fn check_transport(&self) -> Result<(), Invalid> {
        if !self.cookie.enabled && self.header.name.is_empty() {
            return bad(
                "cookie.enabled",
                "is false and header.name is empty: no transport would carry the session id; \
                 set header.name (such as \"x-session-id\") or turn the cookie back on",
            );
        }
        Ok(())
    }
}

/// A rejected value: its dotted key, and why.
type Invalid = (&'static str, String);

fn bad(key: &'static str, message: impl Into<String>) -> Result<(), Invalid> {
    Err((key, message.into()))
}

impl SessionConfig {
    fn check(&self) -> Result<(), Invalid> {
        let s = self;
        if s.volatile_ttl.is_zero() || s.volatile_ttl > MAX_TTL {
            return bad("session.volatile_ttl", "must be between 1s and 10 years");
        }
        if s.persistent_ttl.is_zero() || s.persistent_ttl > MAX_TTL {
            return bad("session.persistent_ttl", "must be between 1s and 10 years");
        }
        if s.persistent_ttl < s.volatile_ttl {
            return bad(
                "session.persistent_ttl",
                "must not be shorter than session.volatile_ttl (remember-me would forget sooner)",
            );
        }
        if s.absolute_ttl > MAX_TTL {
            return bad("session.absolute_ttl", "must be at most 10 years (0s = none)");
        }
        if s.shards > 1024 {
            return bad("session.shards", format!("is {}, at most 1024", s.shards));
        }
        if s.sweep_interval < Duration::from_millis(10) {
            return bad("session.sweep_interval", "must be at least 10ms");
        }
        if let Some(secret) = &s.secret
            && secret.len() < 32
        {
            return bad("session.secret", "must be at least 32 bytes");
        }
        if s.previous_secrets.iter().any(|p| p.len() < 32) {
            return bad("session.previous_secrets", "every entry must be at least 32 bytes");
        }
        Ok(())
    }
}

impl CookieConfig {
    fn check(&self) -> Result<(), Invalid> {
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
    fn check(&self) -> Result<(), Invalid> {
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

/// A host name: dot-separated labels of letters, digits and `-` (not at a label's ends), each
/// 1 to 63 bytes, 253 bytes in all.
fn is_hostname(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok)
}

impl StorageConfig {
    fn check(&self) -> Result<(), Invalid> {
        if self.dir.as_os_str().is_empty() {
            return bad("storage.dir", "must not be empty");
        }
        if self.snapshot_interval < Duration::from_millis(100) {
            return bad("storage.snapshot_interval", "must be at least 100ms");
        }
        if let LogMode::Every(d) = self.log
            && !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&d)
        {
            return bad("storage.log", "as an fsync interval must be between 10ms and 10s");
        }
        if self.log_max < 1 << 20 {
            return bad("storage.log_max", "must be at least 1MiB");
        }
        if self.backend != StorageBackend::Redis {
            return Ok(());
        }
        if !cfg!(feature = "redis") {
            return bad(
                "storage.backend",
                "is \"redis\" but draco-session was built without its `redis` cargo feature: \
                 enable the feature, or use backend = \"memory\"",
            );
        }
        let urls: Vec<&str> = if self.redis_cluster {
            self.redis_url.split(',').map(str::trim).collect()
        } else {
            vec![self.redis_url.as_str()]
        };
        for url in urls {
            // Messages show the URL with its password hidden (see `redact_redis_url`).
            let shown = redact_redis_url(url);
            let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
            if !schemes.iter().any(|s| url.starts_with(s)) {
                return bad(
                    "storage.redis_url",
                    format!("{shown:?} must start with redis://, rediss:// (TLS) or redis+unix://"),
                );
            }
            #[cfg(feature = "redis")]
            if let Err(e) = redis::Client::open(url) {
                let e = scrub_redis_passwords(&e.to_string(), url);
                return bad("storage.redis_url", format!("{shown:?} is not a valid Redis URL: {e}"));
            }
        }
        Ok(())
    }
}

impl LimitsConfig {
    fn check(&self) -> Result<(), Invalid> {
        if self.max_value_bytes == 0 || self.max_value_bytes > 64 << 20 {
            return bad("limits.max_value_bytes", "must be between 1 and 67108864");
        }
        if self.max_keys == 0 {
            return bad("limits.max_keys", "must be at least 1");
        }
        if self.max_sessions == 0 {
            return bad("limits.max_sessions", "must be at least 1");
        }
        if self.max_session_bytes < self.max_value_bytes || self.max_session_bytes > 1 << 30 {
            return bad(
                "limits.max_session_bytes",
                format!(
                    "is {}: must be at least limits.max_value_bytes ({}) and at most 1073741824",
                    self.max_session_bytes, self.max_value_bytes
                ),
            );
        }
        Ok(())
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write e.g. \"2s\", \"90m\", \"2h\", \"100d\""
        ))
    })
}

fn create_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CreateRate>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim() == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

fn log_mode<'de, D: Deserializer<'de>>(d: D) -> Result<LogMode, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim() {
        "off" => Ok(LogMode::Off),
        "always" => Ok(LogMode::Always),
        other => humantime::parse_duration(other).map(LogMode::Every).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid log mode {text:?}: write \"always\", \"off\", or an fsync interval such as \"1s\""
            ))
        }),
    }
}

/// Parses `"256MiB"`, `"1 GiB"`, `"4096"` (bytes), `"10MB"` (decimal units).
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    parse_bytes(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("invalid size {text:?}; write e.g. \"256MiB\", \"1GiB\", \"65536\""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_settings_parse_and_are_checked() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c.storage.log, LogMode::Every(Duration::from_secs(1)));
        assert_eq!(c.storage.log_max, 256 << 20);
        let c = Config::from_toml("[storage]\nlog = \"always\"\nlog_max = \"1GiB\"", "t").unwrap();
        assert_eq!((c.storage.log, c.storage.log_max), (LogMode::Always, 1 << 30));
        let c = Config::from_toml("[storage]\nlog = \"off\"", "t").unwrap();
        assert_eq!(c.storage.log, LogMode::Off);
        let c = Config::from_toml("[storage]\nlog = \"200ms\"", "t").unwrap();
        assert_eq!(c.storage.log, LogMode::Every(Duration::from_millis(200)));
        for (toml, key) in [
            ("[storage]\nlog = \"sometimes\"", "sometimes"),
            ("[storage]\nlog = \"1h\"", "storage.log"),
            ("[storage]\nlog_max = \"12 parsecs\"", "12 parsecs"),
            ("[storage]\nlog_max = \"1KiB\"", "storage.log_max"),
        ] {
            let e = Config::from_toml(toml, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("f.toml"), "{toml}: {e}");
        }
        assert_eq!(parse_bytes("10MB"), Some(10_000_000));
        assert_eq!(parse_bytes("99999999999999GiB"), None);
    }

    #[test]
    fn create_rate_parses_and_bad_rates_name_the_key() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!((c.limits.create_rate, c.limits.create_burst, c.limits.trust_forwarded_for), (None, 0, false));
        let c = Config::from_toml("[limits]\ncreate_rate = \"20/s\"\ncreate_burst = 40", "t").unwrap();
        assert_eq!(c.limits.create_rate, Some(CreateRate { count: 20, per: Duration::from_secs(1) }));
        assert_eq!(c.limits.create_burst, 40);
        let c = Config::from_toml("[limits]\ncreate_rate = \"600/m\"\ntrust_forwarded_for = true", "t").unwrap();
        assert_eq!(c.limits.create_rate, Some(CreateRate { count: 600, per: Duration::from_secs(60) }));
        assert!(c.limits.trust_forwarded_for);
        for bad in ["20", "0/s", "-1/s", "20/day", "lots/s", "20/s/s"] {
            let e = Config::from_toml(&format!("[limits]\ncreate_rate = \"{bad}\""), "f.toml").unwrap_err().to_string();
            assert!(e.contains("create_rate") && e.contains("f.toml") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c.session.volatile_ttl, Duration::from_secs(7200));
        assert_eq!(c.session.persistent_ttl, Duration::from_secs(8_640_000));
        assert_eq!(c.cookie.name, "sid");
        assert!(c.cookie.secure);
        assert_eq!(c.storage.snapshot_interval, Duration::from_secs(30));
        assert_eq!(c.limits.max_value_bytes, 65536);
    }

    #[test]
    fn shipped_config_toml_parses_to_the_defaults() {
        let text = include_str!("../config.toml");
        let c = Config::from_toml(text, "config.toml").unwrap();
        let d = Config::default();
        assert_eq!(c.session.volatile_ttl, d.session.volatile_ttl);
        assert_eq!(c.session.persistent_ttl, d.session.persistent_ttl);
        assert_eq!(c.session.shards, d.session.shards);
        assert_eq!(c.cookie.name, d.cookie.name);
        assert_eq!(c.storage.dir, d.storage.dir);
        assert_eq!(c.limits.max_sessions, d.limits.max_sessions);
        assert_eq!(c.limits.max_session_bytes, d.limits.max_session_bytes);
        assert_eq!(c.limits.create_rate, d.limits.create_rate);
        assert_eq!(c.limits.trust_forwarded_for, d.limits.trust_forwarded_for);
        assert_eq!(c.storage.backend, d.storage.backend);
        assert_eq!(c.storage.redis_url, d.storage.redis_url);
        assert_eq!(c.storage.redis_cluster, d.storage.redis_cluster);
        assert_eq!(c.session.logout_clears_data, d.session.logout_clears_data);
        assert_eq!(c.csrf.origin_guard, d.csrf.origin_guard);
        assert_eq!(c.csrf.trusted_origins, d.csrf.trusted_origins);
        assert_eq!((c.cookie.enabled, &c.header.name), (d.cookie.enabled, &d.header.name));
    }

    #[test]
    fn redis_backend_is_checked() {
        let c = Config::from_toml("[storage]\nbackend = \"memory\"", "t").unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Memory);
        let e = Config::from_toml("[storage]\nbackend = \"mongo\"", "f.toml").unwrap_err().to_string();
        assert!(e.contains("backend") && e.contains("f.toml"), "{e}");
        let redis =
            Config::from_toml("[storage]\nbackend = \"redis\"\nredis_url = \"redis://10.0.0.1:7000/2\"", "f.toml");
        if cfg!(feature = "redis") {
            assert_eq!(redis.unwrap().storage.redis_url, "redis://10.0.0.1:7000/2");
            let e = Config::from_toml("[storage]\nbackend = \"redis\"\nredis_url = \"http://x\"", "f.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("storage.redis_url") && e.contains("http://x"), "{e}");
        } else {
            let e = redis.unwrap_err().to_string();
            assert!(e.contains("storage.backend") && e.contains("`redis` cargo feature"), "{e}");
        }
    }

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

    #[test]
    fn debug_output_holds_no_secret_and_no_password() {
        let mut c = Config::default();
        c.session.secret = Some("current secret hunter2 at least 32 bytes".into());
        c.session.previous_secrets = vec!["previous secret swordfish, 32 bytes long".into()];
        c.storage.redis_url = "rediss://user:hunter3@redis.example:6380/1".into();
        let shown = format!("{c:?} {c:#?}");
        for secret in ["hunter2", "swordfish", "hunter3"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("rediss://user:****@redis.example:6380/1") && shown.contains("volatile_ttl"), "{shown}");
    }

    #[test]
    fn invalid_redis_urls_are_named_without_their_password() {
        let toml = |url: &str| format!("[storage]\nbackend = \"redis\"\nredis_url = {url:?}");
        let e = Config::from_toml(&toml("http://user:hunter2@x"), "f.toml").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        if cfg!(feature = "redis") {
            assert!(e.contains("storage.redis_url") && e.contains("http://user:****@x"), "{e}");
            let e = Config::from_toml(&toml("redis://user:hunter2@h:99999999"), "f.toml").unwrap_err().to_string();
            assert!(e.contains("storage.redis_url") && !e.contains("hunter2"), "{e}");
            let c = Config::from_toml(&toml("rediss://user:hunter2@h:6380/1"), "f.toml").unwrap();
            assert_eq!(c.storage.redis_url, "rediss://user:hunter2@h:6380/1");
        }
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = Config::from_toml("[cookie]\nnmae = \"x\"", "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("nmae"), "{e}");
        let e = Config::from_toml("[sesion]\n", "my.toml").unwrap_err().to_string();
        assert!(e.contains("sesion"), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let e = Config::from_toml("[session]\nvolatile_ttl = \"2 hours-ish\"", "f.toml").unwrap_err().to_string();
        assert!(e.contains("volatile_ttl") && e.contains("f.toml"), "{e}");
    }

    #[test]
    fn impossible_combinations_are_rejected() {
        for (toml, key) in [
            ("[session]\nvolatile_ttl = \"2d\"\npersistent_ttl = \"1d\"", "session.persistent_ttl"),
            ("[session]\nvolatile_ttl = \"0s\"", "session.volatile_ttl"),
            ("[session]\nshards = 5000", "session.shards"),
            ("[session]\nsecret = \"short\"", "session.secret"),
            ("[cookie]\nsame_site = \"none\"\nsecure = false", "cookie.same_site"),
            ("[cookie]\nname = \"a b\"", "cookie.name"),
            ("[limits]\nmax_keys = 0", "limits.max_keys"),
            ("[limits]\nmax_session_bytes = 0", "limits.max_session_bytes"),
            ("[limits]\nmax_value_bytes = 4096\nmax_session_bytes = 1024", "limits.max_session_bytes"),
            ("[storage]\nsnapshot_interval = \"1ms\"", "storage.snapshot_interval"),
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

    #[test]
    fn invalid_robot_patterns_name_key_pattern_and_file() {
        let e = Config::from_toml("[robots]\nextra = [\"ok\", \"(unclosed\"]", "f.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "robots.extra", .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("f.toml") && e.contains("(unclosed"), "{e}");
        let e = Config::from_toml("[robots]\ndetect = false\nallow = [\"a{2,1}\"]", "f.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "robots.allow", .. }), "{e:?}");
        assert!(Config::from_toml("[robots]\nextra = [\"^acme/\"]\nallow = [\"friendly\"]", "f.toml").is_ok());
    }

    #[test]
    fn durations_accept_human_units() {
        let c = Config::from_toml(
            "[session]\nvolatile_ttl = \"90m\"\npersistent_ttl = \"100d\"\n[storage]\nsnapshot_interval = \"2s\"",
            "t",
        )
        .unwrap();
        assert_eq!(c.session.volatile_ttl, Duration::from_secs(5400));
        assert_eq!(c.storage.snapshot_interval, Duration::from_secs(2));
    }
}
