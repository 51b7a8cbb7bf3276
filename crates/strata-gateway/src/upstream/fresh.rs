//! Requests on a connection of their own, which never joins the idle stacks: the WebSocket
//! upgrade (after a `101` the connection is the tunnel) and the active health check (which
//! must also prove the instance accepts connections).

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::h1::BodyReader;
use super::{Body, Conn, Exchange, H1Streaming, Outgoing, Streaming, Upstream};
use crate::error::ProxyError;

/// An instance's answer to an upgrade request.
#[derive(Debug)]
pub enum Upgrade {
    /// `101 Switching Protocols`: the connection now speaks the new protocol.
    Switched(Switched),
    /// Any other answer (a refusal: 400, 401, 426…), to pass on as an ordinary response. Its
    /// connection closes once the body is read or dropped.
    Refused(Exchange),
}

/// The instance's side of a switched connection.
#[derive(Debug)]
pub struct Switched {
    /// The `101`'s headers: `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, the negotiated
    /// protocol and extensions.
    pub headers: HeaderMap,
    /// The raw connection.
    pub stream: TcpStream,
    /// Bytes of the new protocol the instance sent right behind the `101` head.
    pub early: Bytes,
}

impl Upstream {
    /// Sends an upgrade request (written with `upgrade`, see [`Outgoing::new`]) on a fresh
    /// connection and reads the answer's head.
    ///
    /// # Errors
    /// [`ProxyError::Connect`] and [`ProxyError::ConnectTimeout`] when no connection could be
    /// opened (the request never left); [`ProxyError::Reset`] when the connection ended before
    /// any response byte; [`ProxyError::Protocol`] for an invalid response.
    pub async fn upgrade(&self, request: &Outgoing) -> Result<Upgrade, ProxyError> {
        let mut conn = self.shared.connect().await?;
        let bytes = self.shared.with_host(&request.bytes, request.has_host);
        conn.stream
            .write_all(&bytes)
            .await
            .map_err(|error| ProxyError::Reset(Box::new(error)))?;
        let head = conn
            .read_head(request.head_request)
            .await
            .map_err(super::ReadFailure::into_error)?;
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            let Conn { stream, buf, .. } = conn;
            return Ok(Upgrade::Switched(Switched {
                headers: head.headers,
                stream,
                early: buf.freeze(),
            }));
        }
        let body = match conn.take_complete(head.body) {
            Some(bytes) => Body::Complete(bytes),
            None => Body::Streaming(Streaming::H1(H1Streaming {
                conn,
                reader: BodyReader::new(head.body),
                keep_alive: false,
                read: None,
            })),
        };
        Ok(Upgrade::Refused(Exchange {
            status: head.status,
            headers: head.headers,
            body,
        }))
    }

    /// One active health check: `GET path` (an origin-form target) on a fresh connection,
    /// which closes after the answer's head, in the pool's protocol (so a check also proves
    /// the instance speaks h2c when the pool does); the status of that answer. The caller bounds
    /// the time the whole check takes, connect included.
    ///
    /// # Errors
    /// As [`Upstream::upgrade`], with [`ProxyError::Connect`] for a connect that failed.
    pub async fn probe(&self, path: &str) -> Result<StatusCode, ProxyError> {
        if self.shared.h2c.load(std::sync::atomic::Ordering::Relaxed) {
            return self.shared.probe_h2(path).await;
        }
        let mut conn = self.shared.open().await?;
        let mut head = Vec::with_capacity(128 + path.len());
        for part in [
            b"GET ".as_slice(),
            path.as_bytes(),
            b" HTTP/1.1\r\nhost: ",
            self.shared.authority.as_bytes(),
            b"\r\nuser-agent: strata-gateway-health\r\nconnection: close\r\n\r\n",
        ] {
            head.extend_from_slice(part);
        }
        conn.stream
            .write_all(&head)
            .await
            .map_err(|error| ProxyError::Reset(Box::new(error)))?;
        let head = conn
            .read_head(false)
            .await
            .map_err(super::ReadFailure::into_error)?;
        Ok(head.status)
    }
}
