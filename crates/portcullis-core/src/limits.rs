//! Rate limits on the endpoints that guess passwords, mint accounts, send
//! mail or issue tokens: per client IP and per account (email or client).
//!
//! GCRA (governor) per key, in memory: limits are per process. Behind
//! several instances each enforces its own, which still bounds a guesser.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// `count` requests per `period`, all of them usable in a burst.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    pub const fn per_second(count: u32) -> Rate {
        Rate { count, period: Duration::from_secs(1) }
    }
    pub const fn per_minute(count: u32) -> Rate {
        Rate { count, period: Duration::from_secs(60) }
    }
    pub const fn per_hour(count: u32) -> Rate {
        Rate { count, period: Duration::from_secs(3600) }
    }

    fn quota(self) -> Quota {
        let count = NonZeroU32::new(self.count).unwrap_or(NonZeroU32::MIN);
        let replenish = (self.period / count.get()).max(Duration::from_nanos(1));
        Quota::with_period(replenish).map_or_else(|| Quota::per_second(count), |q| q.allow_burst(count))
    }
}

/// What is limited, and by what key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Password logins from one IP.
    LoginIp,
    /// Password logins for one email address (on top of the lockout).
    LoginAccount,
    /// Sign-ups from one IP.
    RegisterIp,
    /// Reset and confirmation mail requests from one IP.
    ResetIp,
    /// Reset and confirmation mail for one email address.
    ResetAccount,
    /// Token-endpoint calls from one IP.
    TokenIp,
    /// Token-endpoint calls naming one client.
    TokenClient,
    /// Failed client authentications (token, introspection, revocation)
    /// from one IP.
    ClientAuthIp,
    /// Failed client authentications naming one client id.
    ClientAuthClient,
    /// Invitation-link checks (page views and answers) from one IP.
    InvitationIp,
}

/// The limits in force; `None` turns them all off (benchmarks).
#[derive(Debug, Clone)]
pub struct RateLimits {
    pub login_ip: Rate,
    pub login_account: Rate,
    pub register_ip: Rate,
    pub reset_ip: Rate,
    pub reset_account: Rate,
    pub token_ip: Rate,
    pub token_client: Rate,
    pub client_auth_ip: Rate,
    pub client_auth_client: Rate,
    pub invitation_ip: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            login_ip: Rate::per_minute(30),
            login_account: Rate::per_minute(10),
            register_ip: Rate::per_hour(20),
            reset_ip: Rate::per_hour(20),
            reset_account: Rate::per_hour(5),
            // Generous: a backend refreshing for many users sits behind one IP.
            token_ip: Rate::per_second(500),
            token_client: Rate::per_second(1000),
            // Failures only: a client with the right secret never meets these
            // unless someone is guessing its secret.
            client_auth_ip: Rate::per_minute(30),
            client_auth_client: Rate::per_minute(30),
            invitation_ip: Rate::per_minute(30),
        }
    }
}

/// Refused: try again after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryAfter(pub u64);

impl Limit {
    /// Every limit, in declaration order (so `limit as usize` indexes it).
    const ALL: [Limit; 10] = [
        Limit::LoginIp,
        Limit::LoginAccount,
        Limit::RegisterIp,
        Limit::ResetIp,
        Limit::ResetAccount,
        Limit::TokenIp,
        Limit::TokenClient,
        Limit::ClientAuthIp,
        Limit::ClientAuthClient,
        Limit::InvitationIp,
    ];
}

impl RateLimits {
    fn rate(&self, limit: Limit) -> Rate {
        match limit {
            Limit::LoginIp => self.login_ip,
            Limit::LoginAccount => self.login_account,
            Limit::RegisterIp => self.register_ip,
            Limit::ResetIp => self.reset_ip,
            Limit::ResetAccount => self.reset_account,
            Limit::TokenIp => self.token_ip,
            Limit::TokenClient => self.token_client,
            Limit::ClientAuthIp => self.client_auth_ip,
            Limit::ClientAuthClient => self.client_auth_client,
            Limit::InvitationIp => self.invitation_ip,
        }
    }
}

pub struct Limiter {
    /// One bucket set per [`Limit`], indexed by `limit as usize`.
    buckets: Option<[DefaultKeyedRateLimiter<String>; Limit::ALL.len()]>,
    /// Keys whose failure allowance is spent, until it refills: see
    /// [`Limiter::count_failure`].
    spent: std::sync::Mutex<HashMap<(Limit, String), Instant>>,
}

impl Limiter {
    pub fn new(limits: Option<&RateLimits>) -> Limiter {
        let buckets = limits.map(|l| Limit::ALL.map(|limit| RateLimiter::keyed(l.rate(limit).quota())));
        Limiter { buckets, spent: Default::default() }
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, HashMap<(Limit, String), Instant>> {
        self.spent.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses a credential check while one of these failure limits is
    /// spent. Only failures count (see [`Limiter::count_failure`]), so a
    /// caller that keeps getting it right is never slowed down, and a
    /// guesser is refused before its guess is looked at.
    pub fn check_failures(&self, checks: &[(Limit, &str)]) -> Result<(), RetryAfter> {
        if self.buckets.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let spent = self.spent();
        let wait = checks
            .iter()
            .filter_map(|(limit, key)| spent.get(&(*limit, normalized(key))))
            .filter(|until| **until > now)
            .map(|until| retry_after(*until - now))
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Counts one failed credential check against each limit. Once one is
    /// spent, this failure and every check until it refills are refused.
    pub fn count_failure(&self, checks: &[(Limit, &str)]) -> Result<(), RetryAfter> {
        let Some(buckets) = &self.buckets else { return Ok(()) };
        let mut refused = None;
        for (limit, key) in checks {
            let key = normalized(key);
            if let Err(not_until) = buckets[*limit as usize].check_key(&key) {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                self.spent().insert((*limit, key), Instant::now() + wait);
                refused = refused.max(Some(retry_after(wait)));
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// Counts one request against `limit` for `key`. Keys are compared
    /// case-insensitively (emails).
    pub fn check(&self, limit: Limit, key: &str) -> Result<(), RetryAfter> {
        let Some(buckets) = &self.buckets else { return Ok(()) };
        buckets[limit as usize]
            .check_key(&normalized(key))
            .map_err(|not_until| retry_after(not_until.wait_time_from(DefaultClock::default().now())))
    }

    /// Checks several limits; a refusal names the longest wait. Every limit
    /// is counted, so a refused request still uses up its IP's allowance.
    pub fn check_all(&self, checks: &[(Limit, &str)]) -> Result<(), RetryAfter> {
        let mut refused = None;
        for (limit, key) in checks {
            if let Err(retry) = self.check(*limit, key) {
                refused = refused.max(Some(retry));
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// Forgets keys whose allowance is full again (bounds memory).
    pub fn shrink(&self) {
        for bucket in self.buckets.iter().flatten() {
            bucket.retain_recent();
            bucket.shrink_to_fit();
        }
        let now = Instant::now();
        let mut spent = self.spent();
        spent.retain(|_, until| *until > now);
        spent.shrink_to_fit();
    }
}

fn normalized(key: &str) -> String {
    key.trim().to_lowercase()
}

/// Whole seconds to wait, rounded up, at least 1.
fn retry_after(wait: Duration) -> RetryAfter {
    RetryAfter(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(RetryAfter(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tight() -> RateLimits {
        RateLimits {
            login_ip: Rate::per_minute(2),
            login_account: Rate::per_hour(1),
            ..RateLimits::default()
        }
    }

    #[test]
    fn refuses_past_the_burst_with_a_retry_after() {
        let limiter = Limiter::new(Some(&tight()));
        assert!(limiter.check(Limit::LoginIp, "10.0.0.1").is_ok());
        assert!(limiter.check(Limit::LoginIp, "10.0.0.1").is_ok());
        let RetryAfter(wait) = limiter.check(Limit::LoginIp, "10.0.0.1").unwrap_err();
        assert!((1..=30).contains(&wait), "one token back in 30 s, got {wait}");
        // Other keys and other limits have their own allowance.
        assert!(limiter.check(Limit::LoginIp, "10.0.0.2").is_ok());
        assert!(limiter.check(Limit::TokenIp, "10.0.0.1").is_ok());
    }

    #[test]
    fn account_keys_ignore_case_and_the_worst_wait_wins() {
        let limiter = Limiter::new(Some(&tight()));
        assert!(
            limiter.check_all(&[(Limit::LoginIp, "ip"), (Limit::LoginAccount, "Ann@Example.com")]).is_ok()
        );
        let RetryAfter(wait) = limiter
            .check_all(&[(Limit::LoginIp, "ip2"), (Limit::LoginAccount, "ann@example.com ")])
            .unwrap_err();
        assert!(wait > 3000, "the hourly account limit decides, got {wait}");
    }

    #[test]
    fn every_limit_indexes_its_own_bucket() {
        for (index, limit) in Limit::ALL.into_iter().enumerate() {
            assert_eq!(limit as usize, index, "{limit:?}");
        }
    }

    #[test]
    fn only_failures_count_and_a_spent_key_is_refused_before_it_is_checked() {
        let limits = RateLimits { client_auth_client: Rate::per_minute(2), ..RateLimits::default() };
        let limiter = Limiter::new(Some(&limits));
        let checks = [(Limit::ClientAuthClient, "client-a")];
        for _ in 0..100 {
            assert!(limiter.check_failures(&checks).is_ok(), "successes never spend the allowance");
        }
        assert!(limiter.count_failure(&checks).is_ok());
        assert!(limiter.count_failure(&checks).is_ok());
        assert!(limiter.check_failures(&checks).is_ok(), "two failures are allowed");
        let RetryAfter(wait) = limiter.count_failure(&checks).unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");
        let RetryAfter(wait) = limiter.check_failures(&[(Limit::ClientAuthClient, " CLIENT-A")]).unwrap_err();
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(limiter.check_failures(&[(Limit::ClientAuthClient, "client-b")]).is_ok());
        assert!(limiter.check_failures(&[(Limit::ClientAuthIp, "client-a")]).is_ok());
        limiter.shrink();
        assert!(limiter.check_failures(&checks).is_err(), "shrinking keeps what is still spent");
    }

    #[test]
    fn no_limits_when_turned_off() {
        let limiter = Limiter::new(None);
        for _ in 0..1000 {
            assert!(limiter.check(Limit::LoginIp, "ip").is_ok());
            assert!(limiter.count_failure(&[(Limit::ClientAuthIp, "ip")]).is_ok());
            assert!(limiter.check_failures(&[(Limit::ClientAuthIp, "ip")]).is_ok());
        }
        limiter.shrink();
    }
}
