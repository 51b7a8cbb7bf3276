//! Traces across `strata up`: a checkout sent through the gateway with a client's
//! `traceparent` keeps that trace id in the gateway's, the api's and the worker's log lines,
//! down to the order's shipping; without one, the gateway starts a trace and the same id
//! reaches the api and the worker. The request id stays the request's own.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::harness::{Up, spawn_up_with_env};
use crate::logs::json_lines;

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// JSON logs with every request and every handled event in them, and no declined payment, so
/// every order ends shipped.
const ENV: &[(&str, &str)] = &[
    ("STRATA_LOG_FORMAT", "json"),
    ("STRATA_LOG_ACCESS_SAMPLE", "1"),
    ("STRATA_WORKER_PAYMENT_DECLINE_RATE", "0"),
];

/// The (handler, subject) pairs the worker handles for one order, placed to shipped.
const PIPELINE: [(&str, &str); 5] = [
    ("payment", "order.placed"),
    ("fulfilment", "order.paid"),
    ("notifications", "order.placed"),
    ("notifications", "order.paid"),
    ("notifications", "order.shipped"),
];

#[tokio::test]
async fn a_clients_trace_follows_its_checkout_to_the_worker() {
    let up = spawn_up_with_env(&["--api", "1", "--chat", "1"], ENV).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = up
        .customer(&client, "traced@example.test", "a password for traces")
        .await;
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(CLIENT));
    let traced = reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .unwrap();
    let order = up.place_order(&traced, &token, "traced-1").await;
    let order_id = order["id"].as_i64().unwrap();

    let lines = until_shipped(&up, order_id).await;
    let gateway = checkout_line(&lines, "strata_gateway::access");
    assert_eq!(gateway["trace_id"], CLIENT_TRACE, "{gateway}");
    follow(&lines, order_id, CLIENT_TRACE, gateway);
}

#[tokio::test]
async fn the_gateway_starts_a_trace_that_reaches_the_api_and_the_worker() {
    let up = spawn_up_with_env(&["--api", "1", "--chat", "1"], ENV).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = up
        .customer(&client, "untraced@example.test", "a password for traces")
        .await;
    let order = up.place_order(&client, &token, "untraced-1").await;
    let order_id = order["id"].as_i64().unwrap();

    let lines = until_shipped(&up, order_id).await;
    let gateway = checkout_line(&lines, "strata_gateway::access");
    let trace = gateway["trace_id"].as_str().expect("a trace id").to_owned();
    assert_eq!(trace.len(), 32, "{gateway}");
    assert!(
        trace
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{gateway}"
    );
    assert_ne!(trace, "0".repeat(32));
    assert_ne!(trace, CLIENT_TRACE);
    follow(&lines, order_id, &trace, gateway);
}

/// The log lines of `up` once the worker has logged the last step of `order_id`'s pipeline
/// (its `order.shipped` notification), within 30 s (the demo warehouse ships 3 s after payment).
async fn until_shipped(up: &Up, order_id: i64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = json_lines(&up.process.stderr());
        let shipped = worker_lines(&lines, order_id).any(|line| {
            line["span"]["handler"] == "notifications" && line["span"]["subject"] == "order.shipped"
        });
        if shipped {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "order {order_id} not shipped in the logs:\n{}",
            up.process.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The one request line of `target` for the checkout (`POST /api/v1/orders`).
fn checkout_line<'a>(lines: &'a [Value], target: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            line["target"] == target
                && line["message"] == "request"
                && line["method"] == "POST"
                && line["path"] == "/api/v1/orders"
        })
        .collect();
    assert_eq!(found.len(), 1, "{target}: {lines:#?}");
    found[0]
}

/// The worker's lines about `order_id` (in the span of the handling of one of its events).
fn worker_lines(lines: &[Value], order_id: i64) -> impl Iterator<Item = &Value> {
    lines
        .iter()
        .filter(move |line| line["span"]["name"] == "event" && line["span"]["order_id"] == order_id)
}

/// Asserts that `trace` is the trace id of the api's checkout line (whose request id is the
/// gateway's) and of every worker line about `order_id`, which cover the whole pipeline.
fn follow(lines: &[Value], order_id: i64, trace: &str, gateway: &Value) {
    let api = checkout_line(lines, "strata_core::access");
    assert_eq!(api["span"]["trace_id"], trace, "{api}");
    assert_eq!(api["span"]["request_id"], gateway["request_id"], "{api}");

    let worker: Vec<&Value> = worker_lines(lines, order_id).collect();
    for line in &worker {
        assert_eq!(line["span"]["trace_id"], trace, "{line}");
    }
    for (handler, subject) in PIPELINE {
        assert!(
            worker.iter().any(|line| {
                line["target"] == "strata_worker::access"
                    && line["span"]["handler"] == handler
                    && line["span"]["subject"] == subject
                    && line["outcome"] == "done"
            }),
            "no {handler} line for {subject} of order {order_id}: {worker:#?}"
        );
    }
}
