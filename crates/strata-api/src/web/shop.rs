//! The catalog pages: home (`/`: featured products and categories), search (`/search`: words,
//! category, price range in the display currency, sort, pages) and the product page
//! (`/products/{id}`: image, stock, add to cart, recommendations); and `POST /currency`, the
//! display currency picker of every page. Each reads what the JSON endpoints answer, through
//! the same cached functions.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use strata_core::domain::ProductId;

use super::currency::currency_cookie;
use super::error::PageError;
use super::form::{Form, PageId, PageQuery};
use super::layout::Layout;
use super::{local_path, render, see_other};
use crate::ApiError;
use crate::catalog::{categories_json, parse_list_query, product_json, product_page_json};
use crate::error::echo;
use crate::extract::Quantity;
use crate::recommendations::recommendations_json;
use crate::state::AppState;

/// Products on the home page.
const FEATURED: u32 = 8;
/// Products per search page.
const PER_PAGE: u32 = 12;

/// The catalog pages' routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/search", get(search))
        .route("/products/{id}", get(product))
        .route("/currency", post(choose_currency))
}

/// A product as the JSON endpoints encode it (the fields the pages show).
#[derive(Debug, Deserialize)]
pub(super) struct ProductJson {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub price_cents: i64,
    pub stock: i64,
    /// Absent only from an entry cached by an older instance: the page then shows no image.
    #[serde(default)]
    pub image_url: Option<String>,
}

/// A page of products as `GET /api/v1/products` encodes it.
#[derive(Debug, Deserialize)]
struct PageJson {
    items: Vec<ProductJson>,
    total: i64,
    page: u32,
    per_page: u32,
}

/// A category as the categories loader encodes it.
#[derive(Debug, Deserialize)]
pub(super) struct CategoryJson {
    pub category: String,
    pub products: i64,
}

/// The recommendations of a product as their endpoint encodes them.
#[derive(Debug, Default, Deserialize)]
struct RecommendationsJson {
    items: Vec<ProductJson>,
}

/// A product as a page shows it: the price already in the display currency.
#[derive(Debug)]
pub(super) struct Card {
    pub id: i64,
    pub name: String,
    pub category: String,
    pub price: String,
    pub stock: i64,
    /// Where its image is, as the product's JSON says.
    pub image_url: Option<String>,
}

impl Card {
    fn new(layout: &Layout, product: &ProductJson) -> Self {
        Self {
            id: product.id,
            name: product.name.clone(),
            category: product.category.clone(),
            price: layout.price(product.price_cents),
            stock: product.stock,
            image_url: product.image_url.clone(),
        }
    }
}

/// Pages of `per_page` needed for `total` items.
pub(super) fn page_count(total: i64, per_page: u32) -> u64 {
    u64::try_from(total)
        .unwrap_or(0)
        .div_ceil(u64::from(per_page.max(1)))
}

/// Decodes what an endpoint's function encoded (ours: failing is a bug).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| PageError::from(ApiError::Unexpected(format!("a page's data: {e}"))))
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    featured: Vec<Card>,
    categories: Vec<CategoryJson>,
}

async fn home(State(state): State<AppState>, layout: Layout) -> Result<Response, PageError> {
    let query = parse_list_query(&[("per_page".to_owned(), FEATURED.to_string())])?;
    let page: PageJson = decode(&product_page_json(&state, &query).await?)?;
    let categories = decode(&categories_json(&state).await?)?;
    let featured = page.items.iter().map(|p| Card::new(&layout, p)).collect();
    Ok(render(
        StatusCode::OK,
        &HomePage {
            layout,
            featured,
            categories,
        },
    ))
}

/// `GET /search` query: every field optional; unknown ones are ignored.
#[derive(Debug, Default, Deserialize)]
struct SearchParams {
    q: Option<String>,
    category: Option<String>,
    /// Lowest price, in the display currency (`12.50`).
    min: Option<String>,
    /// Highest price, in the display currency.
    max: Option<String>,
    sort: Option<String>,
    page: Option<String>,
}

/// The sorts the search page offers: value and label.
const SORTS: [(&str, &str); 5] = [
    ("", "Best match"),
    ("price_asc", "Price, low to high"),
    ("price_desc", "Price, high to low"),
    ("name", "Name"),
    ("id", "Newest last"),
];

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    layout: Layout,
    q: String,
    min: String,
    max: String,
    /// Category slug, label, selected.
    categories: Vec<(String, String, bool)>,
    /// Sort value, label, selected.
    sorts: Vec<(&'static str, &'static str, bool)>,
    results: Vec<Card>,
    total: i64,
    page: u32,
    pages: u64,
    prev: Option<String>,
    next: Option<String>,
}

async fn search(
    State(state): State<AppState>,
    layout: Layout,
    PageQuery(params): PageQuery<SearchParams>,
) -> Result<Response, PageError> {
    let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let (q, category, min, max, sort) = (
        text(&params.q),
        text(&params.category),
        text(&params.min),
        text(&params.max),
        text(&params.sort),
    );
    let mut pairs = vec![("per_page".to_owned(), PER_PAGE.to_string())];
    let mut keep = |key: &str, value: &str| {
        if !value.is_empty() {
            pairs.push((key.to_owned(), value.to_owned()));
        }
    };
    keep("q", &q);
    keep("category", &category);
    keep("sort", &sort);
    keep("page", &text(&params.page));
    for (key, bound) in [("min_price", &min), ("max_price", &max)] {
        if !bound.is_empty() {
            let cents = layout.currency.parse_amount(bound).ok_or_else(|| {
                PageError::problem(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "a price bound is an amount like 12.50 in {}, got `{}`",
                        layout.currency.code,
                        echo(bound)
                    ),
                )
            })?;
            pairs.push((key.to_owned(), cents.to_string()));
        }
    }
    let query = parse_list_query(&pairs)?;
    let found: PageJson = decode(&product_page_json(&state, &query).await?)?;
    let categories: Vec<CategoryJson> = decode(&categories_json(&state).await?)?;
    let pages = page_count(found.total, found.per_page);
    let link = |page: u32| {
        let page = page.to_string();
        let query = serde_urlencoded::to_string([
            ("q", q.as_str()),
            ("category", category.as_str()),
            ("min", min.as_str()),
            ("max", max.as_str()),
            ("sort", sort.as_str()),
            ("page", page.as_str()),
        ])
        .unwrap_or_default();
        format!("/search?{query}")
    };
    let prev = (found.page > 1).then(|| link(found.page - 1));
    let next = (u64::from(found.page) < pages).then(|| link(found.page + 1));
    let results = found.items.iter().map(|p| Card::new(&layout, p)).collect();
    let categories = categories
        .into_iter()
        .map(|c| {
            let selected = c.category == category;
            let label = format!("{} ({})", c.category, c.products);
            (c.category, label, selected)
        })
        .collect();
    let sorts = SORTS
        .iter()
        .map(|(value, label)| (*value, *label, *value == sort))
        .collect();
    Ok(render(
        StatusCode::OK,
        &SearchPage {
            layout,
            q,
            min,
            max,
            categories,
            sorts,
            results,
            total: found.total,
            page: found.page,
            pages,
            prev,
            next,
        },
    ))
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    layout: Layout,
    product: Card,
    description: String,
    recommendations: Vec<Card>,
    max_quantity: u32,
}

async fn product(
    State(state): State<AppState>,
    layout: Layout,
    PageId(id): PageId<ProductId>,
) -> Result<Response, PageError> {
    let body = product_json(&state, id)
        .await?
        .ok_or(ApiError::ProductNotFound(id))?;
    let found: ProductJson = decode(&body)?;
    // A product removed in between has no recommendations: an empty row.
    let recommendations: RecommendationsJson = match recommendations_json(&state, id).await? {
        Some(body) => decode(&body)?,
        None => RecommendationsJson::default(),
    };
    let recommendations = recommendations
        .items
        .iter()
        .map(|p| Card::new(&layout, p))
        .collect();
    Ok(render(
        StatusCode::OK,
        &ProductPage {
            product: Card::new(&layout, &found),
            description: found.description,
            recommendations,
            max_quantity: Quantity::MAX,
            layout,
        },
    ))
}

/// `POST /currency` form.
#[derive(Debug, Deserialize)]
struct CurrencyForm {
    currency: String,
    next: Option<String>,
}

async fn choose_currency(
    State(state): State<AppState>,
    Form(form): Form<CurrencyForm>,
) -> Result<Response, PageError> {
    let currency = state.currencies.find(&form.currency).ok_or_else(|| {
        PageError::problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("prices are not shown in `{}`", echo(&form.currency)),
        )
    })?;
    Ok(see_other(
        &local_path(form.next.as_deref()),
        &[currency_cookie(&currency.code)],
    ))
}
