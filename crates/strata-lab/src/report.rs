//! The result of a load run: one serializable object (the JSON of `strata bench --json`,
//! snake_case), a human summary and a Markdown rendering of it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chat::ChatTally;
use crate::histogram::Histogram;
use crate::record::{Bucket, Recorder, StepTally, Tally};
use crate::shop::SetupLog;
use crate::spec::{Pace, Schedule, Target};
use crate::{Failure, LoadSpec};

/// What a load run observed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    /// `endpoint` or `shop`.
    pub scenario: String,
    /// The target URL with the (first) path measured.
    pub url: String,
    /// Every path requested in turn (the endpoint scenario).
    pub paths: Vec<String>,
    /// The method of every request (the endpoint scenario).
    pub method: String,
    /// `closed` (back to back) or `open` (a schedule of arrivals).
    pub mode: String,
    /// Connections: the workers of a closed loop, the most opened at once by an open loop.
    pub concurrency: usize,
    /// Requests issued, answered or not.
    pub requests: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Responses with any other status.
    pub non_2xx: u64,
    /// Requests without a complete response.
    pub failed: u64,
    /// Responses by status code (every status, 2xx included).
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without a complete response, by [`Failure`] kind (`connect`, `reset`, …).
    pub errors: BTreeMap<String, u64>,
    /// Failed requests that had been written on a connection ([`Failure::was_sent`]).
    pub sent_failures: u64,
    /// Responses by the instance that served them (`X-Strata-Instance`); responses without
    /// the header are not counted here.
    pub per_instance: BTreeMap<String, u64>,
    /// TCP connections opened.
    pub connections: u64,
    /// From the start of the clock to the end of the last response.
    #[serde(rename = "elapsed_secs", with = "secs")]
    pub elapsed: Duration,
    /// `requests / elapsed`.
    pub req_per_sec: f64,
    /// The schedule and how well it was kept (open loop only).
    pub rate: Option<RateReport>,
    /// Latency of answered requests (any status), to the end of the response body: from the
    /// intended send time in an open loop (so time spent waiting for a connection counts), from
    /// the send in a closed loop. Failed requests are not included.
    pub latency_ms: Latency,
    /// From the send to the end of the response body (equal to `latency_ms` in a closed loop).
    pub service_ms: Latency,
    /// The same counts per operation (`GET /path`, or the shop's `browse`, `checkout`, …).
    pub operations: BTreeMap<String, OperationReport>,
    /// Per step of an open loop's schedule.
    pub steps: Vec<StepReport>,
    /// The scenario's requests before the clock started (the shop's `catalog`, `register`,
    /// `login`), not in the figures above.
    pub setup: BTreeMap<String, OperationReport>,
    /// Per slice of time by intended send time, when the spec asked for a timeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<TimelinePoint>,
}

/// One slice of a run's timeline: the requests whose intended send time fell in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TimelinePoint {
    /// Start of the slice, seconds from the start of the run.
    pub at_secs: f64,
    /// Width of the slice in seconds.
    pub secs: f64,
    pub requests: u64,
    pub ok: u64,
    /// Requests without a complete response.
    pub failed: u64,
    /// Latency of the answered ones (milliseconds).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Responses by instance (`X-Strata-Instance`).
    pub per_instance: BTreeMap<String, u64>,
}

impl TimelinePoint {
    /// Requests answered with a non-2xx status or not answered at all.
    pub fn bad(&self) -> u64 {
        self.requests - self.ok
    }
}

/// Counts and latency of one operation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OperationReport {
    pub requests: u64,
    pub ok: u64,
    pub non_2xx: u64,
    pub failed: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    pub latency_ms: Latency,
}

/// How an open loop kept its schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RateReport {
    /// Requests per second asked for, per step.
    pub target: Vec<f64>,
    /// How long each step held, in seconds.
    pub step_secs: f64,
    /// Requests the schedule held.
    pub scheduled: u64,
    /// Requests sent per second: over the span from the first send to the last,
    /// `(requests - 1) / span` (the schedule's own rate when every request left on time).
    pub achieved: f64,
    /// Requests written more than 1 ms after their intended time (every connection busy,
    /// or the client behind).
    pub late: u64,
    /// The longest wait between a request's intended time and its send, in milliseconds.
    pub max_lag_ms: f64,
}

/// One step of an open loop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepReport {
    pub target: f64,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Requests sent per second during the step, as [`RateReport::achieved`].
    pub achieved: f64,
    pub latency_ms: Latency,
}

/// Latency percentiles in milliseconds (HdrHistogram with three significant digits; the
/// mean is exact). All zero when nothing was answered.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Summarises a histogram of microseconds.
    #[allow(clippy::cast_precision_loss)] // microsecond latencies fit f64's 52 bits
    pub fn from_micros(h: &Histogram) -> Self {
        let ms = |us: Option<u64>| us.map_or(0.0, |us| us as f64 / 1000.0);
        Self {
            count: h.count(),
            min: ms(h.min()),
            mean: h.mean().map_or(0.0, |us| us.round() / 1000.0),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

fn errors_of(failures: &[u64]) -> BTreeMap<String, u64> {
    Failure::ALL
        .into_iter()
        .filter(|f| failures[f.index()] > 0)
        .map(|f| (f.as_str().to_owned(), failures[f.index()]))
        .collect()
}

impl OperationReport {
    fn from_tally(t: &Tally) -> Self {
        let failed = t.failed();
        Self {
            requests: t.requests,
            ok: t.ok,
            non_2xx: t.requests - t.ok - failed,
            failed,
            statuses: t.statuses.iter().map(|(s, n)| (*s, *n)).collect(),
            errors: errors_of(&t.failures),
            latency_ms: Latency::from_micros(&t.latency),
        }
    }
}

/// `(n - 1) / (last - first)`: the rate of `n` sends spread from `first` to `last`.
#[allow(clippy::cast_precision_loss)]
fn rate_of(n: u64, sends: Option<(Duration, Duration)>) -> f64 {
    match sends {
        Some((first, last)) if n > 1 && last > first => {
            (n - 1) as f64 / (last - first).as_secs_f64()
        }
        _ => 0.0,
    }
}

impl LoadReport {
    #[allow(clippy::cast_precision_loss)] // request counts fit f64's 52 bits
    pub(crate) fn new(
        spec: &LoadSpec,
        target: &Target,
        paths: &[String],
        recorder: &Recorder,
        operations: &[String],
        setup: &SetupLog,
        elapsed: Duration,
    ) -> Self {
        let total = recorder.total();
        let failed = total.failed();
        let sent_failures = Failure::ALL
            .into_iter()
            .filter(|f| f.was_sent())
            .map(|f| total.failures[f.index()])
            .sum();
        let mut per_instance = BTreeMap::new();
        for (name, n) in &total.per_instance {
            *per_instance
                .entry(String::from_utf8_lossy(name).into_owned())
                .or_default() += n;
        }
        let secs = elapsed.as_secs_f64();
        let rate = target.schedule.as_ref().map(|s| RateReport {
            target: s.rates.clone(),
            step_secs: s.step.as_secs_f64(),
            scheduled: s.total(),
            achieved: rate_of(total.requests, recorder.sends()),
            late: recorder.late.load(std::sync::atomic::Ordering::Relaxed),
            max_lag_ms: recorder.max_lag().as_secs_f64() * 1000.0,
        });
        let steps = match &target.schedule {
            Some(s) => recorder
                .steps()
                .iter()
                .zip(&s.rates)
                .map(|(t, rate): (&StepTally, _)| StepReport {
                    target: *rate,
                    requests: t.requests,
                    ok: t.ok,
                    failed: t.failed,
                    achieved: rate_of(t.requests, t.sends),
                    latency_ms: Latency::from_micros(&t.latency),
                })
                .collect(),
            None => Vec::new(),
        };
        let mut setup_tallies: BTreeMap<String, Tally> = BTreeMap::new();
        for (step, result, took) in setup {
            let t = setup_tallies.entry((*step).to_owned()).or_default();
            t.requests += 1;
            match result {
                Ok(status) => {
                    if (200..300).contains(status) {
                        t.ok += 1;
                    }
                    *t.statuses.entry(*status).or_default() += 1;
                    t.latency
                        .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                }
                Err(f) => t.failures[f.index()] += 1,
            }
        }
        LoadReport {
            scenario: spec.scenario.as_str().to_owned(),
            url: spec.measured_url(),
            paths: paths.to_vec(),
            method: spec.method.to_string(),
            mode: match spec.pace {
                Pace::Closed => "closed",
                Pace::Open { .. } => "open",
            }
            .to_owned(),
            concurrency: spec.concurrency,
            requests: total.requests,
            ok: total.ok,
            non_2xx: total.requests - total.ok - failed,
            failed,
            statuses: total.statuses.iter().map(|(s, n)| (*s, *n)).collect(),
            errors: errors_of(&total.failures),
            sent_failures,
            per_instance,
            connections: recorder
                .connections
                .load(std::sync::atomic::Ordering::Relaxed),
            elapsed,
            req_per_sec: if secs > 0.0 {
                total.requests as f64 / secs
            } else {
                0.0
            },
            rate,
            latency_ms: Latency::from_micros(&total.latency),
            service_ms: Latency::from_micros(&total.service),
            operations: operations
                .iter()
                .zip(recorder.operations())
                .filter(|(_, t)| t.requests > 0)
                .map(|(name, t)| (name.clone(), OperationReport::from_tally(&t)))
                .collect(),
            steps,
            setup: setup_tallies
                .iter()
                .map(|(name, t)| (name.clone(), OperationReport::from_tally(t)))
                .collect(),
            timeline: recorder
                .timeline()
                .map(|(width, buckets)| timeline_of(width, &buckets))
                .unwrap_or_default(),
        }
    }

    /// The report of a chat run: `requests` are messages sent, `ok` those acknowledged
    /// (stored), `non_2xx` those refused with an `error` frame; `latency_ms` is the fan-out
    /// latency (intended send time to each listener's receipt), `service_ms` the ack
    /// latency; operations `send` (acks) and `receipt` (each listener's copy: `failed` are
    /// the copies missing at the end).
    #[allow(clippy::cast_precision_loss)] // message counts fit f64's 52 bits
    pub(crate) fn from_chat(
        spec: &LoadSpec,
        schedule: &Schedule,
        t: &ChatTally,
        elapsed: Duration,
    ) -> Self {
        let requests = t.sent + t.send_failed;
        let refused: u64 = t.refused.values().sum();
        let failed = requests.saturating_sub(t.acked + refused);
        let mut errors = BTreeMap::new();
        if t.send_failed > 0 {
            errors.insert("send".to_owned(), t.send_failed);
        }
        if failed > t.send_failed {
            errors.insert("not_acked".to_owned(), failed - t.send_failed);
        }
        for (code, n) in &t.refused {
            errors.insert(code.clone(), *n);
        }
        let expected = t.sent * t.listeners;
        let operations = BTreeMap::from([
            (
                "send".to_owned(),
                OperationReport {
                    requests,
                    ok: t.acked,
                    non_2xx: refused,
                    failed,
                    statuses: BTreeMap::new(),
                    errors: errors.clone(),
                    latency_ms: Latency::from_micros(&t.ack),
                },
            ),
            (
                "receipt".to_owned(),
                OperationReport {
                    requests: expected,
                    ok: t.received,
                    non_2xx: 0,
                    failed: expected.saturating_sub(t.received),
                    statuses: BTreeMap::new(),
                    errors: BTreeMap::new(),
                    latency_ms: Latency::from_micros(&t.fan_out),
                },
            ),
        ]);
        let secs = elapsed.as_secs_f64();
        LoadReport {
            scenario: spec.scenario.as_str().to_owned(),
            url: spec.measured_url(),
            paths: Vec::new(),
            method: "WebSocket".to_owned(),
            mode: "open".to_owned(),
            concurrency: spec.rooms * (spec.listeners + 1),
            requests,
            ok: t.acked,
            non_2xx: refused,
            failed,
            statuses: BTreeMap::new(),
            errors,
            sent_failures: failed,
            per_instance: BTreeMap::new(),
            connections: t.connections,
            elapsed,
            req_per_sec: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            rate: Some(RateReport {
                target: schedule.rates.clone(),
                step_secs: schedule.step.as_secs_f64(),
                scheduled: schedule.total(),
                achieved: rate_of(t.sent, t.sends),
                late: t.late,
                max_lag_ms: t.max_lag.as_secs_f64() * 1000.0,
            }),
            latency_ms: Latency::from_micros(&t.fan_out),
            service_ms: Latency::from_micros(&t.ack),
            operations,
            steps: Vec::new(),
            setup: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }

    /// The count of one failure kind.
    pub fn failures(&self, kind: Failure) -> u64 {
        self.errors.get(kind.as_str()).copied().unwrap_or(0)
    }

    /// True when not one request got a 2xx answer (every one refused, failed or answered
    /// with an error status): the run measured nothing but the failure.
    pub fn all_failed(&self) -> bool {
        self.ok == 0
    }

    fn what(&self) -> String {
        if self.scenario == "chat" {
            format!("chat at {} ({} connections)", self.url, self.connections)
        } else if self.scenario == "endpoint" {
            let more = match self.paths.len() {
                0 | 1 => String::new(),
                n => format!(" (and {} more paths in turn)", n - 1),
            };
            format!("{} {}{more}", self.method, self.url)
        } else {
            format!("the {} scenario at {}", self.scenario, self.url)
        }
    }

    fn pace(&self) -> String {
        match &self.rate {
            None => format!(
                "closed loop, {} connections, {:.1} s",
                self.concurrency,
                self.elapsed.as_secs_f64()
            ),
            Some(rate) => format!(
                "open loop at {}/s{}, at most {} connections",
                join(&rate.target, ", "),
                if rate.target.len() > 1 {
                    format!(" ({} s each)", rate.step_secs)
                } else {
                    format!(" for {} s", rate.step_secs)
                },
                self.concurrency
            ),
        }
    }

    fn outcome_line(&self) -> String {
        let mut line = format!(
            "{} requests: {} ok, {} other status, {} failed",
            self.requests, self.ok, self.non_2xx, self.failed
        );
        if !self.errors.is_empty() {
            let kinds: Vec<_> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = write!(line, " ({})", kinds.join(", "));
        }
        let statuses: Vec<_> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        if !statuses.is_empty() {
            let _ = write!(line, "; statuses {}", statuses.join(", "));
        }
        line
    }

    /// A summary for people: what was measured, how it went, the latency.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.what());
        let _ = writeln!(out, "{}", self.pace());
        let _ = writeln!(out, "{}", self.outcome_line());
        let _ = writeln!(
            out,
            "{:.1} req/s over {:.2} s, {} connections opened",
            self.req_per_sec,
            self.elapsed.as_secs_f64(),
            self.connections
        );
        if let Some(rate) = &self.rate {
            let _ = writeln!(
                out,
                "rate: {:.1}/s achieved, {} scheduled, {} late (max lag {:.3} ms)",
                rate.achieved, rate.scheduled, rate.late, rate.max_lag_ms
            );
        }
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "latency ms ({}): p50 {} p90 {} p99 {} p99.9 {} max {} (mean {})",
            if self.rate.is_some() {
                "from the intended send time"
            } else {
                "from the send"
            },
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            l.mean
        );
        if self.operations.len() > 1 || !self.setup.is_empty() {
            let _ = writeln!(
                out,
                "{:<16} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
                "operation", "requests", "ok", "status", "failed", "p50 ms", "p99 ms"
            );
            for (name, op) in self.setup.iter().chain(&self.operations) {
                let _ = writeln!(
                    out,
                    "{:<16} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
                    name,
                    op.requests,
                    op.ok,
                    op.non_2xx,
                    op.failed,
                    op.latency_ms.p50,
                    op.latency_ms.p99
                );
            }
        }
        for step in &self.steps {
            let _ = writeln!(
                out,
                "step {}/s: {} requests, {:.1}/s achieved, {} ok, {} failed, p50 {} ms, p99 {} ms",
                step.target,
                step.requests,
                step.achieved,
                step.ok,
                step.failed,
                step.latency_ms.p50,
                step.latency_ms.p99
            );
        }
        if !self.per_instance.is_empty() {
            let instances: Vec<_> = self
                .per_instance
                .iter()
                .map(|(i, n)| format!("{i} {n}"))
                .collect();
            let _ = writeln!(out, "per instance: {}", instances.join(", "));
        }
        out
    }

    /// The same as a Markdown section: a line of context and tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "**{}**, {}\n", self.what(), self.pace());
        let _ = writeln!(
            out,
            "| requests | ok | other status | failed | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            self.requests,
            self.ok,
            self.non_2xx,
            self.failed,
            self.req_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
        if let Some(rate) = &self.rate {
            let _ = writeln!(
                out,
                "\nRate: {:.1}/s achieved of {}/s; {} of {} scheduled sent late (max lag {:.3} ms).",
                rate.achieved,
                join(&rate.target, ", "),
                rate.late,
                rate.scheduled,
                rate.max_lag_ms
            );
        }
        if !self.errors.is_empty() {
            let kinds: Vec<_> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(out, "\nFailures: {}.", kinds.join(", "));
        }
        if self.operations.len() > 1 || !self.setup.is_empty() {
            let _ = writeln!(
                out,
                "\n| operation | requests | ok | other status | failed | p50 ms | p99 ms |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
            for (name, op) in self.setup.iter().chain(&self.operations) {
                let _ = writeln!(
                    out,
                    "| {name} | {} | {} | {} | {} | {} | {} |",
                    op.requests, op.ok, op.non_2xx, op.failed, op.latency_ms.p50, op.latency_ms.p99
                );
            }
        }
        if !self.steps.is_empty() {
            let _ = writeln!(
                out,
                "\n| target req/s | achieved req/s | requests | ok | failed | p50 ms | p99 ms |"
            );
            let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
            for s in &self.steps {
                let _ = writeln!(
                    out,
                    "| {} | {:.1} | {} | {} | {} | {} | {} |",
                    s.target,
                    s.achieved,
                    s.requests,
                    s.ok,
                    s.failed,
                    s.latency_ms.p50,
                    s.latency_ms.p99
                );
            }
        }
        out
    }
}

/// The timeline's slices as reported: every slice from the first to the last, empty ones
/// included, so that a stall shows as a gap in the counts.
#[allow(clippy::cast_precision_loss)] // slice numbers fit f64's 52 bits
fn timeline_of(width: Duration, buckets: &[Bucket]) -> Vec<TimelinePoint> {
    let ms = |us: Option<u64>| us.map_or(0.0, |us| us as f64 / 1000.0);
    buckets
        .iter()
        .enumerate()
        .map(|(k, b)| TimelinePoint {
            at_secs: width.as_secs_f64() * k as f64,
            secs: width.as_secs_f64(),
            requests: b.requests,
            ok: b.ok,
            failed: b.failed,
            p50_ms: ms(b.latency.value_at_quantile(0.5)),
            p99_ms: ms(b.latency.value_at_quantile(0.99)),
            max_ms: ms(b.latency.max()),
            per_instance: b
                .per_instance
                .iter()
                .map(|(i, n)| (String::from_utf8_lossy(i).into_owned(), *n))
                .collect(),
        })
        .collect()
}

fn join(rates: &[f64], sep: &str) -> String {
    rates
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// `Duration` as fractional seconds in JSON.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_reported_in_milliseconds() {
        let mut h = Histogram::new();
        for us in [100, 200, 300, 400, 10_000] {
            h.record(us);
        }
        let latency = Latency::from_micros(&h);
        assert_eq!(latency.count, 5);
        assert_eq!(latency.min, 0.1);
        assert_eq!(latency.p50, 0.3);
        assert_eq!(latency.max, 10.0);
        assert_eq!(latency.mean, 2.2);
        assert_eq!(Latency::from_micros(&Histogram::new()), Latency::default());
    }

    fn report() -> LoadReport {
        LoadReport {
            scenario: "endpoint".into(),
            url: "http://127.0.0.1:8080/healthz".into(),
            paths: vec!["/healthz".into()],
            method: "GET".into(),
            mode: "open".into(),
            concurrency: 2,
            requests: 3,
            ok: 1,
            non_2xx: 1,
            failed: 1,
            statuses: BTreeMap::from([(200, 1), (404, 1)]),
            errors: BTreeMap::from([("reset".to_owned(), 1)]),
            sent_failures: 1,
            per_instance: BTreeMap::from([("api-1".to_owned(), 2)]),
            connections: 3,
            elapsed: Duration::from_millis(1500),
            req_per_sec: 2.0,
            rate: Some(RateReport {
                target: vec![2.0],
                step_secs: 1.5,
                scheduled: 3,
                achieved: 2.0,
                late: 0,
                max_lag_ms: 0.1,
            }),
            latency_ms: Latency::default(),
            service_ms: Latency::default(),
            operations: BTreeMap::new(),
            steps: Vec::new(),
            setup: BTreeMap::new(),
            timeline: Vec::new(),
        }
    }

    #[test]
    fn reports_round_trip_through_json() {
        let report = report();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["elapsed_secs"], 1.5);
        assert_eq!(json["statuses"]["200"], 1);
        assert_eq!(json["rate"]["achieved"], 2.0);
        let back: LoadReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.failures(Failure::Reset), 1);
        assert!(!back.all_failed());
    }

    #[test]
    fn summaries_name_the_path_and_the_outcome() {
        let report = report();
        let summary = report.summary();
        assert!(
            summary.starts_with("GET http://127.0.0.1:8080/healthz\n"),
            "{summary}"
        );
        assert!(
            summary.contains("3 requests: 1 ok, 1 other status, 1 failed (reset 1)"),
            "{summary}"
        );
        assert!(summary.contains("open loop at 2/s"), "{summary}");
        let markdown = report.markdown();
        assert!(markdown.contains("| 3 | 1 | 1 | 1 | 2.0 |"), "{markdown}");
        assert!(markdown.contains("Failures: reset 1."), "{markdown}");
    }
}
