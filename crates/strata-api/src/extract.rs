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
//! - [`Valid<T>`] and [`ValidQuery<T>`]: a body or a query string decoded into its wire form
//!   (the DTO the OpenAPI document describes) and then parsed into `T` ([`FromWire`]), so a
//!   handler receives values that are already valid.
//! - [`PathId<T>`]: the `{id}` of a route as one of the id types of `strata_core::domain`.
//!
//! The values a request carries are parsed here too, into types that cannot hold a wrong
//! value: [`Quantity`], [`PriceCents`], [`Region`] and [`CouponCode`]. Each one's refusal is
//! mapped by its caller to the error of its context (a quantity over the limit is
//! `cart_limit` in the cart, `invalid_quantity` in a quote).
//!
//! Messages repeat at most a bounded amount of the client's input ([`MAX_MESSAGE_CHARS`]).
//!
//! The OpenAPI document describes these values with the schemas of [`schema`], built from the
//! same constants as the parsers (`#[schema(schema_with = …)]` on the DTOs' fields), so the
//! document cannot promise a limit other than the one enforced. Integers in bodies are read
//! with [`whole_number`]: JSON Schema's `integer` includes `62.0`, so the server takes it too.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_core::domain::InvalidId;
use strata_store::{MAX_COUPON_CODE_LEN, MAX_LINE_QUANTITY, normalize_coupon_code};

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
        decode(&read_body(request, state, is_json).await?).map(Json)
    }
}

/// The body of `request` when its media type (lowercase, without parameters) is one `accepts`
/// ([`ApiError::UnsupportedMediaType`] otherwise), read within the router's limit: the one way
/// the api's bodies and the pages' forms are read.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`], or the 413/400 of [`body_rejection`].
pub(crate) async fn read_body<S: Send + Sync>(
    request: Request,
    state: &S,
    accepts: fn(&str) -> bool,
) -> Result<Bytes, ApiError> {
    if !media_type(request.headers().get(header::CONTENT_TYPE))
        .as_deref()
        .is_some_and(accepts)
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map_or(0, |limit| limit.0);
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| body_rejection(&rejection, limit))
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

/// The media type of a `Content-Type`: lowercase, without its parameters.
fn media_type(content_type: Option<&axum::http::HeaderValue>) -> Option<String> {
    let value = content_type?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// `application/json`, or any `application/<something>+json` (a [`media_type`]).
fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The body limit of the router, as a request extension (set by `ApiServer`), so the 413's
/// message can name it: axum's rejection does not carry it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit(pub usize);

/// The body could not be read: over the limit (413), or the connection failed (400).
pub(crate) fn body_rejection(rejection: &BytesRejection, limit: usize) -> ApiError {
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

/// A request value decoded from its wire form and then checked: what [`Valid`] and
/// [`ValidQuery`] hand to a handler.
pub trait FromWire: Sized {
    /// The decoded form, as the client sends it and the OpenAPI document describes it (a
    /// `#[serde(deny_unknown_fields)]` DTO).
    type Wire: DeserializeOwned;

    /// Checks the decoded form.
    ///
    /// # Errors
    /// The [`ApiError`] the client sees for the first value that is not acceptable.
    fn from_wire(wire: Self::Wire) -> Result<Self, ApiError>;
}

/// A JSON body decoded as `T::Wire` (with [`Json`]'s rules) and parsed into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Valid<T>(pub T);

impl<T, S> FromRequest<S> for Valid<T>
where
    T: FromWire,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(wire) = Json::<T::Wire>::from_request(request, state).await?;
        T::from_wire(wire).map(Valid)
    }
}

/// A query string decoded as `T::Wire` (with [`Query`]'s rules) and parsed into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ValidQuery<T>
where
    T: FromWire,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(wire) = Query::<T::Wire>::from_request_parts(parts, state).await?;
        T::from_wire(wire).map(ValidQuery)
    }
}

/// The single `{id}` of a route, parsed as the id type `T` (`ProductId`, `OrderId`, `UserId`);
/// anything but a positive integer is a 400 `invalid_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathId<T>(pub T);

impl<T, S> FromRequestParts<S> for PathId<T>
where
    T: std::str::FromStr<Err = InvalidId>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(raw)) => raw,
            // Percent-encoded bytes that are not UTF-8, for instance: still the client's input.
            Err(axum::extract::rejection::PathRejection::FailedToDeserializePathParams(e)) => {
                tracing::debug!(error = %e.body_text(), "undecodable path id");
                return Err(ApiError::InvalidId("(text that is not UTF-8)".into()));
            }
            Err(e) => return Err(ApiError::Unexpected(format!("id path: {e}"))),
        };
        raw.parse().map(Self).map_err(|_| ApiError::InvalidId(raw))
    }
}

/// Reads a JSON integer field: `62` or `62.0` (a number with no fractional part, which JSON
/// Schema's `integer` includes), within `i64`. `62.5`, `"62"` and numbers beyond `i64` are
/// refused (`invalid_body`). Use with `#[serde(deserialize_with = "whole_number")]`.
///
/// # Errors
/// The decoder's error for anything but a whole number within `i64`.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    deserializer.deserialize_any(WholeNumber)
}

/// [`whole_number`] for an optional field (absent or `null`: `None`); use with
/// `#[serde(default, deserialize_with = "optional_whole_number")]`.
///
/// # Errors
/// As [`whole_number`].
pub fn optional_whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionalWholeNumber)
}

struct WholeNumber;

impl serde::de::Visitor<'_> for WholeNumber {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<i64, E> {
        Ok(n)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<i64, E> {
        i64::try_from(n).map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<i64, E> {
        // 2^63 is exactly representable; every whole f64 below it (and from -2^63) fits.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if n.fract() == 0.0 && (-LIMIT..LIMIT).contains(&n) {
            #[allow(clippy::cast_possible_truncation)]
            Ok(n as i64)
        } else {
            Err(E::invalid_value(serde::de::Unexpected::Float(n), &self))
        }
    }
}

struct OptionalWholeNumber;

impl<'de> serde::de::Visitor<'de> for OptionalWholeNumber {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Option<i64>, D::Error> {
        whole_number(deserializer).map(Some)
    }
}

/// Units of one product on a cart, quote or order line: 1 to [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(u32);

impl Quantity {
    /// The most units one line holds: the store's limit (and the schema's CHECK).
    pub const MAX: u32 = MAX_LINE_QUANTITY;

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = QuantityOutOfRange;
    fn try_from(n: i64) -> Result<Self, QuantityOutOfRange> {
        u32::try_from(n)
            .ok()
            .filter(|q| (1..=Self::MAX).contains(q))
            .map(Self)
            .ok_or(QuantityOutOfRange)
    }
}

/// A quantity outside `1..=`[`Quantity::MAX`]; each caller names the error of its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantityOutOfRange;

/// A unit price in integer cents: 0 to [`PriceCents::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PriceCents(i64);

impl PriceCents {
    /// Highest price accepted: 10^12 cents (ten billion in the currency), far above any
    /// product, far below where sums of many lines could overflow an `i64`.
    pub const MAX: i64 = 1_000_000_000_000;

    /// The amount in cents.
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for PriceCents {
    type Error = PriceOutOfRange;
    fn try_from(cents: i64) -> Result<Self, PriceOutOfRange> {
        if (0..=Self::MAX).contains(&cents) {
            Ok(Self(cents))
        } else {
            Err(PriceOutOfRange)
        }
    }
}

impl std::str::FromStr for PriceCents {
    type Err = PriceOutOfRange;
    /// Plain digits only: no sign, spaces or exponent.
    fn from_str(s: &str) -> Result<Self, PriceOutOfRange> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PriceOutOfRange);
        }
        s.parse::<i64>()
            .map_err(|_| PriceOutOfRange)
            .and_then(Self::try_from)
    }
}

/// A price that is not a whole number of cents from 0 to [`PriceCents::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceOutOfRange;

/// The longest region code accepted.
const MAX_REGION_LEN: usize = 16;

/// A region to tax for, as a client names it: spaces around it dropped, upper case, 1 to 16
/// ASCII letters, digits or `-`. Whether the shop knows it is [`crate::prices::quote`]'s to say (`unknown_region`).
/// An empty region (`region=`) asks for the default one: see [`Region::parse_optional`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region(String);

impl Region {
    /// Parses a region as sent.
    ///
    /// # Errors
    /// [`ApiError::InvalidField`] (`region`) for anything but a well-formed code.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let region = raw.trim_matches(' ');
        let valid = !region.is_empty()
            && region.len() <= MAX_REGION_LEN
            && region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(Self(region.to_ascii_uppercase()))
        } else {
            Err(ApiError::InvalidField {
                field: "region",
                message: format!(
                    "a region code is 1 to {MAX_REGION_LEN} letters, digits or `-`, such as `EU-DE`"
                ),
            })
        }
    }

    /// Parses an optional region as sent: absent or empty means the default region.
    ///
    /// # Errors
    /// As [`Region::parse`].
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, ApiError> {
        raw.filter(|r| !r.trim_matches(' ').is_empty())
            .map(Self::parse)
            .transpose()
    }

    /// The normalized code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pattern of [`Region::parse`] (empty allowed, see [`Region::parse_optional`]).
    fn pattern() -> String {
        format!("^ *[A-Za-z0-9-]{{0,{MAX_REGION_LEN}}} *$")
    }
}

/// A coupon code as a client types it, normalized (trimmed, upper case; see
/// `strata_store::normalize_coupon_code`). Whether a coupon has it is the store's to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponCode(String);

impl CouponCode {
    /// Parses a code as sent.
    ///
    /// # Errors
    /// [`ApiError::InvalidField`] (`coupon`) when it cannot be a code at all.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        // Only what the documented pattern allows: the store's normalization would also drop
        // tabs and other white space around the code.
        Some(raw.trim_matches(' '))
            .filter(|code| Self::allowed(code))
            .and_then(normalize_coupon_code)
            .map(Self)
            .ok_or_else(|| ApiError::InvalidField {
                field: "coupon",
                message: format!(
                    "a coupon code is 1 to {MAX_COUPON_CODE_LEN} letters, digits, `-` or `_`"
                ),
            })
    }

    /// Parses an optional code as sent: absent or empty means no coupon.
    ///
    /// # Errors
    /// As [`CouponCode::parse`].
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, ApiError> {
        raw.filter(|c| !c.trim_matches(' ').is_empty())
            .map(Self::parse)
            .transpose()
    }

    /// The normalized code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn allowed(code: &str) -> bool {
        code.len() <= MAX_COUPON_CODE_LEN
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// The pattern of [`CouponCode::parse`] (empty allowed, see [`CouponCode::parse_optional`]).
    fn pattern() -> String {
        format!("^ *[A-Za-z0-9_-]{{0,{MAX_COUPON_CODE_LEN}}} *$")
    }
}

/// The OpenAPI schemas of the values parsed in this module, built from the parsers'
/// constants. Each function is named by a DTO field's `#[schema(schema_with = …)]` (which
/// replaces the field's doc comment, so each carries its description).
pub mod schema {
    use utoipa::openapi::schema::SchemaType;
    use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};

    use super::{CouponCode, PriceCents, Quantity, Region};

    /// An `int64` from `min` to `max`.
    pub fn integer(min: i64, max: i64, description: &str) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min))
            .maximum(Some(max))
            .description(Some(description))
    }

    /// `builder` that also accepts `null` (an optional field, `null` read as absent).
    pub fn nullable(builder: ObjectBuilder, of: Type) -> Object {
        builder
            .schema_type(SchemaType::from_iter([of, Type::Null]))
            .build()
    }

    /// A string matching `pattern`.
    pub fn string(pattern: String, description: &str) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .description(Some(description))
    }

    /// A product id in a body: any positive `int64` (one no product has is `unknown_product`).
    pub fn product_id() -> Object {
        integer(1, i64::MAX, "The product.").build()
    }

    /// Units of a line: 1 to [`Quantity::MAX`].
    pub fn quantity() -> Object {
        integer(
            1,
            i64::from(Quantity::MAX),
            &format!("Units, 1 to {}.", Quantity::MAX),
        )
        .build()
    }

    /// A cart line's new quantity: 0 (removes the line) to [`Quantity::MAX`].
    pub fn new_quantity() -> Object {
        integer(
            0,
            i64::from(Quantity::MAX),
            &format!(
                "The line's new quantity, 0 to {}; 0 removes the line.",
                Quantity::MAX
            ),
        )
        .build()
    }

    /// A price in cents: 0 to [`PriceCents::MAX`].
    pub fn price_cents() -> ObjectBuilder {
        integer(
            0,
            PriceCents::MAX,
            &format!("Unit price in cents, 0 to {}.", PriceCents::MAX),
        )
    }

    fn region_builder() -> ObjectBuilder {
        string(
            Region::pattern(),
            "The region to tax for (absent or empty: `EU-DE`); case does not matter.",
        )
        .examples(["EU-DE"])
    }

    fn coupon_builder() -> ObjectBuilder {
        string(
            CouponCode::pattern(),
            "A coupon code (absent or empty: none); case does not matter.",
        )
        .examples(["WELCOME10"])
    }

    /// A region to tax for in a body: absent, `null` or empty for the default.
    pub fn region() -> Object {
        nullable(region_builder(), Type::String)
    }

    /// A region to tax for in a query string: absent or empty for the default.
    pub fn region_param() -> Object {
        region_builder().build()
    }

    /// A coupon code in a body: absent, `null` or empty for none.
    pub fn coupon() -> Object {
        nullable(coupon_builder(), Type::String)
    }

    /// A coupon code in a query string: absent or empty for none.
    pub fn coupon_param() -> Object {
        coupon_builder().build()
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
    fn quantities_are_1_to_99() {
        assert_eq!(Quantity::try_from(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::try_from(99).map(Quantity::get), Ok(99));
        for bad in [0, -1, 100, i64::MAX, i64::MIN] {
            assert_eq!(Quantity::try_from(bad), Err(QuantityOutOfRange), "{bad}");
        }
    }

    #[test]
    fn prices_are_whole_cents_up_to_the_maximum() {
        assert_eq!(PriceCents::try_from(0).map(PriceCents::get), Ok(0));
        assert!(PriceCents::try_from(PriceCents::MAX).is_ok());
        assert!(PriceCents::try_from(PriceCents::MAX + 1).is_err());
        assert!(PriceCents::try_from(-1).is_err());
        assert_eq!("250".parse::<PriceCents>().map(PriceCents::get), Ok(250));
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            " 1",
            "1000000000001",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<PriceCents>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn regions_and_coupon_codes_are_normalized() {
        assert_eq!(Region::parse(" eu-de ").unwrap().as_str(), "EU-DE");
        for bad in ["", "  ", "EU DE", "EU_DE", &"A".repeat(17), "ÉU"] {
            assert!(
                matches!(
                    Region::parse(bad),
                    Err(ApiError::InvalidField {
                        field: "region",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            CouponCode::parse(" welcome10 ").unwrap().as_str(),
            "WELCOME10"
        );
        for bad in ["", "has space", "DROP;TABLE"] {
            assert!(
                matches!(
                    CouponCode::parse(bad),
                    Err(ApiError::InvalidField {
                        field: "coupon",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let ok = |v: &'static str| {
            media_type(Some(&axum::http::HeaderValue::from_static(v)))
                .as_deref()
                .is_some_and(is_json)
        };
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/JSON"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert_eq!(media_type(None), None);
    }
}
