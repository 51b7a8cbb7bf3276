//! [`EventStats`]: the pipeline at a glance, for `strata events stats`, `/events/stats` and
//! the lag gauges: per stream what was published and is stored, per consumer what waits, the
//! dead letters, and the outbox events not yet relayed.

use serde::{Deserialize, Serialize};
use strata_bus::{AnyBus, Bus};
use strata_store::Store;
use time::OffsetDateTime;

use crate::WorkerError;
use crate::dlq::DLQ_FAMILY;
use crate::metrics::WorkerMetrics;

/// The family the order events travel in.
pub const ORDER_FAMILY: &str = "order";

/// Figures of every stream of the pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStats {
    /// Outbox events written and not yet published.
    pub outbox_pending: i64,
    /// Age in milliseconds of the oldest of them (0 when none).
    pub outbox_oldest_age_ms: i64,
    /// The streams.
    pub streams: Vec<StreamStats>,
}

/// One stream and its consumers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    /// The family (`order`, `dlq`).
    pub stream: String,
    /// Messages ever published (the last sequence).
    pub published: u64,
    /// Messages stored now.
    pub stored: u64,
    /// Its durable consumers.
    pub consumers: Vec<ConsumerStats>,
}

/// One durable consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerStats {
    /// Its durable name (the handler).
    pub consumer: String,
    /// Matching messages not yet delivered: the lag.
    pub lag: u64,
    /// Delivered and not yet acknowledged.
    pub pending: u64,
}

impl EventStats {
    /// Reads the figures from the bus and the store.
    ///
    /// # Errors
    /// When the bus or the store cannot be read.
    pub async fn read(bus: &AnyBus, store: &Store) -> Result<Self, WorkerError> {
        let (pending, oldest) = store.outbox().pending().await?;
        let age_ms = oldest.map_or(0, |t| {
            i64::try_from((OffsetDateTime::now_utc() - t).whole_milliseconds().max(0))
                .unwrap_or(i64::MAX)
        });
        let mut streams = Vec::new();
        for family in [ORDER_FAMILY, DLQ_FAMILY] {
            let (published, stored) = match bus.stream_info(family).await? {
                Some(info) => (info.last_seq, info.messages),
                None => (0, 0),
            };
            let consumers = bus
                .consumers(family)
                .await?
                .into_iter()
                .map(|c| ConsumerStats {
                    consumer: c.durable,
                    lag: c.num_pending,
                    pending: c.ack_pending,
                })
                .collect();
            streams.push(StreamStats {
                stream: family.to_owned(),
                published,
                stored,
                consumers,
            });
        }
        Ok(Self {
            outbox_pending: pending,
            outbox_oldest_age_ms: age_ms,
            streams,
        })
    }

    /// True when nothing waits: every outbox event is relayed, and each handler's consumer of
    /// the order stream exists and has neither lag nor unacknowledged deliveries.
    pub fn is_quiet(&self) -> bool {
        let Some(orders) = self.streams.iter().find(|s| s.stream == ORDER_FAMILY) else {
            return false;
        };
        self.outbox_pending == 0
            && orders.consumers.len() >= crate::Handler::ALL.len()
            && orders
                .consumers
                .iter()
                .all(|c| c.lag == 0 && c.pending == 0)
    }

    /// Messages in the dead-letter stream.
    pub fn dead_letters(&self) -> u64 {
        self.streams
            .iter()
            .find(|s| s.stream == DLQ_FAMILY)
            .map_or(0, |s| s.stored)
    }

    /// Sets the gauges of `metrics` from these figures.
    pub fn export(&self, metrics: &WorkerMetrics) {
        metrics.outbox_pending.set(self.outbox_pending);
        metrics
            .outbox_oldest_age
            .set(self.outbox_oldest_age_ms / 1000);
        metrics
            .dead_letters
            .set(i64::try_from(self.dead_letters()).unwrap_or(i64::MAX));
        for stream in self.streams.iter().filter(|s| s.stream == ORDER_FAMILY) {
            for consumer in &stream.consumers {
                let label = WorkerMetrics::handler(&consumer.consumer);
                metrics
                    .lag
                    .get_or_create(&label)
                    .set(i64::try_from(consumer.lag).unwrap_or(i64::MAX));
                metrics
                    .ack_pending
                    .get_or_create(&label)
                    .set(i64::try_from(consumer.pending).unwrap_or(i64::MAX));
            }
        }
    }

    /// A plain-text table for a terminal.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;

        use strata_core::table::{Align, Table};
        let mut out = String::new();
        let _ = writeln!(
            out,
            "outbox: {} pending (oldest {} ms)",
            self.outbox_pending, self.outbox_oldest_age_ms
        );
        let mut table = Table::new(&[
            ("stream", Align::Left),
            ("published", Align::Right),
            ("stored", Align::Right),
            ("consumer", Align::Left),
            ("lag", Align::Right),
            ("pending", Align::Right),
        ]);
        for stream in &self.streams {
            let (published, stored) = (stream.published.to_string(), stream.stored.to_string());
            if stream.consumers.is_empty() {
                table.row([stream.stream.as_str(), &published, &stored, "-", "-", "-"]);
            }
            for c in &stream.consumers {
                table.row([
                    stream.stream.clone(),
                    published.clone(),
                    stored.clone(),
                    c.consumer.clone(),
                    c.lag.to_string(),
                    c.pending.to_string(),
                ]);
            }
        }
        out.push_str(&table.render());
        let _ = writeln!(out, "dead letters: {}", self.dead_letters());
        out
    }
}
