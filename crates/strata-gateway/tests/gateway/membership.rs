//! Membership through the admin API: drain, remove, add, weights, and the admin token.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, config, eventually, spawn_gateway};

const TOKEN: &str = "test-admin-token-0123456789";

#[tokio::test]
async fn draining_finishes_in_flight_requests_while_new_ones_go_elsewhere() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gateway = spawn_gateway(config(&[("api", vec![a.url(), b.url()])])).await;
    // Round robin starts with a: the slow request is on a.
    let slow = tokio::spawn({
        let (client, url) = (gateway.client.clone(), gateway.url("/slow"));
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    eventually("the slow request reached a", || async { a.count() == 1 }).await;
    let (status, body) = gateway
        .admin(
            Method::POST,
            &format!("/admin/pools/api/instances/{}/drain", a.addr),
            None,
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["draining"].as_bool(), body["in_flight"].as_u64()),
        (Some(true), Some(1))
    );
    for _ in 0..10 {
        let response = gateway.get("/after").await;
        assert_eq!(response.headers()["x-strata-instance"], "b");
    }
    let (status, text) = slow.await.unwrap();
    assert_eq!((status.as_u16(), text.as_str()), (200, "slow hello from a"));
    // Still listed (drained, not removed), idle, taking nothing.
    let listed = gateway.instances("api").await;
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (
            listed[0]["draining"].as_bool(),
            listed[0]["effective_weight"].as_u64()
        ),
        (Some(true), Some(0))
    );
    assert_eq!(a.count(), 1);
    // The gateway stays ready while another instance serves.
    assert_eq!(gateway.admin_json("/readyz").await.0, 200);
}

#[tokio::test]
async fn remove_drops_the_instance_once_its_requests_finished_and_add_brings_one_in() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let gateway = spawn_gateway(config(&[("api", vec![a.url(), b.url()])])).await;
    let slow = tokio::spawn({
        let (client, url) = (gateway.client.clone(), gateway.url("/slow"));
        async move { client.get(url).send().await.unwrap().status() }
    });
    eventually("the slow request reached a", || async { a.count() == 1 }).await;
    let (status, body) = gateway
        .admin(
            Method::DELETE,
            &format!("/admin/pools/api/instances/{}", a.addr),
            None,
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["removing"], true);
    // Listed while its request runs.
    assert_eq!(gateway.instances("api").await.len(), 2);
    assert_eq!(gateway.get("/x").await.headers()["x-strata-instance"], "b");
    assert_eq!(slow.await.unwrap(), 200);
    eventually("a left the table", || async {
        gateway.instances("api").await.len() == 1
    })
    .await;
    assert_eq!(
        gateway.instances("api").await[0]["address"],
        b.addr.to_string().as_str()
    );

    // Add: a new instance takes its share at once.
    let c = Backend::start("c").await;
    let (status, body) = gateway
        .admin(
            Method::POST,
            "/admin/pools/api/instances",
            Some(json!({"url": c.url(), "weight": 1, "max_in_flight": 0})),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["address"], c.addr.to_string().as_str());
    for _ in 0..10 {
        gateway.get("/spread").await;
    }
    assert_eq!(c.count(), 5);
    // Twice: a conflict.
    let (status, body) = gateway
        .admin(
            Method::POST,
            "/admin/pools/api/instances",
            Some(json!({"url": c.url()})),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("exists"))
    );
}

#[tokio::test]
async fn weights_are_set_and_bad_requests_get_json_errors() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut config = config(&[("api", vec![a.url(), b.url()])]);
    config.api.algorithm = strata_gateway::config::Algorithm::WeightedRoundRobin;
    let gateway = spawn_gateway(config).await;
    let (status, body) = gateway
        .admin(
            Method::PATCH,
            &format!("/admin/pools/api/instances/{}", a.addr),
            Some(json!({"weight": 3})),
            None,
        )
        .await;
    assert_eq!((status, body["weight"].as_u64()), (200, Some(3)));
    for _ in 0..8 {
        gateway.get("/w").await;
    }
    assert_eq!((a.count(), b.count()), (6, 2));

    for (method, path, body, status, code) in [
        (
            Method::PATCH,
            format!("/admin/pools/api/instances/{}", a.addr),
            Some(json!({"weight": 0})),
            400,
            "invalid",
        ),
        (
            Method::PATCH,
            format!("/admin/pools/api/instances/{}", a.addr),
            Some(json!({"w": 1})),
            400,
            "bad_json",
        ),
        (
            Method::POST,
            "/admin/pools/api/instances".into(),
            Some(json!({"url": "ftp://x"})),
            400,
            "invalid",
        ),
        (
            Method::POST,
            "/admin/pools/db/instances".into(),
            Some(json!({"url": a.url()})),
            404,
            "not_found",
        ),
        (
            Method::DELETE,
            "/admin/pools/api/instances/10.9.9.9:1".into(),
            None,
            404,
            "not_found",
        ),
        (
            Method::PUT,
            "/admin/pools".into(),
            None,
            405,
            "method_not_allowed",
        ),
    ] {
        let (got, reply) = gateway.admin(method, &path, body, None).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {reply}"
        );
    }
}

#[tokio::test]
async fn the_admin_api_needs_the_token_when_one_is_configured() {
    let a = Backend::start("a").await;
    let mut config = config(&[("api", vec![a.url()])]);
    config.admin_token = strata_core::config::Secret::new(TOKEN);
    let gateway = spawn_gateway(config).await;
    let (status, body) = gateway.admin(Method::GET, "/admin/pools", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = gateway
        .admin(
            Method::GET,
            "/admin/pools",
            None,
            Some("wrong-token-wrong-token"),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = gateway
        .admin(
            Method::POST,
            &format!("/admin/pools/api/instances/{}/drain", a.addr),
            None,
            None,
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = gateway
        .admin(Method::GET, "/admin/pools", None, Some(TOKEN))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["pools"][0]["instances"][0]["draining"], false);
    // Probes and scrapers need no token.
    assert_eq!(gateway.admin_json("/healthz").await.0, 200);
    assert_eq!(
        gateway
            .client
            .get(gateway.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn an_admin_listener_off_loopback_without_a_token_is_a_config_error() {
    let mut config = config(&[("api", vec!["http://127.0.0.1:1".into()])]);
    config.admin_listen = "0.0.0.0:0".parse().unwrap();
    let err = strata_gateway::Gateway::build(&config).await.unwrap_err();
    assert!(err.to_string().contains("admin_token"), "{err}");
    config.admin_token = strata_core::config::Secret::new(TOKEN);
    assert!(format!("{config:?}").contains("Secret(***)"));
    assert!(!format!("{config:?}").contains(TOKEN));
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        strata_gateway::Gateway::build(&config),
    )
    .await
    .unwrap()
    .unwrap();
}

#[tokio::test]
async fn a_host_name_becomes_the_addresses_it_resolves_to() {
    let a = Backend::start("a").await;
    let mut config = config(&[("api", vec![format!("http://localhost:{}", a.addr.port())])]);
    config.dns_refresh_ms = 50;
    let gateway = spawn_gateway(config).await;
    let listed = gateway.instances("api").await;
    let ours = format!("127.0.0.1:{}", a.addr.port());
    let resolved = listed
        .iter()
        .find(|i| i["address"] == ours.as_str())
        .expect("127.0.0.1 listed");
    assert_eq!(
        resolved["resolved_from"],
        format!("http://localhost:{}", a.addr.port()).as_str()
    );
    // No instance is left under the name itself.
    assert!(
        listed
            .iter()
            .all(|i| !i["address"].as_str().unwrap().starts_with("localhost"))
    );
    // Refreshes with the same answer change nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(gateway.instances("api").await.len(), listed.len());
    assert_eq!(gateway.get("/dns").await.status(), 200);
}

#[tokio::test]
async fn the_series_of_instances_that_left_are_deleted() {
    let a = Backend::start("a").await;
    let gateway = spawn_gateway(config(&[("api", vec![a.url()])])).await;
    assert_eq!(gateway.get("/x").await.status(), 200);
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let at_start = series(&gateway.metrics().await);

    // Instances come and go (pods replaced), each serving some requests meanwhile.
    for round in 0..3 {
        let joined: Vec<Backend> = [Backend::start("b").await, Backend::start("c").await].into();
        for backend in &joined {
            let (status, body) = gateway
                .admin(
                    Method::POST,
                    "/admin/pools/api/instances",
                    Some(json!({"url": backend.url()})),
                    None,
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        for _ in 0..6 {
            assert_eq!(gateway.get("/x").await.status(), 200);
        }
        let text = gateway.metrics().await;
        for backend in &joined {
            assert!(backend.count() > 0, "round {round}");
            assert!(text.contains(&backend.addr.to_string()), "round {round}");
        }
        for backend in &joined {
            let (status, body) = gateway
                .admin(
                    Method::DELETE,
                    &format!("/admin/pools/api/instances/{}", backend.addr),
                    None,
                    None,
                )
                .await;
            assert_eq!(status, 202, "{body}");
        }
        eventually("the instances left the table", || async {
            gateway.instances("api").await.len() == 1
        })
        .await;
        let text = gateway.metrics().await;
        for backend in &joined {
            let address = backend.addr.to_string();
            assert!(
                !text.contains(&address),
                "round {round}: {address} still in\n{text}"
            );
        }
        assert_eq!(series(&text), at_start, "round {round}:\n{text}");
    }
}
