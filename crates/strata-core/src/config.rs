//! Typed configuration: built-in defaults, then a TOML file, then `STRATA_*` environment
//! variables, then command-line flags; each layer overrides the one before.
//!
//! Every key, its default and the reason for that default live in this file (and in the example
//! `strata.toml` at the repository root). Problems are collected and reported together, each
//! naming its key, so a broken deployment is fixed in one round trip.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Environment variables that start with this prefix are configuration overrides.
pub const ENV_PREFIX: &str = "STRATA_";

/// The whole configuration of a strata process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub log: LogConfig,
    pub store: StoreConfig,
    pub cache: CacheConfig,
    pub bus: BusConfig,
    pub gateway: GatewayConfig,
    pub api: RoleConfig,
    pub chat: RoleConfig,
    pub worker: WorkerConfig,
    pub auth: AuthConfig,
    pub admin: AdminConfig,
}

/// How the api authenticates (`[auth]`, `STRATA_AUTH_<KEY>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The HS256 secret that signs session tokens, at least 32 bytes, the same for every api
    /// process of a deployment. Required by `strata serve api`; `strata up` generates one
    /// (with the OS's random generator) on first start and keeps it in
    /// `<store.data_dir>/jwt.secret` (mode 0600), so tokens survive restarts. Default empty.
    pub jwt_secret: Secret,
    /// Names the signing key in every token's `kid` header. Default `k1`.
    pub key_id: String,
    /// Lifetime of a session token in seconds. Default 3600: a stolen token is useful for an
    /// hour at most, and a granted role shows within the hour.
    pub token_ttl_secs: u64,
    /// argon2id memory per password hash, KiB. Default 19456 (19 MiB), OWASP's recommendation
    /// with `password_iterations` 2; at least 8.
    pub password_memory_kib: u32,
    /// argon2id passes over that memory. Default 2; at least 1.
    pub password_iterations: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::default(),
            key_id: "k1".into(),
            token_ttl_secs: 3600,
            password_memory_kib: 19 * 1024,
            password_iterations: 2,
        }
    }
}

/// The first admin account (`[admin]`, `STRATA_ADMIN_EMAIL`, `STRATA_ADMIN_PASSWORD`),
/// created by the api at start-up when missing, promoted to admin when present. Both empty
/// (the default): no admin is bootstrapped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin's email.
    pub email: String,
    /// The admin's password (8 to 128 characters), used only when the account is created.
    pub password: Secret,
}

/// How logs are written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `strata_gateway=debug,info`). Default `info`: one line per
    /// request and lifecycle event, nothing per byte.
    pub level: String,
    /// `json` (default: one object per line, for collectors) or `pretty` (for a terminal).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, got `{other}`")),
        }
    }
}

/// The relational store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://path` or `postgres://…`. Empty (default): `sqlite://<data_dir>/strata.db`, the
    /// embedded store that needs no server.
    pub database_url: String,
    /// Where the embedded store and generated secrets live. Default `./strata-data`.
    pub data_dir: PathBuf,
    /// Pool size per process. Default 16: enough for the api's concurrency on a small machine
    /// without exhausting PostgreSQL's default 100 connections across a few processes.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database_url: String::new(),
            data_dir: PathBuf::from("./strata-data"),
            max_connections: 16,
        }
    }
}

impl StoreConfig {
    /// The database URL to connect to: the configured one, or the SQLite file in the data dir.
    pub fn effective_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("strata.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

/// The cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` (default, in process) or `redis://host:port`.
    pub url: String,
    /// Namespace of every key, so deployments sharing one Redis never collide. Default `strata`.
    pub prefix: String,
    /// Default time to live of cached reads in seconds. Default 60: writes invalidate entries,
    /// so the TTL only bounds how long a missed invalidation can linger.
    pub ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: "memory".into(),
            prefix: "strata".into(),
            ttl_secs: 60,
        }
    }
}

/// The message bus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `memory` (default, in process) or `nats://host:port` (JetStream).
    pub url: String,
    /// Namespace of streams and subjects. Default `strata`.
    pub namespace: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: "memory".into(),
            namespace: "strata".into(),
        }
    }
}

/// The gateway (load balancer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Public listener. Default `127.0.0.1:8080`: loopback until an operator opens it.
    pub listen: SocketAddr,
    /// Admin API and `/metrics`. Default `127.0.0.1:9090`.
    pub admin_listen: SocketAddr,
    /// Time to connect to an instance, in milliseconds. Default 1000: instances are near, and a
    /// refused or silent connect should move on to another instance quickly.
    pub connect_timeout_ms: u64,
    /// Time for a whole proxied request, in milliseconds. Default 30000.
    pub request_timeout_ms: u64,
    /// Largest request body accepted, in bytes. Default 1 MiB: the shop's bodies are small JSON.
    pub max_body_bytes: u64,
    /// A WebSocket tunnel with no byte in either direction for this long is closed, in
    /// milliseconds. Default 300000 (5 minutes): chat clients ping far more often, so only
    /// dead tunnels (a peer gone without a FIN) are closed.
    pub websocket_idle_timeout_ms: u64,
    /// How long a draining instance keeps its WebSockets before they are closed, in
    /// milliseconds (its in-flight requests always finish). Default 30000: the same grace as
    /// Kubernetes' `terminationGracePeriodSeconds`, so a chat client can move at its own pace.
    pub drain_timeout_ms: u64,
    /// How often instance host names are resolved again, in milliseconds; every address a
    /// name resolves to is an instance. 0 turns re-resolution off (names are then resolved once
    /// at start). Default 5000: a Kubernetes headless Service's answer follows pods within
    /// seconds, and one lookup per name every 5 s costs nothing.
    pub dns_refresh_ms: u64,
    /// Threads serving client connections, like nginx's worker processes: each runs its own
    /// event loop with its own connections to the instances, accepting from its own listening
    /// socket (`SO_REUSEPORT`). 0 (the default): one per CPU the process may use (cgroup
    /// quotas included). Read at start; a reload does not change it.
    pub workers: usize,
    /// Bearer token of the admin API's `/admin/*` routes (`Authorization: Bearer <token>`).
    /// Required when `admin_listen` is not a loopback address. Default empty: no token, which
    /// is only accepted on loopback.
    pub admin_token: Secret,
    /// PEM certificate chain of the public listener; with `tls_key`, the listener speaks
    /// HTTPS (TLS 1.2 and 1.3). Both or neither; re-read on reload (SIGHUP). Default empty:
    /// plain HTTP (TLS usually ends at a cloud load balancer or an ingress in front).
    pub tls_cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`. Default empty.
    pub tls_key: PathBuf,
    /// Pools of instances. Empty in `strata up`, which builds the pools from the instances it
    /// starts; `strata serve gateway` needs at least the `api` pool.
    pub pools: Vec<PoolConfig>,
    /// How the `api` pool balances and checks its instances (`[gateway.api]`,
    /// `STRATA_GATEWAY_API_<KEY>`). Kept apart from [`GatewayConfig::pools`], which only lists
    /// instances, so the settings also apply to the pools `strata up` builds from its own
    /// instances. Default: round robin (api instances are stateless and alike).
    pub api: PoolSettings,
    /// How the `chat` pool balances and checks its instances (`[gateway.chat]`,
    /// `STRATA_GATEWAY_CHAT_<KEY>`). Default: consistent hash on the `room` query parameter, so
    /// every member of a room reaches the chat instance that holds the room.
    pub chat: PoolSettings,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            connect_timeout_ms: 1000,
            request_timeout_ms: 30_000,
            max_body_bytes: 1024 * 1024,
            websocket_idle_timeout_ms: 300_000,
            drain_timeout_ms: 30_000,
            dns_refresh_ms: 5000,
            workers: 0,
            admin_token: Secret::default(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            pools: Vec::new(),
            api: PoolSettings::default(),
            chat: PoolSettings::chat(),
        }
    }
}

impl GatewayConfig {
    /// The settings of pool `name` (`api` or `chat`); `None` for any other name.
    pub fn pool_settings(&self, name: &str) -> Option<&PoolSettings> {
        match name {
            "api" => Some(&self.api),
            "chat" => Some(&self.chat),
            _ => None,
        }
    }

    /// Whether the public listener terminates TLS (`tls_cert` and `tls_key` both set).
    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty() && !self.tls_key.as_os_str().is_empty()
    }

    /// Problems of the WebSocket, draining, admin and TLS keys.
    fn validate_serving(&self, problems: &mut Vec<Problem>) {
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(Problem::new(key, message));
            }
        };
        check(
            self.websocket_idle_timeout_ms > 0,
            "gateway.websocket_idle_timeout_ms",
            "must be at least 1",
        );
        check(
            self.workers <= 256,
            "gateway.workers",
            "must be at most 256 (0: one per CPU)",
        );
        check(
            self.admin_listen.ip().is_loopback() || !self.admin_token.is_empty(),
            "gateway.admin_token",
            "required when gateway.admin_listen is not a loopback address",
        );
        check(
            self.admin_token.is_empty() || self.admin_token.expose().len() >= 16,
            "gateway.admin_token",
            "must be at least 16 characters",
        );
        check(
            self.tls_cert.as_os_str().is_empty() == self.tls_key.as_os_str().is_empty(),
            if self.tls_cert.as_os_str().is_empty() {
                "gateway.tls_cert"
            } else {
                "gateway.tls_key"
            },
            "gateway.tls_cert and gateway.tls_key go together: set both or neither",
        );
    }

    fn pool_settings_mut(&mut self, name: &str) -> Option<&mut PoolSettings> {
        match name {
            "api" => Some(&mut self.api),
            "chat" => Some(&mut self.chat),
            _ => None,
        }
    }
}

/// One pool of interchangeable instances behind the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Pool name: `api` or `chat` (their routes are fixed by the design: `/api/v1/chat/` goes to
    /// `chat`, everything else to `api`).
    pub name: String,
    /// Base URLs of the instances, `http://host:port`, optionally with the instance's weight and
    /// in-flight limit as query parameters: `http://host:port?weight=5&max_in_flight=100`
    /// (see [`parse_instance_url`]).
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

/// How one pool spreads requests and decides which instances may take them.
///
/// `Default` is the `api` pool's setting; [`PoolSettings::chat`] the `chat` pool's. Every field
/// may be set alone (file, `STRATA_GATEWAY_<POOL>_<KEY>`, flag `gateway.<pool>.<key>`); the others
/// keep their defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// The balancing algorithm. Default `round_robin` for api (stateless instances, even spread
    /// at the lowest cost); `consistent_hash` for chat (a room must stay on one instance).
    pub algorithm: Algorithm,
    /// Where `consistent_hash` reads its key: `cookie:NAME`, `header:NAME`, `query:NAME` or
    /// `client_ip`. A request without the key is hashed on its client IP. Default `client_ip`
    /// for api (it has no natural key), `query:room` for chat (the WebSocket is
    /// `/api/v1/chat/ws?room=…`).
    pub hash_key: HashKey,
    /// Bounded load of `consistent_hash`: an instance takes a request only while its in-flight
    /// count is below `ceil((total in flight + 1) × factor / instances)`, otherwise the key moves
    /// clockwise to the next instance. At least 1.0. Default 1.25: no instance carries more
    /// than 25 % above the average, while keys stay on their instance in normal operation
    /// (HAProxy's `hash-balance-factor` and Google's "consistent hashing with bounded loads").
    pub balance_factor: f64,
    /// Cookie that pins a client to an instance under `sticky`. Default `strata_affinity`:
    /// prefixed, so it cannot collide with the shop's own cookies.
    pub sticky_cookie: String,
    /// When no instance is available (all down, ejected or at their in-flight limit), try one
    /// anyway instead of answering 503. Default false: a 503 with `Retry-After` is quick and
    /// honest, while sending traffic to instances known to fail only adds latency.
    pub fail_open: bool,
    /// Most requests to one instance that share a connection and one write when they reach
    /// the gateway together (HTTP/1.1 pipelining): only safe requests (`GET`, `HEAD`,
    /// `OPTIONS`) without a streamed body, never one behind another that is still waiting, so
    /// a request waits at most for the others that arrived with it. 1 to 256; 1 turns it off.
    /// Default 16: under load it halves the system calls per request on both sides of the
    /// connection. Set 1 for instances that answer some `GET`s slowly (seconds), so quick
    /// ones never wait behind them, or that mishandle pipelined requests.
    pub pipeline_depth: usize,
    /// Active health checks, passive ejection and slow start (`[gateway.<pool>.health]`).
    pub health: HealthConfig,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::RoundRobin,
            hash_key: HashKey::ClientIp,
            balance_factor: 1.25,
            sticky_cookie: "strata_affinity".into(),
            fail_open: false,
            pipeline_depth: 16,
            health: HealthConfig::default(),
        }
    }
}

impl PoolSettings {
    /// Keys of a pool's settings below `gateway.<pool>.`, for the environment mapping.
    const KEYS: &'static [&'static str] = &[
        "algorithm",
        "hash_key",
        "balance_factor",
        "sticky_cookie",
        "fail_open",
        "pipeline_depth",
        "health.path",
        "health.interval_ms",
        "health.timeout_ms",
        "health.rise",
        "health.fall",
        "health.eject_after",
        "health.eject_base_ms",
        "health.eject_max_ms",
        "health.slow_start_ms",
    ];

    /// The chat pool's defaults: consistent hash on the `room` query parameter.
    pub fn chat() -> Self {
        Self {
            algorithm: Algorithm::ConsistentHash,
            hash_key: HashKey::Query("room".into()),
            ..Self::default()
        }
    }

    /// Sets `key` (relative to `gateway.<pool>.`); `None` when there is no such key.
    fn set(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let health = &mut self.health;
        Some(match key {
            "algorithm" => parse_into(value, &mut self.algorithm),
            "hash_key" => parse_into(value, &mut self.hash_key),
            "balance_factor" => parse_into(value, &mut self.balance_factor),
            "sticky_cookie" => {
                self.sticky_cookie = value.trim().to_owned();
                Ok(())
            }
            "fail_open" => parse_into(value, &mut self.fail_open),
            "pipeline_depth" => parse_into(value, &mut self.pipeline_depth),
            "health.path" => {
                health.path = value.trim().to_owned();
                Ok(())
            }
            "health.interval_ms" => parse_into(value, &mut health.interval_ms),
            "health.timeout_ms" => parse_into(value, &mut health.timeout_ms),
            "health.rise" => parse_into(value, &mut health.rise),
            "health.fall" => parse_into(value, &mut health.fall),
            "health.eject_after" => parse_into(value, &mut health.eject_after),
            "health.eject_base_ms" => parse_into(value, &mut health.eject_base_ms),
            "health.eject_max_ms" => parse_into(value, &mut health.eject_max_ms),
            "health.slow_start_ms" => parse_into(value, &mut health.slow_start_ms),
            _ => return None,
        })
    }

    /// Problems of values that parse but make no sense; `key` is `gateway.<pool>`.
    fn validate(&self, key: &str, problems: &mut Vec<Problem>) {
        let mut check = |ok: bool, field: &str, message: &str| {
            if !ok {
                problems.push(Problem::new(&format!("{key}.{field}"), message));
            }
        };
        check(
            self.balance_factor.is_finite() && self.balance_factor >= 1.0,
            "balance_factor",
            "must be a number of at least 1.0",
        );
        check(
            is_token(&self.sticky_cookie),
            "sticky_cookie",
            "expected a cookie name (letters, digits and !#$%&'*+-.^_`|~)",
        );
        check(
            (1..=256).contains(&self.pipeline_depth),
            "pipeline_depth",
            "must be between 1 (no pipelining) and 256",
        );
        let health = &self.health;
        check(
            health.path.starts_with('/') && health.path.parse::<http::uri::PathAndQuery>().is_ok(),
            "health.path",
            "expected a path such as /readyz",
        );
        check(
            health.timeout_ms >= 1,
            "health.timeout_ms",
            "must be at least 1",
        );
        check(
            health.interval_ms == 0 || health.timeout_ms <= health.interval_ms,
            "health.timeout_ms",
            "must not exceed health.interval_ms, so checks never pile up",
        );
        check(health.rise >= 1, "health.rise", "must be at least 1");
        check(health.fall >= 1, "health.fall", "must be at least 1");
        check(
            health.eject_base_ms >= 1,
            "health.eject_base_ms",
            "must be at least 1",
        );
        check(
            health.eject_max_ms >= health.eject_base_ms,
            "health.eject_max_ms",
            "must be at least health.eject_base_ms",
        );
    }
}

/// The load-balancing algorithms a pool can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each instance in turn.
    #[default]
    RoundRobin,
    /// In turn, in proportion to the weights, interleaved like nginx's smooth weighted round
    /// robin (weights 5, 1, 1 give a a b a c a a).
    WeightedRoundRobin,
    /// A uniformly random instance.
    Random,
    /// A random instance, in proportion to the weights.
    WeightedRandom,
    /// The instance with the fewest requests in flight relative to its weight.
    LeastConnections,
    /// The less loaded of two random instances.
    PowerOfTwo,
    /// A hash ring on a request key ([`PoolSettings::hash_key`]) with bounded load.
    ConsistentHash,
    /// First contact by least connections, then the instance named in a cookie.
    Sticky,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Self; 8] = [
        Self::RoundRobin,
        Self::WeightedRoundRobin,
        Self::Random,
        Self::WeightedRandom,
        Self::LeastConnections,
        Self::PowerOfTwo,
        Self::ConsistentHash,
        Self::Sticky,
    ];

    /// The configuration name (`round_robin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::WeightedRoundRobin => "weighted_round_robin",
            Self::Random => "random",
            Self::WeightedRandom => "weighted_random",
            Self::LeastConnections => "least_connections",
            Self::PowerOfTwo => "power_of_two",
            Self::ConsistentHash => "consistent_hash",
            Self::Sticky => "sticky",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown algorithm `{s}`, expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Where a hashing algorithm takes its key from, written `cookie:NAME`, `header:NAME`,
/// `query:NAME` or `client_ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HashKey {
    /// The value of a cookie.
    Cookie(String),
    /// The value of a request header (the name is kept in lower case).
    Header(String),
    /// The raw (not percent-decoded) value of a query parameter.
    Query(String),
    /// The client's IP address as the gateway sees it (the TCP peer, not `X-Forwarded-For`,
    /// which any client can forge).
    ClientIp,
}

impl FromStr for HashKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "client_ip" {
            return Ok(Self::ClientIp);
        }
        let bad = || format!("`{s}`: expected cookie:NAME, header:NAME, query:NAME or client_ip");
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "cookie" if is_token(name) => Ok(Self::Cookie(name.to_owned())),
            "header" if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                Ok(Self::Header(name.to_ascii_lowercase()))
            }
            "query"
                if !name.is_empty()
                    && !name
                        .chars()
                        .any(|c| matches!(c, '&' | '=' | '#' | '?') || c.is_whitespace()) =>
            {
                Ok(Self::Query(name.to_owned()))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cookie(name) => write!(f, "cookie:{name}"),
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Query(name) => write!(f, "query:{name}"),
            Self::ClientIp => f.write_str("client_ip"),
        }
    }
}

impl TryFrom<String> for HashKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<HashKey> for String {
    fn from(key: HashKey) -> String {
        key.to_string()
    }
}

/// Health of a pool's instances: active checks, passive ejection, slow start.
///
/// An instance takes requests while it is *up* (not failing active checks) and not *ejected*
/// (passively, after errors). Instances start up, so a fresh gateway serves at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Path of the active check, `GET`; a 2xx or 3xx answer is a success. Default `/readyz`:
    /// every strata process serves it, and it fails while the instance's backends are down.
    pub path: String,
    /// Milliseconds between two checks of one instance (each jittered by ±10 % so a gateway's
    /// checks do not arrive in bursts). 0 turns active checks off. Default 1000: with `fall` 2
    /// a silent instance is taken out within about two seconds, at one request per second per
    /// instance.
    pub interval_ms: u64,
    /// Milliseconds a check may take, connect included. Default 500: an instance that cannot
    /// answer its readiness probe in half a second is not fit to serve.
    pub timeout_ms: u64,
    /// Consecutive successful checks that bring a down instance up. Default 2: one lucky answer
    /// does not bring back a flapping instance.
    pub rise: u32,
    /// Consecutive failed checks that take an up instance down. Default 2: one lost probe does
    /// not remove a healthy instance.
    pub fall: u32,
    /// Consecutive failed requests (connect error, reset, timeout, 5xx) that eject an instance.
    /// 0 turns passive ejection off. Default 3: requests find a dead instance long before the
    /// next check does, and three in a row is rarely bad luck.
    pub eject_after: u32,
    /// First ejection's length in milliseconds; each consecutive ejection doubles it. Default
    /// 1000: a restarting instance is tried again soon.
    pub eject_base_ms: u64,
    /// Longest ejection in milliseconds. Default 30000: a broken instance costs a few probes
    /// a minute, and comes back within half a minute of being fixed.
    pub eject_max_ms: u64,
    /// Milliseconds over which a recovered instance's share ramps from 10 % to 100 %. 0 turns
    /// slow start off. Default 5000: long enough for cold caches and connection pools to warm.
    pub slow_start_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            path: "/readyz".into(),
            interval_ms: 1000,
            timeout_ms: 500,
            rise: 2,
            fall: 2,
            eject_after: 3,
            eject_base_ms: 1000,
            eject_max_ms: 30_000,
            slow_start_ms: 5000,
        }
    }
}

/// The workers (`[worker]`, `STRATA_WORKER_<KEY>`): how many, where their operational
/// endpoints listen, and how they consume events and relay the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// How many workers `strata up` starts. Default 1.
    pub instances: usize,
    /// Address of the first worker's endpoints; worker `i` uses port `port + i`. Default
    /// `127.0.0.1:8301`.
    pub listen: SocketAddr,
    /// Bearer token of `/events/*` (stats, dead letters, replay). Default empty: none needed;
    /// required when `listen` is not loopback, since replay changes state.
    pub admin_token: Secret,
    /// Deliveries handled at once per handler. Default 16: overlaps store round trips and the
    /// provider's latency without taking every store connection.
    pub concurrency: usize,
    /// Deliveries of one event before it goes to the dead-letter stream. Default 5.
    pub max_deliveries: u32,
    /// First retry delay in ms, doubled per delivery up to `retry_max_ms`. Default 500.
    pub retry_base_ms: u64,
    /// Longest retry delay in ms. Default 30000.
    pub retry_max_ms: u64,
    /// Milliseconds an unanswered delivery waits before the bus hands it to another worker (how
    /// fast a crashed worker's events move on). Default 30000.
    pub ack_wait_ms: u64,
    /// Run the outbox relay. Default true. On SQLite `strata up` runs it in its first worker
    /// only (SQLite has no row locks to share the outbox between relays).
    pub relay: bool,
    /// Outbox events per relay round. Default 256.
    pub relay_batch: u32,
    /// Milliseconds an idle relay waits between polls. Default 50: the delay a quiet system
    /// adds to an event.
    pub relay_interval_ms: u64,
    /// Seconds sent outbox events are kept before pruning. Default 86400 (a day, to inspect).
    pub outbox_retention_secs: u64,
    /// The simulated payment provider: share of orders declined (0.0..=1.0). Default 0.1.
    pub payment_decline_rate: f64,
    /// The simulated payment provider: share of calls that fail as unavailable (retried).
    /// Default 0.0.
    pub payment_error_rate: f64,
    /// The simulated payment provider: milliseconds per call. Default 5.
    pub payment_latency_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            instances: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 8301)),
            admin_token: Secret::default(),
            concurrency: 16,
            max_deliveries: 5,
            retry_base_ms: 500,
            retry_max_ms: 30_000,
            ack_wait_ms: 30_000,
            relay: true,
            relay_batch: 256,
            relay_interval_ms: 50,
            outbox_retention_secs: 86_400,
            payment_decline_rate: 0.1,
            payment_error_rate: 0.0,
            payment_latency_ms: 5,
        }
    }
}

impl WorkerConfig {
    /// The listen address of worker `index` (0-based). Port 0 stays 0 (the OS picks).
    pub fn instance_addr(&self, index: usize) -> SocketAddr {
        RoleConfig {
            instances: self.instances,
            listen: self.listen,
        }
        .instance_addr(index)
    }

    fn set(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        Some(match key {
            "instances" => parse_into(value, &mut self.instances),
            "listen" => parse_into(value, &mut self.listen),
            "admin_token" => {
                self.admin_token = Secret::new(value.trim());
                Ok(())
            }
            "concurrency" => parse_into(value, &mut self.concurrency),
            "max_deliveries" => parse_into(value, &mut self.max_deliveries),
            "retry_base_ms" => parse_into(value, &mut self.retry_base_ms),
            "retry_max_ms" => parse_into(value, &mut self.retry_max_ms),
            "ack_wait_ms" => parse_into(value, &mut self.ack_wait_ms),
            "relay" => parse_into(value, &mut self.relay),
            "relay_batch" => parse_into(value, &mut self.relay_batch),
            "relay_interval_ms" => parse_into(value, &mut self.relay_interval_ms),
            "outbox_retention_secs" => parse_into(value, &mut self.outbox_retention_secs),
            "payment_decline_rate" => parse_into(value, &mut self.payment_decline_rate),
            "payment_error_rate" => parse_into(value, &mut self.payment_error_rate),
            "payment_latency_ms" => parse_into(value, &mut self.payment_latency_ms),
            _ => return None,
        })
    }

    /// Every key of `[worker]`.
    const KEYS: &'static [&'static str] = &[
        "instances",
        "listen",
        "admin_token",
        "concurrency",
        "max_deliveries",
        "retry_base_ms",
        "retry_max_ms",
        "ack_wait_ms",
        "relay",
        "relay_batch",
        "relay_interval_ms",
        "outbox_retention_secs",
        "payment_decline_rate",
        "payment_error_rate",
        "payment_latency_ms",
    ];

    fn validate(&self, problems: &mut Vec<Problem>) {
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(Problem::new(&format!("worker.{key}"), message));
            }
        };
        check(
            (1..=1024).contains(&self.concurrency),
            "concurrency",
            "expected 1..=1024",
        );
        check(
            (1..=100).contains(&self.max_deliveries),
            "max_deliveries",
            "expected 1..=100",
        );
        check(
            self.retry_base_ms >= 1,
            "retry_base_ms",
            "must be at least 1",
        );
        check(
            self.retry_max_ms >= self.retry_base_ms,
            "retry_max_ms",
            "must be at least retry_base_ms",
        );
        check(
            self.ack_wait_ms >= 100,
            "ack_wait_ms",
            "must be at least 100",
        );
        check(
            (1..=10_000).contains(&self.relay_batch),
            "relay_batch",
            "expected 1..=10000",
        );
        check(
            self.relay_interval_ms >= 1,
            "relay_interval_ms",
            "must be at least 1",
        );
        for (key, rate) in [
            ("payment_decline_rate", self.payment_decline_rate),
            ("payment_error_rate", self.payment_error_rate),
        ] {
            check((0.0..=1.0).contains(&rate), key, "expected 0.0..=1.0");
        }
        check(
            !self.admin_token.is_empty() || self.listen.ip().is_loopback(),
            "admin_token",
            "required when worker.listen is not a loopback address",
        );
    }
}

/// A role that runs as one or more instances (api, chat, worker).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// How many instances `strata up` starts. Ignored by `strata serve` (one per process).
    pub instances: usize,
    /// Address of the first instance; instance `i` (from 0) listens on port `port + i`.
    pub listen: SocketAddr,
}

impl RoleConfig {
    fn new(instances: usize, port: u16) -> Self {
        Self {
            instances,
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The listen address of instance `index` (0-based). Port 0 stays 0 (the OS picks).
    pub fn instance_addr(&self, index: usize) -> SocketAddr {
        let mut addr = self.listen;
        if addr.port() != 0 {
            let offset = u16::try_from(index).unwrap_or(u16::MAX);
            addr.set_port(addr.port().saturating_add(offset));
        }
        addr
    }
}

impl Default for RoleConfig {
    fn default() -> Self {
        Self::new(1, 0)
    }
}

impl Config {
    /// Built-in defaults: 3 api instances on 8101…, 2 chat on 8201…, 1 worker on 8301.
    pub fn defaults() -> Self {
        Self {
            api: RoleConfig::new(3, 8101),
            chat: RoleConfig::new(2, 8201),
            worker: WorkerConfig::default(),
            ..Self::default()
        }
    }

    /// Loads defaults, then `file` (if any), then the `STRATA_*` variables of `env`, then
    /// `overrides` (key → value, from flags). Everything is validated before it returns.
    ///
    /// # Errors
    /// Every problem found, each naming its key.
    pub fn load<E, K, V>(
        file: Option<&Path>,
        env: E,
        overrides: &[(&str, String)],
    ) -> Result<Self, ConfigError>
    where
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::defaults(),
        };
        let mut problems = Vec::new();
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.as_ref().starts_with(ENV_PREFIX))
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        for (var, value) in &env {
            match env_key(var) {
                Some(key) => config.set(&key, value, &mut problems),
                None => problems.push(Problem::new(var, "unknown configuration variable")),
            }
        }
        for (key, value) in overrides {
            config.set(key, value, &mut problems);
        }
        config.validate(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Reads a TOML file over the defaults.
    fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: toml::Table = toml::from_str(&text).map_err(|e| {
            ConfigError::Invalid(vec![Problem::new(&path.display().to_string(), e.message())])
        })?;
        let mut merged = match toml::Value::try_from(Self::defaults()) {
            Ok(toml::Value::Table(table)) => table,
            _ => toml::Table::new(),
        };
        merge(&mut merged, file);
        serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid(vec![Problem::new(&key, &e.inner().to_string())])
        })
    }

    /// Sets one key from its text form; a bad value or unknown key becomes a problem.
    pub fn set(&mut self, key: &str, value: &str, problems: &mut Vec<Problem>) {
        let mut put = |result: Result<(), String>| {
            if let Err(message) = result {
                problems.push(Problem::new(key, &message));
            }
        };
        match key {
            "log.level" => self.log.level = value.to_owned(),
            "log.format" => put(parse_into(value, &mut self.log.format)),
            "store.database_url" => self.store.database_url = value.to_owned(),
            "store.data_dir" => self.store.data_dir = PathBuf::from(value),
            "store.max_connections" => put(parse_into(value, &mut self.store.max_connections)),
            "cache.url" => self.cache.url = value.to_owned(),
            "cache.prefix" => self.cache.prefix = value.to_owned(),
            "cache.ttl_secs" => put(parse_into(value, &mut self.cache.ttl_secs)),
            "bus.url" => self.bus.url = value.to_owned(),
            "bus.namespace" => self.bus.namespace = value.to_owned(),
            "gateway.listen" => put(parse_into(value, &mut self.gateway.listen)),
            "gateway.admin_listen" => put(parse_into(value, &mut self.gateway.admin_listen)),
            "gateway.connect_timeout_ms" => {
                put(parse_into(value, &mut self.gateway.connect_timeout_ms))
            }
            "gateway.request_timeout_ms" => {
                put(parse_into(value, &mut self.gateway.request_timeout_ms))
            }
            "gateway.max_body_bytes" => put(parse_into(value, &mut self.gateway.max_body_bytes)),
            "gateway.websocket_idle_timeout_ms" => put(parse_into(
                value,
                &mut self.gateway.websocket_idle_timeout_ms,
            )),
            "gateway.drain_timeout_ms" => {
                put(parse_into(value, &mut self.gateway.drain_timeout_ms))
            }
            "gateway.dns_refresh_ms" => put(parse_into(value, &mut self.gateway.dns_refresh_ms)),
            "gateway.workers" => put(parse_into(value, &mut self.gateway.workers)),
            "gateway.admin_token" => self.gateway.admin_token = Secret::new(value.trim()),
            "gateway.tls_cert" => self.gateway.tls_cert = PathBuf::from(value),
            "gateway.tls_key" => self.gateway.tls_key = PathBuf::from(value),
            "gateway.upstream" => put(parse_upstreams(value).map(|pools| {
                for pool in pools {
                    self.gateway.pools.retain(|p| p.name != pool.name);
                    self.gateway.pools.push(pool);
                }
            })),
            "api.instances" => put(parse_into(value, &mut self.api.instances)),
            "api.listen" => put(parse_into(value, &mut self.api.listen)),
            "chat.instances" => put(parse_into(value, &mut self.chat.instances)),
            "chat.listen" => put(parse_into(value, &mut self.chat.listen)),
            "auth.jwt_secret" => self.auth.jwt_secret = Secret::new(value),
            "auth.key_id" => self.auth.key_id = value.trim().to_owned(),
            "auth.token_ttl_secs" => put(parse_into(value, &mut self.auth.token_ttl_secs)),
            "auth.password_memory_kib" => {
                put(parse_into(value, &mut self.auth.password_memory_kib))
            }
            "auth.password_iterations" => {
                put(parse_into(value, &mut self.auth.password_iterations))
            }
            "admin.email" => self.admin.email = value.trim().to_owned(),
            "admin.password" => self.admin.password = Secret::new(value),
            _ if key.starts_with("worker.") => {
                match key
                    .strip_prefix("worker.")
                    .and_then(|k| self.worker.set(k, value))
                {
                    Some(result) => put(result),
                    None => problems.push(Problem::new(key, "unknown configuration key")),
                }
            }
            _ => {
                // `gateway.<pool>.<setting>`, e.g. `gateway.chat.health.interval_ms`.
                let set = key
                    .strip_prefix("gateway.")
                    .and_then(|rest| rest.split_once('.'))
                    .and_then(|(pool, setting)| {
                        self.gateway.pool_settings_mut(pool)?.set(setting, value)
                    });
                match set {
                    Some(result) => put(result),
                    None => problems.push(Problem::new(key, "unknown configuration key")),
                }
            }
        }
    }

    /// Checks values that parse but make no sense.
    fn validate(&self, problems: &mut Vec<Problem>) {
        fn check(problems: &mut Vec<Problem>, ok: bool, key: &str, message: &str) {
            if !ok {
                problems.push(Problem::new(key, message));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(Problem::new("log.level", &e.to_string()));
        }
        let db = &self.store.database_url;
        check(
            problems,
            db.is_empty()
                || ["sqlite:", "postgres://", "postgresql://"]
                    .iter()
                    .any(|s| db.starts_with(s)),
            "store.database_url",
            "expected sqlite://PATH or postgres://…",
        );
        check(
            problems,
            (1..=1000).contains(&self.store.max_connections),
            "store.max_connections",
            "expected 1..=1000",
        );
        let cache = &self.cache.url;
        check(
            problems,
            cache == "memory" || cache.starts_with("redis://") || cache.starts_with("rediss://"),
            "cache.url",
            "expected `memory` or redis://host:port",
        );
        check(
            problems,
            self.cache.ttl_secs > 0,
            "cache.ttl_secs",
            "must be at least 1",
        );
        check(
            problems,
            valid_name(&self.cache.prefix),
            "cache.prefix",
            "expected letters, digits, `-` or `_`",
        );
        let bus = &self.bus.url;
        check(
            problems,
            bus == "memory" || bus.starts_with("nats://"),
            "bus.url",
            "expected `memory` or nats://host:port",
        );
        check(
            problems,
            valid_name(&self.bus.namespace),
            "bus.namespace",
            "expected letters, digits, `-` or `_`",
        );
        check(
            problems,
            self.gateway.connect_timeout_ms > 0,
            "gateway.connect_timeout_ms",
            "must be at least 1",
        );
        check(
            problems,
            self.gateway.request_timeout_ms > 0,
            "gateway.request_timeout_ms",
            "must be at least 1",
        );
        check(
            problems,
            self.gateway.max_body_bytes > 0,
            "gateway.max_body_bytes",
            "must be at least 1",
        );
        self.gateway.validate_serving(problems);
        for (i, pool) in self.gateway.pools.iter().enumerate() {
            let key = format!("gateway.pools[{i}]");
            check(
                problems,
                ["api", "chat"].contains(&pool.name.as_str()),
                &key,
                "pool name must be `api` or `chat`",
            );
            check(
                problems,
                !pool.instances.is_empty(),
                &key,
                "a pool needs at least one instance",
            );
            for url in &pool.instances {
                if let Err(message) = parse_instance_url(url) {
                    problems.push(Problem::new(&key, &message));
                }
            }
        }
        self.gateway.api.validate("gateway.api", problems);
        self.gateway.chat.validate("gateway.chat", problems);
        for (name, instances) in [
            ("api", self.api.instances),
            ("chat", self.chat.instances),
            ("worker", self.worker.instances),
        ] {
            check(
                problems,
                instances <= 64,
                &format!("{name}.instances"),
                "at most 64 instances per process",
            );
        }
        self.worker.validate(problems);
        check(
            problems,
            self.api.instances >= 1,
            "api.instances",
            "at least 1 api instance is needed",
        );
        self.validate_auth(problems);
    }

    /// The `[auth]` and `[admin]` keys. The secret's presence is checked by the roles that
    /// need it (`strata serve api`), not here: a gateway runs without one.
    fn validate_auth(&self, problems: &mut Vec<Problem>) {
        let auth = &self.auth;
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(Problem::new(key, message));
            }
        };
        check(
            auth.jwt_secret.is_empty() || auth.jwt_secret.expose().len() >= 32,
            "auth.jwt_secret",
            "must be at least 32 bytes",
        );
        check(
            valid_name(&auth.key_id),
            "auth.key_id",
            "expected letters, digits, `-` or `_`",
        );
        check(
            auth.token_ttl_secs >= 1,
            "auth.token_ttl_secs",
            "must be at least 1",
        );
        check(
            auth.password_memory_kib >= 8,
            "auth.password_memory_kib",
            "must be at least 8",
        );
        check(
            auth.password_iterations >= 1,
            "auth.password_iterations",
            "must be at least 1",
        );
        let admin = &self.admin;
        check(
            admin.email.is_empty() == admin.password.is_empty(),
            if admin.email.is_empty() {
                "admin.email"
            } else {
                "admin.password"
            },
            "admin.email and admin.password go together: set both or neither",
        );
        check(
            admin.password.is_empty()
                || (8..=128).contains(&admin.password.expose().chars().count()),
            "admin.password",
            "must have 8 to 128 characters",
        );
    }
}

/// Maps `STRATA_API_INSTANCES` to `api.instances`: a variable names a key with its dots written
/// as `_` (`STRATA_GATEWAY_CHAT_HEALTH_INTERVAL_MS` is `gateway.chat.health.interval_ms`). No two
/// keys map to the same variable (a test checks it).
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    all_keys().find(|key| key.replace('.', "_") == rest)
}

/// Every key `Config::set` accepts except the per-pool ones, then the per-pool ones.
fn all_keys() -> impl Iterator<Item = String> {
    const KEYS: &[&str] = &[
        "log.level",
        "log.format",
        "store.database_url",
        "store.data_dir",
        "store.max_connections",
        "cache.url",
        "cache.prefix",
        "cache.ttl_secs",
        "bus.url",
        "bus.namespace",
        "gateway.listen",
        "gateway.admin_listen",
        "gateway.connect_timeout_ms",
        "gateway.request_timeout_ms",
        "gateway.max_body_bytes",
        "gateway.websocket_idle_timeout_ms",
        "gateway.drain_timeout_ms",
        "gateway.dns_refresh_ms",
        "gateway.workers",
        "gateway.admin_token",
        "gateway.tls_cert",
        "gateway.tls_key",
        "gateway.upstream",
        "api.instances",
        "api.listen",
        "chat.instances",
        "chat.listen",
        "auth.jwt_secret",
        "auth.key_id",
        "auth.token_ttl_secs",
        "auth.password_memory_kib",
        "auth.password_iterations",
        "admin.email",
        "admin.password",
    ];
    let pools = ["api", "chat"].into_iter().flat_map(|pool| {
        PoolSettings::KEYS
            .iter()
            .map(move |key| format!("gateway.{pool}.{key}"))
    });
    let worker = WorkerConfig::KEYS.iter().map(|key| format!("worker.{key}"));
    KEYS.iter()
        .map(|k| (*k).to_owned())
        .chain(worker)
        .chain(pools)
}

/// Parses `api=http://h:p,http://h:p;chat=http://h:p` (pools separated by `;`).
fn parse_upstreams(value: &str) -> Result<Vec<PoolConfig>, String> {
    value
        .split(';')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (name, urls) = part
                .split_once('=')
                .ok_or_else(|| format!("expected POOL=URL[,URL…], got `{part}`"))?;
            let instances: Vec<String> = urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            for url in &instances {
                parse_instance_url(url)?;
            }
            Ok(PoolConfig {
                name: name.trim().to_owned(),
                instances,
            })
        })
        .collect()
}

/// Largest instance weight. 1000 gives per-mille resolution while keeping the weighted round
/// robin schedule and the hash ring (both sized by the sum of weights) small.
pub const MAX_WEIGHT: u32 = 1000;

/// An instance URL, parsed: `http://host:port`, optionally followed by `/` and by the
/// instance's settings as query parameters, `?weight=5&max_in_flight=100`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceUrl {
    /// Host name or IP address (an IPv6 address keeps its brackets).
    pub host: String,
    pub port: u16,
    /// The instance's share under weighted algorithms (`weighted_round_robin`,
    /// `weighted_random`, `least_connections`, `consistent_hash`), 1..=[`MAX_WEIGHT`].
    /// Default 1: instances of a pool are usually alike.
    pub weight: u32,
    /// Requests in flight on this instance above which the balancer passes it over; 0 (the
    /// default) means no limit. Checked when picking, so concurrent picks may overshoot by a
    /// few requests: a guard against overload, not an exact quota.
    pub max_in_flight: u64,
}

impl InstanceUrl {
    /// `host:port`, the instance's identity (metrics label, admin API, sticky cookie).
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Parses an instance URL: `http://host:port[/][?weight=W&max_in_flight=M]`.
///
/// # Errors
/// A message naming the URL when the scheme is not `http`, the port is missing or bad, a path
/// follows the authority, or a query parameter is unknown or out of range.
pub fn parse_instance_url(url: &str) -> Result<InstanceUrl, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("instance `{url}`: expected http://host:port"))?;
    let (authority, query) = match rest.split_once('?') {
        Some((authority, query)) => (authority, Some(query)),
        None => (rest, None),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("instance `{url}`: missing port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("instance `{url}`: bad port"))?;
    if host.is_empty() || authority.contains('/') {
        return Err(format!("instance `{url}`: expected http://host:port"));
    }
    let mut parsed = InstanceUrl {
        host: host.to_owned(),
        port,
        weight: 1,
        max_in_flight: 0,
    };
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "weight" => {
                parsed.weight = value
                    .parse()
                    .ok()
                    .filter(|w| (1..=MAX_WEIGHT).contains(w))
                    .ok_or_else(|| format!("instance `{url}`: weight must be 1..={MAX_WEIGHT}"))?;
            }
            "max_in_flight" => {
                parsed.max_in_flight = value.parse().map_err(|_| {
                    format!("instance `{url}`: max_in_flight must be a whole number (0: no limit)")
                })?;
            }
            other => {
                return Err(format!(
                    "instance `{url}`: unknown setting `{other}` (expected weight, max_in_flight)"
                ));
            }
        }
    }
    Ok(parsed)
}

/// An RFC 6265 cookie name (an RFC 9110 token).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_into<T: FromStr>(value: &str, slot: &mut T) -> Result<(), String>
where
    T::Err: fmt::Display,
{
    *slot = value
        .trim()
        .parse()
        .map_err(|e| format!("`{value}`: {e}"))?;
    Ok(())
}

/// Deep-merges `over` into `base` (tables merge, other values replace).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A secret value from the configuration (a signing key, a password): kept as given, but its
/// `Debug` and `Display` print `***`, so logging a config never leaks it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(***)"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One configuration problem, naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    fn new(key: &str, message: &str) -> Self {
        Self {
            key: key.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], overrides: &[(&str, String)]) -> Result<Config, ConfigError> {
        Config::load(None, env.iter().copied(), overrides)
    }

    fn problems(err: ConfigError) -> Vec<Problem> {
        match err {
            ConfigError::Invalid(p) => p,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = load(&[], &[]).unwrap();
        assert_eq!(config.api.instances, 3);
        assert_eq!(config.chat.instances, 2);
        assert_eq!(config.api.instance_addr(2).port(), 8103);
        assert_eq!(config.gateway.listen.port(), 8080);
        assert!(
            config
                .store
                .effective_url()
                .ends_with("strata-data/strata.db")
        );
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let dir = std::env::temp_dir().join(format!("strata-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("strata.toml");
        std::fs::write(
            &file,
            "[api]\ninstances = 5\n[chat]\ninstances = 4\n[cache]\nttl_secs = 9\n",
        )
        .unwrap();
        let env = [
            ("STRATA_API_INSTANCES", "6"),
            ("STRATA_CHAT_INSTANCES", "7"),
            ("HOME", "/x"),
        ];
        let config = Config::load(Some(&file), env, &[("chat.instances", "8".into())]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.api.instances, 6, "env beats file");
        assert_eq!(config.chat.instances, 8, "flag beats env");
        assert_eq!(config.cache.ttl_secs, 9, "file beats default");
        assert_eq!(
            config.api.listen.port(),
            8101,
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn all_problems_are_reported_with_their_keys() {
        let env = [
            ("STRATA_API_INSTANCES", "many"),
            ("STRATA_NOPE", "1"),
            ("STRATA_CACHE_URL", "mem"),
        ];
        let found = problems(load(&env, &[("bus.url", "kafka://x".into())]).unwrap_err());
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"api.instances"), "{keys:?}");
        assert!(keys.contains(&"STRATA_NOPE"), "{keys:?}");
        assert!(keys.contains(&"cache.url"), "{keys:?}");
        assert!(keys.contains(&"bus.url"), "{keys:?}");
    }

    #[test]
    fn file_errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("strata-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[api]\ninstances = \"three\"\n").unwrap();
        let err = Config::load(Some(&file), Vec::<(String, String)>::new(), &[]).unwrap_err();
        std::fs::write(&file, "[api]\nreplicas = 3\n").unwrap();
        let unknown = Config::load(Some(&file), Vec::<(String, String)>::new(), &[]).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.to_string().contains("api.instances"), "{err}");
        assert!(unknown.to_string().contains("replicas"), "{unknown}");
    }

    #[test]
    fn upstreams_parse_into_pools() {
        let config = load(
            &[],
            &[(
                "gateway.upstream",
                "api=http://a:1,http://b:2;chat=http://c:3".into(),
            )],
        )
        .unwrap();
        assert_eq!(config.gateway.pools.len(), 2);
        assert_eq!(
            config.gateway.pools[0].instances,
            ["http://a:1", "http://b:2"]
        );
        let found =
            problems(load(&[], &[("gateway.upstream", "api=http://a".into())]).unwrap_err());
        assert_eq!(found[0].key, "gateway.upstream");
        let found =
            problems(load(&[], &[("gateway.upstream", "db=http://a:1".into())]).unwrap_err());
        assert_eq!(found[0].key, "gateway.pools[0]");
    }

    #[test]
    fn example_file_in_the_repository_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../strata.toml");
        let config = Config::load(Some(&path), Vec::<(String, String)>::new(), &[]).unwrap();
        assert_eq!(config.api.instances, 3);
        // The file documents every gateway and worker key at its default.
        assert_eq!(config.gateway, Config::defaults().gateway);
        assert_eq!(config.worker, Config::defaults().worker);
        let text = std::fs::read_to_string(&path).unwrap();
        for pool in ["[gateway.api]", "[gateway.chat]"] {
            assert!(text.contains(pool), "{pool} missing from strata.toml");
        }
        for key in PoolSettings::KEYS.iter().chain(WorkerConfig::KEYS) {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            assert!(
                text.contains(&format!("\n{leaf} = ")),
                "{key} missing from strata.toml"
            );
        }
    }

    #[test]
    fn worker_keys_load_from_env_and_bad_values_are_all_reported() {
        let config = load(
            &[
                ("STRATA_WORKER_MAX_DELIVERIES", "7"),
                ("STRATA_WORKER_PAYMENT_DECLINE_RATE", "0.25"),
                ("STRATA_WORKER_RELAY", "false"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(config.worker.max_deliveries, 7);
        assert_eq!(config.worker.payment_decline_rate, 0.25);
        assert!(!config.worker.relay);
        let found = problems(
            load(
                &[
                    ("STRATA_WORKER_PAYMENT_ERROR_RATE", "1.5"),
                    ("STRATA_WORKER_CONCURRENCY", "0"),
                    ("STRATA_WORKER_RETRY_MAX_MS", "1"),
                    ("STRATA_WORKER_LISTEN", "0.0.0.0:8301"),
                ],
                &[("worker.nonsense", "1".into())],
            )
            .unwrap_err(),
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "worker.payment_error_rate",
            "worker.concurrency",
            "worker.retry_max_ms",
            "worker.admin_token",
            "worker.nonsense",
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
    }

    #[test]
    fn pools_default_to_round_robin_for_api_and_room_hashing_for_chat() {
        let config = load(&[], &[]).unwrap();
        let (api, chat) = (&config.gateway.api, &config.gateway.chat);
        assert_eq!(
            (api.algorithm, &api.hash_key),
            (Algorithm::RoundRobin, &HashKey::ClientIp)
        );
        assert_eq!(
            (chat.algorithm, &chat.hash_key),
            (Algorithm::ConsistentHash, &HashKey::Query("room".into()))
        );
        for pool in [api, chat] {
            assert_eq!(pool.balance_factor, 1.25);
            assert_eq!(pool.sticky_cookie, "strata_affinity");
            assert!(!pool.fail_open);
            assert_eq!(pool.health, HealthConfig::default());
        }
        let health = &api.health;
        assert_eq!(
            (health.path.as_str(), health.interval_ms, health.timeout_ms),
            ("/readyz", 1000, 500)
        );
        assert_eq!((health.rise, health.fall, health.eject_after), (2, 2, 3));
        assert_eq!(
            (
                health.eject_base_ms,
                health.eject_max_ms,
                health.slow_start_ms
            ),
            (1000, 30_000, 5000)
        );
        assert_eq!(config.gateway.pool_settings("chat"), Some(chat));
        assert_eq!(config.gateway.pool_settings("db"), None);
    }

    #[test]
    fn pool_settings_come_from_file_env_and_flags() {
        let dir = std::env::temp_dir().join(format!("strata-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("strata.toml");
        std::fs::write(
            &file,
            "[gateway.chat]\nfail_open = true\n[gateway.chat.health]\nrise = 4\n\
             [gateway.api]\nalgorithm = \"weighted_round_robin\"\n",
        )
        .unwrap();
        let env = [
            ("STRATA_GATEWAY_CHAT_HASH_KEY", "header:X-User"),
            ("STRATA_GATEWAY_API_HEALTH_INTERVAL_MS", "750"),
            ("STRATA_GATEWAY_API_BALANCE_FACTOR", "2.5"),
            ("STRATA_GATEWAY_API_PIPELINE_DEPTH", "1"),
        ];
        let flags = [
            ("gateway.api.algorithm", "sticky".to_owned()),
            ("gateway.chat.health.eject_after", "0".to_owned()),
        ];
        let config = Config::load(Some(&file), env, &flags).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let (api, chat) = (&config.gateway.api, &config.gateway.chat);
        assert_eq!(api.algorithm, Algorithm::Sticky, "flag beats file");
        assert_eq!((api.health.interval_ms, api.balance_factor), (750, 2.5));
        assert_eq!((api.pipeline_depth, chat.pipeline_depth), (1, 16));
        assert_eq!(
            chat.algorithm,
            Algorithm::ConsistentHash,
            "untouched keys of a partly set pool keep the pool's defaults"
        );
        assert_eq!(chat.hash_key, HashKey::Header("x-user".into()));
        assert!(chat.fail_open);
        assert_eq!((chat.health.rise, chat.health.fall), (4, 2));
        assert_eq!(chat.health.eject_after, 0);
    }

    #[test]
    fn every_bad_pool_setting_is_reported_with_its_key() {
        let flags: Vec<(&str, String)> = [
            ("gateway.api.algorithm", "fastest"),
            ("gateway.api.hash_key", "body:x"),
            ("gateway.api.balance_factor", "0.5"),
            ("gateway.api.pipeline_depth", "0"),
            ("gateway.chat.pipeline_depth", "257"),
            ("gateway.chat.sticky_cookie", "a b"),
            ("gateway.chat.health.path", "readyz"),
            ("gateway.chat.health.rise", "0"),
            ("gateway.chat.health.fall", "-1"),
            ("gateway.api.health.interval_ms", "100"),
            ("gateway.api.health.timeout_ms", "200"),
            ("gateway.api.health.eject_max_ms", "10"),
            ("gateway.api.colour", "blue"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
        let found =
            problems(load(&[("STRATA_GATEWAY_CHAT_FAIL_OPEN", "maybe")], &flags).unwrap_err());
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "gateway.api.algorithm",
            "gateway.api.hash_key",
            "gateway.api.balance_factor",
            "gateway.api.pipeline_depth",
            "gateway.chat.pipeline_depth",
            "gateway.chat.sticky_cookie",
            "gateway.chat.health.path",
            "gateway.chat.health.rise",
            "gateway.chat.health.fall",
            "gateway.api.health.timeout_ms",
            "gateway.api.health.eject_max_ms",
            "gateway.api.colour",
            "gateway.chat.fail_open",
        ] {
            assert!(keys.contains(&key), "{key} not reported in {keys:?}");
        }
        assert_eq!(found.len(), 13, "{found:?}");
    }

    #[test]
    fn gateway_workers_default_to_one_per_cpu_and_are_bounded() {
        assert_eq!(GatewayConfig::default().workers, 0);
        let config = load(&[("STRATA_GATEWAY_WORKERS", "3")], &[]).unwrap();
        assert_eq!(config.gateway.workers, 3);
        let found = problems(load(&[], &[("gateway.workers", "257".to_owned())]).unwrap_err());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "gateway.workers");
    }

    #[test]
    fn hash_keys_parse_and_print_back() {
        for (text, key) in [
            ("cookie:sid", HashKey::Cookie("sid".into())),
            ("header:x-user", HashKey::Header("x-user".into())),
            ("query:room", HashKey::Query("room".into())),
            ("client_ip", HashKey::ClientIp),
        ] {
            assert_eq!(text.parse::<HashKey>().unwrap(), key);
            assert_eq!(key.to_string(), text);
        }
        for bad in [
            "",
            "cookie:",
            "query:a&b",
            "header:bad header",
            "ip",
            "path:/x",
        ] {
            assert!(bad.parse::<HashKey>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn instance_urls_carry_weight_and_in_flight_limit() {
        let plain = parse_instance_url("http://10.0.0.5:8101").unwrap();
        assert_eq!(
            (
                plain.host.as_str(),
                plain.port,
                plain.weight,
                plain.max_in_flight
            ),
            ("10.0.0.5", 8101, 1, 0)
        );
        assert_eq!(plain.address(), "10.0.0.5:8101");
        let full = parse_instance_url("http://h:1/?weight=5&max_in_flight=100").unwrap();
        assert_eq!((full.weight, full.max_in_flight), (5, 100));
        assert_eq!(
            parse_instance_url("http://[::1]:2?weight=1000")
                .unwrap()
                .host,
            "[::1]"
        );
        for bad in [
            "http://h:1?weight=0",
            "http://h:1?weight=1001",
            "http://h:1?weight=x",
            "http://h:1?max_in_flight=-1",
            "http://h:1?colour=blue",
            "http://h:1/path?weight=2",
            "https://h:1",
        ] {
            assert!(parse_instance_url(bad).is_err(), "{bad} accepted");
        }
        let config = load(
            &[],
            &[(
                "gateway.upstream",
                "api=http://a:1?weight=5,http://b:2;chat=http://c:3?max_in_flight=7".into(),
            )],
        )
        .unwrap();
        assert_eq!(
            config.gateway.pools[0].instances,
            ["http://a:1?weight=5", "http://b:2"]
        );
        let found = problems(
            load(
                &[],
                &[("gateway.upstream", "api=http://a:1?weight=0".into())],
            )
            .unwrap_err(),
        );
        assert_eq!(found[0].key, "gateway.upstream");
    }

    #[test]
    fn every_key_has_its_own_environment_variable() {
        let mut seen = std::collections::HashSet::new();
        for key in all_keys() {
            let var = format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase());
            assert!(seen.insert(var.clone()), "{var} names two keys");
            assert_eq!(env_key(&var).as_deref(), Some(key.as_str()), "{var}");
            // And `set` knows the key (a bad value is a value problem, not an unknown key).
            let mut problems = Vec::new();
            Config::defaults().set(&key, "\u{0}", &mut problems);
            assert!(
                problems
                    .iter()
                    .all(|p| p.message != "unknown configuration key"),
                "{key}: {problems:?}"
            );
        }
    }

    #[test]
    fn auth_and_admin_keys_load_from_the_environment_and_never_print_secrets() {
        let env = [
            ("STRATA_AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("STRATA_AUTH_TOKEN_TTL_SECS", "60"),
            ("STRATA_ADMIN_EMAIL", "root@example.com"),
            ("STRATA_ADMIN_PASSWORD", "root password"),
        ];
        let config = load(&env, &[]).unwrap();
        assert_eq!(config.auth.jwt_secret.expose().len(), 32);
        assert_eq!(config.auth.token_ttl_secs, 60);
        assert_eq!(config.auth.key_id, "k1");
        assert_eq!(config.admin.email, "root@example.com");
        assert_eq!(config.admin.password.expose(), "root password");
        let printed = format!("{config:?}");
        assert!(!printed.contains("0123456789abcdef") && !printed.contains("root password"));
        assert!(printed.contains("Secret(***)"), "{printed}");

        let found = problems(
            load(
                &[
                    ("STRATA_AUTH_JWT_SECRET", "short"),
                    ("STRATA_ADMIN_EMAIL", "root@example.com"),
                    ("STRATA_AUTH_TOKEN_TTL_SECS", "0"),
                    ("STRATA_AUTH_KEY_ID", "a b"),
                ],
                &[],
            )
            .unwrap_err(),
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "auth.jwt_secret",
            "admin.password",
            "auth.token_ttl_secs",
            "auth.key_id",
        ] {
            assert!(keys.contains(&key), "{key} not in {keys:?}");
        }
        assert!(
            !format!("{found:?}").contains("short"),
            "secrets are not echoed"
        );
    }
}
