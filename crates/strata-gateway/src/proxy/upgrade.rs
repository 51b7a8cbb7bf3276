//! HTTP/1.1 upgrades (WebSocket): the request is routed like any other (chat's consistent
//! hash on `room` pins a room to one instance), written by the gateway's own client with its
//! `Upgrade` header kept and `Connection: upgrade` (see [`crate::upstream::h1`]) on a fresh
//! connection ([`crate::upstream::Upstream::upgrade`]), and when the instance answers `101
//! Switching Protocols` the client's connection is taken over from hyper and bytes are copied
//! both ways until both sides have closed.
//!
//! - The instance's connection is never pooled: after a 101 it is the tunnel.
//! - The tunnel counts as a request in flight on the instance for its whole life, so
//!   `least_connections`, bounded load and draining see it.
//! - It closes when idle (no byte either way) for [`Limits::websocket_idle_timeout`], and when
//!   its instance drains, [`Limits::drain_timeout`] after the drain began. When the gateway
//!   shuts down, it stays until either side closes it, for at most [`Limits::drain_timeout`].
//! - A side that closes, even with a reset, has what it sent passed on before the other side
//!   sees EOF, and input left unread is drained rather than reset (see [`relay`]): close
//!   frames are not lost on the way.
//! - Any answer other than 101 goes back to the client as an ordinary response.
//!
//! # WebSocket over HTTP/2 (RFC 8441)
//! The public listener's HTTP/2 connections allow the extended `CONNECT` (they send
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`), which browsers use for a WebSocket when they already
//! hold an HTTP/2 connection to the origin. Such a request (`CONNECT` with `:protocol
//! websocket`) is turned into the HTTP/1.1 handshake before anything else reads it
//! ([`from_extended_connect`]): `GET`, `Upgrade: websocket`, `Connection: upgrade` and a fresh
//! `Sec-WebSocket-Key` (the client sends none over HTTP/2), its other headers kept. It is then
//! validated, routed, limited and forwarded like an HTTP/1.1 handshake, to an instance over
//! HTTP/1.1 whatever the pool's protocol; the instance's 101 becomes a `200` on the client's
//! stream (its headers, the negotiated subprotocol and extensions among them, without those of
//! the HTTP/1.1 handshake), and the stream carries the WebSocket's bytes from then on. A `2xx`
//! without the switch would open a tunnel to nothing: the client gets 502. While the tunnel
//! lasts, its stream counts as served, so the client's connection is not idle.
//!
//! [`Limits::websocket_idle_timeout`]: crate::limits::Limits::websocket_idle_timeout
//! [`Limits::drain_timeout`]: crate::limits::Limits::drain_timeout

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::task::TaskTracker;

use super::{ClientInfo, Lease, Outcome, Proxy, RequestBody, ResponseBody};
use crate::error::{ProxyError, RetrySafety};
use crate::http2::{ConnectionStreams, Open};
use crate::membership::{Instance, Pool};
use crate::upstream::{Body as UpstreamBody, Outgoing, Switched, Upgrade};

/// Largest body of a non-101 answer to an upgrade request that is passed on.
const REFUSAL_BYTES: usize = 64 * 1024;

/// When `head` asks to switch protocols (`Connection: upgrade` and an `Upgrade` header) on a
/// connection that can (hyper left the upgrade handle in its extensions): that handle, which
/// yields the client's connection once the 101 has been sent.
pub(super) fn take(head: &mut Parts) -> Option<OnUpgrade> {
    if wants_upgrade(&head.headers) {
        head.extensions.remove::<OnUpgrade>()
    } else {
        None
    }
}

/// Marks a handshake that came as an HTTP/2 extended `CONNECT` ([`from_extended_connect`]):
/// its client is answered `200`, not `101`.
#[derive(Debug, Clone, Copy)]
struct OverHttp2;

/// When `head` is an HTTP/2 extended `CONNECT` for a WebSocket (RFC 8441 §4: `CONNECT` with
/// `:protocol websocket`), turns it into the HTTP/1.1 handshake the instance expects (see the
/// module docs) and returns true. Any other request is left as it is.
pub(super) fn from_extended_connect(head: &mut Parts) -> bool {
    let websocket = head.method == Method::CONNECT
        && head.version == Version::HTTP_2
        && head
            .extensions
            .get::<hyper::ext::Protocol>()
            .is_some_and(|protocol| protocol.as_str().eq_ignore_ascii_case("websocket"));
    if !websocket {
        return false;
    }
    head.method = Method::GET;
    head.headers
        .insert(UPGRADE, HeaderValue::from_static("websocket"));
    head.headers
        .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    head.headers.insert(SEC_WEBSOCKET_KEY, handshake_key());
    head.extensions.insert(OverHttp2);
    true
}

/// A `Sec-WebSocket-Key`: 16 unpredictable bytes in base64 (RFC 6455 §4.1), from std's
/// randomly keyed SipHash over a counter (a key only has to differ from handshake to
/// handshake and not be guessable by an intermediary).
fn handshake_key() -> HeaderValue {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = std::collections::hash_map::RandomState::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut nonce = [0u8; 16];
    for (half, bytes) in nonce.chunks_mut(8).enumerate() {
        let mut hasher = state.build_hasher();
        hasher.write_u64(n);
        hasher.write_usize(half);
        bytes.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    // Base64 is ASCII: always a valid header value.
    HeaderValue::from_str(&base64(&nonce)).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The headers of the instance's 101 that an HTTP/2 client's `200` carries: all but those of
/// the HTTP/1.1 handshake (`Sec-WebSocket-Accept`, RFC 8441 §5) and of its connection
/// (`Upgrade`, `Connection` and what it names, `Content-Length`); the negotiated subprotocol
/// and extensions stay.
fn for_http2_client(headers: &HeaderMap) -> HeaderMap {
    let named = super::headers::connection_tokens(headers);
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if name != SEC_WEBSOCKET_ACCEPT
            && name != CONTENT_LENGTH
            && super::headers::forwards(name, &named, false)
        {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// `Connection: upgrade` and an `Upgrade` header.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_has_upgrade(headers)
}

fn connection_has_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        })
    })
}

impl Proxy {
    /// Forwards an upgrade request to an instance of `pool` and, on a 101, starts the tunnel.
    /// A failed connect is tried once more on the next instance (nothing was sent).
    pub(super) async fn forward_upgrade(
        &self,
        pool: &Pool,
        client: &ClientInfo,
        head: Parts,
        on_client: OnUpgrade,
        started: Instant,
    ) -> Result<Outcome, (ProxyError, Option<Arc<Instance>>)> {
        if pool.instances().is_empty() {
            let pool = pool.name().into();
            return Err((ProxyError::NoInstance { pool }, None));
        }
        let deadline = tokio::time::Instant::from_std(started + self.limits.request_timeout);
        let over_h2 = head.extensions.get::<OverHttp2>().is_some();
        // The client's body, if any, is not forwarded: a handshake carries none.
        let request = Outgoing::new(
            &head,
            &client.forwarded_for,
            client.is_https(),
            RequestBody::Empty,
            false,
            true,
        );
        let affinity = pool.affinity(&head.headers, &head.uri, client.ip);
        let first = Arc::clone(pool.pick(affinity).map_err(|e| (e, None))?);
        let (instance, lease, answer) = match self.upgrade_on(&first, &request, deadline).await {
            Err(error) if error.retry_safety() == RetrySafety::NotSent => {
                let Some(next) = pool.next_after(&first, affinity).cloned() else {
                    return Err((error, Some(first)));
                };
                match self.upgrade_on(&next, &request, deadline).await {
                    Ok((lease, answer)) => (next, lease, answer),
                    Err(error) => return Err((error, Some(next))),
                }
            }
            Err(error) => return Err((error, Some(first))),
            Ok((lease, answer)) => (first, lease, answer),
        };
        let switched = match answer {
            Upgrade::Switched(switched) => {
                instance.health().record_success();
                switched
            }
            Upgrade::Refused(refusal) => {
                if refusal.status.is_server_error() {
                    instance.health().record_failure();
                } else {
                    instance.health().record_success();
                }
                // Over HTTP/2 a 2xx would open the client's tunnel on a connection that did
                // not switch.
                if over_h2 && refusal.status.is_success() {
                    let error = ProxyError::Protocol(
                        format!("{} to a WebSocket handshake, not 101", refusal.status).into(),
                    );
                    return Err((error, Some(instance)));
                }
                // A refusal (400, 401, 404, 426…): small, read whole, then the connection
                // closes.
                let bytes =
                    match tokio::time::timeout_at(deadline, read_refusal(refusal.body)).await {
                        Ok(bytes) => bytes,
                        Err(_) => {
                            let error = ProxyError::Timeout(self.limits.request_timeout);
                            return Err((error, Some(instance)));
                        }
                    };
                drop(lease);
                let mut response = Response::new(ResponseBody::full(bytes));
                *response.status_mut() = refusal.status;
                *response.headers_mut() = refusal.headers;
                response.headers_mut().remove(http::header::CONTENT_LENGTH);
                // The client's connection closes too: the framing watcher stopped at the
                // upgrade request (`crate::framing`), so no request after it may be read.
                // (Over HTTP/2 only the stream ends.)
                if !over_h2 {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                return Ok(Outcome {
                    response,
                    served_by: Some(Arc::clone(&instance)),
                    tried: Some(instance),
                });
            }
        };
        let mut switching = Response::new(ResponseBody::Full(None));
        let Switched {
            headers,
            stream,
            early,
        } = switched;
        if over_h2 {
            *switching.headers_mut() = for_http2_client(&headers);
        } else {
            // The instance's 101 as it is: Upgrade, Connection, Sec-WebSocket-Accept and the
            // negotiated protocol and extensions.
            *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *switching.headers_mut() = headers;
        }
        let tunnel = Tunnel {
            instance: Arc::clone(&instance),
            pool: pool.name().into(),
            lease,
            idle: self.limits.websocket_idle_timeout,
            stream: head
                .extensions
                .get::<ConnectionStreams>()
                .map(|streams| streams.0.open()),
        };
        TUNNELS.with(|tunnels| tunnels.spawn(tunnel.run(on_client, stream, early)));
        Ok(Outcome {
            response: switching,
            served_by: Some(Arc::clone(&instance)),
            tried: Some(instance),
        })
    }

    /// Sends the upgrade `request` to `instance`, counted in its in-flight requests from the
    /// start. A failure is counted against the instance.
    async fn upgrade_on(
        &self,
        instance: &Arc<Instance>,
        request: &Outgoing,
        deadline: tokio::time::Instant,
    ) -> Result<(Lease, Upgrade), ProxyError> {
        let lease = Lease::new(Arc::clone(instance));
        let sent = tokio::time::timeout_at(deadline, instance.upstream().upgrade(request)).await;
        let error = match sent {
            Ok(Ok(answer)) => return Ok((lease, answer)),
            Ok(Err(error)) => error,
            Err(_) => ProxyError::Timeout(self.limits.request_timeout),
        };
        if let Some(kind) = error.upstream_kind() {
            instance.metrics().upstream_error(kind);
            instance.health().record_failure();
        }
        Err(error)
    }
}

/// The body of a refused upgrade, at most [`REFUSAL_BYTES`]; too large or cut short, it is
/// dropped: the status says enough.
async fn read_refusal(body: UpstreamBody) -> Bytes {
    let mut streaming = match body {
        UpstreamBody::Complete(bytes) if bytes.len() <= REFUSAL_BYTES => return bytes,
        UpstreamBody::Complete(_) => {
            tracing::debug!("refusal of an upgrade: body dropped (too large)");
            return Bytes::new();
        }
        UpstreamBody::Streaming(streaming) => streaming,
    };
    let mut whole = BytesMut::new();
    while let Some(data) = poll_fn(|cx| streaming.poll_data(cx)).await {
        match data {
            Ok(data) if whole.len() + data.len() <= REFUSAL_BYTES => whole.extend_from_slice(&data),
            Ok(_) => {
                tracing::debug!("refusal of an upgrade: body dropped (too large)");
                return Bytes::new();
            }
            Err(error) => {
                tracing::debug!(%error, "refusal of an upgrade: body dropped");
                return Bytes::new();
            }
        }
    }
    whole.freeze()
}

thread_local! {
    /// The tunnels running on this thread. A tunnel outlives the client connection it came
    /// from (hyper hands the socket over), and a gateway worker's runtime is its thread's
    /// own: the worker waits for these ([`tunnels_closed`]) before its runtime ends, which
    /// would drop them.
    static TUNNELS: TaskTracker = TaskTracker::new();
}

/// Waits, for at most `bound`, until the tunnels of the calling thread have closed: a
/// gateway that shuts down keeps its WebSockets until the instances behind them close them
/// (a draining chat instance sends "reconnect" first), and its clients get their close frames.
pub(crate) async fn tunnels_closed(bound: Duration) {
    let tunnels = TUNNELS.with(TaskTracker::clone);
    tunnels.close();
    if tokio::time::timeout(bound, tunnels.wait()).await.is_err() {
        tracing::warn!(
            open = tunnels.len(),
            ?bound,
            "WebSocket tunnels still open after the drain timeout; closing them"
        );
    }
    tunnels.reopen();
}

/// An accepted upgrade, waiting for the client's connection to be handed over.
struct Tunnel {
    instance: Arc<Instance>,
    pool: Arc<str>,
    /// Keeps the tunnel counted in the instance's in-flight requests until it closes.
    lease: Lease,
    idle: Duration,
    /// Over HTTP/2: keeps the tunnel's stream counted as served on the client's connection.
    stream: Option<Open>,
}

impl Tunnel {
    /// Relays bytes between the client and the instance's connection (`upstream`, which
    /// already delivered `early`) until either side closes, the tunnel idles or the instance
    /// drains.
    async fn run(self, on_client: OnUpgrade, upstream: tokio::net::TcpStream, early: Bytes) {
        let client = match on_client.await {
            Ok(client) => client,
            Err(error) => {
                tracing::debug!(%error, pool = %self.pool, instance = self.instance.address(), "upgrade not completed");
                if let Some(stream) = self.stream {
                    stream.done();
                }
                return;
            }
        };
        let metrics = self.instance.metrics();
        metrics.websockets.inc();
        metrics.websockets_open.inc();
        let activity = Arc::new(Activity::default());
        let mut client = Watched::new(TokioIo::new(client), &activity);
        let mut upstream = Watched::new(upstream, &activity);
        let delivered = if early.is_empty() {
            Ok(())
        } else {
            activity.touch();
            client.write_all(&early).await
        };
        let closing = self.instance.tunnels_closing().clone();
        let opened = Instant::now();
        let relay = async {
            if let Err(error) = delivered {
                tracing::debug!(%error, "WebSocket tunnel failed");
                return "failed";
            }
            relay(&mut client, &mut upstream).await
        };
        let why = tokio::select! {
            why = relay => why,
            () = activity.idle_for(self.idle) => "idle",
            () = closing.cancelled() => "drained",
        };
        metrics.websockets_open.dec();
        tracing::debug!(
            pool = %self.pool,
            instance = self.instance.address(),
            why,
            duration_ms = opened.elapsed().as_secs_f64() * 1000.0,
            "WebSocket tunnel ended"
        );
        drop(self.lease);
        if let Some(stream) = self.stream {
            stream.done();
        }
    }
}

/// How long the other side of a tunnel may take to close once one side has closed (its
/// bytes still pass meanwhile): a WebSocket peer answers a close frame within a round trip.
const LINGER: Duration = Duration::from_secs(2);
/// The most bytes passed (or dropped) after one side has closed: frames in flight when the
/// close went out, not a stream.
const LINGER_BYTES: u64 = 1024 * 1024;
/// Buffer of one direction of a tunnel.
const RELAY_BUF: usize = 8 * 1024;

/// Copies bytes both ways between `client` and `upstream` until both sides have closed.
///
/// Unlike `tokio::io::copy_bidirectional`, an error on one side does not end the tunnel at
/// once. A side that ends (EOF, or a reset after its close frame, as from an instance that
/// closed with input unread) gets the other side's write half shut down after everything it
/// sent was passed on: its close frame arrives, then EOF. A side that cannot be written any
/// more has what the other side still sends read and dropped. Dropping a socket with unread
/// input would make the kernel reset the connection, destroying the close frame on its way.
/// Once one side has closed, the other gets [`LINGER`] and [`LINGER_BYTES`] to close too.
async fn relay<C, U>(client: &mut C, upstream: &mut U) -> &'static str
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = Half::new();
    let mut down = Half::new();
    std::future::poll_fn(|cx| {
        let up_done = up.poll(cx, client, upstream).is_ready();
        let down_done = down.poll(cx, upstream, client).is_ready();
        if up_done || down_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    let passed = up.moved + down.moved;
    let rest = std::future::poll_fn(|cx| {
        let up_done = up.poll(cx, client, upstream).is_ready();
        let down_done = down.poll(cx, upstream, client).is_ready();
        if up_done && down_done {
            Poll::Ready("closed")
        } else if up.moved + down.moved - passed > LINGER_BYTES {
            Poll::Ready("cut")
        } else {
            Poll::Pending
        }
    });
    tokio::time::timeout(LINGER, rest).await.unwrap_or("cut")
}

/// What one direction of a tunnel does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Passing bytes on.
    Open,
    /// The reading side ended: the writing side is being shut down.
    Ending,
    /// The writing side is gone: what is read is dropped until the reading side ends.
    Dropping,
    /// Both sides of this direction are finished.
    Done,
}

/// One direction of a tunnel: bytes read from one side and written to the other.
struct Half {
    buf: Box<[u8]>,
    /// The bytes read and not yet written: `buf[start..end]`.
    start: usize,
    end: usize,
    /// Written since the last flush.
    unflushed: bool,
    /// Bytes read so far.
    moved: u64,
    flow: Flow,
}

impl Half {
    fn new() -> Self {
        Self {
            buf: vec![0; RELAY_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            unflushed: false,
            moved: 0,
            flow: Flow::Open,
        }
    }

    /// Moves bytes from `from` to `to`; ready once this direction is done.
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, from: &mut R, to: &mut W) -> Poll<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match self.flow {
                Flow::Done => return Poll::Ready(()),
                Flow::Ending => {
                    // An error here means the peer is gone already: done either way.
                    let _ = ready!(Pin::new(&mut *to).poll_shutdown(cx));
                    self.flow = Flow::Done;
                }
                Flow::Open if self.start < self.end => {
                    match Pin::new(&mut *to).poll_write(cx, &self.buf[self.start..self.end]) {
                        Poll::Ready(Ok(n)) if n > 0 => {
                            self.start += n;
                            self.unflushed = true;
                        }
                        Poll::Ready(_) => self.flow = Flow::Dropping,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Flow::Open | Flow::Dropping => {
                    let mut buf = ReadBuf::new(&mut self.buf);
                    match Pin::new(&mut *from).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            let n = buf.filled().len();
                            self.moved += n as u64;
                            if self.flow == Flow::Open {
                                (self.start, self.end) = (0, n);
                            }
                        }
                        // EOF, or an error (a reset): nothing more comes from this side.
                        Poll::Ready(_) => {
                            self.flow = if self.flow == Flow::Open {
                                Flow::Ending
                            } else {
                                Flow::Done
                            };
                        }
                        Poll::Pending => {
                            if self.flow == Flow::Open && self.unflushed {
                                match ready!(Pin::new(&mut *to).poll_flush(cx)) {
                                    Ok(()) => self.unflushed = false,
                                    Err(_) => self.flow = Flow::Dropping,
                                }
                                // A flush that is ready leaves the read's wake-up registered.
                                if self.flow == Flow::Open {
                                    return Poll::Pending;
                                }
                                continue;
                            }
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
    }
}

/// When a tunnel last moved a byte, in milliseconds since it opened.
#[derive(Debug)]
struct Activity {
    epoch: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once no byte moved for `idle`. Wakes once per `idle` at most, not per byte.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + idle;
            if tokio::time::Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A stream that records in [`Activity`] every read that brought bytes (every byte written
/// on one side was read on the other, so reads are enough).
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    fn new(inner: T, activity: &Arc<Activity>) -> Self {
        Self {
            inner,
            activity: Arc::clone(activity),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use http::header::{SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL};
    use http::{HeaderValue, Request};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert!(wants_upgrade(&headers(&ws)));
        assert!(!wants_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!wants_upgrade(&headers(&[("connection", "upgrade")])));
        assert!(!wants_upgrade(&headers(&[
            ("connection", "keep-alive"),
            ("upgrade", "websocket")
        ])));
        // Without hyper's upgrade handle (a connection served without upgrades): no.
        let mut request = Request::new(());
        *request.headers_mut() = headers(&ws);
        let (mut head, ()) = request.into_parts();
        assert!(take(&mut head).is_none());
    }

    #[test]
    fn base64_pads_like_rfc_4648() {
        // RFC 4648 §10's test vectors.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xef, 0xbe]), "/+++");
    }

    #[test]
    fn handshake_keys_are_16_bytes_and_differ() {
        let keys: std::collections::HashSet<_> = (0..100).map(|_| handshake_key()).collect();
        assert_eq!(keys.len(), 100);
        assert!(
            keys.iter()
                .all(|key| key.len() == 24 && key.as_bytes().ends_with(b"=="))
        );
    }

    #[test]
    fn an_extended_connect_becomes_an_http1_handshake() {
        let connect = |protocol: Option<&'static str>, version| {
            let mut request = Request::connect("http://shop.example/ws?room=a")
                .version(version)
                .header("sec-websocket-version", "13")
                .header("sec-websocket-protocol", "chat")
                .body(())
                .unwrap();
            if let Some(protocol) = protocol {
                let protocol = hyper::ext::Protocol::from_static(protocol);
                request.extensions_mut().insert(protocol);
            }
            request.into_parts().0
        };
        let mut head = connect(Some("websocket"), Version::HTTP_2);
        assert!(from_extended_connect(&mut head));
        assert_eq!(head.method, Method::GET);
        assert!(wants_upgrade(&head.headers));
        assert_eq!(head.headers[UPGRADE], "websocket");
        assert_eq!(head.headers[SEC_WEBSOCKET_KEY].len(), 24);
        assert_eq!(head.headers[SEC_WEBSOCKET_PROTOCOL], "chat");
        assert!(head.extensions.get::<OverHttp2>().is_some());
        // Not a WebSocket, or not HTTP/2: left alone.
        for (protocol, version) in [
            (Some("connect-udp"), Version::HTTP_2),
            (None, Version::HTTP_2),
            (Some("websocket"), Version::HTTP_11),
        ] {
            let mut head = connect(protocol, version);
            assert!(!from_extended_connect(&mut head));
            assert_eq!(head.method, Method::CONNECT);
            assert!(!head.headers.contains_key(SEC_WEBSOCKET_KEY));
        }
    }

    #[test]
    fn an_http2_client_gets_the_switch_without_the_http1_handshake() {
        let switched = headers(&[
            ("upgrade", "websocket"),
            ("connection", "upgrade, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("content-length", "0"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("sec-websocket-protocol", "chat"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("x-strata-instance", "chat-1"),
        ]);
        let kept = for_http2_client(&switched);
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(kept[SEC_WEBSOCKET_PROTOCOL], "chat");
        assert_eq!(kept[SEC_WEBSOCKET_EXTENSIONS], "permessage-deflate");
        assert_eq!(kept["x-strata-instance"], "chat-1");
    }

    #[tokio::test(start_paused = true)]
    async fn idleness_is_measured_from_the_last_byte() {
        let activity = Activity::default();
        let idle = Duration::from_secs(10);
        tokio::time::advance(Duration::from_secs(6)).await;
        activity.touch();
        let started = tokio::time::Instant::now();
        activity.idle_for(idle).await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }
}
