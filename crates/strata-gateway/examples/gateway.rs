//! Runs the gateway alone, configured from `STRATA_*` variables, with a build of this crate
//! only: for quick manual checks while working on the gateway. `strata serve gateway` is the
//! product (and what `bench/gateway-vs-peers.sh` measures).
//!
//! ```text
//! STRATA_GATEWAY_LISTEN=127.0.0.1:8080 STRATA_GATEWAY_ADMIN_LISTEN=127.0.0.1:9090 \
//! STRATA_GATEWAY_UPSTREAM=api=http://127.0.0.1:8101,http://127.0.0.1:8102 \
//! STRATA_LOG_LEVEL=warn STRATA_GATEWAY_WORKERS=1 \
//! cargo run --release -p strata-gateway --example gateway
//! ```

use serde::{Deserialize, Serialize};
use strata_core::config::{LogConfig, Section};
use strata_core::config_section;
use strata_core::telemetry::init_logging;
use strata_gateway::config::GatewayConfig;
use strata_gateway::{Gateway, Limits};

config_section! {
    /// The two sections this example reads, composed as the binary composes all of them.
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        /// Logs.
        section log: LogConfig = LogConfig::default(),
        /// The gateway.
        section gateway: GatewayConfig = GatewayConfig::default(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(None, std::env::vars(), &[])?;
    init_logging(&config.log);
    let limits = Limits::from_config(&config.gateway);
    // Worker 0 runs here, on a single-threaded runtime; the gateway starts the others, each on
    // its own (see `Limits::workers`). `strata serve gateway` runs all of them on threads of
    // their own.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let gateway = Gateway::build_with_limits(&config.gateway, limits).await?;
            eprintln!(
                "gateway on {} (admin {})",
                gateway.local_addr(),
                gateway.admin_addr()
            );
            let shutdown = strata_core::Shutdown::new();
            tokio::spawn({
                let shutdown = shutdown.clone();
                async move {
                    strata_core::shutdown::signal().await;
                    shutdown.cancel();
                }
            });
            gateway.run(shutdown).await?;
            Ok(())
        })
}
