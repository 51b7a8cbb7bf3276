//! Accounts in the browser: register (`/register`), log in (`/login`) and log out
//! (`POST /logout`). Log-in checks the password as `POST /api/v1/sessions` does (same
//! function, same throttle), merges the anonymous cart and sets the session cookie
//! ([`SESSION_COOKIE`]: the token, `HttpOnly; SameSite=Lax; Path=/`, living as long as the
//! token); log-out clears it. A form refused for its input comes back with what was wrong and
//! the endpoint's 4xx status.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use strata_core::auth::SESSION_COOKIE;

use super::error::PageError;
use super::form::{Form, PageQuery};
use super::layout::Layout;
use super::{local_path, render, see_other, with_next};
use crate::auth::IssuedToken;
use crate::state::AppState;
use crate::users::{ClientIp, LogInRequest, RegisterRequest, create_account, open_session};

/// The account pages' routes.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(log_in_page).post(log_in))
        .route("/register", get(register_page).post(register))
        .route("/logout", post(log_out))
}

/// The session cookie that carries `issued`.
fn session_cookie(issued: &IssuedToken) -> String {
    format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        issued.token, issued.expires_in
    )
}

/// `?next=`: where to go after the form.
#[derive(Debug, Default, Deserialize)]
struct NextParams {
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LogInPage {
    layout: Layout,
    email: String,
    next: String,
    error: Option<String>,
    /// The register page, coming back to the same `next`.
    switch: String,
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    layout: Layout,
    email: String,
    display_name: String,
    next: String,
    error: Option<String>,
    /// The log-in page, coming back to the same `next`.
    switch: String,
}

async fn log_in_page(
    layout: Layout,
    PageQuery(params): PageQuery<NextParams>,
) -> Result<Response, PageError> {
    let next = local_path(params.next.as_deref());
    Ok(render(
        StatusCode::OK,
        &LogInPage {
            layout,
            email: String::new(),
            switch: with_next("/register", &next),
            next,
            error: None,
        },
    ))
}

async fn register_page(
    layout: Layout,
    PageQuery(params): PageQuery<NextParams>,
) -> Result<Response, PageError> {
    let next = local_path(params.next.as_deref());
    Ok(render(
        StatusCode::OK,
        &RegisterPage {
            layout,
            email: String::new(),
            display_name: String::new(),
            switch: with_next("/login", &next),
            next,
            error: None,
        },
    ))
}

/// `POST /login` form.
#[derive(Debug, Deserialize)]
struct LogInForm {
    email: String,
    password: String,
    next: Option<String>,
}

/// The page to show again for a refused form: its status and sentence, or the error itself
/// when it is not a problem with the input.
fn refused(error: PageError, page: impl FnOnce(String) -> Response) -> Response {
    match error {
        PageError::Problem { status, message } if status.is_client_error() => {
            let mut response = page(message);
            *response.status_mut() = status;
            response
        }
        other => other.into_response(),
    }
}

/// Signs in with `body` and answers `303` to `next` with the session cookie.
async fn sign_in(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: LogInRequest,
    next: &str,
) -> Result<Response, PageError> {
    let (issued, cart_cookie) = open_session(state, ip, headers, body).await?;
    let mut response = see_other(next, &[session_cookie(&issued)]);
    cart_cookie.apply(response.headers_mut());
    Ok(response)
}

async fn log_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    layout: Layout,
    Form(form): Form<LogInForm>,
) -> Response {
    let next = local_path(form.next.as_deref());
    let body = LogInRequest {
        email: form.email.clone(),
        password: form.password,
    };
    match sign_in(&state, ip, &headers, body, &next).await {
        Ok(response) => response,
        Err(error) => refused(error, |message| {
            render(
                StatusCode::OK,
                &LogInPage {
                    layout,
                    email: form.email,
                    switch: with_next("/register", &next),
                    next,
                    error: Some(message),
                },
            )
        }),
    }
}

/// `POST /register` form.
#[derive(Debug, Deserialize)]
struct RegisterForm {
    email: String,
    password: String,
    display_name: String,
    next: Option<String>,
}

async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    layout: Layout,
    Form(form): Form<RegisterForm>,
) -> Response {
    let next = local_path(form.next.as_deref());
    match register_and_sign_in(&state, ip, &headers, &form, &next).await {
        Ok(response) => response,
        Err(error) => refused(error, |message| {
            render(
                StatusCode::OK,
                &RegisterPage {
                    layout,
                    email: form.email,
                    display_name: form.display_name,
                    switch: with_next("/login", &next),
                    next,
                    error: Some(message),
                },
            )
        }),
    }
}

/// Creates the account `form` asks for, then signs it in.
async fn register_and_sign_in(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    form: &RegisterForm,
    next: &str,
) -> Result<Response, PageError> {
    let account = RegisterRequest {
        email: form.email.clone(),
        password: form.password.clone(),
        display_name: form.display_name.clone(),
    };
    create_account(state, account).await?;
    let body = LogInRequest {
        email: form.email.clone(),
        password: form.password.clone(),
    };
    sign_in(state, ip, headers, body, next).await
}

/// `POST /logout` form (no fields).
#[derive(Debug, Deserialize)]
struct LogOutForm {}

async fn log_out(Form(LogOutForm {}): Form<LogOutForm>) -> Response {
    see_other(
        "/",
        &[format!(
            "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
        )],
    )
}
