//! The operations page, compiled into the binary from `web/ops/` at the repository root: a
//! static page with one small script that reads the admin API (see [`crate::admin`]).
//!
//! Served without the admin token (it holds no data; the script asks for the token when the
//! API wants one) and with `Cache-Control: no-cache`, so an upgraded gateway's page is never
//! mixed with an older script; the files are a few KiB on an operator's listener.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, Response};
use http_body_util::Full;

const INDEX_HTML: &str = include_str!("../../../../web/ops/index.html");
const SCRIPT: &str = include_str!("../../../../web/ops/ops.js");
const STYLE: &str = include_str!("../../../../web/ops/ops.css");

/// Only the page's own files and the admin API of this origin: nothing injected runs, and
/// the page reaches nothing else.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                      frame-ancestors 'none'";

/// The file at `path` (`/ops`, `/ops/`, `/ops/ops.js`, `/ops/ops.css`): its content type and
/// bytes; `None` for any other path.
pub fn file(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/ops" | "/ops/" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/ops/ops.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/ops/ops.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

/// The response carrying `file`.
pub fn response((content_type, body): (&'static str, &'static str)) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_main_and_loads_its_script_and_style() {
        let (kind, html) = file("/ops").unwrap();
        assert!(kind.starts_with("text/html"));
        assert_eq!(html.matches("<main").count(), 1);
        assert!(html.contains(r#"src="/ops/ops.js""#));
        assert!(html.contains(r#"href="/ops/ops.css""#));
        assert!(file("/ops/ops.js").unwrap().1.contains("/admin/stream"));
        assert!(file("/ops/other.js").is_none());
        assert!(file("/opsx").is_none());
    }
}
