//! The payment-provider adapter and the built-in simulated provider.
//!
//! A real provider is reached over the network and is idempotent by a key the caller chooses;
//! strata charges with the order id as that key, so a redelivered `order.placed` never charges
//! twice. The simulated provider keeps that contract without any state: whether an order's
//! payment is declined is a pure function of the order id and a seed, so every call for one
//! order, from any worker process, gets the same answer. Its latency and its transient
//! failures ("provider unavailable", retried by the consumer) are configurable, to show
//! retries, backoff and the dead-letter stream at work.

use std::time::Duration;

use strata_core::random;

/// How the simulated provider behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimulatedPayments {
    /// Share of orders whose payment is declined, 0.0..=1.0 (decided per order id).
    pub decline_rate: f64,
    /// Share of calls that fail as "provider unavailable", 0.0..=1.0 (decided per call).
    pub error_rate: f64,
    /// Time each call takes.
    pub latency: Duration,
    /// Picks which orders are declined; the same seed gives the same orders.
    pub seed: u64,
}

impl Default for SimulatedPayments {
    /// 10 % declined, no transient errors, 5 ms per call.
    fn default() -> Self {
        Self {
            decline_rate: 0.1,
            error_rate: 0.0,
            latency: Duration::from_millis(5),
            seed: 0x5eed,
        }
    }
}

/// The provider's answer to a charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// The money was taken.
    Approved,
    /// The card was refused; the order fails.
    Declined,
}

/// Why a charge could not be answered; the event is retried later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The provider did not answer (simulated outage).
    #[error("payment provider unavailable")]
    Unavailable,
}

/// The payment provider the worker charges.
#[derive(Clone, Debug)]
pub enum PaymentProvider {
    /// The built-in simulation (see the module docs).
    Simulated(SimulatedPayments),
}

impl PaymentProvider {
    /// Charges `amount_cents` for `order_id`, idempotently by order id.
    ///
    /// # Errors
    /// [`PaymentError::Unavailable`] when the provider does not answer.
    pub async fn charge(&self, order_id: i64, amount_cents: i64) -> Result<Charge, PaymentError> {
        match self {
            Self::Simulated(sim) => {
                if !sim.latency.is_zero() {
                    tokio::time::sleep(sim.latency).await;
                }
                if sim.error_rate > 0.0 && rand::random::<f64>() < sim.error_rate {
                    return Err(PaymentError::Unavailable);
                }
                let _ = amount_cents;
                Ok(if declined(sim.seed, order_id, sim.decline_rate) {
                    Charge::Declined
                } else {
                    Charge::Approved
                })
            }
        }
    }
}

/// Whether the order is declined: a uniform draw from the order id and the seed (splitmix64),
/// compared with the rate. Stable across processes, builds and platforms.
fn declined(seed: u64, order_id: i64, rate: f64) -> bool {
    let z = random::splitmix(seed ^ (order_id as u64).wrapping_mul(random::GAMMA));
    // The top 53 bits as a fraction in [0, 1).
    let draw = (z >> 11) as f64 / (1_u64 << 53) as f64;
    draw < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(decline_rate: f64, error_rate: f64) -> PaymentProvider {
        PaymentProvider::Simulated(SimulatedPayments {
            decline_rate,
            error_rate,
            latency: Duration::ZERO,
            seed: 7,
        })
    }

    #[tokio::test]
    async fn the_answer_for_an_order_never_changes() {
        let provider = provider(0.5, 0.0);
        for order in 1..200 {
            let first = provider.charge(order, 100).await.unwrap();
            for _ in 0..3 {
                assert_eq!(provider.charge(order, 100).await.unwrap(), first);
            }
        }
    }

    #[tokio::test]
    async fn the_decline_rate_holds_over_many_orders() {
        let provider = provider(0.1, 0.0);
        let mut declined = 0;
        for order in 1..=10_000 {
            if provider.charge(order, 100).await.unwrap() == Charge::Declined {
                declined += 1;
            }
        }
        // 10 % of 10,000 with a binomial standard deviation of 30: well inside ±150.
        assert!((850..=1150).contains(&declined), "{declined}");
        let none = provider_rates(0.0).await;
        let all = provider_rates(1.0).await;
        assert_eq!((none, all), (0, 100));
    }

    async fn provider_rates(rate: f64) -> usize {
        let provider = provider(rate, 0.0);
        let mut declined = 0;
        for order in 1..=100 {
            if provider.charge(order, 1).await.unwrap() == Charge::Declined {
                declined += 1;
            }
        }
        declined
    }

    #[tokio::test]
    async fn an_outage_fails_every_call_and_none_fails_without_one() {
        let down = provider(0.0, 1.0);
        let up = provider(0.0, 0.0);
        for order in 1..50 {
            assert_eq!(down.charge(order, 1).await, Err(PaymentError::Unavailable));
            assert_eq!(up.charge(order, 1).await, Ok(Charge::Approved));
        }
    }
}
