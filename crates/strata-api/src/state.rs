//! [`AppState`]: what every handler of one api instance shares. Cheap to clone (handles and
//! `Arc`s only), and holding nothing a request could change: the instance stays stateless.

use std::sync::Arc;

use axum::extract::FromRef;
use strata_store::Store;

use crate::auth::{LoginThrottle, Passwords, Tokens};
use crate::cache_aside::CacheAside;
use crate::web::currency::Currencies;

/// The handles a request needs: the store (the truth), the cache in front of it, and the
/// credentials machinery.
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
    /// The storefront's display currencies.
    pub currencies: Arc<Currencies>,
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
