//! Runs the gateway alone, configured from `STRATA_*` variables: for benchmarks and manual
//! checks before the `strata` binary wires it in.
//!
//! ```text
//! STRATA_GATEWAY_LISTEN=127.0.0.1:8080 STRATA_GATEWAY_ADMIN_LISTEN=127.0.0.1:9090 \
//! STRATA_GATEWAY_UPSTREAM=api=http://127.0.0.1:8101,http://127.0.0.1:8102 \
//! STRATA_LOG_LEVEL=warn GATEWAY_WORKERS=1 \
//! cargo run --release -p strata-gateway --example gateway
//! ```

use strata_core::Config;
use strata_core::telemetry::init_logging;
use strata_gateway::Gateway;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::load(None, std::env::vars(), &[])?;
    init_logging(&config.log);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = std::env::var("GATEWAY_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
    {
        runtime.worker_threads(workers);
    }
    runtime.enable_all().build()?.block_on(async {
        let gateway = Gateway::build(&config.gateway).await?;
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
