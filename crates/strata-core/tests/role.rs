//! A role built from the shared pieces (`role_router`, `RoleServer`), on port 0: it serves the
//! operational endpoints that every role's tests check with `OpsCheck`, and reports binding
//! and settings failures as `RoleError`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use prometheus_client::registry::Registry;
use strata_core::Shutdown;
use strata_core::http::{RoleError, RoleServer, ready_check, role_router};
use strata_core::ops_checks::OpsCheck;

const ROLE: &str = "probe";

async fn bind(instance: &str, ready: bool) -> RoleServer {
    let check = ready_check(move || async move {
        if ready {
            Ok(())
        } else {
            Err("store not ready".to_owned())
        }
    });
    let router = role_router(
        ROLE,
        Arc::from(instance),
        Registry::default(),
        Router::new(),
        check,
        1024,
        Duration::from_secs(30),
    );
    RoleServer::bind(
        ROLE,
        Arc::from(instance),
        "127.0.0.1:0".parse().expect("address"),
        router,
    )
    .await
    .expect("bind")
}

#[tokio::test]
async fn a_role_serves_the_operational_endpoints_and_json_fallbacks() {
    let server = bind("probe-1", true).await;
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let ops = OpsCheck::new(&base, ROLE, "probe-1");
    ops.probes_answer_with_the_instance_header().await;
    ops.metrics_name_the_role().await;
    ops.unknown_routes_and_methods_are_json_errors(&["/api/v1/nowhere"])
        .await;
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}

#[tokio::test]
async fn an_unready_role_says_so() {
    let server = bind("probe-2", false).await;
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    OpsCheck::new(&base, ROLE, "probe-2").not_ready().await;
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}

#[tokio::test]
async fn a_port_in_use_is_a_bind_error_naming_the_address() {
    let taken = bind("probe-3", true).await;
    let addr = taken.local_addr();
    let router = Router::new();
    match RoleServer::bind(ROLE, Arc::from("probe-4"), addr, router).await {
        Err(error @ RoleError::Bind { .. }) => {
            assert!(error.to_string().contains(&addr.to_string()), "{error}");
        }
        Err(other) => panic!("expected a bind error, got {other}"),
        Ok(_) => panic!("bound a port in use"),
    }
    let settings = RoleError::Settings {
        role: ROLE,
        reason: "x must be positive",
    };
    assert_eq!(
        settings.to_string(),
        "invalid probe settings: x must be positive"
    );
}

/// On shutdown with a drain delay, the instance answers `/readyz` 503 and still serves every
/// other request for the delay (a balancer takes it out meanwhile), then stops accepting.
#[tokio::test]
async fn a_draining_role_is_unready_but_serving_until_its_delay_ends() {
    let delay = std::time::Duration::from_millis(1500);
    let server = bind("probe-5", true).await.drain_delay(delay);
    let addr = server.local_addr();
    let base = format!("http://{addr}");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(status("/readyz").await.unwrap(), 200);
    let asked = std::time::Instant::now();
    shutdown.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // New connections are still accepted, and told the instance is on its way out.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = fresh.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("draining"),
        "{body}"
    );
    assert_eq!(status("/healthz").await.unwrap(), 200);
    task.await.expect("no panic").expect("graceful stop");
    assert!(asked.elapsed() >= delay, "stopped before its drain delay");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after the drain"
    );
}

#[tokio::test]
async fn a_made_up_method_is_counted_as_other() {
    let server = bind("probe-4", true).await;
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let method = reqwest::Method::from_bytes(b"FOOBAR123").expect("a token");
    let response = client
        .request(method, format!("{base}/healthz"))
        .send()
        .await
        .expect("answered");
    assert!(response.status().is_client_error(), "{}", response.status());
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!metrics.contains("FOOBAR123"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strata_probe_http_requests_total{")
                && l.contains(r#"method="other""#)),
        "{metrics}"
    );
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}

/// A route slower than the request timeout is answered 504 with the JSON problem body when the
/// time is up, not when the handler would have finished; quick routes are untouched.
#[tokio::test]
async fn a_slow_route_times_out_with_the_json_body() {
    let timeout = Duration::from_millis(200);
    let routes = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route("/quick", get(|| async { "quick" }));
    let ready = ready_check(|| async { Ok(()) });
    let router = role_router(
        ROLE,
        Arc::from("probe-5"),
        Registry::default(),
        routes,
        ready,
        1024,
        timeout,
    );
    let server = RoleServer::bind(
        ROLE,
        Arc::from("probe-5"),
        "127.0.0.1:0".parse().expect("address"),
        router,
    )
    .await
    .expect("bind");
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let client = reqwest::Client::new();

    let started = std::time::Instant::now();
    let response = client
        .get(format!("{base}/slow"))
        .send()
        .await
        .expect("an answer");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_eq!(response.status(), reqwest::StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.headers()["x-strata-instance"], "probe-5");
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");

    let quick = client
        .get(format!("{base}/quick"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(quick.status(), reqwest::StatusCode::OK);
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}
