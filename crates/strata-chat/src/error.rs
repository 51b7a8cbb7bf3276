//! [`ChatError`]: every way the chat role can fail, and how each one looks to a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_core::http::error_response;

/// Everything that can go wrong in the chat role.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A setting cannot work (zero heartbeat, empty buffer).
    #[error("invalid chat settings: {0}")]
    Settings(&'static str),
    /// No valid token (401).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// The caller may not use this room (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Not a room id (404).
    #[error("unknown room: {0}")]
    UnknownRoom(&'static str),
    /// A malformed request (400), with its error code.
    #[error("{1}")]
    BadRequest(&'static str, String),
    /// The instance is draining or a backend is down (503).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            ChatError::Unauthorized(m) => {
                error_response(StatusCode::UNAUTHORIZED, "unauthorized", m)
            }
            ChatError::Forbidden(m) => error_response(StatusCode::FORBIDDEN, "forbidden", m),
            ChatError::UnknownRoom(m) => error_response(StatusCode::NOT_FOUND, "unknown_room", m),
            ChatError::BadRequest(code, m) => error_response(StatusCode::BAD_REQUEST, code, m),
            ChatError::Unavailable(m) => {
                tracing::warn!(cause = %m, "unavailable");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "try again shortly",
                )
            }
            ChatError::Bind { .. } | ChatError::Serve(_) | ChatError::Settings(_) => {
                tracing::error!(error = %message, "request failed");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}
