//! The request path: route to a pool (the first matching rule of `gateway.routes`, with its
//! path and header changes), pick an instance, rewrite headers once, forward over a pooled
//! keep-alive connection, retry once when that is safe, compress the response when the
//! client and the pool agree ([`compress`]), count and log.
//!
//! # Retries
//! A failed attempt is repeated once, on the next instance of the pool, when all of these hold:
//! - the request never reached the instance (the connection was refused or timed out; a
//!   pooled connection found closed before the request was written is replaced by a fresh one
//!   first, see [`crate::upstream`]), or the instance refused its HTTP/2 stream unprocessed
//!   (`REFUSED_STREAM`, or beyond its `GOAWAY`'s last stream): any method, since nothing was
//!   processed, and any body, since none of it was read yet (as nginx does);
//! - or it was written and the connection closed before any response byte, and
//!   - the request may be repeated: `GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE`, or any request
//!     with an `Idempotency-Key` (never a plain `POST` or `PATCH`: the instance may have acted
//!     on it);
//!   - its body can be sent again: empty, or at most [`Limits::max_replay_body_bytes`] with a
//!     `Content-Length`, which the gateway then reads whole before the first attempt. Larger
//!     and chunked bodies stream straight through and are not repeated once sent.
//!
//! The deadline ([`Limits::request_timeout`]) covers every attempt up to the response head;
//! past it the client gets 504 and nothing is retried.
//!
//! # Slow clients
//! A request body is read piece by piece, each piece awaited at most
//! [`Limits::body_timeout`]; a client that stalls, or whose body is still arriving when the
//! deadline passes, gets 408. Either is the client's failure: it never counts against the
//! instance the body was going to (passive ejection only sees the instance's own failures).

mod body;
mod compress;
pub(crate) mod headers;
// strata: WebSocket (HTTP/1.1 Upgrade) proxying lives in `upgrade`.
mod upgrade;
mod validate;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER, SET_COOKIE};
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use hyper::body::{Body, Incoming};
use strata_core::http::{ErrorBody, ErrorDetail, REQUEST_ID, TraceId, accept_request_id};

pub use body::{Lease, RequestBody, ResponseBody, next_frame};
pub use compress::{Compressing, Compression, Offer};
pub(crate) use upgrade::tunnels_closed;

use crate::config::UpstreamProtocol;
use crate::error::{Party, ProxyError, RetrySafety};
use crate::framing::Refused;
use crate::limits::Limits;
use crate::membership::{Instance, Membership, Pool, Routed};
use crate::rate_limit::{RateLimiter, Verdict};
use crate::upstream::{Body as UpstreamBody, Outgoing};

/// What the proxy knows of a client connection, computed once when it is accepted.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client's IP address as a header value, for `X-Forwarded-For`.
    forwarded_for: HeaderValue,
    /// The client's IP address (the TCP peer), for `client_ip` affinity keys.
    ip: IpAddr,
    /// Whether the client reached the gateway over TLS (`X-Forwarded-Proto: https`).
    https: bool,
}

impl ClientInfo {
    /// The connection of a client at `ip`.
    pub fn new(ip: IpAddr) -> Self {
        // An IP address always renders to a valid header value.
        let forwarded_for = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self {
            forwarded_for,
            ip,
            https: false,
        }
    }

    /// The same client, connected over TLS.
    pub fn over_tls(mut self) -> Self {
        self.https = true;
        self
    }

    /// Whether the client connected over TLS.
    pub fn is_https(&self) -> bool {
        self.https
    }
}

/// The reverse proxy shared by every client connection.
#[derive(Debug)]
pub struct Proxy {
    membership: Arc<Membership>,
    limits: Limits,
    rate_limits: Arc<RateLimiter>,
}

/// The outcome of forwarding, before counting and logging.
struct Outcome {
    response: Response<ResponseBody>,
    /// The instance that produced the response; `None` for the gateway's own answers.
    served_by: Option<Arc<Instance>>,
    /// The last instance tried, for the log line of a failure.
    tried: Option<Arc<Instance>>,
}

impl Proxy {
    /// A proxy over `membership` enforcing `limits` and `rate_limits`.
    pub fn new(membership: Arc<Membership>, limits: Limits, rate_limits: Arc<RateLimiter>) -> Self {
        Self {
            membership,
            limits,
            rate_limits,
        }
    }

    /// Serves one client request: always a response, errors included (JSON bodies).
    pub async fn handle(
        &self,
        client: &ClientInfo,
        request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let (mut head, body) = request.into_parts();
        // An HTTP/2 client's WebSocket handshake reads as an HTTP/1.1 one from here on.
        upgrade::from_extended_connect(&mut head);
        let request_id = request_id(&head.headers);
        head.headers.insert(REQUEST_ID, request_id.clone());
        let trace = headers::rewrite_traceparent(&mut head.headers).trace_id();
        // Both clones share their bytes with the originals; they outlive `head` for the log.
        let (method, uri) = (head.method.clone(), head.uri.clone());
        // The host is settled (an absolute target's authority wins) before the rules read it.
        let checked = match head.extensions.get::<Refused>() {
            Some(refused) => Err(ProxyError::BadRequest(refused.0)),
            None => validate::check(&mut head),
        };
        let Some(Routed { pool, actions }) = self.membership.route(&head) else {
            return unrouted(checked.err().unwrap_or(ProxyError::NoRoute), &request_id);
        };
        let offer = pool.compression().offer(&head);

        // A client beyond its rate limit is answered here: no instance sees the request.
        let limited = self.rate_limits.check(pool.name(), &head, client.ip);
        let refusal = limited.as_ref().and_then(Verdict::refusal);
        // The rule's changes come before the internal-path check, which judges the path the
        // instance would see.
        if let (Ok(()), Some(actions)) = (&checked, &actions) {
            actions.edit_request(&mut head.headers);
            if let Some(rewritten) = actions.rewrite(&head.uri) {
                head.uri = rewritten;
            }
        }
        // strata: upgrades (WebSocket) branch off here; see `upgrade`.
        let forwarded = if let Err(error) = checked {
            Err((error, None))
        } else if pool.is_internal(head.uri.path()) {
            Err((ProxyError::NotPublic(head.uri.path().to_owned()), None))
        } else if let Some(response) = refusal {
            Ok(Outcome {
                response,
                served_by: None,
                tried: None,
            })
        } else if let Some(on_client) = upgrade::take(&mut head) {
            self.forward_upgrade(&pool, client, head, on_client, started)
                .await
        } else {
            self.forward(&pool, client, head, body, started, (&request_id, trace))
                .await
        };
        let outcome = match forwarded {
            Ok(outcome) => outcome,
            Err((error, tried)) => {
                log_failure(
                    &error,
                    &pool,
                    tried.as_deref(),
                    (&request_id, trace),
                    "request failed",
                );
                Outcome {
                    response: error_response(&error),
                    served_by: None,
                    tried,
                }
            }
        };
        let Outcome {
            mut response,
            served_by,
            tried,
        } = outcome;
        // Unique to this response: an HTTP/2 client's HPACK gets it as a literal, not indexed.
        let mut echoed = request_id.clone();
        echoed.set_sensitive(true);
        response.headers_mut().insert(REQUEST_ID, echoed);
        if let Some(verdict) = &limited {
            verdict.annotate(response.headers_mut());
        }
        if let Some(actions) = &actions {
            actions.edit_response(response.headers_mut());
        }
        pool.compression().apply(offer, &mut response);

        let status = response.status();
        let elapsed = started.elapsed();
        match &served_by {
            Some(instance) => {
                instance.metrics().responses.inc(status);
                instance.metrics().duration.observe(elapsed);
                instance.count_served();
            }
            None => pool.metrics().responses.inc(status),
        }
        pool.metrics().duration.observe(elapsed);
        // The access log is off by default (`log.access_sample`): one line per request
        // would cost the proxy most of its throughput.
        if strata_core::telemetry::access_sampled() {
            let instance = served_by
                .as_deref()
                .or(tried.as_deref())
                .map_or("-", Instance::address);
            tracing::info!(
            target: "strata_gateway::access",
            request_id = request_id.to_str().unwrap_or("-"),
            trace_id = %trace,
            method = method.as_str(),
            path = uri.path(),
            status = status.as_u16(),
            pool = pool.name(),
            instance,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
            );
        }
        response
    }

    /// Sends the request to an instance of `pool`, retrying once when allowed.
    async fn forward(
        &self,
        pool: &Pool,
        client: &ClientInfo,
        head: Parts,
        body: Incoming,
        started: Instant,
        ids: (&HeaderValue, TraceId),
    ) -> Result<Outcome, (ProxyError, Option<Arc<Instance>>)> {
        let no_instance = || {
            (
                ProxyError::NoInstance {
                    pool: pool.name().into(),
                },
                None,
            )
        };
        if pool.instances().is_empty() {
            return Err(no_instance());
        }
        let declared = body.size_hint().exact();
        if declared.is_some_and(|n| n > self.limits.max_body_bytes) {
            return Err((
                ProxyError::BodyTooLarge {
                    limit: self.limits.max_body_bytes,
                },
                None,
            ));
        }
        let deadline = tokio::time::Instant::from_std(started + self.limits.request_timeout);

        let repeatable = headers::is_repeatable(&head.method, &head.headers);
        let body = if body.is_end_stream() {
            RequestBody::Empty
        } else if repeatable && declared.is_some_and(|n| n <= self.limits.max_replay_body_bytes) {
            let collecting = body::collect(body, self.limits.body_timeout);
            let bytes = match tokio::time::timeout_at(deadline, collecting).await {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(error)) => return Err((error, None)),
                Err(_) => {
                    return Err((ProxyError::ClientTimeout(self.limits.request_timeout), None));
                }
            };
            RequestBody::full(bytes)
        } else {
            let mut body = body;
            let first = body::first_data(&mut body, self.limits.body_timeout);
            match tokio::time::timeout_at(deadline, first).await {
                Ok(Ok(None)) => RequestBody::Empty,
                Ok(Ok(Some(first))) if body.is_end_stream() => RequestBody::full(first),
                Ok(Ok(Some(first))) => RequestBody::stream(
                    body,
                    first,
                    declared,
                    self.limits.max_body_bytes,
                    self.limits.body_timeout,
                ),
                Ok(Err(error)) => return Err((error, None)),
                Err(_) => {
                    return Err((ProxyError::ClientTimeout(self.limits.request_timeout), None));
                }
            }
        };
        // The request is written once, as bytes; a second attempt sends the same bytes (see
        // the module docs), so nothing is cloned for it.
        let mut request = match pool.upstream_protocol() {
            UpstreamProtocol::H2c => Outgoing::h2c(
                &head,
                &client.forwarded_for,
                client.is_https(),
                body,
                repeatable,
            ),
            UpstreamProtocol::Http1 => Outgoing::new(
                &head,
                &client.forwarded_for,
                client.is_https(),
                body,
                repeatable,
                false,
            ),
        };

        // Picked only now, so a refused or slow client body does not use up a turn.
        pool.retry_budget().deposit();
        let affinity = pool.affinity(&head.headers, &head.uri, client.ip);
        let first = pool.pick(affinity).map_err(|e| (e, None))?;
        let error = match self
            .attempt(pool, Arc::clone(first), &mut request, deadline)
            .await
        {
            Ok(outcome) => return Ok(stick(pool, affinity, outcome)),
            Err(error) => error,
        };
        let retry = match error.retry_safety() {
            // Nothing left the gateway: any method is safe to send elsewhere, and the body,
            // streamed or not, is still unread.
            RetrySafety::NotSent => true,
            RetrySafety::MaybeProcessed => repeatable && request.is_replayable(),
            RetrySafety::Never => false,
        };
        if !retry {
            return Err((error, Some(Arc::clone(first))));
        }
        let Some(next) = pool.next_after(first, affinity) else {
            return Err((error, Some(Arc::clone(first))));
        };
        if !pool.retry_budget().try_withdraw() {
            pool.metrics().retries_denied.inc();
            return Err((error, Some(Arc::clone(first))));
        }
        log_failure(
            &error,
            pool,
            Some(first),
            ids,
            "attempt failed; retrying on the next instance",
        );
        pool.metrics().retries.inc();
        self.attempt(pool, Arc::clone(next), &mut request, deadline)
            .await
            .map(|outcome| stick(pool, affinity, outcome))
            .map_err(|e| (e, Some(Arc::clone(next))))
    }

    /// One attempt on `instance` of `pool`, bounded by `deadline`.
    async fn attempt(
        &self,
        pool: &Pool,
        instance: Arc<Instance>,
        request: &mut Outgoing,
        deadline: tokio::time::Instant,
    ) -> Result<Outcome, ProxyError> {
        let lease = Lease::new(Arc::clone(&instance));
        let sending = instance.upstream().send(request, pool.pipeline_depth());
        let sent = tokio::time::timeout_at(deadline, sending).await;
        let result = match sent {
            Ok(result) => result,
            // The deadline passed while the gateway waited for the client's body: the client's
            // failure (408), not the instance's.
            Err(_) if request.awaits_client() => {
                Err(ProxyError::ClientTimeout(self.limits.request_timeout))
            }
            Err(_) => Err(ProxyError::Timeout(self.limits.request_timeout)),
        };
        match result {
            Ok(exchange) => {
                if exchange.status.is_server_error() {
                    instance.health().record_failure();
                } else {
                    instance.health().record_success();
                }
                // Hop-by-hop headers were left out when the head was parsed.
                let body = match exchange.body {
                    UpstreamBody::Streaming(streaming) => ResponseBody::upstream(streaming, lease),
                    // Whole already, its connection back in the idle stack: the request is
                    // over as far as the instance is concerned.
                    UpstreamBody::Complete(bytes) => ResponseBody::full(bytes),
                };
                let mut response = Response::new(body);
                *response.status_mut() = exchange.status;
                *response.headers_mut() = exchange.headers;
                Ok(Outcome {
                    response,
                    served_by: Some(Arc::clone(&instance)),
                    tried: Some(instance),
                })
            }
            Err(error) => {
                if let Some(kind) = error.upstream_kind() {
                    instance.metrics().upstream_error(kind);
                    // A refused stream is the instance shedding load or draining, by the
                    // protocol's rules, not failing: it does not count towards ejection.
                    if !matches!(error, ProxyError::Refused(_)) {
                        instance.health().record_failure();
                    }
                }
                Err(error)
            }
        }
    }
}

/// Pins the client of a `sticky` pool to the instance that served it, when its cookie named
/// another instance or none.
fn stick(pool: &Pool, affinity: Option<u64>, mut outcome: Outcome) -> Outcome {
    if let Some(cookie) = outcome
        .served_by
        .as_deref()
        .and_then(|instance| pool.sticky_cookie(affinity, instance))
    {
        outcome.response.headers_mut().append(SET_COOKIE, cookie);
    }
    outcome
}

/// The client's request id when it is sane, otherwise a fresh one.
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    let kept = headers
        .get(REQUEST_ID)
        .filter(|v| accept_request_id(Some(v)).is_some());
    match kept {
        // A header value parsed by hyper shares the connection's read buffer: cloning is cheap.
        Some(value) => value.clone(),
        // 32 hex digits: always a valid header value.
        None => HeaderValue::try_from(strata_core::http::new_request_id())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
    }
}

/// The answer to a request no routing rule matches (or whose head is refused before it could
/// be routed): counted in no pool, since none was chosen.
fn unrouted(error: ProxyError, request_id: &HeaderValue) -> Response<ResponseBody> {
    tracing::debug!(%error, request_id = request_id.to_str().unwrap_or("-"), party = "client", "request not routed");
    let mut response = error_response(&error);
    response
        .headers_mut()
        .insert(REQUEST_ID, request_id.clone());
    response
}

/// The gateway's own answer to a failed request: the status of the error and the JSON body
/// every strata service uses.
fn error_response(error: &ProxyError) -> Response<ResponseBody> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: error.code().to_owned(),
            message: error.public_message(),
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = Response::new(ResponseBody::full(bytes));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if error.closes_connection() {
        // hyper closes the connection after a response that says so.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if matches!(
        error,
        ProxyError::NoInstance { .. } | ProxyError::NoHealthyInstance { .. }
    ) {
        // Instances come back (restart, scale-up): tell well-behaved clients when to try again.
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Logs a failure with its cause (which the client never sees). Clients' failures are routine
/// (debug); the instances' and the gateway's are worth an operator's eye (warn).
fn log_failure(
    error: &ProxyError,
    pool: &Pool,
    instance: Option<&Instance>,
    (request_id, trace_id): (&HeaderValue, TraceId),
    what: &str,
) {
    let instance = instance.map_or("-", Instance::address);
    let request_id = request_id.to_str().unwrap_or("-");
    let pool = pool.name();
    match error.party() {
        Party::Client => {
            tracing::debug!(%error, request_id, %trace_id, pool, instance, party = "client", "{what}")
        }
        Party::Upstream => {
            tracing::warn!(%error, request_id, %trace_id, pool, instance, party = "upstream", "{what}")
        }
        Party::Gateway => {
            tracing::warn!(%error, request_id, %trace_id, pool, instance, party = "gateway", "{what}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_kept_and_others_replaced() {
        let mut headers = http::HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_static("bad id"));
        let replaced = request_id(&headers);
        assert_ne!(replaced, "bad id");
        assert_eq!(replaced.len(), 32);
        assert_eq!(request_id(&http::HeaderMap::new()).len(), 32);
    }

    #[test]
    fn heads_are_rewritten_for_the_instance() {
        let request = Request::builder()
            .uri("http://shop.example/api/v1/products?q=x")
            .version(http::Version::HTTP_10)
            .header("host", "shop.example")
            .header("connection", "keep-alive")
            .body(())
            .unwrap();
        let (head, ()) = request.into_parts();
        let client = ClientInfo::new("192.0.2.7".parse().unwrap());
        let outgoing = Outgoing::new(
            &head,
            &client.forwarded_for,
            client.is_https(),
            RequestBody::Empty,
            true,
            false,
        );
        assert_eq!(
            std::str::from_utf8(outgoing.as_bytes()).unwrap(),
            "GET /api/v1/products?q=x HTTP/1.1\r\nhost: shop.example\r\n\
             x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    #[test]
    fn no_instance_answers_503_json_with_retry_after() {
        let response = error_response(&ProxyError::NoInstance {
            pool: "chat".into(),
        });
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let ResponseBody::Full(Some(bytes)) = response.body() else {
            panic!("not a full body")
        };
        let json: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(json["error"]["code"], "no_instance");
    }
}
