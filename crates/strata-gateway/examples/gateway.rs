//! Runs the gateway alone, configured from `STRATA_*` variables: for benchmarks and manual
//! checks before the `strata` binary wires it in.
//!
//! ```text
//! STRATA_GATEWAY_LISTEN=127.0.0.1:8080 STRATA_GATEWAY_ADMIN_LISTEN=127.0.0.1:9090 \
//! STRATA_GATEWAY_UPSTREAM=api=http://127.0.0.1:8101,http://127.0.0.1:8102 \
//! STRATA_LOG_LEVEL=warn STRATA_GATEWAY_WORKERS=1 [GATEWAY_RUNTIME=multi] \
//! cargo run --release -p strata-gateway --example gateway
//! ```

use strata_core::Config;
use strata_core::telemetry::init_logging;
use strata_gateway::{Gateway, Limits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(None, std::env::vars(), &[])?;
    init_logging(&config.log);
    let mut limits = Limits::from_config(&config.gateway);
    // Worker 0 runs here; the gateway starts the others, each on its own single-threaded
    // runtime (see `Limits::workers`), as `strata serve gateway` runs all of them.
    // GATEWAY_RUNTIME=multi serves everything from one multi-threaded runtime with that many
    // threads instead, for comparison.
    let mut runtime = if std::env::var("GATEWAY_RUNTIME").is_ok_and(|r| r == "multi") {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(limits.workers.max(1));
        limits.workers = 1;
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    runtime.enable_all().build()?.block_on(async {
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
