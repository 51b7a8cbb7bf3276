//! The two bodies the proxy moves: the request body on its way to an instance (empty, buffered
//! for a possible retry, or streamed and counted against the size limit) and the response body
//! on its way to the client (the instance's, holding its connection until the end, or one
//! already whole: a small response read with its head, or the gateway's own).
//!
//! Both are enums rather than boxed trait objects: no allocation per request, and the
//! variants are all the gateway needs. A response body compressed as it streams
//! ([`super::compress`]) is the one boxed variant: only those pay for the box.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::error::ProxyError;

use super::compress::Compressing;
use crate::membership::Instance;
use crate::upstream::Streaming;

/// A request body on its way to an instance.
#[derive(Debug)]
pub enum RequestBody {
    /// No body (most GETs): nothing to send, nothing to keep for a retry.
    Empty,
    /// A small body read whole, so a retry can send it again (`Bytes` clones share memory).
    Full(Option<Bytes>),
    /// A body streamed from the client as it arrives, counted against the limit, each piece
    /// awaited at most `idle`. Its first piece was read before an instance was chosen.
    Stream {
        body: Incoming,
        /// The first piece, still to be sent.
        first: Option<Bytes>,
        /// The length the client announced (`Content-Length`); `None`: chunked.
        declared: Option<u64>,
        seen: u64,
        limit: u64,
        idle: Duration,
    },
}

impl RequestBody {
    /// A buffered body; an empty one becomes [`RequestBody::Empty`].
    pub fn full(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::Empty
        } else {
            Self::Full(Some(bytes))
        }
    }

    /// A streamed body whose first piece (`first`) was already read, of the announced length
    /// `declared` (`None`: chunked); it fails with [`ProxyError::BodyTooLarge`] past `limit`
    /// bytes and with [`ProxyError::ClientTimeout`] when the client sends nothing for `idle`.
    pub fn stream(
        body: Incoming,
        first: Bytes,
        declared: Option<u64>,
        limit: u64,
        idle: Duration,
    ) -> Self {
        Self::Stream {
            body,
            first: Some(first),
            declared,
            seen: 0,
            limit,
            idle,
        }
    }
}

/// The first piece of data of a client's body (`None` when the body is empty), read before
/// an instance is chosen: a body that never comes, or whose framing is broken from the start
/// (an invalid first chunk), then costs no instance anything.
///
/// # Errors
/// As [`next_frame`].
pub async fn first_data(body: &mut Incoming, idle: Duration) -> Result<Option<Bytes>, ProxyError> {
    while let Some(frame) = next_frame(body, idle).await? {
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
        {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// The next frame of a client's request body, waited for at most `idle` (the body timeout):
/// the one place a request body is read, so a stalled client fails the same way whether its
/// body is buffered or streamed.
///
/// # Errors
/// [`ProxyError::ClientTimeout`] after `idle` without a frame; [`ProxyError::ClientBody`] when
/// the body cannot be read (connection cut, bad chunk framing).
pub async fn next_frame(
    body: &mut Incoming,
    idle: Duration,
) -> Result<Option<Frame<Bytes>>, ProxyError> {
    let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
    match tokio::time::timeout(idle, frame).await {
        Ok(Some(Ok(frame))) => Ok(Some(frame)),
        Ok(Some(Err(error))) => Err(ProxyError::ClientBody(error)),
        Ok(None) => Ok(None),
        Err(_) => Err(ProxyError::ClientTimeout(idle)),
    }
}

/// Reads a whole request body, each frame within `idle` (trailers are dropped).
///
/// # Errors
/// As [`next_frame`].
pub async fn collect(mut body: Incoming, idle: Duration) -> Result<Bytes, ProxyError> {
    let mut whole = bytes::BytesMut::new();
    while let Some(frame) = next_frame(&mut body, idle).await? {
        if let Ok(data) = frame.into_data() {
            whole.extend_from_slice(&data);
        }
    }
    Ok(whole.freeze())
}

/// A request being served by an instance: counted in the instance's in-flight gauge from the
/// first attempt until the response body ends (or the attempt fails).
#[derive(Debug)]
pub struct Lease {
    instance: Arc<Instance>,
}

impl Lease {
    /// Starts counting a request on `instance`.
    pub fn new(instance: Arc<Instance>) -> Self {
        instance.metrics().in_flight.inc();
        Self { instance }
    }

    /// The instance serving the request.
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.instance.metrics().in_flight.dec();
    }
}

/// A response body streamed from an instance to the client, holding its connection (and the
/// request's [`Lease`]) until the end.
#[derive(Debug)]
pub struct Leased {
    streaming: Option<Streaming>,
    lease: Option<Lease>,
}

impl Leased {
    /// Ends the request: the connection goes back to the instance's idle stack when the body
    /// was read to its end and the instance keeps it alive, and is closed otherwise.
    fn release(&mut self) {
        if let (Some(streaming), Some(lease)) = (self.streaming.take(), self.lease.take())
            && let Some(conn) = streaming.into_reusable()
        {
            lease.instance.upstream().put_back(conn);
        }
    }
}

/// The error of a response body (the instance's connection failed mid-body).
pub type ResponseBodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response to a client.
#[derive(Debug)]
pub enum ResponseBody {
    /// The instance's body, still arriving.
    Upstream(Leased),
    /// A body already whole: the instance's (read with its head) or the gateway's own (errors),
    /// sent in one frame.
    Full(Option<Bytes>),
    /// The instance's body, encoded as it arrives.
    Compressed(Box<Compressing>),
}

impl ResponseBody {
    /// The instance's body still arriving on its connection, ending `lease` when it ends.
    pub fn upstream(streaming: Streaming, lease: Lease) -> Self {
        Self::Upstream(Leased {
            streaming: Some(streaming),
            lease: Some(lease),
        })
    }

    /// A whole body; an empty one sends no frame.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::Full(None)
        } else {
            Self::Full(Some(bytes))
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Compressed(compressing) => compressing.poll_frame(cx),
            Self::Upstream(leased) => {
                let Some(streaming) = leased.streaming.as_mut() else {
                    return Poll::Ready(None);
                };
                match streaming.poll_data(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(data))) => {
                        // The last piece of a body with a length: hand the connection back
                        // now, not when hyper gets round to dropping the body.
                        if streaming.is_done() {
                            leased.release();
                        }
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(None) => {
                        leased.release();
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Err(error))) => {
                        // Dropping the connection closes it.
                        leased.streaming = None;
                        leased.lease = None;
                        Poll::Ready(Some(Err(Box::new(error))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Compressed(compressing) => compressing.is_done(),
            Self::Upstream(leased) => leased.streaming.as_ref().is_none_or(Streaming::is_done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Compressed(_) => SizeHint::default(),
            Self::Upstream(leased) => {
                match leased.streaming.as_ref().and_then(Streaming::remaining) {
                    Some(n) => SizeHint::with_exact(n),
                    None => SizeHint::default(),
                }
            }
        }
    }
}
