//! Connections to one instance: TCP connect with a timeout, the HTTP/1.1 handshake, and
//! stacks of idle keep-alive connections reused by later requests.
//!
//! A connection is not driven by a task of its own: its hyper [`http1::Connection`] travels
//! with its [`http1::SendRequest`] in a [`Conn`] and is polled by the request that uses it,
//! together with the response future and then the response body. Nothing is spawned per
//! connection, and a response costs no wake-up of another task and no hop between threads:
//! measured, this is most of what separates a proxied request from a direct one in user space.
//!
//! Connections belong to the worker thread that opened them (see [`set_worker`]): each worker
//! has its own idle stack per instance, so a connection is only ever polled by the runtime it
//! is registered with, and workers never contend for a lock. A stack sits behind a
//! `std::sync::Mutex` held only for one `Vec` push or pop, never across an `.await`;
//! uncontended that is two atomic operations.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::HOST;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::limits::Limits;
use crate::proxy::RequestBody;

thread_local! {
    /// The worker this thread serves as; 0 outside the gateway's own worker threads (tests,
    /// a multi-threaded runtime, where every thread shares stack 0 and its one I/O driver).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Declares the calling thread as worker `index` (0-based, below [`Limits::workers`]): the
/// connections it opens and reuses come from that worker's own idle stacks.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

fn worker() -> usize {
    WORKER.with(Cell::get)
}

type Connection = http1::Connection<TokioIo<TcpStream>, RequestBody>;

/// One HTTP/1.1 connection to an instance: the sending half and the connection state machine
/// that the request using it polls (see the module docs).
pub struct Conn {
    sender: http1::SendRequest<RequestBody>,
    /// `None` once the connection has ended (closed by either side, or failed). Boxed once per
    /// connection (hyper's state with its buffers is most of a kilobyte) so that a `Conn`, and
    /// the response body holding it, stay small to move.
    connection: Option<Box<Connection>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("open", &self.connection.is_some())
            .finish()
    }
}

impl Conn {
    /// Lets the connection make progress: write the request, read the response, feed the
    /// body. Registers `cx` for its socket; returns `Ready` once it has ended (and is dropped).
    pub fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(connection) = self.connection.as_mut() else {
            return Poll::Ready(());
        };
        match connection.poll_without_shutdown(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "instance connection ended with an error");
                }
                // Dropping the connection fails whatever it still held, so a request that was
                // never written comes back to its sender (see `Upstream::send`).
                self.connection = None;
                Poll::Ready(())
            }
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.connection.is_none() || self.sender.is_closed()
    }

    /// Waits until the connection can take a request; false when it ended meanwhile (an idle
    /// connection the instance closed).
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            loop {
                if self.connection.is_none() {
                    return Poll::Ready(false);
                }
                match self.sender.poll_ready(cx) {
                    Poll::Ready(Ok(())) => return Poll::Ready(true),
                    Poll::Ready(Err(_)) => return Poll::Ready(false),
                    Poll::Pending => {}
                }
                // hyper signals readiness from the connection's own poll: drive it.
                if self.drive(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    /// Sends `request` and drives the connection until the response head arrives.
    async fn exchange(
        &mut self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        let mut response = pin!(self.sender.try_send_request(request));
        poll_fn(|cx| {
            loop {
                if let Poll::Ready(result) = response.as_mut().poll(cx) {
                    return Poll::Ready(result);
                }
                // Once the connection has ended, hyper resolves the response future with the
                // error (or the unsent request) and wakes us through it.
                if self.connection.is_none() || self.drive(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        })
        .await
    }
}

/// Stale idle connections tried before opening a fresh one: a burst of connections closed by
/// the instance while idle should not cost the request more than a few cheap checks.
const MAX_IDLE_TRIES: usize = 4;

/// Where an instance listens: an address parsed once, or a name resolved at each connect
/// (so a DNS change, e.g. a Kubernetes Service, is followed by new connections).
#[derive(Debug, Clone)]
enum Target {
    Addr(SocketAddr),
    Name(String, u16),
}

/// The connections to one instance.
pub struct Upstream {
    target: Target,
    /// `host:port`, sent as `Host` when the client sent none (HTTP/1.0).
    authority: HeaderValue,
    connect_timeout: Duration,
    max_idle: usize,
    /// One stack of idle connections per worker thread (see the module docs).
    idle: Box<[Mutex<Vec<Conn>>]>,
    builder: http1::Builder,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("target", &self.target)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Upstream {
    /// Connections to `host:port`, none opened yet.
    ///
    /// # Errors
    /// `host:port` is not a valid `Host` header value.
    pub fn new(host: &str, port: u16, limits: &Limits) -> Result<Self, String> {
        let target = match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Target::Addr(SocketAddr::new(ip, port)),
            Err(_) => Target::Name(host.to_owned(), port),
        };
        let authority = HeaderValue::from_str(&format!("{host}:{port}"))
            .map_err(|_| format!("`{host}:{port}` is not a valid host"))?;
        // Instances are ours and trusted: hyper's default limits on response heads are kept.
        let builder = http1::Builder::new();
        Ok(Self {
            target,
            authority,
            connect_timeout: limits.connect_timeout,
            max_idle: limits.max_idle_per_instance,
            idle: (0..limits.workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            builder,
        })
    }

    /// Sends `request` on an idle connection, or on a fresh one when none is usable, and
    /// returns the response head with its connection, to be given back through
    /// [`Upstream::put_back`] once the response body has been read to its end. The caller
    /// keeps driving the connection ([`Conn::drive`]) while it reads the body.
    ///
    /// An idle connection the instance closed meanwhile is discarded and the request goes to
    /// the next one: hyper hands a request back when it was never written, so this costs the
    /// instance nothing and is not a retry.
    ///
    /// # Errors
    /// [`ProxyError::Connect`], [`ProxyError::ConnectTimeout`] and [`ProxyError::Handshake`]
    /// when no connection could be opened (the request never left); [`ProxyError::Reset`] and
    /// [`ProxyError::Protocol`] when it was written and no valid response head came back; body
    /// failures of the client as [`ProxyError::BodyTooLarge`] or [`ProxyError::ClientBody`].
    pub async fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Conn), ProxyError> {
        if !request.headers().contains_key(HOST) {
            request.headers_mut().insert(HOST, self.authority.clone());
        }
        for _ in 0..MAX_IDLE_TRIES {
            let Some(mut conn) = self.take_idle() else {
                break;
            };
            // A connection given back at the end of a body may need a turn to become ready
            // again; `false` means the instance closed it while it sat idle.
            if !conn.ready().await {
                continue;
            }
            match conn.exchange(request).await {
                Ok(response) => return Ok((response, conn)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(ProxyError::from_send(error.into_error())),
                },
            }
        }
        let mut conn = self.connect().await?;
        match conn.exchange(request).await {
            Ok(response) => Ok((response, conn)),
            Err(error) => Err(ProxyError::from_send(error.into_error())),
        }
    }

    /// Keeps a connection whose last response was read to its end for the next request of the
    /// same worker.
    pub fn put_back(&self, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.stack().lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// Closes every idle connection of every worker (shutdown, instance removed).
    pub fn close_idle(&self) {
        for stack in &self.idle {
            let drained =
                std::mem::take(&mut *stack.lock().unwrap_or_else(PoisonError::into_inner));
            // Dropping the connections outside the lock closes their sockets.
            drop(drained);
        }
    }

    /// Idle connections kept now, all workers together.
    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|stack| stack.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// The calling worker's idle stack.
    fn stack(&self) -> &Mutex<Vec<Conn>> {
        let index = worker() % self.idle.len();
        &self.idle[index]
    }

    /// The most recently used idle connection: the likeliest to be alive, and surplus
    /// connections age out at the bottom of the stack.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.stack().lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if !conn.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Opens a connection; the request that uses it drives it (nothing is spawned).
    async fn connect(&self) -> Result<Conn, ProxyError> {
        let connecting = async {
            match &self.target {
                Target::Addr(addr) => TcpStream::connect(addr).await,
                Target::Name(host, port) => TcpStream::connect((host.as_str(), *port)).await,
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| ProxyError::ConnectTimeout(self.connect_timeout))?
            .map_err(ProxyError::Connect)?;
        // Requests and responses are small and written whole: waiting to coalesce them
        // (Nagle) only adds latency.
        stream.set_nodelay(true).map_err(ProxyError::Connect)?;
        let (sender, connection) = self
            .builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ProxyError::Handshake)?;
        Ok(Conn {
            sender,
            connection: Some(Box::new(connection)),
        })
    }
}
