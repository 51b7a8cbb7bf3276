//! Checkout and after: the checkout page (`/checkout`: the cart priced with the coupon and the
//! region asked for, tax shown, before paying), paying (`POST /checkout`), the order history
//! (`/orders`), an order (`/orders/{id}`, whose status the `order.js` module refreshes in
//! place) and the notifications (`/notifications`). All need a signed-in visitor.
//!
//! One click is one order: the checkout form carries an idempotency key made when the page
//! was rendered, so a double submit or a retry of the same form is a replay of the same
//! checkout (`strata_store::OrderRepo::checkout`) and lands on the same order.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use strata_core::domain::OrderId;
use strata_core::http::TraceContext;
use strata_store::{OrderFilter, OrderStatus};
use time::OffsetDateTime;

use super::cart::{Row, Totals, rows_and_totals};
use super::error::PageError;
use super::form::{Form, PageId, PageQuery};
use super::layout::{Layout, SignedIn};
use super::{render, see_other};
use crate::cart::{CartCaller, cart_lines, priced_cart};
use crate::orders::{checkout, find_order, parse_idempotency_key};
use crate::prices::TAX_RATES;
use crate::quote::Pricing;
use crate::state::AppState;

/// Orders and notifications per page.
const PER_PAGE: u32 = 20;

/// The checkout and order pages' routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/checkout", get(checkout_page).post(pay))
        .route("/orders", get(order_history))
        .route("/orders/{id}", get(order_page))
        .route("/notifications", get(notifications))
}

/// A time as the pages show it: `2026-12-06 08:01 UTC`.
fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// A status as people read it.
fn status_label(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::Placed => "placed",
        OrderStatus::Paid => "paid",
        OrderStatus::PaymentFailed => "payment failed",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Cancelled => "cancelled",
    }
}

/// `?coupon=&region=` of the checkout page.
#[derive(Debug, Default, Deserialize)]
struct CheckoutParams {
    coupon: Option<String>,
    region: Option<String>,
}

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    layout: Layout,
    rows: Vec<Row>,
    totals: Totals,
    coupon: String,
    /// What became of the coupon, for people; `None` without one.
    coupon_note: Option<String>,
    coupon_applies: bool,
    /// Region code and whether it is the one priced.
    regions: Vec<(&'static str, bool)>,
    region: String,
    idempotency_key: String,
}

async fn checkout_page(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    headers: HeaderMap,
    layout: Layout,
    PageQuery(params): PageQuery<CheckoutParams>,
) -> Result<Response, PageError> {
    let pricing = Pricing::parse(params.region.as_deref(), params.coupon.as_deref())?;
    let caller = CartCaller::new(user, &headers);
    let (lines, cookie) = cart_lines(&state, caller).await?;
    let cart = priced_cart(&state, &lines, &pricing).await?;
    let (rows, totals) = rows_and_totals(&layout, state.currencies.base(), &cart);
    let coupon_note = cart.quote.coupon.as_ref().map(|c| match c.rejection {
        None => format!("{} takes {} off", c.code, layout.price(c.discount_cents)),
        Some(rejection) => format!("{} cannot be used: {}", c.code, rejection.describe()),
    });
    let coupon_applies = cart.quote.coupon.as_ref().is_none_or(|c| c.applied);
    let region = cart.quote.region.clone();
    let regions = TAX_RATES
        .iter()
        .map(|rate| (rate.region, rate.region == region))
        .collect();
    let mut response = render(
        StatusCode::OK,
        &CheckoutPage {
            layout,
            rows,
            totals,
            coupon: pricing
                .coupon
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            coupon_note,
            coupon_applies,
            regions,
            region,
            // Made once per rendering: every submit of this form is the same checkout.
            idempotency_key: uuid::Uuid::new_v4().to_string(),
        },
    );
    cookie.apply(response.headers_mut());
    Ok(response)
}

/// `POST /checkout` form.
#[derive(Debug, Deserialize)]
struct PayForm {
    idempotency_key: String,
    coupon: Option<String>,
    region: Option<String>,
}

async fn pay(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    trace: TraceContext,
    headers: HeaderMap,
    Form(form): Form<PayForm>,
) -> Result<Response, PageError> {
    let key = parse_idempotency_key(&form.idempotency_key)?;
    let pricing = Pricing::parse(form.region.as_deref(), form.coupon.as_deref())?;
    let caller = CartCaller::new(user.clone(), &headers);
    let (outcome, cookie) = checkout(&state, &user, caller, &key, &pricing, &trace).await?;
    let mut response = see_other(&format!("/orders/{}", outcome.order.id), &[]);
    cookie.apply(response.headers_mut());
    Ok(response)
}

/// `?page=` of the lists.
#[derive(Debug, Default, Deserialize)]
struct PageParams {
    page: Option<u32>,
}

/// One order in the history.
#[derive(Debug)]
struct OrderRow {
    id: i64,
    placed: String,
    status: &'static str,
    total: String,
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrderHistoryPage {
    layout: Layout,
    orders: Vec<OrderRow>,
    total: i64,
    prev: Option<String>,
    next: Option<String>,
}

/// The links to the pages around `page` of a list of `total` items at `path`.
fn around(path: &str, page: u32, per_page: u32, total: i64) -> (Option<String>, Option<String>) {
    let last = super::shop::page_count(total, per_page);
    let prev = (page > 1).then(|| format!("{path}?page={}", page - 1));
    let next = (u64::from(page) < last).then(|| format!("{path}?page={}", page + 1));
    (prev, next)
}

async fn order_history(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    layout: Layout,
    PageQuery(params): PageQuery<PageParams>,
) -> Result<Response, PageError> {
    let page = crate::page::page(params.page, Some(PER_PAGE))?;
    let filter = OrderFilter {
        user_id: Some(user.id),
        status: None,
    };
    let found = state
        .store
        .orders()
        .list(filter, page)
        .await
        .map_err(crate::ApiError::from)?;
    let orders = found
        .items
        .iter()
        .map(|order| OrderRow {
            id: order.id,
            placed: when(order.created_at),
            status: status_label(order.status),
            total: layout.price(order.total_cents),
        })
        .collect();
    let (prev, next) = around("/orders", found.page, found.per_page, found.total);
    Ok(render(
        StatusCode::OK,
        &OrderHistoryPage {
            layout,
            orders,
            total: found.total,
            prev,
            next,
        },
    ))
}

/// One line of an order.
#[derive(Debug)]
struct OrderLineRow {
    name: String,
    product_id: i64,
    quantity: i64,
    unit_price: String,
    total: String,
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    layout: Layout,
    id: i64,
    status: &'static str,
    status_code: &'static str,
    done: bool,
    placed: String,
    lines: Vec<OrderLineRow>,
    subtotal: String,
    discount: String,
    has_discount: bool,
    coupon: String,
    tax: String,
    region: String,
    total: String,
    charged: String,
    /// Status and when it was entered, oldest first.
    history: Vec<(&'static str, String)>,
}

async fn order_page(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    layout: Layout,
    PageId(id): PageId<OrderId>,
) -> Result<Response, PageError> {
    let order = find_order(&state, &user, id).await?;
    let lines = order
        .lines
        .iter()
        .map(|line| OrderLineRow {
            name: line.name.clone(),
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price: layout.price(line.unit_price_cents),
            total: layout.price(line.total_cents),
        })
        .collect();
    let history = order
        .history
        .iter()
        .map(|change| (status_label(change.status), when(change.at)))
        .collect();
    Ok(render(
        StatusCode::OK,
        &OrderPage {
            id: order.id,
            status: status_label(order.status),
            status_code: order.status.as_str(),
            done: order.status.is_final(),
            placed: when(order.created_at),
            lines,
            subtotal: layout.price(order.subtotal_cents),
            discount: layout.price(order.discount_cents),
            has_discount: order.discount_cents > 0,
            coupon: order.coupon_code.clone().unwrap_or_default(),
            tax: layout.price(order.tax_cents),
            region: order.region.clone(),
            total: layout.price(order.total_cents),
            charged: state.currencies.base().format(order.total_cents),
            history,
            layout,
        },
    ))
}

/// One notification.
#[derive(Debug)]
struct NotificationRow {
    order_id: i64,
    message: String,
    at: String,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    layout: Layout,
    notifications: Vec<NotificationRow>,
    total: i64,
    prev: Option<String>,
    next: Option<String>,
}

async fn notifications(
    State(state): State<AppState>,
    SignedIn(user): SignedIn,
    layout: Layout,
    PageQuery(params): PageQuery<PageParams>,
) -> Result<Response, PageError> {
    let page = crate::page::page(params.page, Some(PER_PAGE))?;
    let found = state
        .store
        .notifications()
        .list_for_user(user.id, page)
        .await
        .map_err(crate::ApiError::from)?;
    let notifications = found
        .items
        .iter()
        .map(|n| NotificationRow {
            order_id: n.order_id,
            message: n.message.clone(),
            at: when(n.created_at),
        })
        .collect();
    let (prev, next) = around("/notifications", found.page, found.per_page, found.total);
    Ok(render(
        StatusCode::OK,
        &NotificationsPage {
            layout,
            notifications,
            total: found.total,
            prev,
            next,
        },
    ))
}
