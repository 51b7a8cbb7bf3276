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
//! ```text
//! async fn create_thing(user: AuthUser, Json(body): Json<NewThing>) -> Result<…, ApiError> {
//!     user.require_role(Role::Admin)?;
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

pub use self::email::{Email, InvalidEmail};
pub use self::password::{Password, PasswordParams, Passwords};
pub use self::throttle::{LoginThrottle, ThrottleSettings, client_ip};
pub use self::tokens::{IssuedToken, Tokens};
use crate::ApiError;
/// What an account may do: `customer`, `support` or `admin` (snake_case in JSON and tokens).
pub use strata_core::auth::UserRole as Role;
pub use strata_core::auth::{Claims, MIN_SECRET_BYTES, unix_now};

/// The authenticated caller, from a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// The account's id.
    pub id: i64,
    /// The account's email (lowercase), as at log-in.
    pub email: String,
    /// The account's role, as at log-in.
    pub role: Role,
}

impl AuthUser {
    /// Succeeds when the caller has exactly `role`, or is an admin (admins may do everything).
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] (403) otherwise.
    pub fn require_role(&self, role: Role) -> Result<(), ApiError> {
        if self.role == role || self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::Forbidden(match role {
                Role::Admin => "this needs the admin role",
                Role::Support => "this needs the support role",
                Role::Customer => "this needs a customer account",
            }))
        }
    }

    /// True for admins: they may read and change everyone's data.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Tokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(parts)?.ok_or(ApiError::Unauthorized(
            "missing `Authorization: Bearer <token>` header",
        ))?;
        Tokens::from_ref(state).verify(token)
    }
}

/// An authenticated caller with the admin role; others get a 403 `forbidden` (401 without a
/// valid token) before the request body is even read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl<S> FromRequestParts<S> for AdminUser
where
    Tokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require_role(Role::Admin)?;
        Ok(Self(user))
    }
}

/// The caller when a valid token is given, `None` when no `Authorization` header is. A header
/// that is present but not a valid bearer token is a 401, not an anonymous request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionalAuthUser(pub Option<AuthUser>);

impl<S> FromRequestParts<S> for OptionalAuthUser
where
    Tokens: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match bearer_token(parts)? {
            Some(token) => Tokens::from_ref(state).verify(token).map(|u| Self(Some(u))),
            None => Ok(Self(None)),
        }
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

    fn user(role: Role) -> AuthUser {
        AuthUser {
            id: 1,
            email: "a@example.com".into(),
            role,
        }
    }

    #[test]
    fn admins_pass_every_role_check_and_others_only_their_own() {
        assert!(user(Role::Admin).require_role(Role::Support).is_ok());
        assert!(user(Role::Admin).require_role(Role::Admin).is_ok());
        assert!(user(Role::Support).require_role(Role::Support).is_ok());
        assert!(matches!(
            user(Role::Support).require_role(Role::Admin),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            user(Role::Customer).require_role(Role::Support),
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
