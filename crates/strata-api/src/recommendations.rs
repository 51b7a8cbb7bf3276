//! Recommendations: `GET /api/v1/products/{id}/recommendations`, the products bought together
//! with one product (the other lines of the orders that have a line of it, the most often
//! bought with it first), filled up with products of its category when orders say too little
//! (a new shop, a new product). Stateless: computed from the store on a miss, then served
//! cache-aside under the catalog version (see `cache_aside`), so a catalog write is seen at
//! once and a new order within `cache.ttl_secs`. The product page shows the same list.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use serde::Serialize;
use strata_core::domain::ProductId;

use crate::ApiError;
use crate::catalog::{ProductView, json};
use crate::extract::PathId;
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// How many products a recommendation lists at most: a row of a product page.
pub(crate) const MAX_RECOMMENDATIONS: usize = 4;

/// The recommendation route, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/products/{id}/recommendations",
        get(recommendations),
    )
}

/// The products recommended with one product.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Recommendations)]
pub struct RecommendationsView {
    /// The product they are recommended with.
    pub product_id: i64,
    /// At most 4 other products: first those bought in the same orders (most often first),
    /// then products of the same category (by id).
    pub items: Vec<ProductView>,
}

/// Products to suggest with a product: bought together with it, else of its category.
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}/recommendations",
    tag = "catalog",
    params(("id" = i64, Path, description = "The product's id", minimum = 1)),
    responses(
        (status = 200, description = "Up to 4 other products, bought together first", body = RecommendationsView),
        (status = 400, description = "`invalid_id`: not a positive integer", body = ErrorBody),
        (status = 404, description = "`not_found`: no product has this id", body = ErrorBody),
    )
)]
pub(crate) async fn recommendations(
    State(state): State<AppState>,
    PathId(id): PathId<ProductId>,
) -> Result<Response, ApiError> {
    recommendations_json(&state, id)
        .await?
        .map(|body| json(StatusCode::OK, body))
        .ok_or(ApiError::ProductNotFound(id))
}

/// The encoded [`RecommendationsView`] of product `id` (`None`: no such product), through
/// the cache: what the endpoint answers and the product page shows.
///
/// # Errors
/// When the store cannot be read.
pub(crate) async fn recommendations_json(
    state: &AppState,
    id: ProductId,
) -> Result<Option<Bytes>, ApiError> {
    let reads = state.store.catalog_reads();
    state
        .cache
        .read_catalog_json(&format!("recommendations:{id}"), async {
            let Some(product) = reads.get(id.get()).await? else {
                return Ok(None);
            };
            // At most 4: the conversion cannot fail.
            let limit = i64::try_from(MAX_RECOMMENDATIONS).unwrap_or(i64::MAX);
            let mut items = reads.bought_with(product.id, limit).await?;
            if items.len() < MAX_RECOMMENDATIONS {
                let fallback = reads
                    .in_category(&product.category, product.id, limit)
                    .await?;
                for other in fallback {
                    if items.len() == MAX_RECOMMENDATIONS {
                        break;
                    }
                    if items.iter().all(|item| item.id != other.id) {
                        items.push(other);
                    }
                }
            }
            Ok(Some(RecommendationsView {
                product_id: product.id,
                items: items.into_iter().map(ProductView::from).collect(),
            }))
        })
        .await
}
