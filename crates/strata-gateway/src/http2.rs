//! HTTP/2 from clients at the front door: which connections speak it, hyper's HTTP/2 server
//! with the gateway's [`Limits`], and the watch that closes connections that reset streams in
//! a loop or sit idle.
//!
//! A client speaks HTTP/2 when TLS's ALPN picked `h2` ([`crate::tls`]), when its first bytes
//! are the connection preface (`PRI * HTTP/2.0`, "prior knowledge", [`sniff`]), or after an
//! HTTP/1.1 request asked for `Upgrade: h2c` ([`crate::h2c_upgrade`]). Its requests go to the
//! same handler as HTTP/1.1's: routing, balancing, retries, rate limits, logs and metrics do
//! not know the difference; `:authority` is the request's `Host` (`proxy::validate`), and the
//! instance is reached over its pool's protocol. WebSocket comes over HTTP/1.1 or as an
//! extended `CONNECT` stream (RFC 8441). The responses one poll of a connection writes leave
//! in one write ([`strata_core::held`]), not one each.
//!
//! # Limits
//! - Streams open at once: `SETTINGS_MAX_CONCURRENT_STREAMS`
//!   ([`Limits::h2_max_concurrent_streams`]); a stream beyond it is refused by the protocol.
//! - Header list: [`Limits::max_header_bytes`], as for HTTP/1.1 (`SETTINGS_MAX_HEADER_LIST_SIZE`;
//!   a larger list gets 431 and its stream is reset).
//! - Rapid reset (CVE-2023-44487): a client that resets more than
//!   [`Limits::h2_max_reset_streams`] streams before the gateway took them up gets `GOAWAY`
//!   (`ENHANCE_YOUR_CALM`) from the `h2` crate; one that resets more than that many of the
//!   streams being served within a second gets `GOAWAY` from [`Streams`] and is closed
//!   [`RESET_CLOSE_GRACE`] later at the latest. Either way only that connection is affected.
//! - Idle: a connection with no open stream for [`Limits::h2_idle_timeout`] gets `GOAWAY`.
//! - Bodies: as for HTTP/1.1 (`proxy`).
//! - Shutdown and drain: `GOAWAY`, then the open streams finish.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http2;
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use strata_core::Shutdown;
use strata_core::held::Held;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::limits::Limits;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a connection that reset too many streams keeps its open streams after its
/// `GOAWAY` before it is dropped: a client that resets streams in a loop gets no more of the
/// gateway's time than this.
pub const RESET_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The hyper HTTP/2 settings every client connection gets.
pub fn builder(limits: &Limits) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // RFC 8441: WebSocket over a stream (`crate::proxy`'s upgrades).
        .enable_connect_protocol()
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(
            usize::try_from(limits.h2_max_reset_streams).unwrap_or(usize::MAX),
        );
    builder
}

/// What a cleartext connection's first bytes say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// The HTTP/2 connection preface.
    Http2,
    /// Anything else: HTTP/1.x (hyper judges it).
    Http1,
    /// The client closed before sending anything.
    Closed,
}

/// Reads from `io` into `first` until its bytes are the HTTP/2 preface or cannot become it
/// (an HTTP/1.1 request line differs from the first byte on, so that costs one read, which
/// the request needed anyway). The bytes read stay in `first` for the protocol's parser
/// ([`Rewind`]).
///
/// # Errors
/// The read's.
pub async fn sniff<I: AsyncRead + Unpin>(io: &mut I, first: &mut BytesMut) -> io::Result<Sniffed> {
    loop {
        let n = first.len().min(PREFACE.len());
        if first[..n] != PREFACE[..n] {
            return Ok(Sniffed::Http1);
        }
        if n == PREFACE.len() {
            return Ok(Sniffed::Http2);
        }
        if first.capacity() - first.len() < 1024 {
            first.reserve(8 * 1024);
        }
        if io.read_buf(first).await? == 0 {
            return Ok(if first.is_empty() {
                Sniffed::Closed
            } else {
                Sniffed::Http1
            });
        }
    }
}

/// A connection whose first bytes, already read, are read again before the rest.
#[derive(Debug)]
pub struct Rewind<I> {
    first: Bytes,
    io: I,
}

impl<I> Rewind<I> {
    /// `io`, with `first` read before its own bytes.
    pub fn new(io: I, first: Bytes) -> Self {
        Self { first, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.first.has_remaining() {
            let n = this.first.len().min(buf.remaining());
            buf.put_slice(&this.first[..n]);
            this.first.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

crate::write_through!(Rewind);

/// The streams of one HTTP/2 connection as its handler sees them: how many are being served,
/// since when none is, and how many the client reset in the current second.
#[derive(Debug)]
pub struct Streams {
    started: Instant,
    /// Streams whose handler is running.
    active: AtomicUsize,
    /// When a stream last started or ended, in milliseconds since `started`.
    last: AtomicU64,
    /// The second (since `started`) that `resets` counts.
    second: AtomicU64,
    resets: AtomicU32,
    max_resets: u32,
    /// Set (and `calm` notified) once resets passed `max_resets`.
    tripped: AtomicBool,
    calm: Notify,
}

impl Streams {
    /// A new connection's, allowing `max_resets` resets per second.
    pub fn new(max_resets: u32) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            active: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            second: AtomicU64::new(0),
            resets: AtomicU32::new(0),
            max_resets,
            tripped: AtomicBool::new(false),
            calm: Notify::new(),
        })
    }

    /// A stream starts being served; dropping the guard before [`Open::done`] counts it reset
    /// (hyper drops a handler when the client resets its stream).
    pub fn open(self: &Arc<Self>) -> Open {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Open {
            streams: Arc::clone(self),
            done: false,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// When the connection will have been idle for `idle`, as far as is known now: never
    /// sooner than `idle` from now while a stream is served.
    fn idle_deadline(&self, idle: Duration) -> Instant {
        if self.active.load(Ordering::Relaxed) > 0 {
            return Instant::now() + idle;
        }
        self.started + Duration::from_millis(self.last.load(Ordering::Relaxed)) + idle
    }

    fn reset(&self) {
        let second = self.now_ms() / 1000;
        let count = if self.second.swap(second, Ordering::Relaxed) == second {
            self.resets
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        } else {
            self.resets.store(1, Ordering::Relaxed);
            1
        };
        if count > self.max_resets && !self.tripped.swap(true, Ordering::Relaxed) {
            self.calm.notify_one();
        }
    }
}

/// In the extensions of an HTTP/2 `CONNECT` request: the streams of its connection, so that a
/// WebSocket tunnel made of the stream counts as a stream served for as long as it lasts.
#[derive(Debug, Clone)]
pub struct ConnectionStreams(pub Arc<Streams>);

/// One stream being served (see [`Streams::open`]).
#[derive(Debug)]
pub struct Open {
    streams: Arc<Streams>,
    done: bool,
}

impl Open {
    /// The handler answered: the stream was not reset.
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.streams.active.fetch_sub(1, Ordering::Relaxed);
        self.streams.touch();
        if !self.done {
            self.streams.reset();
        }
    }
}

/// Serves one HTTP/2 client connection until it ends, sends `GOAWAY` after `closing` (then
/// lets its open streams finish), after too many resets or when idle (see the module docs),
/// and drops it at `abort`.
#[allow(clippy::too_many_arguments)]
pub async fn serve_connection<I, S, B>(
    name: &'static str,
    peer: std::net::SocketAddr,
    builder: &http2::Builder<TokioExecutor>,
    io: I,
    service: S,
    streams: &Streams,
    idle: Duration,
    closing: &Shutdown,
    abort: &Shutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The responses a poll of the connection writes leave together (see `strata_core::held`).
    let (read, write) = tokio::io::split(io);
    let (held, outbox) = Held::new(read, write);
    let connection = builder.serve_connection(TokioIo::new(held), service);
    let mut connection = std::pin::pin!(connection);
    let mut connection = outbox.drive(connection.as_mut());
    let mut going_away = false;
    let mut hard_stop: Option<Instant> = None;
    loop {
        let idle_at = streams.idle_deadline(idle);
        let stop_at = hard_stop.unwrap_or_else(|| Instant::now() + idle);
        tokio::select! {
            biased;
            served = &mut connection => {
                if let Err(error) = served {
                    tracing::debug!(listener = name, %peer, %error, "HTTP/2 connection ended with an error");
                }
                return;
            }
            () = abort.cancelled() => return,
            () = closing.cancelled(), if !going_away => {
                going_away = true;
                connection.connection().as_mut().graceful_shutdown();
            }
            () = streams.calm.notified(), if !going_away => {
                tracing::warn!(
                    listener = name,
                    %peer,
                    max_per_second = streams.max_resets,
                    "HTTP/2 client resets streams in a loop; closing its connection"
                );
                going_away = true;
                hard_stop = Some(Instant::now() + RESET_CLOSE_GRACE);
                connection.connection().as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_at), if !going_away => {
                if streams.idle_deadline(idle) <= Instant::now() {
                    tracing::debug!(listener = name, %peer, ?idle, "idle HTTP/2 connection closed");
                    going_away = true;
                    connection.connection().as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(stop_at), if hard_stop.is_some() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sniffed(bytes: &'static [u8]) -> (Sniffed, usize) {
        let mut io = bytes;
        let mut first = BytesMut::new();
        let sniffed = sniff(&mut io, &mut first).await.unwrap();
        (sniffed, first.len())
    }

    #[tokio::test]
    async fn the_preface_means_http2_and_anything_else_http1() {
        assert_eq!(sniffed(PREFACE).await.0, Sniffed::Http2);
        assert_eq!(
            sniffed(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await,
            (Sniffed::Http1, 27)
        );
        // A request line that starts like the preface but is not it.
        assert_eq!(sniffed(b"PRI * HTTP/1.1\r\n\r\n").await.0, Sniffed::Http1);
        assert_eq!(sniffed(b"PRI * HT").await.0, Sniffed::Http1);
        assert_eq!(sniffed(b"").await.0, Sniffed::Closed);
    }

    #[tokio::test]
    async fn rewind_reads_the_first_bytes_again() {
        let mut io = Rewind::new(&b" world"[..], Bytes::from_static(b"hello"));
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn resets_beyond_the_limit_in_a_second_trip_once() {
        let streams = Streams::new(3);
        streams.open().done();
        for _ in 0..3 {
            drop(streams.open());
        }
        assert!(!streams.tripped.load(Ordering::Relaxed));
        drop(streams.open());
        assert!(streams.tripped.load(Ordering::Relaxed));
        // The notification waits for the connection's loop.
        tokio::time::timeout(Duration::from_secs(1), streams.calm.notified())
            .await
            .unwrap();
        assert_eq!(streams.active.load(Ordering::Relaxed), 0);
    }
}
