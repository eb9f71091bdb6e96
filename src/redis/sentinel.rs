//! Redis Sentinel: `storage.redis_url = "redis+sentinel://[user:password@]host:port[,host:port…]/master[/db]"`.
//!
//! The engine asks the sentinels (the first that answers) where the primary named `master` is,
//! checks that server calls itself a primary (`ROLE`), and sends every command there over one
//! multiplexed connection ([`SentinelConn`]). When a command fails in a way that says the
//! primary is gone or no longer one — the connection refused, dropped or silent, or `READONLY`
//! (a primary demoted to replica by a failover) — the connection is dropped; the command's
//! caller gets `Unavailable` (HTTP 503, as during any outage), and the next command asks the
//! sentinels again, so requests are served by the new primary as soon as the sentinels have
//! promoted it. The password (and user) are the primary's; sentinels are reached without one.
//! TLS (`rediss+sentinel://`) is not supported.
//!
//! What a failover can lose is Redis's own matter: replication is asynchronous, so writes the
//! old primary acknowledged but had not sent to the replica before it died are gone from the
//! new one (`RELIABILITY.md`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// The URL scheme of a primary found through Redis Sentinel.
pub(crate) const SCHEME: &str = "redis+sentinel://";

/// A `redis+sentinel://` URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    /// Each sentinel, `host:port` (port 26379 when not given).
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels know the primary by.
    pub master: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Parses `url` (see the module docs); errs with what is wrong.
pub(crate) fn parse(url: &str) -> Result<SentinelUrl, String> {
    let rest = url.strip_prefix(SCHEME).ok_or_else(|| format!("does not start with {SCHEME}"))?;
    let (auth, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (username, password) = match auth {
        None => (None, None),
        Some(a) => match a.split_once(':') {
            Some((user, pass)) => ((!user.is_empty()).then(|| user.to_owned()), Some(pass.to_owned())),
            None => (None, Some(a.to_owned())),
        },
    };
    let mut parts = rest.splitn(3, '/');
    let hosts = parts.next().unwrap_or_default();
    let master =
        parts.next().filter(|m| !m.is_empty()).ok_or("names no primary: add /<master name> after the sentinels")?;
    let db = match parts.next().filter(|d| !d.is_empty()) {
        Some(d) => d.parse().map_err(|_| format!("database {d:?} is not a number"))?,
        None => 0,
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',').map(str::trim) {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, port.parse().map_err(|_| format!("sentinel port {port:?} is not a number"))?),
            None => (host, 26379),
        };
        if name.is_empty() {
            return Err("names no sentinel host".into());
        }
        sentinels.push((name.to_owned(), port));
    }
    Ok(SentinelUrl { sentinels, master: master.to_owned(), db, username, password })
}

/// The connection to the primary the sentinels name, found again after a failover (see the
/// module docs).
#[derive(Clone)]
pub(super) struct SentinelConn(Arc<Shared>);

struct Shared {
    /// Asks the sentinels; one caller at a time.
    client: tokio::sync::Mutex<SentinelClient>,
    /// The primary's connection, until a command says it is gone.
    current: Mutex<Option<MultiplexedConnection>>,
    db: i64,
    config: redis::AsyncConnectionConfig,
}

impl SentinelConn {
    /// Connects to the primary `url` names; `response` bounds each command on it. Errs with
    /// what went wrong.
    pub(super) async fn open(url: &str, connect: Duration, response: Duration) -> Result<Self, String> {
        let parsed = parse(url)?;
        let sentinels: Vec<String> = parsed.sentinels.iter().map(|(h, p)| format!("redis://{h}:{p}")).collect();
        let node = SentinelNodeConnectionInfo {
            tls_mode: None,
            redis_connection_info: Some(redis::RedisConnectionInfo {
                db: parsed.db,
                username: parsed.username.clone(),
                password: parsed.password.clone(),
                ..Default::default()
            }),
        };
        let client = SentinelClient::build(sentinels, parsed.master.clone(), Some(node), SentinelServerType::Master)
            .map_err(|e| e.to_string())?;
        let config = redis::AsyncConnectionConfig::new().set_connection_timeout(connect).set_response_timeout(response);
        let conn = Self(Arc::new(Shared {
            client: tokio::sync::Mutex::new(client),
            current: Mutex::new(None),
            db: parsed.db,
            config,
        }));
        conn.connection().await.map_err(|e| format!("no primary {:?} through the sentinels: {e}", parsed.master))?;
        Ok(conn)
    }

    /// The primary's connection: the one in use, or a new one to where the sentinels say the
    /// primary is now.
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.0.current.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(conn);
        }
        let mut client = self.0.client.lock().await;
        // Another caller may have found it meanwhile.
        if let Some(conn) = self.0.current.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(conn);
        }
        let primary = client.async_get_client().await?;
        let conn = primary.get_multiplexed_async_connection_with_config(&self.0.config).await?;
        log::info!("session engine: Redis primary through Sentinel at {}", primary.get_connection_info().addr);
        *self.0.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// After a failed command: drops the connection when the failure says the primary is gone
    /// or demoted.
    fn settle<T>(&self, answer: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &answer
            && primary_lost(e)
        {
            self.0.current.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        answer
    }
}

/// Whether `e` says the server is no primary of ours any more.
fn primary_lost(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.kind() == ErrorKind::ReadOnly
        || e.to_string().contains("READONLY")
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let answer = conn.req_packed_command(cmd).await;
            self.settle(answer)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.connection().await?;
            let answer = conn.req_packed_commands(cmd, offset, count).await;
            self.settle(answer)
        })
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_the_sentinels_the_primary_and_its_database() {
        let u = parse("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2/mymaster/3").unwrap();
        assert_eq!(u.sentinels, [("10.0.0.1".to_owned(), 26379), ("10.0.0.2".to_owned(), 26379)]);
        assert_eq!((u.master.as_str(), u.db, u.username, u.password.as_deref()), ("mymaster", 3, None, Some("pw")));
        let u = parse("redis+sentinel://app:s3cret@h:1/primary").unwrap();
        assert_eq!((u.username.as_deref(), u.password.as_deref(), u.db), (Some("app"), Some("s3cret"), 0));
        for bad in [
            "redis://h:1/m",
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://:1/m",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
