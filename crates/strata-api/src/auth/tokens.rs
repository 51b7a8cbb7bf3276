//! [`Tokens`]: issues and verifies the JWTs that are the api's sessions.
//!
//! A token is HS256-signed with the deployment's shared secret (`auth.jwt_secret`) and names
//! its key in the `kid` header (`auth.key_id`), so every instance verifies every token on its
//! own, with no session store. Claims: `sub` (the user id, as a string, RFC 7519), `email`,
//! `role`, `iat` and `exp` (seconds since the epoch). Verification accepts HS256 only (so
//! neither `alg: none` nor a public-key algorithm can be slipped in), the configured `kid`
//! only, and an unexpired `exp` (with [`LEEWAY_SECS`] for clock skew between instances).
//!
//! The role in a token is the one the account had at log-in: a role granted later takes
//! effect at the next log-in (within `auth.token_ttl_secs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::auth::{AuthUser, Role};

/// The shortest signing secret accepted: 32 bytes, the output size of HMAC-SHA-256, below
/// which the key, not the hash, is the weak point (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Seconds of clock skew tolerated on `exp` between the instance that issued a token and the
/// one that verifies it. Small: instances of one deployment share NTP.
pub const LEEWAY_SECS: u64 = 5;

/// The longest `Authorization` token looked at; longer ones are refused unparsed. Ours are
/// about 300 bytes.
const MAX_TOKEN_LEN: usize = 4096;

/// The claims of a strata token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    /// The account's email at log-in.
    pub email: String,
    /// The account's role at log-in.
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
}

/// A freshly issued token and how long it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Signs and verifies tokens with one key. Cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    key_id: String,
    ttl: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("key_id", &self.inner.key_id)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Keys for `secret`, named `key_id`, issuing tokens that live for `ttl`.
    ///
    /// # Errors
    /// [`ApiError::Settings`] when the secret is shorter than [`MIN_SECRET_BYTES`], the key id
    /// is empty or the TTL is zero.
    pub fn new(secret: &[u8], key_id: &str, ttl: Duration) -> Result<Tokens, ApiError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ApiError::Settings(
                "auth.jwt_secret must be at least 32 bytes",
            ));
        }
        if key_id.is_empty() {
            return Err(ApiError::Settings("auth.key_id must not be empty"));
        }
        if ttl.as_secs() == 0 {
            return Err(ApiError::Settings(
                "auth.token_ttl must be at least one second",
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Tokens {
            inner: Arc::new(Inner {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
                key_id: key_id.to_owned(),
                ttl,
            }),
        })
    }

    /// The key id written in every token's header.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// How long issued tokens live.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// Issues a token for `user`, valid from now for [`Tokens::ttl`].
    ///
    /// # Errors
    /// [`ApiError::Credentials`] when signing fails (it does not, with an HMAC key).
    pub fn issue(&self, user: &AuthUser) -> Result<IssuedToken, ApiError> {
        let now = unix_now();
        let ttl = self.inner.ttl.as_secs();
        let claims = Claims {
            sub: user.id.to_string(),
            email: user.email.clone(),
            role: user.role,
            iat: now,
            exp: now.saturating_add(ttl),
        };
        Ok(IssuedToken {
            token: self.sign(&claims)?,
            expires_in: ttl,
        })
    }

    /// Signs arbitrary claims with this key and key id: [`Tokens::issue`] does it for a user;
    /// tests use it for tokens that are already expired.
    ///
    /// # Errors
    /// [`ApiError::Credentials`] when signing fails.
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.inner.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.inner.encoding)
            .map_err(|e| ApiError::Credentials(format!("cannot sign a token: {e}")))
    }

    /// Verifies a compact JWT and returns who it names.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] when the token is malformed, signed with another algorithm,
    /// key or key id, tampered with, expired, or names no valid user.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::Unauthorized("malformed token"));
        }
        // The header is read first only to check the key id; the signature check below is
        // what makes the token trustworthy.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::Unauthorized("malformed token"))?;
        if header.alg != Algorithm::HS256 {
            return Err(ApiError::Unauthorized("unsupported token algorithm"));
        }
        if header.kid.as_deref() != Some(self.inner.key_id.as_str()) {
            return Err(ApiError::Unauthorized("token signed with an unknown key"));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => ApiError::Unauthorized("token expired"),
                    _ => ApiError::Unauthorized("invalid token"),
                })?;
        let claims = data.claims;
        let id = claims
            .sub
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or(ApiError::Unauthorized("invalid token"))?;
        Ok(AuthUser {
            id,
            email: claims.email,
            role: claims.role,
        })
    }
}

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn tokens() -> Tokens {
        Tokens::new(SECRET, "k1", Duration::from_secs(60)).unwrap()
    }

    fn user() -> AuthUser {
        AuthUser {
            id: 7,
            email: "a@example.com".into(),
            role: Role::Support,
        }
    }

    fn unauthorized(result: Result<AuthUser, ApiError>) -> &'static str {
        match result {
            Err(ApiError::Unauthorized(why)) => why,
            other => panic!("expected 401, got {other:?}"),
        }
    }

    #[test]
    fn issued_tokens_verify_to_their_user() {
        let issued = tokens().issue(&user()).unwrap();
        assert_eq!(issued.expires_in, 60);
        assert_eq!(tokens().verify(&issued.token).unwrap(), user());
        let header = jsonwebtoken::decode_header(&issued.token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.alg, Algorithm::HS256);
    }

    #[test]
    fn short_secrets_and_empty_key_ids_are_refused() {
        assert!(Tokens::new(&SECRET[..31], "k1", Duration::from_secs(1)).is_err());
        assert!(Tokens::new(SECRET, "", Duration::from_secs(1)).is_err());
        assert!(Tokens::new(SECRET, "k1", Duration::ZERO).is_err());
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let now = unix_now();
        let expired = tokens()
            .sign(&Claims {
                sub: "7".into(),
                email: "a@example.com".into(),
                role: Role::Admin,
                iat: now - 7200,
                exp: now - 3600,
            })
            .unwrap();
        assert_eq!(unauthorized(tokens().verify(&expired)), "token expired");

        let good = tokens().issue(&user()).unwrap().token;
        let mut tampered = good.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(unauthorized(tokens().verify(&tampered)), "invalid token");

        let other_kid = Tokens::new(SECRET, "k2", Duration::from_secs(60)).unwrap();
        assert_eq!(
            unauthorized(tokens().verify(&other_kid.issue(&user()).unwrap().token)),
            "token signed with an unknown key"
        );
        let other_key = Tokens::new(
            b"another secret of at least 32 bytes",
            "k1",
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            unauthorized(tokens().verify(&other_key.issue(&user()).unwrap().token)),
            "invalid token"
        );

        for garbage in ["", "a.b.c", "not a token", &"x".repeat(5000)] {
            unauthorized(tokens().verify(garbage));
        }
    }
}
