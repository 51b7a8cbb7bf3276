//! The price quote endpoint, `POST /api/v1/prices/quote`: reads the products' current prices
//! and the coupon asked for, then prices them with [`crate::prices::quote`]. Also the coupon
//! lookup that the cart and checkout share with it.

use std::collections::HashSet;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use strata_core::domain::ProductId;
use strata_store::Store;
use time::OffsetDateTime;
use utoipa::openapi::Ref;
use utoipa::openapi::schema::{Array, ArrayBuilder};

use crate::ApiError;
use crate::extract::{CouponCode, FromWire, Json, Quantity, Region, Valid, schema, whole_number};
use crate::openapi::ErrorBody;
use crate::prices::{
    CouponInput, CouponRule, LineInput, MAX_LINES, PriceError, PriceRules, Quote, quote,
};
use crate::state::AppState;

/// The quote route, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/prices/quote", post(quote_items))
}

/// `POST /api/v1/prices/quote` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// 1 to [`MAX_LINES`] lines, each product at most once.
    #[schema(schema_with = items_schema)]
    pub items: Vec<QuoteItem>,
    /// A coupon code; absent or empty: none.
    #[serde(default)]
    #[schema(schema_with = schema::coupon)]
    pub coupon: Option<String>,
    /// The region to tax for; absent or empty: `EU-DE`.
    #[serde(default)]
    #[schema(schema_with = schema::region)]
    pub region: Option<String>,
}

/// The schema of [`QuoteRequest::items`]: 1 to [`MAX_LINES`] of [`QuoteItem`].
fn items_schema() -> Array {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("QuoteItem"))
        .min_items(Some(1))
        .max_items(Some(MAX_LINES))
        .description(Some(format!(
            "1 to {MAX_LINES} lines, each product at most once."
        )))
        .build()
}

/// One line of a [`QuoteRequest`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteItem {
    /// The product.
    #[serde(deserialize_with = "whole_number")]
    #[schema(schema_with = schema::product_id)]
    pub product_id: i64,
    /// Units.
    #[serde(deserialize_with = "whole_number")]
    #[schema(schema_with = schema::quantity)]
    pub quantity: i64,
}

/// How a request asks to be priced, checked: the region to tax for and a coupon, both
/// optional. Quotes, the cart and checkout take it from their body or query.
#[derive(Debug, Default)]
pub(crate) struct Pricing {
    /// The region; `None`: the default region.
    pub(crate) region: Option<Region>,
    /// The coupon asked for.
    pub(crate) coupon: Option<CouponCode>,
}

impl Pricing {
    /// Parses a region and a coupon code as sent, the region first; absent or empty, each
    /// means its default (the default region, no coupon).
    ///
    /// # Errors
    /// [`ApiError::InvalidField`] for a malformed region or coupon code.
    pub(crate) fn parse(region: Option<&str>, coupon: Option<&str>) -> Result<Self, ApiError> {
        Ok(Self {
            region: Region::parse_optional(region)?,
            coupon: CouponCode::parse_optional(coupon)?,
        })
    }

    /// The region as [`quote`] takes it.
    pub(crate) fn region(&self) -> Option<&str> {
        self.region.as_ref().map(Region::as_str)
    }
}

/// A [`QuoteRequest`] with everything checked that can be checked without the store.
#[derive(Debug)]
pub(crate) struct QuoteAsk {
    items: Vec<(ProductId, Quantity)>,
    pricing: Pricing,
}

impl FromWire for QuoteAsk {
    type Wire = QuoteRequest;

    /// In this order: the number of lines, region, coupon, every quantity and duplicate, then
    /// the product ids (one that cannot exist is `unknown_product`, as one that does not).
    fn from_wire(wire: QuoteRequest) -> Result<Self, ApiError> {
        if wire.items.is_empty() {
            return Err(ApiError::InvalidField {
                field: "items",
                message: "at least one item is needed".into(),
            });
        }
        if wire.items.len() > MAX_LINES {
            return Err(PriceError::TooManyLines(wire.items.len()).into());
        }
        let pricing = Pricing::parse(wire.region.as_deref(), wire.coupon.as_deref())?;
        let mut seen = HashSet::with_capacity(wire.items.len());
        let mut quantities = Vec::with_capacity(wire.items.len());
        for item in &wire.items {
            let quantity =
                Quantity::try_from(item.quantity).map_err(|_| PriceError::QuantityOutOfRange {
                    product_id: item.product_id,
                    quantity: item.quantity,
                })?;
            if !seen.insert(item.product_id) {
                return Err(PriceError::DuplicateProduct(item.product_id).into());
            }
            quantities.push(quantity);
        }
        let items = wire
            .items
            .iter()
            .zip(quantities)
            .map(|(item, quantity)| {
                ProductId::try_from(item.product_id)
                    .map(|id| (id, quantity))
                    .map_err(|_| ApiError::UnknownProduct(item.product_id))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { items, pricing })
    }
}

/// Price some products: quantity tiers, an optional coupon and the region's tax, in integer
/// cents. Reads the products' current prices and the coupon; changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/prices/quote",
    tag = "prices",
    request_body = QuoteRequest,
    responses(
        (status = 200, description = "The quote; a coupon that does not apply is reported in `coupon.rejection` (`unknown`, `expired`, `below_minimum`)", body = Quote),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body` (wrong shape, unknown field), `invalid_field` (no items, malformed coupon or region), `invalid_quantity`, `too_many_lines`, `duplicate_product`, `unknown_product`, `unknown_region`, `price_overflow`", body = ErrorBody),
    )
)]
pub(crate) async fn quote_items(
    State(state): State<AppState>,
    Valid(ask): Valid<QuoteAsk>,
) -> Result<Json<Quote>, ApiError> {
    let mut lines = Vec::with_capacity(ask.items.len());
    for (id, quantity) in &ask.items {
        let product = state
            .store
            .products()
            .get(id.get())
            .await?
            .ok_or(ApiError::UnknownProduct(id.get()))?;
        lines.push(LineInput {
            product_id: product.id,
            unit_price_cents: product.price_cents,
            quantity: quantity.get(),
        });
    }
    let coupon = lookup_coupon(&state.store, ask.pricing.coupon.as_ref()).await?;
    let quoted = quote(
        &lines,
        &PriceRules::standard(),
        coupon.as_input(ask.pricing.coupon.as_ref()),
        ask.pricing.region(),
        OffsetDateTime::now_utc(),
    )?;
    Ok(Json(quoted))
}

/// A looked-up coupon: `None` when none was asked for or the code names none.
pub(crate) struct FoundCoupon(pub(crate) Option<CouponRule>);

impl FoundCoupon {
    /// The [`CouponInput`] for a request that asked for `code`.
    pub(crate) fn as_input<'a>(&'a self, code: Option<&'a CouponCode>) -> CouponInput<'a> {
        match (&self.0, code) {
            (Some(rule), _) => CouponInput::Known(rule),
            (None, Some(code)) => CouponInput::Unknown(code.as_str()),
            (None, None) => CouponInput::None,
        }
    }
}

/// Reads the coupon `code` names, if any.
///
/// # Errors
/// When the store cannot be read.
pub(crate) async fn lookup_coupon(
    store: &Store,
    code: Option<&CouponCode>,
) -> Result<FoundCoupon, ApiError> {
    let Some(code) = code else {
        return Ok(FoundCoupon(None));
    };
    Ok(FoundCoupon(
        store
            .coupons()
            .get(code.as_str())
            .await?
            .map(CouponRule::from),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::decode;

    #[test]
    fn bodies_must_be_objects_and_keep_their_error_paths() {
        let item = decode::<QuoteItem>(br#"{"product_id": 3, "quantity": 1}"#).unwrap();
        assert_eq!((item.product_id, item.quantity), (3, 1));
        for bad in [&br"[3, 1]"[..], b"[]", b"3", b"null", b"\"x\""] {
            assert!(
                matches!(decode::<QuoteItem>(bad), Err(ApiError::InvalidBody(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let Err(ApiError::InvalidBody(message)) =
            decode::<QuoteRequest>(br#"{"items": [{"product_id": 1, "quantity": "x"}]}"#)
        else {
            panic!("expected invalid_body");
        };
        assert!(message.contains("items[0].quantity"), "{message}");
        assert!(matches!(
            decode::<QuoteItem>(br#"{"product_id": 1, "quantity": 1, "x": 0}"#),
            Err(ApiError::InvalidBody(_))
        ));
    }

    fn ask(body: &str) -> Result<QuoteAsk, ApiError> {
        QuoteAsk::from_wire(decode(body.as_bytes()).unwrap())
    }

    #[test]
    fn requests_are_checked_in_order_before_the_store_is_read() {
        let ok =
            ask(r#"{"items": [{"product_id": 2, "quantity": 5}], "region": "us-ca"}"#).unwrap();
        assert_eq!(ok.items.len(), 1);
        assert_eq!(ok.pricing.region(), Some("US-CA"));
        // Quantities are checked on every line before any product id.
        let quantity_first = ask(
            r#"{"items": [{"product_id": -5, "quantity": 1}, {"product_id": 1, "quantity": 0}]}"#,
        );
        assert!(
            matches!(
                quantity_first,
                Err(ApiError::Price(PriceError::QuantityOutOfRange { .. }))
            ),
            "{quantity_first:?}"
        );
        let negative = ask(r#"{"items": [{"product_id": -5, "quantity": 1}]}"#);
        assert!(
            matches!(negative, Err(ApiError::UnknownProduct(-5))),
            "{negative:?}"
        );
        let twice = ask(
            r#"{"items": [{"product_id": 1, "quantity": 1}, {"product_id": 1, "quantity": 2}]}"#,
        );
        assert!(
            matches!(twice, Err(ApiError::Price(PriceError::DuplicateProduct(1)))),
            "{twice:?}"
        );
    }
}
