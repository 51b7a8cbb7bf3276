//! [`PipelineSettings`]: how a worker consumes and relays. `strata` fills it from the `[worker]`
//! configuration section; the defaults here are the documented defaults.

use std::time::Duration;

use crate::payment::SimulatedPayments;

/// How one worker consumes events and relays the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSettings {
    /// Deliveries handled at once per handler. Default 16: enough to overlap store round
    /// trips and provider latency, few enough to keep store connections for the api.
    pub concurrency: usize,
    /// Deliveries of one event before it goes to the dead-letter stream. Default 5.
    pub max_deliveries: u32,
    /// First retry delay, doubled per delivery. Default 500 ms.
    pub retry_base: Duration,
    /// Longest retry delay. Default 30 s.
    pub retry_max: Duration,
    /// How long a delivery may stay unanswered before the bus gives it to another worker (a
    /// crashed worker's events move on after this). Default 30 s.
    pub ack_wait: Duration,
    /// Run the outbox relay in this worker. Default true; `strata up` runs one relay per
    /// SQLite database.
    pub relay: bool,
    /// Outbox events read and published per relay round. Default 256.
    pub relay_batch: u32,
    /// Pause of an idle relay between polls of the outbox. Default 50 ms: the delay a quiet
    /// system adds to an event.
    pub relay_interval: Duration,
    /// How long sent outbox events are kept before pruning. Default 24 h.
    pub outbox_retention: Duration,
    /// How often the lag gauges are refreshed from the bus. Default 5 s.
    pub stats_interval: Duration,
    /// The simulated payment provider.
    pub payments: SimulatedPayments,
    /// How long after its payment the simulated fulfilment ships an order. Default zero.
    pub fulfilment_delay: Duration,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            max_deliveries: 5,
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            ack_wait: Duration::from_secs(30),
            relay: true,
            relay_batch: 256,
            relay_interval: Duration::from_millis(50),
            outbox_retention: Duration::from_secs(24 * 3600),
            stats_interval: Duration::from_secs(5),
            payments: SimulatedPayments::default(),
            fulfilment_delay: Duration::ZERO,
        }
    }
}
