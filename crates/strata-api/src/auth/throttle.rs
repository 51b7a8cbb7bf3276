//! [`LoginThrottle`]: slows down password guessing by counting failed log-ins per email and
//! per client IP in the shared cache.
//!
//! Per email, every attempt is counted *before* the password is checked
//! (`auth:fail:email:<email>`, a fixed-window counter incremented with `Cache::incr`, atomic
//! on every backend) and a successful log-in clears the count; so at most
//! `max_failures_per_email` passwords are ever tried per window, even when a client fires its
//! guesses all at once. Per client IP, failures are counted after the fact
//! (`auth:fail:ip:<ip>`), so that many people logging in successfully from behind one
//! address never lock each other out. A locked email or IP is answered 429 without checking
//! the password, until the window that began with its first counted attempt ends.
//!
//! The counters live in the cache, so they hold across instances exactly as far as the cache
//! is shared: every instance of `strata up` shares one memory cache, every process of a
//! scaled-out deployment shares Redis (a `strata serve api` with a memory cache counts per
//! process). When the cache fails, log-ins are not throttled (and the failure is logged): the
//! cache is a hint, and an outage must not lock every customer out.
//!
//! The client IP is the last address in `X-Forwarded-For` (the one the gateway appended: the
//! peer it saw), else the TCP peer. An api reachable without the gateway would let a client
//! choose its own "IP" through that header; the per-email counter does not depend on it.

use std::net::IpAddr;
use std::time::Duration;

use strata_cache::{AnyCache, Cache};

use crate::ApiError;
use crate::auth::Email;

/// Limits of the log-in throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failed log-ins for one email within `window` after which it is locked until the
    /// window ends. Default 5: enough for typos, far too few for guessing.
    pub max_failures_per_email: u64,
    /// Failed log-ins from one client IP within `window` after which it is locked. Default 50:
    /// higher than per email, as offices and mobile carriers put many people behind one
    /// address; still stops one client from spraying guesses over many emails.
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

    /// Counts a log-in attempt for `email` and refuses it when the email or the IP has used
    /// up its failures.
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
            return Err(locked);
        }
        if let Some(email) = email
            && self.incr(&Self::email_key(email)).await > self.settings.max_failures_per_email
        {
            return Err(locked);
        }
        Ok(())
    }

    /// Counts a failed attempt against the client IP.
    pub async fn failed(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.incr(&Self::ip_key(ip)).await;
        }
    }

    /// Forgets the email's attempts after a successful log-in.
    pub async fn succeeded(&self, email: &Email) {
        if let Err(e) = self.cache.delete(&Self::email_key(email)).await {
            tracing::warn!(error = %e, "cannot clear a log-in attempt counter");
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
                tracing::warn!(error = %e, "cannot read a log-in failure counter; not throttling");
                0
            }
        }
    }

    /// The new count; 0 (never throttled) when the cache fails.
    async fn incr(&self, key: &str) -> u64 {
        match self.cache.incr(key, self.settings.window).await {
            Ok(count) => count,
            Err(e) => {
                tracing::warn!(error = %e, "cannot count a log-in attempt; not throttling");
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

    #[tokio::test]
    async fn the_limit_locks_the_email_until_a_success() {
        let cache = AnyCache::from_url("memory", "t").await.unwrap();
        let throttle = LoginThrottle::new(
            cache,
            ThrottleSettings {
                max_failures_per_email: 2,
                max_failures_per_ip: 3,
                window: Duration::from_secs(60),
            },
        );
        let ann: Email = "ann@example.com".parse().unwrap();
        let bob: Email = "bob@example.com".parse().unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..2 {
            throttle.attempt(Some(&ann), Some(ip)).await.unwrap();
            throttle.failed(Some(ip)).await;
        }
        assert!(matches!(
            throttle.attempt(Some(&ann), None).await,
            Err(ApiError::TooManyAttempts { .. })
        ));
        // Another email from the same IP still may, until the IP's own limit.
        throttle.attempt(Some(&bob), Some(ip)).await.unwrap();
        throttle.failed(Some(ip)).await;
        assert!(throttle.attempt(Some(&bob), Some(ip)).await.is_err());
        assert!(throttle.attempt(Some(&bob), None).await.is_ok());
        throttle.succeeded(&ann).await;
        throttle.attempt(Some(&ann), None).await.unwrap();
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
