//! [`ApiError`]: every way a request or the server itself can fail, and how each one looks to a
//! client. Bad input is always a 4xx naming what was wrong; anything unexpected is logged with
//! its cause and shown to the client as an opaque 500 (or 503 when a retry may help).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use strata_core::domain::ProductId;
use strata_core::http::error_response;
use strata_store::StoreError;

/// The longest piece of client input repeated in an error message; longer input is cut, so an
/// error body never grows with a hostile request.
const MAX_ECHO_CHARS: usize = 40;

/// Everything that can go wrong in the api role.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query string key or value is not acceptable (400 `invalid_query`).
    #[error("{0}")]
    InvalidQuery(String),
    /// A path id is not a positive integer (400 `invalid_id`).
    #[error("id must be a positive integer, got `{}`", echo(.0))]
    InvalidId(String),
    /// No product has this id (404 `not_found`).
    #[error("no product with id {0}")]
    ProductNotFound(ProductId),
    /// The request declares a body larger than the limit (413 `payload_too_large`).
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit, `ApiSettings::max_body_bytes`.
        limit: usize,
    },
    /// The store could not be reached in time: a retry may succeed (503 `unavailable`).
    #[error("store unavailable: {0}")]
    StoreUnavailable(#[source] StoreError),
    /// The store failed in a way a retry will not fix (500 `internal`).
    #[error("store failed: {0}")]
    Store(#[source] StoreError),
    /// A response could not be encoded as JSON (500 `internal`): a bug.
    #[error("cannot encode a response: {0}")]
    Encode(#[from] serde_json::Error),
    /// Something that should not happen did (500 `internal`): a bug, described for the logs.
    #[error("unexpected: {0}")]
    Unexpected(String),
    /// The settings given to `ApiServer::build` make no sense.
    #[error("invalid api settings: {0}")]
    Settings(&'static str),
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

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if err.is_transient() {
            Self::StoreUnavailable(err)
        } else {
            Self::Store(err)
        }
    }
}

impl ApiError {
    /// The HTTP status and the machine-readable code a client sees.
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            Self::ProductNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Store(_)
            | Self::Encode(_)
            | Self::Unexpected(_)
            | Self::Settings(_)
            | Self::Bind { .. }
            | Self::Serve(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            // The cause stays in the logs (inside the request's span, so with its request id);
            // the client learns only that it was not its fault.
            tracing::error!(error = %self, "request failed");
            let message = if status == StatusCode::SERVICE_UNAVAILABLE {
                "a backend is unavailable, try again later"
            } else {
                "internal error"
            };
            return error_response(status, code, message);
        }
        error_response(status, code, self.to_string())
    }
}

/// Client input as repeated in a message: cut to [`MAX_ECHO_CHARS`] characters.
pub(crate) fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn client_errors_name_the_problem_and_server_errors_hide_it() {
        let (status, body) = body_of(ApiError::InvalidId("abc".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_id");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("`abc`"),
            "{body}"
        );

        let (status, body) = body_of(ApiError::Unexpected("secret detail".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("secret"), "{body}");

        // A store error that a retry will not fix is a 500, not a 503.
        let store = ApiError::from(StoreError::MissingScheme);
        assert!(matches!(store, ApiError::Store(_)));
        assert_eq!(
            store.status_and_code(),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
    }

    #[test]
    fn echoed_input_is_bounded() {
        assert_eq!(echo("abc"), "abc");
        let long = "é".repeat(100);
        assert_eq!(echo(&long).chars().count(), MAX_ECHO_CHARS + 1);
    }
}
