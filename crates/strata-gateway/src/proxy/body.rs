//! The two bodies the proxy moves: the request body on its way to an instance (empty, buffered
//! for a possible retry, or streamed and counted against the size limit) and the response body
//! on its way to the client (the instance's, holding its connection until the end, or a small
//! one the gateway wrote).
//!
//! Both are enums rather than boxed trait objects: no allocation per request, and the
//! variants are all the gateway needs.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::membership::Instance;
use crate::upstream::Conn;

/// Why the request body could not be forwarded; found again in the HTTP client's error to
/// tell the client's failures from the instance's.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// A chunked body went past `gateway.max_body_bytes` while streaming.
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Reading the client's body failed.
    #[error("reading the client's body failed: {0}")]
    Client(#[source] hyper::Error),
}

/// A request body on its way to an instance.
#[derive(Debug)]
pub enum RequestBody {
    /// No body (most GETs): nothing to send, nothing to keep for a retry.
    Empty,
    /// A small body read whole, so a retry can send it again (`Bytes` clones share memory).
    Full(Option<Bytes>),
    /// A body streamed from the client as it arrives, counted against the limit.
    Stream {
        body: Incoming,
        seen: u64,
        limit: u64,
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

    /// A streamed body that fails with [`BodyError::TooLarge`] past `limit` bytes.
    pub fn stream(body: Incoming, limit: u64) -> Self {
        Self::Stream {
            body,
            seen: 0,
            limit,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream { body, seen, limit } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        *seen = seen.saturating_add(data.len() as u64);
                        if *seen > *limit {
                            return Poll::Ready(Some(Err(BodyError::TooLarge { limit: *limit })));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Client(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty | Self::Full(None) => true,
            Self::Full(Some(_)) => false,
            Self::Stream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty | Self::Full(None) => SizeHint::with_exact(0),
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Stream { body, .. } => body.size_hint(),
        }
    }
}

/// A request being served by an instance: counted in the instance's in-flight gauge from the
/// first attempt until the response body ends (or the attempt fails), and owning the
/// connection until then (and driving it: see [`crate::upstream`]).
#[derive(Debug)]
pub struct Lease {
    instance: Arc<Instance>,
    conn: Option<Conn>,
}

impl Lease {
    /// Starts counting a request on `instance`.
    pub fn new(instance: Arc<Instance>) -> Self {
        instance.metrics().in_flight.inc();
        Self {
            instance,
            conn: None,
        }
    }

    /// The instance serving the request.
    pub fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    /// Attaches the connection the response arrives on.
    pub fn hold(&mut self, conn: Conn) {
        self.conn = Some(conn);
    }

    /// Ends the request; the connection goes back to the instance's idle pool when its response
    /// was read to the end, and is closed otherwise (hyper cannot reuse a half-read one).
    fn finish(mut self, reusable: bool) {
        if let Some(conn) = self.conn.take()
            && reusable
        {
            self.instance.upstream().put_back(conn);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.instance.metrics().in_flight.dec();
    }
}

/// A response body streamed from an instance to the client.
#[derive(Debug)]
pub struct Leased {
    body: Incoming,
    lease: Option<Lease>,
    ended: bool,
}

impl Leased {
    fn release(&mut self, reusable: bool) {
        if let Some(lease) = self.lease.take() {
            lease.finish(reusable);
        }
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        // hyper does not poll a body that says it is empty (204, HEAD, Content-Length: 0), and
        // drops a body whose length it has written; both are complete responses.
        let complete = self.ended || self.body.is_end_stream();
        self.release(complete);
    }
}

/// The body of a response to a client.
#[derive(Debug)]
pub enum ResponseBody {
    /// The instance's body.
    Upstream(Leased),
    /// A body the gateway wrote (errors), sent in one frame.
    Full(Option<Bytes>),
}

impl ResponseBody {
    /// The instance's `body`, ending `lease` when it ends.
    pub fn upstream(body: Incoming, lease: Lease) -> Self {
        Self::Upstream(Leased {
            body,
            lease: Some(lease),
            ended: false,
        })
    }

    /// A body of the gateway's own.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Upstream(leased) => {
                // The connection feeds the body: let it read (and register for the socket)
                // before looking for a frame. Its end is seen through the body.
                if let Some(conn) = leased.lease.as_mut().and_then(|l| l.conn.as_mut()) {
                    let _ = conn.drive(cx);
                }
                let polled = Pin::new(&mut leased.body).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) => {
                        leased.ended = true;
                        leased.release(true);
                    }
                    // The last frame of a body with a length: hand the connection back now,
                    // not when hyper gets round to dropping the body.
                    Poll::Ready(Some(Ok(_))) if leased.body.is_end_stream() => {
                        leased.ended = true;
                        leased.release(true);
                    }
                    Poll::Ready(Some(Err(_))) => leased.release(false),
                    Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Upstream(leased) => leased.ended || leased.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Upstream(leased) => leased.body.size_hint(),
        }
    }
}
