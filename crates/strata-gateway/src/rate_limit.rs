//! Rate limits per client (`[[gateway.rate_limits]]`): a token bucket per (rule, client key),
//! shared by every worker thread, so a client spreading its connections over workers gets the
//! same allowance as one connection. A request a rule covers takes one token; without one it
//! is answered `429 Too Many Requests` with `Retry-After` by the gateway itself and never
//! reaches an instance (nor counts against one). Responses to covered requests carry
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds), as in the IETF
//! draft most APIs follow.
//!
//! Memory is bounded: at most [`MAX_KEYS`] buckets; when a shard is full, buckets that have
//! refilled (idle clients, which lose nothing by being forgotten) are dropped first, then any.
//! Forgetting a bucket can only give its client a fresh allowance, never take one away.
//! A reload replaces the rules and starts every bucket afresh.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::AUTHORIZATION;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use strata_core::auth::TokenKey;
use strata_core::http::{ErrorBody, ErrorDetail};

use crate::balance::hash::hash_bytes;
use crate::balance::key::{KeySource, ip_key, query};
use crate::config::{Algorithm, RateLimitRule};
use crate::proxy::ResponseBody;

/// Most buckets kept at once, over all rules: about 100 bytes each.
pub const MAX_KEYS: usize = 100_000;
/// Buckets are spread over this many locks, so workers seldom wait for each other.
const SHARDS: usize = 16;

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// A rule ready to apply.
#[derive(Debug)]
struct Rule {
    pool: String,
    prefix: String,
    key: KeySource,
    per_second: f64,
    size: f64,
}

impl Rule {
    fn covers(&self, pool: &str, path: &str) -> bool {
        (self.pool.is_empty() || self.pool == pool) && path.starts_with(&self.prefix)
    }
}

/// One client's tokens under one rule.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The rules and the buckets of every client they have seen.
#[derive(Debug)]
pub struct RateLimiter {
    rules: ArcSwap<Vec<Rule>>,
    shards: Box<[Mutex<Buckets>]>,
    /// Checks the session tokens of `jwt_subject` rules; without it they count on the IP.
    tokens: OnceLock<TokenKey>,
}

/// The buckets of one shard, by (rule index, client key).
type Buckets = HashMap<(usize, u64), Bucket>;

/// What a rule decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The bucket size.
    pub limit: u32,
    /// Whole tokens left after this request.
    pub remaining: u32,
    /// Seconds until the client may send again (refused) or its bucket is full (allowed).
    pub reset_secs: u64,
}

impl RateLimiter {
    /// A limiter applying `rules` (already validated by the configuration).
    pub fn new(rules: &[RateLimitRule]) -> Self {
        Self {
            rules: ArcSwap::from_pointee(compile(rules)),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            tokens: OnceLock::new(),
        }
    }

    /// Lets `jwt_subject` rules tell users apart by their session tokens, checked with `key`
    /// (the api's). The first key given stays.
    pub fn verify_tokens_with(&self, key: TokenKey) {
        let _ = self.tokens.set(key);
    }

    /// The key of the user a valid session token in `head` names: `Authorization: Bearer`,
    /// or the `token` query parameter (WebSocket clients cannot set headers).
    fn subject(&self, head: &Parts) -> Option<u64> {
        let tokens = self.tokens.get()?;
        let token = head
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then_some(token.trim())
            })
            .or_else(|| {
                query(&head.uri, "token").and_then(|token| std::str::from_utf8(token).ok())
            })?;
        let user = tokens.verify(token).ok()?;
        // Apart from every IP key: a user id hashes with its own prefix.
        let mut bytes = *b"sub:\0\0\0\0\0\0\0\0";
        bytes[4..].copy_from_slice(&user.id.to_le_bytes());
        Some(hash_bytes(&bytes))
    }

    /// Applies new rules; every bucket starts afresh.
    pub fn reload(&self, rules: &[RateLimitRule]) {
        self.rules.store(Arc::new(compile(rules)));
        for shard in &*self.shards {
            lock(shard).clear();
        }
    }

    /// Takes a token for a request to `pool` from the client at `ip`; `None` when no rule
    /// covers the request.
    pub fn check(&self, pool: &str, head: &Parts, ip: IpAddr) -> Option<Verdict> {
        self.check_at(pool, head, ip, Instant::now())
    }

    fn check_at(&self, pool: &str, head: &Parts, ip: IpAddr, now: Instant) -> Option<Verdict> {
        let rules = self.rules.load();
        let path = head.uri.path();
        let (index, rule) = rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.covers(pool, path))
            .max_by_key(|(_, rule)| (!rule.pool.is_empty(), rule.prefix.len()))?;
        let client = match rule.key {
            KeySource::JwtSubject => self.subject(head),
            ref source => source.key(&head.headers, &head.uri, ip),
        }
        .unwrap_or_else(|| ip_key(ip));
        let shard = &self.shards[shard_of(client)];
        let mut buckets = lock(shard);
        if buckets.len() >= MAX_KEYS / SHARDS && !buckets.contains_key(&(index, client)) {
            make_room(&mut buckets, &rules, now);
        }
        let bucket = buckets.entry((index, client)).or_insert(Bucket {
            tokens: rule.size,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rule.per_second).min(rule.size);
        bucket.at = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let wait = if allowed {
            (rule.size - bucket.tokens) / rule.per_second
        } else {
            (1.0 - bucket.tokens) / rule.per_second
        };
        Some(Verdict {
            allowed,
            limit: whole(rule.size),
            remaining: whole(bucket.tokens),
            reset_secs: ceil_secs(wait),
        })
    }
}

impl Verdict {
    /// The gateway's answer to a refused request: 429 with the JSON problem body.
    pub fn refusal(&self) -> Option<Response<ResponseBody>> {
        if self.allowed {
            return None;
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: "rate_limited".to_owned(),
                message: format!(
                    "too many requests; try again in {} s",
                    self.reset_secs.max(1)
                ),
            },
        };
        let mut response = Response::new(ResponseBody::full(
            serde_json::to_vec(&body).unwrap_or_default(),
        ));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(RETRY_AFTER, HeaderValue::from(self.reset_secs.max(1)));
        Some(response)
    }

    /// Adds the `RateLimit-*` headers to a response.
    pub fn annotate(&self, headers: &mut HeaderMap) {
        headers.insert(LIMIT, HeaderValue::from(self.limit));
        headers.insert(REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RESET, HeaderValue::from(self.reset_secs));
    }
}

fn compile(rules: &[RateLimitRule]) -> Vec<Rule> {
    rules
        .iter()
        .map(|rule| Rule {
            pool: rule.pool.clone(),
            prefix: rule.prefix.clone(),
            // The same key sources as consistent hashing, absent values falling back to the IP.
            key: KeySource::new(Algorithm::ConsistentHash, &rule.key, ""),
            per_second: rule.per_second,
            size: f64::from(rule.bucket_size()),
        })
        .collect()
}

/// Drops the buckets that have refilled; if none has, one at random (the map's order).
fn make_room(buckets: &mut Buckets, rules: &[Rule], now: Instant) {
    buckets.retain(|(index, _), bucket| {
        rules.get(*index).is_some_and(|rule| {
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            bucket.tokens + elapsed * rule.per_second < rule.size
        })
    });
    if buckets.len() >= MAX_KEYS / SHARDS
        && let Some(key) = buckets.keys().next().copied()
    {
        buckets.remove(&key);
    }
}

fn shard_of(client: u64) -> usize {
    // The key is a well-mixed hash: its top bits pick the shard.
    usize::try_from(client >> 60).unwrap_or(0) % SHARDS
}

/// Open connections per client IP address on the public listener, against
/// `gateway.max_connections_per_ip` (changed by a reload; connections already open stay).
#[derive(Debug)]
pub struct ConnectionCap {
    cap: AtomicUsize,
    shards: Box<[Mutex<HashMap<IpAddr, usize>>]>,
}

/// One open connection counted against its address; dropping it (the connection ended)
/// gives the slot back.
#[derive(Debug)]
pub struct ConnectionSlot {
    cap: Arc<ConnectionCap>,
    ip: IpAddr,
}

impl ConnectionCap {
    /// At most `cap` connections per address; 0: no cap.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: AtomicUsize::new(cap),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Changes the cap for connections accepted from now on.
    pub fn set(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    /// Counts a new connection from `ip`; `None` when the address already holds its cap.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let cap = self.cap.load(Ordering::Relaxed);
        let mut open = lock(self.shard(ip));
        let count = open.entry(ip).or_insert(0);
        if cap != 0 && *count >= cap {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            cap: Arc::clone(self),
            ip,
        })
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        lock(self.shard(ip)).get(&ip).copied().unwrap_or(0)
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        &self.shards[shard_of(ip_key(ip))]
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = lock(self.cap.shard(self.ip));
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The answer on a connection beyond its address's cap: 429, and the connection closes.
pub fn too_many_connections() -> Response<ResponseBody> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "too_many_connections".to_owned(),
            message: "too many connections from this address".to_owned(),
        },
    };
    let mut response = Response::new(ResponseBody::full(
        serde_json::to_vec(&body).unwrap_or_default(),
    ));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Seconds, rounded up (a client told 0 would come back before its token).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn ceil_secs(seconds: f64) -> u64 {
    seconds.ceil().clamp(0.0, f64::from(u32::MAX)) as u64
}

/// A count of tokens as a whole number (bounded by the bucket size, a `u32`).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn whole(tokens: f64) -> u32 {
    tokens.floor().clamp(0.0, f64::from(u32::MAX)) as u32
}

/// A poisoned lock only means a thread panicked while holding it; the map is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rule(prefix: &str, per_second: f64, burst: u32) -> RateLimitRule {
        RateLimitRule {
            pool: String::new(),
            prefix: prefix.to_owned(),
            key: crate::config::HashKey::ClientIp,
            per_second,
            burst: Some(burst),
        }
    }

    fn head(path: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder().uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let limiter = RateLimiter::new(&[rule("/", 10.0, 5)]);
        let start = Instant::now();
        let get = head("/x", &[]);
        let allowed = (0..20)
            .filter(|_| limiter.check_at("api", &get, A, start).unwrap().allowed)
            .count();
        assert_eq!(allowed, 5, "the burst, then nothing at the same instant");
        let refused = limiter.check_at("api", &get, A, start).unwrap();
        assert_eq!(
            (refused.allowed, refused.remaining, refused.reset_secs),
            (false, 0, 1)
        );
        assert!(limiter.check_at("api", &get, B, start).unwrap().allowed);
        // One second later: ten more tokens, but never more than the bucket holds.
        let later = start + Duration::from_secs(1);
        let allowed = (0..20)
            .filter(|_| limiter.check_at("api", &get, A, later).unwrap().allowed)
            .count();
        assert_eq!(allowed, 5);
        // Over ten seconds at three times the rate: the rate, plus the burst at first.
        let limiter = RateLimiter::new(&[rule("/", 10.0, 5)]);
        let mut allowed = 0;
        for i in 0..300 {
            let at = start + Duration::from_millis(i * 1000 / 30);
            allowed += usize::from(limiter.check_at("api", &get, A, at).unwrap().allowed);
        }
        assert!((100..=106).contains(&allowed), "{allowed}");
    }

    #[test]
    fn the_most_specific_rule_applies_and_uncovered_requests_pass() {
        let limiter = RateLimiter::new(&[
            rule("/", 100.0, 100),
            rule("/api/v1/auth/", 1.0, 1),
            RateLimitRule {
                pool: "chat".to_owned(),
                ..rule("/api/v1/chat/", 1.0, 2)
            },
        ]);
        let now = Instant::now();
        let login = head("/api/v1/auth/login", &[]);
        assert!(limiter.check_at("api", &login, A, now).unwrap().allowed);
        assert!(!limiter.check_at("api", &login, A, now).unwrap().allowed);
        // Other paths have their own, larger bucket.
        let products = head("/api/v1/products", &[]);
        let verdict = limiter.check_at("api", &products, A, now).unwrap();
        assert_eq!((verdict.allowed, verdict.limit), (true, 100));
        let chat = head("/api/v1/chat/rooms", &[]);
        assert_eq!(limiter.check_at("chat", &chat, A, now).unwrap().limit, 2);
        let none = RateLimiter::new(&[]);
        assert_eq!(none.check_at("api", &products, A, now), None);
        let only_chat = RateLimiter::new(&[RateLimitRule {
            pool: "chat".to_owned(),
            ..rule("/", 1.0, 1)
        }]);
        assert_eq!(only_chat.check_at("api", &products, A, now), None);
    }

    #[test]
    fn a_header_key_tells_clients_apart_behind_one_address() {
        let limiter = RateLimiter::new(&[RateLimitRule {
            key: "header:x-api-key".parse().unwrap(),
            ..rule("/", 1.0, 1)
        }]);
        let now = Instant::now();
        let one = head("/", &[("x-api-key", "one")]);
        let two = head("/", &[("x-api-key", "two")]);
        assert!(limiter.check_at("api", &one, A, now).unwrap().allowed);
        assert!(!limiter.check_at("api", &one, B, now).unwrap().allowed);
        assert!(limiter.check_at("api", &two, A, now).unwrap().allowed);
        // Without the header, the client IP is the key.
        assert!(
            limiter
                .check_at("api", &head("/", &[]), A, now)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn connections_are_capped_per_address_and_slots_come_back() {
        let cap = Arc::new(ConnectionCap::new(2));
        let first = cap.enter(A).unwrap();
        let _second = cap.enter(A).unwrap();
        assert!(cap.enter(A).is_none(), "a third connection from A");
        let _other = cap.enter(B).expect("B has its own count");
        drop(first);
        let _third = cap.enter(A).expect("a slot came back");
        assert_eq!(cap.open(A), 2);
        cap.set(0);
        let more: Vec<_> = (0..10).map(|_| cap.enter(A).unwrap()).collect();
        assert_eq!(cap.open(A), 12);
        drop(more);
        assert_eq!(cap.open(A), 2);
        let response = too_many_connections();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[CONNECTION], "close");
    }

    #[test]
    fn buckets_stay_bounded_and_refusals_carry_their_headers() {
        let limiter = RateLimiter::new(&[rule("/", 1.0, 1)]);
        let now = Instant::now();
        let get = head("/", &[]);
        for i in 0..(MAX_KEYS as u32 + 5_000) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i));
            limiter.check_at("api", &get, ip, now);
        }
        let kept: usize = limiter.shards.iter().map(|s| lock(s).len()).sum();
        assert!(kept <= MAX_KEYS, "{kept}");
        let refused = Verdict {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_secs: 3,
        };
        let mut response = refused.refusal().unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        refused.annotate(response.headers_mut());
        let headers = response.headers();
        assert_eq!(headers[RETRY_AFTER], "3");
        assert_eq!(headers["ratelimit-limit"], "5");
        assert_eq!(headers["ratelimit-remaining"], "0");
        assert_eq!(headers["ratelimit-reset"], "3");
        assert!(
            Verdict {
                allowed: true,
                ..refused
            }
            .refusal()
            .is_none()
        );
    }
}
