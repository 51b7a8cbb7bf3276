//! Configuration reload: pools change under load without a failed request or a dropped
//! WebSocket.

use crate::helpers::{
    Backend, TestGateway, WsBackend, config, eventually, spawn_gateway, ws_connect, ws_echo,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Requests in flight on `backend`, as the admin API lists them (0 when it is not listed).
async fn in_flight(gateway: &TestGateway, backend: &Backend) -> u64 {
    let address = backend.addr.to_string();
    gateway
        .instances("api")
        .await
        .iter()
        .find(|i| i["address"] == address.as_str())
        .and_then(|i| i["in_flight"].as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_reload_changes_instances_and_weights_and_drops_nothing() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let chat = WsBackend::start("chat-1").await;
    let before = config(&[("api", vec![a.url()]), ("chat", vec![chat.url()])]);
    let gateway = spawn_gateway(before.clone()).await;
    let (mut ws, name) = ws_connect(gateway.addr, "ops").await;

    // A loop of GETs (some slow, so requests are in flight at each reload).
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|worker| {
            let (client, stop, ok, failed) = (
                gateway.client.clone(),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
            );
            let (fast, slow) = (gateway.url("/load"), gateway.url("/slow"));
            tokio::spawn(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let url = if (i + worker).is_multiple_of(10) {
                        &slow
                    } else {
                        &fast
                    };
                    i += 1;
                    let passed = match client.get(url).send().await {
                        Ok(r) => r.status() == 200 && r.text().await.is_ok(),
                        Err(_) => false,
                    };
                    if passed {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    eventually("requests in flight on a", || async {
        a.count() > 10 && in_flight(&gateway, &a).await > 0
    })
    .await;

    // 1. b joins with weight 3 under weighted round robin.
    let mut second = config(&[
        ("api", vec![a.url(), format!("{}?weight=3", b.url())]),
        ("chat", vec![chat.url()]),
    ]);
    second.api.algorithm = strata_gateway::config::Algorithm::WeightedRoundRobin;
    gateway.handle.reload(&second).unwrap();
    assert_eq!(
        ws_echo(&mut ws, "after one").await.unwrap(),
        format!("{name}: after one")
    );
    let listed = gateway.instances("api").await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["weight"], 3);
    let (_, pools) = gateway.admin_json("/admin/pools").await;
    assert_eq!(pools["pools"][0]["algorithm"], "weighted_round_robin");
    eventually("b takes traffic", || async { b.count() > 10 }).await;
    eventually("requests in flight on a", || async {
        in_flight(&gateway, &a).await > 0
    })
    .await;

    // 2. a leaves: drained while its requests finish, then dropped.
    let third = config(&[("api", vec![b.url()]), ("chat", vec![chat.url()])]);
    gateway.handle.reload(&third).unwrap();
    assert_eq!(
        ws_echo(&mut ws, "after two").await.unwrap(),
        format!("{name}: after two")
    );
    eventually("a left", || async {
        gateway.instances("api").await.len() == 1
    })
    .await;
    let (served_by_a, served_by_b) = (a.count(), b.count());
    eventually("the load goes on, on b", || async {
        b.count() > served_by_b + 20
    })
    .await;
    assert_eq!(
        a.count(),
        served_by_a,
        "a drained instance took new requests"
    );

    // A bad configuration changes nothing.
    let bad = config(&[("api", vec!["ftp://nope".into()])]);
    assert!(gateway.handle.reload(&bad).is_err());
    assert_eq!(gateway.instances("api").await.len(), 1);

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{} ok",
        ok.load(Ordering::Relaxed)
    );
    assert!(ok.load(Ordering::Relaxed) > 50);
    // The WebSocket opened before both reloads still works, on its first instance.
    assert_eq!(
        ws_echo(&mut ws, "at the end").await.unwrap(),
        format!("{name}: at the end")
    );
    assert_eq!(chat.accepted.load(Ordering::SeqCst), 1);
}
