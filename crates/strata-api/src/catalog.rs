//! The product catalog: list and search (`GET /api/v1/products`), detail
//! (`GET /api/v1/products/{id}`), both read through the cache; and the admin writes
//! (`POST /api/v1/products`, `PATCH /api/v1/products/{id}`), each of which invalidates every
//! cached catalog read (see `cache_aside` for how, and why a writer never reads its old price).
//!
//! Reads go to [`Store::catalog_reads`](strata_store::Store::catalog_reads): a PostgreSQL read
//! replica when `store.read_url` names one, so they may lag a write by the replication delay
//! (and a read that loads within that delay after a write caches the older row for up to
//! `cache.ttl_secs`); writes go to the primary and return the row as it committed there.
//!
//! Query strings, path ids and bodies are parsed here, at the boundary, by extractors whose
//! rejection is an [`ApiError`], so a malformed request gets the JSON error body, never
//! axum's plain text.

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_core::domain::ProductId;
use strata_store::{
    NewProduct, Product, ProductPage, ProductQuery, ProductSort, ProductUpdate, SearchText,
};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::ApiError;
use crate::auth::AdminUser;
use crate::error::echo;
use crate::extract::{Json, PathId, PriceCents, optional_whole_number, schema, whole_number};
use crate::images::image_url;
use crate::openapi::ErrorBody;
use crate::state::AppState;

/// Longest `q` accepted, in characters.
const MAX_QUERY_CHARS: usize = 200;
/// Longest product name, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 5000;
/// Longest sku and category slug, in characters.
const MAX_SLUG_CHARS: usize = 64;
/// Highest stock accepted: a billion units.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// The catalog's routes, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products", get(list_products).post(create_product))
        .route(
            "/api/v1/products/{id}",
            get(get_product).patch(update_product),
        )
}

/// A product as stored. Money is integer cents, never floating point.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Product)]
pub struct ProductView {
    /// Assigned by the database, increasing, never reused.
    pub id: i64,
    /// The stock keeping unit: the product's stable business key, unique.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer text for the product page; may be empty.
    pub description: String,
    /// Lowercase category slug (`books`, `kitchen`, ...), indexed for filtering.
    pub category: String,
    /// Unit price in cents, never negative.
    pub price_cents: i64,
    /// Units on hand, never negative.
    pub stock: i64,
    /// Where the product's image is served: a path of this site, `/images/products/{id}`
    /// (`404` while the product has none).
    #[schema(example = "/images/products/7")]
    pub image_url: String,
    /// When the row was inserted (UTC); serialized as RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When the row last changed (UTC); serialized as RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            description: p.description,
            category: p.category,
            price_cents: p.price_cents,
            stock: p.stock,
            image_url: image_url(p.id),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

crate::page::page_view! {
    /// One page of products, with what a client needs to draw pagination.
    ProductPageView as ProductPage: ProductView from ProductPage;
    items: "The products of this page, in the order asked for (by ascending id by default).",
    total: "How many products exist in total (that match the search, for a search).",
}

/// The query of `GET /api/v1/products` as the document describes it, each parameter's schema
/// built from the limits [`parse_list_query`] enforces (which decodes the query itself, to
/// refuse unknown and repeated keys).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ListParams {
    #[param(schema_with = q_schema)]
    q: Option<String>,
    #[param(schema_with = category_filter_schema)]
    category: Option<String>,
    #[param(schema_with = min_price_schema)]
    min_price: Option<i64>,
    #[param(schema_with = max_price_schema)]
    max_price: Option<i64>,
    #[param(schema_with = sort_schema)]
    sort: Option<String>,
    #[param(schema_with = crate::page::page_schema)]
    page: Option<u32>,
    #[param(schema_with = crate::page::per_page_schema)]
    per_page: Option<u32>,
}

fn q_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_QUERY_CHARS))
        .description(Some(format!(
            "Words to find in name or description (all must occur; the last also as a \
             prefix), at most {MAX_QUERY_CHARS} characters; empty: no search."
        )))
        .build()
}

fn category_filter_schema() -> Object {
    schema::string(
        format!("^[a-z0-9-]{{0,{MAX_SLUG_CHARS}}}$"),
        "Exact category slug, e.g. `books`; empty: every category.",
    )
    .build()
}

fn min_price_schema() -> Object {
    schema::integer(
        0,
        PriceCents::MAX,
        "Lowest price in cents, inclusive (above `max_price`: no product matches).",
    )
    .build()
}

fn max_price_schema() -> Object {
    schema::integer(0, PriceCents::MAX, "Highest price in cents, inclusive.").build()
}

fn sort_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ProductSort::ALL.map(ProductSort::as_str)))
        .description(Some(
            "`id` (the default without words to search), `price_asc`, `price_desc`, `name`, or \
             `relevance` (the default with words; name matches first; without words: by id)",
        ))
        .build()
}

/// List and search products, one page at a time, with the total number of matches.
#[utoipa::path(
    get,
    path = "/api/v1/products",
    tag = "catalog",
    params(ListParams),
    responses(
        (status = 200, description = "One page of matching products", body = ProductPageView),
        (status = 400, description = "`invalid_query`: unknown, repeated or malformed parameter", body = ErrorBody),
    )
)]
pub(crate) async fn list_products(
    State(state): State<AppState>,
    ListQuery(query): ListQuery,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        product_page_json(&state, &query).await?,
    ))
}

/// The encoded [`ProductPageView`] of `query`, through the cache: what the list answers and
/// the storefront's home and search pages show.
///
/// # Errors
/// When the store cannot be read.
pub(crate) async fn product_page_json(
    state: &AppState,
    query: &ProductQuery,
) -> Result<Bytes, ApiError> {
    let key = list_key(query);
    let store = &state.store;
    state
        .cache
        .read_catalog_json(&key, async {
            Ok(Some(ProductPageView::from(
                store.catalog_reads().search(query).await?,
            )))
        })
        .await?
        .ok_or_else(|| ApiError::Unexpected("a product page loader returned nothing".into()))
}

/// The encoded [`ProductView`] of product `id` (`None`: no such product), through the cache:
/// what the detail answers and the product page shows.
///
/// # Errors
/// When the store cannot be read.
pub(crate) async fn product_json(
    state: &AppState,
    id: ProductId,
) -> Result<Option<Bytes>, ApiError> {
    let key = product_key(id);
    let store = &state.store;
    state
        .cache
        .read_catalog_json(&key, async {
            Ok(store
                .catalog_reads()
                .get(id.get())
                .await?
                .map(ProductView::from))
        })
        .await
}

/// The encoded list of categories with their number of products (`[{"category", "products"}]`,
/// by slug), through the cache: the storefront's home page and search filters show it.
///
/// # Errors
/// When the store cannot be read.
pub(crate) async fn categories_json(state: &AppState) -> Result<Bytes, ApiError> {
    let store = &state.store;
    state
        .cache
        .read_catalog_json("categories", async {
            Ok(Some(store.catalog_reads().categories().await?))
        })
        .await?
        .ok_or_else(|| ApiError::Unexpected("the categories loader returned nothing".into()))
}

/// Get one product.
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    tag = "catalog",
    params(("id" = i64, Path, description = "The product's id", minimum = 1)),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 400, description = "`invalid_id`: not a positive integer", body = ErrorBody),
        (status = 404, description = "`not_found`: no product has this id", body = ErrorBody),
    )
)]
pub(crate) async fn get_product(
    State(state): State<AppState>,
    PathId(id): PathId<ProductId>,
) -> Result<Response, ApiError> {
    product_json(&state, id)
        .await?
        .map(|body| json(StatusCode::OK, body))
        .ok_or(ApiError::ProductNotFound(id))
}

/// `POST /api/v1/products` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductRequest {
    /// Unique business key.
    #[schema(schema_with = sku_schema)]
    pub sku: String,
    /// Display name.
    #[schema(schema_with = name_schema)]
    pub name: String,
    /// Longer text (default empty).
    #[serde(default)]
    #[schema(schema_with = description_schema)]
    pub description: String,
    /// Category slug.
    #[schema(schema_with = category_schema)]
    pub category: String,
    /// Unit price in cents.
    #[serde(deserialize_with = "whole_number")]
    #[schema(schema_with = price_schema)]
    pub price_cents: i64,
    /// Units on hand.
    #[serde(deserialize_with = "whole_number")]
    #[schema(schema_with = stock_schema)]
    pub stock: i64,
}

/// `PATCH /api/v1/products/{id}` body: any of the fields, at least one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    /// New display name.
    #[schema(schema_with = optional_name_schema)]
    pub name: Option<String>,
    /// New description.
    #[schema(schema_with = optional_description_schema)]
    pub description: Option<String>,
    /// New category slug.
    #[schema(schema_with = optional_category_schema)]
    pub category: Option<String>,
    /// New unit price in cents.
    #[serde(default, deserialize_with = "optional_whole_number")]
    #[schema(schema_with = optional_price_schema)]
    pub price_cents: Option<i64>,
    /// New units on hand.
    #[serde(default, deserialize_with = "optional_whole_number")]
    #[schema(schema_with = optional_stock_schema)]
    pub stock: Option<i64>,
}

impl NewProductRequest {
    /// The product to insert, every field checked as the document says.
    ///
    /// # Errors
    /// [`ApiError::InvalidField`] naming the first field out of bounds.
    pub(crate) fn parse(self) -> Result<NewProduct, ApiError> {
        Ok(NewProduct {
            sku: parse_sku(&self.sku)?,
            name: parse_name(&self.name)?,
            description: parse_description(self.description)?,
            category: parse_category(&self.category)?,
            price_cents: parse_price(self.price_cents)?.get(),
            stock: parse_stock(self.stock)?,
        })
    }
}

impl ProductPatch {
    /// The change to apply, every field given checked as the document says.
    ///
    /// # Errors
    /// [`ApiError::InvalidField`] naming the first field out of bounds;
    /// [`ApiError::InvalidBody`] when no field is given.
    pub(crate) fn parse(self) -> Result<ProductUpdate, ApiError> {
        let update = ProductUpdate {
            name: self.name.as_deref().map(parse_name).transpose()?,
            description: self.description.map(parse_description).transpose()?,
            category: self.category.as_deref().map(parse_category).transpose()?,
            price_cents: self
                .price_cents
                .map(parse_price)
                .transpose()?
                .map(PriceCents::get),
            stock: self.stock.map(parse_stock).transpose()?,
        };
        if update.is_empty() {
            return Err(ApiError::InvalidBody(
                "give at least one of name, description, category, price_cents, stock".into(),
            ));
        }
        Ok(update)
    }
}

/// Create a product (admins only).
#[utoipa::path(
    post,
    path = "/api/v1/products",
    tag = "catalog",
    security(("bearer" = [])),
    request_body = NewProductRequest,
    responses(
        (status = 201, description = "The product as stored", body = ProductView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 409, description = "`sku_taken`: a product has this sku", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body` or `invalid_field`: missing, unknown, mistyped or out-of-range field", body = ErrorBody),
    )
)]
pub(crate) async fn create_product(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    Json(body): Json<NewProductRequest>,
) -> Result<Response, ApiError> {
    let new = body.parse()?;
    let product = match state.store.products().insert(&new).await {
        Ok(product) => product,
        Err(e) if e.is_unique_violation() => return Err(ApiError::SkuTaken),
        Err(e) => return Err(e.into()),
    };
    state.cache.bump_catalog_version().await;
    tracing::info!(product_id = product.id, by = user.id, "product created");
    Ok((StatusCode::CREATED, Json(ProductView::from(product))).into_response())
}

/// Change a product's name, description, category, price or stock (admins only).
#[utoipa::path(
    patch,
    path = "/api/v1/products/{id}",
    tag = "catalog",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The product's id", minimum = 1)),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "The product as stored after the change", body = ProductView),
        (status = 400, description = "`invalid_id` or malformed JSON", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no product has this id", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body` or `invalid_field`: no field, unknown, mistyped or out-of-range field", body = ErrorBody),
    )
)]
pub(crate) async fn update_product(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    PathId(id): PathId<ProductId>,
    Json(body): Json<ProductPatch>,
) -> Result<Response, ApiError> {
    let update = body.parse()?;
    let product = state
        .store
        .products()
        .update(id.get(), &update)
        .await?
        .ok_or(ApiError::ProductNotFound(id))?;
    // After the commit: readers that took the old version fill dead keys from here on.
    state.cache.bump_catalog_version().await;
    tracing::info!(product_id = product.id, by = user.id, "product updated");
    Ok(Json(ProductView::from(product)).into_response())
}

/// The schemas of the product fields, from the limits the parsers below enforce.
fn sku_schema() -> Object {
    schema::string(
        format!("^[A-Za-z0-9._-]{{1,{MAX_SLUG_CHARS}}}$"),
        &format!("Unique business key: 1 to {MAX_SLUG_CHARS} of `A-Z a-z 0-9 . _ -`."),
    )
    .examples(["LAMP-042"])
    .build()
}

/// Not only spaces; no control characters (stored trimmed).
const NAME_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";
/// Any text but control characters other than line breaks and tabs.
const DESCRIPTION_PATTERN: &str = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$";

fn name_builder() -> ObjectBuilder {
    schema::string(
        NAME_PATTERN.to_owned(),
        &format!(
            "Display name: 1 to {MAX_NAME_CHARS} characters, not only spaces, no control \
             characters; stored without surrounding spaces."
        ),
    )
    .min_length(Some(1))
    .max_length(Some(MAX_NAME_CHARS))
    .examples(["Desk Lamp"])
}

fn name_schema() -> Object {
    name_builder().build()
}

fn optional_name_schema() -> Object {
    schema::nullable(name_builder(), Type::String)
}

fn description_builder() -> ObjectBuilder {
    schema::string(
        DESCRIPTION_PATTERN.to_owned(),
        &format!(
            "Longer text: at most {MAX_DESCRIPTION_CHARS} characters, no control characters \
             but line breaks and tabs."
        ),
    )
    .max_length(Some(MAX_DESCRIPTION_CHARS))
}

fn description_schema() -> Object {
    description_builder().build()
}

fn optional_description_schema() -> Object {
    schema::nullable(description_builder(), Type::String)
}

fn category_builder() -> ObjectBuilder {
    schema::string(
        format!("^[a-z0-9-]{{1,{MAX_SLUG_CHARS}}}$"),
        &format!("Category slug: 1 to {MAX_SLUG_CHARS} of `a-z 0-9 -`."),
    )
    .examples(["home"])
}

fn category_schema() -> Object {
    category_builder().build()
}

fn optional_category_schema() -> Object {
    schema::nullable(category_builder(), Type::String)
}

fn price_schema() -> Object {
    schema::price_cents().examples([2999]).build()
}

fn optional_price_schema() -> Object {
    schema::nullable(schema::price_cents(), Type::Integer)
}

fn stock_builder() -> ObjectBuilder {
    schema::integer(0, MAX_STOCK, &format!("Units on hand, 0 to {MAX_STOCK}."))
}

fn stock_schema() -> Object {
    stock_builder().examples([10]).build()
}

fn optional_stock_schema() -> Object {
    schema::nullable(stock_builder(), Type::Integer)
}

fn field(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field,
        message: message.into(),
    }
}

fn parse_sku(raw: &str) -> Result<String, ApiError> {
    let ok = (1..=MAX_SLUG_CHARS).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then(|| raw.to_owned())
        .ok_or_else(|| field("sku", "expected 1 to 64 of A-Z a-z 0-9 . _ -"))
}

/// Counted before trimming, as the document's `maxLength` counts.
fn parse_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || raw.chars().count() > MAX_NAME_CHARS {
        return Err(field("name", "expected 1 to 200 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(field("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

fn parse_description(raw: String) -> Result<String, ApiError> {
    if raw.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(field("description", "expected at most 5000 characters"));
    }
    // Line breaks and tabs are text; other control characters are not (and PostgreSQL
    // refuses NUL in text outright).
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(field("description", "must not contain control characters"));
    }
    Ok(raw)
}

/// A category slug: what `?category=` filters on.
fn is_slug(raw: &str) -> bool {
    (1..=MAX_SLUG_CHARS).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn parse_category(raw: &str) -> Result<String, ApiError> {
    is_slug(raw)
        .then(|| raw.to_owned())
        .ok_or_else(|| field("category", "expected 1 to 64 of a-z 0-9 -"))
}

fn parse_price(cents: i64) -> Result<PriceCents, ApiError> {
    PriceCents::try_from(cents)
        .map_err(|_| field("price_cents", "expected 0 to 1000000000000 cents"))
}

fn parse_stock(stock: i64) -> Result<i64, ApiError> {
    (0..=MAX_STOCK)
        .contains(&stock)
        .then_some(stock)
        .ok_or_else(|| field("stock", "expected 0 to 1000000000"))
}

/// The cache key of a product, below the catalog version.
fn product_key(id: ProductId) -> String {
    format!("product:{id}")
}

/// The cache key of a list request, below the catalog version: every part of the query in a
/// fixed order, with the defaults written out, so equal requests share one entry.
fn list_key(query: &ProductQuery) -> String {
    let text = query
        .text
        .as_ref()
        .map(SearchText::canonical)
        .unwrap_or_default();
    let opt = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    format!(
        "products:q={text}:c={}:min={}:max={}:s={}:p{}:n{}",
        query.category.as_deref().unwrap_or_default(),
        opt(query.min_price),
        opt(query.max_price),
        query.sort.as_str(),
        query.page.page(),
        query.page.per_page()
    )
}

/// A response whose body is already-encoded JSON (fresh from the store or from the cache).
pub(crate) fn json(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A list request, validated: keys other than the documented ones, repeated keys, and values
/// out of range are refused with `invalid_query`.
#[derive(Debug)]
pub(crate) struct ListQuery(pub(crate) ProductQuery);

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Decoding into pairs of strings accepts any query string; the checks are ours.
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::InvalidQuery(format!("malformed query string: {e}")))?;
        parse_list_query(&pairs).map(Self)
    }
}

/// The query keys of `GET /api/v1/products`.
const LIST_KEYS: [&str; 7] = [
    "q",
    "category",
    "min_price",
    "max_price",
    "sort",
    "page",
    "per_page",
];

/// Builds a [`ProductQuery`] from query pairs; missing keys take their defaults.
pub(crate) fn parse_list_query(pairs: &[(String, String)]) -> Result<ProductQuery, ApiError> {
    let mut values: [Option<&str>; LIST_KEYS.len()] = [None; LIST_KEYS.len()];
    for (key, value) in pairs {
        let Some(slot) = LIST_KEYS.iter().position(|k| k == key) else {
            return Err(ApiError::InvalidQuery(format!(
                "unknown query parameter `{}`: expected one of {}",
                echo(key),
                LIST_KEYS.join(", ")
            )));
        };
        if values[slot].replace(value).is_some() {
            return Err(ApiError::InvalidQuery(format!(
                "`{key}` given more than once"
            )));
        }
    }
    let [q, category, min_price, max_price, sort, page, per_page] = values;

    let text = match q {
        Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
            return Err(ApiError::InvalidQuery(format!(
                "`q` must have at most {MAX_QUERY_CHARS} characters"
            )));
        }
        Some(q) => SearchText::parse(q),
        None => None,
    };
    // An empty `category=` is no filter, as an empty `q=` is no search.
    let category = category
        .filter(|c| !c.is_empty())
        .map(|c| {
            is_slug(c).then(|| c.to_owned()).ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "`category` must be 1 to 64 of a-z 0-9 -, got `{}`",
                    echo(c)
                ))
            })
        })
        .transpose()?;
    let min_price = min_price
        .map(|v| parse_price_param("min_price", v))
        .transpose()?;
    let max_price = max_price
        .map(|v| parse_price_param("max_price", v))
        .transpose()?;
    // `min_price` above `max_price` is a range no product is in: an empty page, as documented.
    let sort = match sort {
        None if text.is_some() => ProductSort::Relevance,
        None => ProductSort::Id,
        // Relevance without words to weigh ranks every product alike: by id, as documented.
        Some("relevance") if text.is_none() => ProductSort::Id,
        Some(name) => ProductSort::parse(name).ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "`sort` must be one of id, price_asc, price_desc, name, relevance; got `{}`",
                echo(name)
            ))
        })?,
    };
    let page = crate::page::page(
        page.map(|v| parse_count("page", v)).transpose()?,
        per_page.map(|v| parse_count("per_page", v)).transpose()?,
    )?;
    Ok(ProductQuery {
        text,
        category,
        min_price,
        max_price,
        sort,
        page,
    })
}

/// Plain digits (no sign, spaces or exponent) whose value fits a `u32`; the range itself is
/// [`Page::new`]'s to check.
fn parse_count(key: &str, value: &str) -> Result<u32, ApiError> {
    digits(value)
        .then(|| value.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "`{key}` must be a positive integer, got `{}`",
                echo(value)
            ))
        })
}

/// A price bound in cents: plain digits, at most [`PriceCents::MAX`].
fn parse_price_param(key: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<PriceCents>()
        .map(PriceCents::get)
        .map_err(|_| {
            ApiError::InvalidQuery(format!(
                "`{key}` must be a whole number of cents from 0 to {}, got `{}`",
                PriceCents::MAX,
                echo(value)
            ))
        })
}

fn digits(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use strata_store::Page;

    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pages_default_and_parse() {
        let query = parse_list_query(&[]).unwrap();
        assert_eq!(query.page, Page::new(1, 20).unwrap());
        assert_eq!(query.sort, ProductSort::Id);
        let query = parse_list_query(&pairs(&[("per_page", "5"), ("page", "3")])).unwrap();
        assert_eq!((query.page.page(), query.page.per_page()), (3, 5));
    }

    #[test]
    fn search_filters_and_sort_parse() {
        let query = parse_list_query(&pairs(&[
            ("q", "Pocket  COOK"),
            ("category", "books"),
            ("min_price", "100"),
            ("max_price", "5000"),
        ]))
        .unwrap();
        assert_eq!(query.text.as_ref().unwrap().terms(), ["pocket", "cook"]);
        assert_eq!(query.sort, ProductSort::Relevance, "the default with q");
        assert_eq!(query.category.as_deref(), Some("books"));
        assert_eq!((query.min_price, query.max_price), (Some(100), Some(5000)));
        assert_eq!(
            list_key(&query),
            "products:q=pocket cook:c=books:min=100:max=5000:s=relevance:p1:n20"
        );
        let query = parse_list_query(&pairs(&[("q", " - "), ("sort", "price_desc")])).unwrap();
        assert_eq!((query.text, query.sort), (None, ProductSort::PriceDesc));
    }

    #[test]
    fn bad_queries_are_invalid() {
        let long = "a".repeat(201);
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
            &[("colour", "red")],
            &[("sort", "cheapest")],
            &[("min_price", "-1")],
            &[("min_price", "1e3")],
            &[("max_price", "1000000000001")],
            &[("category", "Books")],
            &[("page", "2147483648")],
            &[("category", "a b")],
            &[("q", long.as_str())],
        ];
        for query in bad {
            let result = parse_list_query(&pairs(query));
            assert!(
                matches!(result, Err(ApiError::InvalidQuery(_))),
                "{query:?}: {result:?}"
            );
        }
    }

    #[test]
    fn product_fields_are_validated() {
        assert!(parse_sku("LAMP-1_a.b").is_ok());
        for bad in ["", "has space", "ünï", &"x".repeat(65)] {
            assert!(parse_sku(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_name("  Lamp ").unwrap(), "Lamp");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"n".repeat(201)).is_err());
        assert!(parse_description("d".repeat(5001)).is_err());
        assert!(parse_description("line\nbreak\ttab".into()).is_ok());
        assert!(parse_description("nul\u{0}".into()).is_err());
        assert!(parse_category("home-2").is_ok());
        assert!(parse_category("Home").is_err());
        assert!(parse_price(-1).is_err());
        assert!(parse_price(PriceCents::MAX + 1).is_err());
        assert!(parse_price(0).is_ok());
        assert!(parse_stock(-1).is_err());
        assert!(parse_stock(MAX_STOCK).is_ok());
    }
}
