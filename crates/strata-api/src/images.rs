//! Product images, kept in the object store (`strata-objects`) under `products/{id}`: served at
//! `GET /images/products/{id}` (and `HEAD`) with an `ETag` and `Cache-Control`, uploaded by
//! admins with `PUT /api/v1/products/{id}/image`; and the generated pictures of the demo
//! catalog ([`seed_demo_images`]).
//!
//! Uploads are PNG, JPEG or WebP whose first bytes agree with the declared type, never SVG:
//! only the generated pictures are SVG, and every image response carries a
//! `Content-Security-Policy` that keeps a picture opened on its own from running script.
//! Nothing is cached in the api: an upload replaces the object, its tag changes with its
//! bytes, and browsers holding the old one revalidate within [`IMAGE_CACHE_CONTROL`]'s age.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Serialize;
use strata_core::domain::ProductId;
use strata_objects::{AnyObjects, ObjectKey, ObjectMeta, ObjectStore};
use strata_store::{Page, Store};
use utoipa::ToSchema;

use crate::ApiError;
use crate::auth::AdminUser;
use crate::extract::{Json, PathId, body_rejection};
use crate::openapi::ErrorBody;
use crate::state::AppState;
use crate::web::if_none_match;

/// The largest image accepted, in bytes: 1 MiB, plenty for a product picture, and within the
/// default body limit of the gateway and instances (`gateway.max_body_bytes`, 1 MiB), which
/// applies first when it is lower.
pub const MAX_IMAGE_BYTES: usize = 1024 * 1024;

/// How long a browser or a shared cache may use an image without asking again: five minutes,
/// so a replaced image shows within that time under the same URL; after it, revalidation with
/// `If-None-Match` costs a `304` without a body.
pub const IMAGE_CACHE_CONTROL: &str = "public, max-age=300";

/// Sent with every image: no script, no fetches, and styles only inline (what the generated
/// SVGs use), in a sandbox, when a picture is opened on its own.
const IMAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/// The image types an upload may declare, with the first bytes each one starts with.
const UPLOAD_TYPES: &[(&str, &str)] = &[
    ("image/png", "PNG"),
    ("image/jpeg", "JPEG"),
    ("image/webp", "WebP"),
];

/// The routes of product images, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/images/products/{id}",
            get(get_product_image).head(head_product_image),
        )
        .route("/api/v1/products/{id}/image", put(put_product_image))
}

/// The object key of a product's image.
fn image_key(id: i64) -> ObjectKey {
    // A positive integer after a fixed prefix is always a valid key.
    ObjectKey::new(format!("products/{id}"))
        .unwrap_or_else(|_| unreachable!("`products/<integer>` is a valid key"))
}

/// Where a product's image is served.
pub(crate) fn image_url(id: i64) -> String {
    format!("/images/products/{id}")
}

/// The image of a product as an upload answer describes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductImage {
    /// Where the image is served: `/images/products/{id}`.
    pub url: String,
    /// The stored content type.
    pub content_type: String,
    /// The image's `ETag`, with its quotes.
    pub etag: String,
    /// Its length in bytes.
    pub size: u64,
}

/// The headers every image response carries, `304`s included.
fn cache_headers(meta: &ObjectMeta) -> Result<[(header::HeaderName, HeaderValue); 4], ApiError> {
    let etag = HeaderValue::try_from(format!("\"{}\"", meta.etag))
        .map_err(|_| ApiError::Unexpected(format!("stored tag {:?} is no header", meta.etag)))?;
    Ok([
        (header::ETAG, etag),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(IMAGE_CACHE_CONTROL),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(IMAGE_CSP),
        ),
    ])
}

/// Get a product's image.
#[utoipa::path(
    get,
    path = "/images/products/{id}",
    tag = "catalog",
    params(
        ("id" = i64, Path, description = "The product's id", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "Tags of copies the client holds: `304` when one is current"),
    ),
    responses(
        (status = 200, description = "The image, with `ETag`, `Cache-Control: public, max-age=300` and `X-Content-Type-Options: nosniff`. Uploaded images are PNG, JPEG or WebP; the demo catalog's generated ones SVG.",
            content(("image/png"), ("image/jpeg"), ("image/webp"), ("image/svg+xml"))),
        (status = 304, description = "The client's copy (`If-None-Match`) is current: no body"),
        (status = 400, description = "`invalid_id`: not a positive integer", body = ErrorBody),
        (status = 404, description = "`not_found`: no product has this id, or it has no image", body = ErrorBody),
    )
)]
pub(crate) async fn get_product_image(
    State(state): State<AppState>,
    PathId(id): PathId<ProductId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let object = state
        .objects
        .get(&image_key(id.get()))
        .await?
        .ok_or(ApiError::ImageNotFound(id))?;
    let cache = cache_headers(&object.meta)?;
    if if_none_match(&headers, &format!("\"{}\"", object.meta.etag)) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let content_type = HeaderValue::try_from(object.meta.content_type.as_str())
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok((cache, [(header::CONTENT_TYPE, content_type)], object.bytes).into_response())
}

/// Check a product's image: the headers of `GET`, without the body.
#[utoipa::path(
    head,
    path = "/images/products/{id}",
    tag = "catalog",
    params(
        ("id" = i64, Path, description = "The product's id", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "Tags of copies the client holds: `304` when one is current"),
    ),
    responses(
        (status = 200, description = "The image's headers, as `GET` sends them"),
        (status = 304, description = "The client's copy (`If-None-Match`) is current"),
        (status = 400, description = "`invalid_id`: not a positive integer"),
        (status = 404, description = "`not_found`: no product has this id, or it has no image"),
    )
)]
pub(crate) async fn head_product_image(
    state: State<AppState>,
    id: PathId<ProductId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The server sends the head of the `GET` answer and leaves its body out.
    get_product_image(state, id, headers).await
}

/// Checks an upload: a declared type of [`UPLOAD_TYPES`], at most [`MAX_IMAGE_BYTES`], and
/// first bytes of that type. Returns the content type to store.
///
/// # Errors
/// [`ApiError::UnsupportedImageType`] (415), [`ApiError::PayloadTooLarge`] (413),
/// [`ApiError::InvalidImage`] (400).
fn checked_upload(
    content_type: Option<&HeaderValue>,
    bytes: &[u8],
) -> Result<&'static str, ApiError> {
    let declared = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let &(content_type, name) = UPLOAD_TYPES
        .iter()
        .find(|(known, _)| *known == declared)
        .ok_or_else(|| ApiError::UnsupportedImageType(declared.clone()))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_IMAGE_BYTES,
        });
    }
    let agrees = match content_type {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(b"\xff\xd8\xff"),
        _ => bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP",
    };
    if agrees {
        Ok(content_type)
    } else {
        Err(ApiError::InvalidImage(format!(
            "the body does not start as a {name} image does"
        )))
    }
}

/// Upload or replace a product's image (admins only).
#[utoipa::path(
    put,
    path = "/api/v1/products/{id}/image",
    tag = "catalog",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The product's id", minimum = 1)),
    request_body(
        description = "The image itself, at most 1 MiB: PNG, JPEG or WebP, its first bytes agreeing with `Content-Type`.",
        content(("image/png"), ("image/jpeg"), ("image/webp")),
    ),
    responses(
        (status = 200, description = "The image as stored; served from now on at `url`", body = ProductImage),
        (status = 400, description = "`invalid_image`: the bytes are not of the declared type; `invalid_id`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no product has this id", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 1 MiB (or the instance's body limit)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not image/png, image/jpeg or image/webp", body = ErrorBody),
    )
)]
pub(crate) async fn put_product_image(
    State(state): State<AppState>,
    AdminUser(user): AdminUser,
    PathId(id): PathId<ProductId>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| body_rejection(&rejection, MAX_IMAGE_BYTES))?;
    let content_type = checked_upload(headers.get(header::CONTENT_TYPE), &body)?;
    state
        .store
        .products()
        .get(id.get())
        .await?
        .ok_or(ApiError::ProductNotFound(id))?;
    let meta = state
        .objects
        .put(&image_key(id.get()), body, content_type)
        .await?;
    tracing::info!(product_id = id.get(), by = user.id, etag = %meta.etag, "product image stored");
    Ok(Json(ProductImage {
        url: image_url(id.get()),
        content_type: meta.content_type,
        etag: format!("\"{}\"", meta.etag),
        size: meta.size,
    })
    .into_response())
}

/// Stores a generated picture for every product of the demo catalog that has no image yet, and
/// returns how many it stored. Products are read page by page; a picture is drawn from the
/// product's id, name and category ([`demo_svg`]), so every start draws the same one, and
/// an image uploaded since is never replaced.
///
/// # Errors
/// [`ApiError::StoreUnavailable`]/[`ApiError::Store`] when the products cannot be read;
/// [`ApiError::Objects`] when the object store fails.
pub async fn seed_demo_images(store: &Store, objects: &AnyObjects) -> Result<u64, ApiError> {
    let demo_skus: std::collections::HashSet<String> = strata_store::demo_catalog()
        .into_iter()
        .map(|product| product.sku)
        .collect();
    let mut stored = 0_u64;
    for number in 1.. {
        let page = Page::new(number, Page::MAX_PER_PAGE)
            .map_err(|e| ApiError::Unexpected(format!("page {number}: {e}")))?;
        let products = store.products().list(page).await?;
        if products.items.is_empty() {
            break;
        }
        for product in products.items {
            if !demo_skus.contains(&product.sku) {
                continue;
            }
            let key = image_key(product.id);
            if objects.head(&key).await?.is_none() {
                let svg = demo_svg(product.id, &product.name, &product.category);
                objects.put(&key, Bytes::from(svg), "image/svg+xml").await?;
                stored += 1;
            }
        }
    }
    if stored > 0 {
        tracing::info!(stored, "demo catalog images generated");
    }
    Ok(stored)
}

/// The FNV-1a hash of `text`: the seed of a product's picture.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `text` safe inside XML text and attribute values.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The picture of a demo product: an SVG of 400 × 300 with a gradient in the category's hue,
/// a dozen shapes whose kind follows the category and whose places, sizes and shades follow
/// the product, and the product's name. A few KB; no script, no external reference.
pub(crate) fn demo_svg(id: i64, name: &str, category: &str) -> String {
    use std::fmt::Write as _;

    // A small generator (xorshift64*), seeded by the product: the same picture on every start.
    let mut state = fnv1a(&format!("{id}:{name}")) | 1;
    let mut next = move |below: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) % below.max(1)
    };
    let category_hash = fnv1a(category);
    let hue = category_hash % 360;
    let shape_kind = (category_hash >> 16) % 3;
    let accent = (hue + 150 + next(60)) % 360;
    let mut svg = String::with_capacity(4096);
    let label = xml_escape(name);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 400 300\" width=\"400\" \
         height=\"300\" role=\"img\" aria-label=\"{label}\"><title>{label}</title>\
         <defs><linearGradient id=\"bg\" x1=\"0\" y1=\"0\" x2=\"1\" y2=\"1\">\
         <stop offset=\"0\" stop-color=\"hsl({hue},70%,92%)\"/>\
         <stop offset=\"1\" stop-color=\"hsl({},60%,78%)\"/></linearGradient></defs>\
         <rect width=\"400\" height=\"300\" fill=\"url(#bg)\"/>",
        (hue + 30) % 360
    );
    for _ in 0..12 {
        let (x, y) = (20 + next(360), 20 + next(200));
        let size = 14 + next(60);
        let shade = format!(
            "hsl({},{}%,{}%)",
            if next(3) == 0 {
                accent
            } else {
                (hue + next(40)) % 360
            },
            45 + next(40),
            35 + next(35)
        );
        let opacity = 35 + next(50);
        let _ = match shape_kind {
            0 => write!(
                svg,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"{}\" fill=\"{shade}\" fill-opacity=\"0.{opacity}\"/>",
                size / 2
            ),
            1 => write!(
                svg,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{size}\" height=\"{}\" rx=\"{}\" \
                 transform=\"rotate({} {x} {y})\" fill=\"{shade}\" fill-opacity=\"0.{opacity}\"/>",
                size * 2 / 3 + 8,
                next(8),
                next(90)
            ),
            _ => write!(
                svg,
                "<polygon points=\"{x},{} {},{} {},{}\" fill=\"{shade}\" fill-opacity=\"0.{opacity}\"/>",
                y.saturating_sub(size / 2),
                x + size / 2,
                y + size / 2,
                x.saturating_sub(size / 2),
                y + size / 2
            ),
        };
    }
    let _ = write!(
        svg,
        "<rect x=\"0\" y=\"250\" width=\"400\" height=\"50\" fill=\"#ffffff\" fill-opacity=\"0.75\"/>\
         <text x=\"16\" y=\"282\" font-family=\"sans-serif\" font-size=\"20\" fill=\"#1f2933\">{label}</text>\
         <text x=\"384\" y=\"282\" font-family=\"sans-serif\" font-size=\"12\" fill=\"#52606d\" \
         text-anchor=\"end\">{}</text></svg>",
        xml_escape(category)
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_need_a_known_type_that_agrees_with_the_bytes() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF";
        let webp = b"RIFF\x24\0\0\0WEBPVP8 ";
        let ct = |v: &'static str| Some(HeaderValue::from_static(v));
        assert_eq!(
            checked_upload(ct("image/png").as_ref(), png).unwrap(),
            "image/png"
        );
        assert_eq!(
            checked_upload(ct("IMAGE/JPEG; q=1").as_ref(), jpeg).unwrap(),
            "image/jpeg"
        );
        assert_eq!(
            checked_upload(ct("image/webp").as_ref(), webp).unwrap(),
            "image/webp"
        );
        assert!(matches!(
            checked_upload(ct("image/png").as_ref(), jpeg),
            Err(ApiError::InvalidImage(_))
        ));
        assert!(matches!(
            checked_upload(ct("image/webp").as_ref(), b"RIFF"),
            Err(ApiError::InvalidImage(_))
        ));
        assert!(matches!(
            checked_upload(ct("image/png").as_ref(), b""),
            Err(ApiError::InvalidImage(_))
        ));
        for declared in [ct("image/svg+xml"), ct("text/html"), None] {
            assert!(matches!(
                checked_upload(declared.as_ref(), png),
                Err(ApiError::UnsupportedImageType(_))
            ));
        }
        let mut big = png.to_vec();
        big.resize(MAX_IMAGE_BYTES + 1, 0);
        assert!(matches!(
            checked_upload(ct("image/png").as_ref(), &big),
            Err(ApiError::PayloadTooLarge {
                limit: MAX_IMAGE_BYTES
            })
        ));
    }

    #[test]
    fn demo_pictures_are_deterministic_small_and_inert() {
        let a = demo_svg(1, "Pocket <Atlas> & \"Co\"", "books");
        assert_eq!(a, demo_svg(1, "Pocket <Atlas> & \"Co\"", "books"));
        assert_ne!(a, demo_svg(2, "Pocket Atlas", "books"));
        assert!(a.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(a.ends_with("</svg>"));
        assert!(
            a.contains("Pocket &lt;Atlas&gt; &amp; &quot;Co&quot;"),
            "{a}"
        );
        assert!((1000..8000).contains(&a.len()), "{} bytes", a.len());
        // No script, no links, no event handler attributes, and the name only escaped.
        for forbidden in ["<script", "href", " on", "<Atlas>"] {
            assert!(!a.contains(forbidden), "{forbidden} in {a}");
        }
    }

    #[test]
    fn image_keys_and_urls_follow_the_id() {
        assert_eq!(image_key(42).as_str(), "products/42");
        assert_eq!(image_url(42), "/images/products/42");
    }
}
