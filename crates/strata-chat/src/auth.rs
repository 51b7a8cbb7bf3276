//! [`Verifier`]: checks the api's JWTs on the chat side, statelessly.
//!
//! The api issues HS256 tokens naming their key in `kid`, with `sub` (user id), `role` and
//! `exp`. Chat shares the deployment's secret and key id and accepts exactly what the api's
//! own verification accepts: HS256 only, the configured `kid`, an unexpired `exp` (5 s leeway).

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use strata_store::UserRole;

/// Seconds of clock skew tolerated on `exp` (the api's figure).
const LEEWAY_SECS: u64 = 5;
/// The longest token looked at.
const MAX_TOKEN_LEN: usize = 4096;

/// Who a verified token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    /// The account id.
    pub id: i64,
    /// The role at log-in.
    pub role: UserRole,
}

/// Why a token was refused (the message is safe to show the client).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unauthorized(pub &'static str);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: UserRole,
}

/// Verifies tokens with one shared key. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<(DecodingKey, Validation, String)>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("key_id", &self.inner.2)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for tokens signed with `secret` under key id `key_id`.
    pub fn new(secret: &[u8], key_id: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            inner: Arc::new((
                DecodingKey::from_secret(secret),
                validation,
                key_id.to_owned(),
            )),
        }
    }

    /// Verifies a compact JWT.
    ///
    /// # Errors
    /// [`Unauthorized`] when it is malformed, signed otherwise, expired or names no user.
    pub fn verify(&self, token: &str) -> Result<User, Unauthorized> {
        let (key, validation, key_id) = &*self.inner;
        if token.len() > MAX_TOKEN_LEN {
            return Err(Unauthorized("malformed token"));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Unauthorized("malformed token"))?;
        if header.alg != Algorithm::HS256 || header.kid.as_deref() != Some(key_id.as_str()) {
            return Err(Unauthorized("token signed with an unknown key"));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Unauthorized("token expired"),
                _ => Unauthorized("invalid token"),
            })?;
        let id = data
            .claims
            .sub
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or(Unauthorized("invalid token"))?;
        Ok(User {
            id,
            role: data.claims.role,
        })
    }
}

/// Signs a token the way the api does (HS256, `kid`), for tests, the benchmark and the CLI's
/// `--secret` convenience.
///
/// # Errors
/// When signing fails (it does not with an HMAC key).
pub fn sign(
    secret: &[u8],
    key_id: &str,
    user: User,
    ttl_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some(key_id.to_owned());
    let claims = serde_json::json!({
        "sub": user.id.to_string(),
        "email": format!("user{}@example.com", user.id),
        "role": user.role,
        "iat": now,
        "exp": now + ttl_secs,
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_fail() {
        let secret = [7u8; 32];
        let verifier = Verifier::new(&secret, "k1");
        let user = User {
            id: 5,
            role: UserRole::Support,
        };
        let token = sign(&secret, "k1", user, 60).unwrap();
        assert_eq!(verifier.verify(&token), Ok(user));
        let other_kid = sign(&secret, "k2", user, 60).unwrap();
        assert!(verifier.verify(&other_kid).is_err());
        let other_key = sign(&[8u8; 32], "k1", user, 60).unwrap();
        assert!(verifier.verify(&other_key).is_err());
        assert!(verifier.verify("garbage").is_err());
    }
}
