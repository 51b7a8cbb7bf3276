//! The admin listener: `/metrics`, `/healthz`, `/readyz`, and the membership API under
//! `/admin/pools`:
//!
//! | method and path | does |
//! |---|---|
//! | `GET /admin/pools` | each pool's algorithm and instances (weight, health, draining, in flight) |
//! | `POST /admin/pools/{pool}/instances` | adds `{"url": "http://h:p", "weight": 1, "max_in_flight": 0}` |
//! | `POST /admin/pools/{pool}/instances/{id}/drain` | no new requests; WebSockets close after `drain_timeout_ms` |
//! | `DELETE /admin/pools/{pool}/instances/{id}` | drains, then drops the instance once idle |
//! | `PATCH /admin/pools/{pool}/instances/{id}` | sets `{"weight": N}` |
//! | `POST /admin/pools/{pool}/instances/{id}/stop` | stops the instance's server (`strata up` only, see [`crate::ops::control`]) |
//! | `POST /admin/pools/{pool}/instances/{id}/start` | starts it again on its address |
//! | `GET /admin/stream` | the operations view's live feed (Server-Sent Events, [`crate::ops::stream`]) |
//! | `GET /ops` | the operations view, a page that reads the two above ([`crate::ops::page`]) |
//!
//! `/healthz`, `/readyz` and `/metrics` are the ones every strata role serves
//! ([`strata_core::http::ops_router`]): the same bodies, naming the role and the instance.
//!
//! `{id}` is the instance's hex id (as listed) or its address (`10.0.0.5:8101`). Errors are
//! the JSON body every strata service uses. When `gateway.admin_token` is set, `/admin/*`
//! needs `Authorization: Bearer <token>` (compared in constant time); `/metrics`, `/healthz`
//! and `/readyz` stay open for scrapers and probes, and so does the page `/ops`, which holds
//! no data and sends the token with each of its requests (the stream is read with `fetch`,
//! which can send the header, rather than `EventSource`, which cannot: a token in the URL
//! would end up in logs and history). Kept off the public listener so operators
//! can expose one and firewall the other.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Body;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use strata_core::config::Secret;
use strata_core::http::{ErrorBody, ErrorDetail, Ops, constant_time_eq, ops_router, ready_check};
use tower::ServiceExt as _;

use crate::balance::Algorithm;
use crate::balance::key::format_id;
use crate::health::HealthState;
use crate::membership::{Instance, Membership, MembershipError};
use crate::ops::{ControlError, EventStream, InstanceControl, Stream, page};

/// Largest admin request body: a few fields of JSON.
const MAX_BODY: usize = 16 * 1024;

/// The role name in `/healthz` and `/readyz` answers.
const ROLE: &str = "gateway";

/// The body of an admin response: whole, or the live stream.
pub type AdminBody = Either<Full<Bytes>, EventStream>;

/// The admin API's state.
#[derive(Debug)]
pub struct Admin {
    membership: Arc<Membership>,
    /// `/healthz`, `/readyz` and `/metrics`, as every role serves them.
    ops: axum::Router,
    /// Required bearer token of `/admin/*`; `None`: open (loopback only, see the config).
    token: Option<Secret>,
    /// The operations view's live feed.
    stream: Stream,
    /// Stops and starts instances; `None`: the embedding program cannot.
    control: Option<Arc<dyn InstanceControl>>,
}

/// What the operations view adds to the admin API: its live feed, and the hook that stops
/// and starts instances when the embedding program has one.
#[derive(Debug)]
pub struct OpsView {
    /// `GET /admin/stream`.
    pub stream: Stream,
    /// `POST …/stop` and `…/start`.
    pub control: Option<Arc<dyn InstanceControl>>,
}

#[derive(Serialize)]
struct PoolsView<'a> {
    pools: Vec<PoolView<'a>>,
}

#[derive(Serialize)]
struct PoolView<'a> {
    name: &'a str,
    algorithm: Algorithm,
    fail_open: bool,
    /// Retries the pool's budget allows right now.
    retry_budget: u64,
    instances: Vec<InstanceView>,
}

#[derive(Serialize)]
struct InstanceView {
    address: String,
    url: String,
    /// The id a sticky cookie names (hex); also names the instance in admin paths.
    id: String,
    weight: u32,
    /// The weight balancers use now: 0 while out or draining, ramping after a recovery.
    effective_weight: u32,
    /// `up`, `down` (failing checks) or `ejected` (failed requests).
    health: HealthState,
    /// Milliseconds left in the current ejection (0: waiting for a check); absent when not
    /// ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    ejected_for_ms: Option<u64>,
    /// Takes no new requests (drained or being removed).
    draining: bool,
    /// Leaves the table once nothing is in flight.
    removing: bool,
    /// The URL with a host name this instance was resolved from (DNS).
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_from: Option<String>,
    /// In-flight limit; 0: none.
    max_in_flight: u64,
    /// Requests in flight, WebSockets included.
    in_flight: u64,
    websockets_open: i64,
    requests_served: u64,
    idle_connections: usize,
}

impl InstanceView {
    fn of(i: &Instance) -> Self {
        Self {
            address: i.address().to_owned(),
            url: i.url(),
            id: format_id(i.id()),
            weight: i.weight(),
            effective_weight: i.effective_weight(),
            health: i.health().state(),
            ejected_for_ms: i
                .health()
                .ejected_for()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            draining: i.is_draining(),
            removing: i.is_removing(),
            resolved_from: i.source().map(str::to_owned),
            max_in_flight: i.max_in_flight(),
            in_flight: i.in_flight(),
            websockets_open: i.metrics().websockets_open.get(),
            requests_served: i.served(),
            idle_connections: i.upstream().idle_count(),
        }
    }
}

/// `POST /admin/pools/{pool}/instances`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddInstance {
    url: String,
    weight: Option<u32>,
    max_in_flight: Option<u64>,
}

/// `PATCH /admin/pools/{pool}/instances/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetWeight {
    weight: u32,
}

impl Admin {
    /// The admin API over `membership`, rendering `registry` on `/metrics`, naming the
    /// gateway `instance` in `/healthz` and `/readyz` and serving the operations `view`;
    /// `/admin/*` needs `token` when it is not empty.
    pub fn new(
        membership: Arc<Membership>,
        registry: Arc<Registry>,
        token: &Secret,
        instance: Arc<str>,
        view: OpsView,
    ) -> Self {
        let ready = {
            let membership = Arc::clone(&membership);
            ready_check(move || {
                let readiness = membership.readiness();
                async move { readiness }
            })
        };
        let ops = ops_router(Ops {
            role: ROLE,
            instance,
            registry,
            ready,
        });
        Self {
            membership,
            ops,
            token: (!token.is_empty()).then(|| token.clone()),
            stream: view.stream,
            control: view.control,
        }
    }

    /// Answers one admin request.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<AdminBody>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.uri().path() != "/admin/stream" {
            return self.answer(request).await.map(Either::Left);
        }
        if !self.authorized(&request) {
            return unauthorized().map(Either::Left);
        }
        if request.method() != Method::GET {
            return method_not_allowed().map(Either::Left);
        }
        let Some(stream) = self.stream.subscribe() else {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_clients",
                &format!(
                    "the live stream serves at most {} clients at once (gateway.ops.max_clients)",
                    self.stream.max_clients()
                ),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            return response.map(Either::Left);
        };
        let mut response = Response::new(Either::Right(stream));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// Answers every admin request but the stream's, with a whole body.
    async fn answer<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        if let Some(file) = page::file(&path) {
            if method != Method::GET && method != Method::HEAD {
                return method_not_allowed();
            }
            return page::response(file);
        }
        if path == "/admin" || path.starts_with("/admin/") {
            if !self.authorized(&request) {
                return unauthorized();
            }
            if let Some((pool, id, action)) = control_path(&path) {
                if method != Method::POST {
                    return method_not_allowed();
                }
                return self.control(pool, id, action).await;
            }
            let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        &format!("cannot read the body (at most {MAX_BODY} bytes): {e}"),
                    );
                }
            };
            return self.membership_api(&method, &path, &body);
        }
        if method != Method::GET && method != Method::HEAD {
            return match path.as_str() {
                "/metrics" | "/healthz" | "/readyz" => method_not_allowed(),
                _ => not_found(),
            };
        }
        match path.as_str() {
            "/metrics" | "/healthz" | "/readyz" => self.ops(request).await,
            _ => not_found(),
        }
    }

    /// Answers `/healthz`, `/readyz` or `/metrics` through the router every role shares.
    async fn ops<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        // The three are GET (or HEAD) endpoints: a body is never read.
        let (head, _) = request.into_parts();
        let request = Request::from_parts(head, axum::body::Body::empty());
        let response = match self.ops.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (head, body) = response.into_parts();
        match body.collect().await {
            Ok(collected) => Response::from_parts(head, Full::new(collected.to_bytes())),
            Err(e) => {
                tracing::error!(error = %e, "ops response could not be read");
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
        }
    }

    /// Whether the request carries the admin token (always, when none is configured).
    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.expose().as_bytes()))
    }

    /// `POST /admin/pools/{pool}/instances/{id}/stop|start`.
    async fn control(&self, pool: &str, id: &str, action: Action) -> Response<Full<Bytes>> {
        let Some(control) = &self.control else {
            return error(
                StatusCode::BAD_REQUEST,
                "not_supported",
                "this gateway cannot stop or start instances: they are other processes \
                 (`strata up` can; elsewhere drain the instance and stop it where it runs)",
            );
        };
        let instance = match self.membership.lookup(pool, id) {
            Ok(instance) => instance,
            Err(e) => return membership_error(&e),
        };
        let done = match action {
            Action::Stop => control.stop(pool, instance.address()).await,
            Action::Start => control.start(pool, instance.address()).await,
        };
        match done {
            Ok(()) => {
                tracing::info!(
                    pool,
                    instance = instance.address(),
                    action = action.as_str(),
                    "instance controlled from the admin API"
                );
                json(StatusCode::ACCEPTED, &InstanceView::of(&instance))
            }
            Err(e) => {
                let (status, code) = match &e {
                    ControlError::Unknown { .. } => (StatusCode::NOT_FOUND, "not_found"),
                    ControlError::Already(_) => (StatusCode::CONFLICT, "conflict"),
                    ControlError::Failed(_) => (StatusCode::CONFLICT, "control_failed"),
                };
                error(status, code, &e.to_string())
            }
        }
    }

    /// `/admin/pools…`.
    fn membership_api(&self, method: &Method, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
        let Some(rest) = path.strip_prefix("/admin/pools") else {
            return not_found();
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let result = match (method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, []) => return self.pools(),
            (&Method::POST, [pool, "instances"]) => {
                let Some(add) = parse::<AddInstance>(body) else {
                    return bad_json(
                        r#"{"url": "http://host:port", "weight": 1, "max_in_flight": 0}"#,
                    );
                };
                self.membership
                    .add(pool, &add.url, add.weight, add.max_in_flight)
                    .map(|i| (StatusCode::CREATED, i))
            }
            (&Method::POST, [pool, "instances", id, "drain"]) => self
                .membership
                .drain(pool, id)
                .map(|i| (StatusCode::ACCEPTED, i)),
            (&Method::DELETE, [pool, "instances", id]) => self
                .membership
                .remove(pool, id)
                .map(|i| (StatusCode::ACCEPTED, i)),
            (&Method::PATCH, [pool, "instances", id]) => {
                let Some(set) = parse::<SetWeight>(body) else {
                    return bad_json(r#"{"weight": 1}"#);
                };
                self.membership
                    .set_weight(pool, id, set.weight)
                    .map(|i| (StatusCode::OK, i))
            }
            (_, [] | [_, "instances"] | [_, "instances", _] | [_, "instances", _, "drain"]) => {
                return method_not_allowed();
            }
            _ => return not_found(),
        };
        match result {
            Ok((status, instance)) => json(status, &InstanceView::of(&instance)),
            Err(e) => membership_error(&e),
        }
    }

    fn pools(&self) -> Response<Full<Bytes>> {
        let table = self.membership.snapshot();
        let pools = table
            .pools()
            .iter()
            .map(|pool| PoolView {
                name: pool.name(),
                algorithm: pool.algorithm(),
                fail_open: pool.fails_open(),
                retry_budget: pool.retry_budget().available(),
                instances: pool
                    .instances()
                    .iter()
                    .map(|i| InstanceView::of(i))
                    .collect(),
            })
            .collect();
        json(StatusCode::OK, &PoolsView { pools })
    }
}

/// What `POST /admin/pools/{pool}/instances/{id}/…` asks of the instance's process.
#[derive(Debug, Clone, Copy)]
enum Action {
    Stop,
    Start,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Start => "start",
        }
    }
}

/// `(pool, id, action)` of `/admin/pools/{pool}/instances/{id}/stop|start`.
fn control_path(path: &str) -> Option<(&str, &str, Action)> {
    let rest = path.strip_prefix("/admin/pools/")?;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [pool, "instances", id, "stop"] => Some((pool, id, Action::Stop)),
        [pool, "instances", id, "start"] => Some((pool, id, Action::Start)),
        _ => None,
    }
}

fn membership_error(e: &MembershipError) -> Response<Full<Bytes>> {
    let (status, code) = match e {
        MembershipError::NoPool(_) | MembershipError::NoInstance { .. } => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        MembershipError::Exists(_) => (StatusCode::CONFLICT, "exists"),
        MembershipError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
    };
    error(status, code, &e.to_string())
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the admin API needs `Authorization: Bearer <gateway.admin_token>`",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

fn bad_json(expected: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::BAD_REQUEST,
        "bad_json",
        &format!("expected a JSON body like {expected}"),
    )
}

fn not_found() -> Response<Full<Bytes>> {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

fn method_not_allowed() -> Response<Full<Bytes>> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "admin response could not be serialised");
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    };
    json(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths_name_a_pool_an_instance_and_an_action() {
        assert!(matches!(
            control_path("/admin/pools/api/instances/127.0.0.1:8101/stop"),
            Some(("api", "127.0.0.1:8101", Action::Stop))
        ));
        assert!(matches!(
            control_path("/admin/pools/chat/instances/00ab/start"),
            Some(("chat", "00ab", Action::Start))
        ));
        for other in [
            "/admin/pools/api/instances/x/drain",
            "/admin/pools/api/instances/x",
            "/admin/pools/api/instances/x/stop/more",
            "/admin/stream",
        ] {
            assert!(control_path(other).is_none(), "{other}");
        }
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokem"));
        assert!(!constant_time_eq(b"secret-token", b"secret-token-longer"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
