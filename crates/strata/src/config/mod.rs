//! The whole configuration of a strata process, composed from the sections their crates
//! declare: `[log]`, `[store]`, `[cache]`, `[bus]` and `[objects]` from strata-core, `[gateway]` from
//! strata-gateway, and the binary's own sections for running roles ([`roles`]). Adding a key
//! means declaring it in its section; this composition, the variables, `strata.toml` and the
//! README's table follow (the tests below check the two documents).

mod roles;

use serde::{Deserialize, Serialize};
use strata_api::CartMode;
use strata_core::config::{BusConfig, CacheConfig, Checks, LogConfig, ObjectsConfig, StoreConfig};
use strata_core::config_section;
use strata_gateway::config::GatewayConfig;

pub use roles::{AdminConfig, AuthConfig, CartsConfig, RoleConfig, WebConfig, WorkerConfig};

config_section! {
    /// The whole configuration of a strata process. Its `Default` is the built-in defaults:
    /// 3 api instances on 8101…, 2 chat on 8201…, 1 worker on 8301.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct Config {
        /// How logs are written (STRATA_LOG_<KEY>).
        section log: LogConfig = LogConfig::default(),
        /// The relational store (STRATA_STORE_<KEY>).
        section store: StoreConfig = StoreConfig::default(),
        /// The cache (STRATA_CACHE_<KEY>).
        section cache: CacheConfig = CacheConfig::default(),
        /// The message bus (STRATA_BUS_<KEY>).
        section bus: BusConfig = BusConfig::default(),
        /// The object store of product images (STRATA_OBJECTS_<KEY>).
        section objects: ObjectsConfig = ObjectsConfig::default(),
        /// The gateway (STRATA_GATEWAY_<KEY>).
        section gateway: GatewayConfig = GatewayConfig::default(),
        /// The api instances `strata up` starts (STRATA_API_<KEY>); instance i listens on the
        /// port of `listen` + i.
        section api: RoleConfig = RoleConfig::new(3, 8101),
        /// The chat instances `strata up` starts (STRATA_CHAT_<KEY>).
        section chat: RoleConfig = RoleConfig::new(2, 8201),
        /// Where the api keeps carts (STRATA_CARTS_<KEY>): a lab setting.
        section carts: CartsConfig = CartsConfig::default(),
        /// The workers: the outbox relay and the event handlers (STRATA_WORKER_<KEY>).
        section worker: WorkerConfig = WorkerConfig::default(),
        /// How the api authenticates (STRATA_AUTH_<KEY>).
        section auth: AuthConfig = AuthConfig::default(),
        /// The first admin, created at start-up when missing, promoted when the account exists
        /// (STRATA_ADMIN_<KEY>). Both empty: no admin is bootstrapped.
        section admin: AdminConfig = AdminConfig::default(),
        /// The storefront the api instances serve (STRATA_WEB_<KEY>).
        section web: WebConfig = WebConfig::default(),
    }
    validate = Config::check;
}

impl Config {
    /// Rules across sections.
    fn check(&self, checks: &mut Checks<'_>) {
        checks.check(
            self.api.instances >= 1,
            "api.instances",
            "at least 1 api instance is needed",
        );
        checks.check(
            self.carts.mode == CartMode::Shared
                || self.api.instances == 1
                || !self.carts.peers_url.is_empty()
                || self.gateway.admin_listen.port() != 0,
            "carts.mode",
            "local carts on several api instances read their peers from the gateway's admin \
             listener: give gateway.admin_listen a fixed port (or set carts.peers_url)",
        );
    }
}

#[cfg(test)]
mod tests;
