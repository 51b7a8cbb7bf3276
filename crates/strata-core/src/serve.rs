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
//! has done all it can ([`Held`]): the `h2` crate flushes whenever it queues a DATA frame of
//! 256 bytes or more, so without this an HTTP/2 connection writes each response of such a body
//! in a system call of its own, however many requests arrived in one read.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::shutdown::Shutdown;

/// How many of an HTTP/2 connection's concurrent streams run on the connection's own task;
/// more are spawned onto the runtime. The gateway keeps one connection per worker to each
/// instance and multiplexes its requests on it, typically a few to a few dozen at a time.
pub const INLINE_STREAMS: usize = 32;

/// Bytes a connection holds before it writes them whatever it is doing (a large body streams
/// through, with the socket's back-pressure).
const HELD_LIMIT: usize = 64 * 1024;

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
    let streams = Arc::new(InlineStreams::default());
    let (held, outbox) = Held::new(tcp, Arc::clone(&streams));
    let mut builder = Builder::new(StreamExecutor(Arc::clone(&streams)));
    // RFC 8441: WebSocket over an HTTP/2 stream.
    builder.http2().enable_connect_protocol();
    let mut conn = pin!(
        builder
            .serve_connection_with_upgrades(TokioIo::new(held), TowerToHyperService::new(service))
    );
    let mut stopping = pin!(shutdown.cancelled());
    let mut stopped = false;
    let mut conn_done = false;
    let mut running = FuturesUnordered::new();
    std::future::poll_fn(|cx| {
        if !stopped && stopping.as_mut().poll(cx).is_ready() {
            stopped = true;
            conn.as_mut().graceful_shutdown();
        }
        if !conn_done {
            POLLING.set(Arc::as_ptr(&streams));
            let polled = conn.as_mut().poll(cx);
            POLLING.set(std::ptr::null());
            if let Poll::Ready(served) = polled {
                conn_done = true;
                if let Err(e) = served {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
            }
        }
        // What the connection wrote while it was polled goes out in one write. A full socket
        // wakes this task when it drains; a broken one fails the connection's next write.
        let sent = outbox.drain(cx);
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
        if conn_done && running.is_empty() && !matches!(sent, Poll::Pending) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A connection's socket as hyper sees it: reads go straight to the socket; what is written
/// while the connection's own task polls the connection is held in the [`Outbox`], flushes
/// included, until that poll is over ([`Outbox::drain`]), so everything the connection
/// produced in one poll leaves in one write. Writes from anywhere else (an upgraded
/// connection's task) go to the socket at once, after what is held.
struct Held {
    read: OwnedReadHalf,
    outbox: Arc<Outbox>,
    /// The connection's [`InlineStreams`], compared with [`POLLING`] (held, so its address
    /// cannot pass to another connection while an upgraded stream still writes here).
    owner: Arc<InlineStreams>,
}

impl Held {
    fn new(tcp: TcpStream, owner: Arc<InlineStreams>) -> (Self, Arc<Outbox>) {
        let (read, write) = tcp.into_split();
        let outbox = Arc::new(Outbox {
            held: Mutex::new(Pending {
                write,
                bytes: Vec::new(),
                broken: None,
            }),
        });
        let held = Self {
            read,
            outbox: Arc::clone(&outbox),
            owner,
        };
        (held, outbox)
    }

    /// Whether the connection's own task is polling the connection right now.
    fn polled_by_owner(&self) -> bool {
        POLLING.get() == Arc::as_ptr(&self.owner)
    }
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let owner = self.polled_by_owner();
        let mut pending = self.outbox.lock();
        pending.broken()?;
        let len: usize = slices.iter().map(|s| s.len()).sum();
        if !owner || pending.bytes.len() + len > HELD_LIMIT {
            ready!(pending.poll_drain(cx))?;
            if !owner {
                // Written from another task (an upgraded connection, which may stay open and
                // idle for hours): straight to the socket, and nothing kept for holding.
                pending.bytes = Vec::new();
                return Pin::new(&mut pending.write).poll_write_vectored(cx, slices);
            }
            if len > HELD_LIMIT {
                // Too large to be worth holding: straight to the socket.
                return Pin::new(&mut pending.write).poll_write_vectored(cx, slices);
            }
        }
        for slice in slices {
            pending.bytes.extend_from_slice(slice);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.polled_by_owner() {
            // The connection's task writes it all once the connection's poll is over.
            return Poll::Ready(self.outbox.lock().broken());
        }
        let mut pending = self.outbox.lock();
        ready!(pending.poll_drain(cx))?;
        Pin::new(&mut pending.write).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pending = self.outbox.lock();
        ready!(pending.poll_drain(cx))?;
        Pin::new(&mut pending.write).poll_shutdown(cx)
    }
}

/// The bytes a connection has written and not yet sent, with the socket's write half.
struct Outbox {
    held: Mutex<Pending>,
}

struct Pending {
    write: OwnedWriteHalf,
    bytes: Vec<u8>,
    /// What broke the socket: every later write fails with it, so hyper ends the connection
    /// rather than answer into a socket that drops everything.
    broken: Option<io::ErrorKind>,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends what is held: `Pending` while the socket is full (the task is woken when it
    /// drains), an error once it is broken (what is held is dropped, and the connection's
    /// next write fails with the same error).
    fn drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().poll_drain(cx)
    }
}

impl Pending {
    fn broken(&self) -> io::Result<()> {
        self.broken.map_or(Ok(()), |kind| Err(kind.into()))
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.broken()?;
        let mut sent = 0;
        let result = loop {
            if sent == self.bytes.len() {
                break Poll::Ready(Ok(()));
            }
            // As `writev`, like hyper's and `h2`'s own writes (counted the same by the kernel).
            let rest = [io::IoSlice::new(&self.bytes[sent..])];
            match Pin::new(&mut self.write).poll_write_vectored(cx, &rest) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        match result {
            // A broken socket: what is held can never leave.
            Poll::Ready(Err(ref e)) => {
                self.broken = Some(e.kind());
                self.bytes = Vec::new();
            }
            _ => {
                self.bytes.drain(..sent);
            }
        }
        if self.bytes.is_empty() && self.bytes.capacity() > HELD_LIMIT {
            self.bytes = Vec::new();
        }
        result
    }
}

thread_local! {
    /// The connection whose task this thread is polling the connection of, if any: streams
    /// started there can be picked up by that task right after.
    static POLLING: Cell<*const InlineStreams> = const { Cell::new(std::ptr::null()) };
}

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
struct StreamExecutor(Arc<InlineStreams>);

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let streams = &self.0;
        let on_own_task = POLLING.get() == Arc::as_ptr(streams);
        if !on_own_task || streams.inline.load(Ordering::Relaxed) >= INLINE_STREAMS {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (far, _) = listener.accept().await.unwrap();
        (near, far)
    }

    /// Nothing arrives on `far` for a while.
    async fn nothing_arrives(far: &mut TcpStream) {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(50), far.read(&mut buf));
        assert!(read.await.is_err(), "bytes arrived before the drain");
    }

    async fn read_exactly(far: &mut TcpStream, expected: &[u8]) {
        let mut buf = vec![0u8; expected.len()];
        far.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, expected);
    }

    #[tokio::test]
    async fn the_owners_writes_and_flushes_wait_for_the_drain_and_other_writes_go_at_once() {
        let (near, mut far) = pair().await;
        let owner = Arc::new(InlineStreams::default());
        let (mut held, outbox) = Held::new(near, Arc::clone(&owner));

        POLLING.set(Arc::as_ptr(&owner));
        held.write_all(b"one ").await.unwrap();
        held.flush().await.unwrap();
        held.write_all(b"two ").await.unwrap();
        held.flush().await.unwrap();
        POLLING.set(std::ptr::null());
        nothing_arrives(&mut far).await;
        std::future::poll_fn(|cx| outbox.drain(cx)).await.unwrap();
        read_exactly(&mut far, b"one two ").await;

        // Outside the owner's poll (an upgraded connection's task): at once, after what is held.
        POLLING.set(Arc::as_ptr(&owner));
        held.write_all(b"held ").await.unwrap();
        POLLING.set(std::ptr::null());
        held.write_all(b"direct").await.unwrap();
        read_exactly(&mut far, b"held direct").await;

        // Past the limit a write goes through whoever makes it.
        let big: Vec<u8> = (0..HELD_LIMIT + 1).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            read_exactly(&mut far, &big).await;
            far
        });
        POLLING.set(Arc::as_ptr(&owner));
        let big: Vec<u8> = (0..HELD_LIMIT + 1).map(|i| (i % 251) as u8).collect();
        held.write_all(&big).await.unwrap();
        POLLING.set(std::ptr::null());
        // A socket that took only part of it leaves the rest held, under the limit.
        std::future::poll_fn(|cx| outbox.drain(cx)).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), reader);
        let _far = read.await.expect("all of it arrived").unwrap();
    }

    #[tokio::test]
    async fn a_broken_socket_fails_the_owners_later_writes() {
        let (near, far) = pair().await;
        let owner = Arc::new(InlineStreams::default());
        let (mut held, outbox) = Held::new(near, Arc::clone(&owner));
        drop(far);
        // The first writes to a closed peer may still be accepted; its reset breaks a later
        // one (bounded: 200 tries, 10 ms apart).
        let mut broke = false;
        for _ in 0..200 {
            POLLING.set(Arc::as_ptr(&owner));
            let wrote = held.write_all(b"into nothing").await;
            POLLING.set(std::ptr::null());
            if wrote.is_err() {
                broke = true;
                break;
            }
            if std::future::poll_fn(|cx| outbox.drain(cx)).await.is_err() {
                // What was held is dropped; the owner's next write and flush fail.
                POLLING.set(Arc::as_ptr(&owner));
                assert!(held.write_all(b"more").await.is_err());
                assert!(held.flush().await.is_err());
                POLLING.set(std::ptr::null());
                broke = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(broke, "writing to a closed peer never failed");
    }
}
