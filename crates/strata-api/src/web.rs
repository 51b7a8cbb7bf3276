//! The static pages the api serves: for now the landing page at `/`, compiled into the binary
//! (`web/index.html` at the repository root) so an instance needs no files next to it.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::state::AppState;

/// The landing page: lists the catalog by calling `GET /api/v1/products` from the browser.
const INDEX_HTML: &str = include_str!("../../../web/index.html");

/// The page routes, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}
