//! Who a caller is, the same in every role: the account roles, and the signed session tokens
//! (JWTs) that carry them. The api issues tokens; the api and chat verify them here, with one
//! set of rules, so a token one role accepts is never refused by the other.
//!
//! A token is HS256-signed with the deployment's shared secret (`auth.jwt_secret`) and names
//! its key in the `kid` header (`auth.key_id`), so every instance verifies every token on its
//! own, with no session store. Claims: `sub` (the user id, as a string, RFC 7519), `email`,
//! `role`, `iat` and `exp` (seconds since the epoch). Verification accepts HS256 only (so
//! neither `alg: none` nor a public-key algorithm can be slipped in), the configured `kid`
//! only, a `sub` that is a positive id, and an unexpired `exp` (with [`LEEWAY_SECS`] for clock
//! skew between instances).
//!
//! The role in a token is the one the account had at log-in, for clients to show. What a role
//! allows is decided on the account's role as it is now, read from the store by the api and
//! chat where a route depends on it, so a grant or a revocation applies to the account's next
//! request.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The shortest signing secret accepted: 32 bytes, the output size of HMAC-SHA-256, below
/// which the key, not the hash, is the weak point (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Seconds of clock skew tolerated on `exp` between the instance that issued a token and the
/// one that verifies it. Small: instances of one deployment share NTP.
pub const LEEWAY_SECS: u64 = 5;

/// The longest token looked at; longer ones are refused unparsed. Ours are about 300 bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The cookie that carries a browser's session token: the web pages' log-in sets it
/// (`HttpOnly; SameSite=Lax; Path=/`), and the api and chat accept it where a client would
/// send `Authorization: Bearer`, so pages and their scripts need never hold the token.
/// `SameSite=Lax` keeps other sites' forms and scripts from sending it with a change.
pub const SESSION_COOKIE: &str = "strata_session";

/// The session token in `headers`' [`SESSION_COOKIE`], if any (the first well-formed one when
/// several `Cookie` headers or pairs name it). Only located here; verifying it is [`TokenKey::verify`].
pub fn session_cookie(headers: &http::HeaderMap) -> Option<&str> {
    crate::http::cookies(headers, SESSION_COOKIE)
        .map(|value| value.trim_matches('"'))
        .find(|value| !value.is_empty() && value.len() <= MAX_TOKEN_LEN)
}

/// What an account may do. Stored as its lowercase name (the database's CHECK constraint
/// `users_role_check` admits exactly these three) and written so in JSON and tokens.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Shops: catalog, own cart, own orders. Every new account starts here.
    #[default]
    Customer,
    /// Answers customers in the support chat.
    Support,
    /// Manages the catalog and grants roles.
    Admin,
}

impl UserRole {
    /// Every role, lowest privilege first.
    pub const ALL: [UserRole; 3] = [UserRole::Customer, UserRole::Support, UserRole::Admin];

    /// The stored (and serialized) name: `customer`, `support` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Customer => "customer",
            UserRole::Support => "support",
            UserRole::Admin => "admin",
        }
    }
}

impl fmt::Display for UserRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of `customer`, `support`, `admin`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role: expected customer, support or admin")]
pub struct UnknownRole;

impl FromStr for UserRole {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        UserRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(UnknownRole)
    }
}

impl TryFrom<String> for UserRole {
    type Error = UnknownRole;
    fn try_from(s: String) -> Result<Self, UnknownRole> {
        s.parse()
    }
}

/// The claims of a strata token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    /// The account's email at log-in.
    pub email: String,
    /// The account's role at log-in (what a role allows is checked on the stored role).
    pub role: UserRole,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
}

/// The account a token speaks for: what issuing writes and verifying returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenUser {
    /// The account's id, positive.
    pub id: i64,
    /// The account's email (lowercase), as at log-in.
    pub email: String,
    /// The account's role, as at log-in.
    pub role: UserRole,
}

/// Why a [`TokenKey`] cannot be made: the message names the setting (`auth.jwt_secret`,
/// `auth.key_id`) and what is wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidKey(pub &'static str);

/// Signing a token failed (it does not, with an HMAC key).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign a token: {0}")]
pub struct SignError(#[source] jsonwebtoken::errors::Error);

/// Why a token was refused. The message is safe to show the client (a 401 body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub &'static str);

/// The deployment's token key: signs and verifies tokens under one secret and key id.
/// Cheap to clone.
#[derive(Clone)]
pub struct TokenKey {
    inner: Arc<Inner>,
}

struct Inner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    key_id: String,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("key_id", &self.inner.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// The key for `secret`, named `key_id` in every token's header.
    ///
    /// # Errors
    /// [`InvalidKey`] when the secret is shorter than [`MIN_SECRET_BYTES`] or the key id is
    /// empty.
    pub fn new(secret: &[u8], key_id: &str) -> Result<Self, InvalidKey> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(InvalidKey("auth.jwt_secret must be at least 32 bytes"));
        }
        if key_id.is_empty() {
            return Err(InvalidKey("auth.key_id must not be empty"));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        // A token with an `nbf` still ahead is not valid yet (ours carry none; a forged or
        // foreign one may).
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            inner: Arc::new(Inner {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
                key_id: key_id.to_owned(),
            }),
        })
    }

    /// The key id written in every token's header.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// Issues a token for `user`, valid from now for `ttl` (whole seconds).
    ///
    /// # Errors
    /// [`SignError`] when signing fails.
    pub fn issue(&self, user: &TokenUser, ttl: Duration) -> Result<String, SignError> {
        let now = unix_now();
        self.sign(&Claims {
            sub: user.id.to_string(),
            email: user.email.clone(),
            role: user.role,
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
        })
    }

    /// Signs arbitrary claims with this key and key id: [`TokenKey::issue`] does it for a
    /// user; tests use it for tokens that are already expired.
    ///
    /// # Errors
    /// [`SignError`] when signing fails.
    pub fn sign(&self, claims: &Claims) -> Result<String, SignError> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.inner.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.inner.encoding).map_err(SignError)
    }

    /// Verifies a compact JWT and returns who it names.
    ///
    /// # Errors
    /// [`Rejected`] when the token is malformed, signed with another algorithm, key or key
    /// id, tampered with, expired, or names no valid user.
    pub fn verify(&self, token: &str) -> Result<TokenUser, Rejected> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Rejected("malformed token"));
        }
        // The header is read first only to check the key id; the signature check below is
        // what makes the token trustworthy.
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected("malformed token"))?;
        if header.alg != Algorithm::HS256 {
            return Err(Rejected("unsupported token algorithm"));
        }
        if header.kid.as_deref() != Some(self.inner.key_id.as_str()) {
            return Err(Rejected("token signed with an unknown key"));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => Rejected("token expired"),
                    ErrorKind::ImmatureSignature => Rejected("token not valid yet"),
                    _ => Rejected("invalid token"),
                })?;
        let claims = data.claims;
        // Issued in the future (beyond the clock skew the leeway allows): not valid yet.
        if claims.iat > unix_now().saturating_add(LEEWAY_SECS) {
            return Err(Rejected("token not valid yet"));
        }
        let id = claims
            .sub
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or(Rejected("invalid token"))?;
        Ok(TokenUser {
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
    const TTL: Duration = Duration::from_secs(60);

    fn key() -> TokenKey {
        TokenKey::new(SECRET, "k1").unwrap()
    }

    fn user() -> TokenUser {
        TokenUser {
            id: 7,
            email: "a@example.com".into(),
            role: UserRole::Support,
        }
    }

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            email: "a@example.com".into(),
            role: UserRole::Admin,
            iat: unix_now() - 7200,
            exp,
        }
    }

    /// `token` with one character of its signature changed.
    fn tampered(token: &str) -> String {
        let mut bytes = token.as_bytes().to_vec();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn issued_tokens_verify_to_their_user_with_the_key_id_in_the_header() {
        let token = key().issue(&user(), TTL).unwrap();
        assert_eq!(key().verify(&token), Ok(user()));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.alg, Algorithm::HS256);
    }

    #[test]
    fn tokens_not_valid_yet_are_refused() {
        let now = unix_now();
        let future = Claims {
            iat: now + 3600,
            ..claims("7", now + 7200)
        };
        let token = key().sign(&future).unwrap();
        assert_eq!(key().verify(&token), Err(Rejected("token not valid yet")));
        // Within the leeway, a clock slightly ahead is no reason.
        let skewed = Claims {
            iat: now + 2,
            ..claims("7", now + 7200)
        };
        assert!(key().verify(&key().sign(&skewed).unwrap()).is_ok());
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let mut with_nbf = serde_json::to_value(claims("7", now + 7200)).unwrap();
        with_nbf["nbf"] = serde_json::json!(now + 3600);
        let token = jsonwebtoken::encode(
            &header,
            &with_nbf,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(key().verify(&token), Err(Rejected("token not valid yet")));
    }

    #[test]
    fn short_secrets_and_empty_key_ids_are_refused() {
        assert_eq!(
            TokenKey::new(&SECRET[..31], "k1").map(|_| ()),
            Err(InvalidKey("auth.jwt_secret must be at least 32 bytes"))
        );
        assert_eq!(
            TokenKey::new(SECRET, "").map(|_| ()),
            Err(InvalidKey("auth.key_id must not be empty"))
        );
    }

    #[test]
    fn expired_tampered_foreign_and_malformed_tokens_are_refused() {
        let now = unix_now();
        let expired = key().sign(&claims("7", now - 3600)).unwrap();
        assert_eq!(key().verify(&expired), Err(Rejected("token expired")));
        // Within the leeway, a token just past its `exp` still passes.
        let just_expired = key().sign(&claims("7", now - 1)).unwrap();
        assert!(key().verify(&just_expired).is_ok());

        let good = key().issue(&user(), TTL).unwrap();
        assert_eq!(
            key().verify(&tampered(&good)),
            Err(Rejected("invalid token"))
        );

        let other_kid = TokenKey::new(SECRET, "k2").unwrap();
        assert_eq!(
            key().verify(&other_kid.issue(&user(), TTL).unwrap()),
            Err(Rejected("token signed with an unknown key"))
        );
        let other_secret = TokenKey::new(b"another secret of at least 32 bytes", "k1").unwrap();
        assert_eq!(
            key().verify(&other_secret.issue(&user(), TTL).unwrap()),
            Err(Rejected("invalid token"))
        );

        for sub in ["0", "-3", "seven", ""] {
            let token = key().sign(&claims(sub, now + 60)).unwrap();
            assert_eq!(
                key().verify(&token),
                Err(Rejected("invalid token")),
                "{sub:?}"
            );
        }
        for garbage in ["", "a.b.c", "not a token", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(key().verify(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn other_algorithms_are_refused() {
        let mut header = Header::new(Algorithm::HS512);
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims("7", unix_now() + 60),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            key().verify(&token),
            Err(Rejected("unsupported token algorithm"))
        );
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in UserRole::ALL {
            assert_eq!(role.as_str().parse::<UserRole>(), Ok(role));
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::Value::String(role.as_str().into())
            );
        }
        assert_eq!("Admin".parse::<UserRole>(), Err(UnknownRole));
        assert_eq!("".parse::<UserRole>(), Err(UnknownRole));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(session_cookie(&headers), None);
        headers.append(http::header::COOKIE, "a=1; strata_cart=ff".parse().unwrap());
        assert_eq!(session_cookie(&headers), None);
        headers.append(
            http::header::COOKIE,
            "x=2;strata_session=abc.def.ghi; y=3".parse().unwrap(),
        );
        assert_eq!(session_cookie(&headers), Some("abc.def.ghi"));
        let mut empty = http::HeaderMap::new();
        empty.insert(http::header::COOKIE, "strata_session=".parse().unwrap());
        assert_eq!(session_cookie(&empty), None);
    }
}
