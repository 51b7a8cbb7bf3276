//! The admin listener: `/metrics`, `/healthz`, `/readyz` and the pools as JSON
//! (`/admin/pools`: each pool's algorithm, and per instance its weight, effective weight,
//! health, in-flight requests and requests served).
//!
//! Kept off the public listener so operators can expose one and firewall the other. Later
//! issues add the write side (add, drain, remove instances) here.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use prometheus_client::registry::Registry;
use serde::Serialize;
use strata_core::http::{ErrorBody, ErrorDetail};
use strata_core::telemetry::render;

use crate::balance::Algorithm;
use crate::balance::key::format_id;
use crate::health::HealthState;
use crate::membership::Membership;

/// The admin API's state.
#[derive(Debug)]
pub struct Admin {
    membership: Arc<Membership>,
    registry: Arc<Registry>,
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
    role: &'static str,
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
    instances: Vec<InstanceView<'a>>,
}

#[derive(Serialize)]
struct InstanceView<'a> {
    address: &'a str,
    url: &'a str,
    /// The id a sticky cookie names (hex).
    id: String,
    weight: u32,
    /// The weight balancers use now: 0 while out, ramping after a recovery.
    effective_weight: u32,
    /// `up`, `down` (failing checks) or `ejected` (failed requests).
    health: HealthState,
    /// Milliseconds left in the current ejection (0: waiting for a check); absent when not
    /// ejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    ejected_for_ms: Option<u64>,
    /// In-flight limit; 0: none.
    max_in_flight: u64,
    in_flight: u64,
    requests_served: u64,
    idle_connections: usize,
}

impl Admin {
    /// The admin API over `membership`, rendering `registry` on `/metrics`.
    pub fn new(membership: Arc<Membership>, registry: Arc<Registry>) -> Self {
        Self {
            membership,
            registry,
        }
    }

    /// Answers one admin request.
    pub fn handle<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let known = matches!(path, "/metrics" | "/healthz" | "/readyz" | "/admin/pools");
        if !known {
            return error(StatusCode::NOT_FOUND, "not_found", "no such route");
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            );
        }
        match path {
            "/metrics" => {
                let mut response = Response::new(Full::new(Bytes::from(render(&self.registry))));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/healthz" => json(
                StatusCode::OK,
                &Status {
                    status: "ok",
                    role: "gateway",
                },
            ),
            "/readyz" => match self.membership.readiness() {
                Ok(()) => json(
                    StatusCode::OK,
                    &Status {
                        status: "ready",
                        role: "gateway",
                    },
                ),
                Err(reason) => error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", &reason),
            },
            _ => self.pools(),
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
                    .map(|i| InstanceView {
                        address: i.address(),
                        url: i.url(),
                        id: format_id(i.id()),
                        weight: i.weight(),
                        effective_weight: i.effective_weight(),
                        health: i.health().state(),
                        ejected_for_ms: i
                            .health()
                            .ejected_for()
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        max_in_flight: i.max_in_flight(),
                        in_flight: i.in_flight(),
                        requests_served: i.served(),
                        idle_connections: i.upstream().idle_count(),
                    })
                    .collect(),
            })
            .collect();
        json(StatusCode::OK, &PoolsView { pools })
    }
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
