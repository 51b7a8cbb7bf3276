//! [`LoginThrottle`]: slows down password guessing by counting failed log-ins per account,
//! per (client address, account) pair and per client address in the shared cache, so that
//! guessing is throttled while a shared address (an office, a mobile carrier's NAT) is not a
//! denial of service for the people behind it.
//!
//! - **Per account** (`auth:fail:email:<email>`): every attempt is counted *before* the
//!   password is checked (a fixed-window counter incremented with `Cache::incr`, atomic on
//!   every backend) and a successful log-in clears the count; so at most
//!   `max_failures_per_email` passwords are ever tried per window on one account, from
//!   wherever, even when a client fires its guesses all at once.
//! - **Per address and account** (`auth:fail:pair:<ip>:<email>`): failures from one address
//!   on one account, cleared by that account's success. A pair with failures is a *failing
//!   pair*.
//! - **Per address** (`auth:fail:ip:<ip>`): failures from one address on any account. Past
//!   `max_failures_per_ip`, the address is refused, but only for its failing pairs (and
//!   for emails that cannot be an account's): someone behind the address who has not
//!   failed on their own account still logs in, while a client spraying guesses over many
//!   accounts gets at most one per account per window.
//!
//! A refused attempt is answered 429 without checking the password, until the window that
//! began with its counter's first count ends.
//!
//! The counters live in the cache, so they hold across instances exactly as far as the cache
//! is shared: every instance of `strata up` shares one memory cache, every process of a
//! scaled-out deployment shares Redis (a `strata serve api` with a memory cache counts per
//! process). When the cache fails, log-ins are not throttled (and the failure is logged): the
//! cache is a hint, and an outage must not lock every customer out.
//!
//! The client IP is the last address in `X-Forwarded-For` (the one the gateway appended: the
//! peer it saw), else the TCP peer. An api reachable without the gateway would let a client
//! choose its own "IP" through that header; the per-account counter does not depend on it.

use std::net::IpAddr;
use std::time::Duration;

use strata_cache::{AnyCache, Cache};

use crate::ApiError;
use crate::auth::Email;

/// Limits of the log-in throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Log-in attempts for one account within `window` (a success clears them) after which it
    /// is locked until the window ends. Default 5: enough for typos, far too few for guessing.
    pub max_failures_per_email: u64,
    /// Failed log-ins from one client IP within `window` after which the IP is refused on the
    /// accounts it failed on (see the module docs). Default 50: ten accounts' worth of typos,
    /// so that one client spraying guesses over many accounts is soon down to one guess per
    /// account, while the others behind its address, who have not failed, are never refused.
    pub max_failures_per_ip: u64,
    /// The counting window, from the first failure. Default 15 minutes.
    pub window: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            max_failures_per_email: 5,
            max_failures_per_ip: 50,
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Counts failed log-ins in the cache (see the module docs).
#[derive(Clone)]
pub struct LoginThrottle {
    cache: AnyCache,
    settings: ThrottleSettings,
}

impl LoginThrottle {
    /// A throttle keeping its counters in `cache`.
    pub fn new(cache: AnyCache, settings: ThrottleSettings) -> Self {
        Self { cache, settings }
    }

    fn email_key(email: &Email) -> String {
        format!("auth:fail:email:{email}")
    }

    fn ip_key(ip: IpAddr) -> String {
        format!("auth:fail:ip:{ip}")
    }

    fn pair_key(ip: IpAddr, email: &Email) -> String {
        format!("auth:fail:pair:{ip}:{email}")
    }

    /// Counts a log-in attempt for `email` and refuses it when the account has used up its
    /// attempts, or when the address has used up its failures and this is one of its failing
    /// pairs (or no account's email).
    ///
    /// # Errors
    /// [`ApiError::TooManyAttempts`] with the window as `Retry-After` (the exact remainder is
    /// not kept; the window is an upper bound).
    pub async fn attempt(&self, email: Option<&Email>, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let locked = ApiError::TooManyAttempts {
            retry_after: self.settings.window,
        };
        if let Some(ip) = ip
            && self.count(&Self::ip_key(ip)).await >= self.settings.max_failures_per_ip
        {
            let failing_pair = match email {
                Some(email) => self.count(&Self::pair_key(ip, email)).await > 0,
                None => true,
            };
            if failing_pair {
                return Err(locked);
            }
        }
        if let Some(email) = email
            && self.incr(&Self::email_key(email)).await > self.settings.max_failures_per_email
        {
            return Err(locked);
        }
        Ok(())
    }

    /// Counts a failed attempt against the client IP and its pair with `email`.
    pub async fn failed(&self, email: Option<&Email>, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.incr(&Self::ip_key(ip)).await;
            if let Some(email) = email {
                self.incr(&Self::pair_key(ip, email)).await;
            }
        }
    }

    /// Forgets the account's attempts, and its pair's failures, after a successful log-in.
    pub async fn succeeded(&self, email: &Email, ip: Option<IpAddr>) {
        let pair = ip.map(|ip| Self::pair_key(ip, email));
        for key in std::iter::once(Self::email_key(email)).chain(pair) {
            if let Err(e) = self.cache.delete(&key).await {
                crate::cache_aside::cache_failed(&e, None, "cannot clear a log-in attempt counter");
            }
        }
    }

    async fn count(&self, key: &str) -> u64 {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            Ok(None) => 0,
            Err(e) => {
                crate::cache_aside::cache_failed(
                    &e,
                    None,
                    "cannot read a log-in failure counter; not throttling",
                );
                0
            }
        }
    }

    /// The new count; 0 (never throttled) when the cache fails.
    async fn incr(&self, key: &str) -> u64 {
        match self.cache.incr(key, self.settings.window).await {
            Ok(count) => count,
            Err(e) => {
                crate::cache_aside::cache_failed(
                    &e,
                    None,
                    "cannot count a log-in attempt; not throttling",
                );
                0
            }
        }
    }
}

/// The client's IP: the last `X-Forwarded-For` entry, else the TCP peer (see the module docs).
pub fn client_ip(headers: &axum::http::HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .next_back();
    forwarded.or(peer)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn throttle(cache: AnyCache) -> LoginThrottle {
        LoginThrottle::new(
            cache,
            ThrottleSettings {
                max_failures_per_email: 2,
                max_failures_per_ip: 3,
                window: Duration::from_secs(60),
            },
        )
    }

    #[tokio::test]
    async fn the_limit_locks_the_email_until_a_success() {
        let throttle = throttle(AnyCache::from_url("memory", "t").await.unwrap());
        let ann: Email = "ann@example.com".parse().unwrap();
        let bob: Email = "bob@example.com".parse().unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..2 {
            throttle.attempt(Some(&ann), Some(ip)).await.unwrap();
            throttle.failed(Some(&ann), Some(ip)).await;
        }
        // From any address: guessing one account's password is throttled per account.
        for from in [None, Some(ip), Some("10.9.9.9".parse().unwrap())] {
            assert!(matches!(
                throttle.attempt(Some(&ann), from).await,
                Err(ApiError::TooManyAttempts { .. })
            ));
        }
        // Another email from the same IP still may.
        throttle.attempt(Some(&bob), Some(ip)).await.unwrap();
        throttle.succeeded(&bob, Some(ip)).await;
        throttle.succeeded(&ann, Some(ip)).await;
        throttle.attempt(Some(&ann), None).await.unwrap();
    }

    #[tokio::test]
    async fn a_spraying_address_is_refused_only_on_its_failing_pairs() {
        let throttle = throttle(AnyCache::from_url("memory", "t").await.unwrap());
        let shared: IpAddr = "10.0.0.1".parse().unwrap();
        let victims: Vec<Email> = (0..4)
            .map(|i| format!("v{i}@example.com").parse().unwrap())
            .collect();
        // One guess each on three accounts: the address reaches its limit.
        for victim in &victims[..3] {
            throttle.attempt(Some(victim), Some(shared)).await.unwrap();
            throttle.failed(Some(victim), Some(shared)).await;
        }
        // A second guess on an account it failed on is refused, and so is a non-email.
        assert!(
            throttle
                .attempt(Some(&victims[0]), Some(shared))
                .await
                .is_err()
        );
        assert!(throttle.attempt(None, Some(shared)).await.is_err());
        // Someone else behind the address, who has not failed, logs in.
        let colleague: Email = "colleague@example.com".parse().unwrap();
        throttle
            .attempt(Some(&colleague), Some(shared))
            .await
            .unwrap();
        throttle.succeeded(&colleague, Some(shared)).await;
        throttle
            .attempt(Some(&colleague), Some(shared))
            .await
            .unwrap();
        // The failing account is not refused from another address (it has attempts left).
        let elsewhere: IpAddr = "10.0.0.2".parse().unwrap();
        throttle
            .attempt(Some(&victims[0]), Some(elsewhere))
            .await
            .unwrap();
    }

    #[test]
    fn the_gateways_forwarded_address_wins() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(client_ip(&headers, Some(peer)), Some(peer));
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("3.3.3.3"));
        assert_eq!(client_ip(&headers, Some(peer)), "3.3.3.3".parse().ok());
        let mut junk = HeaderMap::new();
        junk.append("x-forwarded-for", HeaderValue::from_static("nonsense"));
        assert_eq!(client_ip(&junk, Some(peer)), Some(peer));
    }
}
