//! Errors as data: who failed (client, upstream instance, gateway) and whether repeating the
//! request is safe, so the retry policy and the response mapping read fields, not messages.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// Why the gateway could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A listener could not be bound (address in use, permission, bad interface).
    #[error("gateway: cannot bind the {listener} listener on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The gateway configuration is unusable; every problem is listed.
    #[error("gateway: invalid configuration: {}", .problems.join("; "))]
    Config { problems: Vec<String> },
}

/// The party whose failure ended a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The client: a body too large, too slow or cut off.
    Client,
    /// The instance the request was proxied to: unreachable, reset, slow or speaking nonsense.
    Upstream,
    /// The gateway itself: nobody to send the request to.
    Gateway,
}

/// Whether sending the same request again, to another instance, is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetrySafety {
    /// The request never reached an instance (refused, connect timeout): no byte of it was
    /// written, nor of its body read from the client, so any request may go to another one.
    NotSent,
    /// The request was written but no response byte came back: the instance may have acted on
    /// it, so only an idempotent request (or one with an `Idempotency-Key`) may be repeated.
    MaybeProcessed,
    /// Repeating cannot help or is not allowed: the client's fault, a response already began,
    /// or the deadline is spent.
    Never,
}

/// Label values of `strata_gateway_upstream_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    ConnectTimeout,
    Reset,
    Refused,
    Protocol,
    Timeout,
}

impl UpstreamErrorKind {
    /// Every kind, in the order of [`UpstreamErrorKind::index`].
    pub const ALL: [Self; 6] = [
        Self::Connect,
        Self::ConnectTimeout,
        Self::Reset,
        Self::Refused,
        Self::Protocol,
        Self::Timeout,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::ConnectTimeout => "connect_timeout",
            Self::Reset => "reset",
            Self::Refused => "refused",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
        }
    }

    /// Position in [`UpstreamErrorKind::ALL`], for pre-created per-kind counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why one proxied request failed. Each variant knows its [`Party`], its [`RetrySafety`] and
/// the status and JSON `code` the client receives.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The route's pool is not configured or has no instance.
    #[error("pool `{pool}` has no instance")]
    NoInstance { pool: Arc<str> },
    /// Every instance of the pool is down, ejected or at its in-flight limit (and the pool
    /// does not fail open).
    #[error("pool `{pool}` has no healthy instance")]
    NoHealthyInstance { pool: Arc<str> },
    /// The request is malformed or ambiguous in a way the gateway must not forward (a missing,
    /// repeated or invalid `Host`; conflicting body framing): what is wrong, for the client.
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// No routing rule (`gateway.routes`) matches the request.
    #[error("no routing rule matches the request")]
    NoRoute,
    /// The path is one of the instances' operational endpoints, not served publicly.
    #[error("not served on the public listener: {0}")]
    NotPublic(String),
    /// The request body is larger than `gateway.max_body_bytes`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// Reading the client's body failed (connection cut mid-body, bad chunk framing).
    #[error("reading the client's body failed: {0}")]
    ClientBody(#[source] hyper::Error),
    /// The client did not finish sending a body the gateway had to buffer before the deadline.
    #[error("the client did not send its body within {0:?}")]
    ClientTimeout(Duration),
    /// TCP connect to the instance failed (refused, unreachable, reset).
    #[error("cannot connect to the instance: {0}")]
    Connect(#[source] io::Error),
    /// TCP connect to the instance took longer than `gateway.connect_timeout_ms`.
    #[error("connecting to the instance took longer than {0:?}")]
    ConnectTimeout(Duration),
    /// The connection closed or reset after the request was written, before any response byte.
    #[error("the instance closed the connection before responding: {0}")]
    Reset(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The instance refused the request's HTTP/2 stream without processing it: it reset the
    /// stream with `REFUSED_STREAM`, or the stream was beyond the last one its `GOAWAY`
    /// accepted (RFC 9113 §8.7). The request's body had not been read from the client yet.
    #[error("the instance refused the request without processing it: {0}")]
    Refused(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The instance answered with something that is not valid HTTP.
    #[error("the instance sent an invalid response: {0}")]
    Protocol(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No response head within `gateway.request_timeout_ms`.
    #[error("no response from the instance within {0:?}")]
    Timeout(Duration),
}

impl ProxyError {
    /// Who failed.
    pub fn party(&self) -> Party {
        match self {
            Self::NoInstance { .. } | Self::NoHealthyInstance { .. } => Party::Gateway,
            Self::BadRequest(_)
            | Self::NoRoute
            | Self::NotPublic(_)
            | Self::BodyTooLarge { .. }
            | Self::ClientBody(_)
            | Self::ClientTimeout(_) => Party::Client,
            Self::Connect(_)
            | Self::ConnectTimeout(_)
            | Self::Reset(_)
            | Self::Refused(_)
            | Self::Protocol(_)
            | Self::Timeout(_) => Party::Upstream,
        }
    }

    /// Whether the request may be sent again to another instance.
    pub fn retry_safety(&self) -> RetrySafety {
        match self {
            // A refused stream was not processed (RFC 9113 §8.7), whatever its method.
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Refused(_) => RetrySafety::NotSent,
            Self::Reset(_) => RetrySafety::MaybeProcessed,
            Self::NoInstance { .. }
            | Self::NoHealthyInstance { .. }
            | Self::BadRequest(_)
            | Self::NoRoute
            | Self::NotPublic(_)
            | Self::BodyTooLarge { .. }
            | Self::ClientBody(_)
            | Self::ClientTimeout(_)
            | Self::Protocol(_)
            | Self::Timeout(_) => RetrySafety::Never,
        }
    }

    /// The metric kind of an upstream failure; `None` when the instance is not to blame.
    pub fn upstream_kind(&self) -> Option<UpstreamErrorKind> {
        match self {
            Self::Connect(_) => Some(UpstreamErrorKind::Connect),
            Self::ConnectTimeout(_) => Some(UpstreamErrorKind::ConnectTimeout),
            Self::Reset(_) => Some(UpstreamErrorKind::Reset),
            Self::Refused(_) => Some(UpstreamErrorKind::Refused),
            Self::Protocol(_) => Some(UpstreamErrorKind::Protocol),
            Self::Timeout(_) => Some(UpstreamErrorKind::Timeout),
            Self::NoInstance { .. }
            | Self::NoHealthyInstance { .. }
            | Self::BadRequest(_)
            | Self::NoRoute
            | Self::NotPublic(_)
            | Self::BodyTooLarge { .. }
            | Self::ClientBody(_)
            | Self::ClientTimeout(_) => None,
        }
    }

    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoInstance { .. } | Self::NoHealthyInstance { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_) | Self::ClientBody(_) => StatusCode::BAD_REQUEST,
            Self::NotPublic(_) | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Reset(_) | Self::Refused(_) => {
                StatusCode::BAD_GATEWAY
            }
            Self::Protocol(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The machine-readable `code` of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoInstance { .. } => "no_instance",
            Self::NoHealthyInstance { .. } => "no_healthy_instance",
            Self::BadRequest(_) => "bad_request",
            Self::NotPublic(_) => "not_found",
            Self::NoRoute => "no_route",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::ClientBody(_) => "bad_request_body",
            Self::ClientTimeout(_) => "request_body_timeout",
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Reset(_) | Self::Refused(_) => {
                "upstream_unavailable"
            }
            Self::Protocol(_) => "upstream_invalid_response",
            Self::Timeout(_) => "upstream_timeout",
        }
    }

    /// Whether the client's connection must close after the answer: its framing can no
    /// longer be trusted (a malformed request, a body that could not be read), so whatever
    /// follows on it is not read as another request.
    pub fn closes_connection(&self) -> bool {
        matches!(self, Self::BadRequest(_) | Self::ClientBody(_))
    }

    /// The message shown to the client: what happened, without internal addresses or causes
    /// (those go to the log).
    pub fn public_message(&self) -> String {
        match self {
            Self::NoInstance { pool } => format!("no instance of pool `{pool}` is available"),
            Self::NoHealthyInstance { pool } => {
                format!("no instance of pool `{pool}` is healthy; try again shortly")
            }
            Self::BadRequest(what) => (*what).to_owned(),
            Self::NotPublic(_) => "no such resource".to_owned(),
            Self::NoRoute => "no route serves this request".to_owned(),
            Self::BodyTooLarge { limit } => format!("request body larger than {limit} bytes"),
            Self::ClientBody(_) => "the request body could not be read".to_owned(),
            Self::ClientTimeout(_) => "the request body was not received in time".to_owned(),
            Self::Connect(_) | Self::ConnectTimeout(_) | Self::Reset(_) | Self::Refused(_) => {
                "no instance could take the request".to_owned()
            }
            Self::Protocol(_) => "the instance sent an invalid response".to_owned(),
            Self::Timeout(_) => "the instance did not respond in time".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failures_are_upstream_and_not_sent() {
        let err = ProxyError::Connect(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(err.party(), Party::Upstream);
        assert_eq!(err.retry_safety(), RetrySafety::NotSent);
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(err.code(), "upstream_unavailable");
        assert_eq!(err.upstream_kind(), Some(UpstreamErrorKind::Connect));
    }

    #[test]
    fn client_and_gateway_failures_never_retry() {
        let too_large = ProxyError::BodyTooLarge { limit: 10 };
        assert_eq!(too_large.party(), Party::Client);
        assert_eq!(too_large.retry_safety(), RetrySafety::Never);
        assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(too_large.upstream_kind(), None);
        let none = ProxyError::NoInstance {
            pool: "chat".into(),
        };
        assert_eq!(none.party(), Party::Gateway);
        assert_eq!(none.code(), "no_instance");
        let timeout = ProxyError::Timeout(Duration::from_secs(1));
        assert_eq!(
            (timeout.status(), timeout.code()),
            (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
        );
        assert_eq!(timeout.retry_safety(), RetrySafety::Never);
    }

    #[test]
    fn refused_streams_are_upstream_and_never_processed() {
        let err = ProxyError::Refused("REFUSED_STREAM".into());
        assert_eq!(err.party(), Party::Upstream);
        assert_eq!(err.retry_safety(), RetrySafety::NotSent);
        assert_eq!(err.upstream_kind(), Some(UpstreamErrorKind::Refused));
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn upstream_kinds_index_their_table() {
        for (i, kind) in UpstreamErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
