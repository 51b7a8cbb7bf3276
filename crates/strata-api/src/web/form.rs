//! The extractors of the pages, whose every rejection is a [`PageError`] (an HTML page, never
//! the JSON body or axum's plain text): [`Form`] for form posts, [`PageQuery`] for query
//! strings and [`PageId`] for the `{id}` of a path.
//!
//! A form post must come from this site: when the browser says where the form was (`Origin`,
//! else `Referer`), its host must be the request's `Host`, or the post is refused with 403.
//! With neither header (old browsers, scripts) the `SameSite=Lax` session cookie is the
//! protection: a cross-site post does not carry it.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use serde::de::DeserializeOwned;
use strata_core::domain::InvalidId;

use super::error::PageError;
use crate::ApiError;
use crate::error::echo;
use crate::extract::{PathId, Query, read_body};

/// A form post (`application/x-www-form-urlencoded`) from this site, decoded into `T`.
#[derive(Debug)]
pub(crate) struct Form<T>(pub T);

impl<T, S> FromRequest<S> for Form<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        same_site(request.headers(), request.uri())?;
        let bytes = read_body(request, state, |essence| {
            essence == "application/x-www-form-urlencoded"
        })
        .await
        .map_err(|error| match error {
            ApiError::UnsupportedMediaType => PageError::problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a form (application/x-www-form-urlencoded)",
            ),
            other => PageError::from(other),
        })?;
        serde_urlencoded::from_bytes(&bytes).map(Form).map_err(|e| {
            PageError::problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the form is not as expected: {}", echo(&e.to_string())),
            )
        })
    }
}

/// Refuses a post whose `Origin` (or else `Referer`) names another host than the request's.
fn same_site(headers: &HeaderMap, uri: &Uri) -> Result<(), PageError> {
    let Some(from) = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
    else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let from = from.to_str().ok().and_then(authority);
    match (from, host) {
        (Some(from), Some(host)) if from.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(PageError::problem(
            StatusCode::FORBIDDEN,
            "this form was sent from another site",
        )),
    }
}

/// The `host[:port]` of an absolute URL (`null`, a relative URL: `None`).
fn authority(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    rest.split(['/', '?', '#']).next().filter(|a| !a.is_empty())
}

/// A query string decoded into `T`; a bad one is a 400 page.
#[derive(Debug)]
pub(crate) struct PageQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for PageQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(PageError::from)
    }
}

/// The `{id}` of a page's path as the id type `T`; anything but a positive integer is a 400
/// page.
#[derive(Debug)]
pub(crate) struct PageId<T>(pub T);

impl<T, S> FromRequestParts<S> for PageId<T>
where
    T: std::str::FromStr<Err = InvalidId>,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        PathId::<T>::from_request_parts(parts, state)
            .await
            .map(|PathId(id)| Self(id))
            .map_err(PageError::from)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(name.clone(), HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn posts_from_another_site_are_refused() {
        let uri = Uri::from_static("/cart/items");
        let ok = [
            headers(&[(header::HOST, "shop.test:8080")]),
            headers(&[
                (header::HOST, "shop.test:8080"),
                (header::ORIGIN, "http://shop.test:8080"),
            ]),
            headers(&[
                (header::HOST, "shop.test:8080"),
                (header::REFERER, "http://shop.test:8080/products/1?x=1"),
            ]),
        ];
        for h in ok {
            assert!(same_site(&h, &uri).is_ok(), "{h:?}");
        }
        let refused = [
            headers(&[
                (header::HOST, "shop.test:8080"),
                (header::ORIGIN, "http://evil.test"),
            ]),
            headers(&[(header::HOST, "shop.test:8080"), (header::ORIGIN, "null")]),
            headers(&[
                (header::HOST, "shop.test:8080"),
                (header::REFERER, "http://shop.test:9999/"),
            ]),
            headers(&[(header::ORIGIN, "http://shop.test:8080")]),
        ];
        for h in refused {
            let Err(error) = same_site(&h, &uri) else {
                panic!("accepted {h:?}");
            };
            assert_eq!(error.status(), StatusCode::FORBIDDEN);
        }
    }
}
