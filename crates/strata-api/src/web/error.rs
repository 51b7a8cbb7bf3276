//! [`PageError`]: how a page fails. Bad input (an unknown product, a page number out of range,
//! a form field that is not acceptable) is a friendly HTML page with the 4xx status the JSON
//! endpoint would give, naming what was wrong; a page that needs a signed-in visitor sends a
//! visitor to the log-in page; anything unexpected is logged and shown as an opaque 5xx.
//!
//! An error is turned into a page without the request (an extractor's rejection, a handler's
//! `?`), so [`in_visitor_frame`], around every page, draws it again in the frame of the
//! visitor who asked: signed in or not, in the currency they chose.

use askama::Template;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::layout::Layout;
use super::{render, see_other, with_next};
use crate::ApiError;
use crate::state::AppState;

/// Why a page is not shown.
#[derive(Debug)]
pub(crate) enum PageError {
    /// The page needs a signed-in visitor: `303` to the log-in page, which comes back to
    /// `next` (this page) afterwards.
    LogInFirst {
        /// The path to come back to.
        next: String,
    },
    /// A status and a sentence for the visitor.
    Problem {
        /// 4xx, or 5xx for the server's own failures.
        status: StatusCode,
        /// What went wrong, for people.
        message: String,
    },
}

impl PageError {
    /// A problem with `status`, described by `message`.
    pub(crate) fn problem(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Problem {
            status,
            message: message.into(),
        }
    }

    /// The status this error answers with.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::LogInFirst { .. } => StatusCode::SEE_OTHER,
            Self::Problem { status, .. } => *status,
        }
    }
}

impl From<ApiError> for PageError {
    /// The status of the JSON endpoint's answer; its message for client errors, an opaque one
    /// for the server's (the cause is logged here, with the request's span).
    fn from(error: ApiError) -> Self {
        let (status, _) = error.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %error, "page failed");
            let message = if status == StatusCode::SERVICE_UNAVAILABLE {
                "The shop is busy or partly unavailable. Please try again in a moment."
            } else {
                "Something went wrong on our side. Please try again."
            };
            return Self::problem(status, message);
        }
        Self::problem(status, error.to_string())
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    title: &'static str,
    message: String,
}

/// A heading for people, by status.
fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "That request is not quite right",
        401 => "Please log in",
        403 => "Not allowed",
        404 => "Not found",
        409 => "That did not work out",
        413 => "Too much at once",
        415 | 422 => "Please check what you entered",
        429 => "Too many attempts",
        500..=599 => "Sorry, something went wrong",
        _ => "That did not work",
    }
}

/// What an error page says, kept on its response for [`in_visitor_frame`].
#[derive(Clone, Debug)]
struct Problem {
    status: StatusCode,
    message: String,
}

impl Problem {
    fn page(&self, layout: Layout) -> Response {
        let mut response = render(
            self.status,
            &ErrorPage {
                layout,
                status: self.status.as_u16(),
                title: title(self.status),
                message: self.message.clone(),
            },
        );
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::LogInFirst { next } => see_other(&with_next("/login", &next), &[]),
            // In a stranger's frame until `in_visitor_frame` knows the visitor.
            Self::Problem { status, message } => {
                Problem { status, message }.page(Layout::stranger())
            }
        }
    }
}

/// Around every page: an error page is drawn again in the frame of the visitor who asked
/// (the session's account, the chosen currency, this page's path for the frame's forms).
/// Only error pages pay for it, besides a copy of the request's headers.
pub(super) async fn in_visitor_frame(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (uri, headers) = (request.uri().clone(), request.headers().clone());
    let response = next.run(request).await;
    let Some(problem) = response.extensions().get::<Problem>().cloned() else {
        return response;
    };
    let mut asked = Request::new(());
    *asked.uri_mut() = uri;
    *asked.headers_mut() = headers;
    let (mut parts, ()) = asked.into_parts();
    match Layout::from_request_parts(&mut parts, &state).await {
        Ok(layout) => {
            let (head, _) = response.into_parts();
            Response::from_parts(head, problem.page(layout).into_body())
        }
        Err(_) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_errors_keep_their_status_and_server_errors_hide_their_cause() {
        let page = PageError::from(ApiError::InvalidId("abc".into()));
        assert_eq!(page.status(), StatusCode::BAD_REQUEST);
        let response = page.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("<main"), "{html}");
        assert!(html.contains("`abc`"), "{html}");

        let page = PageError::from(ApiError::Unexpected("secret detail".into()));
        assert_eq!(page.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(page.into_response().into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret"));
    }

    #[test]
    fn log_in_first_redirects_with_the_page_to_come_back_to() {
        let response = PageError::LogInFirst {
            next: "/checkout?coupon=A".into(),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()["location"],
            "/login?next=%2Fcheckout%3Fcoupon%3DA"
        );
    }
}
