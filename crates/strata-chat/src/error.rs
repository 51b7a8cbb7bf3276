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
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        // No variant is the client's fault yet: log the cause, show an opaque 500.
        tracing::error!(error = %self, "request failed");
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}
