//! The load loop: workers with one keep-alive connection each, a shared ticket counter that
//! enforces the request bound, a deadline that enforces the time bound.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::histogram::Histogram;
use crate::report::{Latency, LoadReport};
use crate::spec::Target;
use crate::{Failure, LabError, LoadSpec};

/// Pause after a failed connect, so a dead target is probed a few hundred times a second per
/// worker instead of being spun on (the failures are still counted, one per attempt).
const CONNECT_BACKOFF: Duration = Duration::from_millis(5);

/// Runs `spec` to its time or request bound.
///
/// # Errors
/// [`LabError::Spec`] for an invalid spec, [`LabError::Resolve`] or [`LabError::NoAddress`]
/// when the host does not resolve. Failed requests are counted in the report, not returned.
pub async fn run(spec: &LoadSpec) -> Result<LoadReport, LabError> {
    run_until(spec, CancellationToken::new()).await
}

/// Runs `spec` until its bounds or until `stop` is cancelled, whichever comes first. Requests
/// in flight when it stops are completed (or time out) and counted.
///
/// # Errors
/// As [`run`].
pub async fn run_until(spec: &LoadSpec, stop: CancellationToken) -> Result<LoadReport, LabError> {
    let target = spec.validate()?;
    let addr = resolve(&target).await?;
    let host = HeaderValue::from_str(target.authority.as_str())
        .map_err(|e| LabError::spec("url", format!("host is not a valid header: {e}")))?;
    let started = Instant::now();
    let plan = Arc::new(Plan {
        addr,
        host,
        method: spec.method.clone(),
        paths: target.paths.iter().map(path_uri).collect(),
        instance_header: spec.instance_header.clone(),
        connect_timeout: spec.connect_timeout,
        request_timeout: spec.request_timeout,
        deadline: started + spec.duration,
        max_requests: spec.requests,
        issued: AtomicU64::new(0),
        stop,
    });
    let mut workers = JoinSet::new();
    for _ in 0..spec.concurrency {
        workers.spawn(worker(Arc::clone(&plan)));
    }
    let mut total = Tally::new();
    while let Some(tally) = workers.join_next().await {
        total.merge(tally?);
    }
    Ok(total.into_report(spec, started.elapsed()))
}

/// Resolves the target's `host:port` once, before the clock starts.
async fn resolve(target: &Target) -> Result<SocketAddr, LabError> {
    let authority = target.host_port();
    let first = tokio::net::lookup_host(authority.as_str())
        .await
        .map_err(|source| LabError::Resolve {
            authority: authority.clone(),
            source,
        })?
        .next();
    first.ok_or(LabError::NoAddress { authority })
}

/// A path as the origin-form URI of a request line.
fn path_uri(path: &PathAndQuery) -> Uri {
    Uri::from(path.clone())
}

/// Everything the workers share, immutable but for the ticket counter.
struct Plan {
    addr: SocketAddr,
    host: HeaderValue,
    method: Method,
    paths: Vec<Uri>,
    instance_header: HeaderName,
    connect_timeout: Duration,
    request_timeout: Duration,
    deadline: Instant,
    max_requests: Option<u64>,
    issued: AtomicU64,
    stop: CancellationToken,
}

impl Plan {
    /// Claims the next request number, or `None` once any bound is reached.
    fn next_ticket(&self) -> Option<u64> {
        if self.stop.is_cancelled() || Instant::now() >= self.deadline {
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        match self.max_requests {
            Some(max) if n >= max => None,
            _ => Some(n),
        }
    }

    fn request(&self, ticket: u64) -> Request<Empty<Bytes>> {
        let index = usize::try_from(ticket % self.paths.len() as u64).unwrap_or(0);
        let mut request = Request::new(Empty::new());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.paths[index].clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("strata-lab/", env!("CARGO_PKG_VERSION"))),
        );
        request
    }

    /// Sleeps for `pause`, or less if the run is stopped meanwhile.
    async fn pause(&self, pause: Duration) {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = self.stop.cancelled() => {}
        }
    }
}

/// One worker: one connection at a time, one request at a time.
async fn worker(plan: Arc<Plan>) -> Tally {
    let mut tally = Tally::new();
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    while let Some(ticket) = plan.next_ticket() {
        tally.requests += 1;
        // A response with `Connection: close`, or an idle close by the server, ends the
        // connection; open a new one rather than fail the request on it.
        if connection.as_ref().is_none_or(SendRequest::is_closed) {
            connection = None;
            match connect(&plan).await {
                Ok(sender) => {
                    tally.connections += 1;
                    connection = Some(sender);
                }
                Err(failure) => {
                    tally.fail(failure);
                    plan.pause(CONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let Some(sender) = connection.as_mut() else {
            continue;
        };
        let started = Instant::now();
        let outcome = timeout(
            plan.request_timeout,
            exchange(sender, plan.request(ticket), &plan.instance_header),
        )
        .await
        .unwrap_or(Err(Failure::Timeout));
        match outcome {
            Ok(answer) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                tally.answer(answer, micros);
            }
            Err(failure) => {
                tally.fail(failure);
                // The connection's state is unknown after a failure: start afresh.
                connection = None;
            }
        }
    }
    tally
}

/// Opens a connection and starts its driver task.
async fn connect(plan: &Plan) -> Result<SendRequest<Empty<Bytes>>, Failure> {
    let stream = match timeout(plan.connect_timeout, TcpStream::connect(plan.addr)).await {
        Err(_) => return Err(Failure::ConnectTimeout),
        Ok(Err(_)) => return Err(Failure::Connect),
        Ok(Ok(stream)) => stream,
    };
    // Requests are single small writes; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connect)?;
    tokio::spawn(async move {
        // Its errors reach the request that was in flight; nothing more to report here.
        let _ = driver.await;
    });
    Ok(sender)
}

/// The parts of a response the report needs.
struct Answer {
    status: u16,
    instance: Option<HeaderValue>,
}

/// Sends one request and reads the whole response.
async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
    instance_header: &HeaderName,
) -> Result<Answer, Failure> {
    if sender.ready().await.is_err() {
        // Closed between the check in `worker` and now; the request was not written.
        return Err(Failure::NotSent);
    }
    let response = match sender.try_send_request(request).await {
        Ok(response) => response,
        // hyper returns the request only when it never serialized it onto the connection.
        Err(e) if e.message().is_some() => return Err(Failure::NotSent),
        Err(e) => return Err(Failure::after_send(e.error())),
    };
    let (parts, mut body) = response.into_parts();
    while let Some(frame) = body.frame().await {
        frame.map_err(|_| Failure::Body)?;
    }
    Ok(Answer {
        status: parts.status.as_u16(),
        instance: parts.headers.get(instance_header).cloned(),
    })
}

/// One worker's counts, merged at the end so the hot loop shares nothing but the ticket.
struct Tally {
    requests: u64,
    ok: u64,
    connections: u64,
    statuses: HashMap<u16, u64>,
    failures: [u64; Failure::ALL.len()],
    per_instance: HashMap<HeaderValue, u64>,
    latency: Histogram,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: 0,
            ok: 0,
            connections: 0,
            statuses: HashMap::new(),
            failures: [0; Failure::ALL.len()],
            per_instance: HashMap::new(),
            latency: Histogram::new(),
        }
    }

    fn fail(&mut self, failure: Failure) {
        self.failures[failure.index()] += 1;
    }

    fn answer(&mut self, answer: Answer, micros: u64) {
        if (200..300).contains(&answer.status) {
            self.ok += 1;
        }
        *self.statuses.entry(answer.status).or_default() += 1;
        if let Some(instance) = answer.instance {
            *self.per_instance.entry(instance).or_default() += 1;
        }
        self.latency.record(micros);
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.connections += other.connections;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (mine, theirs) in self.failures.iter_mut().zip(other.failures) {
            *mine += theirs;
        }
        for (instance, n) in other.per_instance {
            *self.per_instance.entry(instance).or_default() += n;
        }
        self.latency.merge(&other.latency);
    }

    #[allow(clippy::cast_precision_loss)] // request counts fit f64's 52 bits
    fn into_report(self, spec: &LoadSpec, elapsed: Duration) -> LoadReport {
        let errors = Failure::ALL
            .into_iter()
            .filter(|f| self.failures[f.index()] > 0)
            .map(|f| (f.as_str().to_owned(), self.failures[f.index()]))
            .collect();
        let sent_failures = Failure::ALL
            .into_iter()
            .filter(|f| f.was_sent())
            .map(|f| self.failures[f.index()])
            .sum();
        let mut per_instance = BTreeMap::new();
        for (name, n) in self.per_instance {
            *per_instance
                .entry(String::from_utf8_lossy(name.as_bytes()).into_owned())
                .or_default() += n;
        }
        let secs = elapsed.as_secs_f64();
        LoadReport {
            url: spec.url.clone(),
            method: spec.method.to_string(),
            concurrency: spec.concurrency,
            requests: self.requests,
            ok: self.ok,
            statuses: self.statuses.into_iter().collect(),
            errors,
            sent_failures,
            per_instance,
            connections: self.connections,
            elapsed,
            req_per_sec: if secs > 0.0 {
                self.requests as f64 / secs
            } else {
                0.0
            },
            latency_ms: Latency::from_micros(&self.latency),
        }
    }
}
