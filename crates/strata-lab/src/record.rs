//! The record of a run while it runs: per operation and per step of the schedule, counts,
//! statuses, failures and latency histograms, shared by every connection (one short lock per
//! answered request), read once a second by the progress line and once at the end by the
//! report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Failure;
use crate::conn::Answer;
use crate::histogram::Histogram;

/// A request in an open loop counts as late when it is written more than this after its
/// intended send time: every connection was busy, or the client itself fell behind.
pub(crate) const LATE: Duration = Duration::from_millis(1);

/// Counts of one operation (or of the whole run, once merged).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) statuses: HashMap<u16, u64>,
    pub(crate) failures: [u64; Failure::ALL.len()],
    pub(crate) per_instance: HashMap<Bytes, u64>,
    /// From the intended send time (open loop) or the send (closed loop) to the end of the
    /// response, in microseconds.
    pub(crate) latency: Histogram,
    /// From the send to the end of the response, in microseconds.
    pub(crate) service: Histogram,
}

impl Tally {
    pub(crate) fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for (mine, theirs) in self.failures.iter_mut().zip(other.failures) {
            *mine += theirs;
        }
        for (instance, n) in &other.per_instance {
            *self.per_instance.entry(instance.clone()).or_default() += n;
        }
        self.latency.merge(&other.latency);
        self.service.merge(&other.service);
    }

    pub(crate) fn failed(&self) -> u64 {
        self.failures.iter().sum()
    }
}

/// Counts of one step of an open loop's schedule.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepTally {
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) latency: Histogram,
    /// First and last send, from the start of the run.
    pub(crate) sends: Option<(Duration, Duration)>,
}

/// Counts of one slice of time (by intended send time) of a run with a timeline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bucket {
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) latency: Histogram,
    pub(crate) per_instance: HashMap<Bytes, u64>,
}

/// Most slices a timeline keeps: requests intended later than that are counted in the last.
const MAX_BUCKETS: usize = 100_000;

/// Everything recorded so far.
pub(crate) struct Recorder {
    started: Instant,
    ops: Vec<Mutex<Tally>>,
    steps: Vec<Mutex<StepTally>>,
    /// Width of a timeline slice and the slices, when the spec asks for a timeline.
    timeline: Option<(Duration, Mutex<Vec<Bucket>>)>,
    pub(crate) connections: AtomicU64,
    pub(crate) late: AtomicU64,
    max_lag_us: AtomicU64,
    /// First and last send of the run (microseconds from the start; first = MAX until one).
    first_send_us: AtomicU64,
    last_send_us: AtomicU64,
}

/// One finished request.
pub(crate) struct Outcome<'a> {
    pub(crate) op: usize,
    pub(crate) step: Option<usize>,
    pub(crate) intended: Instant,
    pub(crate) sent: Instant,
    pub(crate) done: Instant,
    pub(crate) result: &'a Result<Answer, Failure>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a tally leaves counts, not broken invariants: keep using them.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    pub(crate) fn new(
        started: Instant,
        operations: usize,
        steps: usize,
        timeline: Option<Duration>,
    ) -> Recorder {
        Recorder {
            started,
            ops: (0..operations).map(|_| Mutex::default()).collect(),
            steps: (0..steps).map(|_| Mutex::default()).collect(),
            timeline: timeline
                .filter(|width| !width.is_zero())
                .map(|width| (width, Mutex::default())),
            connections: AtomicU64::new(0),
            late: AtomicU64::new(0),
            max_lag_us: AtomicU64::new(0),
            first_send_us: AtomicU64::new(u64::MAX),
            last_send_us: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, o: &Outcome<'_>) {
        let latency = micros(o.done.saturating_duration_since(o.intended));
        let service = micros(o.done.saturating_duration_since(o.sent));
        let lag = o.sent.saturating_duration_since(o.intended);
        if lag > LATE {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
        self.max_lag_us.fetch_max(micros(lag), Ordering::Relaxed);
        let sent_at = o.sent.saturating_duration_since(self.started);
        self.first_send_us
            .fetch_min(micros(sent_at), Ordering::Relaxed);
        self.last_send_us
            .fetch_max(micros(sent_at), Ordering::Relaxed);

        let ok = matches!(o.result, Ok(a) if (200..300).contains(&a.status));
        if let Some(tally) = self.ops.get(o.op) {
            let mut t = lock(tally);
            t.requests += 1;
            match o.result {
                Ok(answer) => {
                    if ok {
                        t.ok += 1;
                    }
                    *t.statuses.entry(answer.status).or_default() += 1;
                    if let Some(instance) = &answer.instance {
                        if let Some(n) = t.per_instance.get_mut(instance) {
                            *n += 1;
                        } else {
                            t.per_instance.insert(instance.clone(), 1);
                        }
                    }
                    t.latency.record(latency);
                    t.service.record(service);
                }
                Err(failure) => t.failures[failure.index()] += 1,
            }
        }
        if let Some(step) = o.step.and_then(|k| self.steps.get(k)) {
            let mut s = lock(step);
            s.requests += 1;
            match o.result {
                Ok(_) => {
                    if ok {
                        s.ok += 1;
                    }
                    s.latency.record(latency);
                }
                Err(_) => s.failed += 1,
            }
            s.sends = Some(match s.sends {
                None => (sent_at, sent_at),
                Some((first, last)) => (first.min(sent_at), last.max(sent_at)),
            });
        }
        if let Some((width, buckets)) = &self.timeline {
            let at = o.intended.saturating_duration_since(self.started);
            let k = usize::try_from(at.as_nanos() / width.as_nanos().max(1))
                .unwrap_or(usize::MAX)
                .min(MAX_BUCKETS - 1);
            let mut buckets = lock(buckets);
            if buckets.len() <= k {
                buckets.resize_with(k + 1, Bucket::default);
            }
            let b = &mut buckets[k];
            b.requests += 1;
            match o.result {
                Ok(answer) => {
                    if ok {
                        b.ok += 1;
                    }
                    b.latency.record(latency);
                    if let Some(instance) = &answer.instance {
                        *b.per_instance.entry(instance.clone()).or_default() += 1;
                    }
                }
                Err(_) => b.failed += 1,
            }
        }
    }

    /// The timeline's width and slices, when the run keeps one.
    pub(crate) fn timeline(&self) -> Option<(Duration, Vec<Bucket>)> {
        self.timeline
            .as_ref()
            .map(|(width, buckets)| (*width, lock(buckets).clone()))
    }

    /// Every operation's tally, in operation order.
    pub(crate) fn operations(&self) -> Vec<Tally> {
        self.ops.iter().map(|t| lock(t).clone()).collect()
    }

    /// Every step's tally, in schedule order.
    pub(crate) fn steps(&self) -> Vec<StepTally> {
        self.steps.iter().map(|t| lock(t).clone()).collect()
    }

    /// The operations merged.
    pub(crate) fn total(&self) -> Tally {
        let mut total = Tally::default();
        for t in &self.ops {
            total.merge(&lock(t));
        }
        total
    }

    /// Requests finished so far, and of those failed or not 2xx, without the histograms.
    pub(crate) fn counts(&self) -> (u64, u64) {
        self.ops.iter().fold((0, 0), |(n, bad), t| {
            let t = lock(t);
            (n + t.requests, bad + t.requests - t.ok)
        })
    }

    pub(crate) fn max_lag(&self) -> Duration {
        Duration::from_micros(self.max_lag_us.load(Ordering::Relaxed))
    }

    /// First and last send from the start, once anything was sent.
    pub(crate) fn sends(&self) -> Option<(Duration, Duration)> {
        let first = self.first_send_us.load(Ordering::Relaxed);
        (first != u64::MAX).then(|| {
            (
                Duration::from_micros(first),
                Duration::from_micros(self.last_send_us.load(Ordering::Relaxed)),
            )
        })
    }
}
