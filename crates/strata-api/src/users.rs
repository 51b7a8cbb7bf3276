//! Accounts: register (`POST /api/v1/users`), log in (`POST /api/v1/sessions`), who am I
//! (`GET /api/v1/users/me`), and for admins finding accounts (`GET /api/v1/users`) and granting
//! roles (`PATCH /api/v1/users/{id}/role`, in effect from the account's next request); plus
//! the bootstrap of the first admin at start-up.
//!
//! Log-in answers an unknown email and a wrong password identically (401
//! `invalid_credentials`) after the same work (a password check against a dummy hash when the
//! account does not exist), and is throttled per account, per client address and account,
//! and per client address on its failing accounts ([`LoginThrottle`]).
//!
//! [`LoginThrottle`]: crate::auth::LoginThrottle

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};
use strata_core::domain::UserId;
use strata_store::{NewUser, Page, Store, User, UserFilter, UserPage};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::{AdminUser, AuthUser, Email, IssuedToken, Password, Passwords, Role, client_ip};
use crate::cart::{CookieAction, cart_cookie, merge_anonymous_cart};
use crate::extract::{Json, PathId, Query};
use crate::openapi::ErrorBody;
use crate::state::AppState;
use crate::{AdminBootstrap, ApiError};

/// The display name given to a bootstrapped admin account that does not exist yet.
const ADMIN_DISPLAY_NAME: &str = "Administrator";

/// The account routes, to be merged into the api router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", post(register).get(list_users))
        .route("/api/v1/users/me", get(me))
        .route("/api/v1/users/{id}/role", patch(set_role))
        .route("/api/v1/sessions", post(log_in))
}

/// `POST /api/v1/users` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The account's email; compared case-insensitively, stored lowercase.
    #[schema(example = "ann@example.com", max_length = 254)]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 128, format = Password)]
    pub password: String,
    /// 1 to 64 characters after trimming.
    #[schema(example = "Ann", min_length = 1, max_length = 64)]
    pub display_name: String,
}

/// `POST /api/v1/sessions` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogInRequest {
    /// The account's email.
    #[schema(example = "ann@example.com")]
    pub email: String,
    /// The account's password.
    #[schema(example = "correct horse battery", format = Password)]
    pub password: String,
}

/// `PATCH /api/v1/users/{id}/role` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    /// The new role.
    pub role: Role,
}

/// An account as the api shows it (never with its password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The account's id.
    #[schema(example = 42)]
    pub id: i64,
    /// Lowercase email.
    #[schema(example = "ann@example.com")]
    pub email: String,
    /// Display name.
    #[schema(example = "Ann")]
    pub display_name: String,
    /// What the account may do.
    pub role: Role,
    /// When the account was created (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            role: user.role,
            created_at: user.created_at,
        }
    }
}

/// The longest `email` filter of `GET /api/v1/users`: the longest email there can be.
const MAX_EMAIL_FILTER_LEN: usize = 254;

/// `GET /api/v1/users` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Only accounts whose email contains this text (case-insensitive; `%` and `_` are plain
    /// characters).
    #[param(max_length = 254, example = "ann@")]
    pub email: Option<String>,
    /// Only accounts with this role.
    pub role: Option<Role>,
    /// 1-based page number (default 1).
    #[param(schema_with = crate::page::page_schema)]
    pub page: Option<u32>,
    /// Page size (default 20).
    #[param(schema_with = crate::page::per_page_schema)]
    pub per_page: Option<u32>,
}

impl ListUsersQuery {
    /// The page asked for.
    fn page(&self) -> Result<Page, ApiError> {
        crate::page::page(self.page, self.per_page)
    }

    /// The filter asked for; an empty `email` filters nothing.
    fn filter(&self) -> Result<UserFilter, ApiError> {
        let email = self.email.as_deref().map(str::trim).unwrap_or_default();
        if email.chars().count() > MAX_EMAIL_FILTER_LEN {
            return Err(ApiError::InvalidQuery(format!(
                "email must have at most {MAX_EMAIL_FILTER_LEN} characters"
            )));
        }
        Ok(UserFilter {
            email_contains: (!email.is_empty()).then(|| email.to_lowercase()),
            role: self.role,
        })
    }
}

crate::page::page_view! {
    /// One page of accounts, oldest first.
    UserPageView as UserPage: UserView from UserPage;
    items: "The accounts of this page.",
    total: "How many accounts pass the filter.",
}

/// A session token (`POST /api/v1/sessions`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 3600)]
    pub expires_in: u64,
}

/// Register a new customer account.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account was created", body = UserView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "`email_taken`: an account with this email exists", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body` or `invalid_field`: a field is missing, unknown, of the wrong type or not acceptable", body = ErrorBody),
    )
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user = create_account(&state, body).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Creates the customer account `body` asks for: what registration does, from the JSON
/// endpoint or the storefront's form.
///
/// # Errors
/// `invalid_field` for an unacceptable email, password or display name; `email_taken`;
/// store and hashing errors.
pub(crate) async fn create_account(
    state: &AppState,
    body: RegisterRequest,
) -> Result<User, ApiError> {
    let email = parse_email(&body.email)?;
    let password = Password::new(body.password).map_err(|message| ApiError::InvalidField {
        field: "password",
        message,
    })?;
    let display_name = parse_display_name(&body.display_name)?;
    let password_hash = state.passwords.hash(&password).await?;
    let new = NewUser {
        email: email.into_string(),
        display_name,
        password_hash,
        role: Role::Customer,
    };
    match state.store.users().insert(&new).await {
        Ok(user) => {
            tracing::debug!(user_id = user.id, "account registered");
            Ok(user)
        }
        Err(e) if e.is_unique_violation() => Err(ApiError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

/// Log in: exchange email and password for a session token.
#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    tag = "accounts",
    request_body = LogInRequest,
    responses(
        (status = 200, description = "Logged in; with a `strata_cart` cookie, the anonymous cart was merged into the account's and the cookie is cleared", body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: unknown email or wrong password (the two look the same)", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: a field is missing, unknown or of the wrong type", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many failed log-ins for this email or client; see `Retry-After`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub(crate) async fn log_in(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(body): Json<LogInRequest>,
) -> Result<Response, ApiError> {
    let (issued, cookie) = open_session(&state, ip, &headers, body).await?;
    let mut response = Json(TokenResponse {
        token: issued.token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
    })
    .into_response();
    cookie.apply(response.headers_mut());
    Ok(response)
}

/// Checks a log-in (throttled, see the module docs) and issues its token; an anonymous cart
/// the request's cookie names is merged into the account's, and the returned action clears
/// that cookie. What log-in does, from the JSON endpoint or the storefront's form.
///
/// # Errors
/// `invalid_credentials`, `too_many_attempts`; store and token errors.
pub(crate) async fn open_session(
    state: &AppState,
    ip: Option<IpAddr>,
    headers: &HeaderMap,
    body: LogInRequest,
) -> Result<(IssuedToken, CookieAction), ApiError> {
    // An address that cannot be an account's is treated as an unknown account: same answer,
    // same work, and still counted against the client.
    let email = body.email.parse::<Email>().ok();
    state.throttle.attempt(email.as_ref(), ip).await?;
    let user = match &email {
        Some(email) => state.store.users().find_by_email(email.as_str()).await?,
        None => None,
    };
    let password = Password::offered(body.password);
    let matched = state
        .passwords
        .verify(&password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    let (Some(user), Some(email), true) = (user, email.as_ref(), matched) else {
        state.throttle.failed(email.as_ref(), ip).await;
        return Err(ApiError::InvalidCredentials);
    };
    state.throttle.succeeded(email, ip).await;
    let issued = state.tokens.issue(&AuthUser {
        id: user.id,
        email: user.email,
        role: user.role,
    })?;
    // The anonymous cart the visitor brought merges into theirs now (see `cart`).
    let cookie = match cart_cookie(headers) {
        Some(token) => {
            merge_anonymous_cart(state, &token, user.id).await?;
            CookieAction::Clear
        }
        None => CookieAction::Keep,
    };
    Ok((issued, cookie))
}

/// The account of the caller.
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = UserView),
        (status = 401, description = "`unauthorized`: no token, or an invalid or expired one, or the account is gone", body = ErrorBody),
    )
)]
pub(crate) async fn me(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<UserView>, ApiError> {
    let account = state
        .store
        .users()
        .get(user.id)
        .await?
        .ok_or(ApiError::Unauthorized(
            "the account of this token no longer exists",
        ))?;
    Ok(Json(account.into()))
}

/// Find accounts (admins only): by part of their email, by role, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "accounts",
    description = "Admins only. Accounts oldest first, never with their password hash; `email` \
                   keeps those whose email contains the text, `role` those with the role.",
    security(("bearer" = [])),
    params(ListUsersQuery),
    responses(
        (status = 200, description = "One page of accounts, oldest first", body = UserPageView),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller is not an admin", body = ErrorBody),
    )
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Query(query): Query<ListUsersQuery>,
) -> Result<Json<UserPageView>, ApiError> {
    let page = query.page()?;
    let filter = query.filter()?;
    Ok(Json(state.store.users().list(&filter, page).await?.into()))
}

/// Grant a role to an account (admins only), in effect from the account's next request.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}/role",
    tag = "accounts",
    description = "Admins only. The role takes effect at once: what a role allows (admin \
                   writes, every customer's orders, support rooms in chat) is checked against \
                   the account's role as it is now, so the account's next request is served \
                   with the new role, with the token it has. The role inside a token stays \
                   the one at log-in, for clients to show.",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The account's id", minimum = 1)),
    request_body = SetRoleRequest,
    responses(
        (status = 200, description = "The account with its new role, in effect from its next request", body = UserView),
        (status = 400, description = "`invalid_id` or malformed JSON", body = ErrorBody),
        (status = 401, description = "`unauthorized`: no valid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller is not an admin, or tried to change their own role", body = ErrorBody),
        (status = 404, description = "`not_found`: no account has this id", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_body`: unknown role, missing or unknown field", body = ErrorBody),
    )
)]
pub(crate) async fn set_role(
    State(state): State<AppState>,
    AdminUser(caller): AdminUser,
    PathId(id): PathId<UserId>,
    Json(body): Json<SetRoleRequest>,
) -> Result<Json<UserView>, ApiError> {
    let id = id.get();
    if id == caller.id {
        // An admin demoting themselves could leave the shop without one.
        return Err(ApiError::Forbidden("admins cannot change their own role"));
    }
    let user = state
        .store
        .users()
        .set_role(id, body.role)
        .await?
        .ok_or(ApiError::UserNotFound(id))?;
    tracing::info!(user_id = id, role = %body.role, by = caller.id, "role granted");
    Ok(Json(user.into()))
}

/// Creates the configured admin account, or promotes it when it exists (its password is then
/// left as it is). Safe to run from every instance at once.
///
/// # Errors
/// [`ApiError::Role`] (invalid settings) when the email or password breaks the account rules;
/// store errors.
pub(crate) async fn bootstrap_admin(
    store: &Store,
    passwords: &Passwords,
    admin: &AdminBootstrap,
) -> Result<User, ApiError> {
    let email: Email = admin
        .email
        .parse()
        .map_err(|_| ApiError::settings("admin.email is not a valid email address"))?;
    let password = Password::new(admin.password.expose().to_owned())
        .map_err(|_| ApiError::settings("admin.password must have 8 to 128 characters"))?;
    // Every api instance of a stack bootstraps the same admin: the first one that finds it
    // missing (or not yet an admin) creates it and says so; the others find it ready, say
    // nothing and spend no password hash on it.
    if let Some(user) = store.users().find_by_email(email.as_str()).await?
        && user.role == Role::Admin
    {
        tracing::debug!(user_id = user.id, "admin account already there");
        return Ok(user);
    }
    let password_hash = passwords.hash(&password).await?;
    let user = store
        .users()
        .ensure_admin(&NewUser {
            email: email.into_string(),
            display_name: ADMIN_DISPLAY_NAME.to_owned(),
            password_hash,
            role: Role::Admin,
        })
        .await?;
    tracing::info!(user_id = user.id, "admin account ready");
    Ok(user)
}

pub(crate) fn parse_email(raw: &str) -> Result<Email, ApiError> {
    raw.parse()
        .map_err(|e: crate::auth::InvalidEmail| ApiError::InvalidField {
            field: "email",
            message: e.to_string(),
        })
}

/// Trimmed, 1 to 64 characters, no control characters.
pub(crate) fn parse_display_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    let invalid = |message: &str| ApiError::InvalidField {
        field: "display_name",
        message: message.to_owned(),
    };
    let chars = name.chars().count();
    if chars == 0 {
        return Err(invalid("must not be empty"));
    }
    if chars > 64 {
        return Err(invalid("must have at most 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// The client's IP address, for the log-in throttle (see [`client_ip`]).
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(client_ip(&parts.headers, peer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(parse_display_name("  Ann Lee ").unwrap(), "Ann Lee");
        assert_eq!(
            parse_display_name(&"é".repeat(64)).unwrap().chars().count(),
            64
        );
        for bad in ["", "   ", "a\u{0}b", "line\nbreak"] {
            assert!(parse_display_name(bad).is_err(), "{bad:?}");
        }
        assert!(parse_display_name(&"a".repeat(65)).is_err());
    }
}
