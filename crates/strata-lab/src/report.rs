//! The result of a load run, serializable to JSON for `strata bench`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Failure;
use crate::histogram::Histogram;

/// What a load run observed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    /// The target URL.
    pub url: String,
    /// The method of every request.
    pub method: String,
    /// Workers (connections kept open at once).
    pub concurrency: usize,
    /// Requests issued, answered or not.
    pub requests: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
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
    /// From the first request to the end of the last response.
    #[serde(rename = "elapsed_secs", with = "secs")]
    pub elapsed: Duration,
    /// `requests / elapsed`.
    pub req_per_sec: f64,
    /// Latency of answered requests (any status), from writing the request to the end of the
    /// response body. Failed requests are not included.
    pub latency_ms: Latency,
}

/// Latency percentiles in milliseconds (microsecond resolution, at most 0.8 % above the true
/// value; minimum, mean and maximum are exact). All zero when nothing was answered.
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

impl LoadReport {
    /// The count of one failure kind.
    pub fn failures(&self, kind: Failure) -> u64 {
        self.errors.get(kind.as_str()).copied().unwrap_or(0)
    }

    /// Requests that got no response.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
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
        // 300 µs shares a two-microsecond bucket with 301: percentiles report the upper end.
        assert_eq!(latency.p50, 0.301);
        assert_eq!(latency.max, 10.0);
        assert_eq!(latency.mean, 2.2);
        assert_eq!(Latency::from_micros(&Histogram::new()), Latency::default());
    }

    #[test]
    fn reports_round_trip_through_json() {
        let report = LoadReport {
            url: "http://127.0.0.1:8080/".into(),
            method: "GET".into(),
            concurrency: 2,
            requests: 3,
            ok: 2,
            statuses: BTreeMap::from([(200, 2)]),
            errors: BTreeMap::from([("reset".to_owned(), 1)]),
            sent_failures: 1,
            per_instance: BTreeMap::from([("api-1".to_owned(), 2)]),
            connections: 3,
            elapsed: Duration::from_millis(1500),
            req_per_sec: 2.0,
            latency_ms: Latency::default(),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["elapsed_secs"], 1.5);
        assert_eq!(json["statuses"]["200"], 2);
        let back: LoadReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        assert_eq!(back.failures(Failure::Reset), 1);
        assert_eq!(back.failed(), 1);
    }
}
