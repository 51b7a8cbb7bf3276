//! A minimal backend for benchmarks: answers every request with a small fixed body over
//! keep-alive connections, in HTTP/1.1 or h2c (prior knowledge), as strata's own instances do.
//! The `strata` binary will expose it as `strata serve echo`; its logic lives in [`run_echo`]
//! so it can move there unchanged.
//!
//! ```text
//! cargo run --release -p strata-gateway --example echo -- 127.0.0.1:8101 [body]
//! ECHO_SLOW_MS=100 cargo run --release -p strata-gateway --example echo -- 127.0.0.1:8101
//! ```
//!
//! With `ECHO_SLOW_MS`, requests whose path starts with `/slow` are answered after that many
//! milliseconds (the rest at once): the slow/fast mix of the head-of-line benchmark.
//!
//! One single-threaded runtime: a backend this small is fastest without cross-thread wake-ups,
//! and the benchmark wants backends that cost as little CPU as possible.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The body sent when none is given on the command line.
const DEFAULT_BODY: &str = "hello from strata echo\n";

/// Serves `listener` forever: every request, whatever its method or path, gets `200` with
/// `body`, after `slow` for paths under `/slow` when set. Connection errors end that
/// connection only.
pub async fn run_echo(listener: TcpListener, body: Bytes, slow: Option<std::time::Duration>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("echo: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // Responses are small and written whole: Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let body = body.clone();
                let wait = slow.filter(|_| request.uri().path().starts_with("/slow"));
                async move {
                    if let Some(wait) = wait {
                        tokio::time::sleep(wait).await;
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // Responses to pipelined requests (several read at once) leave in one write.
            builder.http1().pipeline_flush(true);
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8101".to_owned());
    let body = Bytes::from(args.next().unwrap_or_else(|| DEFAULT_BODY.to_owned()));
    let slow = std::env::var("ECHO_SLOW_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(std::time::Duration::from_millis);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = TcpListener::bind(&addr).await?;
            eprintln!("echo on {}", listener.local_addr()?);
            run_echo(listener, body, slow).await;
            Ok(())
        })
}
