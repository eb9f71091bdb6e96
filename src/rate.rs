//! [`CreateLimiter`]: `limits.create_rate`, the budget of new sessions per client address — a
//! token bucket per client in a table of fixed capacity.
//!
//! Only a request about to create a session takes a token (see `web/access.rs`): a request
//! with a live session, or one that creates none, is never limited. Which client a request
//! counts as is the web layer's (`web/rate.rs`).
//!
//! # Bounds
//!
//! The table holds at most [`TABLE_CAPACITY`] clients (a few MiB). When it is full, a new
//! client evicts the idlest of [`EVICTION_SAMPLE`] entries taken in turn from a moving hand
//! (Redis's sampled LRU): O(1) per request whatever the number of addresses a flood comes from.
//! An evicted client that comes back starts with a full bucket, so an attacker cycling through
//! more addresses than the table holds gets a fresh burst per address; what bounds that flood is
//! then `limits.max_sessions`, which the engine never exceeds. IPv6 clients are counted per /64
//! (one subscriber's usual allocation), or every address of a /64 would be a client of its own.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use indexmap::IndexMap;

use crate::config::CreateRate;

/// Most clients the table holds.
pub(crate) const TABLE_CAPACITY: usize = 65_536;
/// Entries examined to evict one when the table is full.
pub(crate) const EVICTION_SAMPLE: usize = 8;

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in units of 1/period-in-ms of a token, so that each millisecond adds the rate's
    /// count of units: exact integer arithmetic.
    credit: u64,
    /// When `credit` was last brought up to date, in ms.
    at_ms: u64,
}

#[derive(Debug, Default)]
struct Table {
    buckets: IndexMap<u128, Bucket>,
    /// Where the next eviction sample starts.
    hand: usize,
}

/// Token buckets of new sessions, one per client.
#[derive(Debug)]
pub(crate) struct CreateLimiter {
    /// Units of credit a token is worth: the period, in ms.
    token: u64,
    /// Units added per millisecond: the rate's count.
    per_ms: u64,
    /// Units a full bucket holds: the burst's tokens.
    full: u64,
    capacity: usize,
    table: Mutex<Table>,
}

/// The client `ip` counts as: IPv4 (also written as IPv6) by address, IPv6 by /64.
fn client_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !u128::from(u64::MAX),
    }
}

impl CreateLimiter {
    /// `rate.count` sessions per `rate.per`, `burst` at once (0: `rate.count`), for at most
    /// `capacity` clients.
    pub(crate) fn new(rate: CreateRate, burst: u32, capacity: usize) -> Self {
        let burst = if burst == 0 { rate.count } else { burst };
        let token = u64::try_from(rate.per.as_millis()).unwrap_or(u64::MAX).max(1);
        Self {
            token,
            per_ms: u64::from(rate.count).max(1),
            full: token.saturating_mul(u64::from(burst)),
            capacity: capacity.max(1),
            table: Mutex::default(),
        }
    }

    /// The limiter `limits` asks for, if any.
    pub(crate) fn from_config(limits: &crate::config::LimitsConfig) -> Option<Self> {
        limits.create_rate.map(|rate| Self::new(rate, limits.create_burst, TABLE_CAPACITY))
    }

    /// Takes a token for a new session of `ip` at `now_ms`; when there is none, how long until
    /// there is one.
    pub(crate) fn take(&self, ip: IpAddr, now_ms: u64) -> Result<(), Duration> {
        let key = client_key(ip);
        // Held for a few arithmetic steps: never across an await.
        let mut table = self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !table.buckets.contains_key(&key) && table.buckets.len() >= self.capacity {
            table.evict();
        }
        let bucket = table.buckets.entry(key).or_insert(Bucket { credit: self.full, at_ms: now_ms });
        let earned = now_ms.saturating_sub(bucket.at_ms).saturating_mul(self.per_ms);
        bucket.credit = bucket.credit.saturating_add(earned).min(self.full);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.credit >= self.token {
            bucket.credit -= self.token;
            return Ok(());
        }
        Err(Duration::from_millis((self.token - bucket.credit).div_ceil(self.per_ms)))
    }

    /// Clients in the table.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.table.lock().unwrap().buckets.len()
    }
}

impl Table {
    /// Drops the idlest of the next [`EVICTION_SAMPLE`] entries from the hand.
    fn evict(&mut self) {
        let len = self.buckets.len();
        if len == 0 {
            return;
        }
        let start = self.hand % len;
        let idlest = (0..EVICTION_SAMPLE.min(len))
            .map(|i| (start + i) % len)
            .min_by_key(|&i| self.buckets[i].at_ms)
            .unwrap_or(start);
        self.buckets.swap_remove_index(idlest);
        self.hand = start + EVICTION_SAMPLE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn per_second(count: u32) -> CreateRate {
        CreateRate { count, per: Duration::from_secs(1) }
    }

    #[test]
    fn a_burst_then_the_rate_then_a_refill() {
        let l = CreateLimiter::new(per_second(2), 5, 100);
        let t = 1_000_000;
        for _ in 0..5 {
            assert_eq!(l.take(ip(1), t), Ok(()));
        }
        // Empty: the next token comes in half a second.
        assert_eq!(l.take(ip(1), t), Err(Duration::from_millis(500)));
        assert_eq!(l.take(ip(1), t + 200), Err(Duration::from_millis(300)));
        // Another client has its own bucket.
        assert_eq!(l.take(ip(2), t), Ok(()));
        assert_eq!(l.take(ip(1), t + 500), Ok(()));
        assert!(l.take(ip(1), t + 500).is_err());
        // Refilled at 2/s, never past the burst.
        for _ in 0..5 {
            assert_eq!(l.take(ip(1), t + 60_000), Ok(()));
        }
        assert!(l.take(ip(1), t + 60_000).is_err());
    }

    #[test]
    fn the_burst_defaults_to_the_rate_and_a_clock_going_back_refills_nothing() {
        let l = CreateLimiter::new(CreateRate { count: 3, per: Duration::from_secs(60) }, 0, 100);
        for _ in 0..3 {
            assert_eq!(l.take(ip(1), 10_000), Ok(()));
        }
        assert_eq!(l.take(ip(1), 10_000), Err(Duration::from_secs(20)));
        assert!(l.take(ip(1), 5_000).is_err());
        assert_eq!(l.take(ip(1), 30_000), Ok(()));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = CreateLimiter::new(per_second(1), 1, 100);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(l.take(a, 0), Ok(()));
        assert!(l.take(b, 0).is_err(), "same /64");
        assert_eq!(l.take(other, 0), Ok(()));
        assert_eq!(l.take(ip(7), 0), Ok(()));
        assert!(l.take(IpAddr::V6(Ipv4Addr::from(0x0a00_0007).to_ipv6_mapped()), 0).is_err());
        assert_eq!(l.take(IpAddr::V6(Ipv6Addr::LOCALHOST), 0), Ok(()));
    }

    #[test]
    fn the_table_never_holds_more_than_its_capacity() {
        let l = CreateLimiter::new(per_second(1), 1, 64);
        for n in 0..10_000 {
            let _ = l.take(ip(n), u64::from(n));
            assert!(l.clients() <= 64);
        }
        assert_eq!(l.clients(), 64);
    }

    #[test]
    fn a_full_table_evicts_the_idlest_client_of_its_sample() {
        let l = CreateLimiter::new(per_second(1), 1, EVICTION_SAMPLE);
        for n in 0..8 {
            assert_eq!(l.take(ip(n), u64::from(n)), Ok(()));
        }
        // Client 0 comes back (drained, so refused): now the most recently seen.
        assert!(l.take(ip(0), 100).is_err());
        // A newcomer evicts client 1, the idlest; client 0 keeps its drained bucket.
        assert_eq!(l.take(ip(100), 200), Ok(()));
        assert_eq!(l.clients(), EVICTION_SAMPLE);
        assert!(l.take(ip(0), 300).is_err());
        assert!(!l.table.lock().unwrap().buckets.contains_key(&client_key(ip(1))));
    }
}
