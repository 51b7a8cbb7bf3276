//! Serving a role's router on a TCP listener: HTTP/1.1 and HTTP/2 (h2c with prior knowledge,
//! which the gateway speaks to instances), WebSocket upgrades, graceful shutdown.
//!
//! An accept loop of our own rather than `axum::serve` for one reason: where an HTTP/2
//! connection's streams run. hyper spawns every stream as a task of its own; on a multi-thread
//! runtime the other worker thread often steals it, so each request pays a cross-thread wake-up
//! and its response a second one back to the connection's task, which costs the api several
//! µs of CPU per request more than the same request over HTTP/1.1. Here a connection's first
//! [`INLINE_STREAMS`] concurrent streams run on the connection's own task, as an HTTP/1.1
//! request does; streams beyond them are spawned, so one busy connection still spreads over
//! every core.
//!
//! A connection's writes are held while the connection is polled and go out together once it
//! has done all it can ([`crate::held`]): without this an HTTP/2 connection writes each
//! response of 256 bytes or more in a system call of its own, however many requests arrived in
//! one read.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::held::{Held, Owner};
use crate::shutdown::Shutdown;

/// How many of an HTTP/2 connection's concurrent streams run on the connection's own task;
/// more are spawned onto the runtime. The gateway keeps one connection per worker to each
/// instance and multiplexes its requests on it, typically a few to a few dozen at a time.
pub const INLINE_STREAMS: usize = 32;

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// in-flight requests finish (HTTP/2 connections get a `GOAWAY`) and closes idle keep-alive
/// connections. Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
///
/// # Errors
/// None today: accept errors are logged and retried (a full file table is waited out).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                connections.spawn(connection(tcp, peer, router.clone(), shutdown.clone()));
            }
            Err(e) => accept_failed(&e).await,
        }
    }
    // No new connections from here: the port is released while in-flight requests finish.
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// An accept error: one about a single connection (reset before it was accepted) is skipped;
/// any other (too many open files) is logged and waited out for a second rather than spun on.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection until it closes, or, once `shutdown` is cancelled, until its
/// in-flight requests are answered.
async fn connection(tcp: TcpStream, peer: SocketAddr, router: Router, shutdown: Shutdown) {
    // Small responses go out at once: without TCP_NODELAY a second small write on a
    // connection waits for the peer's delayed ACK (about 40 ms on Linux).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let service = router.map_request(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.map(Body::new)
    });
    let (read, write) = tcp.into_split();
    let (held, outbox) = Held::new(read, write);
    let streams = Arc::new(InlineStreams::default());
    let mut builder = Builder::new(StreamExecutor {
        streams: Arc::clone(&streams),
        owner: outbox.owner().clone(),
    });
    // RFC 8441: WebSocket over an HTTP/2 stream.
    builder.http2().enable_connect_protocol();
    let mut conn = pin!(
        builder
            .serve_connection_with_upgrades(TokioIo::new(held), TowerToHyperService::new(service))
    );
    let mut conn = outbox.drive(conn.as_mut());
    let mut stopping = pin!(shutdown.cancelled());
    let mut stopped = false;
    let mut conn_done = false;
    let mut running = FuturesUnordered::new();
    std::future::poll_fn(|cx| {
        if !stopped && stopping.as_mut().poll(cx).is_ready() {
            stopped = true;
            conn.connection().as_mut().graceful_shutdown();
        }
        // The connection, then what it wrote while it was polled, in one write.
        if !conn_done && let Poll::Ready(served) = Pin::new(&mut conn).poll(cx) {
            conn_done = true;
            if let Err(e) = served {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        }
        // Streams the connection started while it was polled, then every stream's progress.
        // A stream that answers wakes this task, which polls the connection again to write it.
        loop {
            running.extend(streams.take_new());
            match running.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {
                    streams.inline.fetch_sub(1, Ordering::Relaxed);
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        if conn_done && running.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The streams a connection runs on its own task: those started and not yet picked up, and
/// how many are running.
#[derive(Default)]
struct InlineStreams {
    new: Mutex<Vec<Stream>>,
    inline: AtomicUsize,
}

impl InlineStreams {
    fn take_new(&self) -> Vec<Stream> {
        std::mem::take(&mut *self.new.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// hyper's executor for one connection: a stream started while the connection's own task
/// polls the connection runs on that task, while fewer than [`INLINE_STREAMS`] do; any other
/// (beyond them, or a task hyper starts from elsewhere, such as an upgraded stream's) is
/// spawned.
#[derive(Clone)]
struct StreamExecutor {
    streams: Arc<InlineStreams>,
    owner: Owner,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let streams = &self.streams;
        if !self.owner.is_polling() || streams.inline.load(Ordering::Relaxed) >= INLINE_STREAMS {
            tokio::spawn(stream);
            return;
        }
        streams.inline.fetch_add(1, Ordering::Relaxed);
        streams
            .new
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::pin(stream));
    }
}
