//! [`AppState`]: what every handler of one api instance shares. Cheap to clone (handles and
//! `Arc`s only), and holding nothing a request could change: the instance stays stateless.

use strata_store::Store;

use crate::cache_aside::CacheAside;

/// The handles a request needs: the store (the truth) and the cache in front of it.
#[derive(Clone)]
pub(crate) struct AppState {
    /// Products, and later accounts, carts and orders.
    pub store: Store,
    /// Cache-aside reads over `store`.
    pub cache: CacheAside,
}
