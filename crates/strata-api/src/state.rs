//! [`AppState`]: what every handler of one api instance shares, behind one `Arc`: axum clones
//! the state for every extractor and middleware of every request, and the handles inside
//! (the caches' own `Arc`s and channels) would each cost an atomic add and drop, on counters
//! every core touches. Only the carts of local cart mode live here (see `carts`).

use std::sync::Arc;

use axum::extract::FromRef;
use strata_objects::AnyObjects;
use strata_store::Store;

use crate::auth::{LoginThrottle, Passwords, Tokens};
use crate::cache_aside::CacheAside;
use crate::carts::Carts;
use crate::web::currency::Currencies;

/// The handles a request needs (see [`Shared`]); a clone is one reference count.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handles a request needs: the store (the truth), the cache in front of it, the
/// credentials machinery and the object store of images.
pub(crate) struct Shared {
    /// Products, accounts, carts and orders.
    pub store: Store,
    /// Cache-aside reads over `store`.
    pub cache: CacheAside,
    /// The carts, in the store or in this instance (`carts.mode`).
    pub carts: Carts,
    /// Issues and verifies session tokens (the [`crate::auth::AuthUser`] extractor uses it).
    pub tokens: Tokens,
    /// Hashes and verifies passwords.
    pub passwords: Passwords,
    /// Counts failed log-ins.
    pub throttle: LoginThrottle,
    /// The storefront's display currencies.
    pub currencies: Arc<Currencies>,
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
