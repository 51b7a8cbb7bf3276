//! The storefront the api serves, compiled into the binary from `web/` at the repository root
//! so an instance needs no files next to it: server-rendered HTML pages (askama templates from
//! `web/templates/`) and the static assets they use (styles, small JavaScript modules) under
//! `/static/`.
//!
//! The pages call the same functions as the JSON endpoints (catalog reads through the cache,
//! the cart, pricing, log-in, checkout), never the api over HTTP, and hold no rule of their
//! own. Every page works without JavaScript: links and forms that `POST` and redirect; the
//! order page's module only refreshes the status in place. A browser is signed in by the
//! session cookie (`strata_core::auth::SESSION_COOKIE`), which the JSON endpoints accept too.
//! Form posts from another site are refused (see [`form`]). The agents' support console is
//! at `/support`; the customers' chat widget is a module every page includes.
//!
//! Assets are validated by an `ETag` computed at compile time from their bytes (a changed
//! file is a new tag), so a browser revalidates with `If-None-Match` and gets `304` without a
//! body; compression on the wire is the gateway's (`gateway.<pool>.compression`).

mod account;
mod cart;
pub mod currency;
mod error;
mod form;
mod layout;
mod orders;
mod shop;

use askama::Template;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::ApiError;
use crate::state::AppState;

/// The agents' support console: its script (`static/support.js`) reads the account and the
/// rooms from the api and chat with the session cookie, and explains itself to anyone else.
const SUPPORT_HTML: &str = include_str!("../../../web/support.html");

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
    "order.js" => "text/javascript; charset=utf-8",
    "chat.css" => "text/css; charset=utf-8",
    "chat-connection.js" => "text/javascript; charset=utf-8",
    "chat-widget.js" => "text/javascript; charset=utf-8",
    "support.js" => "text/javascript; charset=utf-8",
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

/// The page routes, to be merged into the api router; `state` draws their error pages in
/// the visitor's frame ([`error::in_visitor_frame`]).
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/support", get(support))
        .route("/static/{name}", get(asset))
        .merge(shop::routes())
        .merge(cart::routes())
        .merge(account::routes())
        .merge(orders::routes())
        .layer(axum::middleware::from_fn_with_state(
            state,
            error::in_visitor_frame,
        ))
}

/// A rendered page: `status`, HTML, and `Cache-Control: no-cache` (a page shows the visitor's
/// own cart and account, so a cache must ask every time).
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            html,
        )
            .into_response(),
        Err(e) => {
            // A template that compiled renders unless a value's `Display` fails: a bug.
            tracing::error!(error = %e, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A `303 See Other` to `location` (a local path), with `cookies` set: what every form post
/// answers, so a reload does not post again.
pub(crate) fn see_other(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The value of cookie `name` among the request's `Cookie` headers (the first one).
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    strata_core::http::cookies(headers, name).next()
}

/// `path?next=…`: a page (log-in, register) that sends the visitor to `next` afterwards.
pub(crate) fn with_next(path: &str, next: &str) -> String {
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    format!("{path}?{query}")
}

/// `next` when it is a path of this site (`/…`, not `//…`), else `/`: where a form sends the
/// visitor afterwards, never to another site.
pub(crate) fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn support() -> Html<&'static str> {
    Html(SUPPORT_HTML)
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
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/cart")), "/cart");
        assert_eq!(local_path(Some("/search?q=a")), "/search?q=a");
        for bad in [
            None,
            Some(""),
            Some("//evil.example"),
            Some("/\\evil.example"),
            Some("https://evil.example/"),
            Some("cart"),
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; strata_currency=USD"),
        );
        assert_eq!(cookie(&headers, "strata_currency"), Some("USD"));
        assert_eq!(cookie(&headers, "b"), None);
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
