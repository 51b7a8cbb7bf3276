//! The operations view on the admin listener: the page, the live stream (`/admin/stream`) with
//! its sources, and stopping and starting instances through an [`InstanceControl`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use strata_gateway::Gateway;
use strata_gateway::ops::{ControlError, ControlFuture, InstanceControl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::helpers::{
    Backend, TestGateway, config, dead_url, eventually, spawn_built, spawn_gateway,
};

const TOKEN: &str = "an-admin-token-of-some-length";

/// An open `/admin/stream`: reads its events one by one.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(gateway: &TestGateway, token: Option<&str>) -> Events {
        let mut request = gateway.client.get(gateway.admin_url("/admin/stream"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's snapshot (its `data`), checking the event's form; fails after 3 s.
    async fn next(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let mut lines = event.lines();
                assert_eq!(lines.next(), Some("event: snapshot"), "{event}");
                let id = lines.next().unwrap().strip_prefix("id: ").unwrap();
                let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                let snapshot: Value = serde_json::from_str(data).unwrap();
                assert_eq!(snapshot["seq"].to_string(), id);
                return snapshot;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("an event within 3 s")
                .unwrap()
                .expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

fn instance<'a>(snapshot: &'a Value, pool: &str, address: &str) -> &'a Value {
    snapshot["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pool)
        .and_then(|p| {
            p["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["address"] == address)
        })
        .unwrap_or_else(|| panic!("no {pool} {address} in {snapshot}"))
}

#[tokio::test]
async fn the_page_is_served_without_the_token_and_the_stream_needs_it() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.admin_token = strata_core::config::Secret::new(TOKEN);
    let gateway = spawn_gateway(config).await;
    let page = gateway
        .client
        .get(gateway.admin_url("/ops"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.headers().contains_key("content-security-policy"));
    assert!(page.text().await.unwrap().contains("<main>"));
    for (path, kind) in [
        ("/ops/ops.js", "text/javascript"),
        ("/ops/ops.css", "text/css"),
    ] {
        let file = gateway
            .client
            .get(gateway.admin_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(file.status(), 200, "{path}");
        assert!(
            file.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let (status, body) = gateway
        .admin(reqwest::Method::GET, "/admin/stream", None, None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, body) = gateway
        .admin(reqwest::Method::POST, "/admin/stream", None, Some(TOKEN))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let mut events = Events::open(&gateway, Some(TOKEN)).await;
    let snapshot = events.next().await;
    assert_eq!(snapshot["control"], false);
    assert_eq!(
        instance(&snapshot, "api", &backend.addr.to_string())["health"],
        "up"
    );
}

#[tokio::test]
async fn a_snapshot_comes_at_connect_then_every_second_and_counts_follow_traffic() {
    let (a, b) = (Backend::start("api-1").await, Backend::start("api-2").await);
    let gateway = spawn_gateway(config(&[("api", vec![a.url(), b.url()])])).await;
    let started = Instant::now();
    let mut events = Events::open(&gateway, None).await;
    let first = events.next().await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the first snapshot waits for no tick"
    );
    assert_eq!(first["interval_ms"], 1000);
    let api = instance(&first, "api", &a.addr.to_string());
    assert_eq!(api["requests_per_sec"], 0.0);
    assert_eq!(api["in_flight"], 0);

    // Round robin over two instances: each answers half, and the snapshot after says so.
    for _ in 0..40 {
        assert_eq!(gateway.get("/x").await.status(), 200);
    }
    let mut seqs = vec![first["seq"].as_u64().unwrap()];
    let mut moved = None;
    let window = Instant::now();
    while window.elapsed() < Duration::from_millis(3200) {
        let snapshot = events.next().await;
        seqs.push(snapshot["seq"].as_u64().unwrap());
        let (ia, ib) = (
            instance(&snapshot, "api", &a.addr.to_string()),
            instance(&snapshot, "api", &b.addr.to_string()),
        );
        if ia["requests_per_sec"].as_f64().unwrap() > 0.0 && moved.is_none() {
            moved = Some((ia.clone(), ib.clone()));
        }
    }
    // At least one a second: 3.2 s after the first, three more at least.
    assert!(seqs.len() >= 4, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    let (ia, ib) = moved.expect("a snapshot with the requests in it");
    assert_eq!(ia["requests_served"], 20);
    assert_eq!(ib["requests_served"], 20);
    assert_eq!(ia["share"], 0.5);
    assert_eq!(ib["share"], 0.5);
    assert!(ia["p99_ms"].as_f64().unwrap() > 0.0, "{ia}");
    assert_eq!(ia["errors_per_sec"], 0.0);
}

/// A Prometheus endpoint with a worker's figures, answering every connection.
async fn metrics_source() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let body = "# TYPE strata_worker_dead_letters gauge\nstrata_worker_dead_letters 2\n\
                            strata_worker_consumer_lag{handler=\"orders\"} 5\n";
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/metrics")
}

/// A source that accepts connections and never answers.
async fn silent_source() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://{addr}/metrics")
}

#[tokio::test]
async fn sources_are_shown_and_a_slow_or_dead_one_is_stale_without_holding_the_stream() {
    let backend = Backend::start("api-1").await;
    let (good, silent, dead) = (
        metrics_source().await,
        silent_source().await,
        format!("{}/metrics", dead_url().await),
    );
    let mut config = config(&[("api", vec![backend.url()])]);
    config.ops.sources = vec![good.clone(), silent.clone(), dead.clone()];
    let gateway = spawn_gateway(config).await;
    let mut events = Events::open(&gateway, None).await;
    let started = Instant::now();
    let mut last = events.next().await;
    for _ in 0..3 {
        last = events.next().await;
    }
    // Four snapshots in little more than three seconds: the silent source (800 ms a read)
    // delays none.
    assert!(
        started.elapsed() < Duration::from_millis(3600),
        "{:?}",
        started.elapsed()
    );
    let sources = last["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 3);
    let by_url: HashMap<&str, &Value> = sources
        .iter()
        .map(|s| (s["url"].as_str().unwrap(), s))
        .collect();
    let ok = by_url[good.as_str()];
    assert_eq!(
        (ok["up"].as_bool(), ok["stale"].as_bool()),
        (Some(true), Some(false)),
        "{ok}"
    );
    let samples = ok["samples"].as_array().unwrap();
    assert!(
        samples
            .iter()
            .any(|s| s["name"] == "strata_worker_dead_letters" && s["value"] == 2.0),
        "{ok}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s["name"] == "strata_worker_consumer_lag"
                && s["labels"] == "handler=\"orders\""
                && s["value"] == 5.0),
        "{ok}"
    );
    let silent = by_url[silent.as_str()];
    assert_eq!(
        (silent["up"].as_bool(), silent["stale"].as_bool()),
        (Some(false), Some(true)),
        "{silent}"
    );
    assert!(
        silent["error"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{silent}"
    );
    let dead = by_url[dead.as_str()];
    assert_eq!(
        (dead["up"].as_bool(), dead["stale"].as_bool()),
        (Some(false), Some(true)),
        "{dead}"
    );
    assert!(
        dead["error"].as_str().unwrap().contains("cannot connect"),
        "{dead}"
    );
}

#[tokio::test]
async fn the_stream_serves_at_most_max_clients() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.ops.max_clients = 2;
    let gateway = spawn_gateway(config).await;
    let first = Events::open(&gateway, None).await;
    let _second = Events::open(&gateway, None).await;
    let refused = gateway
        .client
        .get(gateway.admin_url("/admin/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_clients");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 clients")
    );
    // A client that leaves frees its place.
    drop(first);
    eventually("a place freed", || async {
        let response = gateway
            .client
            .get(gateway.admin_url("/admin/stream"))
            .send()
            .await
            .unwrap();
        response.status() == 200
    })
    .await;
}

/// Stops and starts in-test backends by address, as `strata up` does its instances: a stop
/// drops the backend (its listener closes), a start listens on the same address again.
#[derive(Debug, Default)]
struct Backends {
    running: Mutex<HashMap<String, Option<Backend>>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl InstanceControl for Backends {
    fn stop<'a>(&'a self, pool: &'a str, address: &'a str) -> ControlFuture<'a> {
        Box::pin(async move {
            let mut running = self.running.lock().unwrap();
            let slot = running
                .get_mut(address)
                .ok_or_else(|| ControlError::Unknown {
                    pool: pool.into(),
                    address: address.into(),
                })?;
            slot.take()
                .map(drop)
                .ok_or_else(|| ControlError::Already(format!("{address} is stopped already")))
        })
    }

    fn start<'a>(&'a self, pool: &'a str, address: &'a str) -> ControlFuture<'a> {
        Box::pin(async move {
            let addr: SocketAddr = address.parse().unwrap();
            if self.running.lock().unwrap().get(address).is_none() {
                return Err(ControlError::Unknown {
                    pool: pool.into(),
                    address: address.into(),
                });
            }
            if self.running.lock().unwrap()[address].is_some() {
                return Err(ControlError::Already(format!(
                    "{address} is running already"
                )));
            }
            let backend = Backend::start_on(address, addr).await;
            self.running
                .lock()
                .unwrap()
                .insert(address.to_owned(), Some(backend));
            Ok(())
        })
    }
}

#[tokio::test]
async fn without_a_control_stop_and_start_are_not_supported() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    for action in ["stop", "start"] {
        let path = format!("/admin/pools/api/instances/{}/{action}", backend.addr);
        let (status, body) = gateway
            .admin(reqwest::Method::POST, &path, None, None)
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("not_supported")),
            "{body}"
        );
        let (status, _) = gateway.admin(reqwest::Method::GET, &path, None, None).await;
        assert_eq!(status, 405);
    }
    assert_eq!(gateway.get("/x").await.status(), 200, "nothing was stopped");
}

#[tokio::test]
async fn a_stopped_instance_goes_down_its_share_moves_and_a_start_brings_it_back() {
    let (a, b) = (Backend::start("api-1").await, Backend::start("api-2").await);
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    let mut config = config(&[("api", vec![a.url(), b.url()])]);
    config.api.health.interval_ms = 100;
    config.api.health.timeout_ms = 100;
    config.api.health.path = "/".into();
    config.api.health.slow_start_ms = 0;
    config.admin_token = strata_core::config::Secret::new(TOKEN);
    let control = Backends::default();
    {
        let mut running = control.running.lock().unwrap();
        running.insert(a_addr.clone(), Some(a));
        running.insert(b_addr.clone(), Some(b));
    }
    let gateway = Gateway::build(&config)
        .await
        .unwrap()
        .with_control(std::sync::Arc::new(control));
    let gateway = spawn_built(gateway);
    let post = |path: String, token: Option<&'static str>| {
        let gateway = &gateway;
        async move {
            gateway
                .admin(reqwest::Method::POST, &path, None, token)
                .await
        }
    };
    let stop = format!("/admin/pools/api/instances/{a_addr}/stop");
    let start = format!("/admin/pools/api/instances/{a_addr}/start");
    let (status, _) = post(stop.clone(), None).await;
    assert_eq!(status, 401, "protected like the rest of /admin");

    let mut events = Events::open(&gateway, Some(TOKEN)).await;
    assert_eq!(events.next().await["control"], true);
    let (status, body) = post(stop.clone(), Some(TOKEN)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["address"], a_addr.as_str());
    let (status, body) = post(stop.clone(), Some(TOKEN)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, body) = post(
        "/admin/pools/api/instances/127.0.0.1:1/stop".into(),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = post(
        format!("/admin/pools/db/instances/{a_addr}/stop"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    // Health checks find it down; every request goes to b meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for _ in 0..10 {
            assert_eq!(gateway.get("/x").await.status(), 200);
        }
        let snapshot = events.next().await;
        let (ia, ib) = (
            instance(&snapshot, "api", &a_addr),
            instance(&snapshot, "api", &b_addr),
        );
        if ia["health"] != "up" && ia["share"] == 0.0 && ib["share"] == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "a never went down: {snapshot}");
    }

    let (status, body) = post(start.clone(), Some(TOKEN)).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(start, Some(TOKEN)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for _ in 0..10 {
            assert_eq!(gateway.get("/x").await.status(), 200);
        }
        let snapshot = events.next().await;
        let ia = instance(&snapshot, "api", &a_addr);
        if ia["health"] == "up" && ia["share"].as_f64().unwrap() > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "a never came back: {snapshot}");
    }
}
