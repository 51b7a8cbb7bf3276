//! [`WorkerError`]: every way the worker role can fail, and how each one looks to a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_core::http::{RoleError, error_response};

/// Everything that can go wrong in the worker role.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker cannot start or stopped serving: an address that cannot be bound, a
    /// failed listener.
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The bus failed.
    #[error("bus: {0}")]
    Bus(#[from] strata_bus::BusError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] strata_store::StoreError),
    /// A request to the operations endpoints was malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The operations endpoints need the admin token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
}

impl IntoResponse for WorkerError {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(message) => {
                error_response(StatusCode::BAD_REQUEST, "bad_request", message)
            }
            Self::Unauthorized => {
                error_response(StatusCode::UNAUTHORIZED, "unauthorized", self.to_string())
            }
            Self::Bus(_) | Self::Store(_) => {
                tracing::warn!(error = %self, "backend unavailable");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a backend is unavailable; try again",
                )
            }
            Self::Role(_) => {
                tracing::error!(error = %self, "request failed");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}
