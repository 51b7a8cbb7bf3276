//! HTTP pieces every axum role shares: the JSON error body, request ids and W3C trace context
//! (`traceparent`), the instance header, per-request metrics and access logs, and the
//! operational endpoints (`/healthz`, `/readyz`, `/metrics`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tracing::Instrument;

/// The values of cookie `name` among `headers`' `Cookie` headers, in order (a browser may send
/// a name twice, e.g. set on two paths): the one place cookies are read, so every role splits
/// them the same way. Values are trimmed; checking them is the caller's.
pub fn cookies<'h, 'n>(
    headers: &'h axum::http::HeaderMap,
    name: &'n str,
) -> impl Iterator<Item = &'h str> + use<'h, 'n> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(move |(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

use crate::random;
pub use crate::serve::serve;
use crate::shutdown::Shutdown;
use crate::telemetry::{SharedRegistry, render};

/// Carries the request id from the gateway to every instance and back to the client.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Names the instance that served a response (`api-2`).
pub const INSTANCE: HeaderName = HeaderName::from_static("x-strata-instance");
/// The default time an instance gives a request to produce its response ([`role_router`]):
/// 25 s, under the gateway's own 30 s (`gateway.request_timeout_ms`), so the instance gives up
/// the work first and its answer, which names it, is what reaches the client.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(25);
/// Longest request id accepted from a client; longer ones are replaced by a fresh id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A fresh request id: 32 lowercase hex digits, unique without coordination, made without a
/// system call or a lock (see [`crate::random`]).
///
/// The high half is drawn once per process, the low half is a process-wide counter passed
/// through SplitMix64's finaliser (a bijection): ids never repeat within a process, differ
/// between processes with overwhelming probability, and do not look sequential in logs.
pub fn new_request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let (high, key) = *SEED.get_or_init(|| (random::next_u64(), random::next_u64()));
    let low = random::splitmix(COUNTER.fetch_add(1, Ordering::Relaxed) ^ key);
    let mut id = String::with_capacity(32);
    for byte in high.to_be_bytes().into_iter().chain(low.to_be_bytes()) {
        push_hex(&mut id, byte);
    }
    id
}

/// Keeps a client's request id when it is short and printable, so ids can be correlated
/// end to end; anything else is replaced (it would otherwise poison logs).
pub fn accept_request_id(value: Option<&HeaderValue>) -> Option<String> {
    let value = value?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| value.to_owned())
}

/// W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the trace a request belongs to
/// and the span that sent it, `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Vendors' own trace data, passed through untouched along with a valid `traceparent`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Where one piece of work stands in a trace: the trace id it shares with everything done for
/// the same client request (a checkout, its events and their handling), the id of its own
/// span, and the trace flags. Parsed from a `traceparent` ([`accept_traceparent`]), continued
/// with a span of one's own ([`TraceContext::child`]), or started ([`TraceContext::start`]);
/// its [`Display`](std::fmt::Display) is the `traceparent` to send on, naming this span as
/// the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: [u8; 8],
    flags: u8,
}

/// A trace id: 16 bytes, never all zero; displayed as 32 lowercase hex digits, the form logs
/// carry (`trace_id`) and `traceparent` spells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Trace flags strata knows: `sampled` (01) and Level 2's `random` trace id (02). Others are
/// cleared when a context is passed on, as the specification asks of flags one does not know.
const KNOWN_FLAGS: u8 = 0x03;

impl TraceContext {
    /// A new trace, this span its root: random trace and span ids (never all zero), version
    /// 00, flags `sampled` (strata writes the trace id of every request it logs).
    pub fn start() -> Self {
        let (high, low) = (random::next_u64(), random::next_u64());
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&high.to_be_bytes());
        trace_id[8..].copy_from_slice(&low.to_be_bytes());
        if trace_id == [0; 16] {
            trace_id[15] = 1;
        }
        Self {
            trace_id: TraceId(trace_id),
            span_id: new_span_id(),
            flags: 0x01,
        }
    }

    /// The same trace, with a new span of one's own whose parent is `self`'s span.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: new_span_id(),
            flags: self.flags,
        }
    }

    /// The span that continues `parent` (a child of it), or the root of a new trace when there
    /// is none: what a receiver of a request or an event runs in.
    pub fn continued(parent: Option<Self>) -> Self {
        parent.as_ref().map_or_else(Self::start, Self::child)
    }

    /// Parses one `traceparent` value. `None` when it is not valid: an unknown version `ff`,
    /// version 00 with anything after the flags, a later version whose extra fields do not
    /// start with `-`, a wrong length or separator, upper-case or other non-hex digits, or an
    /// all-zero trace or parent id. A later version (01 to fe) is read as 00, as the
    /// specification asks.
    pub fn parse(value: &[u8]) -> Option<Self> {
        const LEN: usize = 55;
        let version = hex_byte(value.get(0..2)?)?;
        let fits = match version {
            0xff => false,
            0x00 => value.len() == LEN,
            _ => value.len() == LEN || value.get(LEN) == Some(&b'-'),
        };
        if !fits || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, byte) in span_id.iter_mut().enumerate() {
            *byte = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            span_id,
            flags: flags & KNOWN_FLAGS,
        })
    }

    /// The trace id, shared by every span of the trace.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This span's id as 16 hex digits: the parent id of what it sends on.
    pub fn span_id(&self) -> String {
        let mut out = String::with_capacity(16);
        for byte in self.span_id {
            push_hex(&mut out, byte);
        }
        out
    }

    /// The `traceparent` header that names this span as the parent.
    pub fn header_value(&self) -> HeaderValue {
        // Hex digits and dashes only: always a valid header value.
        HeaderValue::from_str(&self.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

impl std::fmt::Display for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("00-")?;
        write_hex(f, &self.trace_id.0)?;
        f.write_str("-")?;
        write_hex(f, &self.span_id)?;
        f.write_str("-")?;
        write_hex(f, &[self.flags])
    }
}

/// The trace context the caller sent in `traceparent`, when there is exactly one header and
/// it is valid ([`TraceContext::parse`]); `None` otherwise, and the receiver starts a trace of
/// its own. A malformed header is never an error: it is replaced.
pub fn accept_traceparent(headers: &http::HeaderMap) -> Option<TraceContext> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    TraceContext::parse(value.as_bytes())
}

/// Every role's handlers can ask for the request's [`TraceContext`], which [`observe`] put in
/// its extensions; outside [`role_router`] (a router driven bare in a test) they get a new
/// trace rather than an error.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TraceContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<TraceContext>()
            .copied()
            .unwrap_or_else(TraceContext::start))
    }
}

/// A span id: random, never all zero.
fn new_span_id() -> [u8; 8] {
    let id = random::next_u64();
    if id == 0 { 1u64 } else { id }.to_be_bytes()
}

/// Two lower-case hex digits as a byte; upper case is refused, as `traceparent` requires.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let digit = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    match digits {
        [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_hex(out: &mut String, byte: u8) {
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0xf)]));
}

fn write_hex(f: &mut std::fmt::Formatter<'_>, bytes: &[u8]) -> std::fmt::Result {
    let mut buf = [0u8; 32];
    for (chunk, byte) in buf.chunks_exact_mut(2).zip(bytes) {
        chunk[0] = HEX[usize::from(byte >> 4)];
        chunk[1] = HEX[usize::from(byte & 0xf)];
    }
    let len = 2 * bytes.len().min(16);
    // Hex digits only: always UTF-8.
    f.write_str(std::str::from_utf8(&buf[..len]).unwrap_or_default())
}

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Machine-readable code and human-readable message of an error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// Builds an error response with the JSON problem body.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.into(),
        },
    };
    (status, Json(body)).into_response()
}

/// The fallback of every router: unknown routes are a JSON 404, not an empty body.
pub async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Known route, wrong method: a JSON 405.
pub async fn method_not_allowed() -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// A readiness probe: `Ok` when the role can take traffic, `Err(reason)` otherwise.
pub type ReadyCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Builds a readiness probe from an async check.
pub fn ready_check<F, Fut>(check: F) -> ReadyCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(check()))
}

/// Logs why `backend` is not ready and returns the public reason, which names the backend only:
/// `/readyz` is reachable by anyone, the cause (addresses, driver messages) belongs in the log.
pub fn unready(backend: &str, error: impl std::fmt::Display) -> String {
    tracing::warn!(backend, error = %error, "not ready");
    format!("{backend} not ready")
}

/// The HTTP front every role instance puts around its own `routes`: `/healthz`, `/readyz` and
/// `/metrics`, JSON answers for unknown routes and wrong methods, and [`observe`] outermost so
/// that every response (fallbacks included) carries the request id and instance name and is
/// counted. `registry` may already hold the role's own metrics. Requests that declare a body
/// over `max_body_bytes` get a JSON 413 on every route; bodies without a declared length are
/// bounded by the same limit when an extractor reads them. A request whose response has not
/// begun within `request_timeout` is given up (see [`limit_time`]).
pub fn role_router(
    role: &'static str,
    instance: Arc<str>,
    mut registry: Registry,
    routes: Router,
    ready: ReadyCheck,
    max_body_bytes: usize,
    request_timeout: Duration,
) -> Router {
    let metrics = HttpMetrics::register(role, &mut registry);
    let ops = Ops {
        role,
        instance: instance.clone(),
        registry: Arc::new(registry),
        ready,
    };
    routes
        .merge(ops_router(ops))
        .fallback(not_found)
        // Set after every merge: it applies to the routes present when it is called.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            limit_declared_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            limit_time,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Observe { instance, metrics },
            observe,
        ))
}

/// Gives up a request whose handler has not produced its response within the limit: the
/// handler's future is dropped (its store calls are cancelled with it, a transaction rolled
/// back) and the client gets a JSON 504 `request_timeout`, the status the gateway answers
/// for its own `gateway.request_timeout_ms`, so a client sees one status for "too slow"
/// wherever it was measured, and the gateway counts it as the instance's failure as it
/// counts its own timeouts (a 5xx; never retried, since the request may have had effects).
/// The limit covers the response's head: a body streams on, and a WebSocket, whose
/// handler answers `101` at once, lives as long as its connection.
async fn limit_time(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => {
            tracing::warn!(limit_ms = limit.as_millis(), "request timed out");
            error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "request_timeout",
                format!("no response within {} ms", limit.as_millis()),
            )
        }
    }
}

/// Refuses a request whose `Content-Length` exceeds the limit with a JSON 413 before any
/// handler runs, so an oversized upload is never read.
async fn limit_declared_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > u64::try_from(limit).unwrap_or(u64::MAX) => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body larger than {limit} bytes"),
        ),
        _ => next.run(request).await,
    }
}

/// The `method` label of a request: its method when it is one of the standard ones (RFC 9110
/// §9 and `PATCH`), `other` otherwise. The method is the client's to choose, so any other
/// value would let a client create series without bound.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// Per-request metrics of one role instance.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    /// Registers `strata_<role>_http_requests_total` and
    /// `strata_<role>_http_request_duration_seconds` in `registry`.
    pub fn register(role: &str, registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms … ~8 s: covers a cached read and a slow checkout on one scale.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 15))
        });
        registry.register(
            format!("strata_{role}_http_requests"),
            "HTTP requests served",
            requests.clone(),
        );
        registry.register(
            format!("strata_{role}_http_request_duration_seconds"),
            "Time to serve an HTTP request",
            duration.clone(),
        );
        Self { requests, duration }
    }
}

/// What the observing middleware needs: who this instance is and where to count.
#[derive(Clone)]
pub struct Observe {
    pub instance: Arc<str>,
    pub metrics: HttpMetrics,
}

/// Middleware: request id (kept or generated), the trace context (continued from
/// `traceparent` or started, in the request's extensions), a span carrying both ids
/// (`request_id`, `trace_id`), `X-Strata-Instance` and
/// `X-Request-Id` on the response, metrics, and the access log line of a sampled request
/// (`log.access_sample`).
pub async fn observe(State(observe): State<Observe>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id =
        accept_request_id(request.headers().get(REQUEST_ID)).unwrap_or_else(new_request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    // The caller's trace continued with this instance's own span (a new trace when called
    // directly, or with a malformed header); handlers that pass the trace on (checkout's
    // event) take it from the extensions.
    let trace = TraceContext::continued(accept_traceparent(request.headers()));
    request.extensions_mut().insert(trace);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    // Health checks and scrapes are never in the access log: a gateway checks every instance
    // twice a second, and the metrics count them.
    let path = (!is_ops_route(&route) && crate::telemetry::access_sampled())
        .then(|| request.uri().path().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        trace_id = %trace.trace_id(),
        instance = %observe.instance
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    let headers = response.headers_mut();
    if let Ok(mut value) = HeaderValue::from_str(&request_id) {
        // Unique to this response: over HTTP/2, HPACK sends it as a literal instead of adding
        // it to both ends' tables, where it would only push out the values that repeat.
        value.set_sensitive(true);
        headers.insert(REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(&observe.instance) {
        headers.insert(INSTANCE, value);
    }
    observe
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method_label(&method).to_owned(),
            route: route.clone(),
            status: status.as_u16(),
        })
        .inc();
    observe
        .metrics
        .duration
        .get_or_create(&RouteLabels { route })
        .observe(elapsed.as_secs_f64());
    if let Some(path) = path {
        span.in_scope(|| {
            tracing::info!(
                target: "strata_core::access",
                method = %method,
                path = %path,
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        });
    }
    response
}

/// The operational endpoints every instance serves ([`ops_router`]).
fn is_ops_route(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// Everything the operational endpoints need.
#[derive(Clone)]
pub struct Ops {
    pub role: &'static str,
    pub instance: Arc<str>,
    pub registry: SharedRegistry,
    pub ready: ReadyCheck,
}

/// `/healthz` (alive), `/readyz` (backends reachable) and `/metrics` (Prometheus text).
pub fn ops_router<S: Clone + Send + Sync + 'static>(ops: Ops) -> Router<S> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

#[derive(Serialize)]
struct Status<'a> {
    status: &'a str,
    role: &'a str,
    instance: &'a str,
}

async fn healthz(State(ops): State<Ops>) -> Response {
    Json(Status {
        status: "ok",
        role: ops.role,
        instance: &ops.instance,
    })
    .into_response()
}

async fn readyz(State(ops): State<Ops>) -> Response {
    match (ops.ready)().await {
        Ok(()) => Json(Status {
            status: "ready",
            role: ops.role,
            instance: &ops.instance,
        })
        .into_response(),
        Err(reason) => error_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason),
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&ops.registry),
    )
        .into_response()
}

/// How a role instance fails to start or to keep serving. Every role's error enum wraps it,
/// so the three ways are written once.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The settings given to the role's `build` make no sense.
    #[error("invalid {role} settings: {reason}")]
    Settings {
        /// The role (`api`, `chat`, …).
        role: &'static str,
        /// What is wrong, naming the setting.
        reason: &'static str,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// One role instance's HTTP server: its bound listener and the router it will serve. Roles
/// bind in `build` (so a port in use fails start-up, and port 0 reports the OS's choice) and
/// serve in `run`.
pub struct RoleServer {
    role: &'static str,
    instance: Arc<str>,
    listener: tokio::net::TcpListener,
    local_addr: std::net::SocketAddr,
    router: Router,
    /// Cancelled when the instance starts draining: `/readyz` answers 503 from then on.
    draining: Shutdown,
    /// How long `run` keeps serving after shutdown is asked for, unready, before it stops
    /// accepting ([`RoleServer::drain_delay`]).
    drain_delay: std::time::Duration,
}

impl RoleServer {
    /// Binds `addr`; nothing is served until [`RoleServer::run`].
    ///
    /// # Errors
    /// [`RoleError::Bind`] when the address cannot be bound.
    pub async fn bind(
        role: &'static str,
        instance: Arc<str>,
        addr: std::net::SocketAddr,
        router: Router,
    ) -> Result<Self, RoleError> {
        let bind_error = |source| RoleError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let draining = Shutdown::new();
        let router = router.layer(axum::middleware::from_fn_with_state(
            draining.clone(),
            unready_while_draining,
        ));
        Ok(Self {
            role,
            instance,
            listener,
            local_addr,
            router,
            draining,
            drain_delay: std::time::Duration::ZERO,
        })
    }

    /// Sets how long [`RoleServer::run`] goes on serving once shutdown is asked for, with
    /// `/readyz` answering 503 `draining`, before it stops accepting connections. A load
    /// balancer that checks readiness (the gateway does, every `health.interval_ms`) takes
    /// the instance out meanwhile, so no request meets a closed port. Default zero: stop
    /// accepting at once (right when the balancer is told first, as `strata up` does).
    #[must_use]
    pub fn drain_delay(mut self, delay: std::time::Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// The token that marks this instance as draining: cancelled, `/readyz` answers 503
    /// `draining` while every other route keeps serving. [`RoleServer::run`] cancels it when
    /// shutdown is asked for; a role that drains in steps of its own cancels it first.
    pub fn draining(&self) -> Shutdown {
        self.draining.clone()
    }

    /// The address actually bound (the OS's choice when the port was 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// The complete router, for driving the role in-process.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves until `shutdown` is cancelled; then, unready, goes on serving for the drain
    /// delay, stops accepting, lets in-flight requests finish and returns.
    ///
    /// # Errors
    /// [`RoleError::Serve`] on an I/O error of the listener.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), RoleError> {
        let (role, instance) = (self.role, self.instance);
        tracing::info!(role, instance = %instance, addr = %self.local_addr, "listening");
        let stop = Shutdown::new();
        let (draining, delay) = (self.draining, self.drain_delay);
        let delayed_stop = {
            let (stop, instance) = (stop.clone(), instance.clone());
            async move {
                shutdown.cancelled().await;
                draining.cancel();
                if !delay.is_zero() {
                    tracing::info!(role, instance = %instance, delay_ms = delay.as_millis(), "draining: unready before the listener closes");
                    tokio::time::sleep(delay).await;
                }
                stop.cancel();
            }
        };
        let serving = serve(self.listener, self.router, stop);
        tokio::pin!(serving);
        let served = tokio::select! {
            served = &mut serving => served,
            () = delayed_stop => serving.await,
        };
        served.map_err(RoleError::Serve)?;
        tracing::info!(role, instance = %instance, "stopped");
        Ok(())
    }
}

/// Answers `/readyz` with 503 `draining` once `draining` is cancelled, whatever the role's own
/// check says: the instance is on its way out and wants no new traffic.
async fn unready_while_draining(
    State(draining): State<Shutdown>,
    request: Request,
    next: Next,
) -> Response {
    if draining.is_cancelled() && request.uri().path() == "/readyz" {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "draining: shutting down",
        );
    }
    next.run(request).await
}

/// Compares two byte strings in time that depends on their lengths only, not on where they
/// differ, so a token cannot be guessed byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// True when `response` is an error carrying the JSON problem body.
pub fn is_json_error(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
        && !response.status().is_success()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_kept_only_when_sane() {
        let ok = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(
            accept_request_id(Some(&ok)).as_deref(),
            Some("abc-123_x.y:z")
        );
        let spaces = HeaderValue::from_static("a b");
        assert_eq!(accept_request_id(Some(&spaces)), None);
        let long = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID_LEN + 1)).unwrap();
        assert_eq!(accept_request_id(Some(&long)), None);
        assert_eq!(accept_request_id(None), None);
    }

    #[test]
    fn fresh_request_ids_are_32_lowercase_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert!(accept_request_id(Some(&HeaderValue::from_str(id).unwrap())).is_some());
        }
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_parsed_and_written_back_the_same() {
        let trace = TraceContext::parse(VALID.as_bytes()).unwrap();
        assert_eq!(
            trace.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace.span_id(), "00f067aa0ba902b7");
        assert_eq!(trace.to_string(), VALID);
        assert_eq!(trace.header_value(), VALID);
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        let refused = [
            // Versions: ff is invalid, and versions are two lower-case hex digits.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "AA-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Version 00 has nothing after the flags.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // A later version's extra fields start with a dash.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Wrong lengths.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
            // Upper-case hex, anywhere.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
            // Separators and digits.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in refused {
            assert_eq!(TraceContext::parse(value.as_bytes()), None, "{value:?}");
        }
    }

    #[test]
    fn later_versions_are_read_as_00_and_unknown_flags_cleared() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-what-comes";
        let trace = TraceContext::parse(later.as_bytes()).unwrap();
        assert_eq!(
            trace.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"
        );
        let exact = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(TraceContext::parse(exact.as_bytes()).is_some());
    }

    #[test]
    fn one_valid_header_is_accepted_and_two_are_not() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(accept_traceparent(&headers), None);
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(accept_traceparent(&headers).is_some());
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert_eq!(accept_traceparent(&headers), None);
    }

    #[test]
    fn a_child_keeps_the_trace_and_takes_a_span_of_its_own() {
        let parent = TraceContext::parse(VALID.as_bytes()).unwrap();
        let child = TraceContext::continued(Some(parent));
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        let sent = child.to_string();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(sent.ends_with("-01"));
        assert_eq!(TraceContext::parse(sent.as_bytes()), Some(child));
    }

    #[test]
    fn started_traces_are_valid_random_and_distinct() {
        let traces: Vec<TraceContext> =
            (0..10_000).map(|_| TraceContext::continued(None)).collect();
        let ids: std::collections::HashSet<TraceId> =
            traces.iter().map(TraceContext::trace_id).collect();
        assert_eq!(ids.len(), traces.len());
        for trace in &traces[..100] {
            let header = trace.to_string();
            assert_eq!(header.len(), 55);
            assert_eq!(
                TraceContext::parse(header.as_bytes()),
                Some(*trace),
                "{header}"
            );
        }
        // From another thread too (each has its own generator state).
        let other = std::thread::spawn(TraceContext::start).join().unwrap();
        assert!(!ids.contains(&other.trace_id()));
    }

    #[test]
    fn methods_outside_the_standard_set_are_labelled_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"FOOBAR123").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }

    #[test]
    fn error_bodies_have_code_and_message() {
        let response = error_response(StatusCode::BAD_REQUEST, "bad_id", "id must be a number");
        assert!(is_json_error(&response));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
