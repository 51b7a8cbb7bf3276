//! Request extractors whose every rejection is an [`ApiError`], so a bad request always gets
//! the JSON error body (never axum's plain-text rejections) and never a 5xx.
//!
//! - [`Json<T>`]: the body, `Content-Type: application/json`, decoded into `T`. Bad syntax is a
//!   400 `malformed_json`; a wrong type, a missing or (with `#[serde(deny_unknown_fields)]`,
//!   which every request DTO uses) unknown field is a 422 `invalid_body` naming the path of
//!   the field (`items[2].quantity`); another content type is a 415; a body over the limit
//!   (`ApiSettings::max_body_bytes`) is a 413. As a response, `Json(value)` is a 200 with the
//!   encoded value.
//! - [`Query<T>`]: the query string decoded into `T`; any failure is a 400 `invalid_query`.
//!
//! Messages repeat at most a bounded amount of the client's input ([`MAX_MESSAGE_CHARS`]).

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The longest error message built from a decoder's report: serde's messages quote the
/// offending input (an unknown field's name, a string of the wrong type), which a hostile
/// client could make megabytes long.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// A JSON request body decoded into `T`, or a JSON response body (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(request.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map_or(0, |limit| limit.0);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_rejection(&rejection, limit))?;
        decode(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Decodes a JSON body, classifying failures into the client's two kinds of mistakes.
///
/// # Errors
/// [`ApiError::MalformedJson`] for bad syntax, [`ApiError::InvalidBody`] for a wrong shape.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Two passes, so that the two kinds of mistakes are told apart reliably: decoding straight
    // into `T` reports whichever problem it meets first (an unknown field before a syntax
    // error further on), and serde_json calls some type mismatches syntax errors. The first
    // pass checks the syntax only (building nothing); the second decodes from the bytes
    // again, which keeps serde's checks a `Value` would lose (a field given twice).
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
        ApiError::MalformedJson(format!("malformed JSON: {}", bounded(&e.to_string())))
    })?;
    // Every request body of the api is an object. serde would otherwise accept an array for a
    // struct (`[1, 2]` as `{"product_id": 1, "quantity": 2}`), binding values by position.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::InvalidBody("expected a JSON object".into()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = bounded(&e.into_inner().to_string());
        if path == "." || path.is_empty() {
            ApiError::InvalidBody(message)
        } else {
            ApiError::InvalidBody(bounded(&format!("at `{path}`: {message}")))
        }
    })
}

/// `application/json`, or any `application/<something>+json`, with any parameters.
fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body limit of the router, as a request extension (set by `ApiServer`), so the 413's
/// message can name it: axum's rejection does not carry it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit(pub usize);

/// The body could not be read: over the limit (413), or the connection failed (400).
fn body_rejection(rejection: &BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::MalformedJson(format!(
            "cannot read the request body: {}",
            bounded(&rejection.body_text())
        ))
    }
}

/// A query string decoded into `T` (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| ApiError::InvalidQuery(bounded(&e.body_text())))
    }
}

/// The single `{id}` of a route, parsed as a positive `i64` (digits only, no sign, no
/// spaces); anything else is a 400 `invalid_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(raw)) => raw,
            // Percent-encoded bytes that are not UTF-8, for instance: still the client's input.
            Err(axum::extract::rejection::PathRejection::FailedToDeserializePathParams(_)) => {
                return Err(ApiError::InvalidId("(text that is not UTF-8)".into()));
            }
            Err(e) => return Err(ApiError::Unexpected(format!("id path: {e}"))),
        };
        let digits = !raw.is_empty() && raw.len() <= 18 && raw.bytes().all(|b| b.is_ascii_digit());
        match digits.then(|| raw.parse::<i64>().ok()).flatten() {
            Some(id) if id > 0 => Ok(Self(id)),
            _ => Err(ApiError::InvalidId(raw)),
        }
    }
}

/// `text` cut to [`MAX_MESSAGE_CHARS`] characters.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
        quantity: u32,
    }

    #[test]
    fn good_bodies_decode() {
        let body: Body = decode(br#" {"name": "a", "quantity": 2} "#).unwrap();
        assert_eq!(
            body,
            Body {
                name: "a".into(),
                quantity: 2
            }
        );
    }

    #[test]
    fn syntax_errors_are_malformed_and_shape_errors_invalid() {
        for bad in [
            &b"{"[..],
            b"",
            b"nope",
            b"{\"name\": \"a\", \"quantity\": 1} x",
        ] {
            assert!(
                matches!(decode::<Body>(bad), Err(ApiError::MalformedJson(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let cases: &[(&[u8], &str)] = &[
            (br#"{"name": 1, "quantity": 1}"#, "name"),
            (br#"{"name": "a", "quantity": -1}"#, "quantity"),
            (br#"{"name": "a"}"#, "quantity"),
            (br#"{"name": "a", "quantity": 1, "extra": true}"#, "extra"),
            (br#"[]"#, "object"),
            (br#"["a", 1]"#, "object"),
            (br#" "text""#, "object"),
            (br#"null"#, "object"),
            (
                br#"{"name": "a", "quantity": 1, "name": "b"}"#,
                "duplicate field",
            ),
            (br#"{"name": ["a"], "quantity": 1}"#, "name"),
        ];
        for (bad, mentions) in cases {
            match decode::<Body>(bad) {
                Err(ApiError::InvalidBody(message)) => {
                    assert!(message.contains(mentions), "{message}");
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[test]
    fn messages_stay_short_whatever_the_input() {
        let field = "x".repeat(10_000);
        let body = format!(r#"{{"name": "a", "quantity": 1, "{field}": 1}}"#);
        let Err(ApiError::InvalidBody(message)) = decode::<Body>(body.as_bytes()) else {
            panic!("expected invalid_body");
        };
        assert!(
            message.chars().count() <= MAX_MESSAGE_CHARS + 1,
            "{}",
            message.len()
        );
    }

    #[test]
    fn json_content_types_are_recognised() {
        let ok = |v: &'static str| is_json(Some(&axum::http::HeaderValue::from_static(v)));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/JSON"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!is_json(None));
    }
}
