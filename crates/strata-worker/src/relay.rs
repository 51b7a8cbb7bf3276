//! The outbox relay: publishes the events the store's transactions wrote to the outbox, in
//! order, and stamps each once the bus confirmed it (see `strata_store::OutboxRepo::relay`).
//! It also prunes events sent longer ago than the retention period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_bus::{AnyBus, Bus, BusError};
use strata_core::Shutdown;
use strata_store::{OutboxMessage, Store};
use time::OffsetDateTime;

use crate::envelope::Envelope;
use crate::metrics::WorkerMetrics;
use crate::settings::PipelineSettings;

/// How often sent events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Pause after a bus or store failure before trying again.
const FAILURE_PAUSE: Duration = Duration::from_millis(500);

/// Publishes `batch` in order, stopping at the first failure; returns the ids confirmed.
async fn publish(bus: &AnyBus, batch: Vec<OutboxMessage>) -> (Vec<i64>, Option<BusError>) {
    let mut sent = Vec::with_capacity(batch.len());
    for message in &batch {
        let envelope = Envelope::from_outbox(message);
        match bus.publish(&message.topic, envelope.to_bytes()).await {
            Ok(_) => sent.push(message.id),
            Err(e) => return (sent, Some(e)),
        }
    }
    (sent, None)
}

/// Relays until `shutdown`. A full batch is followed at once by the next one; otherwise the
/// relay polls every `relay_interval`.
pub(crate) async fn run(
    store: Store,
    bus: AnyBus,
    metrics: WorkerMetrics,
    settings: Arc<PipelineSettings>,
    shutdown: Shutdown,
) {
    tracing::info!(batch = settings.relay_batch, "outbox relay running");
    let mut last_prune: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        let pause = match store
            .outbox()
            .relay(settings.relay_batch, |batch| publish(&bus, batch))
            .await
        {
            Ok((sent, None)) => {
                metrics.relayed.inc_by(sent as u64);
                if sent < settings.relay_batch as usize {
                    settings.relay_interval
                } else {
                    Duration::ZERO
                }
            }
            Ok((sent, Some(e))) => {
                metrics.relayed.inc_by(sent as u64);
                tracing::warn!(error = %e, published = sent, "bus refused an event, retrying");
                FAILURE_PAUSE
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox, retrying");
                FAILURE_PAUSE
            }
        };
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let cutoff = time::Duration::try_from(settings.outbox_retention)
                .ok()
                .and_then(|keep| OffsetDateTime::now_utc().checked_sub(keep))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            match store.outbox().prune(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "pruned sent outbox events"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
            }
        }
        if !pause.is_zero() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
    tracing::info!("outbox relay stopped");
}
