//! One rate-limit rule of `[[gateway.rate_limits]]`: which requests it covers (pool, path
//! prefix), how clients are told apart (a [`HashKey`]) and the token bucket each client gets.

use serde::{Deserialize, Serialize};

use super::algorithm::HashKey;

/// Requests per second a rule may allow at most: beyond it, limiting is not what is wanted.
pub const MAX_RATE_PER_SEC: f64 = 1_000_000.0;

/// A token bucket per client for the requests a rule covers: `burst` requests at once, then
/// `per_second` on average. The most specific rule that matches a request (its pool, the
/// longest `prefix`) is the one applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// The pool whose requests the rule covers (`api` or `chat`); empty (the default): both.
    #[serde(default)]
    pub pool: String,
    /// The path prefix of the requests the rule covers. Default `/`: every path.
    #[serde(default = "root")]
    pub prefix: String,
    /// What tells clients apart: `client_ip` (the default: the TCP peer, which a client
    /// cannot forge), `jwt_subject` (the user a valid session token names, so users behind
    /// one address each get their own allowance), `header:NAME`, `cookie:NAME` or
    /// `query:NAME`. A request without the named value, or without a valid token, is counted
    /// on its client IP.
    #[serde(default = "client_ip")]
    pub key: HashKey,
    /// Requests per second a client may send on average, more than 0.
    pub per_second: f64,
    /// Requests a client may send at once (the bucket's size), at least 1. Default: one
    /// second's worth (`per_second`, rounded up).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateLimitRule {
    /// The bucket size: `burst`, or one second's worth of requests.
    pub fn bucket_size(&self) -> u32 {
        self.burst.unwrap_or_else(|| {
            // Bounded by MAX_RATE_PER_SEC once checked, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let second = self.per_second.ceil().clamp(1.0, MAX_RATE_PER_SEC) as u32;
            second
        })
    }

    /// What is wrong with the rule, if anything.
    pub fn problem(&self) -> Option<String> {
        if !["", "api", "chat"].contains(&self.pool.as_str()) {
            return Some(format!(
                "pool `{}`: expected `api`, `chat` or none",
                self.pool
            ));
        }
        if !self.prefix.starts_with('/') {
            return Some(format!("prefix `{}` must start with `/`", self.prefix));
        }
        if !(self.per_second > 0.0 && self.per_second <= MAX_RATE_PER_SEC) {
            return Some(format!(
                "per_second {} must be more than 0 and at most {MAX_RATE_PER_SEC}",
                self.per_second
            ));
        }
        if self.burst == Some(0) {
            return Some("burst must be at least 1".to_owned());
        }
        None
    }
}

fn root() -> String {
    "/".to_owned()
}

fn client_ip() -> HashKey {
    HashKey::ClientIp
}
