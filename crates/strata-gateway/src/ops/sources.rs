//! Figures the gateway cannot know itself, read from other processes' Prometheus endpoints
//! (`gateway.ops.sources`): the event pipeline's consumer lag, unacknowledged events, dead
//! letters and outbox, as the workers export them (`strata_worker_…`).
//!
//! Each source has its own task that reads it once per [`super::stream::INTERVAL`], each read
//! bounded by [`READ_TIMEOUT`], and keeps the last figures it got. The stream only copies
//! what the tasks last stored, so a slow or dead source never delays a snapshot: its figures
//! are shown with their age, marked stale.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use strata_core::Shutdown;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::parse_source;

/// Longest wait for one read of a source, connect included: under the stream's interval, so a
/// silent source is found out before its next turn.
pub const READ_TIMEOUT: Duration = Duration::from_millis(800);

/// Figures older than this are stale even when the last read did not fail (its task is
/// stuck or the source answers without them).
const STALE_AFTER: Duration = Duration::from_secs(3);

/// Largest `/metrics` body read: a worker's is a few KiB.
const MAX_BODY: usize = 1024 * 1024;

/// The metric families shown (every series of each).
pub const SHOWN: [&str; 5] = [
    "strata_worker_consumer_lag",
    "strata_worker_consumer_ack_pending",
    "strata_worker_dead_letters",
    "strata_worker_outbox_pending",
    "strata_worker_outbox_oldest_age_seconds",
];

/// One series: `name{labels} value`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The metric's name.
    pub name: String,
    /// Its labels as written between the braces (`handler="notifications"`); empty for none.
    pub labels: String,
    /// Its value.
    pub value: f64,
}

/// One source as a snapshot shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// The URL read.
    pub url: String,
    /// Whether the last read succeeded.
    pub up: bool,
    /// Whether the figures are old: the last read failed, or they are older than 3 s.
    pub stale: bool,
    /// Age of the figures in milliseconds; absent when no read ever succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Why the last read failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The last figures read, of the families in [`SHOWN`].
    pub samples: Vec<Sample>,
}

/// The configured sources and what was last read from each.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    sources: Vec<Arc<Source>>,
}

#[derive(Debug)]
struct Source {
    url: String,
    last: Mutex<Reading>,
}

#[derive(Debug, Default)]
struct Reading {
    samples: Vec<Sample>,
    read_at: Option<Instant>,
    error: Option<String>,
}

impl Sources {
    /// Starts reading every URL of `urls` (checked by the configuration, see
    /// [`parse_source`]; one that does not parse is logged and shown as failing) every
    /// `every`, until `stop` is cancelled.
    pub fn start(urls: &[String], every: Duration, stop: &Shutdown) -> Self {
        let sources = urls
            .iter()
            .map(|url| {
                let source = Arc::new(Source {
                    url: url.clone(),
                    last: Mutex::new(Reading::default()),
                });
                match parse_source(url) {
                    Ok(uri) => {
                        tokio::spawn(poll(Arc::clone(&source), uri, every, stop.clone()));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "ops source ignored");
                        source.store(Err(error));
                    }
                }
                source
            })
            .collect();
        Self { sources }
    }

    /// What was last read from each source, in configuration order.
    pub fn view(&self) -> Vec<SourceView> {
        let now = Instant::now();
        self.sources
            .iter()
            .map(|source| {
                let last = source.last.lock().unwrap_or_else(PoisonError::into_inner);
                let age = last.read_at.map(|at| now.saturating_duration_since(at));
                SourceView {
                    url: source.url.clone(),
                    up: last.read_at.is_some() && last.error.is_none(),
                    stale: last.error.is_some() || age.is_none_or(|age| age > STALE_AFTER),
                    age_ms: age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
                    error: last.error.clone(),
                    samples: last.samples.clone(),
                }
            })
            .collect()
    }
}

impl Source {
    /// Keeps the figures of a successful read, or the error of a failed one (and the figures
    /// from before it).
    fn store(&self, read: Result<Vec<Sample>, String>) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match read {
            Ok(samples) => {
                last.samples = samples;
                last.read_at = Some(Instant::now());
                last.error = None;
            }
            Err(error) => last.error = Some(error),
        }
    }
}

/// Reads `source` at `uri` every `every` until `stop`.
async fn poll(source: Arc<Source>, uri: Uri, every: Duration, stop: Shutdown) {
    loop {
        let read = match tokio::time::timeout(READ_TIMEOUT, fetch(&uri)).await {
            Ok(read) => read.map(|text| parse(&text)),
            Err(_) => Err(format!("no answer within {} ms", READ_TIMEOUT.as_millis())),
        };
        source.store(read);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// `GET uri` over a fresh HTTP/1.1 connection: the body of a 2xx answer.
async fn fetch(uri: &Uri) -> Result<String, String> {
    let host = uri.host().ok_or("no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot talk HTTP: {e}"))?;
    // The connection is driven beside the exchange and dropped with it (a timeout included).
    let exchange = async {
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8".to_owned())
    };
    tokio::pin!(connection);
    tokio::pin!(exchange);
    let first = tokio::select! {
        read = &mut exchange => Some(read),
        _ = &mut connection => None,
    };
    match first {
        Some(read) => read,
        // The connection ended first: the answer may still be whole in the body's buffer.
        None => exchange.await,
    }
}

/// The samples of the families in [`SHOWN`] from a Prometheus text exposition.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let name_end = line.find(['{', ' '])?;
            let name = &line[..name_end];
            if !SHOWN.contains(&name) {
                return None;
            }
            let (labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(rest) => rest.split_once('}')?,
                None => ("", &line[name_end..]),
            };
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some(Sample {
                name: name.to_owned(),
                labels: labels.to_owned(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shown_families_are_kept_with_their_labels() {
        let text = "\
# HELP strata_worker_consumer_lag Events not yet delivered.
# TYPE strata_worker_consumer_lag gauge
strata_worker_consumer_lag{handler=\"notifications\"} 7
strata_worker_consumer_lag{handler=\"orders\"} 0
strata_worker_dead_letters 2
strata_worker_events_total{handler=\"orders\",outcome=\"done\"} 40
strata_worker_outbox_oldest_age_seconds 1.5 1700000000
broken{
";
        let samples = parse(text);
        assert_eq!(
            samples,
            [
                Sample {
                    name: "strata_worker_consumer_lag".into(),
                    labels: "handler=\"notifications\"".into(),
                    value: 7.0
                },
                Sample {
                    name: "strata_worker_consumer_lag".into(),
                    labels: "handler=\"orders\"".into(),
                    value: 0.0
                },
                Sample {
                    name: "strata_worker_dead_letters".into(),
                    labels: String::new(),
                    value: 2.0
                },
                Sample {
                    name: "strata_worker_outbox_oldest_age_seconds".into(),
                    labels: String::new(),
                    value: 1.5
                },
            ]
        );
    }
}
