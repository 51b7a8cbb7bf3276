//! Connections to one instance: TCP connect with a timeout, the HTTP/1.1 handshake, and a
//! stack of idle keep-alive connections reused by later requests.
//!
//! Each instance owns its own pool, so taking a connection involves no lookup by address and
//! no lock shared across instances. The idle stack sits behind a `std::sync::Mutex` held only
//! for one `Vec` push or pop, never across an `.await`: uncontended it costs two atomic
//! operations, and a lock-free queue would buy nothing measurable at that size.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::header::HOST;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::ProxyError;
use crate::limits::Limits;
use crate::proxy::RequestBody;

/// The sending half of a connection to an instance.
pub type Sender = http1::SendRequest<RequestBody>;

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
    idle: Mutex<Vec<Sender>>,
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
            idle: Mutex::new(Vec::new()),
            builder,
        })
    }

    /// Sends `request` on an idle connection, or on a fresh one when none is usable, and
    /// returns the response head with the connection's sender, to be given back through
    /// [`Upstream::put_back`] once the response body has been read to its end.
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
    ) -> Result<(Response<Incoming>, Sender), ProxyError> {
        if !request.headers().contains_key(HOST) {
            request.headers_mut().insert(HOST, self.authority.clone());
        }
        for _ in 0..MAX_IDLE_TRIES {
            let Some(mut sender) = self.take_idle() else {
                break;
            };
            // A connection given back at the end of a body may take a moment to become ready
            // again; an error means the instance closed it while it sat idle.
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, sender)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(ProxyError::from_send(error.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        match sender.try_send_request(request).await {
            Ok(response) => Ok((response, sender)),
            Err(error) => Err(ProxyError::from_send(error.into_error())),
        }
    }

    /// Keeps a connection whose last response was read to its end for the next request.
    pub fn put_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    /// Closes every idle connection (shutdown, instance removed).
    pub fn close_idle(&self) {
        let drained =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        // Dropping the senders outside the lock ends their connection tasks.
        drop(drained);
    }

    /// Idle connections kept now.
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The most recently used idle connection: the likeliest to be alive, and surplus
    /// connections age out at the bottom of the stack.
    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Opens a connection and spawns the task that drives it; the task ends when the sender is
    /// dropped or either side closes.
    async fn connect(&self) -> Result<Sender, ProxyError> {
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
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "instance connection ended with an error");
            }
        });
        Ok(sender)
    }
}
