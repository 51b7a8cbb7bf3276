//! Entry points for the fuzz targets in `fuzz/`: the api's own readers of client input (its
//! extractors and the field checks of its handlers), run on raw query strings and bodies
//! without a server or a store. Not part of the crate's API: nothing here changes behaviour,
//! it only calls what the handlers call.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{Request, Uri, header};
use axum::response::IntoResponse;
use strata_store::{NewProduct, Page, ProductQuery, ProductUpdate};

use crate::ApiError;
use crate::auth::{Email, Password, Role};
use crate::cart::{AddItem, SetItemRequest};
use crate::catalog::{ListQuery, NewProductRequest, ProductPatch};
use crate::extract::{Json, Query, Valid, ValidQuery};
use crate::orders::{CheckoutBody, ListOrdersQuery};
use crate::quote::{Pricing, QuoteAsk};
use crate::users::{LogInRequest, RegisterRequest, SetRoleRequest, parse_display_name};

/// Runs an extractor's future to its end. The extractors here read only the request they
/// are given (a query string, a body already in memory), so the first poll finishes.
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("an extractor waited on a request held in memory"),
    }
}

fn parts(uri: &Uri) -> axum::http::request::Parts {
    let mut request = Request::new(());
    *request.uri_mut() = uri.clone();
    request.into_parts().0
}

/// `GET /api/v1/products`: the list query, as its extractor parses it.
///
/// # Errors
/// The [`ApiError`] the client would get.
pub fn products_query(uri: &Uri) -> Result<ProductQuery, ApiError> {
    ready(ListQuery::from_request_parts(&mut parts(uri), &())).map(|ListQuery(query)| query)
}

/// `?region=&coupon=` of the cart: the normalised region and coupon code.
///
/// # Errors
/// The [`ApiError`] the client would get.
pub fn price_query(uri: &Uri) -> Result<(Option<String>, Option<String>), ApiError> {
    let ValidQuery(pricing) = ready(ValidQuery::<Pricing>::from_request_parts(
        &mut parts(uri),
        &(),
    ))?;
    Ok(pricing_strings(&pricing))
}

/// `GET /api/v1/orders` (and notifications): the page asked for, as the handler checks it.
///
/// # Errors
/// The [`ApiError`] the client would get.
pub fn orders_query(uri: &Uri) -> Result<Page, ApiError> {
    let Query(query) = ready(Query::<ListOrdersQuery>::from_request_parts(
        &mut parts(uri),
        &(),
    ))?;
    Page::new(
        query.page.unwrap_or(1),
        query.per_page.unwrap_or(Page::DEFAULT_PER_PAGE),
    )
    .map_err(|e| ApiError::InvalidQuery(e.to_string()))
}

/// The JSON bodies the api reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /api/v1/cart/items`.
    AddItem,
    /// `PATCH /api/v1/cart/items/{id}`.
    SetItem,
    /// `POST /api/v1/prices/quote`.
    Quote,
    /// `POST /api/v1/orders`.
    Checkout,
    /// `POST /api/v1/products`.
    NewProduct,
    /// `PATCH /api/v1/products/{id}`.
    ProductPatch,
    /// `POST /api/v1/users`.
    Register,
    /// `POST /api/v1/sessions`.
    LogIn,
    /// `PATCH /api/v1/users/{id}/role`.
    SetRole,
}

impl BodyKind {
    /// Every kind, for a fuzz input's selector byte.
    pub const ALL: [BodyKind; 9] = [
        BodyKind::AddItem,
        BodyKind::SetItem,
        BodyKind::Quote,
        BodyKind::Checkout,
        BodyKind::NewProduct,
        BodyKind::ProductPatch,
        BodyKind::Register,
        BodyKind::LogIn,
        BodyKind::SetRole,
    ];
}

/// What an accepted body gave, where its checked form is a public type.
#[derive(Debug)]
pub enum Accepted {
    /// A body whose checked form stays inside the crate.
    Checked,
    /// A checkout's or quote's pricing: the normalised region and coupon code.
    Pricing(Option<String>, Option<String>),
    /// A new product, every field checked.
    NewProduct(NewProduct),
    /// A product change, every field given checked.
    ProductUpdate(ProductUpdate),
    /// A registration: the normalised email and display name.
    Register { email: String, display_name: String },
}

/// Reads `bytes` as a JSON body of `kind` sent with `Content-Type: application/json`, through
/// the extractor its handler uses and then the handler's own field checks (the ones made
/// before the store is asked).
///
/// # Errors
/// The [`ApiError`] the client would get.
pub fn body(kind: BodyKind, bytes: &[u8]) -> Result<Accepted, ApiError> {
    let request = || {
        Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes.to_vec()))
            .unwrap_or_default()
    };
    match kind {
        BodyKind::AddItem => {
            ready(Valid::<AddItem>::from_request(request(), &())).map(|_| Accepted::Checked)
        }
        BodyKind::SetItem => {
            ready(Json::<SetItemRequest>::from_request(request(), &())).map(|_| Accepted::Checked)
        }
        BodyKind::Quote => {
            ready(Valid::<QuoteAsk>::from_request(request(), &())).map(|_| Accepted::Checked)
        }
        BodyKind::Checkout => {
            let Json(body) = ready(Json::<CheckoutBody>::from_request(request(), &()))?;
            let pricing = Pricing::parse(body.region.as_deref(), body.coupon.as_deref())?;
            let (region, coupon) = pricing_strings(&pricing);
            Ok(Accepted::Pricing(region, coupon))
        }
        BodyKind::NewProduct => {
            let Json(body) = ready(Json::<NewProductRequest>::from_request(request(), &()))?;
            Ok(Accepted::NewProduct(body.parse()?))
        }
        BodyKind::ProductPatch => {
            let Json(body) = ready(Json::<ProductPatch>::from_request(request(), &()))?;
            Ok(Accepted::ProductUpdate(body.parse()?))
        }
        BodyKind::Register => {
            let Json(body) = ready(Json::<RegisterRequest>::from_request(request(), &()))?;
            let email = crate::users::parse_email(&body.email)?;
            Password::new(body.password).map_err(|message| ApiError::InvalidField {
                field: "password",
                message,
            })?;
            let display_name = parse_display_name(&body.display_name)?;
            Ok(Accepted::Register {
                email: Email::into_string(email),
                display_name,
            })
        }
        BodyKind::LogIn => {
            ready(Json::<LogInRequest>::from_request(request(), &())).map(|_| Accepted::Checked)
        }
        BodyKind::SetRole => {
            let Json(body) = ready(Json::<SetRoleRequest>::from_request(request(), &()))?;
            let _: Role = body.role;
            Ok(Accepted::Checked)
        }
    }
}

fn pricing_strings(pricing: &Pricing) -> (Option<String>, Option<String>) {
    (
        pricing.region.as_ref().map(|r| r.as_str().to_owned()),
        pricing.coupon.as_ref().map(|c| c.as_str().to_owned()),
    )
}

/// The status and content type an error answers with: what the client sees.
pub fn status_of(error: ApiError) -> (axum::http::StatusCode, Option<String>) {
    let response = error.into_response();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, content_type)
}
