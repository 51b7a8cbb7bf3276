//! Test harness: tiny hyper backends that name themselves and record what they saw, a gateway
//! on port 0 in front of them, and raw-socket helpers for malformed traffic.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use strata_core::Shutdown;
use strata_gateway::config::{GatewayConfig, PoolConfig};
use strata_gateway::{Gateway, GatewayError, GatewayHandle, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as a backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A backend instance: answers with `X-Strata-Instance: <name>` and records every request.
///
/// Paths: `/slow` sleeps 500 ms, `/echo` returns the request body, `/hop` answers with
/// hop-by-hop headers, anything else returns `hello from <name>`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    stop: Shutdown,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_with(name, true).await
    }

    /// A backend that closes every connection after one response (`keep_alive = false`, an
    /// HTTP/1.1-only server); with `keep_alive`, it speaks HTTP/1.1 and h2c.
    pub async fn start_with(name: &str, keep_alive: bool) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, keep_alive, listener)
    }

    /// A backend on `addr` (one that listened there before and was dropped: a restart).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(name, true, listener)
    }

    fn serve(name: &str, keep_alive: bool, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Shutdown::new();
        let (name_, seen_, connections_, stop_) = (
            name.to_owned(),
            Arc::clone(&seen),
            Arc::clone(&connections),
            stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    () = stop_.cancelled() => break,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                connections_.fetch_add(1, Ordering::SeqCst);
                let (name, seen) = (name_.clone(), Arc::clone(&seen_));
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (name, seen) = (name.clone(), Arc::clone(&seen));
                        async move { Ok::<_, Infallible>(answer(&name, &seen, request).await) }
                    });
                    if keep_alive {
                        // HTTP/1.1 and h2c with prior knowledge, like strata's own instances.
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    } else {
                        let _ = http1::Builder::new()
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                });
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            seen,
            connections,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets the requests seen so far.
    pub fn forget(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(
    name: &str,
    seen: &Mutex<Vec<Seen>>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = head.uri.path().to_owned();
    seen.lock().unwrap().push(Seen {
        method: head.method.clone(),
        path: path.clone(),
        headers: head.headers.clone(),
        body: body.clone(),
    });
    let mut response = match path.as_str() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Response::new(Full::new(Bytes::from(format!("slow hello from {name}"))))
        }
        "/echo" => Response::new(Full::new(body)),
        "/hop" => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"hop")));
            let headers = response.headers_mut();
            headers.insert("connection", HeaderValue::from_static("x-resp-hop"));
            headers.insert("x-resp-hop", HeaderValue::from_static("1"));
            headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            headers.insert(
                "proxy-authenticate",
                HeaderValue::from_static("Basic realm=x"),
            );
            headers.insert("trailer", HeaderValue::from_static("x-sum"));
            headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
            response
        }
        _ => Response::new(Full::new(Bytes::from(format!("hello from {name}")))),
    };
    response
        .headers_mut()
        .insert("x-strata-instance", HeaderValue::from_str(name).unwrap());
    response
}

/// An instance that reads a request and closes the connection without answering: the request
/// was delivered (it may have had effects) but no response byte came back. Returns its URL and
/// the number of requests it swallowed.
pub async fn rude_backend() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let swallowed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&swallowed);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                if let Ok(n) = stream.read(&mut buf).await
                    && n > 0
                {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                // Dropping the stream closes it: EOF before any response byte.
            });
        }
    });
    (format!("http://{addr}"), swallowed)
}

/// An address nobody listens on: a socket bound to it but never listening, kept open for the
/// rest of the test run, so connections are refused and no later listener (the gateway's own
/// included) can take the port.
pub async fn dead_url() -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    std::mem::forget(socket);
    format!("http://{addr}")
}

/// A running gateway on port 0.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: Shutdown,
    pub task: Option<JoinHandle<Result<(), GatewayError>>>,
    pub client: reqwest::Client,
    /// Reloads the running gateway.
    pub handle: GatewayHandle,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample of /metrics, e.g. `strata_gateway_retries_total{pool="api"}`.
    pub async fn sample(&self, series: &str) -> Option<f64> {
        let text = self.metrics().await;
        text.lines().find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
    }

    pub async fn admin_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.client.get(self.admin_url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A gateway config on port 0 with `pools`. Active health checks and passive ejection are off,
/// so backends see exactly the requests a test sends and every turn of the balancer goes where
/// the test expects; the tests of health turn them on (see `health.rs`).
pub fn config(pools: &[(&str, Vec<String>)]) -> GatewayConfig {
    let mut config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        pools: pools
            .iter()
            .map(|(name, instances)| PoolConfig {
                name: (*name).to_owned(),
                instances: instances.clone(),
            })
            .collect(),
        // One worker: on a test's single-threaded runtime it is the test's own, so paused
        // time and in-test backends share one clock and one loop.
        workers: 1,
        ..GatewayConfig::default()
    };
    for settings in [&mut config.api, &mut config.chat] {
        settings.health.interval_ms = 0;
        settings.health.eject_after = 0;
    }
    config
}

pub async fn spawn_gateway(config: GatewayConfig) -> TestGateway {
    let limits = Limits::from_config(&config);
    spawn_gateway_with(config, limits).await
}

pub async fn spawn_gateway_with(config: GatewayConfig, limits: Limits) -> TestGateway {
    let gateway = Gateway::build_with_limits(&config, limits).await.unwrap();
    spawn_built(gateway)
}

/// Runs a gateway built by the test (with an instance control, say).
pub fn spawn_built(gateway: Gateway) -> TestGateway {
    let (addr, admin) = (gateway.local_addr(), gateway.admin_addr());
    let handle = gateway.handle();
    let shutdown = Shutdown::new();
    let task = Some(tokio::spawn(gateway.run(shutdown.clone())));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    TestGateway {
        addr,
        admin,
        shutdown,
        task,
        client,
        handle,
    }
}

/// Writes `request` on a fresh connection and reads until the server closes (or 5 s pass).
/// Returns what was read; a reset counts as the end.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "server neither answered nor closed within 5 s"
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// Retries `check` until it holds or 2 s pass ([`strata_core::wait::eventually`] for a yes/no
/// condition).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    strata_core::wait::eventually(Duration::from_secs(2), what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// A WebSocket instance (tokio-tungstenite): greets each client with `welcome from <name>`,
/// then answers every text message `m` with `<name>: m`. Counts the WebSockets it accepted.
pub struct WsBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    stop: Shutdown,
}

impl WsBackend {
    pub async fn start(name: &str) -> WsBackend {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Shutdown::new();
        let (name_, accepted_, stop_) = (name.to_owned(), Arc::clone(&accepted), stop.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    () = stop_.cancelled() => break,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                let (name, accepted, stop) = (name_.clone(), Arc::clone(&accepted_), stop_.clone());
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let _ = ws.send(Message::text(format!("welcome from {name}"))).await;
                    loop {
                        let message = tokio::select! {
                            () = stop.cancelled() => break,
                            message = ws.next() => message,
                        };
                        match message {
                            Some(Ok(Message::Text(text))) => {
                                let reply = format!("{name}: {}", text.as_str());
                                if ws.send(Message::text(reply)).await.is_err() {
                                    break;
                                }
                            }
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                            Some(Ok(_)) => {}
                        }
                    }
                });
            }
        });
        WsBackend {
            name: name.to_owned(),
            addr,
            accepted,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a WebSocket to the chat route of `gateway` for `room`; returns it with the name of
/// the instance that greeted it.
pub async fn ws_connect(gateway: SocketAddr, room: &str) -> (Ws, String) {
    let stream = TcpStream::connect(gateway).await.unwrap();
    let url = format!("ws://{gateway}/api/v1/chat/ws?room={room}");
    let (mut ws, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(response.status(), 101);
    let greeting = ws_recv(&mut ws).await.expect("a greeting");
    let name = greeting
        .strip_prefix("welcome from ")
        .expect("a greeting")
        .to_owned();
    (ws, name)
}

/// The next text message, or `None` when the WebSocket closed (or nothing came in 3 s).
pub async fn ws_recv<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(3), ws.next())
            .await
            .ok()??;
        match next {
            Ok(Message::Text(text)) => return Some(text.as_str().to_owned()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Sends `text` and returns the reply.
pub async fn ws_echo<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    text: &str,
) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text.to_owned())).await.ok()?;
    ws_recv(ws).await
}

impl TestGateway {
    /// An admin request with an optional bearer token; returns the status and JSON body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.client.request(method, self.admin_url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// The instances of `pool` as `/admin/pools` lists them.
    pub async fn instances(&self, pool: &str) -> Vec<serde_json::Value> {
        let (_, body) = self.admin_json("/admin/pools").await;
        body["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == pool)
            .map(|p| p["instances"].as_array().unwrap().clone())
            .unwrap_or_default()
    }
}
