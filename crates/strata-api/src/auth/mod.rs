//! Authentication and roles: who is calling, and what they may do.
//!
//! A handler that needs a logged-in caller takes an [`AuthUser`] argument: the extractor reads
//! `Authorization: Bearer <jwt>`, verifies it with the instance's [`Tokens`] (no store access:
//! any instance verifies any token), and rejects the request with a JSON 401 `unauthorized`
//! when the header is missing or the token invalid or expired. [`OptionalAuthUser`] does the
//! same for handlers that also serve anonymous callers (a missing header is `None`; a bad token
//! is still a 401, so a client learns its token went stale). Roles are checked in the handler
//! with [`AuthUser::require_role`] (403 `forbidden`), or up front with the [`AdminUser`]
//! extractor, which refuses non-admins before the body is read.
//!
//! The role a decision depends on is the account's role now, read from the store (one read
//! by primary key, only on role-gated paths), not the one in the token: a grant or a
//! revocation applies to the account's next request. The token's role is what the account
//! had at log-in, for clients to show; requests that any signed-in caller may make read
//! nothing more than the token.
//!
//! ```text
//! async fn create_thing(State(state): State<AppState>, user: AuthUser, …) -> Result<…, ApiError> {
//!     user.require_role(&state.store, Role::Admin).await?;
//!     …
//! }
//! ```

mod email;
mod password;
mod throttle;
mod tokens;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use strata_store::Store;

pub use self::email::{Email, InvalidEmail};
pub use self::password::{Password, PasswordParams, Passwords};
pub use self::throttle::{LoginThrottle, ThrottleSettings, client_ip};
pub use self::tokens::{IssuedToken, Tokens};
use crate::ApiError;
/// What an account may do: `customer`, `support` or `admin` (snake_case in JSON and tokens).
pub use strata_core::auth::UserRole as Role;
pub use strata_core::auth::{Claims, MIN_SECRET_BYTES, unix_now};

/// The authenticated caller, from a verified token: an `Authorization: Bearer` header, or else
/// a browser's session cookie ([`strata_core::auth::SESSION_COOKIE`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// The account's id.
    pub id: i64,
    /// The account's email (lowercase), as at log-in.
    pub email: String,
    /// The account's role as at log-in (the token's); role-gated decisions read the current
    /// one ([`AuthUser::current_role`]).
    pub role: Role,
}

impl AuthUser {
    /// The role the account has now (the store's, not the token's).
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] (401) when the account no longer exists; store errors.
    pub async fn current_role(&self, store: &Store) -> Result<Role, ApiError> {
        store
            .users()
            .role(self.id)
            .await?
            .ok_or(ApiError::Unauthorized(
                "the account of this token no longer exists",
            ))
    }

    /// Succeeds, with the caller's current role, when the account has exactly `role` now, or
    /// is an admin (admins may do everything).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] (403) otherwise; as [`AuthUser::current_role`].
    pub async fn require_role(&self, store: &Store, role: Role) -> Result<Role, ApiError> {
        let current = self.current_role(store).await?;
        allows(current, role)?;
        Ok(current)
    }

    /// True when the account is an admin now: admins may read and change everyone's data.
    ///
    /// # Errors
    /// As [`AuthUser::current_role`].
    pub async fn is_admin(&self, store: &Store) -> Result<bool, ApiError> {
        Ok(self.current_role(store).await? == Role::Admin)
    }
}

/// Whether an account with role `have` may do what needs `need`: the same role, or admin.
///
/// # Errors
/// [`ApiError::Forbidden`] (403) when it may not.
fn allows(have: Role, need: Role) -> Result<(), ApiError> {
    if have == need || have == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(match need {
            Role::Admin => "this needs the admin role",
            Role::Support => "this needs the support role",
            Role::Customer => "this needs a customer account",
        }))
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Tokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?
            .or_else(|| strata_core::auth::session_cookie(&parts.headers))
            .ok_or(ApiError::Unauthorized(
                "missing `Authorization: Bearer <token>` header (or session cookie)",
            ))?;
        Tokens::from_ref(state).verify(token)
    }
}

/// An authenticated caller whose account is an admin now; others get a 403 `forbidden` (401
/// without a valid token) before the request body is even read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl<S> FromRequestParts<S> for AdminUser
where
    Tokens: FromRef<S>,
    Store: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let mut user = AuthUser::from_request_parts(parts, state).await?;
        user.role = user
            .require_role(&Store::from_ref(state), Role::Admin)
            .await?;
        Ok(Self(user))
    }
}

/// The caller when a valid token is given, `None` when no `Authorization` header is. A header
/// that is present but not a valid bearer token is a 401, not an anonymous request; a session
/// cookie ([`strata_core::auth::SESSION_COOKIE`]) that does not verify is no caller (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionalAuthUser(pub Option<AuthUser>);

impl<S> FromRequestParts<S> for OptionalAuthUser
where
    Tokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(token) = bearer_token(parts)? {
            return Tokens::from_ref(state).verify(token).map(|u| Self(Some(u)));
        }
        // A browser's expired or stale session cookie makes it a visitor again, not a
        // request refused: the shop stays browsable until it logs in anew.
        Ok(Self(
            strata_core::auth::session_cookie(&parts.headers)
                .and_then(|token| Tokens::from_ref(state).verify(token).ok()),
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` header; `None` without the header.
fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed `Authorization` header"))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized(
        "expected `Authorization: Bearer <token>`",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "expected `Authorization: Bearer <token>`",
        ));
    }
    Ok(Some(token.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_pass_every_role_check_and_others_only_their_own() {
        assert!(allows(Role::Admin, Role::Support).is_ok());
        assert!(allows(Role::Admin, Role::Admin).is_ok());
        assert!(allows(Role::Support, Role::Support).is_ok());
        assert!(matches!(
            allows(Role::Support, Role::Admin),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            allows(Role::Customer, Role::Support),
            Err(ApiError::Forbidden(_))
        ));
    }

    #[test]
    fn bearer_headers_parse_strictly() {
        let parts = |value: Option<&'static str>| {
            let mut request = axum::http::Request::builder();
            if let Some(value) = value {
                request = request.header(header::AUTHORIZATION, value);
            }
            request.body(()).unwrap().into_parts().0
        };
        assert_eq!(bearer_token(&parts(None)).unwrap(), None);
        assert_eq!(
            bearer_token(&parts(Some("Bearer abc"))).unwrap(),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&parts(Some("bearer  abc "))).unwrap(),
            Some("abc")
        );
        for bad in ["Basic abc", "Bearer", "Bearer ", "abc", ""] {
            assert!(bearer_token(&parts(Some(bad))).is_err(), "{bad:?}");
        }
    }
}
