//! The caller's notifications: one per status change of their orders, written by the worker's
//! notifications handler. `GET /api/v1/notifications`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use strata_store::{Notification, NotificationPage, OrderStatus};
use time::OffsetDateTime;

use crate::ApiError;
use crate::auth::AuthUser;
use crate::extract::{Json, Query};
use crate::openapi::ErrorBody;
use crate::orders::ListOrdersQuery;
use crate::state::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/notifications", get(list_notifications))
}

/// One notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Notification)]
pub struct NotificationView {
    /// Increasing, never reused.
    pub id: i64,
    /// The order it is about.
    pub order_id: i64,
    /// The status the order entered.
    pub kind: OrderStatus,
    /// A sentence for the customer.
    pub message: String,
    /// When the order entered the status.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        Self {
            id: n.id,
            order_id: n.order_id,
            kind: n.kind,
            message: n.message,
            created_at: n.created_at,
        }
    }
}

crate::page::page_view! {
    /// One page of a user's notifications, newest first.
    NotificationPageView as NotificationPage: NotificationView from NotificationPage;
    items: "The notifications of this page.",
    total: "How many the user has in total.",
}

/// The caller's notifications, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    tag = "orders",
    security(("bearer" = [])),
    params(ListOrdersQuery),
    responses(
        (status = 200, description = "One page of the caller's notifications, newest first", body = NotificationPageView),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
    )
)]
pub(crate) async fn list_notifications(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<ListOrdersQuery>,
) -> Result<Json<NotificationPageView>, ApiError> {
    let page = query.page()?;
    Ok(Json(
        state
            .store
            .notifications()
            .list_for_user(user.id, page)
            .await?
            .into(),
    ))
}
