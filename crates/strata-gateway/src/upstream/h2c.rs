//! HTTP/2 over cleartext with prior knowledge (h2c) to an instance: requests multiplexed as
//! streams on a few long-lived connections, none waiting for another.
//!
//! Each worker keeps its own connections to each instance (as it keeps its own HTTP/1.1 idle
//! stacks, see [`crate::upstream`]); a request opens a stream on the first of them with room
//! ([`MAX_STREAMS`], or fewer when the instance says so) and a new connection is opened only
//! when all are full. A connection's task (the `h2` crate's driver) writes the frames of every
//! stream that became ready in the same turn of the worker's loop, and of the turn after, in
//! one write, request bodies included ([`strata_core::held::Outbox::drive_gathering`]), and
//! hands each response to its request as its frames arrive: a slow response holds up nobody
//! else.
//!
//! # Failures and the retry rules
//! - A connection that ended, or whose instance sent `GOAWAY`, takes no new stream: a request
//!   that finds it so before its stream is opened goes on another connection (nothing was
//!   sent).
//! - A stream the instance refused (`RST_STREAM` with `REFUSED_STREAM`, or beyond the last
//!   stream its `GOAWAY` accepted) was not processed (RFC 9113 §8.7): it fails as
//!   [`ProxyError::Refused`], which the proxy retries on another instance whatever the method,
//!   as long as none of a streamed body had been read from the client.
//! - Any other end of a stream before its response head (the connection dropped, another
//!   reset) is [`ProxyError::Reset`]: the instance may have acted on it.
//!
//! # Flow control
//! Windows are large (hyper's client defaults: 2 MiB per stream, 5 MiB per connection), and
//! the window of a response body is given back as the client's connection takes each piece, so
//! a slow client slows its own stream only. A streamed request body is sent as the instance's
//! window allows.
//!
//! # Upgrades
//! HTTP/2 has no `Upgrade`: WebSocket handshakes go over HTTP/1.1 on a connection of their own
//! whatever the pool's protocol ([`crate::upstream::Upgrade`]).

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream, SendStream};
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderValue, TRANSFER_ENCODING, USER_AGENT,
};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, StatusCode, Uri, Version};
use strata_core::held::Held;
use strata_core::http::{REQUEST_ID, TRACEPARENT};

use super::h1::RequestFraming;
use super::{Body, BodyProgress, Exchange, Outgoing, Shared, StreamBody, current_worker};
use crate::error::ProxyError;
use crate::proxy::headers::{self, X_FORWARDED_FOR, X_FORWARDED_PROTO};

/// Most streams the gateway opens on one connection (fewer when the instance's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` is lower); past it a new connection is opened. hyper's
/// servers allow 200.
pub const MAX_STREAMS: usize = 100;
/// Initial window of each stream (hyper's client default).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Initial window of each connection (hyper's client default).
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// Connections tried for one request whose stream could not be opened (closed, `GOAWAY`)
/// before a fresh one.
const MAX_DEAD_TRIES: usize = 4;

/// A request for an h2c instance: its head rewritten once (see [`Head::new`]), turned into an
/// HTTP/2 request per attempt.
#[derive(Debug)]
pub struct Head {
    method: Method,
    path: PathAndQuery,
    /// The client's `Host`; `None` (HTTP/1.0) uses the instance's own authority.
    authority: Option<Authority>,
    headers: HeaderMap,
    /// A body read whole (a retry sends it again).
    body: Option<Bytes>,
}

impl Head {
    /// The request for an instance: the client's headers that `proxy::headers::forwards` lets
    /// through, without its framing headers, `Host` as the `:authority`, `X-Forwarded-For`
    /// (the client's chain plus `client_ip`), `X-Forwarded-Proto`, and the body's framing
    /// (`Content-Length` when its length is known). `Host` is also kept as a header, with the
    /// `:authority`'s value, for applications that only read `Host`. The same rules as the
    /// HTTP/1.1 client's.
    pub fn new(
        head: &Parts,
        client_ip: &HeaderValue,
        https: bool,
        body: Option<Bytes>,
        framing: RequestFraming,
    ) -> Self {
        let path = head
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let named = headers::connection_tokens(&head.headers);
        let mut out = HeaderMap::with_capacity(head.headers.len() + 2);
        let mut authority = None;
        let mut forwarded: Option<Vec<u8>> = None;
        for (name, value) in &head.headers {
            if name == HOST {
                authority = Authority::try_from(value.as_bytes()).ok();
                out.append(HOST, value.clone());
            } else if name == X_FORWARDED_FOR {
                let chain = forwarded.get_or_insert_with(Vec::new);
                chain.extend_from_slice(value.as_bytes());
                chain.extend_from_slice(b", ");
            } else if name == CONTENT_LENGTH
                || name == TRANSFER_ENCODING
                || name == X_FORWARDED_PROTO
                || name == CONNECTION
                || !headers::forwards(name, &named, false)
            {
                continue;
            } else {
                out.append(name.clone(), value.clone());
            }
        }
        let for_value = match forwarded {
            None => client_ip.clone(),
            Some(mut chain) => {
                chain.extend_from_slice(client_ip.as_bytes());
                // Made of valid header values and ", ".
                HeaderValue::from_bytes(&chain).unwrap_or_else(|_| client_ip.clone())
            }
        };
        out.insert(X_FORWARDED_FOR, for_value);
        out.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if https { "https" } else { "http" }),
        );
        let length = match framing {
            RequestFraming::Length(n) => Some(n),
            // As the HTTP/1.1 client does: methods that normally carry a body say it is empty.
            RequestFraming::None => {
                matches!(head.method, Method::POST | Method::PUT | Method::PATCH).then_some(0)
            }
            RequestFraming::Chunked => None,
        };
        if let Some(n) = length {
            out.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        // Unique to each request: HPACK sends them as literals rather than adding them to
        // both ends' tables, where they would only push out the values that repeat.
        for name in [REQUEST_ID, TRACEPARENT] {
            if let Some(value) = out.get_mut(&name) {
                value.set_sensitive(true);
            }
        }
        Self {
            method: head.method.clone(),
            path,
            authority,
            headers: out,
            body,
        }
    }

    /// The HTTP/2 request of one attempt; `fallback` (the instance's `host:port`) is the
    /// `:authority` and `Host` of a request that came without `Host` (HTTP/1.0).
    fn request(&self, fallback: &Authority, fallback_host: &HeaderValue) -> Request<()> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone().unwrap_or_else(|| fallback.clone()));
        parts.path_and_query = Some(self.path.clone());
        let mut request = Request::new(());
        *request.method_mut() = self.method.clone();
        // Scheme, authority and path are all set: always a valid URI.
        *request.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = self.headers.clone();
        if self.authority.is_none() {
            request.headers_mut().insert(HOST, fallback_host.clone());
        }
        request
    }
}

/// One worker's connections to one instance.
#[derive(Default)]
pub struct Conns {
    live: Mutex<Vec<Conn>>,
    /// Held while a connection is being opened, so a burst of requests opens one, not one
    /// each.
    connecting: tokio::sync::Mutex<()>,
    /// Connects that failed: the requests that waited behind a failed connect fail at once
    /// instead of each waiting for their own.
    failures: AtomicU64,
}

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns")
            .field("live", &self.count())
            .finish()
    }
}

impl Conns {
    /// Connections held now.
    pub fn count(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Forgets every connection: each closes (with `GOAWAY`) once its streams have ended.
    pub fn close(&self) {
        let closed = std::mem::take(&mut *self.live.lock().unwrap_or_else(PoisonError::into_inner));
        drop(closed);
    }

    /// A connection with room for one more stream, the first opened first (so streams gather
    /// on few connections and share their writes); dead ones are dropped on the way.
    fn pick(&self) -> Option<Conn> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|conn| !conn.dead.load(Ordering::Relaxed));
        live.iter()
            .find(|conn| conn.streams.load(Ordering::Relaxed) < conn.capacity())
            .cloned()
    }

    fn add(&self, conn: Conn) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
    }
}

/// One h2c connection to an instance (cheap to clone: handles on shared state).
#[derive(Clone)]
struct Conn {
    send: SendRequest<Bytes>,
    /// Streams the gateway has open on it.
    streams: Arc<AtomicUsize>,
    /// Set when the connection ended or the instance sent `GOAWAY`: no new stream goes on it.
    dead: Arc<AtomicBool>,
}

impl Conn {
    fn capacity(&self) -> usize {
        self.send.current_max_send_streams().clamp(1, MAX_STREAMS)
    }
}

/// Counts a stream open on its connection until dropped (the response body's end).
#[derive(Debug)]
struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    fn new(streams: &Arc<AtomicUsize>) -> Self {
        streams.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(streams))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connections opened so far, all instances together (tests and logs tell them apart).
static OPENED: AtomicU64 = AtomicU64::new(0);

impl Shared {
    /// The calling worker's connections.
    fn h2(&self) -> &Conns {
        &self.h2[current_worker() % self.h2.len()]
    }

    /// Sends `request` (built with an h2c head) on a stream and reads the response head.
    pub(super) async fn send_h2(&self, request: &mut Outgoing) -> Result<Exchange, ProxyError> {
        let Outgoing {
            h2c,
            stream,
            progress,
            head_request,
            ..
        } = request;
        let Some(head) = h2c.as_ref() else {
            return Err(ProxyError::Protocol(
                "an HTTP/1.1 request on an h2c connection".into(),
            ));
        };
        let conns = self.h2();
        let mut opened = None;
        for tries in 0..=MAX_DEAD_TRIES {
            let conn = match conns.pick() {
                Some(conn) if tries < MAX_DEAD_TRIES => conn,
                _ => self.open_h2(conns).await?,
            };
            let mut sender = conn.send.clone();
            // A fresh handle is ready at once unless the connection failed or got `GOAWAY`.
            let ready = poll_fn(|cx| sender.poll_ready(cx)).await;
            let end = head.body.is_none() && stream.is_none();
            let sent = ready.and_then(|()| {
                sender.send_request(head.request(&self.h2_authority, &self.authority), end)
            });
            match sent {
                Ok((response, send)) => {
                    opened = Some((conn, response, send));
                    break;
                }
                // Nothing left: another connection.
                Err(error) => {
                    tracing::debug!(%error, "h2c connection unusable; trying another");
                    conn.dead.store(true, Ordering::Relaxed);
                }
            }
        }
        let Some((conn, response, mut send)) = opened else {
            // Even fresh connections went away before taking the stream: nothing was sent.
            return Err(ProxyError::Refused(
                "every connection to the instance went away before the request's stream opened"
                    .into(),
            ));
        };
        let slot = StreamSlot::new(&conn.streams);
        if let Some(body) = &head.body {
            // At most `max_body_bytes`: buffered by `h2` until the window allows.
            if let Err(error) = send.send_data(body.clone(), stream.is_none()) {
                return Err(failed(error, &conn, false));
            }
        }
        if let Some(mut body) = stream.take() {
            // Past this point the body is consumed: the request cannot be sent again.
            send_body(&mut send, &mut body, progress).await?;
            *progress = BodyProgress::Sent;
        }
        let streamed = *progress != BodyProgress::NotStarted;
        let response = match response.await {
            Ok(response) => response,
            Err(error) => return Err(failed(error, &conn, streamed)),
        };
        let (mut parts, mut body) = response.into_parts();
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(ProxyError::Protocol("101 over HTTP/2".into()));
        }
        strip_hop_by_hop(&mut parts.headers);
        let length = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if *head_request || body.is_end_stream() {
            return Ok(Exchange {
                status: parts.status,
                headers: parts.headers,
                body: Body::Complete(Bytes::new()),
            });
        }
        // The body of a small response usually came in the same read as its head: when it is
        // all there, the response is complete and its stream done.
        let mut first = None;
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(Some(Ok(data))) = body.poll_data(&mut cx) {
            let _ = body.flow_control().release_capacity(data.len());
            if body.is_end_stream() {
                return Ok(Exchange {
                    status: parts.status,
                    headers: parts.headers,
                    body: Body::Complete(data),
                });
            }
            first = Some(data);
        }
        Ok(Exchange {
            status: parts.status,
            headers: parts.headers,
            body: Body::Streaming(super::Streaming::H2(Streaming {
                body,
                first,
                remaining: length,
                _slot: slot,
            })),
        })
    }

    /// Opens a connection for `conns` (or finds the one another request just opened).
    async fn open_h2(&self, conns: &Conns) -> Result<Conn, ProxyError> {
        let failures = conns.failures.load(Ordering::Relaxed);
        let _connecting = conns.connecting.lock().await;
        if let Some(conn) = conns.pick() {
            return Ok(conn);
        }
        if conns.failures.load(Ordering::Relaxed) != failures {
            // The connect this request waited for failed just now: so would this one.
            return Err(ProxyError::Connect(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "the connection opened for this request's burst failed",
            )));
        }
        match self.handshake().await {
            Ok(conn) => {
                conns.add(conn.clone());
                Ok(conn)
            }
            Err(error) => {
                conns.failures.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    /// Connects within the connect timeout and does the HTTP/2 handshake (the client
    /// preface and `SETTINGS`, sent without waiting for the instance's); the connection's
    /// task runs on the calling worker.
    async fn handshake(&self) -> Result<Conn, ProxyError> {
        let (read, write) = self.connect().await?.stream.into_split();
        let (held, outbox) = Held::new(read, write);
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_concurrent_streams(0)
            .enable_push(false)
            .handshake::<_, Bytes>(held)
            .await
            .map_err(|error| ProxyError::Reset(Box::new(error)))?;
        let dead = Arc::new(AtomicBool::new(false));
        let ended = Arc::clone(&dead);
        let id = OPENED.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // The requests of every client connection read in one turn of the worker's loop
            // leave in one write (`strata_core::held`).
            let mut connection = std::pin::pin!(connection);
            if let Err(error) = outbox.drive_gathering(connection.as_mut()).await {
                tracing::debug!(%error, connection = id, "h2c connection to an instance ended");
            }
            ended.store(true, Ordering::Relaxed);
        });
        Ok(Conn {
            send,
            streams: Arc::new(AtomicUsize::new(0)),
            dead,
        })
    }

    /// One active check over h2c: `GET path` on a fresh connection, its status.
    pub(super) async fn probe_h2(&self, path: &str) -> Result<StatusCode, ProxyError> {
        let tcp = self.open().await?.stream;
        let (mut send, connection) = h2::client::handshake(tcp)
            .await
            .map_err(|error| ProxyError::Reset(Box::new(error)))?;
        let mut connection = std::pin::pin!(connection);
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.h2_authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|error| ProxyError::Protocol(Box::new(error)))?;
        let mut request = Request::new(());
        *request.uri_mut() = uri;
        request.headers_mut().insert(
            USER_AGENT,
            HeaderValue::from_static("strata-gateway-health"),
        );
        let (response, _) = send
            .send_request(request, true)
            .map_err(|error| ProxyError::Reset(Box::new(error)))?;
        tokio::select! {
            response = response => response
                .map(|r| r.status())
                .map_err(failed_probe),
            ended = &mut connection => Err(match ended {
                Ok(()) => ProxyError::Reset("the instance closed the connection".into()),
                Err(error) => failed_probe(error),
            }),
        }
    }
}

fn failed_probe(error: h2::Error) -> ProxyError {
    ProxyError::Reset(Box::new(error))
}

/// Leaves out of a response the headers that concern one hop (HTTP/2 forbids the
/// connection-specific ones; `Proxy-*`, `Trailer` and `TE` may still come), as the HTTP/1.1
/// client does while parsing. Most responses have none: nothing is allocated then.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<Vec<u8>> = headers::connection_tokens(headers)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let named: Vec<&[u8]> = named.iter().map(Vec::as_slice).collect();
    let dropped: Vec<http::header::HeaderName> = headers
        .keys()
        .filter(|name| !headers::forwards(name, &named, false))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

/// The error of a stream that ended before its response head: refused (not processed) when
/// the instance said so and none of the body was taken from the client (`streamed`), reset
/// otherwise. A `GOAWAY` also marks the connection so no new stream goes on it.
fn failed(error: h2::Error, conn: &Conn, streamed: bool) -> ProxyError {
    let refused =
        error.is_remote() && (error.is_go_away() || error.reason() == Some(Reason::REFUSED_STREAM));
    if error.is_go_away() || error.is_io() {
        conn.dead.store(true, Ordering::Relaxed);
    }
    if refused && !streamed {
        ProxyError::Refused(Box::new(error))
    } else {
        ProxyError::Reset(Box::new(error))
    }
}

/// Streams the client's body on `send`, as the instance's window allows, then ends the
/// stream.
async fn send_body(
    send: &mut SendStream<Bytes>,
    body: &mut StreamBody,
    progress: &mut BodyProgress,
) -> Result<(), ProxyError> {
    let reset = |error: h2::Error| ProxyError::Reset(Box::new(error));
    loop {
        let data = match body.first.take() {
            Some(first) => first,
            None => {
                *progress = BodyProgress::ReadingClient;
                match crate::proxy::next_frame(&mut body.body, body.idle).await? {
                    None => break,
                    Some(frame) => match frame.into_data() {
                        Ok(data) => data,
                        // Trailers of the client's body are not forwarded.
                        Err(_) => continue,
                    },
                }
            }
        };
        *progress = BodyProgress::WritingInstance;
        body.seen = body.seen.saturating_add(data.len() as u64);
        if body.seen > body.limit {
            return Err(ProxyError::BodyTooLarge { limit: body.limit });
        }
        let mut data = data;
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(n)) => n,
                Some(Err(error)) => return Err(reset(error)),
                None => {
                    return Err(ProxyError::Reset(
                        "the instance closed the stream while the body was sent".into(),
                    ));
                }
            };
            if granted > 0 {
                let piece = data.split_to(granted.min(data.len()));
                send.send_data(piece, false).map_err(reset)?;
            }
        }
    }
    send.send_data(Bytes::new(), true).map_err(reset)
}

/// A response body arriving on its stream.
#[derive(Debug)]
pub struct Streaming {
    body: RecvStream,
    /// Read with the head, given out first.
    first: Option<Bytes>,
    /// Bytes still expected, when the instance sent `Content-Length`.
    remaining: Option<u64>,
    _slot: StreamSlot,
}

impl Streaming {
    /// The next piece of body; `None` at its end. Each piece's window goes back to the
    /// instance as it is handed on.
    ///
    /// # Errors
    /// The stream's reset or the connection's failure.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, h2::Error>>> {
        let data = match self.first.take() {
            Some(first) => first,
            None => match self.body.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    data
                }
                other => return other,
            },
        };
        if let Some(rest) = &mut self.remaining {
            *rest = rest.saturating_sub(data.len() as u64);
        }
        Poll::Ready(Some(Ok(data)))
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.first.is_none() && self.body.is_end_stream()
    }

    /// Bytes still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        self.remaining
    }
}
