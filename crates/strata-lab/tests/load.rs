//! The load generator against tiny in-test hyper servers whose behaviour is known exactly.

// Helpers outside `#[test]` functions panic on a broken test machine, as the tests do.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use strata_lab::{Failure, LabError, LoadSpec, Pace, run, run_until};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves: `/a` 200 from instance `one` or `two` in turn, `/missing` 404, `/slow` 200 after
/// 100 ms, `/hang` after 10 s, `/close` 200 with `Connection: close`.
async fn spawn_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let n = served.fetch_add(1, Ordering::Relaxed);
                    async move { Ok::<_, Infallible>(respond(request.uri().path(), n).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn respond(path: &str, n: u64) -> Response<Full<Bytes>> {
    let instance = if n.is_multiple_of(2) { "one" } else { "two" };
    let mut builder = Response::builder().header("x-strata-instance", instance);
    match path {
        "/a" => {}
        "/missing" => builder = builder.status(StatusCode::NOT_FOUND),
        "/slow" => tokio::time::sleep(Duration::from_millis(100)).await,
        "/hang" => tokio::time::sleep(Duration::from_secs(10)).await,
        "/close" => builder = builder.header("connection", "close"),
        _ => builder = builder.status(StatusCode::IM_A_TEAPOT),
    }
    builder
        .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
        .unwrap()
}

fn spec(addr: SocketAddr, paths: &[&str]) -> LoadSpec {
    let mut spec = LoadSpec::new(format!("http://{addr}"));
    spec.paths = paths.iter().map(|p| (*p).to_owned()).collect();
    spec
}

#[tokio::test]
async fn a_request_bound_is_exact_and_everything_is_counted() {
    let addr = spawn_server().await;
    let spec = LoadSpec {
        concurrency: 4,
        requests: Some(200),
        ..spec(addr, &["/a", "/missing"])
    };
    let report = run(&spec).await.unwrap();
    assert_eq!(report.requests, 200);
    assert_eq!(report.ok, 100);
    assert_eq!(report.statuses.get(&200), Some(&100));
    assert_eq!(report.statuses.get(&404), Some(&100));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.per_instance.values().sum::<u64>(), 200);
    assert_eq!(
        report.per_instance.keys().collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert_eq!(
        report.connections, 4,
        "one keep-alive connection per worker"
    );
    assert_eq!(report.latency_ms.count, 200);
    assert!(
        report.latency_ms.p50 <= report.latency_ms.p99
            && report.latency_ms.p99 <= report.latency_ms.max
    );
    assert!(report.req_per_sec > 0.0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["statuses"]["404"], 100);
    assert!(json["latency_ms"]["p99"].is_number());
}

#[tokio::test]
async fn a_time_bound_stops_the_run() {
    let addr = spawn_server().await;
    let spec = LoadSpec {
        concurrency: 2,
        duration: Duration::from_millis(350),
        ..spec(addr, &["/slow"])
    };
    let report = run(&spec).await.unwrap();
    // Each worker completes a 100 ms request about every 100 ms: 3 or 4 each in 350 ms.
    assert!((4..=8).contains(&report.requests), "{report:?}");
    assert_eq!(report.ok, report.requests);
    assert!(
        report.elapsed < Duration::from_millis(700),
        "{:?}",
        report.elapsed
    );
    assert!(report.latency_ms.min >= 100.0, "{:?}", report.latency_ms);
}

#[tokio::test]
async fn connection_close_responses_reconnect_without_failures() {
    let addr = spawn_server().await;
    let spec = LoadSpec {
        concurrency: 2,
        requests: Some(20),
        ..spec(addr, &["/close"])
    };
    let report = run(&spec).await.unwrap();
    assert_eq!(report.ok, 20, "{report:?}");
    assert_eq!(report.connections, 20);
    assert_eq!(report.failed, 0);
}

#[tokio::test]
async fn refused_connections_are_failures_that_were_never_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let spec = LoadSpec {
        concurrency: 2,
        requests: Some(6),
        ..spec(addr, &["/a"])
    };
    let report = run(&spec).await.unwrap();
    assert_eq!(report.requests, 6);
    assert_eq!(report.failures(Failure::Connect), 6, "{report:?}");
    assert_eq!(report.sent_failures, 0);
    assert_eq!(report.latency_ms.count, 0);
}

#[tokio::test]
async fn a_server_that_reads_and_hangs_up_fails_sent_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            // Read the whole request head, then close without answering (a clean FIN).
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            drop(stream);
        }
    });
    let spec = LoadSpec {
        concurrency: 1,
        requests: Some(5),
        ..spec(addr, &["/a"])
    };
    let report = run(&spec).await.unwrap();
    assert_eq!(report.failures(Failure::Closed), 5, "{report:?}");
    assert_eq!(report.sent_failures, 5);
}

#[tokio::test]
async fn slow_responses_time_out() {
    let addr = spawn_server().await;
    let spec = LoadSpec {
        concurrency: 1,
        requests: Some(2),
        request_timeout: Duration::from_millis(100),
        ..spec(addr, &["/hang"])
    };
    let report = run(&spec).await.unwrap();
    assert_eq!(report.failures(Failure::Timeout), 2, "{report:?}");
    assert_eq!(report.sent_failures, 2);
}

#[tokio::test]
async fn cancelling_stops_a_long_run_promptly() {
    let addr = spawn_server().await;
    let stop = CancellationToken::new();
    let spec = LoadSpec {
        concurrency: 4,
        duration: Duration::from_secs(60),
        ..spec(addr, &["/a"])
    };
    let canceller = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });
    let report = run_until(&spec, stop).await.unwrap();
    assert!(
        report.elapsed < Duration::from_secs(2),
        "{:?}",
        report.elapsed
    );
    assert!(report.ok > 0);
    assert_eq!(report.ok, report.requests);
}

#[tokio::test]
async fn bad_specs_and_unknown_hosts_are_errors() {
    let err = run(&LoadSpec {
        concurrency: 0,
        ..LoadSpec::new("http://127.0.0.1:1")
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            LabError::Spec {
                field: "concurrency",
                ..
            }
        ),
        "{err}"
    );
    let err = run(&LoadSpec::new("http://no-such-host.invalid:80"))
        .await
        .unwrap_err();
    assert!(matches!(err, LabError::Resolve { .. }), "{err}");
}

/// Serves 200 at once, except that every request arriving between 1 s and 2 s after the
/// first one waits until 2 s: the server stalls for one second.
async fn spawn_stalling_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first: Arc<std::sync::OnceLock<tokio::time::Instant>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let first = Arc::clone(&first);
            tokio::spawn(async move {
                let service = service_fn(move |_: Request<Incoming>| {
                    let first = *first.get_or_init(tokio::time::Instant::now);
                    async move {
                        let now = tokio::time::Instant::now();
                        let (from, until) = (
                            first + Duration::from_secs(1),
                            first + Duration::from_secs(2),
                        );
                        if now >= from && now < until {
                            tokio::time::sleep_until(until).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn open(addr: SocketAddr, path: &str, rates: &[f64], step: Option<Duration>) -> LoadSpec {
    LoadSpec {
        pace: Pace::Open {
            rates: rates.to_vec(),
            step,
        },
        ..spec(addr, &[path])
    }
}

/// The p99 wrk2 would report for the stalling server: each request's latency counted from its
/// intended send time, `max(0, stall end - intended)` (plus a service time of about nothing).
fn corrected_p99(rate: f64, secs: f64) -> f64 {
    let n = (rate * secs).round() as usize;
    let mut latencies: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            if (1.0..2.0).contains(&t) {
                (2.0 - t) * 1000.0
            } else {
                0.0
            }
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies[(0.99 * n as f64).ceil() as usize - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_charges_a_stall_to_every_request_scheduled_during_it() {
    let rate = 200.0;
    let report = run(&LoadSpec {
        concurrency: 64,
        duration: Duration::from_secs(4),
        ..open(spawn_stalling_server().await, "/", &[rate], None)
    })
    .await
    .unwrap();
    assert_eq!(report.requests, 800, "{report:#?}");
    assert_eq!(report.ok, 800);
    let expected = corrected_p99(rate, 4.0);
    let p99 = report.latency_ms.p99;
    eprintln!("open loop p99 {p99} ms, wrk2-style corrected p99 {expected} ms");
    assert!(
        (p99 - expected).abs() <= expected * 0.03 + 5.0,
        "p99 {p99} ms, corrected {expected} ms: {:#?}",
        report.latency_ms
    );
    assert!(
        report.rate.as_ref().unwrap().late > 0,
        "a stall leaves connections busy"
    );

    // The same stall in a closed loop: the 4 waiting connections send nothing meanwhile, so
    // the stall hides in 4 slow requests among thousands (coordinated omission).
    let closed = run(&LoadSpec {
        concurrency: 4,
        duration: Duration::from_secs(4),
        ..spec(spawn_stalling_server().await, &["/"])
    })
    .await
    .unwrap();
    assert!(closed.latency_ms.max >= 900.0, "{:#?}", closed.latency_ms);
    assert!(closed.latency_ms.p99 < 100.0, "{:#?}", closed.latency_ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_holds_its_rate_within_one_percent() {
    let addr = spawn_server().await;
    let report = run(&LoadSpec {
        concurrency: 16,
        duration: Duration::from_secs(2),
        ..open(addr, "/a", &[2000.0], None)
    })
    .await
    .unwrap();
    let rate = report.rate.as_ref().unwrap();
    assert_eq!(
        (report.requests, rate.scheduled),
        (4000, 4000),
        "{report:#?}"
    );
    assert_eq!(report.ok, 4000);
    assert!((rate.achieved / 2000.0 - 1.0).abs() < 0.01, "{rate:?}");
    assert!(
        report.elapsed < Duration::from_millis(2300),
        "{:?}",
        report.elapsed
    );
    assert!(report.connections <= 16);

    // Steps: each rate held for its step, in turn.
    let report = run(&LoadSpec {
        concurrency: 16,
        ..open(addr, "/a", &[500.0, 1500.0], Some(Duration::from_secs(1)))
    })
    .await
    .unwrap();
    assert_eq!(report.requests, 2000, "{report:#?}");
    let steps: Vec<_> = report
        .steps
        .iter()
        .map(|s| (s.target, s.requests))
        .collect();
    assert_eq!(steps, [(500.0, 500), (1500.0, 1500)]);
    for step in &report.steps {
        assert!((step.achieved / step.target - 1.0).abs() < 0.01, "{step:?}");
    }
}

#[tokio::test]
async fn an_open_loop_sends_on_schedule_whatever_the_server_answers() {
    // A refused connection fails each request at once; the schedule goes on regardless.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let report = run(&LoadSpec {
        concurrency: 4,
        duration: Duration::from_millis(500),
        ..open(addr, "/", &[100.0], None)
    })
    .await
    .unwrap();
    assert_eq!(report.requests, 50, "{report:#?}");
    assert_eq!(report.failures(Failure::Connect), 50);
    assert!(report.all_failed());
}

/// A raw keep-alive server answering every request with `answer`.
async fn spawn_raw(answer: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn chunked_bodies_and_trailers_are_read_to_their_end() {
    let addr = spawn_raw(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-strata-instance: raw\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n",
    )
    .await;
    let report = run(&LoadSpec {
        concurrency: 2,
        requests: Some(50),
        ..spec(addr, &["/"])
    })
    .await
    .unwrap();
    assert_eq!(report.ok, 50, "{report:#?}");
    assert_eq!(report.connections, 2, "kept alive across chunked bodies");
    assert_eq!(report.per_instance.get("raw"), Some(&50));
}

#[tokio::test]
async fn a_response_that_is_not_http_is_a_protocol_failure() {
    let addr = spawn_raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    let report = run(&LoadSpec {
        concurrency: 1,
        requests: Some(3),
        ..spec(addr, &["/"])
    })
    .await
    .unwrap();
    assert_eq!(report.failures(Failure::Protocol), 3, "{report:#?}");
}
