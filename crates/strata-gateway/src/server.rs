//! Accept loops of the two listeners: connections (over TLS when configured) served by hyper
//! with the [`Limits`] in HTTP/1.1 or HTTP/2, whichever the client speaks (ALPN, the HTTP/2
//! preface, or an h2c upgrade: see [`crate::http2`]), a cap on open connections, upgrades
//! (WebSocket), and graceful shutdown.
//!
//! A TLS handshake happens in the connection's task, never in the accept loop, and must end
//! within [`Limits::header_read_timeout`]: a client that opens a connection and sends nothing
//! (or a byte a second) holds a slot for that long at most, like one that sends its head
//! slowly.
//!
//! As in mini-redis, each connection task owns a semaphore permit, so at most
//! `max_connections` are open and the accept loop waits (leaving clients in the kernel's
//! backlog) rather than run out of file descriptors. On shutdown the loop stops accepting and
//! closes its listening socket; once every worker's socket is closed, responses start carrying
//! `Connection: close` for a short grace, then hyper closes idle keep-alive connections and
//! lets each in-flight request finish (HTTP/2 connections get `GOAWAY` then, and their open
//! streams finish); whatever is still open after the drain bound is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, header};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use strata_core::Shutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::framing::{Verdicts, Watched};
use crate::h2c_upgrade::Upgrade as H2cUpgrade;
use crate::http2::{self, Rewind, Sniffed, Streams};
use crate::limits::Limits;
use crate::tls::{ALPN_H2, Tls};

/// Pause after a failed `accept` (out of file descriptors, mostly) before trying again, so the
/// loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long, after shutdown starts, busy keep-alive connections get to close themselves (their
/// next response says `Connection: close`) before idle ones are closed. A loaded client sends
/// its next request within milliseconds, so half a second lets every busy connection end
/// cleanly while an idle one delays shutdown by at most this much.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// The hyper HTTP/1.1 settings every client connection gets.
pub fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(limits.keep_alive)
        // hyper's floor for its read buffer is 8 KiB; `Limits` validation keeps us above it.
        .max_buf_size(limits.max_header_bytes)
        .max_header_size(limits.max_header_bytes);
    builder
}

/// Like [`serve`], with one worker per listener in `listeners` (one per [`Limits::workers`],
/// bound with `SO_REUSEPORT` so the kernel spreads new connections over them): each worker is
/// a thread with its own single-threaded runtime, accepting from its own listening socket and
/// serving its connections start to end, with its own idle connections to the instances
/// ([`crate::upstream::set_worker`]). When the calling task's runtime is single-threaded
/// (tests, an embedding program), it serves worker 0 itself. `max_connections` is shared out
/// between the workers. Returns when every worker has drained.
///
/// A worker's requests never leave its thread, so requests that arrive together are handled
/// in one turn of its event loop, one after the other, before the tasks they wake: that is
/// what lets them share a write to an instance ([`crate::upstream`]'s pipelining). (A
/// multi-threaded runtime runs a task it has just woken next, so each request would send
/// alone.)
///
/// (Duplicates of one listening socket would not do: every worker waits on the same queue,
/// and under load the one that wakes first takes nearly every connection.)
#[allow(clippy::too_many_arguments)]
pub async fn serve_on_workers<C, H, F, B>(
    name: &'static str,
    listeners: Vec<TcpListener>,
    limits: &Limits,
    drain: Duration,
    tls: Option<Arc<Tls>>,
    connect: C,
    shutdown: Shutdown,
) where
    C: Fn(SocketAddr) -> H + Send + Sync + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let workers = listeners.len();
    if workers == 0 {
        tracing::error!(listener = name, "no listening socket");
        return;
    }
    let inline = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread;
    let mut share = limits.clone();
    share.max_connections = (limits.max_connections / workers).max(1);
    let connect = Arc::new(connect);
    let mut listeners = listeners
        .into_iter()
        .zip(Listening::group(workers))
        .enumerate();
    let first = if inline { listeners.next() } else { None };
    let mut finished = Vec::with_capacity(workers);
    // A worker that cannot start drops its socket, so the kernel stops routing to it.
    for (index, (listener, listening)) in listeners {
        let worker = Worker {
            name,
            index,
            limits: share.clone(),
            drain,
            tls: tls.clone(),
            shutdown: shutdown.clone(),
        };
        if let Some(done) = worker.spawn(listener, listening, Arc::clone(&connect)) {
            finished.push(done);
        }
    }
    if let Some((_, (first, listening))) = first {
        let connect = move |peer| connect(peer);
        let listening = Some(listening);
        serve_listening(
            name, first, listening, &share, drain, tls, connect, shutdown,
        )
        .await;
        crate::proxy::tunnels_closed(share.drain_timeout).await;
    }
    for worker in finished {
        // An error only means the thread ended without reporting (it panicked): nothing to wait.
        let _ = worker.await;
    }
}

/// What a worker thread needs to serve its listener.
struct Worker {
    name: &'static str,
    index: usize,
    limits: Limits,
    drain: Duration,
    tls: Option<Arc<Tls>>,
    shutdown: Shutdown,
}

impl Worker {
    /// Starts the worker's thread and runtime; the receiver completes when it has drained.
    /// `None` when it cannot start (logged).
    fn spawn<C, H, F, B>(
        self,
        listener: TcpListener,
        listening: Listening,
        connect: Arc<C>,
    ) -> Option<tokio::sync::oneshot::Receiver<()>>
    where
        C: Fn(SocketAddr) -> H + Send + Sync + 'static,
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Worker {
            name,
            index,
            limits,
            drain,
            tls,
            shutdown,
        } = self;
        // A listener registered with this runtime cannot be polled by another: it moves to
        // the worker's runtime as a std socket.
        let own = match listener.into_std() {
            Ok(own) => own,
            Err(error) => {
                tracing::warn!(listener = name, index, %error, "cannot start worker");
                return None;
            }
        };
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("strata-gw-{index}"))
            .spawn(move || {
                crate::upstream::set_worker(index);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(async move {
                        match TcpListener::from_std(own) {
                            Ok(listener) => {
                                let connect = move |peer| connect(peer);
                                let listening = Some(listening);
                                serve_listening(
                                    name, listener, listening, &limits, drain, tls, connect,
                                    shutdown,
                                )
                                .await;
                                // Its WebSocket tunnels run on this runtime: they get their
                                // time before it ends.
                                crate::proxy::tunnels_closed(limits.drain_timeout).await;
                            }
                            Err(error) => {
                                tracing::warn!(listener = name, index, %error, "cannot start worker");
                            }
                        }
                    }),
                    Err(error) => {
                        tracing::warn!(listener = name, index, %error, "cannot start worker runtime");
                    }
                }
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => Some(finished),
            Err(error) => {
                tracing::warn!(listener = name, index, %error, "cannot start worker");
                None
            }
        }
    }
}

/// Serves `listener` until `shutdown` is cancelled, then drains for at most `drain`.
/// `connect` is called once per accepted connection with the client's address (per-connection
/// work such as rendering the address happens there) and returns the connection's request
/// handler.
pub async fn serve<C, H, F, B>(
    name: &'static str,
    listener: TcpListener,
    limits: &Limits,
    drain: Duration,
    tls: Option<Arc<Tls>>,
    connect: C,
    shutdown: Shutdown,
) where
    C: Fn(SocketAddr) -> H,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listening = Listening::group(1).pop();
    serve_listening(
        name, listener, listening, limits, drain, tls, connect, shutdown,
    )
    .await;
}

/// [`serve`], for one listener of a group bound to the same address ([`serve_on_workers`]):
/// draining starts once every listener of the group is closed (or after [`CLOSE_GRACE`]).
#[allow(clippy::too_many_arguments)]
async fn serve_listening<C, H, F, B>(
    name: &'static str,
    listener: TcpListener,
    listening: Option<Listening>,
    limits: &Limits,
    drain: Duration,
    tls: Option<Arc<Tls>>,
    connect: C,
    shutdown: Shutdown,
) where
    C: Fn(SocketAddr) -> H,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let front = Arc::new(Front {
        http1: http1_builder(limits),
        http2: http2::builder(limits),
        first_bytes_timeout: limits.header_read_timeout,
        max_head: limits.max_header_bytes,
        h2_idle: limits.h2_idle_timeout,
        h2_max_resets: limits.h2_max_reset_streams,
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Every open connection holds a slot: the open ones are those not available.
    let open = || {
        limits
            .max_connections
            .saturating_sub(slots.available_permits())
    };
    // Cancelled when the close grace ends: idle connections close, busy ones after their
    // response (hyper's graceful shutdown of each connection).
    let closing = Shutdown::new();
    // Cancelled only when the drain bound passes, to drop connections still open then.
    let abort = Shutdown::new();
    // Set once shutdown starts: every response then carries `Connection: close`.
    let draining = Arc::new(AtomicBool::new(false));
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = name, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(listener = name, %error, "cannot disable Nagle");
        }
        let client = Client {
            name,
            peer,
            handler: Arc::new(connect(peer)),
            front: Arc::clone(&front),
            draining: Arc::clone(&draining),
            closing: closing.clone(),
            abort: abort.clone(),
        };
        let acceptor = tls.as_ref().map(|tls| tls.acceptor());
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = acceptor else {
                client.serve(stream, false, false).await;
                return;
            };
            let handshake = tokio::select! {
                biased;
                () = client.abort.cancelled() => return,
                handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)) => handshake,
            };
            match handshake {
                Ok(Ok(stream)) => {
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(ALPN_H2);
                    client.serve(stream, true, h2).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::debug!(listener = name, %peer, timeout = ?handshake_timeout, "TLS handshake timed out");
                }
            }
        });
    }
    drop(listener);
    // Draining sends busy clients to reconnect (`Connection: close`): while another worker's
    // listener is still open, they would land in its accept queue, and its closing would reset
    // them with their request written. So no worker drains before every listener is closed.
    if let Some(listening) = listening {
        listening.close().all_closed(CLOSE_GRACE.min(drain)).await;
    }
    draining.store(true, Ordering::Relaxed);
    tracing::info!(
        listener = name,
        open = open(),
        "stopped accepting; draining connections"
    );
    // A keep-alive connection that looks idle may already carry the client's next request,
    // unread in the socket: closing it now would fail that request. During the close grace,
    // busy connections close themselves after their next response (`Connection: close`); only
    // the ones still open after it are closed as idle.
    let grace_end = tokio::time::Instant::now() + CLOSE_GRACE.min(drain);
    while open() > 0 && tokio::time::Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    closing.cancel();
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            ?drain,
            "connections still open after the drain bound; closing them"
        );
        abort.cancel();
    }
}

/// One open listener of a group bound to the same address; dropping or closing it counts it
/// closed, whatever path its worker took (one that fails to start drops it at once).
struct Listening {
    group: Arc<ListenerGroup>,
}

#[derive(Debug)]
struct ListenerGroup {
    open: std::sync::atomic::AtomicUsize,
    closed: tokio::sync::Notify,
}

impl Listening {
    /// `n` listeners of one group, all open.
    fn group(n: usize) -> Vec<Listening> {
        let group = Arc::new(ListenerGroup {
            open: std::sync::atomic::AtomicUsize::new(n),
            closed: tokio::sync::Notify::new(),
        });
        (0..n)
            .map(|_| Listening {
                group: Arc::clone(&group),
            })
            .collect()
    }

    /// Counts this listener closed; the group, to wait for the others.
    fn close(self) -> Arc<ListenerGroup> {
        Arc::clone(&self.group)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if self.group.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.group.closed.notify_waiters();
        }
    }
}

impl ListenerGroup {
    /// Returns once every listener of the group is closed, or after `bound`.
    async fn all_closed(&self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let notified = self.closed.notified();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

/// The protocol settings every connection of a listener shares.
struct Front {
    http1: http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// Time a new connection has to send its first bytes ([`Limits::header_read_timeout`]).
    first_bytes_timeout: Duration,
    max_head: usize,
    h2_idle: Duration,
    h2_max_resets: u32,
}

/// One accepted client connection, before its protocol is known.
struct Client<H> {
    name: &'static str,
    peer: SocketAddr,
    handler: Arc<H>,
    front: Arc<Front>,
    /// Set once shutdown starts: HTTP/1.1 responses then carry `Connection: close`.
    draining: Arc<AtomicBool>,
    closing: Shutdown,
    abort: Shutdown,
}

impl<H, F, B> Client<H>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Serves the connection in the protocol it speaks: HTTP/2 when ALPN chose it (`h2`) or
    /// its first bytes are the HTTP/2 preface, HTTP/1.1 otherwise (which may upgrade to h2c
    /// when not over `tls`).
    async fn serve<I>(self, mut io: I, tls: bool, h2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if h2 {
            self.serve_h2(Rewind::new(io, Bytes::new())).await;
            return;
        }
        let mut first = BytesMut::new();
        let sniffed = tokio::select! {
            biased;
            () = self.abort.cancelled() => return,
            sniffed = tokio::time::timeout(
                self.front.first_bytes_timeout,
                http2::sniff(&mut io, &mut first),
            ) => sniffed,
        };
        let (name, peer) = (self.name, self.peer);
        match sniffed {
            Ok(Ok(Sniffed::Http2)) => self.serve_h2(Rewind::new(io, first.freeze())).await,
            Ok(Ok(Sniffed::Http1)) => self.serve_h1(Rewind::new(io, first.freeze()), tls).await,
            Ok(Ok(Sniffed::Closed)) => {}
            Ok(Err(error)) => {
                tracing::debug!(listener = name, %peer, %error, "client connection failed");
            }
            Err(_) => {
                tracing::debug!(listener = name, %peer, "client connection sent nothing in time");
            }
        }
    }

    /// Serves an HTTP/1.1 connection until it ends, is upgraded (a WebSocket's bytes then
    /// belong to its tunnel; an h2c upgrade continues as HTTP/2 here), closes gracefully after
    /// `closing`, or is dropped at `abort`.
    async fn serve_h1<I>(self, io: I, tls: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let verdicts = Arc::new(Verdicts::default());
        let io = Watched::new(io, self.front.max_head, Arc::clone(&verdicts));
        let upgrading: Arc<Mutex<Option<(OnUpgrade, H2cUpgrade)>>> = Arc::default();
        let (handler, draining, slot) = (
            Arc::clone(&self.handler),
            Arc::clone(&self.draining),
            Arc::clone(&upgrading),
        );
        let service = service_fn(move |mut request: Request<Incoming>| {
            // The watcher judged this request's head as it was read (see `framing`).
            let refused = verdicts.next();
            let draining = Arc::clone(&draining);
            let upgrade = (refused.is_none() && !draining.load(Ordering::Relaxed))
                .then(|| H2cUpgrade::accept(&request, tls))
                .flatten();
            let response = match upgrade {
                Some(upgrade) => {
                    let on = hyper::upgrade::on(&mut request);
                    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some((on, upgrade));
                    None
                }
                None => {
                    H2cUpgrade::decline(&mut request);
                    if let Some(refused) = refused {
                        request.extensions_mut().insert(refused);
                    }
                    Some(handler(request))
                }
            };
            async move {
                let Some(response) = response else {
                    return Ok::<_, Infallible>(H2cUpgrade::switching(Either::Right(Empty::new())));
                };
                let mut response = response.await.map(Either::Left);
                if draining.load(Ordering::Relaxed) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok(response)
            }
        });
        let (name, peer) = (self.name, self.peer);
        let connection = self
            .front
            .http1
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let served = tokio::select! {
            biased;
            served = connection.as_mut() => served,
            () = self.abort.cancelled() => return,
            () = self.closing.cancelled() => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    biased;
                    served = connection.as_mut() => served,
                    () = self.abort.cancelled() => return,
                }
            }
        };
        if let Err(error) = served {
            tracing::debug!(listener = name, %peer, %error, "client connection ended with an error");
        }
        let upgrade = upgrading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some((on, upgrade)) = upgrade else {
            return;
        };
        let upgraded = tokio::select! {
            biased;
            () = self.abort.cancelled() => return,
            upgraded = on => upgraded,
        };
        match upgraded {
            Ok(upgraded) => self.serve_h2(upgrade.splice(TokioIo::new(upgraded))).await,
            Err(error) => {
                tracing::debug!(listener = name, %peer, %error, "h2c upgrade failed");
            }
        }
    }

    /// Serves an HTTP/2 connection (see [`http2::serve_connection`]).
    async fn serve_h2<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let streams = Streams::new(self.front.h2_max_resets);
        let (handler, watch) = (Arc::clone(&self.handler), Arc::clone(&streams));
        let service = service_fn(move |mut request: Request<Incoming>| {
            let open = watch.open();
            if request.method() == http::Method::CONNECT {
                let streams = http2::ConnectionStreams(Arc::clone(&watch));
                request.extensions_mut().insert(streams);
            }
            let response = handler(request);
            async move {
                let response = response.await;
                open.done();
                Ok::<_, Infallible>(response)
            }
        });
        http2::serve_connection(
            self.name,
            self.peer,
            &self.front.http2,
            io,
            service,
            &streams,
            self.front.h2_idle,
            &self.closing,
            &self.abort,
        )
        .await;
    }
}
