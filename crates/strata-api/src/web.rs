//! The pages the api serves, compiled into the binary from `web/` at the repository root so an
//! instance needs no files next to it: the landing page at `/` and the static assets (styles,
//! scripts, images of the pages themselves) under `/static/`.
//!
//! Assets are validated by an `ETag` computed at compile time from their bytes (a changed
//! file is a new tag), so a browser revalidates with `If-None-Match` and gets `304` without a
//! body; compression on the wire is the gateway's (`gateway.<pool>.compression`).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::ApiError;
use crate::state::AppState;

/// The landing page: lists the catalog by calling `GET /api/v1/products` from the browser.
const INDEX_HTML: &str = include_str!("../../../web/index.html");

/// How long a browser may use an asset without asking again: five minutes, so a new release
/// reaches browsers soon; after that a revalidation costs a `304` without a body.
const ASSET_MAX_AGE: &str = "public, max-age=300";

/// One file under `web/static/`, served at `/static/<name>`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: &'static str,
}

/// Declares the asset table: each entry names a file under `web/static/` and its content type;
/// its `ETag` is computed at compile time.
macro_rules! assets {
    ($($name:literal => $content_type:literal),* $(,)?) => {
        &[$({
            const BYTES: &[u8] = include_bytes!(concat!("../../../web/static/", $name));
            const TAG: [u8; 18] = etag(BYTES);
            Asset {
                name: $name,
                content_type: $content_type,
                bytes: BYTES,
                // The tag is 16 hex digits between quotes: ASCII by construction.
                etag: match std::str::from_utf8(&TAG) {
                    Ok(tag) => tag,
                    Err(_) => panic!("an ETag is ASCII"),
                },
            }
        }),*]
    };
}

/// Every static asset. Add a file to `web/static/` and a line here.
static ASSETS: &[Asset] = assets! {
    "strata.css" => "text/css; charset=utf-8",
};

/// A strong `ETag` of `bytes`: their 64-bit FNV-1a hash as 16 hex digits, between quotes.
const fn etag(bytes: &[u8]) -> [u8; 18] {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut tag = [b'"'; 18];
    let mut digit = 0;
    while digit < 16 {
        tag[1 + digit] = HEX[((hash >> (60 - 4 * digit)) & 0xf) as usize];
        digit += 1;
    }
    tag
}

/// The page routes, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/static/{name}", get(asset))
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

/// `GET /static/{name}`: the asset with its `ETag` and `Cache-Control`, or `304` when the
/// browser's copy (`If-None-Match`) is current.
///
/// # Errors
/// [`ApiError::AssetNotFound`] for a name that is not in [`ASSETS`].
async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .ok_or_else(|| ApiError::AssetNotFound(name.clone()))?;
    let etag = HeaderValue::from_static(asset.etag);
    let cache = [
        (header::ETAG, etag),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(ASSET_MAX_AGE),
        ),
    ];
    if if_none_match(&headers, asset.etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((
        cache,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes,
    )
        .into_response())
}

/// True when the request's `If-None-Match` names `etag` (quoted; weak or strong, as RFC 9110's
/// weak comparison for `If-None-Match` asks) or is `*`: the client's copy is current and a
/// `304` without a body answers.
pub(crate) fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hex_and_differ_with_the_bytes() {
        let a = etag(b"body { color: red }");
        let b = etag(b"body { color: blue }");
        assert_ne!(a, b);
        let a = std::str::from_utf8(&a).unwrap();
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 18);
        assert!(a[1..17].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn every_asset_has_a_unique_name_and_its_own_tag() {
        for (i, asset) in ASSETS.iter().enumerate() {
            assert!(!asset.bytes.is_empty(), "{} is empty", asset.name);
            assert_eq!(asset.etag.as_bytes(), etag(asset.bytes));
            assert!(ASSETS[..i].iter().all(|other| other.name != asset.name));
        }
    }
}
