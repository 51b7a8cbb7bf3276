//! Connections to one instance: TCP connect with a timeout, the gateway's two clients, one
//! per protocol — HTTP/2 over cleartext ([`h2c`], the default: requests multiplexed as streams
//! on a few connections) and its own HTTP/1.1 client ([`h1`], with stacks of idle keep-alive
//! connections reused by later requests). The pool's `upstream_protocol` chooses; the rest of
//! this page is about HTTP/1.1.
//!
//! This module is the one way the gateway talks to an instance: proxied requests
//! ([`Upstream::send`]), WebSocket upgrades ([`Upstream::upgrade`]) and active health checks
//! ([`Upstream::probe`]) all go through [`Upstream`], with one header rewrite
//! (`proxy::headers`).
//!
//! The client is a plain socket and a read buffer, used by the request task itself: the
//! request head is written once into a byte buffer (which a retry sends again as it is), the
//! response head is parsed with `httparse`, and a response whose body is already in the read
//! buffer (the common small response) gives its connection back before the response is even
//! returned. No `HeaderMap` is built for the request. Measured, hyper's client machinery was
//! most of what separated a proxied request from a direct one in user space.
//!
//! A request sent alone (a `POST`, a streamed body, a pool with `pipeline_depth = 1`) is
//! driven by its own task: nothing is spawned and no channel sits between it and its
//! connection. Safe requests that arrive together are written as one batch on one connection
//! by a task of their own (`pipeline`), and each waits for its answer on a channel.
//!
//! Connections belong to the worker thread that opened them (see [`set_worker`]): each worker
//! has its own idle stack per instance, so a connection is only ever used by the runtime it is
//! registered with, and workers never contend for a lock. A stack sits behind a
//! `std::sync::Mutex` held only for one `Vec` push or pop, never across an `.await`;
//! uncontended that is two atomic operations.
//!
//! # Stale connections
//! An idle connection the instance closed is noticed before use when its close already
//! arrived (a read readiness check that costs no system call otherwise). When the close races
//! with the request (the write succeeds, then the connection ends before any response byte),
//! the request is sent again on a fresh connection, transparently (not a retry, another
//! instance is not involved), when its bytes are still at hand and it is idempotent or was
//! never written; otherwise it fails as [`ProxyError::Reset`] and the retry policy decides.
//!
//! # Upgrades and health checks
//! Both go on a fresh connection that never joins the idle stacks (`fresh`): after a `101`
//! the connection is the WebSocket tunnel, and a check must prove the instance accepts
//! connections. A `101` to an ordinary request is an invalid response. Upgrades always go over
//! HTTP/1.1 (HTTP/2 has no `Upgrade`); checks speak the pool's protocol.

mod fresh;
pub mod h1;
pub mod h2c;
mod pipeline;

pub use fresh::{Switched, Upgrade};

use std::borrow::Cow;
use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::UpstreamProtocol;
use crate::error::ProxyError;
use crate::limits::Limits;
use crate::metrics::BatchCounters;
use crate::proxy::RequestBody;
use h1::{BodyKind, BodyReader, Decoded, H1Error, RequestFraming};

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

/// The worker the calling thread serves as (see [`set_worker`]).
pub fn current_worker() -> usize {
    WORKER.with(Cell::get)
}

/// Read buffer reserved per read: a small response fits whole.
const READ_CHUNK: usize = 8 * 1024;

/// One HTTP/1.1 connection to an instance.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// Whether it carried an earlier request (a failure before any byte may be staleness).
    reused: bool,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            reused: false,
        }
    }

    /// Whether an idle connection still looks usable: nothing arrived on it since its last
    /// response (neither data nor the instance's close). Costs no system call unless the
    /// socket became readable.
    fn is_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// The whole body of the response whose head was just read, when it is empty or already
    /// in the buffer (taken out of it); `None` when it is still to be read.
    fn take_complete(&mut self, body: BodyKind) -> Option<Bytes> {
        match body {
            BodyKind::Empty => Some(Bytes::new()),
            BodyKind::Length(n) if n <= self.buf.len() as u64 => {
                // Whole in the buffer: `n` fits in `usize` since it is at most `len()`.
                Some(self.buf.split_to(usize::try_from(n).unwrap_or(0)).freeze())
            }
            BodyKind::Length(_) | BodyKind::Chunked | BodyKind::Close => None,
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Reads the response head, skipping `1xx` informational answers other than `101`.
    async fn read_head(&mut self, head_request: bool) -> Result<h1::ResponseHead, ReadFailure> {
        let mut received = false;
        loop {
            if !self.buf.is_empty() {
                received = true;
                match h1::parse_response_head(&mut self.buf, head_request) {
                    Ok(Some(head)) if head.status.is_informational() && head.status != 101 => {
                        continue;
                    }
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(error) => return Err(ReadFailure::Invalid(error)),
                }
            }
            match self.fill().await {
                Ok(0) if received => return Err(ReadFailure::Invalid(H1Error::Incomplete)),
                Ok(0) => {
                    return Err(ReadFailure::Nothing(io::Error::from(
                        io::ErrorKind::UnexpectedEof,
                    )));
                }
                Ok(_) => {}
                Err(error) if received => return Err(ReadFailure::Io(error)),
                Err(error) => return Err(ReadFailure::Nothing(error)),
            }
        }
    }
}

/// How reading a response head failed.
enum ReadFailure {
    /// The connection ended or failed before any byte of the response.
    Nothing(io::Error),
    /// It failed after part of the response.
    Io(io::Error),
    /// What came is not a valid response.
    Invalid(H1Error),
}

impl ReadFailure {
    /// The failure of a request that cannot be sent again on another connection.
    fn into_error(self) -> ProxyError {
        match self {
            Self::Nothing(error) => ProxyError::Reset(Box::new(error)),
            Self::Io(error) => ProxyError::Protocol(Box::new(error)),
            Self::Invalid(error) => ProxyError::Protocol(Box::new(error)),
        }
    }
}

/// A request ready for an instance: its head (and a buffered body) as bytes, written once and
/// sent again as they are by a retry, plus a body still to be streamed.
#[derive(Debug)]
pub struct Outgoing {
    /// Request line, headers, and a buffered body (HTTP/1.1; empty for h2c).
    bytes: Vec<u8>,
    /// The request for an h2c instance; `None` for HTTP/1.1.
    h2c: Option<h2c::Head>,
    /// A body streamed from the client after `bytes`; `None` once taken or when there is
    /// none.
    stream: Option<StreamBody>,
    /// How far the streamed body got: `bytes` can be sent again only while none of it was.
    progress: BodyProgress,
    /// Whether the client sent `Host` (when not, each instance's authority is added).
    has_host: bool,
    head_request: bool,
    /// Whether the request may be repeated (idempotent or keyed): a stale connection is then
    /// retried transparently even after the request was written.
    repeatable: bool,
    /// Whether it may share a connection with others in one batch ([`pipeline`]): a safe
    /// method (`GET`, `HEAD`, `OPTIONS`, `TRACE`), no streamed body, no upgrade.
    pipelinable: bool,
}

#[derive(Debug)]
struct StreamBody {
    body: Incoming,
    /// The length the client announced; `None`: chunked.
    declared: Option<u64>,
    /// The first piece, read before the instance was chosen, sent first.
    first: Option<Bytes>,
    chunked: bool,
    seen: u64,
    limit: u64,
    /// Longest wait for the client's next piece ([`crate::limits::Limits::body_timeout`]).
    idle: Duration,
}

/// Where the streaming of a request body stands: when the request's deadline passes, it says
/// whose failure that is (the client's while the gateway waits for its body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyProgress {
    /// Nothing streamed yet (or nothing to stream).
    NotStarted,
    /// Waiting for the client's next piece.
    ReadingClient,
    /// Writing a piece to the instance.
    WritingInstance,
    /// The whole body was sent: it cannot be sent again.
    Sent,
}

impl Outgoing {
    /// Writes the request for an instance: `head` rewritten (see [`h1::encode_request`]) with
    /// `client_ip` appended to `X-Forwarded-For`, `X-Forwarded-Proto` from `https`, and `body`. With `upgrade`, the `Upgrade`
    /// handshake headers are kept.
    pub fn new(
        head: &Parts,
        client_ip: &HeaderValue,
        https: bool,
        body: RequestBody,
        repeatable: bool,
        upgrade: bool,
    ) -> Self {
        // Origin-form; an absolute-form target (`GET http://host/path`) loses its authority.
        let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let (full, stream) = split_body(body);
        let framing = framing_of(full.as_ref(), stream.as_ref());
        let mut bytes =
            Vec::with_capacity(256 + head.headers.len() * 48 + full.as_ref().map_or(0, Bytes::len));
        let has_host = h1::encode_request(
            &mut bytes,
            &head.method,
            target,
            &head.headers,
            client_ip.as_bytes(),
            https,
            framing,
            upgrade,
        );
        if let Some(full) = full {
            bytes.extend_from_slice(&full);
        }
        let pipelinable = head.method.is_safe() && stream.is_none() && !upgrade;
        Self {
            bytes,
            h2c: None,
            stream,
            progress: BodyProgress::NotStarted,
            has_host,
            head_request: head.method == Method::HEAD,
            repeatable,
            pipelinable,
        }
    }

    /// Writes the request for an h2c instance (see [`h2c::Head::new`]): the same header rules
    /// as [`Outgoing::new`], as an HTTP/2 request. Never an upgrade.
    pub fn h2c(
        head: &Parts,
        client_ip: &HeaderValue,
        https: bool,
        body: RequestBody,
        repeatable: bool,
    ) -> Self {
        let (full, stream) = split_body(body);
        let framing = framing_of(full.as_ref(), stream.as_ref());
        Self {
            bytes: Vec::new(),
            h2c: Some(h2c::Head::new(head, client_ip, https, full, framing)),
            stream,
            progress: BodyProgress::NotStarted,
            has_host: true,
            head_request: head.method == Method::HEAD,
            repeatable,
            pipelinable: false,
        }
    }

    /// Whether the whole request is still at hand, so it can be sent again: its body was
    /// buffered (or there is none). A streamed body, once started, is gone.
    pub fn is_replayable(&self) -> bool {
        self.stream.is_none() && self.progress == BodyProgress::NotStarted
    }

    /// Whether the gateway is (or was, when the attempt was dropped) waiting for the client's
    /// next piece of body: a deadline passing then is the client's doing.
    pub fn awaits_client(&self) -> bool {
        self.progress == BodyProgress::ReadingClient
    }

    /// The request as written, for tests and logs.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// How a body read whole (`full`) or still to be streamed (`stream`) is framed.
fn framing_of(full: Option<&Bytes>, stream: Option<&StreamBody>) -> RequestFraming {
    match (full, stream) {
        (Some(bytes), _) => RequestFraming::Length(bytes.len() as u64),
        (None, Some(stream)) => stream
            .declared
            .map_or(RequestFraming::Chunked, RequestFraming::Length),
        (None, None) => RequestFraming::None,
    }
}

/// A body read whole, or one still to be streamed from the client.
fn split_body(body: RequestBody) -> (Option<Bytes>, Option<StreamBody>) {
    match body {
        RequestBody::Empty | RequestBody::Full(None) => (None, None),
        RequestBody::Full(Some(bytes)) => (Some(bytes), None),
        RequestBody::Stream {
            body,
            first,
            declared,
            seen,
            limit,
            idle,
        } => (
            None,
            Some(StreamBody {
                body,
                declared,
                first,
                chunked: declared.is_none(),
                seen,
                limit,
                idle,
            }),
        ),
    }
}

/// The response head from an instance, with its body.
#[derive(Debug)]
pub struct Exchange {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

/// A response body from an instance.
#[derive(Debug)]
pub enum Body {
    /// The whole body (possibly empty), read with the head; its connection is already back
    /// in the idle stack (or closed).
    Complete(Bytes),
    /// A body still arriving on its connection.
    Streaming(Streaming),
}

/// A response body still arriving from an instance.
#[derive(Debug)]
pub enum Streaming {
    /// On its HTTP/1.1 connection, which it holds until the end.
    H1(H1Streaming),
    /// On its HTTP/2 stream.
    H2(h2c::Streaming),
}

impl Streaming {
    /// The next piece of body; `None` at its end, after which [`Streaming::into_reusable`]
    /// gives an HTTP/1.1 connection back.
    ///
    /// # Errors
    /// The instance's framing errors and connection failures.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamError>>> {
        match self {
            Self::H1(h1) => h1.poll_data(cx),
            Self::H2(h2) => match h2.poll_data(cx) {
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(StreamError::H2(error)))),
                Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(data))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        match self {
            Self::H1(h1) => h1.is_done(),
            Self::H2(h2) => h2.is_done(),
        }
    }

    /// Bytes still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Self::H1(h1) => h1.remaining(),
            Self::H2(h2) => h2.remaining(),
        }
    }

    /// The HTTP/1.1 connection, when the body was read to its end and the instance keeps it
    /// alive; an HTTP/2 stream has nothing to give back.
    pub fn into_reusable(self) -> Option<Conn> {
        match self {
            Self::H1(h1) => h1.into_reusable(),
            Self::H2(_) => None,
        }
    }
}

/// A response body being read from its HTTP/1.1 connection.
#[derive(Debug)]
pub struct H1Streaming {
    conn: Conn,
    reader: BodyReader,
    keep_alive: bool,
    /// Body bytes already read off the connection, given out first.
    read: Option<Bytes>,
}

impl H1Streaming {
    /// The next piece of body; `None` at its end, after which [`H1Streaming::into_reusable`]
    /// gives the connection back.
    ///
    /// # Errors
    /// The instance's framing errors and connection failures.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, StreamError>>> {
        if let Some(read) = self.read.take() {
            return Poll::Ready(Some(Ok(read)));
        }
        loop {
            match self.reader.decode(&mut self.conn.buf) {
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(Decoded::Done) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(error) => return Poll::Ready(Some(Err(StreamError::Invalid(error)))),
            }
            match self.conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if let Err(error) = self.reader.eof() {
                        return Poll::Ready(Some(Err(StreamError::Invalid(error))));
                    }
                    self.keep_alive = false;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(StreamError::Io(error)))),
            }
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.read.is_none() && self.reader.is_done()
    }

    /// Bytes still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        let read = self.read.as_ref().map_or(0, |read| read.len() as u64);
        self.reader.remaining().map(|rest| rest + read)
    }

    /// The connection, when the body was read to its end and the instance keeps it alive.
    pub fn into_reusable(self) -> Option<Conn> {
        (self.reader.is_done() && self.keep_alive).then_some(self.conn)
    }
}

/// Why a response body stopped short.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading the instance's response body failed: {0}")]
    Io(#[source] io::Error),
    #[error("{0}")]
    Invalid(#[source] H1Error),
    #[error("the instance's response stream failed: {0}")]
    H2(#[source] h2::Error),
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
    shared: Arc<Shared>,
}

/// What an [`Upstream`] shares with its batches' tasks ([`pipeline`]).
struct Shared {
    target: Target,
    /// `host:port`, sent as `Host` when the client sent none (HTTP/1.0).
    authority: HeaderValue,
    connect_timeout: Duration,
    max_idle: usize,
    /// One stack of idle connections per worker thread (see the module docs).
    idle: Box<[Mutex<Vec<Conn>>]>,
    /// The batch each worker is filling, sent when its task runs ([`pipeline`]).
    open: Box<[Mutex<Option<pipeline::Batch>>]>,
    /// Bound on one batch's whole exchange (the requests' own deadline).
    request_timeout: Duration,
    /// Batches sent and the requests they carried.
    batches: BatchCounters,
    /// Each worker's h2c connections ([`h2c`]).
    h2: Box<[h2c::Conns]>,
    /// `host:port` as the `:authority` of requests without `Host`, and of health checks.
    h2_authority: http::uri::Authority,
    /// Whether the pool speaks h2c to the instance (health checks follow it).
    h2c: AtomicBool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("target", &self.shared.target)
            .field("idle", &self.idle_count())
            .finish()
    }
}

impl Upstream {
    /// Connections to `host:port`, none opened yet, counting pipelined batches in `batches`.
    ///
    /// # Errors
    /// `host:port` is not a valid `Host` header value.
    pub fn new(
        host: &str,
        port: u16,
        limits: &Limits,
        batches: BatchCounters,
    ) -> Result<Self, String> {
        let target = match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(ip) => Target::Addr(SocketAddr::new(ip, port)),
            Err(_) => Target::Name(host.to_owned(), port),
        };
        let authority = HeaderValue::from_str(&format!("{host}:{port}"))
            .map_err(|_| format!("`{host}:{port}` is not a valid host"))?;
        let h2_authority = http::uri::Authority::try_from(format!("{host}:{port}"))
            .map_err(|_| format!("`{host}:{port}` is not a valid host"))?;
        let workers = limits.workers.max(1);
        Ok(Self {
            shared: Arc::new(Shared {
                target,
                authority,
                connect_timeout: limits.connect_timeout,
                max_idle: limits.max_idle_per_instance,
                idle: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
                open: (0..workers).map(|_| Mutex::new(None)).collect(),
                request_timeout: limits.request_timeout,
                batches,
                h2: (0..workers).map(|_| h2c::Conns::default()).collect(),
                h2_authority,
                h2c: AtomicBool::new(false),
            }),
        })
    }

    /// Sends `request` and reads the response head. A request that may be pipelined (see
    /// `pipeline`) joins the batch this worker is filling for the instance, up to
    /// `pipeline_depth` requests (the pool's setting); any other request goes alone on an idle
    /// connection, or on a fresh one when none is usable. A body that arrived with the head
    /// is returned whole and its connection is already back in the idle stack; otherwise the
    /// caller reads the body ([`Body::Streaming`]) and hands the connection back with
    /// [`Upstream::put_back`].
    ///
    /// # Errors
    /// [`ProxyError::Connect`] and [`ProxyError::ConnectTimeout`] when no connection could be
    /// opened (the request never left); [`ProxyError::Reset`] when it was written and the
    /// connection ended before any response byte; [`ProxyError::Protocol`] for an invalid
    /// response; body failures of the client as [`ProxyError::BodyTooLarge`] or
    /// [`ProxyError::ClientBody`].
    pub async fn send(
        &self,
        request: &mut Outgoing,
        pipeline_depth: usize,
    ) -> Result<Exchange, ProxyError> {
        if request.h2c.is_some() {
            return self.shared.send_h2(request).await;
        }
        if request.pipelinable
            && pipeline_depth > 1
            && let Some(reply) = pipeline::join(&self.shared, request, pipeline_depth)
        {
            return pipeline::answer(reply).await;
        }
        self.shared.send(request).await
    }

    /// Keeps a connection whose last response was read to its end for the next request of the
    /// same worker.
    pub fn put_back(&self, conn: Conn) {
        self.shared.put_back(conn);
    }

    /// Closes every idle connection of every worker (shutdown, instance drained or removed);
    /// h2c connections close (with `GOAWAY`) once their streams have ended.
    pub fn close_idle(&self) {
        self.shared.close_idle();
        for conns in &self.shared.h2 {
            conns.close();
        }
    }

    /// Which protocol active health checks use: the pool's.
    pub fn set_protocol(&self, protocol: UpstreamProtocol) {
        self.shared
            .h2c
            .store(protocol == UpstreamProtocol::H2c, Ordering::Relaxed);
    }

    /// h2c connections held now, all workers together.
    pub fn h2c_connections(&self) -> usize {
        self.shared.h2.iter().map(h2c::Conns::count).sum()
    }

    /// Idle connections kept now, all workers together.
    pub fn idle_count(&self) -> usize {
        self.shared.idle_count()
    }
}

impl Shared {
    /// Sends `request` alone (see [`Upstream::send`]).
    async fn send(&self, request: &mut Outgoing) -> Result<Exchange, ProxyError> {
        let Outgoing {
            bytes,
            stream,
            progress,
            has_host,
            head_request,
            repeatable,
            pipelinable: _,
            h2c: _,
        } = request;
        let bytes = self.with_host(bytes, *has_host);
        let request = Attempt {
            bytes: &bytes,
            head_request: *head_request,
            repeatable: *repeatable,
        };
        for _ in 0..MAX_IDLE_TRIES {
            let Some(conn) = self.take_idle() else {
                break;
            };
            match self.exchange(conn, &request, stream, progress).await {
                Ok(exchange) => return Ok(exchange),
                Err(Failed::Stale) => {}
                Err(Failed::Error(error)) => return Err(error),
            }
        }
        let conn = self.connect().await?;
        match self.exchange(conn, &request, stream, progress).await {
            Ok(exchange) => Ok(exchange),
            Err(Failed::Error(error)) => Err(error),
            Err(Failed::Stale) => Err(ProxyError::Reset(Box::new(io::Error::from(
                io::ErrorKind::UnexpectedEof,
            )))),
        }
    }

    /// One request on `conn`: write, stream the body, read the head.
    async fn exchange(
        &self,
        mut conn: Conn,
        request: &Attempt<'_>,
        stream: &mut Option<StreamBody>,
        progress: &mut BodyProgress,
    ) -> Result<Exchange, Failed> {
        let reused = conn.reused;
        conn.reused = true;
        let streamed = stream.is_some();
        if let Err(error) = conn.stream.write_all(request.bytes).await {
            // Nothing of the request reached the instance's application.
            return Err(if reused {
                Failed::Stale
            } else {
                Failed::Error(ProxyError::Reset(Box::new(error)))
            });
        }
        if let Some(mut stream) = stream.take() {
            // Past this point the body is consumed: the request cannot be sent again.
            send_body(&mut conn, &mut stream, progress)
                .await
                .map_err(Failed::Error)?;
            *progress = BodyProgress::Sent;
        }
        let head = match conn.read_head(request.head_request).await {
            Ok(head) => head,
            Err(ReadFailure::Nothing(_)) if reused && request.repeatable && !streamed => {
                return Err(Failed::Stale);
            }
            Err(failure) => return Err(Failed::Error(failure.into_error())),
        };
        let h1::ResponseHead {
            status,
            headers,
            body,
            keep_alive,
        } = head;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // Upgrades go through `Upstream::upgrade`, on a connection of their own.
            return Err(Failed::Error(ProxyError::Protocol(
                "101 Switching Protocols to a request that asked for no upgrade".into(),
            )));
        }
        let body = match conn.take_complete(body) {
            Some(bytes) => {
                if keep_alive {
                    self.put_back(conn);
                }
                Body::Complete(bytes)
            }
            None => Body::Streaming(Streaming::H1(H1Streaming {
                conn,
                reader: BodyReader::new(body),
                keep_alive,
                read: None,
            })),
        };
        Ok(Exchange {
            status,
            headers,
            body,
        })
    }

    fn put_back(&self, conn: Conn) {
        if !conn.buf.is_empty() {
            // The instance sent more than the response: it cannot be trusted with another.
            return;
        }
        let mut idle = self.stack().lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    fn close_idle(&self) {
        for stack in &self.idle {
            let drained =
                std::mem::take(&mut *stack.lock().unwrap_or_else(PoisonError::into_inner));
            // Dropping the connections outside the lock closes their sockets.
            drop(drained);
        }
    }

    fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|stack| stack.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// The calling worker's idle stack.
    fn stack(&self) -> &Mutex<Vec<Conn>> {
        let index = current_worker() % self.idle.len();
        &self.idle[index]
    }

    /// The most recently used idle connection that still looks alive: the likeliest to be,
    /// and surplus connections age out at the bottom of the stack.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.stack().lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Opens a connection within the connect timeout.
    async fn connect(&self) -> Result<Conn, ProxyError> {
        tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_| ProxyError::ConnectTimeout(self.connect_timeout))?
    }

    /// Opens a connection, in the caller's time.
    async fn open(&self) -> Result<Conn, ProxyError> {
        let stream = match &self.target {
            Target::Addr(addr) => TcpStream::connect(addr).await,
            Target::Name(host, port) => TcpStream::connect((host.as_str(), *port)).await,
        }
        .map_err(ProxyError::Connect)?;
        // Requests and responses are small and written whole: waiting to coalesce them
        // (Nagle) only adds latency.
        stream.set_nodelay(true).map_err(ProxyError::Connect)?;
        Ok(Conn::new(stream))
    }

    /// The request head as sent: with the instance's authority as `Host` when the client sent
    /// none (HTTP/1.0).
    fn with_host<'a>(&self, bytes: &'a [u8], has_host: bool) -> Cow<'a, [u8]> {
        if has_host {
            Cow::Borrowed(bytes)
        } else {
            Cow::Owned(h1::insert_host(bytes, self.authority.as_bytes()))
        }
    }
}

/// What every attempt of one request sends.
struct Attempt<'a> {
    bytes: &'a [u8],
    head_request: bool,
    repeatable: bool,
}

/// Why one exchange on one connection failed.
enum Failed {
    /// The reused connection turned out closed before the request reached the instance (or,
    /// for a repeatable request, before any response byte): try a fresh one.
    Stale,
    Error(ProxyError),
}

/// Streams the client's body to the instance, chunked when its length is unknown, noting in
/// `progress` which side it waits for.
async fn send_body(
    conn: &mut Conn,
    stream: &mut StreamBody,
    progress: &mut BodyProgress,
) -> Result<(), ProxyError> {
    let mut framed = Vec::new();
    loop {
        let data = match stream.first.take() {
            Some(first) => first,
            None => {
                *progress = BodyProgress::ReadingClient;
                let frame = crate::proxy::next_frame(&mut stream.body, stream.idle).await?;
                match frame {
                    None => break,
                    Some(frame) => match frame.into_data() {
                        Ok(data) => data,
                        // Trailers of the client's chunked body are not forwarded.
                        Err(_) => continue,
                    },
                }
            }
        };
        *progress = BodyProgress::WritingInstance;
        stream.seen = stream.seen.saturating_add(data.len() as u64);
        if stream.seen > stream.limit {
            return Err(ProxyError::BodyTooLarge {
                limit: stream.limit,
            });
        }
        if data.is_empty() {
            continue;
        }
        let write = if stream.chunked {
            framed.clear();
            framed.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            framed.extend_from_slice(&data);
            framed.extend_from_slice(b"\r\n");
            conn.stream.write_all(&framed).await
        } else {
            conn.stream.write_all(&data).await
        };
        write.map_err(|e| ProxyError::Reset(Box::new(e)))?;
    }
    if stream.chunked {
        conn.stream
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(|e| ProxyError::Reset(Box::new(e)))?;
    }
    Ok(())
}
