//! The cart: `GET /api/v1/cart`, `POST /api/v1/cart/items`, `PATCH` and `DELETE
//! /api/v1/cart/items/{product_id}`. Every answer is the whole cart, priced by
//! [`crate::prices::quote`] (the function checkout uses).
//!
//! Where carts are kept (the store, or the instance's memory in the lab's local mode) is the
//! business of [`crate::carts::Carts`]; nothing here depends on it.
//!
//! # Whose cart
//! - With a valid token: the user's cart.
//! - Without one: the cart named by the `strata_cart` cookie, a random 128-bit token (32 hex
//!   digits) set `HttpOnly; SameSite=Lax; Path=/` on the first write (the whole site: the
//!   storefront's pages show and change the same cart). A cookie naming no cart is replaced by
//!   a fresh token on the next write (a client never chooses its token).
//! - The anonymous cart merges into the user's cart at log-in: `POST /api/v1/sessions` with
//!   the cookie merges, deletes the anonymous cart and clears the cookie. A client that logs
//!   in without sending the cookie (another path, a script) still gets the merge at its first
//!   authenticated cart or checkout request that carries it. Quantities of a product in both
//!   carts add up, capped at 99; lines beyond the 50-line limit are dropped.
//!
//! # Which instance (local cart mode with several instances)
//! Answers set the `strata_cart_owner` cookie to the cart's routing key (`u<user id>`, or the
//! anonymous token) whenever the request did not carry that value: the gateway hashes it to
//! send the cart's requests to the instance holding the cart. Fresh anonymous tokens are
//! random, so new carts spread over the ring whatever address their clients share; the
//! request that makes one is forwarded to its owner.
//!
//! # Cached
//! `GET /api/v1/cart` is read through [`crate::carts::Carts::read_json`] (in shared mode the
//! cache per owner, see `cache_aside`, "Carts"), unless a coupon is asked for (a coupon's
//! validity depends on the time of the request).

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};
use strata_core::domain::ProductId;
use strata_store::{CartLine, CartOwner, MAX_LINE_QUANTITY};
use time::OffsetDateTime;

use crate::ApiError;
use crate::auth::{AuthUser, OptionalAuthUser};
use crate::extract::{FromWire, Json, PathId, Quantity, Valid, ValidQuery, schema, whole_number};
use crate::openapi::ErrorBody;
use crate::prices::{LineInput, PriceRules, Quote, quote};
use crate::quote::{Pricing, lookup_coupon};
use crate::state::AppState;

/// The name of the anonymous cart cookie.
pub const CART_COOKIE: &str = "strata_cart";
/// The name of the cookie naming the cart's routing key (local cart mode).
pub const OWNER_COOKIE: &str = "strata_cart_owner";
/// How long a browser keeps the cart cookie: 30 days, a usual shopping-cart lifetime.
const CART_COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;
/// Hex digits in a cart token (128 bits).
const TOKEN_HEX_LEN: usize = 32;

/// The cart routes, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/cart", get(get_cart))
        .route("/api/v1/cart/items", post(add_item))
        .route(
            "/api/v1/cart/items/{product_id}",
            patch(set_item).delete(remove_item),
        )
}

/// The cart as served: its lines with current catalog data, and its price.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CartView {
    /// The lines, oldest first.
    pub items: Vec<CartLineView>,
    /// The price of the lines (tiers, coupon and tax as asked for in the query, if any).
    pub quote: Quote,
}

/// One line of a cart with the product's current catalog data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = CartLine)]
pub struct CartLineView {
    /// The product.
    pub product_id: i64,
    /// Its sku.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Its current unit price in cents.
    pub unit_price_cents: i64,
    /// Units on hand now (checkout may still find fewer).
    pub stock: i64,
    /// Units in the cart, `1..=99`.
    pub quantity: i64,
    /// When the line was first added (lines are listed in this order).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub added_at: OffsetDateTime,
}

impl From<&CartLine> for CartLineView {
    fn from(line: &CartLine) -> Self {
        Self {
            product_id: line.product_id,
            sku: line.sku.clone(),
            name: line.name.clone(),
            unit_price_cents: line.unit_price_cents,
            stock: line.stock,
            quantity: line.quantity,
            added_at: line.added_at,
        }
    }
}

impl CartView {
    /// The view of `lines` priced as `quote`.
    pub(crate) fn new(lines: &[CartLine], quote: Quote) -> Self {
        Self {
            items: lines.iter().map(CartLineView::from).collect(),
            quote,
        }
    }
}

/// `POST /api/v1/cart/items` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItemRequest {
    /// The product.
    #[serde(deserialize_with = "whole_number")]
    #[schema(schema_with = schema::product_id)]
    pub product_id: i64,
    /// Units to add (the line may hold at most the same limit: more is `cart_limit`).
    #[serde(deserialize_with = "whole_number")]
    #[schema(schema_with = schema::quantity)]
    pub quantity: i64,
}

/// An [`AddItemRequest`], checked.
#[derive(Debug)]
pub(crate) struct AddItem {
    product_id: ProductId,
    quantity: Quantity,
}

impl FromWire for AddItem {
    type Wire = AddItemRequest;

    fn from_wire(wire: AddItemRequest) -> Result<Self, ApiError> {
        if wire.quantity < 1 {
            return Err(quantity_error("at least 1 unit must be added"));
        }
        let quantity = Quantity::try_from(wire.quantity)
            .map_err(|_| line_limit(wire.product_id, wire.quantity))?;
        // A product id that cannot exist is refused like one that does not.
        let product_id = ProductId::try_from(wire.product_id)
            .map_err(|_| ApiError::UnknownProduct(wire.product_id))?;
        Ok(Self {
            product_id,
            quantity,
        })
    }
}

/// `PATCH /api/v1/cart/items/{product_id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetItemRequest {
    /// The line's new quantity; 0 removes the line.
    #[serde(deserialize_with = "whole_number")]
    #[schema(schema_with = schema::new_quantity)]
    pub quantity: i64,
}

/// How to price the cart in a response: `?region=&coupon=`, both optional.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PriceQuery {
    /// The region to tax for; absent or empty: `EU-DE`.
    #[param(schema_with = schema::region_param)]
    pub region: Option<String>,
    /// A coupon code to price with (reported in `quote.coupon` when it does not apply);
    /// absent or empty: none.
    #[param(schema_with = schema::coupon_param)]
    pub coupon: Option<String>,
}

impl FromWire for Pricing {
    type Wire = PriceQuery;

    fn from_wire(wire: PriceQuery) -> Result<Self, ApiError> {
        Pricing::parse(wire.region.as_deref(), wire.coupon.as_deref())
    }
}

/// Show the caller's cart, priced.
#[utoipa::path(
    get,
    path = "/api/v1/cart",
    tag = "cart",
    params(PriceQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The cart (empty when the caller has none)", body = CartView),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: an `Authorization` header with an invalid or expired token", body = ErrorBody),
        (status = 422, description = "`invalid_field` (malformed region or coupon), `unknown_region`, `price_overflow`", body = ErrorBody),
    )
)]
pub(crate) async fn get_cart(
    State(state): State<AppState>,
    caller: CartCaller,
    ValidQuery(pricing): ValidQuery<Pricing>,
) -> Result<Response, ApiError> {
    let (owner, cookie) = caller.resolve(&state, false).await?;
    let Some(cart) = owner.as_owner() else {
        return respond(&state, Vec::new(), &pricing, cookie).await;
    };
    if pricing.coupon.is_some() {
        let lines = state.carts.lines(cart).await?;
        return respond(&state, lines, &pricing, cookie).await;
    }
    // The region was validated by the extractor, so a bad one is refused and never cached.
    let body = state
        .carts
        .read_json(
            cart,
            &format!("region={}", pricing.region().unwrap_or("-")),
            async {
                let items = state.carts.lines(cart).await?;
                let quote = price_lines(&state, &items, &pricing).await?;
                Ok(Some(CartView::new(&items, quote)))
            },
        )
        .await?;
    let mut response = (
        axum::http::StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    cookie.apply(response.headers_mut());
    Ok(response)
}

/// Merges the anonymous cart `token` into user `user_id`'s cart (nothing when there is no
/// such cart): the one step log-in and the lazy fallback share.
pub(crate) async fn merge_anonymous_cart(
    state: &AppState,
    token: &str,
    user_id: i64,
) -> Result<(), ApiError> {
    let merged = state.carts.merge_anonymous(token, user_id).await?;
    if merged.found {
        tracing::debug!(
            user_id,
            merged = merged.merged,
            capped = merged.capped,
            dropped = merged.dropped,
            "anonymous cart merged into the user's cart"
        );
    }
    Ok(())
}

/// Add units of a product to the caller's cart (a new line, or onto its line).
#[utoipa::path(
    post,
    path = "/api/v1/cart/items",
    tag = "cart",
    params(PriceQuery),
    request_body = AddItemRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The cart after the change; may set the `strata_cart` cookie", body = CartView),
        (status = 400, description = "`malformed_json`, `invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: an invalid or expired token", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body`, `invalid_field` (quantity below 1), `cart_limit` (more than 99 units on the line or a 51st line), `unknown_product`", body = ErrorBody),
    )
)]
pub(crate) async fn add_item(
    State(state): State<AppState>,
    caller: CartCaller,
    ValidQuery(pricing): ValidQuery<Pricing>,
    Valid(item): Valid<AddItem>,
) -> Result<Response, ApiError> {
    let (lines, cookie) = add_to_cart(&state, caller, item).await?;
    respond(&state, lines, &pricing, cookie).await
}

/// Adds `item` to the caller's cart (creating an anonymous cart when needed) and returns the
/// cart's lines after the change: the cart endpoint's and the storefront's one way to add.
///
/// # Errors
/// `cart_limit`, `unknown_product`; store errors.
pub(crate) async fn add_to_cart(
    state: &AppState,
    caller: CartCaller,
    item: AddItem,
) -> Result<(Vec<CartLine>, CookieAction), ApiError> {
    let (owner, cookie) = caller.resolve(state, true).await?;
    let owner = owner.as_owner().ok_or_else(no_owner)?;
    let lines = state
        .carts
        .add(owner, item.product_id.get(), item.quantity.get())
        .await?;
    Ok((lines, cookie))
}

/// Sets the quantity of the caller's line of `product_id` (`None` removes it) and returns the
/// cart's lines after the change.
///
/// # Errors
/// `not_in_cart`, `cart_limit`; store errors.
pub(crate) async fn set_in_cart(
    state: &AppState,
    caller: CartCaller,
    product_id: ProductId,
    quantity: Option<Quantity>,
) -> Result<(Vec<CartLine>, CookieAction), ApiError> {
    let (owner, cookie) = caller.resolve(state, false).await?;
    let owner = owner
        .as_owner()
        .ok_or(ApiError::NotInCart(product_id.get()))?;
    let lines = state
        .carts
        .set(owner, product_id.get(), quantity.map_or(0, Quantity::get))
        .await?;
    Ok((lines, cookie))
}

/// The caller's cart lines (none when the caller has no cart), merging an anonymous cart
/// into a signed-in caller's as every cart request does.
///
/// # Errors
/// Store errors.
pub(crate) async fn cart_lines(
    state: &AppState,
    caller: CartCaller,
) -> Result<(Vec<CartLine>, CookieAction), ApiError> {
    let (owner, cookie) = caller.resolve(state, false).await?;
    let lines = match owner.as_owner() {
        Some(owner) => state.carts.lines(owner).await?,
        None => Vec::new(),
    };
    Ok((lines, cookie))
}

/// `lines` priced as `pricing` asks: the cart as every answer of the cart endpoints shows it.
///
/// # Errors
/// As [`crate::prices::quote`]; store errors reading the coupon.
pub(crate) async fn priced_cart(
    state: &AppState,
    lines: &[CartLine],
    pricing: &Pricing,
) -> Result<CartView, ApiError> {
    let quote = price_lines(state, lines, pricing).await?;
    Ok(CartView::new(lines, quote))
}

/// Set the quantity of a line of the caller's cart; 0 removes it.
#[utoipa::path(
    patch,
    path = "/api/v1/cart/items/{product_id}",
    tag = "cart",
    params(("product_id" = i64, Path, description = "The product of the line", minimum = 1), PriceQuery),
    request_body = SetItemRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The cart after the change", body = CartView),
        (status = 400, description = "`invalid_id`, `malformed_json`, `invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: an invalid or expired token", body = ErrorBody),
        (status = 404, description = "`not_in_cart`: the product has no line in the cart", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body`, `invalid_field` (negative quantity), `cart_limit` (more than 99)", body = ErrorBody),
    )
)]
pub(crate) async fn set_item(
    State(state): State<AppState>,
    caller: CartCaller,
    PathId(product_id): PathId<ProductId>,
    ValidQuery(pricing): ValidQuery<Pricing>,
    Json(body): Json<SetItemRequest>,
) -> Result<Response, ApiError> {
    // Parsed here rather than by an extractor: the refusal names the path's product.
    let quantity = new_quantity(product_id, body.quantity)?;
    let (lines, cookie) = set_in_cart(&state, caller, product_id, quantity).await?;
    respond(&state, lines, &pricing, cookie).await
}

/// Remove a line from the caller's cart.
#[utoipa::path(
    delete,
    path = "/api/v1/cart/items/{product_id}",
    tag = "cart",
    params(("product_id" = i64, Path, description = "The product of the line", minimum = 1), PriceQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The cart after the change", body = CartView),
        (status = 400, description = "`invalid_id`, `invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: an invalid or expired token", body = ErrorBody),
        (status = 404, description = "`not_in_cart`: the product has no line in the cart", body = ErrorBody),
        (status = 422, description = "`invalid_field` (malformed region or coupon), `unknown_region`, `price_overflow`: the cart after the change cannot be priced as asked", body = ErrorBody),
    )
)]
pub(crate) async fn remove_item(
    State(state): State<AppState>,
    caller: CartCaller,
    PathId(product_id): PathId<ProductId>,
    ValidQuery(pricing): ValidQuery<Pricing>,
) -> Result<Response, ApiError> {
    let (owner, cookie) = caller.resolve(&state, false).await?;
    let owner = owner
        .as_owner()
        .ok_or(ApiError::NotInCart(product_id.get()))?;
    let lines = state.carts.set(owner, product_id.get(), 0).await?;
    respond(&state, lines, &pricing, cookie).await
}

/// Prices `lines` and answers with the cart, setting or clearing the cookie as decided.
async fn respond(
    state: &AppState,
    lines: Vec<CartLine>,
    pricing: &Pricing,
    cookie: CookieAction,
) -> Result<Response, ApiError> {
    let mut response = Json(priced_cart(state, &lines, pricing).await?).into_response();
    cookie.apply(response.headers_mut());
    Ok(response)
}

/// The quote of the cart's lines under the query's region and coupon.
async fn price_lines(
    state: &AppState,
    lines: &[CartLine],
    pricing: &Pricing,
) -> Result<Quote, ApiError> {
    let coupon = lookup_coupon(&state.store, pricing.coupon.as_ref()).await?;
    let inputs = lines
        .iter()
        .map(|l| {
            Ok(LineInput {
                product_id: l.product_id,
                unit_price_cents: l.unit_price_cents,
                // The schema keeps cart quantities in 1..=99.
                quantity: u32::try_from(l.quantity).map_err(|_| {
                    ApiError::Unexpected(format!("cart quantity {} out of range", l.quantity))
                })?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(quote(
        &inputs,
        &PriceRules::standard(),
        coupon.as_input(pricing.coupon.as_ref()),
        pricing.region(),
        OffsetDateTime::now_utc(),
    )?)
}

/// The quantity a `PATCH` sets on the line of `product_id`: `None` (0) removes the line.
pub(crate) fn new_quantity(product_id: ProductId, raw: i64) -> Result<Option<Quantity>, ApiError> {
    match raw {
        ..0 => Err(quantity_error(
            "a quantity cannot be negative (0 removes the line)",
        )),
        0 => Ok(None),
        _ => Quantity::try_from(raw)
            .map(Some)
            .map_err(|_| line_limit(product_id.get(), raw)),
    }
}

fn quantity_error(message: &str) -> ApiError {
    ApiError::InvalidField {
        field: "quantity",
        message: message.to_owned(),
    }
}

pub(crate) fn line_limit(product_id: i64, quantity: i64) -> ApiError {
    ApiError::CartLimit(format!(
        "a cart line holds at most {MAX_LINE_QUANTITY} units; product {product_id} would have \
         {quantity}"
    ))
}

fn no_owner() -> ApiError {
    ApiError::Unexpected("a cart write without an owner".into())
}

/// Who is asking about a cart: the token's user, if any, and the cart cookie's token, if it
/// has a well-formed one (anything else in the cookie is ignored, as if absent).
#[derive(Debug)]
pub(crate) struct CartCaller {
    user: Option<AuthUser>,
    cookie: Option<String>,
}

impl FromRequestParts<AppState> for CartCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let OptionalAuthUser(user) = OptionalAuthUser::from_request_parts(parts, state).await?;
        Ok(Self {
            user,
            cookie: cart_cookie(&parts.headers),
        })
    }
}

impl CartCaller {
    /// A caller as a page knows it: the session's user, if any, and the cookie's token.
    pub(crate) fn from_parts(user: Option<AuthUser>, headers: &HeaderMap) -> Self {
        Self {
            user,
            cookie: cart_cookie(headers),
        }
    }

    /// A caller who must be signed in (checkout): the user and the cookie's token.
    pub(crate) fn new(user: AuthUser, headers: &HeaderMap) -> Self {
        Self {
            user: Some(user),
            cookie: cart_cookie(headers),
        }
    }

    /// Settles whose cart the request is about, merging an anonymous cart into the user's
    /// when both are known (see the module docs). With `create`, an anonymous caller without
    /// a cart gets a fresh token (and the cookie that carries it).
    pub(crate) async fn resolve(
        self,
        state: &AppState,
        create: bool,
    ) -> Result<(ResolvedOwner, CookieAction), ApiError> {
        match (self.user, self.cookie) {
            (Some(user), Some(token)) => {
                merge_anonymous_cart(state, &token, user.id).await?;
                Ok((ResolvedOwner::User(user.id), CookieAction::Clear))
            }
            (Some(user), None) => Ok((ResolvedOwner::User(user.id), CookieAction::Keep)),
            (None, Some(token)) => {
                if !create || state.carts.anonymous_exists(&token).await? {
                    Ok((ResolvedOwner::Anonymous(token), CookieAction::Keep))
                } else {
                    let fresh = state.carts.new_token();
                    Ok((
                        ResolvedOwner::Anonymous(fresh.clone()),
                        CookieAction::Set(fresh),
                    ))
                }
            }
            (None, None) if create => {
                let fresh = state.carts.new_token();
                Ok((
                    ResolvedOwner::Anonymous(fresh.clone()),
                    CookieAction::Set(fresh),
                ))
            }
            (None, None) => Ok((ResolvedOwner::Nobody, CookieAction::Keep)),
        }
    }
}

/// Whose cart a request is about.
#[derive(Debug)]
pub(crate) enum ResolvedOwner {
    User(i64),
    Anonymous(String),
    /// An anonymous caller without a cart cookie, reading: the empty cart.
    Nobody,
}

impl ResolvedOwner {
    fn as_owner(&self) -> Option<CartOwner<'_>> {
        match self {
            Self::User(id) => Some(CartOwner::User(*id)),
            Self::Anonymous(token) => Some(CartOwner::Anonymous(token)),
            Self::Nobody => None,
        }
    }
}

/// What the response does with the cart cookie.
#[derive(Debug)]
pub(crate) enum CookieAction {
    Keep,
    Set(String),
    Clear,
}

impl CookieAction {
    /// Adds the `Set-Cookie` header, if any.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let value = match self {
            Self::Keep => return,
            Self::Set(token) => format!(
                "{CART_COOKIE}={token}; Path=/; Max-Age={CART_COOKIE_MAX_AGE_SECS}; \
                 HttpOnly; SameSite=Lax"
            ),
            Self::Clear => {
                format!("{CART_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax")
            }
        };
        // The value is ours (hex digits and fixed text), so it is always a valid header.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// Sets `strata_cart_owner` on answers when local carts are shared among instances (see
/// the module docs): the signed-in user's `u<id>`, else the anonymous token the answer sets
/// or the request sent.
pub(crate) async fn owner_cookie(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !state.carts.routes_by_owner() {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let user = OptionalAuthUser::from_request_parts(&mut parts, &state)
        .await
        .ok()
        .and_then(|OptionalAuthUser(user)| user);
    let sent = strata_core::http::cookies(&parts.headers, OWNER_COOKIE)
        .next()
        .map(str::to_owned);
    let anonymous = cart_cookie(&parts.headers);
    let mut response = next
        .run(axum::extract::Request::from_parts(parts, body))
        .await;
    let set = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let token = v.strip_prefix(CART_COOKIE)?.strip_prefix('=')?;
            let token = token.split(';').next()?;
            Some(token.to_owned())
        });
    let wanted = match user {
        Some(user) => Some(format!("u{}", user.id)),
        None => match set {
            Some(token) if token.is_empty() => None,
            Some(token) => Some(token),
            None => anonymous,
        },
    };
    if let Some(wanted) = wanted
        && sent.as_deref() != Some(wanted.as_str())
    {
        let value = format!(
            "{OWNER_COOKIE}={wanted}; Path=/; Max-Age={CART_COOKIE_MAX_AGE_SECS}; HttpOnly; \
             SameSite=Lax"
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A fresh cart token: 128 random bits from the thread's CSPRNG, as 32 lowercase hex digits.
pub(crate) fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The first well-formed `strata_cart` token among the request's `Cookie` headers.
pub(crate) fn cart_cookie(headers: &HeaderMap) -> Option<String> {
    strata_core::http::cookies(headers, CART_COOKIE)
        .find(|value| {
            value.len() == TOKEN_HEX_LEN
                && value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(header::COOKIE, HeaderValue::from_static(cookie));
        }
        headers
    }

    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let a = new_token();
        assert_eq!(a.len(), TOKEN_HEX_LEN);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_token());
    }

    #[test]
    fn only_well_formed_cart_cookies_count() {
        let token = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            cart_cookie(&headers(&[
                "a=1; strata_cart=0123456789abcdef0123456789abcdef; b=2"
            ]))
            .as_deref(),
            Some(token)
        );
        assert_eq!(
            cart_cookie(&headers(&[
                "strata_cart=nope",
                "strata_cart=0123456789abcdef0123456789abcdef"
            ]))
            .as_deref(),
            Some(token)
        );
        for bad in [
            "strata_cart=",
            "strata_cart=0123456789ABCDEF0123456789ABCDEF",
            "strata_cart=0123456789abcdef0123456789abcdef00",
            "other=0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(cart_cookie(&headers(&[bad])), None, "{bad}");
        }
        assert_eq!(cart_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies_are_set_and_cleared_with_the_documented_attributes() {
        let mut h = HeaderMap::new();
        CookieAction::Set("ab".into()).apply(&mut h);
        let set = h[header::SET_COOKIE].to_str().unwrap();
        assert!(set.starts_with("strata_cart=ab;"), "{set}");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/;", "Max-Age=2592000"] {
            assert!(set.contains(attribute), "{set}");
        }
        let mut h = HeaderMap::new();
        CookieAction::Clear.apply(&mut h);
        assert!(
            h[header::SET_COOKIE]
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
        let mut h = HeaderMap::new();
        CookieAction::Keep.apply(&mut h);
        assert!(h.is_empty());
    }
}
