//! Health: instances dying under load, passive ejection and recovery, pools with no healthy
//! instance, and health tasks ending with the gateway.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use strata_gateway::config::{GatewayConfig, HealthConfig};

use crate::helpers::{TestGateway, config, spawn_gateway};
use crate::nodes::{Node, health_of, instance_view, served_by, within};

/// Health checks every `interval_ms`, with quick ejections and no slow start (so counts of
/// requests are exact once an instance is back).
fn checked(mut config: GatewayConfig, interval_ms: u64) -> GatewayConfig {
    config.api.health = HealthConfig {
        interval_ms,
        timeout_ms: interval_ms.min(500),
        eject_base_ms: 300,
        eject_max_ms: 5000,
        slow_start_ms: 0,
        ..HealthConfig::default()
    };
    config
}

async fn metric(gateway: &TestGateway, name: &str, node: &Node) -> Option<f64> {
    gateway
        .sample(&format!(r#"{name}{{pool="api",instance="{}"}}"#, node.addr))
        .await
}

#[tokio::test]
async fn an_instance_killed_under_load_costs_no_request_and_is_out_within_a_second() {
    let mut nodes = [
        Node::start("a").await,
        Node::start("b").await,
        Node::start("c").await,
    ];
    // The production health settings: checks every half second, ejection after 3 failures.
    let mut config = config(&[("api", nodes.iter().map(Node::url).collect())]);
    config.api.health = HealthConfig::default();
    let gateway = Arc::new(spawn_gateway(config).await);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (gateway, stop) = (Arc::clone(&gateway), Arc::clone(&stop));
            let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let response = gateway
                        .client
                        .get(gateway.url("/api/v1/products"))
                        .send()
                        .await;
                    let served = match response {
                        Ok(r) => r.status() == 200 && r.text().await.is_ok(),
                        Err(_) => false,
                    };
                    let counter = if served { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    within(
        Duration::from_secs(5),
        "load reaches every instance",
        || async { nodes.iter().all(|n| n.traffic() > 20) },
    )
    .await;
    let victim = nodes[1].addr;
    nodes[1].kill().await;
    let took = within(
        Duration::from_secs(1),
        "the killed instance is out",
        || async { health_of(&gateway, victim).await != "up" },
    )
    .await;
    // Keep the load on a while longer: no request may fail after the kill either.
    let served_before = nodes[0].traffic() + nodes[2].traffic();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }

    assert_eq!(failed.load(Ordering::SeqCst), 0, "client requests failed");
    assert!(
        ok.load(Ordering::SeqCst) > 100,
        "too little load to mean anything"
    );
    assert!(nodes[0].traffic() + nodes[2].traffic() > served_before + 20);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        metric(&gateway, "strata_gateway_instance_up", &nodes[1]).await,
        Some(0.0)
    );
    assert_eq!(
        metric(&gateway, "strata_gateway_instance_up", &nodes[0]).await,
        Some(1.0)
    );
    assert!(
        gateway
            .sample(r#"strata_gateway_retries_total{pool="api"}"#)
            .await
            .unwrap()
            >= 1.0
    );
}

/// Checks every 4 s, passive ejection off: only active checks take instances out, so the
/// times below tell the quicker checks of an instance between states from whole intervals.
fn slow_checks(nodes: &[&Node]) -> GatewayConfig {
    let mut config = config(&[("api", nodes.iter().map(|n| n.url()).collect())]);
    config.api.health = HealthConfig {
        interval_ms: 4000,
        timeout_ms: 500,
        eject_after: 0,
        slow_start_ms: 0,
        ..HealthConfig::default()
    };
    config
}

#[tokio::test]
async fn a_failed_request_brings_the_next_check_forward_and_a_failing_instance_is_rechecked_sooner()
{
    let a = Node::start("a").await;
    let mut b = Node::start("b").await;
    let gateway = spawn_gateway(slow_checks(&[&a, &b])).await;
    let victim = b.addr;
    b.kill().await;
    // Requests that reach the dead instance fail to connect and are retried on `a`.
    let started = tokio::time::Instant::now();
    for _ in 0..4 {
        let response = gateway
            .client
            .get(gateway.url("/api/v1/products"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // A check at once (fails), the next a quarter interval later (fails): down after about
    // one second, where two whole intervals would take eight.
    within(
        Duration::from_millis(2500),
        "the dead instance is down",
        || async { health_of(&gateway, victim).await == "down" },
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[tokio::test]
async fn a_down_instance_that_passes_a_check_is_rechecked_sooner() {
    let a = Node::start("a").await;
    let b = Node::start("b").await;
    let gateway = spawn_gateway(slow_checks(&[&a, &b])).await;
    b.set_ready(false);
    within(
        Duration::from_secs(12),
        "the unready instance is down",
        || async { health_of(&gateway, b.addr).await == "down" },
    )
    .await;
    b.set_ready(true);
    let checks = b.checks();
    within(
        Duration::from_secs(6),
        "a check after it is ready",
        || async { b.checks() > checks },
    )
    .await;
    // `rise` 2: the second passing check comes a quarter interval after the first.
    let took = within(
        Duration::from_secs(3),
        "the instance is up again",
        || async { health_of(&gateway, b.addr).await == "up" },
    )
    .await;
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

#[tokio::test]
async fn an_instance_answering_5xx_is_ejected_and_comes_back_after_its_backoff_and_a_check() {
    let nodes = [Node::start("a").await, Node::start("b").await];
    let mut config = checked(
        config(&[("api", nodes.iter().map(Node::url).collect())]),
        50,
    );
    // Long enough for the checks below to run while b is out, on a busy machine too.
    config.api.health.eject_base_ms = 1000;
    let gateway = spawn_gateway(config).await;

    // b answers 500 to traffic (its readiness check still passes): 3 in a row eject it.
    nodes[1].set_failing(true);
    let mut errors = 0;
    for _ in 0..6 {
        if gateway.get("/x").await.status() == 500 {
            errors += 1;
        }
    }
    assert_eq!(errors, 3, "5xx answers reach the client unchanged");
    assert_eq!(health_of(&gateway, nodes[1].addr).await, "ejected");
    let view = instance_view(&gateway, nodes[1].addr).await;
    assert!(view["ejected_for_ms"].as_u64().unwrap() <= 1000, "{view}");
    assert_eq!(view["effective_weight"], 0);
    assert_eq!(
        metric(&gateway, "strata_gateway_ejections_total", &nodes[1]).await,
        Some(1.0)
    );
    assert_eq!(
        metric(&gateway, "strata_gateway_instance_up", &nodes[1]).await,
        Some(0.0)
    );

    // While ejected, a takes everything.
    for _ in 0..10 {
        let response = gateway.get("/x").await;
        assert_eq!(
            (response.status().as_u16(), served_by(&response)),
            (200, "a".into())
        );
    }
    assert_eq!(nodes[1].traffic(), 3);

    // b is fixed but not ready: its backoff ends, the check fails, it stays out (for longer).
    nodes[1].set_failing(false);
    nodes[1].set_ready(false);
    within(
        Duration::from_secs(3),
        "b ejected again after its backoff",
        || async {
            metric(&gateway, "strata_gateway_ejections_total", &nodes[1]).await == Some(2.0)
        },
    )
    .await;
    let view = instance_view(&gateway, nodes[1].addr).await;
    assert_eq!(view["health"], "ejected");
    assert!(
        view["ejected_for_ms"].as_u64().unwrap() > 1000,
        "doubled: {view}"
    );
    assert_eq!(nodes[1].traffic(), 3);
    let failed_checks = gateway
        .sample(&format!(
            r#"strata_gateway_health_checks_total{{pool="api",instance="{}",result="failure"}}"#,
            nodes[1].addr
        ))
        .await
        .unwrap();
    assert!(failed_checks >= 1.0);

    // Ready again: back at the first passing checks after the (doubled) backoff.
    nodes[1].set_ready(true);
    within(Duration::from_secs(4), "b is back", || async {
        health_of(&gateway, nodes[1].addr).await == "up"
    })
    .await;
    assert_eq!(
        metric(&gateway, "strata_gateway_instance_up", &nodes[1]).await,
        Some(1.0)
    );
    let before = nodes[1].traffic();
    for _ in 0..10 {
        assert_eq!(gateway.get("/x").await.status(), 200);
    }
    assert_eq!(nodes[1].traffic() - before, 5, "b takes its turns again");
}

#[tokio::test]
async fn a_pool_without_a_healthy_instance_answers_503_json_with_retry_after() {
    let nodes = [Node::start("a").await, Node::start("b").await];
    for node in &nodes {
        node.set_ready(false);
    }
    let mut closed = checked(
        config(&[("api", nodes.iter().map(Node::url).collect())]),
        50,
    );
    closed.api.fail_open = false;
    let gateway = spawn_gateway(closed).await;
    for node in &nodes {
        within(Duration::from_secs(2), "instance down", || async {
            health_of(&gateway, node.addr).await == "down"
        })
        .await;
    }
    let response = gateway.get("/api/v1/products").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_healthy_instance");
    assert_eq!(nodes[0].traffic() + nodes[1].traffic(), 0);
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_requests_total{pool="api",instance="none",status="503"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn by_default_a_pool_whose_every_instance_is_down_tries_them_anyway() {
    let nodes = [Node::start("a").await, Node::start("b").await];
    for node in &nodes {
        node.set_ready(false);
    }
    let gateway = spawn_gateway(checked(
        config(&[("api", nodes.iter().map(Node::url).collect())]),
        50,
    ))
    .await;
    for node in &nodes {
        within(Duration::from_secs(2), "instance down", || async {
            health_of(&gateway, node.addr).await == "down"
        })
        .await;
    }
    let mut served = Vec::new();
    for _ in 0..4 {
        let response = gateway.get("/api/v1/products").await;
        assert_eq!(response.status(), 200);
        served.push(served_by(&response));
    }
    served.sort();
    assert_eq!(served, ["a", "a", "b", "b"]);
}

#[tokio::test]
async fn health_checks_stop_with_the_gateway() {
    let node = Node::start("a").await;
    let mut gateway = spawn_gateway(checked(config(&[("api", vec![node.url()])]), 20)).await;
    within(Duration::from_secs(2), "checks run", || async {
        node.checks() >= 3
    })
    .await;
    gateway.shutdown.cancel();
    gateway.task.take().unwrap().await.unwrap().unwrap();
    // A check in flight at the shutdown may still land.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let after = node.checks();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.checks(), after, "checks went on after shutdown");
}

#[tokio::test]
async fn a_restarted_instance_comes_back_after_rise_checks_whatever_is_left_of_its_ejection() {
    let a = Node::start("a").await;
    let mut b = Node::start("b").await;
    let mut config = checked(config(&[("api", vec![a.url(), b.url()])]), 400);
    // Long ejections: the second one (after a failed check at the end of the first) lasts
    // 4 s, far longer than the checks that show b is back.
    config.api.health.eject_base_ms = 2000;
    config.api.health.eject_max_ms = 20_000;
    let gateway = spawn_gateway(config).await;
    let victim = b.addr;
    b.kill().await;
    // Three requests refused by b (each retried on a) eject it.
    for _ in 0..6 {
        assert_eq!(gateway.get("/x").await.status(), 200);
    }
    assert_eq!(health_of(&gateway, victim).await, "ejected");
    // Its backoff ends, the check fails: ejected again, for twice as long.
    within(
        Duration::from_secs(4),
        "b ejected again after its backoff",
        || async { metric(&gateway, "strata_gateway_ejections_total", &b).await == Some(2.0) },
    )
    .await;
    let left = instance_view(&gateway, victim).await["ejected_for_ms"]
        .as_u64()
        .unwrap();
    assert!(left > 3000, "{left} ms left");

    // b restarts: two passing checks (a quarter interval apart) bring it back.
    let b = Node::start_at("b", victim).await;
    let took = within(Duration::from_millis(1500), "b is back", || async {
        health_of(&gateway, victim).await == "up"
    })
    .await;
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let before = b.traffic();
    for _ in 0..10 {
        assert_eq!(gateway.get("/x").await.status(), 200);
    }
    assert_eq!(b.traffic() - before, 5, "b takes its turns again");
}
