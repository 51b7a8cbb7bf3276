//! The outbox relay: publishes the events the store's transactions wrote to the outbox, in
//! order, and stamps each once the bus confirmed it (see `strata_store::OutboxRepo::relay`).
//! It also prunes events sent longer ago than the retention period.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_bus::{AnyBus, Bus, BusError};
use strata_core::Shutdown;
use strata_store::{OutboxMessage, Store};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

use crate::envelope::Envelope;
use crate::metrics::WorkerMetrics;
use crate::settings::PipelineSettings;

/// How often sent events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Pause after a bus or store failure before trying again.
const FAILURE_PAUSE: Duration = Duration::from_millis(500);
/// Publishes of one round awaiting the bus's confirmation at once. 64: enough to hide the
/// round trip to a bus on loopback or a LAN, well under async-nats's default limit of
/// in-flight JetStream acks.
const PUBLISH_WINDOW: usize = 64;

/// Publishes `batch` with up to [`PUBLISH_WINDOW`] publishes awaiting the bus's confirmation
/// at once, and returns the ids of the longest prefix the bus confirmed, with the error that
/// ended it, if any. Publishes past a failure may have been stored too: unstamped, they are
/// published again next round (a duplicate the handlers absorb).
///
/// Why a window rather than one publish at a time: each confirmation is a round trip to the
/// bus, and waiting for each in turn made the relay the pipeline's slowest step under load
/// (full batches back to back, see `bench/events.sh`). The publishes of one round may reach
/// the bus in any order, which no consumer can tell: events of one order never share a round
/// (an event is written by the handler of the one before it, which the bus delivers only once
/// an earlier round published it), and rounds follow one another.
async fn publish(bus: &AnyBus, batch: Vec<OutboxMessage>) -> (Vec<i64>, Option<BusError>) {
    let window = Arc::new(Semaphore::new(PUBLISH_WINDOW));
    let mut confirmations = Vec::with_capacity(batch.len());
    for message in &batch {
        let Ok(permit) = Arc::clone(&window).acquire_owned().await else {
            break;
        };
        let bus = bus.clone();
        let (id, topic) = (message.id, message.topic.clone());
        let payload = Envelope::from_outbox(message).to_bytes();
        confirmations.push(tokio::spawn(async move {
            let confirmed = bus.publish(&topic, payload).await.map(|_| id);
            drop(permit);
            confirmed
        }));
    }
    let mut sent = Vec::with_capacity(batch.len());
    for confirmation in confirmations {
        match confirmation.await {
            Ok(Ok(id)) => sent.push(id),
            Ok(Err(e)) => return (sent, Some(e)),
            Err(e) => {
                return (
                    sent,
                    Some(BusError::Nats {
                        op: "publish",
                        source: e.into(),
                    }),
                );
            }
        }
    }
    (sent, None)
}

/// The shortest pause between polls, right after a round that relayed something.
const BUSY_POLL: Duration = Duration::from_millis(1);

/// Relays until `shutdown`. A full batch is followed at once by the next one. Otherwise the
/// pause before the next poll starts at [`BUSY_POLL`] after a round that relayed something and
/// doubles with every empty round up to `relay_interval`: while events flow, each one waits
/// about a millisecond in the outbox; an idle relay still polls only every `relay_interval`.
pub(crate) async fn run(
    store: Store,
    bus: AnyBus,
    metrics: WorkerMetrics,
    settings: Arc<PipelineSettings>,
    shutdown: Shutdown,
) {
    tracing::info!(batch = settings.relay_batch, "outbox relay running");
    let mut last_prune: Option<Instant> = None;
    let mut idle_pause = BUSY_POLL;
    while !shutdown.is_cancelled() {
        let pause = match store
            .outbox()
            .relay(settings.relay_batch, |batch| publish(&bus, batch))
            .await
        {
            Ok((sent, None)) => {
                metrics.relayed.inc_by(sent as u64);
                if sent >= settings.relay_batch as usize {
                    Duration::ZERO
                } else {
                    idle_pause = if sent > 0 {
                        BUSY_POLL
                    } else {
                        (idle_pause * 2).min(settings.relay_interval)
                    };
                    idle_pause.min(settings.relay_interval)
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
