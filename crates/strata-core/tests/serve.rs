//! `strata_core::serve::serve` with real listeners: HTTP/2 with prior knowledge (what the
//! gateway speaks to instances) runs more concurrent streams on one connection than it keeps
//! on the connection's task, handlers see the peer's address, a connection's responses to
//! requests that arrive together leave in a few writes, bodies larger than what a connection
//! holds arrive whole, and a shutdown lets in-flight requests on both protocols finish while
//! refusing new connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::routing::get;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use strata_core::Shutdown;
use strata_core::serve::{INLINE_STREAMS, serve};
use strata_core::testkit::{h2_response, on_own_thread, patterned_bytes, writes_by_threads};
use strata_core::wait::eventually;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

/// Requests of `/held`: how many entered the handler, and the permits that let them answer.
struct Held {
    entered: AtomicUsize,
    release: Semaphore,
}

impl Default for Held {
    fn default() -> Held {
        Held {
            entered: AtomicUsize::new(0),
            release: Semaphore::new(0),
        }
    }
}

/// `/together` answers once `n` requests are in it at once; `/held` answers when the test
/// releases a permit; `/peer` answers the client's address.
fn router(together: usize, held: Arc<Held>) -> Router {
    let barrier = Arc::new(Barrier::new(together));
    Router::new()
        .route(
            "/together",
            get(move || async move {
                barrier.wait().await;
                "together"
            }),
        )
        .route(
            "/held",
            get(|State(held): State<Arc<Held>>| async move {
                held.entered.fetch_add(1, Ordering::SeqCst);
                let _permit = held.release.acquire().await.expect("semaphore open");
                "released"
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/body/{len}",
            get(|Path(len): Path<usize>| async move { patterned_bytes(len) }),
        )
        .with_state(held)
}

async fn start(router: Router) -> (SocketAddr, Shutdown, JoinHandle<std::io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(serve(listener, router, shutdown.clone()));
    (addr, shutdown, task)
}

/// An HTTP/2 connection with prior knowledge, and the local address it comes from.
async fn h2c(addr: SocketAddr) -> (hyper::client::conn::http2::SendRequest<Body>, SocketAddr) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let local = tcp.local_addr().expect("local address");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    (sender, local)
}

async fn get_bytes_h2(
    mut sender: hyper::client::conn::http2::SendRequest<Body>,
    path: &str,
) -> (u16, axum::body::Bytes) {
    let request = Request::get(format!("http://strata{path}"))
        .body(Body::empty())
        .expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(Body::new(response.into_body()), 8 << 20)
        .await
        .expect("body");
    (status, body)
}

async fn get_text(
    sender: hyper::client::conn::http2::SendRequest<Body>,
    path: &str,
) -> (u16, String) {
    let (status, body) = get_bytes_h2(sender, path).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An HTTP/1.1 connection, and the local address it comes from.
async fn h1(addr: SocketAddr) -> (hyper::client::conn::http1::SendRequest<Body>, SocketAddr) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let local = tcp.local_addr().expect("local address");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(conn);
    (sender, local)
}

async fn h1_get_bytes(
    mut sender: hyper::client::conn::http1::SendRequest<Body>,
    path: &str,
) -> (u16, axum::body::Bytes) {
    let response = sender
        .send_request(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(Body::new(response.into_body()), 8 << 20)
        .await
        .expect("body");
    (status, body)
}

async fn h1_get_text(
    sender: hyper::client::conn::http1::SendRequest<Body>,
    path: &str,
) -> (u16, String) {
    let (status, body) = h1_get_bytes(sender, path).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Cancels `shutdown` and waits (bounded) for `serve` to return.
async fn stop(shutdown: Shutdown, task: JoinHandle<std::io::Result<()>>) {
    shutdown.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("serve returns")
        .expect("no panic")
        .expect("no error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_h2c_connection_runs_more_streams_at_once_than_it_keeps_inline() {
    // Every request waits until all are in flight: the streams kept on the connection's task
    // and those spawned beyond them must all be running at the same time.
    let streams = INLINE_STREAMS * 3;
    let (addr, shutdown, task) = start(router(streams, Arc::default())).await;
    let (sender, _) = h2c(addr).await;
    let requests: Vec<_> = (0..streams)
        .map(|_| tokio::spawn(get_text(sender.clone(), "/together")))
        .collect();
    for request in requests {
        let (status, body) = tokio::time::timeout(WAIT, request)
            .await
            .expect("every stream answered: none waited behind another")
            .expect("no panic");
        assert_eq!((status, body.as_str()), (200, "together"));
    }
    // The connection serves on after the burst, from its own task again.
    let (status, _) = tokio::time::timeout(WAIT, get_text(sender, "/peer"))
        .await
        .expect("answered after the burst");
    assert_eq!(status, 200);
    stop(shutdown, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_the_peer_address_on_both_protocols() {
    let (addr, shutdown, task) = start(router(1, Arc::default())).await;
    let (sender, local) = h2c(addr).await;
    assert_eq!(get_text(sender, "/peer").await, (200, local.to_string()));

    let (sender, local) = h1(addr).await;
    assert_eq!(h1_get_text(sender, "/peer").await, (200, local.to_string()));
    stop(shutdown, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let held = Arc::default();
    let (addr, shutdown, task) = start(router(1, Arc::clone(&held))).await;
    // In flight when the shutdown comes: one HTTP/2 stream and one HTTP/1.1 request.
    let (sender, _) = h2c(addr).await;
    let over_h2 = tokio::spawn(get_text(sender, "/held"));
    let (sender, _) = h1(addr).await;
    let over_h1 = tokio::spawn(h1_get_text(sender, "/held"));
    // Both requests are in their handler before the shutdown starts.
    eventually(WAIT, "both requests in their handler", || async {
        (held.entered.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    shutdown.cancel();
    // The listener is closed while the two requests are still held.
    eventually(WAIT, "the listener closed", || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    assert!(!task.is_finished(), "serve waits for in-flight requests");
    held.release.add_permits(2);
    let (status, body) = tokio::time::timeout(WAIT, over_h2)
        .await
        .expect("the h2 request finishes")
        .expect("no panic");
    assert_eq!((status, body.as_str()), (200, "released"));
    let (status, body) = tokio::time::timeout(WAIT, over_h1)
        .await
        .expect("the http/1.1 request finishes")
        .expect("no panic");
    assert_eq!((status, body.as_str()), (200, "released"));
    tokio::time::timeout(WAIT, task)
        .await
        .expect("serve returns once they are answered")
        .expect("no panic")
        .expect("no error");
}

#[test]
fn responses_to_streams_that_arrive_together_leave_in_a_few_writes() {
    // Server and client on one thread of their own, so that only their writes count and the
    // client's connection writes the requests once all of them are queued.
    const THREAD: &str = "held-writes";
    on_own_thread(THREAD, || async {
        let (addr, shutdown, task) = start(router(1, Arc::default())).await;
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        let driver = tokio::spawn(connection);
        let get = |client: h2::client::SendRequest<axum::body::Bytes>| async move {
            let mut client = client.ready().await.expect("ready");
            let request = http::Request::get("http://strata/body/300")
                .body(())
                .expect("request");
            let (response, _) = client.send_request(request, true).expect("stream");
            (client, response)
        };
        let read = |response: h2::client::ResponseFuture| async move {
            let (status, body) = h2_response(response, WAIT).await;
            assert_eq!((status.as_u16(), body), (200, patterned_bytes(300)));
        };
        // The connection settles (SETTINGS and their acknowledgements) on a first request.
        let (mut client, response) = get(client).await;
        read(response).await;

        // 64 requests queued on the client's connection before its task writes them: the
        // server reads them in one or a few reads. Each answer's body (300 bytes) is one the
        // `h2` crate flushes on its own, which without held writes costs a write per response.
        let before = writes_by_threads(THREAD);
        let mut responses = Vec::new();
        for _ in 0..64 {
            let (next, response) = get(client).await;
            client = next;
            responses.push(response);
        }
        for response in responses {
            read(response).await;
        }
        let writes = writes_by_threads(THREAD) - before;
        assert!(
            (1..=16).contains(&writes),
            "{writes} writes by the client and the server for 64 requests answered together"
        );
        drop(client);
        driver.abort();
        stop(shutdown, task).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_larger_than_a_connection_holds_arrive_whole_on_both_protocols() {
    let (addr, shutdown, task) = start(router(1, Arc::default())).await;
    for len in [0, 300, 70_000, 3 << 20] {
        let path = format!("/body/{len}");
        let (sender, _) = h2c(addr).await;
        let (status, body) = get_bytes_h2(sender, &path).await;
        assert_eq!((status, body.len()), (200, len), "h2 {path}");
        assert!(body == patterned_bytes(len), "h2 {path}: the bytes differ");
        let (sender, _) = h1(addr).await;
        let (status, body) = h1_get_bytes(sender, &path).await;
        assert_eq!((status, body.len()), (200, len), "http/1.1 {path}");
        assert!(
            body == patterned_bytes(len),
            "http/1.1 {path}: the bytes differ"
        );
    }
    stop(shutdown, task).await;
}
