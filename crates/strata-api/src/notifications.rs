//! The caller's notifications: one per status change of their orders, written by the worker's
//! notifications handler. `GET /api/v1/notifications`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use strata_store::{NotificationPage, Page};

use crate::ApiError;
use crate::auth::AuthUser;
use crate::extract::{Json, Query};
use crate::openapi::ErrorBody;
use crate::orders::ListOrdersQuery;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/notifications", get(list_notifications))
}

/// The caller's notifications, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    tag = "orders",
    security(("bearer" = [])),
    params(ListOrdersQuery),
    responses(
        (status = 200, description = "One page of the caller's notifications, newest first", body = NotificationPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
    )
)]
pub(crate) async fn list_notifications(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<ListOrdersQuery>,
) -> Result<Json<NotificationPage>, ApiError> {
    let page = Page::new(
        query.page.unwrap_or(1),
        query.per_page.unwrap_or(Page::DEFAULT_PER_PAGE),
    )
    .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    Ok(Json(
        state
            .store
            .notifications()
            .list_for_user(user.id, page)
            .await?,
    ))
}
