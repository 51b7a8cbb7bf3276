//! [`User`]: who a chat connection or request belongs to. Tokens are the api's, verified
//! statelessly with the rules of [`strata_core::auth`] that the api uses too, with the
//! deployment's shared secret and key id. Who may enter a room ([`admitted`]) depends on the
//! account's role as it is now, read from the store, not on the role the token was issued
//! with: a grant or a revocation applies to the next join or history read.

use strata_core::auth::{Rejected, TokenKey, TokenUser};
use strata_store::{Store, StoreError};

use crate::room::RoomId;

/// Who a verified token names: the part of [`TokenUser`] chat uses. Every connection holds
/// one, so it stays one word and `Copy` (the email, a heap string, is left out; the role is
/// read when it matters, see [`admitted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct User {
    /// The account id.
    pub id: i64,
}

impl From<TokenUser> for User {
    fn from(user: TokenUser) -> Self {
        Self { id: user.id }
    }
}

/// True when `user` may enter (read and write) `room` now. A customer's own support room
/// needs no look-up; any other room depends on the account's current role, read from the
/// store (an account that no longer exists enters nothing else).
///
/// # Errors
/// When the store cannot be read.
pub(crate) async fn admitted(store: &Store, user: User, room: &RoomId) -> Result<bool, StoreError> {
    if room.customer() == Some(user.id) {
        return Ok(true);
    }
    let role = store.users().role(user.id).await?;
    Ok(role.is_some_and(|role| room.admits(user.id, role)))
}

/// Verifies a compact JWT and returns who it names.
///
/// # Errors
/// [`Rejected`] when the token is malformed, signed otherwise, expired or names no user.
pub(crate) fn verify(key: &TokenKey, token: &str) -> Result<User, Rejected> {
    key.verify(token).map(User::from)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strata_core::auth::UserRole;

    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_fail() {
        let secret = [7u8; 32];
        let key = TokenKey::new(&secret, "k1").unwrap();
        let user = TokenUser {
            id: 5,
            email: "user5@example.com".into(),
            role: UserRole::Support,
        };
        let ttl = Duration::from_secs(60);
        let token = key.issue(&user, ttl).unwrap();
        assert_eq!(verify(&key, &token), Ok(User { id: 5 }));
        let other_kid = TokenKey::new(&secret, "k2").unwrap();
        assert!(verify(&key, &other_kid.issue(&user, ttl).unwrap()).is_err());
        let other_key = TokenKey::new(&[8u8; 32], "k1").unwrap();
        assert!(verify(&key, &other_key.issue(&user, ttl).unwrap()).is_err());
        assert!(verify(&key, "garbage").is_err());
    }
}
