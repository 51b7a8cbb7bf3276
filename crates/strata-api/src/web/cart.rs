//! The cart page (`/cart`) and its forms: add a product (`POST /cart/items`), change a line's
//! quantity or remove it (`POST /cart/items/{product_id}`, quantity 0 removes). The cart is the
//! JSON endpoints' cart (by session, or by the anonymous `strata_cart` cookie), changed and
//! priced by the same functions, limits included.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use strata_core::domain::ProductId;

use super::currency::Currency;
use super::error::PageError;
use super::form::{Form, PageId};
use super::layout::{Layout, Visitor};
use super::{local_path, render, see_other};
use crate::cart::{
    AddItem, AddItemRequest, CartCaller, CartView, add_to_cart, cart_lines, new_quantity,
    priced_cart, set_in_cart,
};
use crate::extract::FromWire;
use crate::quote::Pricing;
use crate::state::AppState;

/// The cart pages' routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/cart", get(cart))
        .route("/cart/items", post(add))
        .route("/cart/items/{product_id}", post(set))
}

/// A whole number typed in form field `field`.
pub(super) fn whole(field: &str, value: &str) -> Result<i64, PageError> {
    value.trim().parse().map_err(|_| {
        PageError::problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{field}` must be a whole number"),
        )
    })
}

/// One line of the cart as the page shows it.
#[derive(Debug)]
pub(super) struct Row {
    pub product_id: i64,
    pub name: String,
    pub unit_price: String,
    pub quantity: i64,
    pub discount: String,
    pub has_discount: bool,
    pub total: String,
}

/// The amounts of a priced cart in the display currency.
#[derive(Debug)]
pub(super) struct Totals {
    pub subtotal: String,
    pub discount: String,
    pub has_discount: bool,
    pub tax: String,
    pub tax_rate: String,
    pub total: String,
    /// The total in the base currency: what is charged.
    pub charged: String,
}

/// The rows and totals of `cart` as `layout` shows them.
pub(super) fn rows_and_totals(
    layout: &Layout,
    base: &Currency,
    cart: &CartView,
) -> (Vec<Row>, Totals) {
    let rows = cart
        .items
        .iter()
        .zip(&cart.quote.lines)
        .map(|(item, line)| Row {
            product_id: item.product_id,
            name: item.name.clone(),
            unit_price: layout.price(item.unit_price_cents),
            quantity: item.quantity,
            discount: layout.price(line.tier_discount_cents),
            has_discount: line.tier_discount_cents > 0,
            total: layout.price(line.total_cents),
        })
        .collect();
    let quote = &cart.quote;
    let totals = Totals {
        subtotal: layout.price(quote.subtotal_cents),
        discount: layout.price(quote.discount_cents),
        has_discount: quote.discount_cents > 0,
        tax: layout.price(quote.tax_cents),
        tax_rate: format!(
            "{}.{:02} %",
            quote.tax_rate_bps / 100,
            quote.tax_rate_bps % 100
        ),
        total: layout.price(quote.total_cents),
        charged: base.format(quote.total_cents),
    };
    (rows, totals)
}

#[derive(Template)]
#[template(path = "cart.html")]
struct CartPage {
    layout: Layout,
    rows: Vec<Row>,
    totals: Totals,
    max_quantity: u32,
}

async fn cart(
    State(state): State<AppState>,
    Visitor(user): Visitor,
    headers: HeaderMap,
    layout: Layout,
) -> Result<Response, PageError> {
    let caller = CartCaller::from_parts(user, &headers);
    let (lines, cookie) = cart_lines(&state, caller).await?;
    let cart = priced_cart(&state, &lines, &Pricing::default()).await?;
    let (rows, totals) = rows_and_totals(&layout, state.currencies.base(), &cart);
    let mut response = render(
        StatusCode::OK,
        &CartPage {
            layout,
            rows,
            totals,
            max_quantity: crate::extract::Quantity::MAX,
        },
    );
    cookie.apply(response.headers_mut());
    Ok(response)
}

/// `POST /cart/items` form.
#[derive(Debug, Deserialize)]
struct AddForm {
    product_id: String,
    quantity: Option<String>,
    next: Option<String>,
}

async fn add(
    State(state): State<AppState>,
    Visitor(user): Visitor,
    headers: HeaderMap,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    let item = AddItem::from_wire(AddItemRequest {
        product_id: whole("product_id", &form.product_id)?,
        quantity: match form.quantity.as_deref() {
            Some(quantity) if !quantity.trim().is_empty() => whole("quantity", quantity)?,
            _ => 1,
        },
    })?;
    let caller = CartCaller::from_parts(user, &headers);
    let (_, cookie) = add_to_cart(&state, caller, item).await?;
    let next = match form.next.as_deref() {
        Some(next) => local_path(Some(next)),
        None => "/cart".to_owned(),
    };
    let mut response = see_other(&next, &[]);
    cookie.apply(response.headers_mut());
    Ok(response)
}

/// `POST /cart/items/{product_id}` form: the line's new quantity.
#[derive(Debug, Deserialize)]
struct SetForm {
    quantity: String,
}

async fn set(
    State(state): State<AppState>,
    Visitor(user): Visitor,
    headers: HeaderMap,
    PageId(product_id): PageId<ProductId>,
    Form(form): Form<SetForm>,
) -> Result<Response, PageError> {
    let quantity = new_quantity(product_id, whole("quantity", &form.quantity)?)?;
    let caller = CartCaller::from_parts(user, &headers);
    let (_, cookie) = set_in_cart(&state, caller, product_id, quantity).await?;
    let mut response = see_other("/cart", &[]);
    cookie.apply(response.headers_mut());
    Ok(response)
}
