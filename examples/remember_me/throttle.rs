//! The login throttle: failed logins per account and per client, the pattern to copy.
//!
//! Each account (the user name as typed, known or not, so a 429 tells nothing about which
//! names exist) and each client (its IP address; IPv6: its /64) may fail
//! [`Budget::failures`] times per [`Budget::window`]. The failure that spends the last of
//! either budget locks that account or client: from the next attempt on, every attempt, **the
//! right password too**, is answered 429 with `Retry-After`, without the password being
//! looked at, until the budget has one failure again (`window / failures` later). Answering
//! a right password during the lock would tell the attacker which guess was right.
//!
//! The counting is [`governor`]'s GCRA (a keyed rate limiter with `failures` as its burst,
//! refilled at `failures` per `window`): a client that keeps failing gets one more try every
//! `window / failures`, never a fresh burst. A successful login costs nothing, so load
//! generators and people with many devices are never throttled. governor cannot look without
//! taking, so the lock itself (until when an exhausted key waits) is a small map of its own.
//!
//! Create **one** throttle per process and share it (`web::Data`) between actix-web's
//! workers: one per worker multiplies the budgets by the number of workers. On several
//! instances, each counts its own failures; a shared store (Redis) would make the budget
//! global. Memory stays bounded: a key is a 16-byte digest or an address, and the idle ones
//! are dropped every [`SWEEP_EVERY`] failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// The failures allowed in a window.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Failed logins allowed at once.
    pub failures: NonZeroU32,
    /// The window in which they refill, one every `window / failures`.
    pub window: Duration,
}

impl Budget {
    const fn new(failures: u32, window: Duration) -> Self {
        let Some(failures) = NonZeroU32::new(failures) else { panic!("a budget allows at least one failure") };
        Self { failures, window }
    }

    fn quota(self) -> Quota {
        let period = (self.window / self.failures.get()).max(Duration::from_nanos(1));
        Quota::with_period(period).expect("a non-zero period").allow_burst(self.failures)
    }
}

/// 5 wrong passwords per account in 15 minutes (then one every 3 minutes).
pub const ACCOUNT_BUDGET: Budget = Budget::new(5, Duration::from_secs(15 * 60));
/// 20 wrong passwords per client address in 15 minutes (then one every 45 seconds): more
/// than an account's, since one address may be many people (an office, a mobile carrier).
pub const CLIENT_BUDGET: Budget = Budget::new(20, Duration::from_secs(15 * 60));

/// Idle keys are dropped (and expired locks forgotten) every this many failures.
pub const SWEEP_EVERY: u64 = 1024;

/// The throttle's time: a monotonic clock, or governor's fake clock for tests.
#[derive(Debug, Clone)]
pub struct ThrottleClock {
    start: Instant,
    fake: Option<FakeRelativeClock>,
}

impl ThrottleClock {
    /// Real time.
    pub fn monotonic() -> Self {
        Self { start: Instant::now(), fake: None }
    }

    /// Time that moves only when `fake` is advanced.
    #[allow(dead_code, reason = "for tests; the demo runs on real time")]
    pub fn fake(fake: FakeRelativeClock) -> Self {
        Self { start: Instant::now(), fake: Some(fake) }
    }
}

impl Clock for ThrottleClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match &self.fake {
            Some(fake) => fake.now(),
            None => Nanos::from(self.start.elapsed()),
        }
    }
}

type Limiter<K> = RateLimiter<K, DashMapStateStore<K>, ThrottleClock, StateInformationMiddleware>;

/// What the lock map holds: an account (a digest of its name) or a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Account([u8; 16]),
    Client(IpAddr),
}

/// Failed logins per account and per client; see the module docs.
#[derive(Debug)]
pub struct LoginThrottle {
    accounts: Limiter<[u8; 16]>,
    clients: Limiter<IpAddr>,
    /// Until when each locked key waits.
    locked: Mutex<HashMap<Key, Nanos>>,
    clock: ThrottleClock,
    /// How long one failure takes to refill: an account's, a client's.
    periods: (Nanos, Nanos),
    failures: AtomicU64,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ACCOUNT_BUDGET, CLIENT_BUDGET, ThrottleClock::monotonic())
    }
}

/// An account's key: a digest, so a megabyte of user name costs 16 bytes.
fn account(name: &str) -> [u8; 16] {
    let mut key = [0; 16];
    key.copy_from_slice(&blake3::hash(name.as_bytes()).as_bytes()[..16]);
    key
}

impl LoginThrottle {
    /// A throttle with these budgets on `clock`.
    pub fn new(account: Budget, client: Budget, clock: ThrottleClock) -> Self {
        Self {
            accounts: RateLimiter::dashmap_with_clock(account.quota(), clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
            clients: RateLimiter::dashmap_with_clock(client.quota(), clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
            locked: Mutex::new(HashMap::new()),
            clock,
            periods: (account.quota().replenish_interval().into(), client.quota().replenish_interval().into()),
            failures: AtomicU64::new(0),
        }
    }

    fn locks(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Nanos>> {
        self.locked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Before the password is looked at: `Err(wait)` while the account or the client is locked.
    pub fn check(&self, name: &str, client: IpAddr) -> Result<(), Duration> {
        let now = self.clock.now();
        let locks = self.locks();
        let wait = [Key::Account(account(name)), Key::Client(client)]
            .iter()
            .filter_map(|key| locks.get(key))
            .map(|until| Duration::from(until.saturating_sub(now)))
            .max()
            .unwrap_or_default();
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// A wrong password for `name` from `client`: counts it against both budgets, and locks
    /// whichever it spends. `Err(wait)` when this failure was already past a budget (two
    /// attempts raced past [`check`](Self::check)): answer it 429 too.
    pub fn failed(&self, name: &str, client: IpAddr) -> Result<(), Duration> {
        if self.failures.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let now = self.clock.now();
        let by_account = self.accounts.check_key(&account(name));
        let by_client = self.clients.check_key(&client);
        let mut locks = self.locks();
        let mut refused = Duration::ZERO;
        for (key, outcome, period) in [
            (Key::Account(account(name)), by_account, self.periods.0),
            (Key::Client(client), by_client, self.periods.1),
        ] {
            let until = match outcome {
                // The last failure this budget had: locked until the next one refills.
                Ok(state) if state.remaining_burst_capacity() == 0 => now + period,
                Ok(_) => continue,
                Err(not_until) => {
                    let until = not_until.earliest_possible();
                    refused = refused.max(Duration::from(until.saturating_sub(now)));
                    until
                }
            };
            let entry = locks.entry(key).or_insert(until);
            *entry = (*entry).max(until);
        }
        if refused.is_zero() { Ok(()) } else { Err(refused) }
    }

    /// Drops idle keys and expired locks.
    fn sweep(&self) {
        self.accounts.retain_recent();
        self.clients.retain_recent();
        let now = self.clock.now();
        self.locks().retain(|_, until| *until > now);
    }
}

/// The client of `req` for the throttle: the connection's peer, or with `trust_forwarded_for`
/// the rightmost `X-Forwarded-For` hop, as the session middleware's `create_rate` counts
/// it. An IPv6 address stands for its /64 (one host has them all). Unknown (an in-process
/// test request): the unspecified address, one budget for all such requests.
pub fn client_of(req: &HttpRequest, trust_forwarded_for: bool) -> IpAddr {
    let forwarded = || {
        let last = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).last()?;
        last.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
    };
    let ip = if trust_forwarded_for { forwarded() } else { None }
        .or_else(|| req.peer_addr().map(|a| a.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn throttle(account: u32, client: u32) -> (LoginThrottle, FakeRelativeClock) {
        let fake = FakeRelativeClock::default();
        let t = LoginThrottle::new(
            Budget::new(account, HOUR),
            Budget::new(client, HOUR),
            ThrottleClock::fake(fake.clone()),
        );
        (t, fake)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn an_account_is_locked_by_the_failure_that_spends_its_budget_until_one_refills() {
        let (t, clock) = throttle(3, 100);
        for i in 0..3 {
            assert_eq!(t.check("alice", ip(i)), Ok(()), "failure {i}");
            assert_eq!(t.failed("alice", ip(i)), Ok(()));
        }
        // From every address, and whatever the password: one failure refills in an hour / 3.
        assert_eq!(t.check("alice", ip(9)), Err(Duration::from_secs(1200)));
        assert_eq!(t.check("bob", ip(9)), Ok(()), "other accounts are not locked");
        clock.advance(Duration::from_secs(1199));
        assert_eq!(t.check("alice", ip(9)), Err(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(t.check("alice", ip(9)), Ok(()));
        // One more failure, not a new burst.
        assert_eq!(t.failed("alice", ip(9)), Ok(()));
        assert_eq!(t.check("alice", ip(9)), Err(Duration::from_secs(1200)));
    }

    #[test]
    fn a_client_is_locked_for_every_account_and_raced_failures_are_refused() {
        let (t, _clock) = throttle(100, 2);
        assert_eq!(t.failed("a", ip(1)), Ok(()));
        assert_eq!(t.failed("b", ip(1)), Ok(()));
        assert_eq!(t.check("c", ip(1)), Err(Duration::from_secs(1800)));
        assert_eq!(t.check("c", ip(2)), Ok(()), "other clients are not locked");
        // A failure that got past `check` before the lock (a race) is refused itself.
        assert_eq!(t.failed("d", ip(1)), Err(Duration::from_secs(1800)));
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let req = |peer: &str| {
            actix_web::test::TestRequest::default()
                .peer_addr(format!("[{peer}]:1234").parse().unwrap())
                .to_http_request()
        };
        let a = client_of(&req("2001:db8:1:2:aaaa::1"), false);
        assert_eq!(a, client_of(&req("2001:db8:1:2:bbbb::9"), false));
        assert_ne!(a, client_of(&req("2001:db8:1:3::1"), false));
        let forwarded = actix_web::test::TestRequest::default()
            .peer_addr("10.0.0.1:1".parse().unwrap())
            .insert_header(("x-forwarded-for", "203.0.113.1, 198.51.100.7"))
            .to_http_request();
        assert_eq!(client_of(&forwarded, true), IpAddr::from([198, 51, 100, 7]));
        assert_eq!(client_of(&forwarded, false), IpAddr::from([10, 0, 0, 1]));
    }
}
