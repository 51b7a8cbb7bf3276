//! [`ChatError`]: every way the chat role can fail, and how each one looks to a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_core::http::{RoleError, error_response};

use crate::ROLE;

/// Everything that can go wrong in the chat role.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The instance cannot start or stopped serving: bad settings, an address that cannot
    /// be bound, a failed listener.
    #[error(transparent)]
    Role(#[from] RoleError),
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

impl ChatError {
    /// Settings of a chat instance that cannot work; `reason` names the setting.
    pub(crate) fn settings(reason: &'static str) -> Self {
        Self::Role(RoleError::Settings { role: ROLE, reason })
    }
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
            ChatError::Role(_) => {
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
