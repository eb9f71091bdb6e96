//! What the load generators (`load_test.rs`, `soak.rs`) share: a loopback-only check, one JSON
//! request to the demo with its session cookie kept like a browser keeps it, and percentiles.

use std::net::IpAddr;
use std::time::Instant;

use awc::Client;
use awc::http::StatusCode;
use serde_json::Value;

/// The User-Agent of every request: a browser, so the demo gives sessions.
pub const BROWSER_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36";

/// Load goes to this machine only.
pub fn check_loopback(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or("--url must start with http://")?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
    if loopback { Ok(()) } else { Err(format!("--url host {host:?} is not a loopback address")) }
}

/// One visitor's side of the conversation: where the demo is and the session cookie it holds.
pub struct Browser<'a> {
    pub client: &'a Client,
    /// The demo's base URL, without a trailing `/`.
    pub url: &'a str,
    /// The session cookie's name (`cookie.name` of the demo's config).
    pub cookie_name: &'a str,
}

/// An answer: status, JSON body, and how long it took (µs).
pub type Answer = (StatusCode, Value, u32);

impl Browser<'_> {
    /// Sends one request with `cookie` and updates `cookie` from the response's `Set-Cookie`
    /// (a removal cookie clears it), as a browser does.
    pub async fn call(
        &self,
        cookie: &mut Option<String>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, String> {
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "GET" => self.client.get(&url),
            "PUT" => self.client.put(&url),
            "DELETE" => self.client.delete(&url),
            _ => self.client.post(&url),
        };
        // The demo's API takes unsafe methods only as JSON, bodyless ones included.
        req = req.insert_header(("User-Agent", BROWSER_UA)).insert_header(("Content-Type", "application/json"));
        if let Some(c) = cookie.as_deref() {
            req = req.insert_header(("Cookie", format!("{}={c}", self.cookie_name)));
        }
        let start = Instant::now();
        let sent = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        };
        let mut resp = sent.map_err(|e| format!("{method} {path}: {e}"))?;
        let json: Value = resp.json().limit(1 << 16).await.map_err(|e| format!("{method} {path}: body: {e}"))?;
        let elapsed = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
        let prefix = format!("{}=", self.cookie_name);
        for value in resp.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap_or_default();
            if let Some(rest) = text.strip_prefix(&prefix) {
                let c = rest.split(';').next().unwrap_or_default();
                *cookie = if c.is_empty() || text.contains("Max-Age=0") { None } else { Some(c.to_owned()) };
            }
        }
        Ok((resp.status(), json, elapsed))
    }
}

/// The `p`th percentile (0–100) of `sorted` latencies in µs, in milliseconds.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "p is a percentage in [0, 100]")]
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank] as f64 / 1000.0
}
