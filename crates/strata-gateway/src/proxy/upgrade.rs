//! HTTP/1.1 upgrades (WebSocket): the request is routed like any other (chat's consistent
//! hash on `room` pins a room to one instance), sent on a fresh connection with its `Upgrade`
//! and `Connection: upgrade` headers kept, and when the instance answers `101 Switching
//! Protocols` both connections are taken over from hyper and bytes are copied both ways until
//! either side closes.
//!
//! - The instance's connection is never pooled: after a 101 it is the tunnel.
//! - The tunnel counts as a request in flight on the instance for its whole life, so
//!   `least_connections`, bounded load and draining see it.
//! - It closes when idle (no byte either way) for [`Limits::websocket_idle_timeout`], and when
//!   its instance drains, [`Limits::drain_timeout`] after the drain began.
//! - Any answer other than 101 goes back to the client as an ordinary response.
//!
//! [`Limits::websocket_idle_timeout`]: crate::limits::Limits::websocket_idle_timeout
//! [`Limits::drain_timeout`]: crate::limits::Limits::drain_timeout

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONNECTION, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{ClientInfo, Lease, Outcome, Proxy, ResponseBody, headers};
use crate::error::ProxyError;
use crate::membership::{Instance, Pool};

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

/// Rewrites an upgrade request's head for the instance: origin-form target, HTTP/1.1,
/// hop-by-hop headers out except the two that ask for the upgrade, forwarding headers in.
fn prepare(head: &mut Parts, client: &ClientInfo) {
    if head.uri.scheme().is_some() || head.uri.authority().is_some() {
        let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
        head.uri = path.parse().unwrap_or_else(|_| Uri::from_static("/"));
    }
    head.version = Version::HTTP_11;
    let protocol = head.headers.get(UPGRADE).cloned();
    headers::strip_hop_by_hop(&mut head.headers);
    // Hop-by-hop, yet the instance must see them to switch protocols.
    if let Some(protocol) = protocol {
        head.headers.insert(UPGRADE, protocol);
        head.headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers::add_forwarded(&mut head.headers, &client.forwarded_for);
    if client.https {
        head.headers.insert(
            headers::X_FORWARDED_PROTO,
            HeaderValue::from_static("https"),
        );
    }
}

impl Proxy {
    /// Forwards an upgrade request to an instance of `pool` and, on a 101, starts the tunnel.
    /// A failed connect is tried once more on the next instance (nothing was sent).
    pub(super) async fn forward_upgrade(
        &self,
        pool: &Pool,
        client: &ClientInfo,
        mut head: Parts,
        on_client: OnUpgrade,
        started: Instant,
    ) -> Result<Outcome, (ProxyError, Option<Arc<Instance>>)> {
        if pool.instances().is_empty() {
            let pool = pool.name().into();
            return Err((ProxyError::NoInstance { pool }, None));
        }
        let deadline = tokio::time::Instant::from_std(started + self.limits.request_timeout);
        prepare(&mut head, client);
        let affinity = pool.affinity(&head.headers, &head.uri, client.ip);
        let first = Arc::clone(pool.pick(affinity).map_err(|e| (e, None))?);
        let (instance, sender) = match self.open(&first, deadline).await {
            Ok(sender) => (first, sender),
            Err(error) => {
                let Some(next) = pool.next_after(&first, affinity).cloned() else {
                    return Err((error, Some(first)));
                };
                match self.open(&next, deadline).await {
                    Ok(sender) => (next, sender),
                    Err(error) => return Err((error, Some(next))),
                }
            }
        };
        let lease = Lease::new(Arc::clone(&instance));
        let request = Request::from_parts(head, Empty::<Bytes>::new());
        let mut sender = sender;
        let sent = tokio::time::timeout_at(deadline, sender.send_request(request)).await;
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                instance.health().record_failure();
                return Err((ProxyError::from_send(error), Some(instance)));
            }
            Err(_) => {
                instance.health().record_failure();
                let error = ProxyError::Timeout(self.limits.request_timeout);
                return Err((error, Some(instance)));
            }
        };
        if response.status().is_server_error() {
            instance.health().record_failure();
        } else {
            instance.health().record_success();
        }
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // A refusal (400, 401, 404, 426…): small, read whole, then the connection closes.
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            let limited = http_body_util::Limited::new(body, REFUSAL_BYTES);
            let bytes = match tokio::time::timeout_at(deadline, limited.collect()).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                // Too large or cut short: the status says enough.
                Ok(Err(error)) => {
                    tracing::debug!(%error, "refusal of an upgrade: body dropped");
                    Bytes::new()
                }
                Err(_) => {
                    let error = ProxyError::Timeout(self.limits.request_timeout);
                    return Err((error, Some(instance)));
                }
            };
            drop(lease);
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let response = Response::from_parts(parts, ResponseBody::full(bytes));
            return Ok(Outcome {
                response,
                served_by: Some(Arc::clone(&instance)),
                tried: Some(instance),
            });
        }
        let on_upstream = hyper::upgrade::on(&mut response);
        let mut switching = Response::new(ResponseBody::Full(None));
        *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        // The instance's 101 as it is: Upgrade, Connection, Sec-WebSocket-Accept and the
        // negotiated protocol and extensions.
        *switching.headers_mut() = std::mem::take(response.headers_mut());
        let tunnel = Tunnel {
            instance: Arc::clone(&instance),
            pool: pool.name().into(),
            lease,
            idle: self.limits.websocket_idle_timeout,
        };
        tokio::spawn(tunnel.run(on_client, on_upstream));
        Ok(Outcome {
            response: switching,
            served_by: Some(Arc::clone(&instance)),
            tried: Some(instance),
        })
    }

    /// A fresh connection to `instance`, driven by a task of its own (it becomes the tunnel).
    async fn open(
        &self,
        instance: &Arc<Instance>,
        deadline: tokio::time::Instant,
    ) -> Result<http1::SendRequest<Empty<Bytes>>, ProxyError> {
        let timeout = self.limits.connect_timeout;
        let host = instance.host.trim_start_matches('[').trim_end_matches(']');
        let connecting = TcpStream::connect((host, instance.port));
        let connect_by = deadline.min(tokio::time::Instant::now() + timeout);
        let stream = match tokio::time::timeout_at(connect_by, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(self.failed(instance, ProxyError::Connect(error))),
            Err(_) => return Err(self.failed(instance, ProxyError::ConnectTimeout(timeout))),
        };
        // Frames are small and interactive: no coalescing delay.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.failed(instance, ProxyError::Handshake(e)))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upgrade connection to the instance ended with an error");
            }
        });
        Ok(sender)
    }

    /// Counts a failed attempt on `instance`.
    fn failed(&self, instance: &Instance, error: ProxyError) -> ProxyError {
        if let Some(kind) = error.upstream_kind() {
            instance.metrics().upstream_error(kind);
            instance.health().record_failure();
        }
        error
    }
}

/// An accepted upgrade, waiting for both connections to be handed over.
struct Tunnel {
    instance: Arc<Instance>,
    pool: Arc<str>,
    /// Keeps the tunnel counted in the instance's in-flight requests until it closes.
    lease: Lease,
    idle: Duration,
}

impl Tunnel {
    async fn run(self, on_client: OnUpgrade, on_upstream: OnUpgrade) {
        let (client, upstream) = match tokio::try_join!(on_client, on_upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, pool = %self.pool, instance = self.instance.address(), "upgrade not completed");
                return;
            }
        };
        let metrics = self.instance.metrics();
        metrics.websockets.inc();
        metrics.websockets_open.inc();
        let activity = Arc::new(Activity::default());
        let mut client = Watched::new(TokioIo::new(client), &activity);
        let mut upstream = Watched::new(TokioIo::new(upstream), &activity);
        let closing = self.instance.tunnels_closing().clone();
        let opened = Instant::now();
        let why = tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
                Ok(_) => "closed",
                Err(error) if is_reset(&error) => "closed",
                Err(error) => {
                    tracing::debug!(%error, "WebSocket tunnel failed");
                    "failed"
                }
            },
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
    }
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
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
