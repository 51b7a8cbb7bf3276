//! The sections that say how the binary runs its roles: `[api]` and `[chat]` (instances and
//! listeners), `[worker]`, `[auth]`, `[admin]` and `[web]` (the storefront the api serves). The binary turns them into each role's own
//! settings when it starts the role.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_api::{CartMode, CartSettings, PeerSettings};
use strata_core::config::{Checks, Secret, parse, valid_name};
use strata_core::config_section;
use strata_gateway::config::{Algorithm, GatewayConfig, HashKey, PoolSettings};

/// Most instances of one role that `strata up` starts in one process.
const MAX_INSTANCES: usize = 64;

config_section! {
    /// A role that runs as one or more instances (api, chat).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct RoleConfig {
        /// How many instances `strata up` starts (at most 64); `strata serve` runs one per
        /// process.
        restart instances: usize = 1;
            check |n| *n <= MAX_INSTANCES, "at most 64 instances per process",
        /// Address of the first instance; instance `i` (from 0) listens on port `port + i`.
        restart listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0)),
        /// `strata serve` only: on SIGTERM, how long an instance goes on serving with
        /// `/readyz` answering 503 before it stops accepting (api) or tells its clients to
        /// reconnect (chat), in milliseconds. Default 2000: the gateway checks readiness every
        /// 500 ms and takes an instance out after two failed checks, so by then no new request
        /// or connection is sent to it and none meets a closed port. `strata up` tells its
        /// gateway first and needs no delay.
        restart drain_delay_ms: u64 = 2000; check |ms| *ms <= 300_000, "at most 300000 (5 minutes)",
        /// Milliseconds a request has to produce its response before the instance gives it
        /// up and answers 504 with the JSON body (`request_timeout`), as the gateway answers
        /// its own `gateway.request_timeout_ms`; a WebSocket is bound by it only until it is
        /// upgraded. Default 25000: under the gateway's 30000, so the instance stops the work
        /// first and its answer reaches the client.
        restart request_timeout_ms: u64 = 25_000; check |ms| *ms >= 1, "must be at least 1",
    }
}

impl RoleConfig {
    /// `instances` instances from port `port` of the loopback address.
    pub fn new(instances: usize, port: u16) -> Self {
        Self {
            instances,
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            ..Self::default()
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

config_section! {
    /// Where the api keeps carts (`[carts]`, `STRATA_CARTS_<KEY>`). `local` is a lab setting:
    /// it exists to measure the stateful design beside the shared one, not to run a shop.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct CartsConfig {
        /// `shared` (default: carts in the store, cached; any api instance serves any cart)
        /// or `local` (each cart in the memory of one api instance, durable through that
        /// instance's own log and snapshots under `dir`). Several local instances share the
        /// carts out through the gateway (`peers_url`); `strata up` sets that up itself.
        restart mode: CartMode = CartMode::Shared,
        /// Local mode: the directory of the carts' logs and snapshots, one subdirectory per
        /// instance name. Default empty: `<store.data_dir>/carts`, beside the embedded store.
        restart dir: PathBuf = PathBuf::new() => parse::verbatim,
        /// Local mode: seconds between snapshots (taken only when a cart changed), each of
        /// which replaces the log. Default 60: a minute of changes is a small log to replay
        /// at start-up, and writing a million carts (about 50 MB) once a minute is cheap.
        restart snapshot_interval_secs: u64 = 60; check |s| *s >= 1, "must be at least 1",
        /// Local mode: most changes committed by one `fsync` of the log (a change is answered
        /// only after the `fsync` that covers it). Default 1024: under load one `fsync` covers
        /// every change that arrived while the previous one ran; the cap bounds how long the
        /// first of them waits.
        restart fsync_batch: usize = 1024; check |n| (1..=65_536).contains(n), "expected 1..=65536",
        /// Anonymous carts of 1 to 3 lines created at start-up when there are none: in local
        /// mode in the instance (written as its first snapshot), in shared mode in the store
        /// (in batches of 100,000), so the lab can measure start-up, memory and recovery with
        /// many carts without a million requests. Default 0: none.
        restart preload: u64 = 0; check |n| *n <= 10_000_000, "at most 10000000",
        /// Local mode with several api instances: the gateway's admin listener
        /// (`http://host:port`), whose `GET /admin/pools` names the instances that share the
        /// carts; each cart lives on the instance the gateway's consistent hash picks for it,
        /// and carts are handed over when instances join or leave. Default empty: this
        /// instance holds every cart (run one only). `strata up` fills it in.
        restart peers_url: String = String::new() => parse::trimmed;
            check |url| url.is_empty() || url.starts_with("http://"),
            "expected http://host:port (the gateway's admin listener)",
        /// Local mode: the gateway's admin token (`gateway.admin_token`), sent to read the
        /// pool and to drain this instance on shutdown, and required of the calls between
        /// instances on `/internal/carts/`. Default empty: none. Prefer
        /// `STRATA_CARTS_PEERS_TOKEN` to a file.
        restart peers_token: Secret = Secret::default() => parse::trimmed,
        /// Local mode: the gateway pool of the api instances. Default `api`.
        restart peers_pool: String = "api".into() => parse::trimmed;
            check |pool| !pool.is_empty(), "must name a pool",
        /// Local mode: milliseconds between two reads of the pool. Default 500: a new or
        /// leaving instance is seen within half a second (sooner when a peer shows it), for
        /// two small requests a second per instance.
        restart peers_poll_ms: u64 = 500; check |ms| *ms >= 50, "must be at least 50",
        /// Local mode: this instance's address as the gateway's pool lists it (`host:port`).
        /// Default empty: the address the instance listens on (right when the gateway reaches
        /// it there, as with `strata up` and on one machine).
        restart advertise: String = String::new() => parse::trimmed,
    }
}

impl CartsConfig {
    /// The cart settings of `strata up`'s api instances: with local carts and more than one
    /// instance, and no `peers_url`, the instances read their peers from up's own gateway
    /// (its admin listener and token).
    pub fn up_settings(
        &self,
        data_dir: &Path,
        instances: usize,
        gateway: &GatewayConfig,
    ) -> CartSettings {
        if self.mode != CartMode::Local || instances <= 1 || !self.peers_url.is_empty() {
            return self.settings(data_dir);
        }
        let filled = Self {
            peers_url: format!("http://{}", gateway.admin_listen),
            peers_token: gateway.admin_token.clone(),
            ..self.clone()
        };
        filled.settings(data_dir)
    }

    /// Sets up `strata up`'s api pool for local carts on several instances: consistent hash
    /// on the `strata_cart_owner` cookie, bounded load off, so a cart's requests reach the
    /// instance that holds it.
    pub fn pin_pool(&self, instances: usize, pool: &mut PoolSettings) {
        if self.mode == CartMode::Local && instances > 1 {
            pool.algorithm = Algorithm::ConsistentHash;
            pool.hash_key = HashKey::Cookie("strata_cart_owner".into());
            pool.balance_factor = 0.0;
        }
    }

    /// The api's cart settings; `data_dir` is `store.data_dir`, the default home of `dir`.
    pub fn settings(&self, data_dir: &Path) -> CartSettings {
        CartSettings {
            mode: self.mode,
            dir: if self.dir.as_os_str().is_empty() {
                data_dir.join("carts")
            } else {
                self.dir.clone()
            },
            snapshot_interval: Duration::from_secs(self.snapshot_interval_secs),
            fsync_batch: self.fsync_batch,
            preload: self.preload,
            peers: (self.mode == CartMode::Local && !self.peers_url.is_empty()).then(|| {
                PeerSettings {
                    url: self.peers_url.clone(),
                    token: (!self.peers_token.is_empty()).then(|| self.peers_token.clone()),
                    pool: self.peers_pool.clone(),
                    advertise: (!self.advertise.is_empty()).then(|| self.advertise.clone()),
                    poll: Duration::from_millis(self.peers_poll_ms),
                }
            }),
        }
    }
}

config_section! {
    /// The workers (`[worker]`, `STRATA_WORKER_<KEY>`): how many, where their operational
    /// endpoints listen, and how they consume events and relay the outbox.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct WorkerConfig {
        /// How many workers `strata up` starts. Default 1.
        restart instances: usize = 1;
            check |n| *n <= MAX_INSTANCES, "at most 64 instances per process",
        /// Address of the first worker's endpoints; worker `i` uses port `port + i`. Default
        /// `127.0.0.1:8301`.
        restart listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8301)),
        /// Bearer token of the worker's `/events/*` (stats, dead letters, replay). Default
        /// empty: none needed; required when `listen` is not loopback, since replay changes
        /// state. Prefer `STRATA_WORKER_ADMIN_TOKEN` to a file.
        restart admin_token: Secret = Secret::default() => parse::trimmed,
        /// Milliseconds a request to the endpoints has to produce its response before it is
        /// given up with a JSON 504. Default 25000, as `api.request_timeout_ms`.
        restart request_timeout_ms: u64 = 25_000; check |ms| *ms >= 1, "must be at least 1",
        /// Deliveries handled at once per handler (payment, fulfilment, notifications). Default
        /// 16: overlaps store round trips and the provider's latency without taking every store
        /// connection.
        restart concurrency: usize = 16; check |n| (1..=1024).contains(n), "expected 1..=1024",
        /// Deliveries of one event before it goes to the dead-letter stream (`strata events
        /// dlq`). Failures because the store cannot serve (down, restarting) do not send an
        /// event there: those are retried for as long as the outage lasts. Default 5.
        restart max_deliveries: u32 = 5; check |n| (1..=100).contains(n), "expected 1..=100",
        /// First retry delay in ms, doubled per delivery up to `retry_max_ms`. Default 500.
        restart retry_base_ms: u64 = 500; check |ms| *ms >= 1, "must be at least 1",
        /// Longest retry delay in ms. Default 30000.
        restart retry_max_ms: u64 = 30_000,
        /// Milliseconds an unanswered delivery waits before the bus hands it to another worker
        /// (how fast a crashed worker's events move on). Default 30000.
        restart ack_wait_ms: u64 = 30_000; check |ms| *ms >= 100, "must be at least 100",
        /// Run the outbox relay. Default true. On SQLite `strata up` runs it in its first worker
        /// only (SQLite has no row locks to share the outbox between relays).
        restart relay: bool = true,
        /// Outbox events per relay round. Default 256.
        restart relay_batch: u32 = 256; check |n| (1..=10_000).contains(n), "expected 1..=10000",
        /// Milliseconds an idle relay waits between polls. Default 50: the delay a quiet system
        /// adds to an event.
        restart relay_interval_ms: u64 = 50; check |ms| *ms >= 1, "must be at least 1",
        /// Seconds sent outbox events are kept before pruning. Default 86400 (a day, to
        /// inspect).
        restart outbox_retention_secs: u64 = 86_400,
        /// The simulated payment provider: share of orders declined (0.0..=1.0), whose stock
        /// goes back. Default 0.1.
        restart payment_decline_rate: f64 = 0.1;
            check |rate| (0.0..=1.0).contains(rate), "expected 0.0..=1.0",
        /// The simulated payment provider: share of calls that fail as unavailable (retried,
        /// then dead-lettered). Default 0.0.
        restart payment_error_rate: f64 = 0.0;
            check |rate| (0.0..=1.0).contains(rate), "expected 0.0..=1.0",
        /// The simulated payment provider: milliseconds per call. Default 5.
        restart payment_latency_ms: u64 = 5,
        /// The simulated fulfilment: milliseconds from an order's payment to its shipping
        /// (each order waiting holds one of `concurrency`). Default: 3000 in `strata up`, so
        /// an order is seen to move from placed to paid to shipped; 0 in `strata serve`.
        restart fulfilment_delay_ms: Option<u64> = None => optional_ms;
            check |ms| ms.is_none_or(|ms| ms <= 600_000), "at most 600000",
    }
    validate = WorkerConfig::check;
}

impl WorkerConfig {
    /// The listen address of worker `index` (0-based). Port 0 stays 0 (the OS picks).
    pub fn instance_addr(&self, index: usize) -> SocketAddr {
        RoleConfig {
            instances: self.instances,
            listen: self.listen,
            ..RoleConfig::default()
        }
        .instance_addr(index)
    }

    /// The rules between keys.
    fn check(&self, checks: &mut Checks<'_>) {
        checks.check(
            self.retry_max_ms >= self.retry_base_ms,
            "retry_max_ms",
            "must be at least retry_base_ms",
        );
        checks.check(
            !self.admin_token.is_empty() || self.listen.ip().is_loopback(),
            "admin_token",
            "required when worker.listen is not a loopback address",
        );
    }
}

config_section! {
    /// How the api authenticates (`[auth]`, `STRATA_AUTH_<KEY>`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct AuthConfig {
        /// The HS256 secret that signs session tokens, at least 32 bytes, the same for every api
        /// process of a deployment. Required by `strata serve api` (set
        /// `STRATA_AUTH_JWT_SECRET` rather than writing it in a file); `strata up` generates one
        /// (with the OS's random generator) on first start and keeps it in
        /// `<store.data_dir>/jwt.secret` (mode 0600), so tokens survive restarts. Default empty.
        restart jwt_secret: Secret = Secret::default() => parse::verbatim;
            check |secret| secret.is_empty() || secret.expose().len() >= 32,
            "must be at least 32 bytes",
        /// Names the signing key in every token's `kid` header. Default `k1`.
        restart key_id: String = "k1".into() => parse::trimmed;
            check |id| valid_name(id), "expected letters, digits, `-` or `_`",
        /// Lifetime of a session token in seconds. Default 3600: a stolen token is useful for an
        /// hour at most, and a granted role shows within the hour.
        restart token_ttl_secs: u64 = 3600; check |secs| *secs >= 1, "must be at least 1",
        /// argon2id memory per password hash, KiB, at least 8. Default 19456 (19 MiB), OWASP's
        /// recommendation with `password_iterations` 2.
        restart password_memory_kib: u32 = 19 * 1024; check |kib| *kib >= 8, "must be at least 8",
        /// argon2id passes over that memory, at least 1. Default 2.
        restart password_iterations: u32 = 2; check |n| *n >= 1, "must be at least 1",
    }
}

config_section! {
    /// The first admin account (`[admin]`, `STRATA_ADMIN_EMAIL`, `STRATA_ADMIN_PASSWORD`),
    /// created by the api at start-up when missing, promoted to admin when present. Both empty
    /// (the default): no admin is bootstrapped.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct AdminConfig {
        /// The first admin's email. Default empty.
        restart email: String = String::new() => parse::trimmed,
        /// The first admin's password (8 to 128 characters), used only when the account is
        /// created. Default empty.
        restart password: Secret = Secret::default() => parse::verbatim;
            check |password| password.is_empty()
                || (8..=128).contains(&password.expose().chars().count()),
            "must have 8 to 128 characters",
    }
    validate = AdminConfig::check;
}

impl AdminConfig {
    /// The two keys go together.
    fn check(&self, checks: &mut Checks<'_>) {
        checks.check(
            self.email.is_empty() == self.password.is_empty(),
            if self.email.is_empty() {
                "email"
            } else {
                "password"
            },
            "admin.email and admin.password go together: set both or neither",
        );
    }
}

config_section! {
    /// The storefront the api instances serve (`[web]`, `STRATA_WEB_<KEY>`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct WebConfig {
        /// The currencies the storefront shows prices in: `CODE=rate` entries separated by
        /// commas, the first the base currency (every price is integer cents of it) at rate 1,
        /// the others in units per unit of the base (at most 6 decimals, 16 currencies). A
        /// visitor's choice is kept in a cookie; what is charged stays the base amount.
        /// Default `EUR=1, USD=1.08, GBP=0.85, JPY=162`: the shop prices in euros (its home tax
        /// region is EU-DE) and shows three other common currencies at demo rates.
        restart currencies: String = strata_api::DEFAULT_CURRENCIES.into() => parse::trimmed;
            check |table| strata_api::Currencies::parse(table).is_ok(),
            "expected `CODE=rate, …`: three-letter codes, positive rates, the base first at rate 1",
    }
}

impl WebConfig {
    /// The currency table, parsed.
    ///
    /// # Errors
    /// What is wrong with the table (the loaded configuration was checked already).
    pub fn currencies(&self) -> anyhow::Result<strata_api::Currencies> {
        strata_api::Currencies::parse(&self.currencies)
            .map_err(|e| anyhow::anyhow!("web.currencies: {e}"))
    }
}

/// An optional number of milliseconds: empty for none (the command's default).
fn optional_ms(value: &str) -> Result<Option<u64>, String> {
    match value.trim() {
        "" => Ok(None),
        ms => parse::from_str(ms).map(Some),
    }
}
