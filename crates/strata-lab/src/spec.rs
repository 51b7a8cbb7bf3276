//! What a load run does: target, scenario, pace (closed loop or a schedule of arrivals),
//! connections, bounds, method and paths.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, Method, Uri};

use crate::LabError;

/// Most workers (connections) one run may open; more would exhaust file descriptors before
/// telling anything about the server.
pub const MAX_CONCURRENCY: usize = 4096;
/// Longest run: an hour. Every run is bounded in time, whatever its request bound.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most requests one run may issue.
pub const MAX_REQUESTS: u64 = 1_000_000_000;
/// Highest arrival rate of an open-loop run, per second: one dispatcher thread hands out a
/// request every 10 µs at most, and no server behind one gateway on one host answers more.
pub const MAX_RATE: f64 = 100_000.0;
/// Most users of the shop scenario: each registers (an argon2 hash on the server) before the
/// clock starts.
pub const MAX_USERS: usize = 10_000;
/// Most carts of the carts scenario: each is made by a request before the clock starts.
pub const MAX_CARTS: usize = 100_000;
/// Narrowest slice of a run's timeline.
pub const MIN_TIMELINE: Duration = Duration::from_millis(10);

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// Closed loop: each connection sends its next request as soon as the previous one is
    /// answered. For saturation: how many requests per second at this concurrency. The latency
    /// is counted from the actual send, so a stalled server delays the senders and hides
    /// its stall (coordinated omission): use [`Pace::Open`] to measure latency.
    Closed,
    /// Open loop: requests arrive on a schedule of their own, `rates[k]` per second during
    /// step `k` (each `step` long; one rate without a step holds for the run's `duration`).
    /// A slow server cannot slow the schedule: a request whose time has come goes out on an
    /// idle connection, a new one (up to `concurrency`), or waits for one, and its latency
    /// counts from its intended send time.
    Open {
        rates: Vec<f64>,
        step: Option<Duration>,
    },
}

/// What the requests are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One endpoint (or the `paths` in turn), with `method`.
    Endpoint,
    /// The shop mix: `users` customers register and log in before the clock starts, then
    /// browse 10, product 10, search 3, view cart 3, add to cart 2, quote 2, home 1, checkout 1
    /// (weights), each keeping a cart; checkout with an `Idempotency-Key`.
    Shop,
    /// Chat: `listeners` connections in each of `rooms` agents' lobbies and one sender per
    /// room, messages at the open loop's rate; reports fan-out latency (intended send time to
    /// each listener's receipt) and ack latency. Needs a `support` or `admin` user's `token`.
    Chat,
    /// Carts: `carts` anonymous carts are made before the clock starts (one line each, by
    /// `POST /api/v1/cart/items`), then requests alternate between reading a cart
    /// (`GET /api/v1/cart`) and updating it (`PATCH` of its line's quantity), each on a cart
    /// chosen by a hash of the request number, with the cart's cookies.
    Carts,
}

impl Scenario {
    /// Every scenario, by name.
    pub const ALL: [Scenario; 4] = [
        Scenario::Endpoint,
        Scenario::Shop,
        Scenario::Chat,
        Scenario::Carts,
    ];

    /// Its name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Endpoint => "endpoint",
            Scenario::Shop => "shop",
            Scenario::Chat => "chat",
            Scenario::Carts => "carts",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scenario {
    type Err = LabError;

    fn from_str(name: &str) -> Result<Self, LabError> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<_> = Scenario::ALL.iter().map(|s| s.as_str()).collect();
                LabError::spec(
                    "scenario",
                    format!(
                        "unknown scenario `{name}`: expected one of {}",
                        known.join(", ")
                    ),
                )
            })
    }
}

/// A load run. Build one with [`LoadSpec::new`] and adjust the public fields.
///
/// A run stops issuing requests at the first of: `duration` elapsed, `requests` issued, or the
/// caller's cancellation ([`run_until`](crate::run_until)). Requests in flight at that moment
/// finish (each bounded by `request_timeout`) and are counted.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Target base URL, `http://host:port[/path]`. Its path is used when `paths` is empty.
    pub url: String,
    /// What the requests are. Default [`Scenario::Endpoint`].
    pub scenario: Scenario,
    /// Closed loop or a schedule. Default [`Pace::Closed`].
    pub pace: Pace,
    /// Connections: in a closed loop, each one a worker sending one request at a time; in an
    /// open loop, the most opened at once. Default 8.
    pub concurrency: usize,
    /// Time bound, always in force (an open loop with steps lasts its steps instead).
    /// Default 10 s.
    pub duration: Duration,
    /// Request bound of a closed loop; `None` runs for `duration`. Default `None`.
    pub requests: Option<u64>,
    /// Customers of the shop scenario. Default 20.
    pub users: usize,
    /// Carts of the carts scenario. Default 100.
    pub carts: usize,
    /// Carts of the carts scenario made beforehand: the `Cookie` header of each (cart `i`
    /// holds product `1 + i % 10`). Empty (default): the run makes `carts` carts.
    pub cart_cookies: Vec<String>,
    /// Keep a timeline: counts, latency and instances per slice of this width, by intended
    /// send time ([`LoadReport::timeline`](crate::LoadReport::timeline)). Default none.
    pub timeline: Option<Duration>,
    /// Rooms of the chat scenario. Default 10.
    pub rooms: usize,
    /// Listening connections per room of the chat scenario. Default 10.
    pub listeners: usize,
    /// The chat scenario's token (of a `support` or `admin` user). Default none.
    pub token: Option<String>,
    /// A progress line on stderr every second (rate, errors, p50/p99 so far). Default off.
    pub progress: bool,
    /// Method of every request (sent without a body). Default `GET`.
    pub method: Method,
    /// Paths (with optional query) requested in turn: request `n` uses `paths[n % len]`.
    /// Empty (default): the path of `url`.
    pub paths: Vec<String>,
    /// Time to open a TCP connection. Default 2 s.
    pub connect_timeout: Duration,
    /// Time for one request, from writing it to the end of the response body. Default 10 s.
    pub request_timeout: Duration,
    /// Response header naming the instance that served a request. Default `x-strata-instance`.
    pub instance_header: HeaderName,
}

impl LoadSpec {
    /// A spec for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            scenario: Scenario::Endpoint,
            pace: Pace::Closed,
            concurrency: 8,
            duration: Duration::from_secs(10),
            requests: None,
            users: 20,
            carts: 100,
            cart_cookies: Vec::new(),
            timeline: None,
            rooms: 10,
            listeners: 10,
            token: None,
            progress: false,
            method: Method::GET,
            paths: Vec::new(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            instance_header: HeaderName::from_static("x-strata-instance"),
        }
    }

    /// Checks every bound and parses the URL and paths.
    ///
    /// # Errors
    /// [`LabError::Spec`] naming the first field out of bounds or malformed.
    pub(crate) fn validate(&self) -> Result<Target, LabError> {
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(LabError::spec(
                "concurrency",
                format!("expected 1..={MAX_CONCURRENCY}"),
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(LabError::spec(
                "duration",
                format!(
                    "expected more than 0 s and at most {} s",
                    MAX_DURATION.as_secs()
                ),
            ));
        }
        if let Some(n) = self.requests
            && !(1..=MAX_REQUESTS).contains(&n)
        {
            return Err(LabError::spec(
                "requests",
                format!("expected 1..={MAX_REQUESTS}"),
            ));
        }
        if self.scenario == Scenario::Shop && !(1..=MAX_USERS).contains(&self.users) {
            return Err(LabError::spec("users", format!("expected 1..={MAX_USERS}")));
        }
        if self.scenario == Scenario::Carts && !(1..=MAX_CARTS).contains(&self.carts) {
            return Err(LabError::spec("carts", format!("expected 1..={MAX_CARTS}")));
        }
        if let Some(width) = self.timeline
            && (width < MIN_TIMELINE || width > MAX_DURATION)
        {
            return Err(LabError::spec(
                "timeline",
                format!(
                    "expected at least {} ms and at most an hour",
                    MIN_TIMELINE.as_millis()
                ),
            ));
        }
        if self.scenario == Scenario::Chat {
            self.validate_chat()?;
        }
        let schedule = match &self.pace {
            Pace::Closed => None,
            Pace::Open { rates, step } => {
                if self.requests.is_some() {
                    return Err(LabError::spec(
                        "requests",
                        "an open loop is bounded by its rate and duration, not a request count",
                    ));
                }
                Some(Schedule::new(rates, *step, self.duration)?)
            }
        };
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() || value > MAX_DURATION {
                return Err(LabError::spec(
                    field,
                    "expected more than 0 s and at most an hour",
                ));
            }
        }
        let url: Uri = self
            .url
            .parse()
            .map_err(|e| LabError::spec("url", format!("`{}`: {e}", self.url)))?;
        if url.scheme() != Some(&Scheme::HTTP) {
            return Err(LabError::spec(
                "url",
                format!("`{}`: expected http://host:port", self.url),
            ));
        }
        let authority = url
            .authority()
            .cloned()
            .ok_or_else(|| LabError::spec("url", format!("`{}`: missing host", self.url)))?;
        let paths = if self.paths.is_empty() {
            vec![
                url.path_and_query()
                    .cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            ]
        } else {
            self.paths
                .iter()
                .map(|p| parse_path(p))
                .collect::<Result<_, _>>()?
        };
        Ok(Target {
            authority,
            paths,
            schedule,
        })
    }

    /// The chat scenario's own rules: a rate (messages are scheduled), a token, rooms and
    /// listeners within bounds, and no more messages per room than the server takes from one
    /// connection.
    fn validate_chat(&self) -> Result<(), LabError> {
        let Pace::Open { rates, .. } = &self.pace else {
            return Err(LabError::spec(
                "rate",
                "the chat scenario sends messages on a schedule: give a rate (messages/s)",
            ));
        };
        if self.token.as_deref().is_none_or(str::is_empty) {
            return Err(LabError::spec(
                "token",
                "the chat scenario needs the token of a support or admin user",
            ));
        }
        for (field, n) in [("rooms", self.rooms), ("listeners", self.listeners)] {
            if !(1..=1000).contains(&n) {
                return Err(LabError::spec(field, "expected 1..=1000"));
            }
        }
        let connections = self.rooms * (self.listeners + 1);
        if connections > MAX_CONCURRENCY {
            return Err(LabError::spec(
                "listeners",
                format!(
                    "{} rooms of {} listeners and a sender are {connections} connections, \
                     more than {MAX_CONCURRENCY}",
                    self.rooms, self.listeners
                ),
            ));
        }
        #[allow(clippy::cast_precision_loss)] // at most 1000 rooms
        let rooms = self.rooms as f64;
        if let Some(rate) = rates
            .iter()
            .find(|r| **r / rooms > crate::chat::MAX_CHAT_RATE_PER_ROOM)
        {
            return Err(LabError::spec(
                "rate",
                format!(
                    "{rate} messages/s over {} rooms is more than the {} a second the server \
                     takes from one sender: add rooms",
                    self.rooms,
                    crate::chat::MAX_CHAT_RATE_PER_ROOM
                ),
            ));
        }
        Ok(())
    }

    /// How long the run lasts: its steps for a stepped open loop, `duration` otherwise.
    pub fn run_time(&self) -> Duration {
        match &self.pace {
            Pace::Open {
                rates,
                step: Some(step),
            } => step.saturating_mul(u32::try_from(rates.len()).unwrap_or(u32::MAX)),
            _ => self.duration,
        }
    }

    /// The target URL with the (first) path measured: what a report names.
    pub fn measured_url(&self) -> String {
        let Some(first) = self.paths.first() else {
            return self.url.clone();
        };
        match self.url.parse::<Uri>() {
            Ok(uri) => match (uri.scheme_str(), uri.authority()) {
                (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{first}"),
                _ => self.url.clone(),
            },
            Err(_) => self.url.clone(),
        }
    }
}

/// The parsed target of a valid spec.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) authority: Authority,
    pub(crate) paths: Vec<PathAndQuery>,
    pub(crate) schedule: Option<Schedule>,
}

/// The intended send times of an open loop: step `k` sends `counts[k]` requests evenly spaced
/// at `rates[k]` per second, from `k × step`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    pub(crate) rates: Vec<f64>,
    pub(crate) step: Duration,
    pub(crate) counts: Vec<u64>,
}

impl Schedule {
    /// Checks the rates and works out how many requests each step sends.
    ///
    /// # Errors
    /// [`LabError::Spec`] (`rate` or `step`) for a rate out of bounds, a step or rate that
    /// schedules no request, or a schedule longer than [`MAX_DURATION`].
    pub(crate) fn new(
        rates: &[f64],
        step: Option<Duration>,
        duration: Duration,
    ) -> Result<Schedule, LabError> {
        if rates.is_empty() {
            return Err(LabError::spec("rate", "expected at least one rate"));
        }
        let step = match step {
            Some(step) => {
                let total = step.as_secs_f64() * rates.len() as f64;
                if step.is_zero() || total > MAX_DURATION.as_secs_f64() {
                    return Err(LabError::spec(
                        "step",
                        format!(
                            "expected more than 0 s, and all {} steps within {} s",
                            rates.len(),
                            MAX_DURATION.as_secs()
                        ),
                    ));
                }
                step
            }
            None if rates.len() > 1 => {
                return Err(LabError::spec(
                    "step",
                    "several rates need a step: how long each one holds",
                ));
            }
            None => duration,
        };
        let mut counts = Vec::with_capacity(rates.len());
        for &rate in rates {
            if !rate.is_finite() || rate <= 0.0 || rate > MAX_RATE {
                return Err(LabError::spec(
                    "rate",
                    format!(
                        "{rate}/s cannot be scheduled: expected more than 0 and at most \
                         {MAX_RATE}/s"
                    ),
                ));
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let count = (rate * step.as_secs_f64()).round() as u64;
            if count == 0 {
                return Err(LabError::spec(
                    "rate",
                    format!(
                        "{rate}/s for {:.3} s schedules no request: raise the rate or the \
                         duration",
                        step.as_secs_f64()
                    ),
                ));
            }
            counts.push(count);
        }
        if counts.iter().sum::<u64>() > MAX_REQUESTS {
            return Err(LabError::spec(
                "rate",
                format!("the schedule holds more than {MAX_REQUESTS} requests"),
            ));
        }
        Ok(Schedule {
            rates: rates.to_vec(),
            step,
            counts,
        })
    }

    /// Requests in the whole schedule.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The step of request `n` and its intended send time from the start.
    pub(crate) fn at(&self, mut n: u64) -> (usize, Duration) {
        let last = self.counts.len() - 1;
        for (k, &count) in self.counts.iter().enumerate() {
            if n < count || k == last {
                let offset = self
                    .step
                    .saturating_mul(u32::try_from(k).unwrap_or(u32::MAX))
                    + Duration::from_secs_f64(n as f64 / self.rates[k]);
                return (k, offset);
            }
            n -= count;
        }
        (last, Duration::ZERO)
    }
}

impl Target {
    /// `host:port` to connect to (port 80 when the URL has none).
    pub(crate) fn host_port(&self) -> String {
        format!(
            "{}:{}",
            self.authority.host(),
            self.authority.port_u16().unwrap_or(80)
        )
    }
}

fn parse_path(path: &str) -> Result<PathAndQuery, LabError> {
    if !path.starts_with('/') {
        return Err(LabError::spec(
            "paths",
            format!("`{path}`: expected an absolute path such as /api/v1/products"),
        ));
    }
    path.parse()
        .map_err(|e| LabError::spec("paths", format!("`{path}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(spec: &LoadSpec) -> &'static str {
        match spec.validate() {
            Err(LabError::Spec { field, .. }) => field,
            other => panic!("expected a spec error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_take_the_path_of_the_url() {
        let target = LoadSpec::new("http://127.0.0.1:8080/api/v1/products?page=2")
            .validate()
            .unwrap();
        assert_eq!(target.host_port(), "127.0.0.1:8080");
        assert_eq!(target.paths, ["/api/v1/products?page=2"]);
        let target = LoadSpec::new("http://localhost").validate().unwrap();
        assert_eq!(target.host_port(), "localhost:80");
        assert_eq!(target.paths, ["/"]);
    }

    #[test]
    fn a_schedule_spaces_requests_evenly_step_by_step() {
        let s = Schedule::new(&[10.0, 20.0], Some(Duration::from_secs(1)), Duration::ZERO).unwrap();
        assert_eq!(s.counts, [10, 20]);
        assert_eq!(s.total(), 30);
        assert_eq!(s.at(0), (0, Duration::ZERO));
        assert_eq!(s.at(9), (0, Duration::from_millis(900)));
        assert_eq!(s.at(10), (1, Duration::from_secs(1)));
        assert_eq!(s.at(11), (1, Duration::from_millis(1050)));
        let one = Schedule::new(&[2.5], None, Duration::from_secs(4)).unwrap();
        assert_eq!(
            (one.counts.clone(), one.step),
            (vec![10], Duration::from_secs(4))
        );
    }

    #[test]
    fn scenarios_are_known_by_name() {
        assert_eq!("shop".parse::<Scenario>().unwrap(), Scenario::Shop);
        let err = "nope".parse::<Scenario>().unwrap_err().to_string();
        assert!(
            err.contains("unknown scenario `nope`") && err.contains("endpoint, shop, chat, carts"),
            "{err}"
        );
    }

    #[test]
    fn reports_name_the_path_measured() {
        let spec = LoadSpec {
            paths: vec!["/missing".into()],
            ..LoadSpec::new("http://127.0.0.1:8080")
        };
        assert_eq!(spec.measured_url(), "http://127.0.0.1:8080/missing");
        assert_eq!(
            LoadSpec::new("http://h:1/a?b=1").measured_url(),
            "http://h:1/a?b=1"
        );
    }

    #[test]
    fn every_bound_is_enforced() {
        let ok = LoadSpec::new("http://127.0.0.1:1");
        assert_eq!(
            field(&LoadSpec {
                concurrency: 0,
                ..ok.clone()
            }),
            "concurrency"
        );
        assert_eq!(
            field(&LoadSpec {
                concurrency: MAX_CONCURRENCY + 1,
                ..ok.clone()
            }),
            "concurrency"
        );
        assert_eq!(
            field(&LoadSpec {
                duration: Duration::ZERO,
                ..ok.clone()
            }),
            "duration"
        );
        assert_eq!(
            field(&LoadSpec {
                duration: MAX_DURATION * 2,
                ..ok.clone()
            }),
            "duration"
        );
        assert_eq!(
            field(&LoadSpec {
                requests: Some(0),
                ..ok.clone()
            }),
            "requests"
        );
        assert_eq!(
            field(&LoadSpec {
                request_timeout: Duration::ZERO,
                ..ok.clone()
            }),
            "request_timeout"
        );
        assert_eq!(
            field(&LoadSpec {
                paths: vec!["api".into()],
                ..ok.clone()
            }),
            "paths"
        );
        let open = |rates: &[f64], step: Option<Duration>| LoadSpec {
            pace: Pace::Open {
                rates: rates.to_vec(),
                step,
            },
            ..ok.clone()
        };
        assert_eq!(field(&open(&[0.0], None)), "rate");
        assert_eq!(field(&open(&[-5.0], None)), "rate");
        assert_eq!(field(&open(&[f64::NAN], None)), "rate");
        assert_eq!(field(&open(&[MAX_RATE * 2.0], None)), "rate");
        assert_eq!(field(&open(&[], None)), "rate");
        // 0.01/s for 10 s: not one request.
        assert_eq!(field(&open(&[0.01], None)), "rate");
        assert_eq!(field(&open(&[10.0, 20.0], None)), "step");
        assert_eq!(field(&open(&[10.0], Some(Duration::ZERO))), "step");
        assert_eq!(field(&open(&[10.0, 10.0], Some(MAX_DURATION))), "step");
        assert_eq!(
            field(&LoadSpec {
                requests: Some(10),
                ..open(&[10.0], None)
            }),
            "requests"
        );
        assert_eq!(
            field(&LoadSpec {
                scenario: Scenario::Shop,
                users: 0,
                ..ok.clone()
            }),
            "users"
        );
        let chat = |rate: f64, token: Option<&str>| LoadSpec {
            scenario: Scenario::Chat,
            token: token.map(str::to_owned),
            ..open(&[rate], None)
        };
        assert!(chat(100.0, Some("t")).validate().is_ok());
        assert_eq!(field(&chat(100.0, None)), "token");
        // 10 rooms take at most 200 messages/s from their 10 senders.
        assert_eq!(field(&chat(201.0, Some("t"))), "rate");
        assert_eq!(
            field(&LoadSpec {
                pace: Pace::Closed,
                ..chat(1.0, Some("t"))
            }),
            "rate"
        );
        assert_eq!(
            field(&LoadSpec {
                listeners: 1000,
                ..chat(1.0, Some("t"))
            }),
            "listeners"
        );
        assert_eq!(
            field(&LoadSpec {
                scenario: Scenario::Carts,
                carts: 0,
                ..ok.clone()
            }),
            "carts"
        );
        assert_eq!(
            field(&LoadSpec {
                timeline: Some(Duration::from_millis(1)),
                ..ok.clone()
            }),
            "timeline"
        );
        assert_eq!(field(&LoadSpec::new("https://example.com")), "url");
        assert_eq!(field(&LoadSpec::new("/just/a/path")), "url");
        assert_eq!(field(&LoadSpec::new("not a url")), "url");
    }
}
