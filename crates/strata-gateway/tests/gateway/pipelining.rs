//! HTTP/1.1 pipelining to instances: safe requests arriving together share a connection and
//! each client still gets its own answer; requests that are not safe never share one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use strata_gateway::config::UpstreamProtocol;

use crate::helpers::{config, spawn_gateway};

/// The requests an instance found in each read, as `METHOD path`.
type Reads = Arc<Mutex<Vec<Vec<String>>>>;

/// An instance that answers every request with `METHOD path` as the body, answering all the
/// requests of one read in one write, and records what each read held.
async fn mirror() -> (SocketAddr, Reads) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reads: Reads = Arc::default();
    let log = Arc::clone(&reads);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    let mut requests = Vec::new();
                    let mut answers = Vec::new();
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.trim().parse().unwrap());
                        if buf.len() < end + 4 + length {
                            break;
                        }
                        buf.drain(..end + 4 + length);
                        let mut words = head.split(' ');
                        let request = format!(
                            "{} {}",
                            words.next().unwrap_or_default(),
                            words.next().unwrap_or_default()
                        );
                        answers.extend_from_slice(
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{request}",
                                request.len()
                            )
                            .as_bytes(),
                        );
                        requests.push(request);
                    }
                    if !requests.is_empty() {
                        log.lock().unwrap().push(requests);
                    }
                    if stream.write_all(&answers).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, reads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_get_their_own_answers_and_posts_never_share_a_connection() {
    let (one, reads_one) = mirror().await;
    let (two, reads_two) = mirror().await;
    let mut config = config(&[(
        "api",
        vec![format!("http://{one}"), format!("http://{two}")],
    )]);
    // Deeper than the clients are many, so no GET is left out of a full batch.
    config.api.upstream_protocol = UpstreamProtocol::Http1;
    config.api.pipeline_depth = 64;
    let gateway = spawn_gateway(config).await;
    let gateway = Arc::new(gateway);
    let clients: Vec<_> = (0..48)
        .map(|client| {
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move {
                // Each client its own connection: requests reach the gateway side by side.
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap();
                for i in 0..25 {
                    let path = format!("/api/v1/items/{client}/{i}");
                    let post = i % 5 == 0;
                    let request = if post {
                        http.post(gateway.url(&path)).body("{}")
                    } else {
                        http.get(gateway.url(&path))
                    };
                    let response = request.send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    let expected = format!("{} {path}", if post { "POST" } else { "GET" });
                    assert_eq!(response.text().await.unwrap(), expected);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let reads: Vec<Vec<String>> = [reads_one, reads_two]
        .iter()
        .flat_map(|r| r.lock().unwrap().clone())
        .collect();
    let requests: usize = reads.iter().map(Vec::len).sum();
    assert_eq!(requests, 48 * 25, "every request reached an instance once");
    assert!(
        reads
            .iter()
            .filter(|read| read.len() > 1)
            .all(|read| read.iter().all(|r| r.starts_with("GET "))),
        "a POST shared a write with another request"
    );
    assert!(
        reads.iter().any(|read| read.len() > 1),
        "no requests were pipelined"
    );
    // The metrics tell the same: more requests than batches, and every GET in one.
    let (mut batches, mut batched) = (0.0, 0.0);
    for addr in [one, two] {
        let labels = format!(r#"{{pool="api",instance="{addr}"}}"#);
        batches += gateway
            .sample(&format!("strata_gateway_batches_total{labels}"))
            .await
            .unwrap();
        batched += gateway
            .sample(&format!("strata_gateway_batched_requests_total{labels}"))
            .await
            .unwrap();
    }
    assert_eq!(batched, f64::from(48 * 20), "every GET went in a batch");
    assert!(
        batches < batched,
        "{batches} batches for {batched} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_depth_one_sends_every_request_alone() {
    let (one, reads) = mirror().await;
    let mut config = config(&[("api", vec![format!("http://{one}")])]);
    config.api.upstream_protocol = UpstreamProtocol::Http1;
    config.api.pipeline_depth = 1;
    let gateway = Arc::new(spawn_gateway(config).await);
    let clients: Vec<_> = (0..32)
        .map(|client| {
            let gateway = Arc::clone(&gateway);
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..20 {
                    let path = format!("/api/v1/items/{client}/{i}");
                    let body = http.get(gateway.url(&path)).send().await.unwrap();
                    assert_eq!(body.text().await.unwrap(), format!("GET {path}"));
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let reads = reads.lock().unwrap().clone();
    assert_eq!(reads.iter().map(Vec::len).sum::<usize>(), 32 * 20);
    assert!(reads.iter().all(|read| read.len() == 1));
    let series = format!(r#"strata_gateway_batches_total{{pool="api",instance="{one}"}}"#);
    assert_eq!(gateway.sample(&series).await, Some(0.0));
}
