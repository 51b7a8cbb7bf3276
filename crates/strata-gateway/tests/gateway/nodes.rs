//! Instances whose health a test controls: they can be killed (listener and open connections
//! gone, like a crashed process), revived on the same port, made to fail their readiness check
//! or to answer 500 to everything else.
//!
//! Every answer carries `X-Strata-Instance: <name>` and the body `<name>`. `/readyz` answers
//! 200 while the node is ready and 503 otherwise; it is counted apart from the traffic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use strata_core::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::helpers::TestGateway;

#[derive(Default)]
struct Switches {
    ready: AtomicBool,
    failing: AtomicBool,
    traffic: AtomicUsize,
    checks: AtomicUsize,
}

/// A controllable instance.
pub struct Node {
    pub addr: SocketAddr,
    switches: Arc<Switches>,
    kill: Shutdown,
    accept: Option<JoinHandle<()>>,
}

impl Node {
    /// A ready node on a fresh port.
    pub async fn start(name: &str) -> Node {
        Self::start_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// A ready node on `addr` (the port of a killed node, to revive it).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Node {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let switches = Arc::new(Switches::default());
        switches.ready.store(true, Ordering::SeqCst);
        let kill = Shutdown::new();
        let accept = tokio::spawn({
            let (name, switches, kill) = (name.to_owned(), Arc::clone(&switches), kill.clone());
            async move {
                loop {
                    let stream = tokio::select! {
                        () = kill.cancelled() => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                    };
                    let (name, switches, kill) =
                        (name.clone(), Arc::clone(&switches), kill.clone());
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |request: http::Request<hyper::body::Incoming>| {
                                let response = answer(&name, &switches, request.uri().path());
                                async move { Ok::<_, Infallible>(response) }
                            });
                        // HTTP/1.1 and h2c, like strata's own instances.
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        // A kill drops the connection mid-flight, as a crash would.
                        tokio::select! {
                            _ = connection => {}
                            () = kill.cancelled() => {}
                        }
                    });
                }
            }
        });
        Node {
            addr,
            switches,
            kill,
            accept: Some(accept),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL with instance settings, e.g. `weight=5`.
    pub fn url_with(&self, settings: &str) -> String {
        format!("http://{}?{settings}", self.addr)
    }

    /// Closes the listener and every open connection; returns once the port is free.
    pub async fn kill(&mut self) {
        self.kill.cancel();
        if let Some(accept) = self.accept.take() {
            accept.await.unwrap();
        }
    }

    /// Whether `/readyz` answers 200 (true) or 503.
    pub fn set_ready(&self, ready: bool) {
        self.switches.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether every request but `/readyz` gets a 500.
    pub fn set_failing(&self, failing: bool) {
        self.switches.failing.store(failing, Ordering::SeqCst);
    }

    /// Requests other than health checks.
    pub fn traffic(&self) -> usize {
        self.switches.traffic.load(Ordering::SeqCst)
    }

    /// Health checks received.
    pub fn checks(&self) -> usize {
        self.switches.checks.load(Ordering::SeqCst)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

fn answer(name: &str, switches: &Switches, path: &str) -> Response<Full<Bytes>> {
    let status = if path == "/readyz" {
        switches.checks.fetch_add(1, Ordering::SeqCst);
        if switches.ready.load(Ordering::SeqCst) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    } else {
        switches.traffic.fetch_add(1, Ordering::SeqCst);
        if switches.failing.load(Ordering::SeqCst) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    };
    Response::builder()
        .status(status)
        .header("x-strata-instance", name)
        .body(Full::new(Bytes::from(name.to_owned())))
        .unwrap()
}

/// The instance that served a response.
pub fn served_by(response: &reqwest::Response) -> String {
    response.headers()["x-strata-instance"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The admin API's view of the instance at `addr` (in any pool).
pub async fn instance_view(gateway: &TestGateway, addr: SocketAddr) -> serde_json::Value {
    let (_, pools) = gateway.admin_json("/admin/pools").await;
    pools["pools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["instances"].as_array().unwrap().clone())
        .find(|i| i["address"] == addr.to_string())
        .unwrap_or_else(|| panic!("{addr} not in {pools}"))
}

/// The admin API's health of the instance at `addr`: `up`, `down` or `ejected`.
pub async fn health_of(gateway: &TestGateway, addr: SocketAddr) -> String {
    instance_view(gateway, addr).await["health"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls `check` every 10 ms until it holds; panics after `limit`. Returns the time it took.
pub async fn within<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = tokio::time::Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not true within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
