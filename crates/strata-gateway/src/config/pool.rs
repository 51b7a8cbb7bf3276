//! A pool's configuration: its instances ([`PoolConfig`]), how it balances ([`PoolSettings`])
//! and how its instances' health is judged ([`HealthConfig`]).

use serde::{Deserialize, Serialize};
use strata_core::config::{Checks, parse};
use strata_core::config_section;

use super::algorithm::{Algorithm, HashKey, is_token};
use super::{CompressionConfig, UpstreamProtocol};

/// One pool of interchangeable instances behind the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name: `api` or `chat` (which requests go to each is for `gateway.routes` to say).
    pub name: String,
    /// Base URLs of the instances, `http://host:port`, optionally with the instance's weight and
    /// in-flight limit as query parameters: `http://host:port?weight=5&max_in_flight=100`
    /// (see [`parse_instance_url`](super::parse_instance_url)).
    pub instances: Vec<String>,
}

impl PoolConfig {
    /// A pool named `name` with the instances at `instances` (base URLs).
    pub fn new(name: impl Into<String>, instances: Vec<String>) -> Self {
        Self {
            name: name.into(),
            instances,
        }
    }
}

config_section! {
    /// How one pool spreads requests and decides which instances may take them.
    ///
    /// `Default` is the `api` pool's setting; [`PoolSettings::chat`] the `chat` pool's. Every
    /// field may be set alone (file, `STRATA_GATEWAY_<POOL>_<KEY>`, flag
    /// `gateway.<pool>.<key>`); the others keep their defaults. A reload applies all of them.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct PoolSettings {
        /// The balancing algorithm: `round_robin`, `weighted_round_robin`, `random`,
        /// `weighted_random`, `least_connections`, `power_of_two`, `consistent_hash` or
        /// `sticky`. Default `round_robin` for api (stateless instances, even spread at the
        /// lowest cost); `consistent_hash` for chat (a room must stay on one instance).
        live algorithm: Algorithm = Algorithm::RoundRobin,
        /// Where `consistent_hash` reads its key: `cookie:NAME`, `header:NAME`, `query:NAME` or
        /// `client_ip`. A request without the key is hashed on its client IP. Default
        /// `client_ip` for api (it has no natural key), `query:room` for chat (the WebSocket is
        /// `/api/v1/chat/ws?room=…`).
        live hash_key: HashKey = HashKey::ClientIp;
            check |key| *key != HashKey::JwtSubject,
            "`jwt_subject` keys rate limits only: a hash ring needs a key it can read without the token's secret",
        /// Bounded load of `consistent_hash`, at least 1.0: an instance takes a request only
        /// while its in-flight count is below `ceil((total in flight + 1) × factor /
        /// instances)`, otherwise the key moves clockwise to the next instance. Default 1.25: no
        /// instance carries more than 25 % above the average, while keys stay on their
        /// instance in normal operation (HAProxy's `hash-balance-factor` and Google's
        /// "consistent hashing with bounded loads"). 0 turns bounded load off: a key leaves
        /// its instance only when that instance is not available (the api pool in local cart
        /// mode, whose instances hold their carts).
        live balance_factor: f64 = 1.25;
            check |f| *f == 0.0 || (f.is_finite() && *f >= 1.0), "must be 0 (off) or a number of at least 1.0",
        /// Cookie that pins a client to an instance under `sticky`. Default `strata_affinity`:
        /// prefixed, so it cannot collide with the shop's own cookies.
        live sticky_cookie: String = "strata_affinity".into() => parse::trimmed;
            check |name| is_token(name),
            "expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)",
        /// When every instance is out by its health (down or ejected), send to them anyway
        /// instead of answering 503 (draining instances and in-flight limits still hold).
        /// Default true: checks that fail on every instance at once mostly share a cause that
        /// does not stop the instances from serving (a slow database behind `/readyz`, a
        /// loaded machine), and a dead instance refuses a connection within a millisecond;
        /// false answers 503 `no_healthy_instance` with `Retry-After` at once.
        live fail_open: bool = true,
        /// How the gateway talks to the pool's instances: `h2c` (HTTP/2 over cleartext with
        /// prior knowledge: requests multiplexed as streams on a few connections per worker,
        /// none waiting for another; the frames of requests that arrive together leave in one
        /// write) or `http1` (HTTP/1.1 keep-alive connections, one request at a time each,
        /// unless `pipeline_depth` is above 1). WebSocket upgrades always go over HTTP/1.1,
        /// on a connection of their own, whatever this says. Default `h2c` for both pools:
        /// strata's api and chat instances accept it, and it needs neither a connection per
        /// request in flight nor pipelining's head-of-line blocking. Set `http1` for instances
        /// that only speak HTTP/1.1.
        live upstream_protocol: UpstreamProtocol = UpstreamProtocol::H2c,
        /// Most safe requests to one instance that share a connection and one write when they
        /// reach the gateway together over `http1` (HTTP/1.1 pipelining): only `GET`, `HEAD`
        /// and `OPTIONS` without a streamed body, never one behind another still waiting. 1 to
        /// 256; 1 (the default) turns it off. Its risk: a quick request batched behind a slow
        /// one waits for it (head-of-line blocking), and some servers mishandle pipelined
        /// requests; `h2c` multiplexes without either. Ignored by `h2c` pools.
        live pipeline_depth: usize = 1;
            check |depth| (1..=256).contains(depth), "must be between 1 (no pipelining) and 256",
        /// Path prefixes of the instances' operational endpoints, which the public listener
        /// answers 404 without forwarding: a prefix matches the path itself and what lies
        /// below it (`/metrics` and `/metrics/x`, not `/metricsx`), compared after decoding
        /// percent-escapes and resolving dot segments. In a variable or flag, separated by
        /// commas. The gateway's own health checks and Prometheus reach the instances
        /// directly. Default `/metrics`, `/healthz`, `/readyz`: every strata process serves
        /// them, and per-route request counts and readiness details are nobody's business
        /// outside; and `/internal`, where api instances hand local carts to each other.
        live internal_paths: Vec<String> = default_internal_paths() => path_list;
            check |paths| paths.iter().all(|p| p.starts_with('/')),
            "expected path prefixes starting with /, such as /metrics,/healthz",
        /// Active health checks, passive ejection and slow start of the pool's instances.
        section health: HealthConfig = HealthConfig::default(),
        /// Compression of the pool's responses (`STRATA_GATEWAY_<POOL>_COMPRESSION_<KEY>`).
        section compression: CompressionConfig = CompressionConfig::default(),
    }
}

/// The operational endpoints every strata process serves.
fn default_internal_paths() -> Vec<String> {
    ["/metrics", "/healthz", "/readyz", "/internal"]
        .map(String::from)
        .to_vec()
}

/// A comma-separated list of paths (blanks around each ignored, empty items dropped).
///
/// # Errors
/// Never: the check judges the paths.
fn path_list(value: &str) -> Result<Vec<String>, String> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect())
}

impl PoolSettings {
    /// The chat pool's defaults: consistent hash on the `room` query parameter.
    pub fn chat() -> Self {
        Self {
            algorithm: Algorithm::ConsistentHash,
            hash_key: HashKey::Query("room".into()),
            ..Self::default()
        }
    }
}

config_section! {
    /// Health of a pool's instances: active checks, passive ejection, slow start.
    ///
    /// An instance takes requests while it is *up* (not failing active checks) and not
    /// *ejected* (passively, after errors). Instances start up, so a fresh gateway serves at
    /// once.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
    #[serde(default, deny_unknown_fields)]
    pub struct HealthConfig {
        /// Path of the active check, `GET`; a 2xx or 3xx answer is a success. Default
        /// `/readyz`: every strata process serves it, and it fails while the instance's
        /// backends are down.
        live path: String = "/readyz".into() => parse::trimmed;
            check |path| path.starts_with('/') && path.parse::<http::uri::PathAndQuery>().is_ok(),
            "expected a path such as /readyz",
        /// Milliseconds between two checks of one instance (each jittered by ±10 % so a
        /// gateway's checks do not arrive in bursts); 0 turns active checks off. After a
        /// failed check (or a failed request) the next comes after a quarter of it, until the
        /// instance is down or passes again; likewise while a down instance rises. Default
        /// 500: with `fall` 2 and `timeout_ms` 500 a dead instance is out within 1.7 s even
        /// when no request notices it (about 1.3 s after a failed request), at two checks per
        /// second per instance.
        live interval_ms: u64 = 500,
        /// Milliseconds a check may take, connect included, at most `interval_ms`. Default 500:
        /// an instance that cannot answer its readiness probe in half a second is not fit to
        /// serve.
        live timeout_ms: u64 = 500; check |ms| *ms >= 1, "must be at least 1",
        /// Consecutive successful checks that bring a down instance up. Default 2: one lucky
        /// answer does not bring back a flapping instance.
        live rise: u32 = 2; check |n| *n >= 1, "must be at least 1",
        /// Consecutive failed checks that take an up instance down. Default 2: one lost probe
        /// does not remove a healthy instance.
        live fall: u32 = 2; check |n| *n >= 1, "must be at least 1",
        /// Consecutive failed requests (connect error, reset, timeout, 5xx) that eject an
        /// instance; 0 turns passive ejection off. Default 3: requests find a dead instance
        /// long before the next check does, and three in a row is rarely bad luck.
        live eject_after: u32 = 3,
        /// First ejection's length in milliseconds; each consecutive ejection doubles it, and
        /// an ejected instance comes back at the first successful check after its ejection
        /// ends, or once it passes `rise` checks after failing one, whatever is left of its
        /// ejection. Default 1000: a restarting instance is tried again soon.
        live eject_base_ms: u64 = 1000; check |ms| *ms >= 1, "must be at least 1",
        /// Longest ejection in milliseconds. Default 30000: a broken instance costs a few
        /// probes a minute, and comes back within half a minute of being fixed.
        live eject_max_ms: u64 = 30_000,
        /// Milliseconds over which a recovered instance's share ramps from 10 % to 100 %; 0
        /// turns slow start off. Default 5000: long enough for cold caches and connection pools
        /// to warm.
        live slow_start_ms: u64 = 5000,
    }
    validate = HealthConfig::check;
}

impl HealthConfig {
    /// The rules between keys.
    fn check(&self, checks: &mut Checks<'_>) {
        checks.check(
            self.interval_ms == 0 || self.timeout_ms <= self.interval_ms,
            "timeout_ms",
            "must not exceed health.interval_ms, so checks never pile up",
        );
        checks.check(
            self.eject_max_ms >= self.eject_base_ms,
            "eject_max_ms",
            "must be at least health.eject_base_ms",
        );
    }
}
