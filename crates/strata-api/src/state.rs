//! [`AppState`]: what every handler of one api instance shares. Cheap to clone (handles and
//! `Arc`s only), and holding nothing a request could change: the instance stays stateless.

use axum::extract::FromRef;
use strata_objects::AnyObjects;
use strata_store::Store;

use crate::auth::{LoginThrottle, Passwords, Tokens};
use crate::cache_aside::CacheAside;

/// The handles a request needs: the store (the truth), the cache in front of it, the
/// credentials machinery and the object store of images.
#[derive(Clone)]
pub(crate) struct AppState {
    /// Products, accounts, carts and orders.
    pub store: Store,
    /// Cache-aside reads over `store`.
    pub cache: CacheAside,
    /// Issues and verifies session tokens (the [`crate::auth::AuthUser`] extractor uses it).
    pub tokens: Tokens,
    /// Hashes and verifies passwords.
    pub passwords: Passwords,
    /// Counts failed log-ins.
    pub throttle: LoginThrottle,
    /// Product images.
    pub objects: AnyObjects,
}

impl FromRef<AppState> for Tokens {
    fn from_ref(state: &AppState) -> Tokens {
        state.tokens.clone()
    }
}

impl FromRef<AppState> for Store {
    fn from_ref(state: &AppState) -> Store {
        state.store.clone()
    }
}
