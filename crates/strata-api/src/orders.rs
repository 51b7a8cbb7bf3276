//! Orders: `POST /api/v1/orders` (checkout), `GET /api/v1/orders` and `GET
//! /api/v1/orders/{id}`. All need a signed-in caller. A customer sees their own orders; an
//! admin also every customer's (`GET /api/v1/orders?scope=all`, filtered by `status` as a
//! customer's own list is).
//!
//! Checkout requires an `Idempotency-Key` header (1 to 128 printable ASCII characters, unique
//! per user). The optional JSON body (`coupon`, `region`) is normalized into a canonical text
//! (`{"coupon":…,"region":…}`, fields in a fixed order, code and region upper case) that the
//! store keeps with the key: a replay with the same key and the same canonical body returns
//! the same order (200, `Idempotent-Replayed: true`) without reserving anything again; the same
//! key with another body is a 422. The canonical body itself is stored rather than a hash of
//! it: it is at most a few dozen bytes and compares exactly. The transaction itself is
//! described in `strata_store::OrderRepo::checkout`; the price comes from
//! [`crate::prices::quote`], as for quotes and carts.

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use strata_core::domain::OrderId;
use strata_core::http::TraceContext;
use strata_store::{
    CheckoutError, CheckoutOutcome, CheckoutRequest, Coupon, Order, OrderFilter, OrderLine,
    OrderPage, OrderStatus, Page, PricedLine, PricedOrder, ReservedLine, StatusChange,
};
use time::OffsetDateTime;

use crate::ApiError;
use crate::auth::{AuthUser, Role};
use crate::cart::{CartCaller, CookieAction};
use crate::extract::{CouponCode, Json, PathId, Query, schema};
use crate::openapi::ErrorBody;
use crate::prices::{CouponRule, LineInput, PriceError, PriceRules, quote};
use crate::quote::{FoundCoupon, Pricing};
use crate::state::AppState;

/// The header that names one checkout attempt.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set (to `true`) on a checkout answer that replays an earlier one.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// The order routes, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orders", get(list_orders).post(place_order))
        .route("/api/v1/orders/{id}", get(get_order))
}

/// `POST /api/v1/orders` body (optional: no body means no coupon and the default region).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// A coupon code; checkout fails with `coupon_rejected` when it does not apply.
    #[serde(default)]
    #[schema(schema_with = schema::coupon)]
    pub coupon: Option<String>,
    /// The region to tax for; absent or empty: `EU-DE`.
    #[serde(default)]
    #[schema(schema_with = schema::region)]
    pub region: Option<String>,
}

/// The `Idempotency-Key` header as the document describes it (required, with the schema of
/// [`idempotency_key_schema`]), from the limits [`idempotency_key`] enforces.
pub(crate) struct IdempotencyKeyHeader;

impl utoipa::IntoParams for IdempotencyKeyHeader {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::Required;
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        vec![
            ParameterBuilder::new()
                .name(IDEMPOTENCY_KEY.as_str())
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .schema(Some(idempotency_key_schema()))
                .build(),
        ]
    }
}

/// Printable ASCII, no space at either end (HTTP drops those), 1 to
/// [`MAX_IDEMPOTENCY_KEY_LEN`] characters.
fn idempotency_key_schema() -> utoipa::openapi::schema::Object {
    let inner = MAX_IDEMPOTENCY_KEY_LEN - 2;
    schema::string(
        format!("^[!-~]([ -~]{{0,{inner}}}[!-~])?$"),
        &format!(
            "Names this checkout: 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters, \
             e.g. a UUID. Replays with the same key and body return the same order."
        ),
    )
    .min_length(Some(1))
    .max_length(Some(MAX_IDEMPOTENCY_KEY_LEN))
    .build()
}

/// The canonical form of a checkout body, compared on replays.
#[derive(Serialize)]
struct Canonical<'a> {
    coupon: Option<&'a str>,
    region: Option<&'a str>,
}

/// Whose orders `GET /api/v1/orders` lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderScope {
    /// The caller's own orders (the default).
    #[default]
    Mine,
    /// Every customer's orders: admins only.
    All,
}

/// `GET /api/v1/orders` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOrdersQuery {
    /// `mine` (default): the caller's own orders; `all`: every customer's (admins only, 403
    /// for others).
    pub scope: Option<OrderScope>,
    /// Only the orders now in this status.
    pub status: Option<OrderStatus>,
    /// 1-based page number (default 1).
    #[param(schema_with = crate::page::page_schema)]
    pub page: Option<u32>,
    /// Page size (default 20).
    #[param(schema_with = crate::page::per_page_schema)]
    pub per_page: Option<u32>,
}

impl ListOrdersQuery {
    /// The page asked for.
    ///
    /// # Errors
    /// As [`crate::page::page`].
    pub(crate) fn page(&self) -> Result<Page, ApiError> {
        crate::page::page(self.page, self.per_page)
    }
}

/// An order with its lines and status history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Order)]
pub struct OrderView {
    /// Increasing, never reused.
    pub id: i64,
    /// Who placed it.
    pub user_id: i64,
    /// Where it is now.
    pub status: OrderStatus,
    /// The region it was taxed for.
    pub region: String,
    /// That region's tax rate in basis points.
    pub tax_rate_bps: i64,
    /// The coupon applied, if any.
    pub coupon_code: Option<String>,
    /// Sum of the line totals, in cents.
    pub subtotal_cents: i64,
    /// The coupon's discount, in cents.
    pub discount_cents: i64,
    /// Tax, in cents.
    pub tax_cents: i64,
    /// `subtotal − discount + tax`, in cents.
    pub total_cents: i64,
    /// When it was placed.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When its status last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// Its lines, in the order they were written.
    pub lines: Vec<OrderLineView>,
    /// Every status it has had, oldest first.
    pub history: Vec<StatusChangeView>,
}

impl From<Order> for OrderView {
    fn from(order: Order) -> Self {
        Self {
            id: order.id,
            user_id: order.user_id,
            status: order.status,
            region: order.region,
            tax_rate_bps: order.tax_rate_bps,
            coupon_code: order.coupon_code,
            subtotal_cents: order.subtotal_cents,
            discount_cents: order.discount_cents,
            tax_cents: order.tax_cents,
            total_cents: order.total_cents,
            created_at: order.created_at,
            updated_at: order.updated_at,
            lines: order.lines.into_iter().map(OrderLineView::from).collect(),
            history: order
                .history
                .into_iter()
                .map(StatusChangeView::from)
                .collect(),
        }
    }
}

/// One line of an order, at the price quoted at checkout.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = OrderLine)]
pub struct OrderLineView {
    /// The product.
    pub product_id: i64,
    /// Its sku at checkout.
    pub sku: String,
    /// Its name at checkout.
    pub name: String,
    /// Unit price in cents at checkout.
    pub unit_price_cents: i64,
    /// Units.
    pub quantity: i64,
    /// Quantity-tier discount on the line, in cents.
    pub discount_cents: i64,
    /// `unit_price × quantity − discount`, in cents.
    pub total_cents: i64,
}

impl From<OrderLine> for OrderLineView {
    fn from(line: OrderLine) -> Self {
        Self {
            product_id: line.product_id,
            sku: line.sku,
            name: line.name,
            unit_price_cents: line.unit_price_cents,
            quantity: line.quantity,
            discount_cents: line.discount_cents,
            total_cents: line.total_cents,
        }
    }
}

/// A status an order entered, and when.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StatusChange)]
pub struct StatusChangeView {
    /// The status entered.
    pub status: OrderStatus,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

impl From<StatusChange> for StatusChangeView {
    fn from(change: StatusChange) -> Self {
        Self {
            status: change.status,
            at: change.at,
        }
    }
}

crate::page::page_view! {
    /// One page of orders, newest first.
    OrderPageView as OrderPage: OrderView from OrderPage;
    items: "The orders of this page.",
    total: "How many orders there are in total.",
}

/// Check out the caller's cart: reserve the stock, write the order at the quoted prices, empty
/// the cart. Never oversells; one order per `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    tag = "orders",
    security(("bearer" = [])),
    params(IdempotencyKeyHeader),
    request_body(content = Option<CheckoutBody>, description = "Optional; no body means no coupon and the default region"),
    responses(
        (status = 201, description = "The order was placed", body = OrderView,
            headers(("Location" = String, description = "The order's URL"))),
        (status = 200, description = "A replay of an earlier checkout with this key: the same order, nothing reserved again", body = OrderView,
            headers(("Idempotent-Replayed" = String, description = "`true`"))),
        (status = 400, description = "`idempotency_key_required`, `invalid_idempotency_key`, `malformed_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
        (status = 409, description = "`out_of_stock`: a product has less stock than the cart asks for; nothing was reserved", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json`", body = ErrorBody),
        (status = 422, description = "`empty_cart`, `coupon_rejected`, `idempotency_key_reused` (same key, different body), `invalid_body`, `invalid_field`, `unknown_region`, `price_overflow`", body = ErrorBody),
        (status = 503, description = "`unavailable`: the store is overloaded or unreachable; retry with the same key", body = ErrorBody),
    )
)]
pub(crate) async fn place_order(
    State(state): State<AppState>,
    user: AuthUser,
    trace: TraceContext,
    request: Request,
) -> Result<Response, ApiError> {
    let key = idempotency_key(request.headers())?;
    let caller = CartCaller::new(user.clone(), request.headers());
    let pricing = optional_body(request, &state).await?;
    let (outcome, cookie) = checkout(&state, &user, caller, &key, &pricing, &trace).await?;

    let order = OrderView::from(outcome.order);
    let mut response = if outcome.replayed {
        let mut response = Json(&order).into_response();
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        response
    } else {
        let mut response = (StatusCode::CREATED, Json(&order)).into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/orders/{}", order.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    };
    cookie.apply(response.headers_mut());
    Ok(response)
}

/// Checks out `user`'s cart once per idempotency `key` (a replay returns the first order):
/// what checkout does, from the JSON endpoint or the storefront's form. The returned action
/// clears the anonymous cart cookie when a cart came along and was merged first.
///
/// # Errors
/// `empty_cart`, `out_of_stock`, `coupon_rejected`, `idempotency_key_reused`, pricing and
/// store errors.
pub(crate) async fn checkout(
    state: &AppState,
    user: &AuthUser,
    caller: CartCaller,
    key: &str,
    pricing: &Pricing,
    trace: &TraceContext,
) -> Result<(CheckoutOutcome, CookieAction), ApiError> {
    let fingerprint = serde_json::to_string(&Canonical {
        coupon: pricing.coupon.as_ref().map(CouponCode::as_str),
        region: pricing.region(),
    })?;

    // An anonymous cart brought along is merged first (and its cookie cleared).
    let (_, cookie) = caller.resolve(state, false).await?;

    let rules = PriceRules::standard();
    let now = OffsetDateTime::now_utc();
    let price = |lines: &[ReservedLine], coupon: Option<&Coupon>| {
        price_checkout(lines, coupon, pricing, &rules, now)
    };
    let traceparent = trace.to_string();
    let request = CheckoutRequest {
        user_id: user.id,
        idempotency_key: key,
        fingerprint: &fingerprint,
        coupon_code: pricing.coupon.as_ref().map(CouponCode::as_str),
        // The order's events continue this request's trace (in the worker's handlers).
        traceparent: Some(&traceparent),
    };
    let outcome = state
        .carts
        .checkout(request, price)
        .await
        .map_err(checkout_error)?;
    if !outcome.replayed {
        tracing::debug!(
            order_id = outcome.order.id,
            user_id = user.id,
            total_cents = outcome.order.total_cents,
            "order placed"
        );
    }
    Ok((outcome, cookie))
}

/// The caller's orders, or with `scope=all` every customer's (admins), newest first.
#[utoipa::path(
    get,
    path = "/api/v1/orders",
    tag = "orders",
    description = "The caller's own orders; `scope=all` lists every customer's, for admins \
                   (the role is checked on the account as it is now, not as the token says). \
                   `status` keeps the orders now in that status.",
    security(("bearer" = [])),
    params(ListOrdersQuery),
    responses(
        (status = 200, description = "One page of orders, newest first", body = OrderPageView),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token, or the account is gone", body = ErrorBody),
        (status = 403, description = "`forbidden`: `scope=all` from a caller who is not an admin", body = ErrorBody),
    )
)]
pub(crate) async fn list_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<ListOrdersQuery>,
) -> Result<Json<OrderPageView>, ApiError> {
    let page = query.page()?;
    let user_id = match query.scope.unwrap_or_default() {
        OrderScope::Mine => Some(user.id),
        OrderScope::All => {
            user.require_role(&state.store, Role::Admin).await?;
            None
        }
    };
    let filter = OrderFilter {
        user_id,
        status: query.status,
    };
    Ok(Json(state.store.orders().list(filter, page).await?.into()))
}

/// One order: the caller's own (admins may read any).
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The order's id", minimum = 1)),
    responses(
        (status = 200, description = "The order with its lines and status history", body = OrderView),
        (status = 400, description = "`invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order, or another customer's", body = ErrorBody),
    )
)]
pub(crate) async fn get_order(
    State(state): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<OrderId>,
) -> Result<Json<OrderView>, ApiError> {
    Ok(Json(find_order(&state, &user, id).await?.into()))
}

/// Order `id` when `user` may see it: their own, or any for an admin; someone else's order
/// looks exactly like a missing one.
///
/// # Errors
/// `not_found`; store errors.
pub(crate) async fn find_order(
    state: &AppState,
    user: &AuthUser,
    id: OrderId,
) -> Result<Order, ApiError> {
    let order = state
        .store
        .orders()
        .get(id.get())
        .await?
        .ok_or(ApiError::OrderNotFound(id.get()))?;
    // Someone else's order looks exactly like a missing one, except to an admin.
    if order.user_id == user.id || user.is_admin(&state.store).await? {
        Ok(order)
    } else {
        Err(ApiError::OrderNotFound(id.get()))
    }
}

/// The `Idempotency-Key` header, validated.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let value = values.next().ok_or(ApiError::IdempotencyKeyRequired)?;
    if values.next().is_some() {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    parse_idempotency_key(
        value
            .to_str()
            .map_err(|_| ApiError::InvalidIdempotencyKey)?,
    )
}

/// An idempotency key as sent (a header, or the storefront's checkout form), trimmed: 1 to
/// [`MAX_IDEMPOTENCY_KEY_LEN`] printable ASCII characters.
///
/// # Errors
/// [`ApiError::InvalidIdempotencyKey`] otherwise.
pub(crate) fn parse_idempotency_key(raw: &str) -> Result<String, ApiError> {
    let key = raw.trim();
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| (b' '..=b'~').contains(&b));
    if valid {
        Ok(key.to_owned())
    } else {
        Err(ApiError::InvalidIdempotencyKey)
    }
}

/// The checkout body, checked: none (no `Content-Length`, or 0, and not chunked) means the
/// defaults; anything else must be a JSON [`CheckoutBody`].
async fn optional_body(request: Request, state: &AppState) -> Result<Pricing, ApiError> {
    let headers = request.headers();
    let declared_empty = headers
        .get(header::CONTENT_LENGTH)
        .map_or(!headers.contains_key(header::TRANSFER_ENCODING), |v| {
            v.as_bytes() == b"0"
        });
    if declared_empty {
        return Ok(Pricing::default());
    }
    let Json(body) = Json::<CheckoutBody>::from_request(request, state).await?;
    Pricing::parse(body.region.as_deref(), body.coupon.as_deref())
}

/// Prices reserved lines for checkout with the same function as quotes. A coupon asked for
/// that does not apply fails the checkout (the customer expected the discount).
fn price_checkout(
    lines: &[ReservedLine],
    coupon: Option<&Coupon>,
    pricing: &Pricing,
    rules: &PriceRules,
    now: OffsetDateTime,
) -> Result<PricedOrder, ApiError> {
    let inputs = lines
        .iter()
        .map(|l| {
            let quantity =
                u32::try_from(l.quantity).map_err(|_| PriceError::QuantityOutOfRange {
                    product_id: l.product_id,
                    quantity: l.quantity,
                })?;
            Ok(LineInput {
                product_id: l.product_id,
                unit_price_cents: l.unit_price_cents,
                quantity,
            })
        })
        .collect::<Result<Vec<_>, PriceError>>()?;
    let found = FoundCoupon(coupon.cloned().map(CouponRule::from));
    let quoted = quote(
        &inputs,
        rules,
        found.as_input(pricing.coupon.as_ref()),
        pricing.region(),
        now,
    )?;
    if let Some((code, rejection)) = quoted.coupon_rejection() {
        return Err(ApiError::CouponRejected {
            code: code.to_owned(),
            reason: rejection.describe(),
        });
    }
    Ok(PricedOrder {
        region: quoted.region,
        tax_rate_bps: i64::from(quoted.tax_rate_bps),
        coupon_code: quoted.coupon.map(|c| c.code),
        subtotal_cents: quoted.subtotal_cents,
        discount_cents: quoted.discount_cents,
        tax_cents: quoted.tax_cents,
        total_cents: quoted.total_cents,
        lines: quoted
            .lines
            .iter()
            .map(|l| PricedLine {
                product_id: l.product_id,
                unit_price_cents: l.unit_price_cents,
                quantity: i64::from(l.quantity),
                discount_cents: l.tier_discount_cents,
                total_cents: l.total_cents,
            })
            .collect(),
    })
}

/// Maps the store's refusals to their HTTP answers.
fn checkout_error(e: CheckoutError<ApiError>) -> ApiError {
    match e {
        CheckoutError::EmptyCart => ApiError::EmptyCart,
        CheckoutError::OutOfStock {
            product_id,
            name,
            requested,
            available,
        } => ApiError::OutOfStock {
            product_id,
            name,
            requested,
            available,
        },
        CheckoutError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
        CheckoutError::Pricing(e) => e,
        CheckoutError::PricingMismatch(what) => {
            ApiError::Unexpected(format!("checkout pricing mismatch: {what}"))
        }
        CheckoutError::Store(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_key(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn idempotency_keys_are_validated() {
        assert!(matches!(
            idempotency_key(&HeaderMap::new()),
            Err(ApiError::IdempotencyKeyRequired)
        ));
        assert_eq!(
            idempotency_key(&with_key(&[b"abc-123"])).unwrap(),
            "abc-123"
        );
        assert_eq!(idempotency_key(&with_key(&[b" k 1 "])).unwrap(), "k 1");
        let longest = [b'k'; 128];
        assert!(idempotency_key(&with_key(&[&longest])).is_ok());
        let too_long = [b'k'; 129];
        let bad: [&[&[u8]]; 5] = [
            &[b""],
            &[b"   "],
            &[&too_long],
            &[b"caf\xc3\xa9"],
            &[b"a", b"b"],
        ];
        for values in bad {
            assert!(
                matches!(
                    idempotency_key(&with_key(values)),
                    Err(ApiError::InvalidIdempotencyKey)
                ),
                "{values:?}"
            );
        }
    }

    #[test]
    fn checkout_prices_match_quotes_and_refuse_rejected_coupons() {
        let lines = [
            ReservedLine {
                product_id: 2,
                sku: "B".into(),
                name: "b".into(),
                unit_price_cents: 333,
                quantity: 5,
            },
            ReservedLine {
                product_id: 1,
                sku: "A".into(),
                name: "a".into(),
                unit_price_cents: 1000,
                quantity: 2,
            },
        ];
        let rules = PriceRules::standard();
        let now = OffsetDateTime::now_utc();
        let us = Pricing::parse(Some("US-CA"), None).unwrap();
        let priced = price_checkout(&lines, None, &us, &rules, now).unwrap();
        assert_eq!(priced.region, "US-CA");
        assert_eq!(priced.subtotal_cents, 1_582 + 2_000);
        assert_eq!(
            priced.total_cents,
            priced.subtotal_cents - priced.discount_cents + priced.tax_cents
        );
        assert_eq!(priced.lines[0].discount_cents, 83);
        assert_eq!(priced.coupon_code, None);

        let nope = Pricing::parse(None, Some("NOPE")).unwrap();
        let unknown = price_checkout(&lines, None, &nope, &rules, now);
        assert!(
            matches!(unknown, Err(ApiError::CouponRejected { ref code, .. }) if code == "NOPE"),
            "{unknown:?}"
        );
        let welcome = Coupon {
            code: "WELCOME10".into(),
            kind: strata_store::CouponKind::Percent { basis_points: 1000 },
            min_subtotal_cents: 0,
            expires_at: None,
        };
        let code = Pricing::parse(None, Some("welcome10")).unwrap();
        let priced = price_checkout(&lines, Some(&welcome), &code, &rules, now).unwrap();
        assert_eq!(priced.coupon_code.as_deref(), Some("WELCOME10"));
        assert_eq!(priced.discount_cents, 358);
    }
}
