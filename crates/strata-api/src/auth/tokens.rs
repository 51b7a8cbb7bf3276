//! [`Tokens`]: the api's sessions. The api issues the tokens; the rules of a token (claims,
//! HS256 only, the configured `kid`, leeway, required claims) are
//! [`strata_core::auth`]'s, shared with chat, which verifies the same tokens.

use std::time::Duration;

use strata_core::auth::{Claims, SignError, TokenKey, TokenUser};

use crate::ApiError;
use crate::auth::AuthUser;

/// A freshly issued token and how long it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWT.
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Signs and verifies tokens with one key. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tokens {
    key: TokenKey,
    ttl: Duration,
}

impl Tokens {
    /// Keys for `secret`, named `key_id`, issuing tokens that live for `ttl`.
    ///
    /// # Errors
    /// [`ApiError::Role`] (invalid settings) when the secret is shorter than
    /// [`MIN_SECRET_BYTES`](strata_core::auth::MIN_SECRET_BYTES), the key id is empty or the
    /// TTL is zero.
    pub fn new(secret: &[u8], key_id: &str, ttl: Duration) -> Result<Tokens, ApiError> {
        let key = TokenKey::new(secret, key_id).map_err(|e| ApiError::settings(e.0))?;
        if ttl.as_secs() == 0 {
            return Err(ApiError::settings(
                "auth.token_ttl must be at least one second",
            ));
        }
        Ok(Tokens { key, ttl })
    }

    /// The key id written in every token's header.
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    /// How long issued tokens live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a token for `user`, valid from now for [`Tokens::ttl`].
    ///
    /// # Errors
    /// [`ApiError::Credentials`] when signing fails (it does not, with an HMAC key).
    pub fn issue(&self, user: &AuthUser) -> Result<IssuedToken, ApiError> {
        let user = TokenUser {
            id: user.id,
            email: user.email.clone(),
            role: user.role,
        };
        let token = self.key.issue(&user, self.ttl).map_err(signing_failed)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// Signs arbitrary claims with this key and key id: [`Tokens::issue`] does it for a user;
    /// tests use it for tokens that are already expired.
    ///
    /// # Errors
    /// [`ApiError::Credentials`] when signing fails.
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        self.key.sign(claims).map_err(signing_failed)
    }

    /// Verifies a compact JWT and returns who it names.
    ///
    /// # Errors
    /// [`ApiError::Unauthorized`] when the token is malformed, signed with another algorithm,
    /// key or key id, tampered with, expired, or names no valid user.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let user = self
            .key
            .verify(token)
            .map_err(|rejected| ApiError::Unauthorized(rejected.0))?;
        Ok(AuthUser {
            id: user.id,
            email: user.email,
            role: user.role,
        })
    }
}

fn signing_failed(e: SignError) -> ApiError {
    ApiError::Credentials(e.to_string())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;
    use strata_core::auth::unix_now;

    use super::*;
    use crate::auth::Role;

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

    /// Chat verifies with a bare [`TokenKey`] of the same secret and key id: it accepts what
    /// the api issues, and neither accepts the token once altered.
    #[test]
    fn issued_tokens_pass_chat_verification_and_tampered_ones_neither() {
        let issued = tokens().issue(&user()).unwrap().token;
        let chat = TokenKey::new(SECRET, "k1").unwrap();
        let verified = chat.verify(&issued).unwrap();
        assert_eq!((verified.id, verified.role), (7, Role::Support));

        let mut tampered = issued.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(chat.verify(&tampered).is_err());
        assert_eq!(unauthorized(tokens().verify(&tampered)), "invalid token");
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
