//! The gateway's configuration (`[gateway]`, `STRATA_GATEWAY_<KEY>`): listeners, timeouts,
//! limits, TLS, the pools and their settings, the operations view, and the vocabulary they use
//! (algorithms, hash keys, instance URLs). Declared with strata-core's `config_section!`; the binary composes it
//! into the whole configuration under [`SECTION`].

mod algorithm;
mod compression;
mod http2;
mod instance;
mod ops;
mod pool;
mod protocol;
mod rate_limit;
mod route;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_core::config::{Checks, Secret, Section, parse};
use strata_core::config_section;

pub use algorithm::{Algorithm, HashKey};
pub use compression::{CompressionConfig, Encoding};
pub use http2::Http2Settings;
pub use instance::{InstanceUrl, MAX_WEIGHT, parse_instance_url};
pub use ops::{OpsConfig, parse_source};
pub use pool::{HealthConfig, PoolConfig, PoolSettings};
pub use protocol::UpstreamProtocol;
pub use rate_limit::{MAX_RATE_PER_SEC, RateLimitRule};
pub use route::{ANY_VALUE, HeaderRules, ROUTE_POOLS, RouteRule, default_routes, route_problems};

/// Where the gateway's section sits in a composed configuration (`gateway.listen`,
/// `STRATA_GATEWAY_LISTEN`).
pub const SECTION: &str = "gateway";

config_section! {
    /// The gateway (load balancer).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct GatewayConfig {
        /// Public listener (HTTP and WebSocket). Default `127.0.0.1:8080`: loopback until an
        /// operator opens it.
        restart listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080)),
        /// Admin API and `/metrics`. Default `127.0.0.1:9090`.
        restart admin_listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 9090)),
        /// Time to connect to an instance, in milliseconds. Default 1000: instances are near,
        /// and a refused or silent connect should move on to another instance quickly.
        restart connect_timeout_ms: u64 = 1000; check |ms| *ms > 0, "must be at least 1",
        /// Time for a whole proxied request, in milliseconds (504 after). Default 30000.
        restart request_timeout_ms: u64 = 30_000; check |ms| *ms > 0, "must be at least 1",
        /// Largest request body accepted, in bytes (larger bodies get 413). Default 1 MiB: the
        /// shop's bodies are small JSON.
        restart max_body_bytes: u64 = 1024 * 1024; check |n| *n > 0, "must be at least 1",
        /// Longest wait for the next bytes of a request body, in milliseconds (408 after); a
        /// body still arriving when `request_timeout_ms` ends also gets 408. A slow client is
        /// never counted as a failure of the instance it was sending to. Default 10000: a
        /// client that sends nothing for 10 s in the middle of its body is stalled or
        /// trickling on purpose, not slow.
        restart body_timeout_ms: u64 = 10_000; check |ms| *ms > 0, "must be at least 1",
        /// A WebSocket tunnel with no byte in either direction for this long is closed, in
        /// milliseconds. Default 300000 (5 minutes): chat clients ping far more often, so only
        /// dead tunnels (a peer gone without a FIN) are closed.
        restart websocket_idle_timeout_ms: u64 = 300_000;
            check |ms| *ms > 0, "must be at least 1",
        /// How long a draining (or removed) instance keeps its WebSockets before they are
        /// closed, in milliseconds (its in-flight requests always finish); also how long a
        /// gateway shutting down keeps its tunnels open for the instances to close them.
        /// Default 30000: the same grace as Kubernetes' `terminationGracePeriodSeconds`, so a
        /// chat client can move at its own pace.
        restart drain_timeout_ms: u64 = 30_000,
        /// How often instance host names are resolved again, in milliseconds; every address a
        /// name resolves to is an instance, and 0 resolves names once at start. Default 5000: a
        /// Kubernetes headless Service's answer follows pods within seconds, and one lookup per
        /// name every 5 s costs nothing.
        restart dns_refresh_ms: u64 = 5000,
        /// Threads serving client connections, like nginx's worker processes: each runs its own
        /// event loop with its own connections to the instances, accepting from its own
        /// listening socket (`SO_REUSEPORT`). 0 (the default): one per CPU the process may use
        /// (cgroup quotas included).
        restart workers: usize = 0; check |n| *n <= 256, "must be at most 256 (0: one per CPU)",
        /// Bearer token of the admin API's `/admin/*` routes (`Authorization: Bearer <token>`),
        /// at least 16 characters. Required when `admin_listen` is not a loopback address.
        /// Default empty: no token, which is only accepted on loopback. Prefer
        /// `STRATA_GATEWAY_ADMIN_TOKEN` to a file.
        restart admin_token: Secret = Secret::default() => parse::trimmed;
            check |token| token.is_empty() || token.expose().len() >= 16,
            "must be at least 16 characters",
        /// PEM certificate chain of the public listener; with `tls_key`, the listener speaks
        /// HTTPS (TLS 1.2 and 1.3), and turning that on or off needs a restart. Both or
        /// neither; both files are re-read on reload (new handshakes use them). Default empty:
        /// plain HTTP (TLS usually ends at a cloud load balancer or an ingress in front).
        live tls_cert: PathBuf = PathBuf::new() => parse::verbatim,
        /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`. Default empty.
        live tls_key: PathBuf = PathBuf::new() => parse::verbatim,
        /// Pools of instances: a list of `[[gateway.pools]]` tables, each with a `name` (`api`
        /// or `chat`) and `instances`, such as `["http://10.0.0.5:8101"]`. An instance URL may
        /// carry its weight (1..=1000, default 1) and in-flight limit (0, the default, means
        /// none): `http://10.0.0.5:8101?weight=5&max_in_flight=100`. Empty in `strata up`,
        /// which builds the pools from the instances it starts; `strata serve gateway` needs at
        /// least the `api` pool.
        file pools: Vec<PoolConfig> = Vec::new(),
        /// Routing rules: a list of `[[gateway.routes]]` tables, tried in order, the first
        /// that matches a request choosing its `pool` (`api` or `chat`). A rule matches on
        /// `host` (`shop.example` or `*.shop.example`, port ignored), `path_prefix` (default
        /// `/`), `methods` (such as `["GET", "HEAD"]`) and `headers` (`{ x-canary = "1" }`,
        /// `"*"` for any value), each absent condition matching anything; it may forward the
        /// path with its prefix removed (`strip_prefix = true`) or replaced
        /// (`rewrite_prefix = "/v2/"`), and set and remove headers of the request and of the
        /// response (`request_headers = { set = { x-env = "prod" }, remove = ["x-debug"] }`,
        /// likewise `response_headers`). A request no rule matches gets 404 `no_route`; a rule
        /// that can never match, because one before it matches every request it would, is an
        /// error. A reload applies new rules. Default: `/api/v1/chat/` (the WebSocket, history
        /// and presence) to chat, every other path to api.
        file routes: Vec<RouteRule> = default_routes(),
        /// Rate limits: a list of `[[gateway.rate_limits]]` tables, each giving every client a
        /// token bucket for the requests it covers: `per_second` (required) and `burst`
        /// (default: one second's worth), for `pool` (`api`, `chat`, or empty for both) and
        /// the paths under `prefix` (default `/`), clients told apart by `key` (`client_ip`,
        /// the default, or `jwt_subject` — the user of a valid session token, checked with
        /// `auth.jwt_secret` — `header:NAME`, `cookie:NAME`, `query:NAME`, falling back to
        /// the client IP). The most specific rule applies (its pool, then the longest prefix);
        /// beyond its bucket a client gets 429 with `Retry-After`. Default: none.
        file rate_limits: Vec<RateLimitRule> = Vec::new(),
        /// Client connections one IP address may hold open on the public listener at once;
        /// beyond it new connections from that address are closed at once. 0: no cap.
        /// Default 1024: far above a browser's handful or a NAT's busy office, far below the
        /// 10,000 the whole listener takes, so one address cannot hold every slot.
        live max_connections_per_ip: usize = 1024,
        /// How the `api` pool balances and checks its instances (`STRATA_GATEWAY_API_<KEY>`).
        /// Kept apart from `pools`, which only lists instances, so the settings also apply to
        /// the pools `strata up` builds from its own instances. Default: round robin (api
        /// instances are stateless and alike).
        section api: PoolSettings = PoolSettings::default(),
        /// How the `chat` pool balances and checks its instances (`STRATA_GATEWAY_CHAT_<KEY>`),
        /// the same keys. Default: consistent hash on the `room` query parameter of
        /// `/api/v1/chat/ws?room=…`, so every member of a room reaches the chat instance that
        /// holds the room.
        section chat: PoolSettings = PoolSettings::chat(),
        /// HTTP/2 from clients (`STRATA_GATEWAY_HTTP2_<KEY>`): stream and reset limits and
        /// the idle timeout of their connections.
        section http2: Http2Settings = Http2Settings::default(),
        /// The operations view on the admin listener (`STRATA_GATEWAY_OPS_<KEY>`): the
        /// sources of the event-pipeline figures it shows and how many may watch at once.
        section ops: OpsConfig = OpsConfig::default(),
    }
    setters {
        /// The pools' instances in one value, `api=URL,URL;chat=URL` (pools separated by `;`):
        /// each pool named replaces the file's pool of that name.
        live upstream => GatewayConfig::set_upstream,
    }
    validate = GatewayConfig::check;
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

    /// The keys (`gateway.listen`) that differ in `new` and that a reload cannot apply: those
    /// declared `restart`, and `gateway.tls_cert` when TLS is turned on or off (the files
    /// themselves are re-read).
    pub fn needs_restart(&self, new: &GatewayConfig) -> Vec<String> {
        let mut keys = Vec::new();
        self.restart_changes(new, SECTION, &mut keys);
        if self.tls_enabled() != new.tls_enabled() {
            keys.push(format!("{SECTION}.tls_cert"));
        }
        keys
    }

    /// The `upstream` key: each pool it names replaces the pool of that name.
    fn set_upstream(&mut self, value: &str) -> Result<(), String> {
        for pool in instance::parse_upstreams(value)? {
            self.pools.retain(|p| p.name != pool.name);
            self.pools.push(pool);
        }
        Ok(())
    }

    /// The rules between keys, and the pools' instances.
    fn check(&self, checks: &mut Checks<'_>) {
        checks.check(
            self.admin_listen.ip().is_loopback() || !self.admin_token.is_empty(),
            "admin_token",
            "required when gateway.admin_listen is not a loopback address",
        );
        checks.check(
            self.tls_cert.as_os_str().is_empty() == self.tls_key.as_os_str().is_empty(),
            if self.tls_cert.as_os_str().is_empty() {
                "tls_cert"
            } else {
                "tls_key"
            },
            "gateway.tls_cert and gateway.tls_key go together: set both or neither",
        );
        for (key, message) in route_problems(&self.routes) {
            checks.problem(&key, &message);
        }
        for (i, rule) in self.rate_limits.iter().enumerate() {
            if let Some(message) = rule.problem() {
                checks.problem(&format!("rate_limits[{i}]"), &message);
            }
        }
        for (i, pool) in self.pools.iter().enumerate() {
            let key = format!("pools[{i}]");
            checks.check(
                ["api", "chat"].contains(&pool.name.as_str()),
                &key,
                "pool name must be `api` or `chat`",
            );
            checks.check(
                !pool.instances.is_empty(),
                &key,
                "a pool needs at least one instance",
            );
            for url in &pool.instances {
                if let Err(message) = parse_instance_url(url) {
                    checks.problem(&key, &message);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
