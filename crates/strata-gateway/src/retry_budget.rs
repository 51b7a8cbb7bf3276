//! The retry budget of a pool: retries stay a small fraction of the traffic, so a failing pool
//! is not hit by a storm of retries on top of its load.
//!
//! A token bucket, in thousandths of a token so every step is an integer atomic operation:
//! each request deposits 0.2 token, each retry withdraws one, and the bucket also refills at
//! 10 tokens per second so a quiet gateway can still retry. The bucket holds at most 100
//! tokens and starts full. Over any window of W seconds, retries are therefore at most
//! 20 % of the requests + 10 × W + 100, as in Finagle's `RetryBudget` (20 %, 10 per second).
//!
//! Deposits happen on every request: a load, and an add only while the bucket is not full
//! (a busy healthy pool keeps it full, so the hot path then only reads). Concurrent deposits
//! can overfill the bucket by a few tenths of a token, which changes nothing. Withdrawals (rare)
//! refill first, with a compare-and-swap on the refill time so only one caller credits each
//! elapsed interval.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// Thousandths of a token deposited per request: retries may be 20 % of requests.
const DEPOSIT: i64 = 200;
/// Thousandths of a token a retry costs.
const COST: i64 = 1000;
/// Thousandths of a token credited per millisecond: 10 retries per second, whatever the load.
const REFILL_PER_MS: i64 = 10;
/// Most thousandths of a token the bucket holds: 100 retries (ten seconds of the floor).
const CAPACITY: i64 = 100_000;

/// A pool's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    /// Thousandths of a token available.
    balance: AtomicI64,
    /// Time of the last refill, in ms since `epoch`.
    refilled_ms: AtomicU64,
    epoch: Instant,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudget {
    /// A full budget.
    pub fn new() -> Self {
        Self {
            balance: AtomicI64::new(CAPACITY),
            refilled_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Credits one request.
    pub fn deposit(&self) {
        if self.balance.load(Ordering::Relaxed) < CAPACITY {
            self.balance.fetch_add(DEPOSIT, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(Instant::now())
    }

    /// Retries left now (whole tokens, before this instant's refill), for the admin API.
    pub fn available(&self) -> u64 {
        u64::try_from(self.balance.load(Ordering::Relaxed) / COST).unwrap_or(0)
    }

    fn try_withdraw_at(&self, now: Instant) -> bool {
        self.refill(now);
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= COST).then_some(b - COST)
            })
            .is_ok()
    }

    fn refill(&self, now: Instant) {
        let now_ms = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        let last = self.refilled_ms.load(Ordering::Relaxed);
        if now_ms <= last
            || self
                .refilled_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let credit = i64::try_from(now_ms - last)
            .unwrap_or(i64::MAX)
            .saturating_mul(REFILL_PER_MS);
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b < CAPACITY).then(|| b.saturating_add(credit).min(CAPACITY))
            });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A budget emptied at its creation, and that instant.
    fn empty() -> (RetryBudget, Instant) {
        let budget = RetryBudget::new();
        let start = budget.epoch;
        while budget.try_withdraw_at(start) {}
        (budget, start)
    }

    #[test]
    fn a_fresh_budget_allows_a_burst_of_a_hundred_retries() {
        let budget = RetryBudget::new();
        let now = budget.epoch;
        let allowed = (0..150).filter(|_| budget.try_withdraw_at(now)).count();
        assert_eq!(allowed, 100);
    }

    #[test]
    fn under_load_retries_are_held_to_a_fifth_of_requests() {
        let (budget, start) = empty();
        // 10 000 requests, all failing, within one millisecond: no time-based refill to speak of.
        let mut retries = 0;
        for _ in 0..10_000 {
            budget.deposit();
            if budget.try_withdraw_at(start) {
                retries += 1;
            }
        }
        assert_eq!(retries, 2000);
    }

    #[test]
    fn a_quiet_gateway_still_gets_ten_retries_a_second() {
        let (budget, start) = empty();
        let later = start + Duration::from_secs(1);
        let allowed = (0..50).filter(|_| budget.try_withdraw_at(later)).count();
        assert_eq!(allowed, 10);
        // And the refill stops at the capacity.
        let much_later = start + Duration::from_secs(3600);
        let allowed = (0..500)
            .filter(|_| budget.try_withdraw_at(much_later))
            .count();
        assert_eq!(allowed, 100);
    }

    #[test]
    fn deposits_stop_at_the_capacity() {
        let budget = RetryBudget::new();
        for _ in 0..10_000 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 100);
    }
}
