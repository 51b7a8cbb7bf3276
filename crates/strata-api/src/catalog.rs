//! The product catalog: `GET /api/v1/products` (one page) and `GET /api/v1/products/{id}`,
//! both read through the cache.
//!
//! Query strings and path ids are parsed here, at the boundary, by extractors whose rejection is
//! an [`ApiError`], so a malformed request gets the JSON error body, never axum's plain text.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use strata_core::domain::ProductId;
use strata_store::Page;

use crate::ApiError;
use crate::error::echo;
use crate::state::AppState;

/// The catalog's routes, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products", get(list_products))
        .route("/api/v1/products/{id}", get(get_product))
}

/// `GET /api/v1/products?page=&per_page=`: one page of products by ascending id, with totals.
async fn list_products(
    State(state): State<AppState>,
    ListQuery(page): ListQuery,
) -> Result<Response, ApiError> {
    let key = format!("products:p{}:n{}", page.page(), page.per_page());
    let store = &state.store;
    let body = state
        .cache
        .read_json(&key, async { Ok(Some(store.products().list(page).await?)) })
        .await?
        .ok_or_else(|| ApiError::Unexpected("a product page loader returned nothing".into()))?;
    Ok(json(body))
}

/// `GET /api/v1/products/{id}`: one product, or 404.
async fn get_product(
    State(state): State<AppState>,
    ProductIdParam(id): ProductIdParam,
) -> Result<Response, ApiError> {
    let key = format!("product:{id}");
    let store = &state.store;
    state
        .cache
        .read_json(&key, async { Ok(store.products().get(id.get()).await?) })
        .await?
        .map(json)
        .ok_or(ApiError::ProductNotFound(id))
}

/// A 200 whose body is already-encoded JSON (fresh from the store or straight from the cache).
fn json(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The `page` and `per_page` of a list request, validated: keys other than these two, repeated
/// keys, and values that are not integers in range are refused with `invalid_query`.
#[derive(Debug)]
struct ListQuery(Page);

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Decoding into pairs of strings accepts any query string; the checks are ours.
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::InvalidQuery(format!("malformed query string: {e}")))?;
        parse_page(&pairs).map(Self)
    }
}

/// Builds a [`Page`] from query pairs; missing keys take their defaults (page 1, 20 per page).
fn parse_page(pairs: &[(String, String)]) -> Result<Page, ApiError> {
    let mut page = None;
    let mut per_page = None;
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "page" => &mut page,
            "per_page" => &mut per_page,
            other => {
                return Err(ApiError::InvalidQuery(format!(
                    "unknown query parameter `{}`: expected `page` or `per_page`",
                    echo(other)
                )));
            }
        };
        if slot.is_some() {
            return Err(ApiError::InvalidQuery(format!(
                "`{key}` given more than once"
            )));
        }
        *slot = Some(parse_count(key, value)?);
    }
    Page::new(
        page.unwrap_or(1),
        per_page.unwrap_or(Page::DEFAULT_PER_PAGE),
    )
    .map_err(|e| ApiError::InvalidQuery(e.to_string()))
}

/// A non-negative integer written as plain digits (no sign, spaces or exponent) that fits a
/// `u32`; the range itself is [`Page::new`]'s to check.
fn parse_count(key: &str, value: &str) -> Result<u32, ApiError> {
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| value.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "`{key}` must be a positive integer, got `{}`",
                echo(value)
            ))
        })
}

/// The `{id}` of a product route, parsed as a [`ProductId`]; anything else is `invalid_id`.
#[derive(Debug)]
struct ProductIdParam(ProductId);

impl<S: Send + Sync> FromRequestParts<S> for ProductIdParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(raw)) => raw,
            // Percent-encoded bytes that are not UTF-8, for instance: still the client's input.
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                tracing::debug!(error = %e.body_text(), "undecodable product id");
                return Err(ApiError::InvalidId("(text that is not UTF-8)".into()));
            }
            Err(e) => return Err(ApiError::Unexpected(format!("product id path: {e}"))),
        };
        raw.parse().map(Self).map_err(|_| ApiError::InvalidId(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pages_default_and_parse() {
        assert_eq!(parse_page(&[]).unwrap(), Page::new(1, 20).unwrap());
        let page = parse_page(&pairs(&[("per_page", "5"), ("page", "3")])).unwrap();
        assert_eq!((page.page(), page.per_page()), (3, 5));
        assert_eq!(
            parse_page(&pairs(&[("per_page", "100")]))
                .unwrap()
                .per_page(),
            100
        );
    }

    #[test]
    fn bad_pages_are_invalid_queries() {
        let bad: &[&[(&str, &str)]] = &[
            &[("page", "0")],
            &[("page", "-1")],
            &[("page", "+1")],
            &[("page", "1.5")],
            &[("page", "")],
            &[("page", "abc")],
            &[("page", "4294967296")],
            &[("per_page", "0")],
            &[("per_page", "101")],
            &[("page", "1"), ("page", "2")],
            &[("sort", "name")],
        ];
        for query in bad {
            let result = parse_page(&pairs(query));
            assert!(
                matches!(result, Err(ApiError::InvalidQuery(_))),
                "{query:?}: {result:?}"
            );
        }
    }
}
