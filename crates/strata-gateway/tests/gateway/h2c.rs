//! HTTP/2 over cleartext to instances (the default `upstream_protocol`): requests multiplexed
//! on one connection with none waiting for another, refused streams and streams beyond a
//! `GOAWAY` retried whatever their method, instances draining with `GOAWAY`, health checks in
//! h2c, and least connections counting streams in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_core::Shutdown;
use strata_gateway::config::{Algorithm, HealthConfig, UpstreamProtocol};
use tokio::net::TcpListener;

use crate::helpers::{Backend, config, eventually, spawn_gateway};
use crate::nodes::{Node, health_of, served_by, within};

/// How an [`h2_instance`] treats the streams it receives.
#[derive(Clone, Copy)]
enum Refuse {
    /// Resets every stream with `REFUSED_STREAM`.
    EveryStream,
    /// Sends `GOAWAY` with last stream id 0 as soon as a connection opens: every stream the
    /// gateway opened on it is beyond it.
    GoAway,
}

/// An HTTP/2-only instance that processes nothing; returns its URL and the streams (or
/// connections, for `GoAway`) it turned away.
async fn h2_instance(how: Refuse) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&refused);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(stream).await else {
                    return;
                };
                if let Refuse::GoAway = how {
                    connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                while let Some(accepted) = connection.accept().await {
                    let Ok((_request, mut respond)) = accepted else {
                        break;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
            });
        }
    });
    (format!("http://{addr}"), refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_share_one_connection_and_a_slow_one_holds_up_nobody() {
    let backend = Backend::start("api-1").await;
    let gateway = Arc::new(spawn_gateway(config(&[("api", vec![backend.url()])])).await);
    // Opens the connection, so the slow request and the quick ones share it.
    assert_eq!(gateway.get("/warm").await.status(), 200);
    let slow = {
        let gateway = Arc::clone(&gateway);
        tokio::spawn(async move {
            let started = Instant::now();
            let response = gateway.get("/slow").await;
            assert_eq!(response.status(), 200);
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let quick: Vec<_> = (0..20)
        .map(|i| {
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move {
                let response = gateway.get(&format!("/quick/{i}")).await;
                assert_eq!(response.status(), 200);
                response.text().await.unwrap()
            })
        })
        .collect();
    for answer in quick {
        assert_eq!(answer.await.unwrap(), "hello from api-1");
    }
    let quick_took = started.elapsed();
    // `/slow` takes 500 ms; the quick ones did not wait for it.
    assert!(quick_took < Duration::from_millis(300), "{quick_took:?}");
    assert!(slow.await.unwrap() >= Duration::from_millis(500));
    assert_eq!(backend.connections(), 1, "one multiplexed connection");
    let seen = backend.seen();
    assert_eq!(seen.len(), 22);
    let quick = seen.iter().find(|s| s.path == "/quick/0").unwrap();
    assert_eq!(quick.headers["x-forwarded-proto"], "http");
    assert_eq!(quick.headers["x-forwarded-for"], "127.0.0.1");
    assert!(
        quick.headers["host"]
            .to_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
}

#[tokio::test]
async fn a_refused_stream_goes_to_the_next_instance_whatever_its_method() {
    let (refusing, refused) = h2_instance(Refuse::EveryStream).await;
    let refusing_address = refusing.trim_start_matches("http://").to_owned();
    let good = Backend::start("api-2").await;
    let mut config = config(&[("api", vec![refusing, good.url()])]);
    // Refusals are not failures: the refusing instance is never ejected.
    config.api.health.eject_after = 1;
    let gateway = spawn_gateway(config).await;
    for i in 0..6 {
        let response = gateway
            .client
            .post(gateway.url("/echo"))
            .body(format!("order {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "POST {i}");
        assert_eq!(response.text().await.unwrap(), format!("order {i}"));
    }
    // Round robin sent every other first attempt to the refusing instance.
    assert_eq!(refused.load(Ordering::SeqCst), 3);
    assert_eq!(good.count(), 6);
    let series = format!(
        r#"strata_gateway_upstream_errors_total{{pool="api",instance="{refusing_address}",kind="refused"}}"#
    );
    assert_eq!(gateway.sample(&series).await, Some(3.0));
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_retries_total{pool="api"}"#)
            .await,
        Some(3.0)
    );
    let views = gateway.instances("api").await;
    assert!(views.iter().all(|i| i["health"] == "up"), "{views:?}");
}

#[tokio::test]
async fn streams_beyond_a_goaway_go_to_the_next_instance_whatever_their_method() {
    let (leaving, goaways) = h2_instance(Refuse::GoAway).await;
    let good = Backend::start("api-2").await;
    let gateway = spawn_gateway(config(&[("api", vec![leaving, good.url()])])).await;
    for i in 0..4 {
        let response = gateway
            .client
            .patch(gateway.url("/echo"))
            .body(format!("patch {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "PATCH {i}");
        assert_eq!(response.text().await.unwrap(), format!("patch {i}"));
    }
    assert_eq!(good.count(), 4);
    // Each first attempt there found its connection gone away and opened a new one.
    assert_eq!(goaways.load(Ordering::SeqCst), 2);
}

/// A real role server (strata-core's, the api's and chat's) on a fresh port: `/slow` answers
/// after 400 ms, anything else at once with `name`.
async fn role_instance(name: &'static str) -> (SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    let router = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow"
            }),
        )
        .fallback(move || async move { name });
    let server = strata_core::http::RoleServer::bind(
        "api",
        name.into(),
        "127.0.0.1:0".parse().unwrap(),
        router,
    )
    .await
    .unwrap();
    let addr = server.local_addr();
    let stop = Shutdown::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.unwrap() }
    });
    (addr, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_shutting_down_finishes_its_streams_and_costs_no_request() {
    let (a, stop_a, task_a) = role_instance("a").await;
    let (b, _stop_b, _task_b) = role_instance("b").await;
    let config = config(&[("api", vec![format!("http://{a}"), format!("http://{b}")])]);
    let gateway = Arc::new(spawn_gateway(config).await);
    for _ in 0..4 {
        assert_eq!(gateway.get("/x").await.status(), 200);
    }
    // A slow request on each instance, then `a` shuts down: `GOAWAY`, its stream finishes.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move {
                let response = gateway.get("/slow").await;
                (response.status(), response.text().await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_a.cancel();
    let mut served = Vec::new();
    for _ in 0..20 {
        let response = gateway.get("/x").await;
        assert_eq!(response.status(), 200);
        served.push(response.text().await.unwrap());
    }
    for slow in slow {
        assert_eq!(
            slow.await.unwrap(),
            (http::StatusCode::OK, "slow".to_owned())
        );
    }
    task_a.await.unwrap();
    assert!(
        served.iter().filter(|s| *s == "b").count() >= 10,
        "{served:?}"
    );
}

#[tokio::test]
async fn health_checks_of_an_h2c_pool_speak_h2c() {
    // An HTTP/1.1-only instance answers its checks over HTTP/1.1 but not over h2c.
    let h1_only = Backend::start_with("h1", false).await;
    let both = Node::start("both").await;
    let mut config = config(&[("api", vec![h1_only.url(), both.url()])]);
    config.api.health = HealthConfig {
        interval_ms: 100,
        timeout_ms: 100,
        slow_start_ms: 0,
        ..HealthConfig::default()
    };
    let gateway = spawn_gateway(config.clone()).await;
    within(
        Duration::from_secs(3),
        "the HTTP/1.1-only instance is down",
        || async { health_of(&gateway, h1_only.addr).await == "down" },
    )
    .await;
    within(
        Duration::from_secs(3),
        "the other instance passed checks",
        || async { both.checks() >= 2 },
    )
    .await;
    assert_eq!(health_of(&gateway, both.addr).await, "up");
    for _ in 0..4 {
        assert_eq!(served_by(&gateway.get("/x").await), "both");
    }
    // The same instances in an HTTP/1.1 pool: both pass.
    config.api.upstream_protocol = UpstreamProtocol::Http1;
    let gateway = spawn_gateway(config).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(health_of(&gateway, h1_only.addr).await, "up");
    assert_eq!(health_of(&gateway, both.addr).await, "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_counts_the_streams_in_flight() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut config = config(&[("api", vec![a.url(), b.url()])]);
    config.api.algorithm = Algorithm::LeastConnections;
    let gateway = Arc::new(spawn_gateway(config).await);
    // Two slow streams, one per instance, each on its instance's one connection.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move { served_by(&gateway.get("/slow").await) })
        })
        .collect();
    eventually("two streams in flight", || async {
        let views = gateway.instances("api").await;
        views
            .iter()
            .map(|i| i["in_flight"].as_u64().unwrap())
            .sum::<u64>()
            == 2
    })
    .await;
    let views = gateway.instances("api").await;
    assert!(views.iter().all(|i| i["in_flight"] == 1), "{views:?}");
    let mut slow_served: Vec<String> = Vec::new();
    for task in slow {
        slow_served.push(task.await.unwrap());
    }
    slow_served.sort();
    assert_eq!(slow_served, ["a", "b"]);
    assert_eq!((a.connections(), b.connections()), (1, 1));
    let views = gateway.instances("api").await;
    assert!(views.iter().all(|i| i["in_flight"] == 0), "{views:?}");
}

#[tokio::test]
async fn large_bodies_stream_both_ways_within_the_windows() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    // Eight answers of 900 KiB on one connection overrun its 5 MiB window unless the gateway
    // hands the window back as it forwards them.
    let body = Bytes::from(vec![b'x'; 900 * 1024]);
    for _ in 0..8 {
        let response = gateway
            .client
            .post(gateway.url("/echo"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap(), body);
    }
    assert_eq!(backend.connections(), 1);
}
