//! [`ApiError`]: every way a request or the server itself can fail, and how each one looks to a
//! client. Bad input is always a 4xx naming what was wrong; anything unexpected is logged with
//! its cause and shown to the client as an opaque 500 (or 503 when a retry may help).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_core::domain::ProductId;
use strata_core::http::{RoleError, error_response};
use strata_objects::ObjectsError;
use strata_store::StoreError;

use crate::ROLE;

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
    /// The product has no image, or there is no such product (404 `not_found`).
    #[error("no image for product {0}")]
    ImageNotFound(ProductId),
    /// An image upload declares a type other than PNG, JPEG or WebP (415
    /// `unsupported_media_type`).
    #[error("expected `Content-Type` image/png, image/jpeg or image/webp, got `{}`", echo(.0))]
    UnsupportedImageType(String),
    /// An image upload whose bytes are not of its declared type, or empty (400
    /// `invalid_image`).
    #[error("{0}")]
    InvalidImage(String),
    /// `/static/{name}` names no file of the pages (404 `not_found`).
    #[error("no asset named `{}`", echo(.0))]
    AssetNotFound(String),
    /// The request body is not JSON at all: bad syntax, cut short, empty (400
    /// `malformed_json`).
    #[error("{0}")]
    MalformedJson(String),
    /// The request body is JSON of the wrong shape: a wrong type, a missing or unknown field
    /// (422 `invalid_body`).
    #[error("{0}")]
    InvalidBody(String),
    /// A field is well-formed JSON but not an acceptable value: an email that is not one, a
    /// password too short (422 `invalid_field`). The message names the field.
    #[error("`{field}`: {message}")]
    InvalidField {
        /// The field, as named in the request body.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The body is not declared as JSON (415 `unsupported_media_type`).
    #[error("expected a JSON body with `Content-Type: application/json`")]
    UnsupportedMediaType,
    /// No credentials, or a token that is missing, malformed, expired or not ours (401
    /// `unauthorized`, with `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated, but the role does not allow this (403 `forbidden`).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Log-in with an unknown email or a wrong password: the two look the same (401
    /// `invalid_credentials`).
    #[error("email or password is wrong")]
    InvalidCredentials,
    /// Too many failed log-ins for this email or client lately (429 `too_many_attempts`, with
    /// `Retry-After`).
    #[error("too many failed log-in attempts, try again in {} s", .retry_after.as_secs())]
    TooManyAttempts {
        /// When the client may try again.
        retry_after: std::time::Duration,
    },
    /// Registration with an email that has an account already (409 `email_taken`).
    #[error("an account with this email exists already")]
    EmailTaken,
    /// A new product with the sku of an existing one (409 `sku_taken`).
    #[error("a product with this sku exists already")]
    SkuTaken,
    /// No account has this id (404 `not_found`).
    #[error("no user with id {0}")]
    UserNotFound(i64),
    /// Password hashing or token signing failed (500 `internal`): a bug or exhausted memory.
    #[error("credentials: {0}")]
    Credentials(String),
    /// The items of a quote cannot be priced (422; the code names the reason: `too_many_lines`,
    /// `invalid_quantity`, `duplicate_product`, `unknown_region`, `price_overflow`).
    #[error("{0}")]
    Price(#[from] crate::prices::PriceError),
    /// A request body names a product that does not exist (422 `unknown_product`).
    #[error("no product with id {0}")]
    UnknownProduct(i64),
    /// A cart change would break a cart limit: more than 99 units on a line or more than 50
    /// lines (422 `cart_limit`).
    #[error("{0}")]
    CartLimit(String),
    /// The product has no line in the caller's cart (404 `not_in_cart`).
    #[error("product {0} is not in the cart")]
    NotInCart(i64),
    /// Checkout of an empty cart (422 `empty_cart`).
    #[error("the cart is empty")]
    EmptyCart,
    /// The coupon asked for at checkout does not apply (422 `coupon_rejected`).
    #[error("coupon `{code}` cannot be used: {reason}")]
    CouponRejected {
        /// The code asked for.
        code: String,
        /// Why it does not apply.
        reason: &'static str,
    },
    /// Not enough stock for a cart line: nothing was reserved (409 `out_of_stock`).
    #[error("only {available} of `{}` (product {product_id}) in stock, {requested} in the cart", echo(.name))]
    OutOfStock {
        /// The product.
        product_id: i64,
        /// Its name.
        name: String,
        /// Units in the cart.
        requested: i64,
        /// Units on hand.
        available: i64,
    },
    /// `POST /orders` without an `Idempotency-Key` header (400 `idempotency_key_required`).
    #[error("the `Idempotency-Key` header is required: 1 to 128 printable ASCII characters")]
    IdempotencyKeyRequired,
    /// An `Idempotency-Key` that is empty, too long or not printable ASCII (400
    /// `invalid_idempotency_key`).
    #[error("`Idempotency-Key` must be 1 to 128 printable ASCII characters")]
    InvalidIdempotencyKey,
    /// The `Idempotency-Key` was used before with a different body (422
    /// `idempotency_key_reused`).
    #[error("this `Idempotency-Key` was already used with a different request body")]
    IdempotencyKeyReused,
    /// No order with this id that the caller may see (404 `not_found`).
    #[error("no order with id {0}")]
    OrderNotFound(i64),
    /// The request declares a body larger than the limit (413 `payload_too_large`).
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit, `ApiSettings::max_body_bytes`.
        limit: usize,
    },
    /// A local cart change could not be made durable (its log or snapshot failed): the
    /// change was not acknowledged (503 `unavailable`).
    #[error("cart log: {0}")]
    CartLog(String),
    /// Local carts: the cart's instance cannot be reached, or the cart is being handed to
    /// another instance (503 `cart_unavailable`, `Retry-After: 1`): a retry succeeds once
    /// the instance is back or the hand-over is done. Never answered with another cart.
    #[error("cart unavailable: {0}")]
    CartUnavailable(String),
    /// Local carts: this instance no longer owns the cart (the membership changed under the
    /// request); the carts layer routes the request again (503 `cart_unavailable` if it
    /// ever reaches a client).
    #[error("the cart moved to another instance")]
    CartMoved,
    /// The store could not be reached in time: a retry may succeed (503 `unavailable`).
    #[error("store unavailable: {0}")]
    StoreUnavailable(#[source] StoreError),
    /// The object store failed: 503 `unavailable` when a retry may help, 500 `internal`
    /// otherwise.
    #[error("object store: {0}")]
    Objects(#[from] ObjectsError),
    /// The store failed in a way a retry will not fix (500 `internal`).
    #[error("store failed: {0}")]
    Store(#[source] StoreError),
    /// A response could not be encoded as JSON (500 `internal`): a bug.
    #[error("cannot encode a response: {0}")]
    Encode(#[from] serde_json::Error),
    /// Something that should not happen did (500 `internal`): a bug, described for the logs.
    #[error("unexpected: {0}")]
    Unexpected(String),
    /// The instance cannot start or stopped serving: bad settings, an address that cannot
    /// be bound, a failed listener.
    #[error(transparent)]
    Role(#[from] RoleError),
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
    /// Settings of an api instance that make no sense; `reason` names the setting.
    pub(crate) fn settings(reason: &'static str) -> Self {
        Self::Role(RoleError::Settings { role: ROLE, reason })
    }

    /// The HTTP status and the machine-readable code a client sees.
    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::InvalidId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            Self::ProductNotFound(_) | Self::AssetNotFound(_) | Self::ImageNotFound(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            Self::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
            Self::UnsupportedMediaType | Self::UnsupportedImageType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::InvalidImage(_) => (StatusCode::BAD_REQUEST, "invalid_image"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Self::TooManyAttempts { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            Self::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            Self::SkuTaken => (StatusCode::CONFLICT, "sku_taken"),
            Self::UserNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Price(e) => (e.status(), e.code()),
            Self::UnknownProduct(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_product"),
            Self::CartLimit(_) => (StatusCode::UNPROCESSABLE_ENTITY, "cart_limit"),
            Self::NotInCart(_) => (StatusCode::NOT_FOUND, "not_in_cart"),
            Self::EmptyCart => (StatusCode::UNPROCESSABLE_ENTITY, "empty_cart"),
            Self::CouponRejected { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "coupon_rejected"),
            Self::OutOfStock { .. } => (StatusCode::CONFLICT, "out_of_stock"),
            Self::IdempotencyKeyRequired => (StatusCode::BAD_REQUEST, "idempotency_key_required"),
            Self::InvalidIdempotencyKey => (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            Self::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            Self::OrderNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::StoreUnavailable(_) | Self::CartLog(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Self::CartUnavailable(_) | Self::CartMoved => {
                (StatusCode::SERVICE_UNAVAILABLE, "cart_unavailable")
            }
            Self::Objects(e) if e.is_transient() => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Self::Store(_)
            | Self::Credentials(_)
            | Self::Encode(_)
            | Self::Unexpected(_)
            | Self::Objects(_)
            | Self::Role(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
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
            let mut response = error_response(status, code, message);
            if matches!(self, Self::CartUnavailable(_) | Self::CartMoved) {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
            }
            return response;
        }
        let mut response = error_response(status, code, self.to_string());
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyAttempts { retry_after } => {
                // At least one second: `Retry-After: 0` would invite an immediate retry.
                let secs = retry_after.as_secs().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        response
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
