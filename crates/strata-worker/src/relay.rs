//! The outbox relay: publishes the events the store's transactions wrote to the outbox, in
//! order, and stamps each once the bus confirmed it (see `strata_store::OutboxRepo::relay`:
//! a batch is claimed and stamped in short statements of their own, and no transaction or
//! row lock is held while the bus is waited for). It also prunes events sent longer ago than
//! the retention period.
//!
//! Publishes run inside the relay's own task, never spawned: when the relay stops, those
//! still in flight are dropped with it, and their events, unstamped, are published again by
//! the next relay round (here or in another worker). Nothing the relay started outlives
//! [`run`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
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
/// Publishes of one round awaiting the bus's confirmation at once. 64: enough to hide the
/// round trip to a bus on loopback or a LAN, well under async-nats's default limit of
/// in-flight JetStream acks.
const PUBLISH_WINDOW: usize = 64;
/// How long a relay's claim on a batch lasts: far longer than publishing a batch takes
/// (milliseconds), and short, because it is how long the events of a relay that died
/// mid-batch wait before another relay (or its own restart) takes them over.
const CLAIM_LEASE: Duration = Duration::from_secs(5);
/// Longest wait for one round's confirmations: half the lease, so a relay stamps or gives
/// up its batch while its claim still holds, and no other relay publishes it meanwhile.
const ROUND_LIMIT: Duration = Duration::from_millis(2500);

/// Publishes `batch` with up to [`PUBLISH_WINDOW`] publishes awaiting the bus's confirmation
/// at once, and returns the ids of the longest prefix the bus confirmed, with the error that
/// ended it, if any. Publishes past a failure may have been stored too: unstamped, they are
/// published again next round (a duplicate the handlers absorb). When `shutdown` fires, or
/// [`ROUND_LIMIT`] has passed, the publishes still in flight are dropped and the confirmed
/// prefix returned.
///
/// Why a window rather than one publish at a time: each confirmation is a round trip to the
/// bus, and waiting for each in turn made the relay the pipeline's slowest step under load
/// (full batches back to back, see `bench/events.sh`). The publishes of one round may reach
/// the bus in any order, which no consumer can tell: events of one order never share a round
/// (an event is written by the handler of the one before it, which the bus delivers only once
/// an earlier round published it), and rounds follow one another.
async fn publish(
    bus: &AnyBus,
    batch: Vec<OutboxMessage>,
    shutdown: &Shutdown,
) -> (Vec<i64>, Option<BusError>) {
    publish_with(batch, shutdown, |message| {
        let bus = bus.clone();
        let (id, topic) = (message.id, message.topic.clone());
        let payload = Envelope::from_outbox(message).to_bytes();
        async move { bus.publish(&topic, payload).await.map(|_| id) }
    })
    .await
}

/// [`publish`] with the bus call given: `publish_one` makes the future that publishes one
/// message and yields its id once confirmed. The futures run in the caller's task (a
/// buffered stream, in batch order), so returning drops every one still in flight.
async fn publish_with<P, F>(
    batch: Vec<OutboxMessage>,
    shutdown: &Shutdown,
    publish_one: P,
) -> (Vec<i64>, Option<BusError>)
where
    P: FnMut(&OutboxMessage) -> F,
    F: Future<Output = Result<i64, BusError>>,
{
    let mut confirmations =
        futures_util::stream::iter(batch.iter().map(publish_one)).buffered(PUBLISH_WINDOW);
    let mut sent = Vec::with_capacity(batch.len());
    let deadline = tokio::time::sleep(ROUND_LIMIT);
    tokio::pin!(deadline);
    loop {
        let confirmation = tokio::select! {
            biased;
            () = shutdown.cancelled() => return (sent, None),
            () = &mut deadline => {
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the bus did not confirm the round's publishes in time",
                );
                return (sent, Some(BusError::Nats { op: "publish", source: late.into() }));
            }
            confirmation = confirmations.next() => confirmation,
        };
        match confirmation {
            Some(Ok(id)) => sent.push(id),
            Some(Err(e)) => return (sent, Some(e)),
            None => return (sent, None),
        }
    }
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
            .relay(settings.relay_batch, CLAIM_LEASE, |batch| {
                publish(&bus, batch, &shutdown)
            })
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn message(id: i64) -> OutboxMessage {
        OutboxMessage {
            id,
            topic: "order.placed".into(),
            payload: "{}".into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            sent_at: None,
            traceparent: None,
        }
    }

    /// Counts the publishes alive (started, not yet finished or dropped).
    struct Alive(Arc<AtomicUsize>);

    impl Alive {
        fn new(count: &Arc<AtomicUsize>) -> Self {
            count.fetch_add(1, Ordering::SeqCst);
            Self(Arc::clone(count))
        }
    }

    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A bus that confirms the first two publishes and never the others: on shutdown the
    /// round returns the confirmed prefix, and no publish is left running behind it.
    #[tokio::test]
    async fn shutdown_drops_every_publish_in_flight() {
        let alive = Arc::new(AtomicUsize::new(0));
        let shutdown = Shutdown::new();
        let batch: Vec<OutboxMessage> = (1..=10).map(message).collect();
        let round = publish_with(batch, &shutdown, |message| {
            let guard = Alive::new(&alive);
            let id = message.id;
            async move {
                let _guard = guard;
                if id > 2 {
                    std::future::pending::<()>().await;
                }
                Ok(id)
            }
        });
        let stop = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(alive.load(Ordering::SeqCst) > 0, "publishes are waiting");
            shutdown.cancel();
        };
        let ((sent, error), ()) = tokio::join!(round, stop);
        assert_eq!(sent, vec![1, 2]);
        assert!(error.is_none());
        assert_eq!(
            alive.load(Ordering::SeqCst),
            0,
            "a publish outlived the round"
        );
    }

    /// A bus that stops confirming ends the round after the limit, well within the claim.
    #[tokio::test(start_paused = true)]
    async fn a_round_ends_within_its_claim() {
        assert!(ROUND_LIMIT < CLAIM_LEASE);
        let shutdown = Shutdown::new();
        let batch: Vec<OutboxMessage> = (1..=3).map(message).collect();
        let started = tokio::time::Instant::now();
        let (sent, error) = publish_with(batch, &shutdown, |message| {
            let id = message.id;
            async move {
                if id > 1 {
                    std::future::pending::<()>().await;
                }
                Ok(id)
            }
        })
        .await;
        assert_eq!(sent, vec![1]);
        assert!(error.is_some());
        assert_eq!(started.elapsed(), ROUND_LIMIT);
    }

    /// A failed publish ends the round with the prefix before it, and the publishes after it
    /// are dropped, not left running.
    #[tokio::test]
    async fn a_failure_returns_the_confirmed_prefix_and_drops_the_rest() {
        let alive = Arc::new(AtomicUsize::new(0));
        let shutdown = Shutdown::new();
        let batch: Vec<OutboxMessage> = (1..=5).map(message).collect();
        let (sent, error) = publish_with(batch, &shutdown, |message| {
            let guard = Alive::new(&alive);
            let id = message.id;
            async move {
                let _guard = guard;
                match id {
                    1 | 2 => Ok(id),
                    3 => Err(BusError::Closed),
                    _ => {
                        std::future::pending::<()>().await;
                        Ok(id)
                    }
                }
            }
        })
        .await;
        assert_eq!(sent, vec![1, 2]);
        assert!(error.is_some());
        assert_eq!(
            alive.load(Ordering::SeqCst),
            0,
            "a publish outlived the round"
        );
    }
}
